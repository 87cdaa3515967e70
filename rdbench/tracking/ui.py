"""How the MLflow UI shows a study: experiment tags that open the right view.

The MLflow UI keeps the state of its experiment page (sort order, chart filter,
columns) in *shared views*, stored as experiment tags (what its "Share" button saves).
rdbench saves one for comparing cells, and marks the experiment as a training
experiment so that the UI opens the runs view.
"""

from __future__ import annotations

import json
from typing import Any

from rdbench.tracking.tags import (
    KIND_CELL,
    TAG_CASE,
    TAG_KIND,
    TAG_PROFILE,
    TAG_SEED,
    TAG_STUDY,
    TAG_SYSTEM,
)

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # makes the MLflow UI open the training-runs view
EXPERIMENT_KIND = "custom_model_development"
SHARED_VIEW = "rdbench-grid"  # the MLflow UI's shared view of the runs (?viewStateShareKey=rdbench-grid)
SHARED_VIEW_TAG = f"mlflow.sharedViewState.{SHARED_VIEW}"
DEFAULT_UI = "http://127.0.0.1:5000"


def grid_view(parent_run_id: str) -> str:
    """The key of a grid's own shared view: the grid's parent with every run of the study nested under it."""
    return f"{SHARED_VIEW}-{parent_run_id}"


def shared_view_state(chart_filter: str = "R_t", parent_run_id: str | None = None) -> dict[str, Any]:
    """The MLflow UI's experiment-page state for comparing cells.

    Given ``parent_run_id``: that grid's parent and every run nested under it (its
    cells, the cells it reuses, which are moved under it, and its phase maps: the
    ``rdbench.study`` tag), listed flat so that every cell is a row and a curve in the
    charts (the UI nests children under their parent only when sorted by start time,
    and then shows them collapsed, with no charts until expanded; the experiment's
    default view nests them so). Otherwise every cell run of the experiment (stand-alone
    runs and every grid). Sorted by name; metric charts filtered to
    ``R_t`` (R_t on each system's own step axis, R_t_norm on the common 0..1000 axis:
    every cell overlaid); columns system, case, seed, profile, R and R_final.
    """
    search = f"tags.`{TAG_STUDY}` = '{parent_run_id}'" if parent_run_id else f"tags.`{TAG_KIND}` = '{KIND_CELL}'"
    return {
        "searchFilter": search, "orderByKey": "attributes.`run_name`", "orderByAsc": True, "startTime": "ALL",
        "lifecycleFilter": "Active", "modelVersionFilter": "All Runs", "datasetsFilter": [],
        "runsHiddenMode": "SHOW_ALL", "chartsSearchFilter": chart_filter, "hideEmptyCharts": True,
        "selectedColumns": [f"tags.`{TAG_SYSTEM}`", f"tags.`{TAG_CASE}`", f"tags.`{TAG_SEED}`",
                            f"tags.`{TAG_PROFILE}`", "metrics.`R`", "metrics.`R_final`"],
    }


def prepare_ui(client: Any, exp_id: str, parent_run_id: str | None = None, chart_filter: str = "R_t") -> None:
    """Experiment tags for the MLflow UI: open the training-runs view; a shared view of every cell
    of the experiment and, given a grid's parent, one of that grid's study (``grid_view``)."""
    tags = client.get_experiment(exp_id).tags
    if EXPERIMENT_KIND_TAG not in tags:
        client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    every_cell = json.dumps(shared_view_state(chart_filter))
    if tags.get(SHARED_VIEW_TAG) != every_cell:
        client.set_experiment_tag(exp_id, SHARED_VIEW_TAG, every_cell)
    if parent_run_id:
        client.set_experiment_tag(exp_id, f"mlflow.sharedViewState.{grid_view(parent_run_id)}",
                                  json.dumps(shared_view_state(chart_filter, parent_run_id=parent_run_id)))


def compare_url(exp_id: str, base: str = DEFAULT_UI, mode: str = "CHART", view: str = SHARED_VIEW) -> str:
    """Where the MLflow UI shows a shared view (default: every cell of the experiment)."""
    return f"{base}/#/experiments/{exp_id}/runs?viewStateShareKey={view}&compareRunsMode={mode}"
