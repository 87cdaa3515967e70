"""The tracking store: the client, experiments, and the one paged run search.

Everything goes through :class:`mlflow.MlflowClient` with explicit ids (no global
"active run"), so several runs can be open at once (a batch of cells, a parent and
its children), and ``mlflow run``'s ``MLFLOW_RUN_ID`` is used only where rdbench
adopts it on purpose (:func:`active_env_run_id`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from mlflow.tracking import MlflowClient

SEARCH_PAGE = 1000  # runs per page of a search (MLflow's maximum for most stores)


def client() -> MlflowClient:
    """A client on the configured store (``MLFLOW_TRACKING_URI`` or MLflow's default)."""
    return MlflowClient()


def experiment_id(mlflow_client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created on first use (restored if it was deleted)."""
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    return mlflow_client.create_experiment(name)


def search_runs(
    mlflow_client: MlflowClient,
    experiment_ids: Sequence[str],
    filter_string: str = "",
    order_by: Sequence[str] = ("attributes.start_time ASC",),
) -> list[Any]:
    """Every run matching ``filter_string`` (all pages), as ``mlflow.entities.Run``."""
    runs: list[Any] = []
    token = None
    while True:
        page = mlflow_client.search_runs(
            list(experiment_ids), filter_string=filter_string, max_results=SEARCH_PAGE,
            order_by=list(order_by), page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def active_env_run_id() -> str | None:
    """The run ``mlflow run`` created for this process, if any (``MLFLOW_RUN_ID``)."""
    return os.environ.get("MLFLOW_RUN_ID") or None
