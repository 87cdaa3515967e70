"""The configured grid: a study of cells (system x case x seed) from one file in ``conf/``.

A grid file (``conf/paper.yaml``, ``conf/quick.yaml``, ``conf/offline.yaml``,
``conf/smoke.yaml``) lists entries; each entry names a system, its cases, seeds,
profile and any setting overrides, and expands into cells. The whole grid is
resolved and checked before anything runs (:func:`plan_grid`), so a typo never
leaves a half-written study.

:func:`run_grid` records one invocation as one MLflow *parent* run (``rdbench.kind
= grid``) with a child run per cell it runs. A cell whose identical resolved
config (the ``rdbench.config_hash`` tag) already has a FINISHED run in the
experiment is skipped and its run reused, so an interrupted study resumes where
it stopped (``force=True`` reruns everything). A failing cell is FAILED with its
error and the others go on. The parent keeps a manifest (``grid/cells.json``) of
every cell's run, reused ones included, from which :mod:`rdbench.report` builds
Table 1.
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from mlflow.entities import RunStatus
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from rdbench import runner, tracking
from rdbench.config import ConfigError, conf_dir, read_yaml, validate
from rdbench.systems.base import RunContext

TAG_GRID = "rdbench.grid"  # on the parent: the grid's name (file stem)
TAG_GRID_FILE = "rdbench.grid_file"
MANIFEST = "grid/cells.json"  # artifact of the parent: every cell's run, reused ones included
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # makes the MLflow UI open the training-runs view
EXPERIMENT_KIND = "custom_model_development"
SHARED_VIEW = "rdbench-grid"  # the MLflow UI's shared view of the runs (?viewStateShareKey=rdbench-grid)
SHARED_VIEW_TAG = f"mlflow.sharedViewState.{SHARED_VIEW}"


# --------------------------------------------------------------------------- the file


class GridEntry(BaseModel):
    """One entry of a grid file: a system, its cases and seeds, and any overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str = Field(description="a file of conf/systems/ (rd, lstm, ddpm)")
    cases: list[str] = Field(min_length=1, description="cases (rd) or datasets (lstm, ddpm)")
    seeds: list[NonNegativeInt] | None = Field(None, min_length=1, description="default: the grid's seeds")
    profile: str | None = Field(None, description="default: the grid's profile")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted setting -> value")


class GridFile(BaseModel):
    """The schema of ``conf/<grid>.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    profile: str = Field(description="profile of every entry that names none")
    seeds: list[NonNegativeInt] = Field(min_length=1, description="seeds of every entry that names none")
    cells: list[GridEntry] = Field(min_length=1)


@dataclass
class GridPlan:
    """A grid file resolved into checked cells, in the file's order."""

    name: str
    path: Path
    spec: GridFile
    cells: list[runner.Cell]


def grid_path(name_or_path: str | Path) -> Path:
    """``quick`` -> ``conf/quick.yaml``; an existing path is taken as is."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in str(name_or_path):
        return path
    named = conf_dir() / f"{name_or_path}.yaml"
    if not named.exists():
        grids = sorted(p.stem for p in conf_dir().glob("*.yaml") if p.stem != "published")
        raise ConfigError(f"unknown grid {str(name_or_path)!r}; allowed: {', '.join(grids)}, or a grid file's path")
    return named


def load_grid(name_or_path: str | Path) -> tuple[Path, GridFile]:
    path = grid_path(name_or_path)
    return path, validate(GridFile, read_yaml(path), str(path))


def plan_grid(
    name_or_path: str | Path,
    only: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
) -> GridPlan:
    """Load, validate and resolve every cell; any problem is a ConfigError before a run exists.

    ``only`` keeps the cells matching any of the patterns (``ddpm``, ``ddpm/mnist``,
    ``rd/*``, ``rd/spot/seed=1``); ``overrides`` (``--set``) apply to every selected cell.
    """
    path, spec = load_grid(name_or_path)
    cells: list[runner.Cell] = []
    where: dict[str, str] = {}
    for index, entry in enumerate(spec.cells):
        here = f"{path}: cells[{index}] (system {entry.system!r})"
        try:
            planned = runner.plan_cells(
                entry.system, entry.cases, entry.seeds or spec.seeds, entry.profile or spec.profile, entry.overrides
            )
        except ConfigError as exc:
            raise ConfigError(f"{here}: {exc}") from None
        for cell in planned:
            if cell.config_hash in where:
                raise ConfigError(f"{here}: cell {cell.run_name} repeats one of {where[cell.config_hash]}")
            where[cell.config_hash] = f"cells[{index}]"
            cells.append(cell)
    if only:
        cells = select_cells(cells, only, str(path))
    if overrides:  # after --only, so a setting of one system need not exist in the others
        try:
            cells = [
                runner.plan_cells(c.system, [c.case], [c.seed], c.profile, {**c.overrides, **overrides})[0]
                for c in cells
            ]
        except ConfigError as exc:
            raise ConfigError(f"--set: {exc}") from None
    return GridPlan(path.stem, path, spec, cells)


def select_cells(cells: Sequence[runner.Cell], patterns: Sequence[str], source: str) -> list[runner.Cell]:
    """The cells matching any pattern; a pattern that matches nothing is an error."""
    def names(cell: runner.Cell) -> tuple[str, ...]:
        return (cell.system, f"{cell.system}/{cell.case}", cell.label, cell.run_name)

    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for c in cells for n in names(c)):
            rows = sorted({f"{c.system}/{c.case}" for c in cells})
            raise ConfigError(f"--only {pattern!r} matches no cell of {source}; cells: {', '.join(rows)}")
    return [c for c in cells if any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names(c))]


# --------------------------------------------------------------------------- running


@dataclass
class GridResult:
    """How a grid invocation ended: the parent run and one report per cell, in grid order."""

    parent_run_id: str
    experiment: str
    reports: list[runner.CellReport] = field(default_factory=list)
    wall_time_s: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.reports)

    @property
    def failed(self) -> list[runner.CellReport]:
        return [r for r in self.reports if r.status == "FAILED"]

    def summary(self) -> str:
        return (
            f"{len(self.reports)} cells: {self.count('FINISHED')} finished, "
            f"{self.count('SKIPPED')} skipped (already finished), {self.count('FAILED')} failed "
            f"in {self.wall_time_s:.1f} s"
        )


def finished_runs_by_hash(client, experiment_id: str, hashes: set[str]) -> dict[str, Any]:
    """The latest FINISHED cell run of each config hash in ``hashes`` (paged search)."""
    found: dict[str, Any] = {}
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{tracking.TAG_KIND}` = 'cell' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1000,
            page_token=token,
        )
        for run in page:
            h = run.data.tags.get(tracking.TAG_HASH)
            if h in hashes and h not in found:
                found[h] = run
        token = page.token
        if not token:
            return found


class Announcer:
    """The running display: one line per cell with a progress bar and a running tally."""

    def __init__(self, total: int, echo: Callable[[str], None]):
        self.total = total
        self.echo = echo
        self.done = 0
        self.tally = {"FINISHED": 0, "SKIPPED": 0, "FAILED": 0}
        self.start = time.perf_counter()

    def __call__(self, report: runner.CellReport) -> None:
        self.done += 1
        self.tally[report.status] = self.tally.get(report.status, 0) + 1
        width = 12
        filled = round(width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        if report.status == "FAILED":
            detail = report.error or ""
        else:
            m = report.metrics
            detail = "  ".join(f"{k}={m[k]:.4f}" for k in ("M_react", "M_diff", "R", "R_final") if k in m)
        elapsed = time.perf_counter() - self.start
        self.echo(
            f"[{self.done:>{len(str(self.total))}}/{self.total} {bar}] {report.cell.run_name:<34s} "
            f"{report.status:<8s} {detail}"
        )
        self.echo(
            f"    so far: {self.tally['FINISHED']} finished, {self.tally['SKIPPED']} skipped, "
            f"{self.tally['FAILED']} failed; {elapsed:.0f} s; run {report.run_id}"
        )


def shared_view_state(chart_filter: str = "R_t") -> dict[str, Any]:
    """The MLflow UI's experiment-page state for comparing cells (what its "Share" button saves).

    Runs sorted by name, not date, so cell runs are listed flat beside their
    parent; metric charts filtered to ``R_t`` (R_t on each system's own step
    axis, R_t_norm on the common 0..1000 axis: every cell overlaid); columns
    system, case, seed, R and R_final.
    """
    return {
        "searchFilter": "", "orderByKey": "attributes.`run_name`", "orderByAsc": True, "startTime": "ALL",
        "lifecycleFilter": "Active", "modelVersionFilter": "All Runs", "datasetsFilter": [],
        "runsHiddenMode": "SHOW_ALL", "chartsSearchFilter": chart_filter, "hideEmptyCharts": True,
        "selectedColumns": [f"tags.`{tracking.TAG_SYSTEM}`", f"tags.`{tracking.TAG_CASE}`", f"tags.`{tracking.TAG_SEED}`",
                            "metrics.`R`", "metrics.`R_final`"],
    }


def prepare_ui(client, exp_id: str) -> None:
    """Experiment tags for the MLflow UI: open the training-runs view; a shared view for comparing cells."""
    tags = client.get_experiment(exp_id).tags
    if EXPERIMENT_KIND_TAG not in tags:
        client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    if SHARED_VIEW_TAG not in tags:
        client.set_experiment_tag(exp_id, SHARED_VIEW_TAG, json.dumps(shared_view_state()))


def compare_url(exp_id: str, base: str = "http://127.0.0.1:5000", mode: str = "CHART") -> str:
    """Where the MLflow UI shows the shared view of an experiment's cells."""
    return f"{base}/#/experiments/{exp_id}/runs?viewStateShareKey={SHARED_VIEW}&compareRunsMode={mode}"


def run_grid(
    plan: GridPlan,
    experiment: str,
    ctx: RunContext,
    *,
    force: bool = False,
    parent_run_id: str | None = None,
    echo: Callable[[str], None] = print,
) -> GridResult:
    """Run ``plan`` under one parent run; return how every cell ended.

    ``parent_run_id`` adopts an existing run as the parent (``mlflow run``'s
    MLFLOW_RUN_ID); otherwise a new parent run is created. The parent is left
    FINISHED when every cell finished or was reused, FAILED otherwise (an adopted
    parent is left to ``mlflow run``, which ends it from the exit status).
    """
    client = tracking.client()
    exp_id = tracking.experiment_id(client, experiment)
    prepare_ui(client, exp_id)
    parent_tags = {tracking.TAG_KIND: "grid", TAG_GRID: plan.name, TAG_GRID_FILE: str(plan.path)}
    if parent_run_id:  # named like a parent rdbench made (MLflow gave it a random name)
        parent = tracking.TrackedRun.adopt(
            client, parent_run_id, {**parent_tags, tracking.TAG_RUN_NAME: f"grid:{plan.name}"}
        )
    else:
        parent = tracking.TrackedRun.create(client, experiment, f"grid:{plan.name}", parent_tags)
    result = GridResult(parent.run_id, experiment)
    announce = Announcer(len(plan.cells), echo)
    start = time.perf_counter()
    reports: dict[int, runner.CellReport] = {}
    try:
        parent.log_params(
            {"grid": plan.name, "grid_file": str(plan.path), "cells": len(plan.cells),
             "force": force, "device": str(ctx.device)}
        )
        parent.log_artifact(plan.path, "grid")
        reused = {} if force else finished_runs_by_hash(client, exp_id, {c.config_hash for c in plan.cells})
        to_run: list[int] = []
        for index, cell in enumerate(plan.cells):
            old = reused.get(cell.config_hash)
            if old is None:
                to_run.append(index)
                continue
            reports[index] = runner.CellReport(
                cell, old.info.run_id, "SKIPPED", metrics=dict(old.data.metrics)
            )
            announce(reports[index])
        if to_run:
            ran = runner.run_cells(
                [plan.cells[i] for i in to_run], experiment, ctx,
                parent_run_id=parent.run_id, on_report=announce,
            )
            reports.update(zip(to_run, ran, strict=True))
    except KeyboardInterrupt as exc:
        _write_manifest(parent, plan, reports)
        if not parent_run_id:
            parent.fail(exc)
        raise
    result.reports = [reports[i] for i in range(len(plan.cells))]
    result.wall_time_s = time.perf_counter() - start
    _write_manifest(parent, plan, reports)
    parent.log_metrics(
        {"cells_total": len(result.reports), "cells_finished": result.count("FINISHED"),
         "cells_skipped": result.count("SKIPPED"), "cells_failed": result.count("FAILED"),
         "wall_time_s": result.wall_time_s}
    )
    if result.failed:
        reason = f"{len(result.failed)} of {len(result.reports)} cells failed: " + "; ".join(
            f"{r.cell.run_name}: {r.error}" for r in result.failed
        )
        if parent_run_id:
            parent.set_tags({tracking.TAG_ERROR: tracking.one_line(RuntimeError(reason))})
        else:
            parent.end(RunStatus.FAILED, tracking.one_line(RuntimeError(reason)))
    elif not parent_run_id:
        parent.finish()
    return result


def _write_manifest(parent: tracking.TrackedRun, plan: GridPlan, reports: Mapping[int, runner.CellReport]) -> None:
    """``grid/cells.json`` on the parent: each cell of the plan with its run and status."""
    rows = []
    for index, cell in enumerate(plan.cells):
        report = reports.get(index)
        rows.append(
            {
                "system": cell.system, "case": cell.case, "seed": cell.seed, "profile": cell.profile,
                "label": cell.label, "config_hash": cell.config_hash,
                "run_id": report.run_id if report else None,
                "status": report.status if report else "NOT_RUN",
                "error": report.error if report else None,
            }
        )
    parent.log_dict({"grid": plan.name, "grid_file": str(plan.path), "cells": rows}, MANIFEST)



# --------------------------------------------------------------------------- command


@click.command(
    "grid",
    epilog=(
        "Examples:\n\n"
        "  rdbench grid conf/offline.yaml          # RD, LSTM, DDPM on digits; no network\n\n"
        "  rdbench grid quick --only ddpm/mnist    # one row of the quick grid\n\n"
        "  rdbench grid paper --only 'rd/*' --force\n\n"
        "A cell whose identical resolved config already has a FINISHED run in the\n"
        "experiment is skipped (its run is reused); --force reruns it."
    ),
)
@click.argument("grid_file")
@click.option("--only", multiple=True, metavar="PATTERN",
              help="Run only the matching cells: ddpm, ddpm/mnist, 'rd/*', rd/spot/seed=1. Repeatable.")
@click.option("--force", is_flag=True, help="Rerun cells that already have a FINISHED run.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a setting in every cell. Repeatable.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--experiment", default=None, help="MLflow experiment. Default: $MLFLOW_EXPERIMENT_NAME or 'rdbench'.")
@click.option("--data-dir", default=None, help="Where datasets are downloaded (default: $RDBENCH_DATA_DIR or a cache folder).")
@click.option("--resume", is_flag=True, help="Close RUNNING runs a killed process left and continue from checkpoints.")
@click.option("--report/--no-report", default=True, show_default=True,
              help="Regenerate Table 1, Fig. 2 and Fig. 3 at the end and log them to the parent run.")
@click.option("--out", "out_dir", default="outputs/report", show_default=True, help="Where the table and figures are written.")
@click.option("--log-scale", is_flag=True, help="Fig. 2 with a logarithmic R_t axis.")
def grid_command(grid_file, only, force, sets, device, experiment, data_dir, resume, report, out_dir, log_scale) -> None:
    """Run the grid GRID_FILE (conf/paper.yaml, quick, offline, smoke...) as one parent MLflow run.

    Every cell (system x case x seed) is a child run. A failing cell is marked
    FAILED and the others go on; the command then exits non-zero.
    """
    from rdbench import cli

    try:
        plan = plan_grid(grid_file, only, cli.parse_sets(sets))
    except ConfigError as exc:
        raise cli.CliError(str(exc)) from None
    ctx = cli.common_run_context(device, data_dir, resume)
    client = tracking.client()
    parent = tracking.active_env_run_id()
    if parent:  # under `mlflow run`: its run is the parent, in its experiment
        experiment = client.get_experiment(client.get_run(parent).info.experiment_id).name
    experiment = cli.experiment_name(experiment)
    click.echo(f"grid {plan.name} ({plan.path}): {len(plan.cells)} cells -> experiment {experiment!r}, "
               f"store {client.tracking_uri}")
    result = run_grid(plan, experiment, ctx, force=force, parent_run_id=parent, echo=click.echo)
    click.echo(f"grid {plan.name}: {result.summary()}; parent run {result.parent_run_id}")
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    click.echo(f"compare the cells: `mlflow ui --backend-store-uri {client.tracking_uri}`, then {compare_url(exp_id)}")
    if report and (result.count("FINISHED") or result.count("SKIPPED")):
        from rdbench.report import print_report

        print_report(client, result.parent_run_id, experiment, out_dir, log_scale=log_scale)
    if result.failed:
        raise cli.CliError(
            f"{len(result.failed)} of {len(result.reports)} cells failed: "
            + "; ".join(f"{r.cell.run_name}: {r.error}" for r in result.failed)
        )
