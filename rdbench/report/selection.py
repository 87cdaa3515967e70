"""Which cell runs a report covers, read from the tracking store.

The cells of a grid's parent run (its children plus the FINISHED runs it reused,
in the order of its manifest), of the latest grid of an experiment, or every cell
of an experiment (the latest run of each config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rdbench.config import ConfigError
from rdbench.tracking.manifest import read_manifest
from rdbench.tracking.runs import one_line
from rdbench.tracking.store import search_runs
from rdbench.tracking.tags import KIND_CELL, KIND_GRID, TAG_GRID, TAG_HASH, TAG_KIND, TAG_PARENT


@dataclass
class Selection:
    """Cell runs read from the store, in grid order, and where they came from."""

    experiment: str
    description: str
    parent_run_id: str | None = None
    runs: list[Any] = field(default_factory=list)  # mlflow.entities.Run


def _experiment(client: Any, name: str) -> Any:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        raise ConfigError(f"no experiment {name!r} in the tracking store {client.tracking_uri}")
    return exp


def latest_grid_run(client: Any, experiment: str) -> Any:
    exp = _experiment(client, experiment)
    found = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{TAG_KIND}` = '{KIND_GRID}'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    if not found:
        raise ConfigError(f"experiment {experiment!r} has no grid run; run `rdbench grid` first, or pass --all-cells")
    return found[0]


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
    try:
        parent = client.get_run(parent_run_id)
    except Exception as exc:  # noqa: BLE001 - MlflowException on an unknown id
        raise ConfigError(f"no run {parent_run_id!r} in the tracking store: {one_line(exc)}") from None
    exp_name = client.get_experiment(parent.info.experiment_id).name
    children = search_runs(
        client, [parent.info.experiment_id],
        f"tags.`{TAG_PARENT}` = '{parent_run_id}' and tags.`{TAG_KIND}` = '{KIND_CELL}'",
    )
    by_id = {run.info.run_id: run for run in children}
    ordered = []
    for row in read_manifest(client, parent_run_id):
        if row.run_id:
            ordered.append(by_id.pop(row.run_id, None) or client.get_run(row.run_id))
    ordered.extend(by_id.values())
    grid = parent.data.tags.get(TAG_GRID, parent.info.run_name)
    return Selection(exp_name, f"grid {grid!r} (parent run {parent_run_id})", parent_run_id, ordered)
