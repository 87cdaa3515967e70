"""Running cells: open their runs, call the system, log the outcome, isolate failures.

:func:`run_cells` groups cells that a system says can share a batch
(:meth:`~rdbench.systems.base.System.group_key`), opens one MLflow run per cell, calls
the system once per group and logs each cell's :class:`~rdbench.systems.base.Outcome`.
A cell whose job fails is marked FAILED with its error and the others go on: a system
reports a failed job by returning the exception in that job's place (Gray-Scott does so for
a row that diverges: the rest of its batch runs on). A group that raises fails all its cells
with the one-line reason; it is not rerun cell by cell (a 4096-cell batch would run 4096 times).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import RunStatus

from rdbench.config import ConfigError
from rdbench.study.cells import Cell, plugin
from rdbench.systems.base import Job, Outcome, RunContext, System, available_memory
from rdbench.tracking.environment import device_tags
from rdbench.tracking.liveness import owner_alive
from rdbench.tracking.runs import ArtifactsLost, TrackedRun, one_line
from rdbench.tracking.store import client as tracking_client
from rdbench.tracking.store import search_runs
from rdbench.tracking.system_metrics import SystemMetrics
from rdbench.tracking.tags import KIND_CELL, TAG_HASH, TAG_KIND, TAG_RUN_NAME

FINISHED, FAILED, KILLED, SKIPPED = "FINISHED", "FAILED", "KILLED", "SKIPPED"
ELSEWHERE = "running in another process"  # the error note of a cell another process has claimed


@dataclass
class CellReport:
    """How one cell ended: FINISHED, FAILED, KILLED (interrupted), or SKIPPED (an earlier
    FINISHED run reused, or the cell claimed by another process: ``error`` says so)."""

    cell: Cell
    run_id: str | None
    status: str
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def failure_summary(reports: Sequence[CellReport]) -> str | None:
    """``"2 of 9 cells failed: rd/spot/s0: ...; ..."``, or None when none failed."""
    failed = [r for r in reports if r.status in (FAILED, KILLED)]
    if not failed:
        return None
    return f"{len(failed)} of {len(reports)} cells failed: " + "; ".join(
        f"{r.cell.run_name}: {r.error}" for r in failed
    )


def check_memory(cells: Sequence[Cell], device: Any) -> None:
    """Refuse (ConfigError) a batch whose memory estimate exceeds what ``device`` has, before any run."""
    free = available_memory(device)
    if free is None:
        return
    for group in batches(cells):
        impl = plugin(group[0][1].system, group[0][1].config_path).system
        need = impl.memory_bytes([cell.settings for _, cell in group])
        if need is not None and need > free:
            names = ", ".join(cell.run_name for _, cell in group[:3]) + (" ..." if len(group) > 3 else "")
            raise ConfigError(
                f"{names}: needs about {need / 2**30:.1f} GiB on {device}, which has {free / 2**30:.1f} GiB "
                f"available; use smaller sizes (grid_size, batch_size, seq_len, samples...) or fewer cells per batch"
            )


def check_runs(cells: Sequence[Cell], ctx: RunContext) -> None:
    """Each system's checks that need the run context (``--no-resume``, a configuration another process
    is training), before any run exists: ConfigError, one line."""
    for cell in cells:
        plugin(cell.system, cell.config_path).system.check_run(cell.settings, cell.config_hash, ctx)


def run_cells(
    cells: Sequence[Cell],
    experiment: str,
    ctx: RunContext,
    parent_run_id: str | None = None,
    adopt_run_id: str | None = None,
    on_report: Callable[[CellReport], None] | None = None,
    claim: bool = False,
    reuse_finished: bool = True,
) -> list[CellReport]:
    """Run ``cells``; return one report per cell in the order given.

    ``adopt_run_id`` (one cell only) logs into an existing run, as under ``mlflow
    run``; otherwise each cell gets a new run, a child of ``parent_run_id`` if given.
    With ``claim``, a cell that another live process is already running (or has just
    finished, when ``reuse_finished``) is left to it (:func:`rival_run`): two grids on
    one store never run the same cell twice.
    """
    if adopt_run_id and len(cells) != 1:
        raise ValueError("adopt_run_id needs exactly one cell")
    client = tracking_client()
    reports: dict[int, CellReport] = {}

    def report(index: int, item: CellReport) -> None:
        reports[index] = item
        if on_report:
            on_report(item)

    def fail(group: list[tuple[int, Cell]], runs: list[TrackedRun], exc: BaseException) -> None:
        status = KILLED if isinstance(exc, KeyboardInterrupt) else FAILED
        for i, (index, cell) in enumerate(group):
            if index in reports:
                continue
            run_id = None
            if i < len(runs):
                runs[i].fail(exc)
                run_id = runs[i].run_id
            report(index, CellReport(cell, run_id, status, error=one_line(exc)))

    def execute(impl: System, group: list[tuple[int, Cell]], runs: list[TrackedRun]) -> None:
        """Run one group and log it; raises if the system does."""
        jobs = [
            Job(case=cell.case, seed=cell.seed, settings=cell.settings, recorder=run,
                profile=cell.profile, config_hash=cell.config_hash)
            for (_, cell), run in zip(group, runs, strict=True)
        ]
        start = time.perf_counter()
        with SystemMetrics(client, [run.run_id for run in runs]):
            outcomes = impl.run(jobs, ctx)
        wall = time.perf_counter() - start
        if len(outcomes) != len(jobs):
            raise RuntimeError(f"system {impl.name!r} returned {len(outcomes)} outcomes for {len(jobs)} jobs")
        for (index, cell), run, outcome in zip(group, runs, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                fail([(index, cell)], [run], outcome)
                continue
            log_outcome(run, outcome, wall_time=wall, batch=len(jobs))
            try:
                run.finish()
            except ArtifactsLost as exc:  # this cell's record has a hole; the others of the batch go on
                fail([(index, cell)], [run], exc)
                continue
            report(index, CellReport(cell, run.run_id, FINISHED, metrics=outcome.balance.summary()))

    for group in batches(cells):
        impl = plugin(group[0][1].system, group[0][1].config_path).system
        runs: list[TrackedRun] = []
        try:
            for _, cell in group:
                tags = {**cell.tags(), **device_tags(ctx.device)}
                if adopt_run_id:
                    run = TrackedRun.adopt(client, adopt_run_id, {**tags, TAG_RUN_NAME: cell.run_name})
                else:
                    run = TrackedRun.create(client, experiment, cell.run_name, tags, parent_run_id)
                runs.append(run)
                run.log_params(cell.params(str(ctx.device)))
            if claim:
                group, runs = _leave_claimed(client, group, runs, reuse_finished, report)
            if group:
                execute(impl, group, runs)
        except KeyboardInterrupt as exc:
            fail(group, runs, exc)
            raise
        except Exception as exc:  # noqa: BLE001 - isolate the failure, report it, go on
            # A group that raises fails its unreported cells with the reason; it is not rerun cell by
            # cell. Per-cell failures (a diverging row of a batch) come back as entries of run()'s list.
            fail(group, runs, exc)
    return [reports[i] for i in range(len(cells))]


def rival_run(client: Any, run: TrackedRun, config_hash: str, reuse_finished: bool) -> Any | None:
    """The run that holds this cell instead of ``run``, if any.

    Every process creates its run first, then looks: a FINISHED run of the same
    config (when ``reuse_finished``) wins, else the earliest RUNNING one whose owner is
    alive (ties by run id). All contenders see the same runs, so exactly one goes on.
    """
    mine = client.get_run(run.run_id)
    runs = search_runs(client, [mine.info.experiment_id],
                       f"tags.`{TAG_HASH}` = '{config_hash}' and tags.`{TAG_KIND}` = '{KIND_CELL}'")
    others = [r for r in runs if r.info.run_id != run.run_id]
    if reuse_finished:
        finished = [r for r in others if r.info.status == FINISHED]
        if finished:
            return max(finished, key=lambda r: r.info.start_time)
    ahead = [
        r for r in others
        if r.info.status == "RUNNING" and owner_alive(r.data.tags) is not False
        and (r.info.start_time, r.info.run_id) < (mine.info.start_time, mine.info.run_id)
    ]
    return min(ahead, key=lambda r: (r.info.start_time, r.info.run_id)) if ahead else None


def _leave_claimed(client, group, runs, reuse_finished, report):
    """Drop from ``group`` the cells another process holds: their own run is deleted (it never ran)."""
    kept, kept_runs = [], []
    for (index, cell), run in zip(group, runs, strict=True):
        rival = rival_run(client, run, cell.config_hash, reuse_finished)
        if rival is None:
            kept.append((index, cell))
            kept_runs.append(run)
            continue
        run.end(RunStatus.KILLED, f"{ELSEWHERE}: run {rival.info.run_id}")
        client.delete_run(run.run_id)
        metrics = dict(rival.data.metrics) if rival.info.status == FINISHED else {}
        report(index, CellReport(cell, rival.info.run_id, SKIPPED, error=f"{ELSEWHERE} (run {rival.info.run_id})"
                                 if rival.info.status != FINISHED else None, metrics=metrics))
    return kept, kept_runs


def log_outcome(run: TrackedRun, outcome: Outcome, wall_time: float, batch: int) -> None:
    """Balance metrics and series of the model and of each control, plus the extras."""
    run.log_balance(outcome.balance)
    for name, result in outcome.controls.items():
        run.log_balance(result, prefix=f"control.{name}.")
    run.log_metrics({**outcome.metrics, "wall_time_s": wall_time, "batch_cells": batch})


def batches(cells: Sequence[Cell]) -> list[list[tuple[int, Cell]]]:
    """Cells grouped by (system, config file, the system's batch key), in first-seen order."""
    groups: dict[Any, list[tuple[int, Cell]]] = {}
    for index, cell in enumerate(cells):
        key = plugin(cell.system, cell.config_path).system.group_key(cell.settings)
        gkey = (cell.system, cell.config_path, key) if key is not None else (cell.system, "solo", index)
        groups.setdefault(gkey, []).append((index, cell))
    return list(groups.values())

