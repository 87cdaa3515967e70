"""Datasets and trained networks in MLflow: ``log_input`` and ``mlflow.pytorch.log_model``.

:func:`log_input` records a :class:`~rdbench.systems.records.DatasetRecord` as an
MLflow dataset (name, digest, source, a tensor schema and a profile with its shape):
the run page's Datasets panel, ``MlflowClient().get_run(id).inputs``. The source is
MLflow's own kind for it (a local path, an HTTP URL, or code for a generator), so
``mlflow.data.get_source`` works on it.

:func:`log_model` logs a :class:`~rdbench.systems.records.ModelRecord` with MLflow's
pytorch flavour as a LoggedModel of the run's experiment named after the run's system,
case and seed (:func:`model_name`, e.g. ``lstm-sine-seed0``), linked as the run's
output, with the run's params as the model's params (the run then links its final
metrics to it: :meth:`~rdbench.tracking.runs.TrackedRun.log_metrics`): the pickled
module (for ``mlflow.pytorch.load_model``), a signature from the input example, the
rebuild config in the metadata, and the config and state dict as extra files, which is
all rdbench reads back (:func:`fetch_model_files`: no unpickling). rdbench's
``--model runs:/<run id>/model`` still finds it (:func:`resolve_model_uri`); MLflow's own
loaders take ``runs:/<run id>/<model name>`` or the ``models:/m-...`` URI.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import json
import logging
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.tracking import MlflowClient

from rdbench.tracking.store import quiet_downloads
from rdbench.tracking.tags import TAG_CASE, TAG_SEED, TAG_SYSTEM

CONTEXT_TAG = "mlflow.data.context"  # MLflow's tag for what a dataset was used for
MODEL_ARTIFACT = "model"  # what rdbench's docs and errors call a run's model: runs:/<run id>/model
UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")  # MLflow refuses / : . % and quotes in model names


def model_name(tags: dict[str, str], system: str) -> str:
    """``lstm-sine-seed0``: a logged model named after its run's system, case and seed (tags of a cell run;
    a run without them, the system alone), with any character MLflow's model names refuse replaced."""
    parts = [tags.get(TAG_SYSTEM, system), tags.get(TAG_CASE)]
    seed = tags.get(TAG_SEED)
    name = "-".join(p for p in parts if p) + (f"-seed{seed}" if seed is not None else "")
    return UNSAFE_NAME.sub("_", name).strip("_") or MODEL_ARTIFACT


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No download progress bars and no pickle advice from MLflow (rdbench reads only the state dict)."""
    logger = logging.getLogger("mlflow.pytorch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with quiet_downloads():
            yield
    finally:
        logger.setLevel(level)


def dataset_source(source: str) -> Any:
    """MLflow's source object for a path, a URL or ``code:<module>`` (a generator)."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.http_dataset_source import HTTPDatasetSource

    if source.startswith(("http://", "https://")):
        return HTTPDatasetSource(source)
    if source.startswith("code:"):
        return CodeDatasetSource({"module": source.removeprefix("code:")})
    with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are the local kind
        warnings.simplefilter("ignore", UserWarning)
        return resolve_dataset_source(str(Path(source).expanduser().resolve()))


def log_input(client: MlflowClient, run_id: str, record: Any) -> None:
    """One dataset as a run input (MLflow's Datasets panel)."""
    import numpy as np
    from mlflow.types import Schema, TensorSpec

    source = dataset_source(record.source)
    spec = TensorSpec(np.dtype(record.dtype), (-1, *record.shape[1:]), name=record.name)
    schema = json.dumps({"mlflow_tensorspec": {"features": Schema([spec]).to_json(), "targets": None}})
    profile = json.dumps({"rows": record.shape[0], "shape": list(record.shape), "dtype": record.dtype,
                          "description": record.description})
    entity = Dataset(name=record.name, digest=record.digest, source_type=source._get_source_type(),
                     source=source.to_json(), schema=schema, profile=profile)
    client.log_inputs(run_id, [DatasetInput(entity, tags=[InputTag(CONTEXT_TAG, record.context)])])


def log_model(client: MlflowClient, run_id: str, record: Any) -> str:
    """The network as the run's MLflow model (named by :func:`model_name`, the run's params as its
    params); returns its model URI (``models:/m-...``)."""
    import mlflow.pytorch
    from mlflow.models import infer_signature

    from rdbench.provenance import user

    run = client.get_run(run_id)
    example = record.input_example
    signature = infer_signature(example, record.example_output())
    name = model_name(run.data.tags, record.system)
    logged = client.create_logged_model(run.info.experiment_id, name=name, source_run_id=run_id,
                                        params=dict(run.data.params),
                                        tags={"rdbench.system": record.system, "mlflow.user": user()})
    with tempfile.TemporaryDirectory() as tmp, quiet():
        files = record.write(Path(tmp))
        info = mlflow.pytorch.log_model(
            copy.deepcopy(record.module).cpu(),  # a CPU copy: mlflow.pytorch.load_model works without a GPU
            name=name, model_id=logged.model_id, run_id=run_id, signature=signature,
            # MLflow's pytorch pyfunc takes one array: a network of several inputs keeps only its signature
            input_example=None if isinstance(example, dict) else example,
            serialization_format="pickle", extra_files=[str(p) for p in files],
            pip_requirements=[f"torch=={metadata.version('torch')}", *record.pip_requirements],
            metadata={"rdbench": {"system": record.system, **record.config}},
        )
    return info.model_uri


def resolve_model_uri(uri: str) -> str:
    """``runs:/<run id>/model`` -> the artifact location of the run's one logged model when the run has
    no model under that name (a model named after its system, case and seed); any other URI as given.
    (Not ``models:/<model id>``: MLflow reads a path under that as a registered model's.)"""
    match = re.fullmatch(r"runs:/([^/]+)/" + MODEL_ARTIFACT + "/?", uri)
    if not match:
        return uri
    from mlflow.exceptions import MlflowException

    try:
        run = MlflowClient().get_run(match[1])
    except MlflowException:
        return uri
    outputs = run.outputs.model_outputs if run.outputs else []
    if len(outputs) != 1:
        return uri
    model = MlflowClient().get_logged_model(outputs[0].model_id)
    return uri if model.name == MODEL_ARTIFACT else model.artifact_location


_cache: dict[str, Path] = {}


def fetch_model_files(uri: str, files: Sequence[str]) -> Path:
    """Download ``files`` of the model ``uri`` (never the pickled module), each once, into a folder of
    this process (removed at exit); returns the folder the paths are relative to."""
    import mlflow.artifacts

    uri = resolve_model_uri(uri)
    if uri not in _cache:
        folder = Path(tempfile.mkdtemp(prefix="rdbench-model-"))
        atexit.register(shutil.rmtree, folder, True)
        _cache[uri] = folder
    folder = _cache[uri]
    for name in files:
        if (folder / name).exists():
            continue
        with tempfile.TemporaryDirectory(dir=folder) as tmp, quiet():
            got = mlflow.artifacts.download_artifacts(artifact_uri=f"{uri.rstrip('/')}/{name}", dst_path=tmp)
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(got, folder / name)
    return folder
