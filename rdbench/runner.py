"""Cells and how they run: resolve settings, open runs, call the system, log the outcome.

A *cell* is one (system, case, seed) with fully resolved settings; it becomes one
MLflow run. :func:`plan_cells` resolves and checks cells before anything starts
(so bad input never leaves a half-written run); :func:`run_cells` runs them,
batching cells that a system says can share a batch, and isolates failures: a
cell that raises is marked FAILED with its error and the others go on (a batch
that raises is rerun one cell at a time, so that only its bad cells fail).

This module knows no particular system: it reaches them through the plug-in
named in ``conf/systems/<name>.yaml``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.entities import RunStatus

from rdbench import tracking
from rdbench.config import ConfigError, config_hash, flatten_settings, load_system
from rdbench.systems.base import Job, Outcome, RunContext, System


@dataclass(frozen=True)
class Cell:
    """One (system, case, seed) with its resolved, validated settings."""

    system: str
    case: str
    seed: int
    profile: str
    settings: Any
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``system/case`` plus any overrides, e.g. ``rd/spot[feed=0.03]``."""
        extra = ",".join(f"{k}={v}" for k, v in self.overrides.items())
        return f"{self.system}/{self.case}" + (f"[{extra}]" if extra else "")

    @property
    def run_name(self) -> str:
        return f"{self.label}/seed={self.seed}"

    @property
    def config_hash(self) -> str:
        return config_hash(self.system, self.case, self.seed, self.settings)

    def tags(self) -> dict[str, str]:
        return {
            tracking.TAG_KIND: "cell",
            tracking.TAG_SYSTEM: self.system,
            tracking.TAG_CASE: self.case,
            tracking.TAG_SEED: str(self.seed),
            tracking.TAG_PROFILE: self.profile,
            tracking.TAG_HASH: self.config_hash,
        }

    def params(self, device: str) -> dict[str, Any]:
        return {
            "system": self.system,
            "case": self.case,
            "seed": self.seed,
            "profile": self.profile,
            "device": device,
            **flatten_settings(self.settings),
        }


@dataclass
class CellReport:
    """How one cell ended."""

    cell: Cell
    run_id: str | None
    status: str  # FINISHED, FAILED, SKIPPED
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


_PLUGINS: dict[str, System] = {}


def plugin(system: str, config_path: str | Path | None = None) -> System:
    """The System instance for ``system`` (its class is named in the system's config file)."""
    key = f"{system}:{config_path}"
    if key not in _PLUGINS:
        _PLUGINS[key] = load_system(system, config_path).plugin_class()()
    return _PLUGINS[key]


def plan_cells(
    system: str,
    cases: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    profile: str = "paper",
    overrides: Mapping[str, Any] | None = None,
    config_path: str | Path | None = None,
) -> list[Cell]:
    """Resolve and check every cell up front; any problem raises ConfigError before a run exists."""
    sys_conf = load_system(system, config_path)
    impl = plugin(system, config_path)
    overrides = dict(overrides or {})
    cells = []
    for case in cases or [sys_conf.spec.default_case]:
        settings = sys_conf.resolve(case, profile, overrides, impl.Settings)
        impl.check(settings)
        for seed in seeds:
            if not isinstance(seed, int) or seed < 0:
                raise ConfigError(f"bad seed {seed!r}: seeds are non-negative integers")
            cells.append(Cell(system, case, seed, profile, settings, overrides))
    return cells


def run_cells(
    cells: Sequence[Cell],
    experiment: str,
    ctx: RunContext,
    parent_run_id: str | None = None,
    adopt_run_id: str | None = None,
    on_report: Callable[[CellReport], None] | None = None,
    config_path: str | Path | None = None,
) -> list[CellReport]:
    """Run ``cells``; return one report per cell in the order given.

    ``adopt_run_id`` (one cell only) logs into an existing run, as under ``mlflow
    run``; otherwise each cell gets a new run, a child of ``parent_run_id`` if given.
    """
    if adopt_run_id and len(cells) != 1:
        raise ValueError("adopt_run_id needs exactly one cell")
    client = tracking.client()
    reports: dict[int, CellReport] = {}

    def report(index: int, item: CellReport) -> None:
        reports[index] = item
        if on_report:
            on_report(item)

    def execute(impl: System, group: list[tuple[int, Cell]], runs: list[tracking.TrackedRun]) -> None:
        """Run one batch and log it; raises if the system does."""
        jobs = [
            Job(case=cell.case, seed=cell.seed, settings=cell.settings, recorder=run, profile=cell.profile)
            for (_, cell), run in zip(group, runs, strict=True)
        ]
        start = time.perf_counter()
        outcomes = impl.run(jobs, ctx)
        wall = time.perf_counter() - start
        if len(outcomes) != len(jobs):
            raise RuntimeError(f"system {impl.name!r} returned {len(outcomes)} outcomes for {len(jobs)} jobs")
        for (index, cell), run, outcome in zip(group, runs, outcomes, strict=True):
            log_outcome(run, outcome, wall_time=wall, batch=len(jobs))
            run.finish()
            report(index, CellReport(cell, run.run_id, "FINISHED", metrics=outcome.balance.summary()))

    def fail(group: list[tuple[int, Cell]], runs: list[tracking.TrackedRun], exc: BaseException) -> None:
        for i, (index, cell) in enumerate(group):
            if index in reports:
                continue
            run_id = None
            if i < len(runs):
                runs[i].fail(exc)
                run_id = runs[i].run_id
            report(index, CellReport(cell, run_id, "FAILED", error=tracking.one_line(exc)))

    for group in _groups(cells, config_path):
        impl = plugin(group[0][1].system, config_path)
        runs: list[tracking.TrackedRun] = []
        try:
            for _, cell in group:
                if ctx.resume:
                    close_stale_runs(client, experiment, cell.config_hash)
                if adopt_run_id:
                    run = tracking.TrackedRun.adopt(client, adopt_run_id, cell.tags())
                else:
                    run = tracking.TrackedRun.create(
                        client, experiment, cell.run_name, cell.tags(), parent_run_id
                    )
                runs.append(run)
                run.log_params(cell.params(str(ctx.device)))
            execute(impl, group, runs)
        except KeyboardInterrupt as exc:
            fail(group, runs, exc)
            raise
        except Exception as exc:  # noqa: BLE001 - isolate the failure, report it, go on
            if len(group) == 1 or len(runs) != len(group):
                fail(group, runs, exc)
                continue
            # A batch failed: run its cells one at a time, so that one bad cell fails alone.
            for item, run in zip(group, runs, strict=True):
                try:
                    execute(impl, [item], [run])
                except KeyboardInterrupt as again:
                    fail(group, runs, again)
                    raise
                except Exception as alone:  # noqa: BLE001
                    fail([item], [run], alone)
    return [reports[i] for i in range(len(cells))]


def close_stale_runs(client, experiment: str, config_hash: str) -> list[str]:
    """Mark KILLED the RUNNING runs of this config that a killed process left behind (``--resume``)."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    stale = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{tracking.TAG_HASH}` = '{config_hash}' and attributes.status = 'RUNNING'",
    )
    for run in stale:
        tracking.TrackedRun(client, run.info.run_id).end(
            RunStatus.KILLED, "the process running this cell was killed; a --resume run continued it"
        )
    return [run.info.run_id for run in stale]


def log_outcome(run: tracking.TrackedRun, outcome: Outcome, wall_time: float, batch: int) -> None:
    """Balance metrics and series of the model and of each control, plus the extras."""
    run.log_balance(outcome.balance)
    for name, result in outcome.controls.items():
        run.log_balance(result, prefix=f"control.{name}.")
    run.log_metrics({**outcome.metrics, "wall_time_s": wall_time, "batch_cells": batch})


def _groups(cells: Sequence[Cell], config_path) -> list[list[tuple[int, Cell]]]:
    """Cells grouped by (system, the system's batch key), in first-seen order."""
    groups: dict[Any, list[tuple[int, Cell]]] = {}
    for index, cell in enumerate(cells):
        key = plugin(cell.system, config_path).group_key(cell.settings)
        gkey = (cell.system, key) if key is not None else (cell.system, "solo", index)
        groups.setdefault(gkey, []).append((index, cell))
    return list(groups.values())
