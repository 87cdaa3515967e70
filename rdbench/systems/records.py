"""What a system hands the tracking layer about its data and its trained network.

* :class:`DatasetRecord`: one dataset a run trained or measured on (a name, where it
  came from, a digest of its values, its shape): MLflow's Datasets panel
  (``mlflow.log_input``).
* :class:`ModelRecord`: a trained network as an MLflow model: the module, the config
  that rebuilds it, the state dict, an input example.
* :func:`load_logged_model`: the other way round, a logged model read back for
  ``rdbench run SYSTEM --model runs:/<id>/model``.

Reloading never unpickles code: rdbench rebuilds the network from the logged config
and loads ``extra_files/state_dict.pt`` with ``torch.load(weights_only=True)``. The
pickled module of MLflow's pytorch flavour (``data/model.pth``) is there for
``mlflow.pytorch.load_model`` users and is never read by rdbench.

Systems never import MLflow: fetching a ``runs:/`` or ``models:/`` URI is the job of
a fetcher the tracking layer registers (:func:`register_fetcher`); a local folder
that holds a logged model (an ``MLmodel`` file) is read directly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rdbench.config import ConfigError

CONFIG_FILE = "rdbench-model.json"
WEIGHTS_FILE = "state_dict.pt"
EXTRA = "extra_files"  # where MLflow's pytorch flavour keeps extra files inside the model
FORMAT = 1
URI_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")
DIGEST_CHUNK_BYTES = 64 * 2**20  # arrays on a device are hashed this much at a time


@dataclass(frozen=True)
class DatasetRecord:
    """One dataset of a run. ``source`` is a path or URL (``code:<module>`` for a generator);
    ``digest`` is :func:`digest` of the values; ``context``: ``training``, ``evaluation``..."""

    name: str
    source: str
    digest: str
    shape: tuple[int, ...]
    dtype: str
    context: str = "training"
    description: str = ""


def digest(values: np.ndarray | torch.Tensor) -> str:
    """sha256 (first 16 hex digits) of the shape, dtype and every value; a tensor on a device is
    copied to the host a chunk at a time, never whole."""
    h = hashlib.sha256(f"{tuple(values.shape)}|{_dtype(values)}".encode())
    if isinstance(values, np.ndarray):
        h.update(memoryview(np.ascontiguousarray(values)).cast("B"))
        return h.hexdigest()[:16]
    flat = values.detach().reshape(-1)
    step = max(1, DIGEST_CHUNK_BYTES // max(1, flat.element_size()))
    for start in range(0, flat.numel(), step):
        chunk = flat[start : start + step].cpu().contiguous()
        h.update(memoryview(chunk.view(torch.uint8).numpy()))
    return h.hexdigest()[:16]


def dataset_record(name: str, source: str, values: np.ndarray | torch.Tensor, context: str = "training",
                   description: str = "") -> DatasetRecord:
    return DatasetRecord(name, source, digest(values), tuple(int(d) for d in values.shape), _dtype(values),
                         context, description)


def _dtype(values: np.ndarray | torch.Tensor) -> str:
    """``float32``, ``uint8``: numpy's name for the element type of either kind of array."""
    return str(values.dtype).removeprefix("torch.")


@dataclass
class ModelRecord:
    """A trained network for ``Recorder.log_model``: logged as the MLflow model ``model`` with
    ``config`` (what rebuilds it) in its metadata and ``extra_files/rdbench-model.json``, the state
    dict in ``extra_files/state_dict.pt``, and a signature from ``input_example`` (one array or a
    dict of named arrays, the module's positional inputs in order)."""

    system: str
    module: torch.nn.Module
    config: dict[str, Any]
    input_example: np.ndarray | dict[str, np.ndarray]
    pip_requirements: list[str] = field(default_factory=list)

    def write(self, folder: Path) -> list[Path]:
        """The config and the state dict (on the CPU) as files in ``folder``; returns their paths."""
        config_path = folder / CONFIG_FILE
        config_path.write_text(json.dumps({"system": self.system, "format": FORMAT, **self.config}, indent=2))
        weights_path = folder / WEIGHTS_FILE
        torch.save({k: v.detach().cpu() for k, v in self.module.state_dict().items()}, weights_path)
        return [config_path, weights_path]

    def example_output(self) -> np.ndarray:
        """The module's output on the input example (for the signature)."""
        device = next(self.module.parameters()).device
        inputs = self.input_example.values() if isinstance(self.input_example, dict) else [self.input_example]
        with torch.inference_mode():
            out = self.module(*(torch.as_tensor(x, device=device) for x in inputs))
        return out.float().cpu().numpy()


# ----------------------------------------------------------------------------- reading back

Fetcher = Callable[[str, Sequence[str]], Path]
_fetchers: list[Fetcher] = []


def register_fetcher(fetch: Fetcher) -> None:
    """``fetch(uri, files)`` downloads ``files`` (paths inside the model) of an MLflow model URI and
    returns the local folder that holds them (the tracking layer registers it)."""
    if fetch not in _fetchers:
        _fetchers.append(fetch)


def is_logged_model(ref: str | None) -> bool:
    """An MLflow model URI (``runs:/``, ``models:/``) or a local folder holding an MLflow model."""
    if not ref:
        return False
    return ref.startswith(URI_SCHEMES) or (Path(ref).expanduser() / "MLmodel").is_file()


@dataclass(frozen=True)
class LoggedModel:
    """A logged network's config and the local folder of its files."""

    ref: str
    config: dict[str, Any]
    folder: Path

    def state_dict(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """The weights, loaded without unpickling code (``weights_only=True``) onto ``device``."""
        return torch.load(self.folder / EXTRA / WEIGHTS_FILE, map_location=device, weights_only=True)

    def load_into(self, module: torch.nn.Module, device: torch.device | str = "cpu") -> torch.nn.Module:
        """``module`` (rebuilt from the config) with the logged weights, every key matched (strict)."""
        module.load_state_dict(self.state_dict(device), strict=True)
        return module.to(device)

    def require(self, expected: Mapping[str, Any]) -> None:
        """ConfigError naming the first entry of ``expected`` that the logged config does not match."""
        have_all = _leaves({k: self.config.get(k) for k in expected})
        for key, want in _leaves(dict(expected)).items():
            have = have_all.get(key)
            if have != want:
                raise ConfigError(
                    f"--model {self.ref}: it was trained with {key}={json.dumps(have)} but these "
                    f"settings have {key}={json.dumps(want)}; run with the profile and settings it was "
                    f"trained with (profile {self.config.get('profile', '?')!r}, case {self.config.get('case', '?')!r})"
                )


_loaded: dict[str, LoggedModel] = {}


def load_logged_model(ref: str, system: str) -> LoggedModel:
    """The logged model ``ref`` (URI or folder), checked to be rdbench's and ``system``'s; fetched once
    per process. Anything else is a one-line ConfigError."""
    if ref not in _loaded:
        folder = _local_folder(ref)
        path = folder / EXTRA / CONFIG_FILE
        if not path.is_file():
            raise ConfigError(f"--model {ref}: not a model logged by rdbench (no {EXTRA}/{CONFIG_FILE} in it); "
                              f"rdbench reloads the 'model' of a FINISHED rdbench run: runs:/<run id>/model")
        config = json.loads(path.read_text())
        if config.get("format") != FORMAT:
            raise ConfigError(f"--model {ref}: format {config.get('format')!r} of {CONFIG_FILE} is not {FORMAT}")
        _loaded[ref] = LoggedModel(ref, config, folder)
    loaded = _loaded[ref]
    if loaded.config.get("system") != system:
        raise ConfigError(f"--model {ref}: it is a {loaded.config.get('system')!r} model, not a {system!r} one; "
                          f"run it with `rdbench run {loaded.config.get('system')} --model {ref}`")
    return loaded


def _local_folder(ref: str) -> Path:
    files = [f"{EXTRA}/{CONFIG_FILE}", f"{EXTRA}/{WEIGHTS_FILE}"]
    if not ref.startswith(URI_SCHEMES):
        return Path(ref).expanduser()
    if not _fetchers:
        raise ConfigError(f"--model {ref}: no MLflow store to fetch it from in this process")
    errors = []
    for fetch in _fetchers:
        try:
            folder = fetch(ref, ["MLmodel"])
        except Exception as exc:  # noqa: BLE001 - a missing run or path: say which, in one line
            errors.append(" ".join(str(exc).split())[:300])
            continue
        try:
            return fetch(ref, files)
        except Exception:  # noqa: BLE001 - an MLflow model, but not one rdbench logged
            return folder
    raise ConfigError(f"--model {ref}: cannot fetch it ({'; '.join(errors)}); allowed: runs:/<run id>/model of a "
                      "run that logged a model, models:/<name>/<version>, or a local folder of a logged model")


def _leaves(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"channels": (8, 16)}}`` -> ``{"model.channels": [8, 16]}`` (JSON's view: tuples as lists)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.loads(json.dumps(value))
    return out
