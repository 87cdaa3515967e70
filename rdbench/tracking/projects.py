"""Runs that ``mlflow run`` made: adopt them, or log elsewhere and leave a pointer.

``mlflow run`` creates a run before it starts the entry point and passes its id as
``MLFLOW_RUN_ID``; without ``--experiment-name`` (or ``MLFLOW_EXPERIMENT_NAME``) that run
sits in MLflow's ``Default`` experiment, under a random name. rdbench keeps its studies
in one experiment (``rdbench`` unless told otherwise), so in that case it logs its
runs there, under its own names, and turns MLflow's run into a pointer to them: a
name ``mlflow run -> <experiment>/<run name>``, the tag ``rdbench.results_in``, and a
note the UI shows. MLflow still ends its run from the exit status. When ``mlflow run``
was given an experiment, rdbench adopts its run as before.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlflow.entities import RunTag

from rdbench.tracking.store import active_env_run_id
from rdbench.tracking.tags import TAG_RUN_NAME

DEFAULT_EXPERIMENT_ID = "0"  # MLflow's `Default` experiment
TAG_RESULTS_IN = "rdbench.results_in"
TAG_NOTE = "mlflow.note.content"


@dataclass(frozen=True)
class ProjectRun:
    """The run ``mlflow run`` made for this process and what rdbench does with it."""

    run_id: str
    experiment: str  # where rdbench logs
    adopt: bool  # log into MLflow's run (True) or into new runs it points to (False)


def project_run(client: Any, experiment_option: str | None, default_experiment: str) -> ProjectRun | None:
    """The ``mlflow run`` run of this process, if any; ``experiment_option`` is ``--experiment``."""
    run_id = active_env_run_id()
    if run_id is None:
        return None
    run = client.get_run(run_id)
    exp_id = run.info.experiment_id
    chosen = experiment_option or os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if exp_id == DEFAULT_EXPERIMENT_ID and not chosen:
        return ProjectRun(run_id, default_experiment, adopt=False)
    return ProjectRun(run_id, client.get_experiment(exp_id).name, adopt=True)


def point_to(client: Any, project: ProjectRun, runs: Sequence[tuple[str, str]]) -> None:
    """Name and tag MLflow's run so that it leads to rdbench's runs ``[(run id, run name), ...]``."""
    if project.adopt or not runs:
        return
    _, first_name = runs[0]
    more = f" and {len(runs) - 1} more" if len(runs) > 1 else ""
    listing = "\n".join(f"- `{name}` (run {run_id})" for run_id, name in runs)
    client.log_batch(project.run_id, tags=[
        RunTag(TAG_RUN_NAME, f"mlflow run -> {project.experiment}/{first_name}{more}"),
        RunTag(TAG_RESULTS_IN, f"{project.experiment}:{','.join(run_id for run_id, _ in runs)}"),
        RunTag(TAG_NOTE, f"rdbench logged this entry point's results in experiment `{project.experiment}`:\n\n"
                         f"{listing}\n\n(`mlflow run --experiment-name {project.experiment}` logs into this run itself.)"),
    ])
