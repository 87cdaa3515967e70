"""Which cell runs a report covers, read from the tracking store.

The cells of a grid's parent run (its children plus the FINISHED runs it reused,
in the order of its manifest), of the latest whole grid of an experiment (a partial
run, of ``--only`` or ``--set``, is read only when named by ``--parent``), or every
cell of an experiment (the latest run of each config). ``--parent`` takes a parent's
run id or its study's short id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rdbench.config import ConfigError
from rdbench.tracking.manifest import read_manifest
from rdbench.tracking.runs import one_line
from rdbench.tracking.store import search_runs
from rdbench.tracking.tags import (
    KIND_CELL,
    KIND_GRID,
    TAG_GRID,
    TAG_HASH,
    TAG_KIND,
    TAG_PARENT,
    TAG_PARTIAL,
    TAG_STUDY_ID,
    TAG_STUDY_NAME,
)

SEARCH_PAGE = 50  # grid runs read at a time while looking for the latest whole one


@dataclass
class Selection:
    """Cell runs read from the store, in grid order, and where they came from.

    ``study`` and ``study_id`` name a grid's study (its name and short id); ``partial``
    says what a partial run left out; ``missing`` lists the cells of its manifest that
    never got a run (``system/case/seed=N``, the cell's label)."""

    experiment: str
    description: str
    parent_run_id: str | None = None
    runs: list[Any] = field(default_factory=list)  # mlflow.entities.Run
    study: str | None = None
    study_id: str | None = None
    partial: str | None = None
    missing: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        """``study 'smoke' [1a2b3c4d]`` (``, partial: --only rd/spot``), or ``every cell of experiment 'x'``."""
        if self.study is None:
            return self.description
        return f"study {self.study!r} [{self.study_id}]" + (f", partial: {self.partial}" if self.partial else "")


def _experiment(client: Any, name: str) -> Any:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        raise ConfigError(f"no experiment {name!r} in the tracking store {client.tracking_uri}")
    return exp


def latest_grid_run(client: Any, experiment: str) -> Any:
    """The latest grid run of ``experiment`` that ran its whole grid (a partial one only by ``--parent``)."""
    exp = _experiment(client, experiment)
    token, partial = None, []
    while True:
        page = client.search_runs(
            [exp.experiment_id], filter_string=f"tags.`{TAG_KIND}` = '{KIND_GRID}'",
            order_by=["attributes.start_time DESC"], max_results=SEARCH_PAGE, page_token=token,
        )
        for run in page:
            if TAG_PARTIAL not in run.data.tags:
                return run
            partial.append(run)
        token = page.token
        if not token:
            break
    if partial:
        ids = ", ".join(f"{r.data.tags.get(TAG_STUDY_ID, r.info.run_id)} ({r.data.tags[TAG_PARTIAL]})"
                        for r in partial[:3])
        raise ConfigError(f"experiment {experiment!r} has only partial grid runs (--only, --set): {ids}; "
                          "name one with --parent, or pass --all-cells")
    raise ConfigError(f"experiment {experiment!r} has no grid run; run `rdbench grid` first, or pass --all-cells")


def find_parent(client: Any, run_or_study_id: str) -> Any:
    """A grid's parent run by its run id or its study's short id (``rdbench.study_id``), in any experiment."""
    try:
        return client.get_run(run_or_study_id)
    except Exception as exc:  # noqa: BLE001 - MlflowException on an unknown id
        error = one_line(exc)
    ids = [e.experiment_id for e in client.search_experiments()]
    found = search_runs(client, ids, f"tags.`{TAG_STUDY_ID}` = '{run_or_study_id}' and tags.`{TAG_KIND}` = '{KIND_GRID}'")
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ConfigError(f"study id {run_or_study_id!r} names {len(found)} grid runs: "
                          f"{', '.join(r.info.run_id for r in found)}; pass the full run id")
    raise ConfigError(f"no run {run_or_study_id!r} in the tracking store (neither a run id nor a study id): {error}")


def select_runs(
    client: Any,
    experiment: str | None = None,
    parent_run_id: str | None = None,
    all_cells: bool = False,
) -> Selection:
    """The cell runs of a parent run, of the latest grid of ``experiment``, or (``all_cells``) all of it."""
    if parent_run_id is None and not all_cells:
        parent_run_id = latest_grid_run(client, experiment).info.run_id
    if parent_run_id is not None:
        return _grid_cells(client, parent_run_id)
    exp = _experiment(client, experiment)
    runs = search_runs(client, [exp.experiment_id], f"tags.`{TAG_KIND}` = '{KIND_CELL}'")
    latest: dict[str, Any] = {}
    for run in runs:  # oldest first: a later run of the same config replaces an earlier one,
        key = run.data.tags.get(TAG_HASH, run.info.run_id)
        if run.info.status == "FINISHED" or latest.get(key) is None or latest[key].info.status != "FINISHED":
            latest[key] = run  # but a FINISHED run is never replaced by an unfinished one
    return Selection(experiment, f"every cell of experiment {experiment!r}", None, list(latest.values()))


def _grid_cells(client: Any, parent_run_id: str) -> Selection:
    parent = find_parent(client, parent_run_id)
    parent_run_id = parent.info.run_id
    exp_name = client.get_experiment(parent.info.experiment_id).name
    children = search_runs(
        client, [parent.info.experiment_id],
        f"tags.`{TAG_PARENT}` = '{parent_run_id}' and tags.`{TAG_KIND}` = '{KIND_CELL}'",
    )
    by_id = {run.info.run_id: run for run in children}
    ordered, missing = [], []
    for row in read_manifest(client, parent_run_id):
        if row.run_id:
            ordered.append(by_id.pop(row.run_id, None) or client.get_run(row.run_id))
        else:
            missing.append(f"{row.label}/seed={row.seed}")
    ordered.extend(by_id.values())
    tags = parent.data.tags
    study = tags.get(TAG_STUDY_NAME) or tags.get(TAG_GRID) or parent.info.run_name
    short = tags.get(TAG_STUDY_ID, parent_run_id)  # a parent from before study ids: its run id
    return Selection(exp_name, f"study {study!r} [{short}] (parent run {parent_run_id}) of experiment {exp_name!r}",
                     parent_run_id, ordered, study=study, study_id=short, partial=tags.get(TAG_PARTIAL),
                     missing=missing)
