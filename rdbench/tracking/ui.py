"""How the MLflow UI shows a study: experiment tags that open the right view.

The MLflow UI keeps the state of its experiment page (sort order, chart filter,
columns) in *shared views*, stored as experiment tags (what its "Share" button saves).
rdbench saves one for comparing cells, and marks the experiment as a training
experiment so that the UI opens the runs view.
"""

from __future__ import annotations

import json
from typing import Any

from rdbench.tracking.tags import TAG_CASE, TAG_SEED, TAG_SYSTEM

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # makes the MLflow UI open the training-runs view
EXPERIMENT_KIND = "custom_model_development"
SHARED_VIEW = "rdbench-grid"  # the MLflow UI's shared view of the runs (?viewStateShareKey=rdbench-grid)
SHARED_VIEW_TAG = f"mlflow.sharedViewState.{SHARED_VIEW}"
DEFAULT_UI = "http://127.0.0.1:5000"


def shared_view_state(chart_filter: str = "R_t") -> dict[str, Any]:
    """The MLflow UI's experiment-page state for comparing cells.

    Runs sorted by name, not date, so cell runs are listed flat beside their
    parent; metric charts filtered to ``R_t`` (R_t on each system's own step
    axis, R_t_norm on the common 0..1000 axis: every cell overlaid); columns
    system, case, seed, R and R_final.
    """
    return {
        "searchFilter": "", "orderByKey": "attributes.`run_name`", "orderByAsc": True, "startTime": "ALL",
        "lifecycleFilter": "Active", "modelVersionFilter": "All Runs", "datasetsFilter": [],
        "runsHiddenMode": "SHOW_ALL", "chartsSearchFilter": chart_filter, "hideEmptyCharts": True,
        "selectedColumns": [f"tags.`{TAG_SYSTEM}`", f"tags.`{TAG_CASE}`", f"tags.`{TAG_SEED}`",
                            "metrics.`R`", "metrics.`R_final`"],
    }


def prepare_ui(client: Any, exp_id: str) -> None:
    """Experiment tags for the MLflow UI: open the training-runs view; a shared view for comparing cells."""
    tags = client.get_experiment(exp_id).tags
    if EXPERIMENT_KIND_TAG not in tags:
        client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    if SHARED_VIEW_TAG not in tags:
        client.set_experiment_tag(exp_id, SHARED_VIEW_TAG, json.dumps(shared_view_state()))


def compare_url(exp_id: str, base: str = DEFAULT_UI, mode: str = "CHART") -> str:
    """Where the MLflow UI shows the shared view of an experiment's cells."""
    return f"{base}/#/experiments/{exp_id}/runs?viewStateShareKey={SHARED_VIEW}&compareRunsMode={mode}"
