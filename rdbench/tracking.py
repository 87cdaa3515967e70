"""MLflow tracking, written once for every system.

Everything goes through :class:`mlflow.MlflowClient` with explicit run ids (no
global "active run"), so several runs can be open at once (a batch of cells, a
parent and its children) and ``mlflow run``'s ``MLFLOW_RUN_ID`` is only used
where rdbench adopts it on purpose.

The store is MLflow's default (``sqlite:///mlflow.db`` in the working directory
for MLflow 3) unless ``MLFLOW_TRACKING_URI`` says otherwise.

Tags written on every cell run (the report and the UI group by them):

* ``rdbench.system``, ``rdbench.case``, ``rdbench.seed``, ``rdbench.profile``
* ``rdbench.config_hash``: hash of everything that shaped the result
* ``rdbench.error``: the one-line error of a FAILED run
* ``mlflow.source.git.commit``: the commit of the rdbench checkout, when known
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from rdbench.balance import BalanceResult

MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call
MAX_PARAMS_PER_BATCH = 100
NORMALISED_STEPS = 1000  # R_t on normalised time is logged at steps 0..1000

TAG_SYSTEM = "rdbench.system"
TAG_CASE = "rdbench.case"
TAG_SEED = "rdbench.seed"
TAG_PROFILE = "rdbench.profile"
TAG_HASH = "rdbench.config_hash"
TAG_ERROR = "rdbench.error"
TAG_KIND = "rdbench.kind"  # "cell" or "grid"
TAG_GIT = "mlflow.source.git.commit"
TAG_PARENT = "mlflow.parentRunId"
TAG_RUN_NAME = "mlflow.runName"


def client() -> MlflowClient:
    """A client on the configured store (``MLFLOW_TRACKING_URI`` or MLflow's default)."""
    return MlflowClient()


def experiment_id(mlflow_client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created on first use."""
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    return mlflow_client.create_experiment(name)


def git_commit() -> str | None:
    """The commit of the rdbench checkout, if it is one (``None`` otherwise)."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("RDBENCH_GIT_COMMIT")
    return out.stdout.strip() or None


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, for the error tag and the terminal."""
    text = " ".join(str(exc).split()) or repr(exc)
    return f"{type(exc).__name__}: {text}"[:4000]


class TrackedRun:
    """One MLflow run, seen through the :class:`~rdbench.systems.base.Recorder` interface."""

    def __init__(self, mlflow_client: MlflowClient, run_id: str):
        self.client = mlflow_client
        self.run_id = run_id

    # ------------------------------------------------------------------ creation

    @classmethod
    def create(
        cls,
        mlflow_client: MlflowClient,
        experiment: str,
        run_name: str,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> TrackedRun:
        """A new RUNNING run (a child of ``parent_run_id`` when given)."""
        all_tags = {TAG_RUN_NAME: run_name, **(tags or {})}
        commit = git_commit()
        if commit:
            all_tags.setdefault(TAG_GIT, commit)
        if parent_run_id:
            all_tags[TAG_PARENT] = parent_run_id
        run = mlflow_client.create_run(
            experiment_id(mlflow_client, experiment), run_name=run_name, tags=all_tags
        )
        return cls(mlflow_client, run.info.run_id)

    @classmethod
    def adopt(cls, mlflow_client: MlflowClient, run_id: str, tags: Mapping[str, str] | None = None) -> TrackedRun:
        """An existing run (e.g. the one ``mlflow run`` made and exported as MLFLOW_RUN_ID)."""
        run = cls(mlflow_client, run_id)
        commit = git_commit()
        extra = dict(tags or {})
        if commit:
            extra.setdefault(TAG_GIT, commit)
        run.set_tags(extra)
        return run

    # ------------------------------------------------------------------ Recorder

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if tags:
            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params in batches; a key ``mlflow run`` already set keeps its value when they agree."""
        existing = self.client.get_run(self.run_id).data.params
        items = []
        for key, value in params.items():
            text = "null" if value is None else str(value)
            if key in existing:
                if not _same_param(existing[key], text):
                    items.append(Param(f"resolved.{key}", text))
                continue
            items.append(Param(key, text))
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step or 0)
            for k, v in metrics.items()
            if v is not None and math.isfinite(float(v))
        ]
        self._send_metrics(items)

    def log_series(self, name: str, values: Sequence[float], steps: Sequence[int]) -> None:
        """A whole series, in batches of up to 1000 points; non-finite points are skipped."""
        now = int(time.time() * 1000)
        items = [
            Metric(name, float(v), now, int(s))
            for v, s in zip(values, steps, strict=True)
            if math.isfinite(float(v))
        ]
        self._send_metrics(items)

    def _send_metrics(self, items: list[Metric]) -> None:
        for i in range(0, len(items), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=items[i : i + MAX_METRICS_PER_BATCH])

    def log_image(self, array: np.ndarray, artifact_file: str, cmap: str | None = None) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        with self._temp_file(artifact_file) as path:
            plt.imsave(path, np.asarray(array), cmap=cmap)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        with self._temp_file(artifact_file) as path:
            figure.savefig(path, bbox_inches="tight", dpi=120)

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(local_path), artifact_path)

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        self.client.log_dict(self.run_id, dict(data), artifact_file)

    def log_table(self, data: Any, artifact_file: str) -> None:
        """A table the MLflow UI renders (``mlflow.log_table``), e.g. a pandas DataFrame."""
        self.client.log_table(self.run_id, data=data, artifact_file=artifact_file)

    @contextlib.contextmanager
    def _temp_file(self, artifact_file: str) -> Iterator[Path]:
        """Yield a local path named like ``artifact_file``; upload it on exit."""
        folder, _, name = artifact_file.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            yield path
            self.client.log_artifact(self.run_id, str(path), folder or None)

    # ------------------------------------------------------------------ balance

    def log_balance(self, result: BalanceResult, prefix: str = "") -> None:
        """Scalars, per-step series (native and normalised time) and CSV files of one result.

        ``prefix`` is ``""`` for the real model and ``"control.<name>."`` for a control.
        """
        self.log_metrics({prefix + k: v for k, v in result.summary().items()})
        series = result.series()
        for name, values in series.items():
            self.log_series(prefix + name, values, result.steps)
        norm_steps = np.rint(result.time * NORMALISED_STEPS).astype(np.int64)
        _, first = np.unique(norm_steps, return_index=True)
        self.log_series(prefix + "R_t_norm", result.R_t[first], norm_steps[first])
        tag = prefix.rstrip(".").replace("control.", "control_") or "model"
        with self._temp_file(f"balance/{tag}_series.csv") as path:
            _write_csv(path, {"step": result.steps, "t_norm": result.time, **series})
        with self._temp_file(f"balance/{tag}_samples.csv") as path:
            _write_csv(
                path,
                {
                    "sample": np.arange(result.n_samples),
                    "M_react": result.per_sample_mean("reaction"),
                    "M_diff": result.per_sample_mean("diffusion"),
                    "R": result.R_per_sample,
                    "R_final": result.R_final_per_sample,
                },
            )

    # ------------------------------------------------------------------ end

    def finish(self) -> None:
        self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FINISHED))

    def fail(self, exc: BaseException) -> None:
        """Mark FAILED (KILLED on Ctrl-C) with the one-line error as a tag."""
        status = RunStatus.KILLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
        self.end(status, one_line(exc))

    def end(self, status: int, reason: str) -> None:
        """Terminate with ``status`` (a RunStatus), the reason kept in the error tag."""
        with contextlib.suppress(Exception):
            self.set_tags({TAG_ERROR: reason})
        self.client.set_terminated(self.run_id, RunStatus.to_string(status))


def _same_param(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def _write_csv(path: Path, columns: Mapping[str, Sequence[Any]]) -> None:
    names = list(columns)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(names)
        for row in zip(*(columns[n] for n in names), strict=True):
            writer.writerow([_fmt(x) for x in row])


def _fmt(x: Any) -> Any:
    if isinstance(x, (float, np.floating)):
        return repr(float(x))
    return x.item() if isinstance(x, np.generic) else x


def active_env_run_id() -> str | None:
    """The run ``mlflow run`` created for this process, if any (``MLFLOW_RUN_ID``)."""
    return os.environ.get("MLFLOW_RUN_ID") or None


