"""One MLflow run as rdbench writes it: :class:`TrackedRun`, the systems' Recorder.

Params in batches, scalar metrics, whole per-step series in ``log_batch`` chunks of
at most 1000 points, artifacts, the balance metrics of a measurement
(:meth:`TrackedRun.log_balance`), and the terminal status with a one-line reason.
"""

from __future__ import annotations

import contextlib
import csv
import math
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from rdbench.balance import BalanceResult
from rdbench.provenance import command_line, git_commit, source_name, tree_state, user
from rdbench.tracking.environment import git_tags, version_tags
from rdbench.tracking.liveness import HEARTBEAT, owner_tags
from rdbench.tracking.store import StoreError, experiment_id, retrying
from rdbench.tracking.tags import (
    GIT_DIFF_ARTIFACT,
    TAG_CHECKPOINT,
    TAG_CHECKPOINT_RUN,
    TAG_CHECKPOINT_STEP,
    TAG_COMMAND,
    TAG_ERROR,
    TAG_GIT,
    TAG_PARENT,
    TAG_RUN_NAME,
    TAG_SOURCE_NAME,
    TAG_SOURCE_TYPE,
    TAG_STUDY,
    TAG_USER,
)

MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call
MAX_PARAMS_PER_BATCH = 100
NORMALISED_STEPS = 1000  # R_t on normalised time is logged at steps 0..1000
MAX_NAMED = 20  # missing artifacts named in the one-line error (then a count)


def source_tags() -> dict[str, str]:
    """Who made a run and with what: the MLflow UI's User and Source columns (``create_run`` sets neither):
    the Source a short ``rdbench grid smoke``, the whole command line in ``rdbench.command``."""
    return {TAG_USER: user(), TAG_SOURCE_NAME: source_name(), TAG_SOURCE_TYPE: "LOCAL", TAG_COMMAND: command_line()}


def made_with_tags() -> dict[str, str]:
    """How every run was made: the stack's versions and whether the checkout was dirty."""
    return {**version_tags(), **git_tags()}


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, for the error tag and the terminal."""
    text = " ".join(str(exc).split()) or repr(exc)
    return f"{type(exc).__name__}: {text}"[:4000]


class ArtifactsLost(StoreError):
    """Artifacts a run logged are not in its store when it ends (deleted, or never written): a store
    fault, one line naming them."""


class TrackedRun:
    """One MLflow run, seen through the :class:`~rdbench.systems.base.Recorder` interface.

    It remembers the path of every artifact it logs, and :meth:`finish` checks that they are all in
    the store before the run is FINISHED: a record with a hole is FAILED, naming what is missing.
    """

    def __init__(self, mlflow_client: MlflowClient, run_id: str):
        self.client = mlflow_client
        self.run_id = run_id
        self.model_id: str | None = None  # the model this run logged: its later scalar metrics are linked to it
        self.logged: set[str] = set()  # artifact paths, relative to the run's artifact root

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
        all_tags = {TAG_RUN_NAME: run_name, **source_tags(), **made_with_tags(), **owner_tags(), **(tags or {})}
        commit = git_commit()
        if commit:
            all_tags.setdefault(TAG_GIT, commit)
        if parent_run_id:
            all_tags[TAG_PARENT] = parent_run_id
        if TAG_PARENT in all_tags:
            all_tags.setdefault(TAG_STUDY, all_tags[TAG_PARENT])
        exp_id = experiment_id(mlflow_client, experiment)
        run = retrying(lambda: mlflow_client.create_run(exp_id, run_name=run_name, tags=all_tags))
        HEARTBEAT.add(mlflow_client, run.info.run_id)
        tracked = cls(mlflow_client, run.info.run_id)
        tracked.log_tree_diff()
        return tracked

    @classmethod
    def adopt(cls, mlflow_client: MlflowClient, run_id: str, tags: Mapping[str, str] | None = None) -> TrackedRun:
        """An existing run (e.g. the one ``mlflow run`` made and exported as MLFLOW_RUN_ID)."""
        run = cls(mlflow_client, run_id)
        commit = git_commit()
        existing = mlflow_client.get_run(run_id).data.tags  # `mlflow run` set its own user and source
        extra = {**{k: v for k, v in source_tags().items() if k not in existing}, **made_with_tags(),
                 **owner_tags(), **(tags or {})}
        if commit:
            extra.setdefault(TAG_GIT, commit)
        run.set_tags(extra)
        HEARTBEAT.add(mlflow_client, run_id)
        run.log_tree_diff()
        return run

    def log_tree_diff(self) -> None:
        """The checkout's ``git diff`` (bounded) as ``provenance/git_diff.patch`` when it is dirty."""
        state = tree_state()
        if state is not None and state.dirty:
            with self._temp_file(GIT_DIFF_ARTIFACT) as path:
                path.write_text(state.diff)

    # ------------------------------------------------------------------ Recorder

    def _log_batch(self, **items: Any) -> None:
        """One ``log_batch`` call, waiting out a locked store (see :func:`~.store.retrying`)."""
        retrying(lambda: self.client.log_batch(self.run_id, **items))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if tags:
            self._log_batch(tags=[RunTag(k, str(v)) for k, v in tags.items()])

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
            self._log_batch(params=items[i : i + MAX_PARAMS_PER_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Scalar metrics (non-finite ones skipped); once the run has logged a model, linked to it too
        (MLflow's model page then shows them: the final M_react, M_diff, R, R_final, the controls)."""
        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step or 0, model_id=self.model_id)
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
            self._log_batch(metrics=items[i : i + MAX_METRICS_PER_BATCH])

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
        self.logged.add(_artifact_file(artifact_path, Path(local_path).name))

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        self.client.log_dict(self.run_id, dict(data), artifact_file)
        self.logged.add(_artifact_file(artifact_file))

    def log_input(self, dataset: Any) -> None:
        """A :class:`~rdbench.systems.records.DatasetRecord` as a run input (``mlflow.log_input``)."""
        from rdbench.tracking.models import log_input

        retrying(lambda: log_input(self.client, self.run_id, dataset))

    def log_model(self, model: Any) -> None:
        """A :class:`~rdbench.systems.records.ModelRecord` as this run's MLflow model (named after its
        system, case and seed); the run's later scalar metrics are linked to it."""
        from rdbench.tracking.models import log_model

        self.model_id = log_model(self.client, self.run_id, model).removeprefix("models:/")

    def note_checkpoint(self, path: str | Path, step: int | None, run_id: str | None) -> None:
        """Tag where the weights this run continued from came from: the checkpoint file, its step and
        the run that wrote it (whose artifact ``checkpoints/latest.pt`` holds the same state)."""
        self.set_tags({TAG_CHECKPOINT: str(path),
                       **({TAG_CHECKPOINT_STEP: step} if step is not None else {}),
                       **({TAG_CHECKPOINT_RUN: run_id} if run_id else {})})

    def log_table(self, data: Any, artifact_file: str) -> None:
        """A table the MLflow UI renders (``mlflow.log_table``), e.g. a pandas DataFrame."""
        self.client.log_table(self.run_id, data=data, artifact_file=artifact_file)
        self.logged.add(_artifact_file(artifact_file))

    @contextlib.contextmanager
    def _temp_file(self, artifact_file: str) -> Iterator[Path]:
        """Yield a local path named like ``artifact_file``; upload it on exit."""
        folder, _, name = artifact_file.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            yield path
            self.log_artifact(path, folder or None)

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

    def missing_artifacts(self) -> list[str]:
        """The logged artifacts the store does not list (one listing per folder), sorted."""
        folders: dict[str, set[str]] = {}
        for path in self.logged:
            folder = path.rpartition("/")[0]
            if folder not in folders:
                listed = retrying(lambda folder=folder: self.client.list_artifacts(self.run_id, folder or None))
                folders[folder] = {info.path for info in listed}
        return sorted(path for path in self.logged if path not in folders[path.rpartition("/")[0]])

    def finish(self) -> None:
        """FINISHED, once every artifact logged is found in the store; else :class:`ArtifactsLost` (the
        caller fails the run with it)."""
        missing = self.missing_artifacts()
        if missing:
            shown = ", ".join(missing[:MAX_NAMED]) + (f" and {len(missing) - MAX_NAMED} more" if len(missing) > MAX_NAMED else "")
            raise ArtifactsLost(f"{len(missing)} of {len(self.logged)} logged artifacts are missing from the store "
                                f"({self.client.get_run(self.run_id).info.artifact_uri}): {shown}")
        self.end(RunStatus.FINISHED)

    def fail(self, exc: BaseException) -> None:
        """Mark FAILED (KILLED on Ctrl-C) with the one-line error as a tag."""
        status = RunStatus.KILLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
        self.end(status, one_line(exc))

    def end(self, status: int, reason: str | None = None) -> None:
        """Terminate with ``status`` (a RunStatus), the reason (if any) kept in the error tag."""
        HEARTBEAT.remove(self.run_id)
        if reason:
            with contextlib.suppress(Exception):
                self.set_tags({TAG_ERROR: reason})
        retrying(lambda: self.client.set_terminated(self.run_id, RunStatus.to_string(status)))


def _artifact_file(folder: str | None, name: str | None = None) -> str:
    """``folder/name`` as the store lists it (no leading, trailing or doubled slashes)."""
    parts = [p for p in f"{folder or ''}/{name or ''}".split("/") if p and p != "."]
    return "/".join(parts)


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
