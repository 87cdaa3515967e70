"""rdbench from Python: the five public functions, and the steps the ``rdbench`` commands share with them.

    import rdbench

    result = rdbench.run("rd", case="spot", seed=0, profile="smoke", steps=200)
    result.R, result.R_t              # the Mean Dynamic Balance Ratio (Eq. 18) and R_t (Eq. 20)
    study = rdbench.grid("smoke")     # a grid file's cells under one parent run
    rdbench.table(study)              # Table 1 as a pandas DataFrame
    rdbench.phase("rd", feed="0.02:0.06:3", kill="0.05:0.065:3", profile="smoke")
    rdbench.load(result.run_id)       # any run read back from the tracking store

Only :func:`run`, :func:`grid`, :func:`table`, :func:`phase` and :func:`load` (and the
objects they return) are public (``rdbench.__all__``; docs/api.md); the other names here
are the steps the commands compose with their printing, and may change. A command and
its function go through the same code: ``rdbench run`` is :func:`plan_run`,
:func:`run_context` and :func:`run_cells`, as :func:`run` is.

The store is MLflow's configured one (``MLFLOW_TRACKING_URI``, default
``sqlite:///mlflow.db`` in the working directory) unless ``tracking_uri`` is given (it
then stays set for the process, as ``mlflow.set_tracking_uri`` does); the experiment is
``experiment``, else ``$MLFLOW_EXPERIMENT_NAME``, else ``rdbench``. Bad input raises
:class:`rdbench.config.ConfigError` (a ``ValueError``) before any run exists.

Module-level imports are the standard library only: the commands import this module
before they know whether torch is needed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["grid", "load", "phase", "run", "table"]

DEFAULT_EXPERIMENT = "rdbench"
SERIES_FILE = "balance/model_series.csv"  # what TrackedRun.log_balance writes for the real model
PHASE_TABLE = "phase/points.csv"  # what a phase map logs when it is complete
EXECUTORS = ("in-process", "ray")


def experiment_name(option: str | None = None) -> str:
    """``option``, else ``$MLFLOW_EXPERIMENT_NAME``, else ``rdbench``."""
    return option or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


# --------------------------------------------------------------------------- results


@dataclass
class RunResult:
    """One cell run: its identity, status, the balance summary and the per-step series.

    ``R``, ``M_react``, ``M_diff`` and ``R_final`` are numpy float64 (nan when the run
    did not finish); ``R_t``, ``react_t``, ``diff_t`` (the sample means of the norms at
    each recorded step), ``steps`` and ``t_norm`` (normalised time) are numpy arrays.
    ``metrics``, ``params`` and ``tags`` are the run's, as MLflow stores them.
    """

    run_id: str
    status: str
    system: str
    case: str
    seed: int
    profile: str
    experiment: str
    R: np.float64
    M_react: np.float64
    M_diff: np.float64
    R_final: np.float64
    R_t: np.ndarray
    react_t: np.ndarray
    diff_t: np.ndarray
    steps: np.ndarray
    t_norm: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    def __repr__(self) -> str:
        return (f"RunResult({self.system}/{self.case} seed={self.seed} [{self.profile}] {self.status}: "
                f"R={self.R:.4f} M_react={self.M_react:.4g} M_diff={self.M_diff:.4g}, "
                f"{len(self.R_t)} steps, run_id={self.run_id!r})")


@dataclass
class StudyCell:
    """One cell of a study and the run that holds its result (its own, or an earlier one reused)."""

    name: str
    run_id: str | None
    status: str  # FINISHED, SKIPPED (an earlier FINISHED run reused), FAILED, KILLED, NOT_RUN
    error: str | None = None


@dataclass
class Study:
    """A grid run: its parent run and its cells; :meth:`table` is its Table 1."""

    parent_run_id: str
    name: str
    experiment: str
    cells: list[StudyCell] = field(default_factory=list)
    wall_time_s: float | None = None  # None when read back with load()

    @property
    def run_ids(self) -> list[str]:
        return [c.run_id for c in self.cells if c.run_id]

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.cells)

    def table(self, published: str | Path | None = None) -> pd.DataFrame:
        """Table 1 of this study (:func:`table`)."""
        return table(self, published=published)

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {s.lower()}" for s in ("FINISHED", "SKIPPED", "FAILED", "KILLED", "NOT_RUN")
                           if (n := self.count(s)))
        return f"Study({self.name!r}, parent_run_id={self.parent_run_id!r}, {len(self.cells)} cells: {counts})"


class RunFailed(RuntimeError):
    """:func:`run`'s cell ended FAILED or KILLED; ``result`` is the run read back (with its error)."""

    def __init__(self, result: RunResult):
        super().__init__(f"{result.system}/{result.case} seed={result.seed}: {result.status}: {result.error}")
        self.result = result


# --------------------------------------------------------------------------- the store


def use_store(tracking_uri: str | None) -> Any:
    """A client on ``tracking_uri`` (set for the process) or on the configured store, checked and
    created once (:func:`~rdbench.tracking.store.open_store`)."""
    from rdbench.tracking.store import open_store

    if tracking_uri is not None:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
    return open_store()


def open_tracking(tracking_uri: str | None = None) -> tuple[Any, list[str]]:
    """The store's client, and the runs a killed process had left RUNNING, now marked KILLED."""
    from rdbench.tracking.liveness import close_orphans

    client = use_store(tracking_uri)
    return client, close_orphans(client)


# --------------------------------------------------------------------------- run


def default_progress(total: int, label: str = "") -> Any:
    """A bar on a terminal, timestamped lines elsewhere (a notebook, a log): :mod:`rdbench.progress`."""
    from rdbench.progress import progress

    return progress(total, label)


def run_context(device: str = "auto", data_dir: str | Path | None = None, resume: bool = True, fresh: bool = False,
                progress: Callable | None = None) -> Any:
    """The :class:`~rdbench.systems.base.RunContext` of a run (a bad device or
    ``$RDBENCH_PROGRESS_S`` raises ValueError before anything starts)."""
    from rdbench.progress import interval_s
    from rdbench.systems.base import RunContext, resolve_device

    interval_s()
    return RunContext(device=resolve_device(device), progress=progress or default_progress,
                      data_dir=Path(data_dir) if data_dir else None, resume=resume, fresh=fresh)


def plan_run(system: str, cases: Sequence[str] | None = None, seeds: Sequence[int] = (0,), profile: str = "paper",
             settings: Mapping[str, Any] | None = None, config: str | Path | None = None,
             model: str | None = None, data_dir: str | Path | None = None,
             on_note: Callable[[str], None] | None = None) -> list:
    """The checked cells of ``rdbench run`` (cases x seeds); ConfigError before any run exists.

    With ``model`` and no case, the system picks the case that fits the model (a pretrained
    DDPM pipeline's image shape picks its dataset) and says which through ``on_note``."""
    from rdbench.config import ConfigError, available_systems
    from rdbench.study.cells import plan_cells, plugin

    if system not in available_systems() and config is None:
        raise ConfigError(f"unknown system {system!r}; allowed: {', '.join(available_systems())}")
    overrides = dict(settings or {})
    if model is not None:
        impl = plugin(system, config).system
        if "pretrained" not in impl.Settings.model_fields:
            raise ConfigError(f"--model: system {system!r} measures only models it trains itself (no pretrained setting)")
        overrides["pretrained"] = model
        chosen = None if cases else impl.case_for_model(model, Path(data_dir) if data_dir else None)
        if chosen:
            case, extra, note = chosen
            cases, overrides = (case,), {**extra, **overrides}
            if on_note is not None:
                on_note(note)
    return plan_cells(system, cases or None, seeds or (0,), profile, overrides, config)


def run_cells(cells: Sequence[Any], ctx: Any, experiment: str | None = None,
              on_report: Callable[[Any], None] | None = None) -> list:
    """Run planned cells, one MLflow run each (under ``mlflow run``, in or beside its run); returns
    one :class:`~rdbench.study.runner.CellReport` per cell. The store must be open (:func:`use_store`)."""
    from rdbench.study.runner import check_memory, check_runs
    from rdbench.study.runner import run_cells as run_planned
    from rdbench.tracking.projects import point_to, project_run
    from rdbench.tracking.store import client as tracking_client

    check_memory(cells, ctx.device)
    check_runs(cells, ctx)  # --no-resume over a checkpoint, another process training it: before any run
    client = tracking_client()
    project = project_run(client, experiment, experiment_name(experiment))  # under `mlflow run`
    name = project.experiment if project else experiment_name(experiment)
    adopt = project.run_id if project and project.adopt and len(cells) == 1 else None
    parent = project.run_id if project and project.adopt and len(cells) > 1 else None
    if project and not project.adopt:  # MLflow's run in `Default` points to the runs rdbench makes
        point_to(client, project, [("(starting)", cell.run_name) for cell in cells])
    reports = run_planned(cells, name, ctx, parent_run_id=parent, adopt_run_id=adopt, on_report=on_report)
    if project:
        point_to(client, project, [(r.run_id, r.cell.run_name) for r in reports if r.run_id])
    return reports


def run(system: str, case: str | None = None, seed: int = 0, profile: str = "paper", *, device: str = "auto",
        experiment: str | None = None, tracking_uri: str | None = None, data_dir: str | Path | None = None,
        resume: bool = True, fresh: bool = False, model: str | None = None, config: str | Path | None = None,
        progress: Callable | None = None, **settings: Any) -> RunResult:
    """Run one cell of ``system`` (``rd``, ``lstm``, ``ddpm``...) as ``rdbench run`` does; return it.

    ``case`` is the case or dataset (default: the system's), ``profile`` one of the system
    file's profiles (``paper``, ``quick``, ``smoke``), and ``settings`` any setting of
    ``conf/systems/<system>.yaml`` (nested ones by their dotted name: ``**{"early_stop.tolerance": 0}``).
    ``fresh=True`` trains from scratch instead of continuing from the config's checkpoint
    (DDPM); ``model`` measures a logged or public model instead of training one.
    Raises :class:`RunFailed` if the cell fails (its run is FAILED in the store).
    """
    cells = plan_run(system, [case] if case else None, [seed], profile, settings, config, model, data_dir, print)
    ctx = run_context(device, data_dir, resume, fresh, progress)
    open_tracking(tracking_uri)  # runs a killed process left RUNNING are closed first
    (report,) = run_cells(cells, ctx, experiment)
    if report.run_id is None:
        raise RuntimeError(f"{report.cell.run_name}: {report.status}: {report.error}")
    result = load(report.run_id)
    if report.status not in ("FINISHED", "SKIPPED"):
        raise RunFailed(result)
    return result


# --------------------------------------------------------------------------- grid


@dataclass
class StudyPlan:
    """A grid planned and checked: its cells, its phase maps (each with its chunk rows and
    memory budget) and the run context; nothing has run yet."""

    grid: Any  # rdbench.study.grid.GridPlan
    maps: list[tuple[Any, int, int]]
    ctx: Any
    settings: dict[str, Any]


@contextlib.contextmanager
def _grid_file(path_or_dict: str | Path | Mapping[str, Any], name: str | None) -> Iterator[str | Path]:
    """A grid file's name or path as given, or a dict written to ``<name>.yaml`` in a temporary folder
    (the file the parent run keeps as its artifact)."""
    if not isinstance(path_or_dict, Mapping):
        yield path_or_dict
        return
    import yaml

    with tempfile.TemporaryDirectory(prefix="rdbench-grid-") as tmp:
        path = Path(tmp) / f"{name or 'grid'}.yaml"
        path.write_text(yaml.safe_dump(dict(path_or_dict), sort_keys=False))
        yield path


def plan_study(grid_file: str | Path, only: Sequence[str] = (), settings: Mapping[str, Any] | None = None,
               ctx: Any = None, name: str | None = None, check_memory_here: bool = True) -> StudyPlan:
    """Load, validate and resolve a grid file's cells and phase maps (``--only`` leaves out the maps),
    and check that they fit the device's memory: any problem is a ConfigError before a run exists.
    ``name`` names the study (default: the grid file's name). ``check_memory_here=False`` leaves the
    memory check to the executor (on Ray, each batch is estimated on a worker, not on the driver)."""
    from rdbench.phase.plan import plan_grid_maps
    from rdbench.study.grid import plan_grid
    from rdbench.study.runner import check_memory

    ctx = ctx or run_context()
    settings = dict(settings or {})
    plan = plan_grid(grid_file, only, settings, name=name)
    maps = [] if only else plan_grid_maps(plan, settings, ctx.device)  # --only picks cells
    if check_memory_here:
        check_memory(plan.cells, ctx.device)
    return StudyPlan(plan, maps, ctx, settings)


@contextlib.contextmanager
def executor_for(kind: str, address: str | None = None, workers: int | None = None, uri: str | None = None):
    """The executor ``kind`` names (``in-process`` or ``ray``), connected; a ConfigError if it cannot be used."""
    from rdbench.config import ConfigError

    if kind not in EXECUTORS:
        raise ConfigError(f"unknown executor {kind!r}; allowed: {', '.join(EXECUTORS)}")
    if kind != "ray":
        if address or workers:
            raise ConfigError("--address and --workers go with --executor ray")
        from rdbench.study.executor import InProcess

        yield InProcess()
        return
    from rdbench.study.ray_executor import RayExecutor
    from rdbench.tracking.store import tracking_uri

    with RayExecutor(address, workers, uri or tracking_uri()) as ray_executor:
        yield ray_executor


def run_study(planned: StudyPlan, executor: Any, experiment: str | None = None, *, force: bool = False,
              on_report: Callable[[Any], None] | None = None) -> Any:
    """Run a planned grid's cells under one parent run (under ``mlflow run``, its run is the parent);
    returns the :class:`~rdbench.study.execution.GridResult`. The store must be open."""
    from rdbench.study.execution import run_grid
    from rdbench.tracking.projects import point_to, project_run
    from rdbench.tracking.store import client as tracking_client

    client = tracking_client()
    project = project_run(client, experiment, experiment_name(experiment))  # under `mlflow run`
    name = project.experiment if project else experiment_name(experiment)
    parent = project.run_id if project and project.adopt else None  # MLflow's run is the parent
    result = run_grid(planned.grid, name, planned.ctx, force=force, parent_run_id=parent, on_report=on_report,
                      executor=executor)
    if project:
        point_to(client, project, [(result.parent_run_id, f"grid:{planned.grid.name}")])
    return result


def grid(path_or_dict: str | Path | Mapping[str, Any], executor: str = "in-process", *, only: Sequence[str] = (),
         settings: Mapping[str, Any] | None = None, force: bool = False, fresh: bool = False, device: str = "auto",
         experiment: str | None = None, tracking_uri: str | None = None, data_dir: str | Path | None = None,
         resume: bool = True, address: str | None = None, workers: int | None = None, name: str | None = None,
         progress: Callable | None = None, on_report: Callable[[Any], None] | None = None) -> Study:
    """Run a grid as ``rdbench grid`` does (its cells under one parent run, then its phase maps); return the study.

    ``path_or_dict`` is a grid file's path, a shipped grid's name (``smoke``, ``quick``,
    ``offline``, ``paper``), or the file's content as a dict (written to ``<name>.yaml``,
    ``name`` defaulting to ``grid``). ``only`` keeps the matching cells (``rd``,
    ``rd/spot``, ``rd/spot/seed=1``; the maps are then left out), ``settings`` apply to
    every cell. A cell whose identical config already FINISHED is reused unless ``force``;
    ``fresh`` trains from scratch (and so implies ``force``). ``executor="ray"`` runs each
    batch as a Ray task (``address``: a running cluster; ``workers``: CPUs of a local one).
    ``on_report`` is called with each cell's report as it ends (``.cell.run_name``, ``.status``,
    ``.metrics``, ``.run_id``).
    """
    ctx = run_context(device, data_dir, resume, fresh, progress)
    with _grid_file(path_or_dict, name) as grid_file:
        planned = plan_study(grid_file, only, settings, ctx, name=name, check_memory_here=executor != "ray")
        client, _ = open_tracking(tracking_uri)
        with executor_for(executor, address, workers, client.tracking_uri) as runner:
            result = run_study(planned, runner, experiment, force=force or fresh, on_report=on_report)
    for phase_plan, rows, budget in planned.maps:
        run_map(phase_plan, rows, budget, ctx.device, result.experiment, resume, parent_run_id=result.parent_run_id)
    return Study(result.parent_run_id, planned.grid.name, result.experiment,
                 [StudyCell(r.cell.run_name, r.run_id, r.status, r.error) for r in result.reports],
                 result.wall_time_s)


# --------------------------------------------------------------------------- table


def build_report(study: Study | str | None = None, *, experiment: str | None = None, all_cells: bool = False,
                 published: str | Path | None = None, tracking_uri: str | None = None) -> Any:
    """The :class:`~rdbench.report.publish.Report` (cells and Table 1) of a study, a parent run id, the latest
    grid of ``experiment`` (None) or, with ``all_cells``, every cell of it: what ``rdbench table`` prints."""
    from rdbench.config import ConfigError
    from rdbench.report.publish import build_report as report_of
    from rdbench.report.selection import select_runs

    parent = study.parent_run_id if isinstance(study, Study) else study
    if parent and all_cells:
        raise ConfigError("--parent and --all-cells exclude each other")
    if isinstance(study, Study) and experiment is None:
        experiment = study.experiment
    client = use_store(tracking_uri)
    return report_of(select_runs(client, experiment_name(experiment), parent, all_cells), published)


def table(study: Study | str | None = None, *, experiment: str | None = None, all_cells: bool = False,
          published: str | Path | None = None, tracking_uri: str | None = None) -> pd.DataFrame:
    """Table 1 as a DataFrame: one row per system and case, the mean and spread of M_react, M_diff, R and
    R_final over seeds, the controls, and the published values beside them (as ``rdbench table``).

    ``study`` is a :class:`Study`, a grid's parent run id, or None for the latest grid of
    ``experiment``; ``all_cells`` takes every cell of the experiment instead.
    """
    return build_report(study, experiment=experiment, all_cells=all_cells, published=published,
                        tracking_uri=tracking_uri).table


# --------------------------------------------------------------------------- phase


def plan_map(system: str, feed: str, kill: str, seeds: Sequence[int] = (0,), profile: str = "paper",
             settings: Mapping[str, Any] | None = None, variant: str = "") -> Any:
    """A checked phase map (:func:`~rdbench.phase.plan.plan_map`); ConfigError before any run exists.
    ``variant`` names a second map of the same points under changed settings (``--compare``)."""
    from rdbench.config import ConfigError, available_systems
    from rdbench.phase.plan import plan_map as plan

    if system not in available_systems():
        raise ConfigError(f"unknown system {system!r}; allowed: {', '.join(available_systems())}")
    return plan(system, feed, kill, seeds or (0,), profile, dict(settings or {}), variant)


def size_chunks(plan: Any, device: Any, max_memory: str | int | None = None) -> tuple[int, int]:
    """(rows per chunk, memory budget in bytes) of a planned map on ``device``."""
    from rdbench.phase.plan import size_chunks as size

    return size(plan, device, max_memory)


def run_map(plan: Any, rows: int, budget: int, device: Any, experiment: str | None = None, resume: bool = True, *,
            parent_run_id: str | None = None, on_chunk: Callable | None = None) -> Any:
    """Run a planned map into one MLflow run (:func:`~rdbench.phase.mapping.run_phase_map`). The store
    must be open."""
    from rdbench.phase.mapping import run_phase_map

    return run_phase_map(plan, experiment_name(experiment), device, rows, budget_bytes=budget, resume=resume,
                         parent_run_id=parent_run_id, on_chunk=on_chunk)


def phase(system: str, feed: str, kill: str, seeds: Sequence[int] = (0,), profile: str = "paper", *,
          max_memory: str | int | None = None, device: str = "auto", experiment: str | None = None,
          tracking_uri: str | None = None, resume: bool = True, **settings: Any) -> pd.DataFrame:
    """Map R, R_final and the pattern over the (F, k) plane, as ``rdbench phase`` does; return the map's table.

    ``feed`` and ``kill`` are ``START:STOP:N`` axes; one row per (F, k, seed). A map already
    finished with the same settings is read back (``resume=False`` runs it again). The
    table's ``attrs`` hold the map's ``run_id`` and ``status``.
    """
    plan = plan_map(system, feed, kill, seeds, profile, settings)
    ctx = run_context(device)
    rows, budget = size_chunks(plan, ctx.device, max_memory)
    open_tracking(tracking_uri)
    result = run_map(plan, rows, budget, ctx.device, experiment, resume)
    points = result.table.drop(columns=["chunk_wall_s", "chunk_cell_updates"], errors="ignore")
    if result.status == "SKIPPED" or points.empty:
        points = _phase_table(result.run_id)
    points.attrs.update(run_id=result.run_id, status=result.status)
    return points


def _phase_table(run_id: str) -> pd.DataFrame:
    import pandas as pd

    from rdbench.tracking.store import client as tracking_client
    from rdbench.tracking.store import quiet_downloads

    with tempfile.TemporaryDirectory() as tmp, quiet_downloads():
        return pd.read_csv(tracking_client().download_artifacts(run_id, PHASE_TABLE, tmp))


# --------------------------------------------------------------------------- load


def load(run_id: str, *, tracking_uri: str | None = None) -> RunResult | Study | pd.DataFrame:
    """Read any run rdbench made back from the store: a cell run as the :class:`RunResult` :func:`run`
    returns, a grid's parent as the :class:`Study` :func:`grid` returns, a phase map as the table
    :func:`phase` returns."""
    from rdbench.config import ConfigError
    from rdbench.tracking.tags import KIND_GRID, KIND_PHASE, TAG_KIND

    client = use_store(tracking_uri)
    try:
        found = client.get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - MlflowException on an unknown id
        raise ConfigError(f"no run {run_id!r} in the tracking store {client.tracking_uri}") from exc
    kind = found.data.tags.get(TAG_KIND)
    if kind == KIND_GRID:
        return _load_study(client, found)
    if kind == KIND_PHASE:
        points = _phase_table(run_id)
        points.attrs.update(run_id=run_id, status=found.info.status)
        return points
    return _load_cell(client, found)


def _load_cell(client: Any, found: Any) -> RunResult:
    import numpy as np
    import pandas as pd

    from rdbench.tracking.store import quiet_downloads
    from rdbench.tracking.tags import TAG_CASE, TAG_ERROR, TAG_PROFILE, TAG_SEED, TAG_SYSTEM

    tags, metrics = found.data.tags, found.data.metrics
    series = pd.DataFrame()
    with tempfile.TemporaryDirectory() as tmp, quiet_downloads(), contextlib.suppress(Exception):
        series = pd.read_csv(client.download_artifacts(found.info.run_id, SERIES_FILE, tmp))

    def column(name: str) -> np.ndarray:
        return series[name].to_numpy() if name in series else np.array([], dtype=float)

    def scalar(name: str) -> np.float64:
        return np.float64(metrics.get(name, np.nan))

    return RunResult(
        run_id=found.info.run_id, status=found.info.status, system=tags.get(TAG_SYSTEM, ""),
        case=tags.get(TAG_CASE, ""), seed=int(tags.get(TAG_SEED, -1)), profile=tags.get(TAG_PROFILE, ""),
        experiment=client.get_experiment(found.info.experiment_id).name,
        R=scalar("R"), M_react=scalar("M_react"), M_diff=scalar("M_diff"), R_final=scalar("R_final"),
        R_t=column("R_t"), react_t=column("react_t"), diff_t=column("diff_t"), steps=column("step").astype(np.int64),
        t_norm=column("t_norm"), metrics=dict(metrics), params=dict(found.data.params), tags=dict(tags),
        error=tags.get(TAG_ERROR),
    )


def _load_study(client: Any, found: Any) -> Study:
    from rdbench.study.cells import PAPER
    from rdbench.tracking.manifest import read_manifest
    from rdbench.tracking.tags import TAG_GRID

    rows = read_manifest(client, found.info.run_id)
    cells = [StudyCell(f"{r.label}/seed={r.seed}" + ("" if r.profile == PAPER else f" [{r.profile}]"),
                       r.run_id, r.status, r.error) for r in rows]
    return Study(found.info.run_id, found.data.tags.get(TAG_GRID, found.info.run_name),
                 client.get_experiment(found.info.experiment_id).name, cells)
