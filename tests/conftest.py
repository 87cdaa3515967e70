"""Shared fixtures: a real MLflow sqlite store per test session, a fresh experiment per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory) -> Path:
    """Datasets and checkpoints of every test go to a temporary folder, never the home cache."""
    folder = tmp_path_factory.mktemp("data")
    os.environ["RDBENCH_DATA_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory) -> str:
    """A real sqlite tracking store (created once: its migrations take seconds)."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("MLFLOW_RUN_ID", None)
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.MlflowClient().search_experiments()  # create the schema now
    return uri


@pytest.fixture
def experiment(tracking_uri, monkeypatch) -> str:
    """A fresh experiment name for one test (runs of other tests do not leak in)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def mlflow_client(tracking_uri):
    import mlflow

    return mlflow.MlflowClient(tracking_uri)


def runs_of(client, experiment_name: str):
    """All runs of an experiment (empty if it was never created)."""
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], max_results=1000)


REPO = Path(__file__).resolve().parent.parent


def mlflow_run(entry_point: str, params: dict, *, experiment: str, tracking_uri: str, cwd, env=None):
    """`mlflow run <repo> -e ENTRY --env-manager local -P k=v...` in a subprocess; assert it succeeded."""
    mlflow_bin = shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")
    full_env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, **(env or {})}
    # the entry points call `rdbench`: find it beside this interpreter even in a venv not activated
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.pop("MLFLOW_RUN_ID", None)
    command = [mlflow_bin, "run", str(REPO), "-e", entry_point, "--env-manager", "local",
               "--experiment-name", experiment]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    proc = subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc
