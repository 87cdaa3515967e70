"""Running a grid: one MLflow *parent* run with a child run per cell, skip-finished, a manifest.

:func:`run_grid` records one invocation as a parent run (``rdbench.kind = grid``). A cell
whose identical resolved config (its ``rdbench.config_hash``) already has a FINISHED run
in the experiment is skipped and that run reused, so an interrupted study resumes where
it stopped (``force=True`` reruns everything). A failing cell is FAILED with its error and
the others go on. The parent keeps the manifest (:mod:`rdbench.tracking.manifest`) of
every cell's run, reused ones included, from which the report builds Table 1.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import RunStatus

from rdbench.study.executor import Executor, InProcess
from rdbench.study.grid import GridPlan
from rdbench.study.runner import FAILED, FINISHED, SKIPPED, CellReport, failure_summary
from rdbench.systems.base import RunContext
from rdbench.tracking.environment import device_tags
from rdbench.tracking.liveness import HEARTBEAT, owner_tags
from rdbench.tracking.manifest import NOT_RUN, ManifestRow, write_manifest
from rdbench.tracking.runs import ArtifactsLost, TrackedRun, one_line
from rdbench.tracking.store import client as tracking_client
from rdbench.tracking.store import experiment_id, search_runs
from rdbench.tracking.tags import (
    KIND_CELL,
    KIND_GRID,
    TAG_ERROR,
    TAG_FIRST_PARENT,
    TAG_GRID,
    TAG_GRID_FILE,
    TAG_HASH,
    TAG_KIND,
    TAG_NOTE,
    TAG_PARENT,
    TAG_PARTIAL,
    TAG_RUN_NAME,
    TAG_STUDY,
    TAG_STUDY_ID,
    TAG_STUDY_NAME,
)
from rdbench.tracking.ui import prepare_ui

STUDY_ID_CHARS = 8  # a study's short id: this many leading characters of its parent's run id


def study_id(parent_run_id: str) -> str:
    """The short id of the study whose parent run is ``parent_run_id`` (``--parent`` takes either)."""
    return parent_run_id[:STUDY_ID_CHARS]


def study_note(plan: GridPlan) -> str:
    """The parent's description in the MLflow UI: the grid file's ``description``, and what a partial
    run left out or changed (the report appends a summary of Table 1)."""
    note = f"**{plan.study}** ({plan.path.name}): {plan.spec.description}"
    if plan.partial:
        note += f"\n\n*Partial run* ({plan.partial}): not the whole grid; `rdbench table` and " \
                "`rdbench figures` read it only when given its `--parent`."
    return note


@dataclass
class GridResult:
    """How a grid invocation ended: the parent run and one report per cell, in grid order."""

    parent_run_id: str
    experiment: str
    experiment_id: str
    reports: list[CellReport] = field(default_factory=list)
    wall_time_s: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.reports)

    @property
    def failed(self) -> list[CellReport]:
        return [r for r in self.reports if r.status == FAILED]

    def summary(self) -> str:
        return (
            f"{len(self.reports)} cells: {self.count(FINISHED)} finished, "
            f"{self.count(SKIPPED)} skipped (already finished), {self.count(FAILED)} failed "
            f"in {self.wall_time_s:.1f} s"
        )


def finished_runs_by_hash(client: Any, exp_id: str, hashes: set[str]) -> dict[str, Any]:
    """The latest FINISHED cell run of each config hash in ``hashes``."""
    found: dict[str, Any] = {}
    runs = search_runs(
        client, [exp_id], f"tags.`{TAG_KIND}` = '{KIND_CELL}' and attributes.status = 'FINISHED'",
        order_by=("attributes.start_time DESC",),
    )
    for run in runs:
        h = run.data.tags.get(TAG_HASH)
        if h in hashes and h not in found:
            found[h] = run
    return found


def run_grid(
    plan: GridPlan,
    experiment: str,
    ctx: RunContext,
    *,
    force: bool = False,
    parent_run_id: str | None = None,
    on_report: Callable[[CellReport], None] | None = None,
    executor: Executor | None = None,
) -> GridResult:
    """Run ``plan`` under one parent run; return how every cell ended.

    ``parent_run_id`` adopts an existing run as the parent (``mlflow run``'s
    MLFLOW_RUN_ID); otherwise a new parent run is created. The parent is left
    FINISHED when every cell finished or was reused, FAILED otherwise (an adopted
    parent is left to ``mlflow run``, which ends it from the exit status).
    ``on_report`` is called as each cell ends (or is found finished). ``executor`` runs
    the cells to run (:mod:`rdbench.study.executor`; default: in this process).
    """
    executor = executor or InProcess()
    executor.check(plan.cells, ctx)  # before the parent run exists: bad input leaves nothing behind
    client = tracking_client()
    exp_id = experiment_id(client, experiment)
    parent_tags = {TAG_KIND: KIND_GRID, TAG_GRID: plan.name, TAG_GRID_FILE: str(plan.path), **device_tags(ctx.device),
                   TAG_STUDY_NAME: plan.study, TAG_NOTE: study_note(plan),
                   **({TAG_PARTIAL: plan.partial} if plan.partial else {})}
    name = f"grid:{plan.study}" + (" (partial)" if plan.partial else "")
    if parent_run_id:  # named like a parent rdbench made (MLflow gave it a random name)
        parent = TrackedRun.adopt(client, parent_run_id, {**parent_tags, TAG_RUN_NAME: name})
    else:
        parent = TrackedRun.create(client, experiment, name, parent_tags)
    parent.set_tags({TAG_STUDY: parent.run_id, TAG_STUDY_ID: study_id(parent.run_id)})
    prepare_ui(client, exp_id, parent.run_id)
    result = GridResult(parent.run_id, experiment, exp_id)
    start = time.perf_counter()
    reports: dict[int, CellReport] = {}

    def announce(index: int, report: CellReport) -> None:
        reports[index] = report
        _write_manifest(parent, plan, reports)  # as cells end: a killed grid still lists what finished
        if on_report:
            on_report(report)

    try:
        parent.log_params(
            {"grid": plan.name, "study": plan.study, "grid_file": str(plan.path), "cells": len(plan.cells),
             "force": force, "device": str(ctx.device), "executor": executor.name}
        )
        parent.log_artifact(plan.path, "grid")
        reused = {} if force else finished_runs_by_hash(client, exp_id, {c.config_hash for c in plan.cells})
        to_run: list[int] = []
        for index, cell in enumerate(plan.cells):
            old = reused.get(cell.config_hash)
            if old is None:
                to_run.append(index)
            else:
                reports[index] = CellReport(cell, old.info.run_id, SKIPPED, metrics=dict(old.data.metrics))
                _adopt_cell(client, old, parent.run_id)
        _write_manifest(parent, plan, reports)
        for index in sorted(set(range(len(plan.cells))) - set(to_run)):
            if on_report:
                on_report(reports[index])
        if to_run:
            executor.run(
                [plan.cells[i] for i in to_run], experiment, ctx, parent_run_id=parent.run_id,
                on_report=_indexed(to_run, [plan.cells[i] for i in to_run], announce),
                claim=True, reuse_finished=not force,
            )
    except BaseException as exc:  # Ctrl-C, SIGTERM, a store failure: the parent is never left RUNNING
        if not parent_run_id:
            with contextlib.suppress(Exception):
                parent.fail(exc)
        raise
    result.reports = [reports[i] for i in range(len(plan.cells))]
    result.wall_time_s = time.perf_counter() - start
    parent.log_metrics(
        {"cells_total": len(result.reports), "cells_finished": result.count(FINISHED),
         "cells_skipped": result.count(SKIPPED), "cells_failed": result.count(FAILED),
         "wall_time_s": result.wall_time_s}
    )
    reason = failure_summary(result.reports)
    if parent_run_id:  # `mlflow run`, our parent process, ends it from our exit status: it owns it now
        HEARTBEAT.remove(parent.run_id)
        parent.set_tags({**owner_tags(os.getppid()), **({TAG_ERROR: one_line(RuntimeError(reason))} if reason else {})})
    elif reason:
        parent.end(RunStatus.FAILED, one_line(RuntimeError(reason)))
    else:
        try:
            parent.finish()
        except ArtifactsLost as exc:  # the grid file the parent logged is gone: FAILED, one line
            parent.fail(exc)
            raise
    return result


def _adopt_cell(client: Any, run: Any, parent_run_id: str) -> None:
    """Nest a reused FINISHED cell run under the grid that reuses it (the MLflow UI nests by
    ``mlflow.parentRunId``); the grid that ran it first keeps it in its manifest."""
    tags = {TAG_PARENT: parent_run_id, TAG_STUDY: parent_run_id}
    if TAG_FIRST_PARENT not in run.data.tags and run.data.tags.get(TAG_PARENT):
        tags[TAG_FIRST_PARENT] = run.data.tags[TAG_PARENT]
    TrackedRun(client, run.info.run_id).set_tags(tags)


def _indexed(indices: list[int], cells: list, announce: Callable[[int, CellReport], None]):
    """Map the runner's reports (of the cells run, in any order) back to grid indices."""
    by_cell = {id(cell): index for index, cell in zip(indices, cells, strict=True)}

    def on_report(report: CellReport) -> None:
        announce(by_cell[id(report.cell)], report)

    return on_report


def _write_manifest(parent: TrackedRun, plan: GridPlan, reports: Mapping[int, CellReport]) -> None:
    rows = []
    for index, cell in enumerate(plan.cells):
        report = reports.get(index)
        rows.append(ManifestRow(
            system=cell.system, case=cell.case, seed=cell.seed, profile=cell.profile, label=cell.label,
            config_hash=cell.config_hash, run_id=report.run_id if report else None,
            status=report.status if report else NOT_RUN, error=report.error if report else None,
        ))
    write_manifest(parent, plan.name, str(plan.path), rows)
