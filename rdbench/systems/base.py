"""The plug-in protocol: what a system gives the rest of rdbench.

A system (Gray-Scott, LSTM, DDPM, ...) owns its dynamics. rdbench hands it a list
of :class:`Job` (one per cell of the study: case, seed, validated settings and a
:class:`Recorder` for its own artifacts) and gets back one :class:`Outcome` per
job: the :class:`~rdbench.balance.BalanceResult` of the real model, the results of
its named controls (measured through the same meter), and any extra scalars.

Systems never import MLflow: everything they want recorded goes through the
:class:`Recorder` interface, which :mod:`rdbench.tracking` implements. Adding a
fourth system means one module with a :class:`System` subclass and one
``conf/systems/<name>.yaml`` that names it as ``plugin``.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from rdbench.balance import BalanceResult
from rdbench.config import Settings
from rdbench.memory import available_host_memory
from rdbench.systems.records import DatasetRecord, ModelRecord


class Recorder(Protocol):
    """Where a system sends what it wants kept beside its balance metrics."""

    run_id: str  # the run's id in the tracking store (a checkpoint records which run wrote it)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Scalar metrics, optionally at a step (e.g. a loss at a training step)."""

    def log_series(self, name: str, values: Sequence[float], steps: Sequence[int]) -> None:
        """A whole per-step series at once (sent in batches, never one call a point)."""

    def log_image(self, array: np.ndarray, artifact_file: str, cmap: str | None = None) -> None:
        """A 2-D field (rendered with ``cmap``) or an HxWx3 image, as a PNG."""

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """A matplotlib figure."""

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        """A file (weights, checkpoints, tables)."""

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        """A JSON/YAML document."""

    def log_input(self, dataset: DatasetRecord) -> None:
        """A dataset the run trained or measured on (MLflow's Datasets panel)."""

    def log_model(self, model: ModelRecord) -> None:
        """A trained network as the MLflow model ``model`` (reloadable with ``--model runs:/<id>/model``)."""

    def note_checkpoint(self, path: str | Path, step: int | None, run_id: str | None) -> None:
        """The run continued from the checkpoint at ``path`` (at ``step``, written by run ``run_id``)."""


class Progress(Protocol):
    def update(self, n: int = 1) -> None: ...


ProgressFactory = Any  # Callable[[int, str], ContextManager[Progress]]


@contextlib.contextmanager
def no_progress(total: int, label: str = "") -> Iterator[Progress]:
    """A progress bar that shows nothing (the default off a terminal)."""

    class _Silent:
        def update(self, n: int = 1) -> None:
            pass

    yield _Silent()


@dataclass
class RunContext:
    """What every job of a group shares: the device, the progress display, where data lives,
    and whether a job continues from its config's checkpoint (``resume``, the default), refuses to
    go back (``resume=False``) or trains from scratch, discarding it (``fresh``)."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: ProgressFactory = no_progress
    data_dir: Path | None = None
    resume: bool = True
    fresh: bool = False


@dataclass
class Job:
    """One cell of the study as a system sees it.

    ``config_hash`` identifies everything that shaped the cell's result (system,
    case, seed, settings): a system keys files it keeps between runs (checkpoints)
    by it.
    """

    case: str
    seed: int
    settings: Any  # the system's Settings model
    recorder: Recorder
    profile: str = "paper"
    config_hash: str = ""


@dataclass
class Outcome:
    """What a system measured for one job."""

    balance: BalanceResult
    controls: dict[str, BalanceResult] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


class System(abc.ABC):
    """Base class of every system plug-in.

    Subclasses set :attr:`name` and :attr:`Settings` (a pydantic model deriving from
    :class:`rdbench.config.Settings`), and implement :meth:`run`.
    """

    name: ClassVar[str]
    Settings: ClassVar[type[Settings]]

    def check(self, settings: Any) -> None:
        """Reject settings that cannot run (raise ConfigError) before any run starts."""
        return None

    def case_for_model(self, model: str, data_dir: Path | None) -> tuple[str, dict[str, Any], str] | None:
        """With ``--model`` and no case given: ``(case, overrides, a line saying why)`` to measure the
        model on, or None for the system's default case."""
        return None

    def check_run(self, settings: Any, config_hash: str, ctx: RunContext) -> None:
        """Checks that need the run context (where data and checkpoints live, ``--no-resume``): raise
        ConfigError before any run exists. What can only be known once the job runs stays in :meth:`run`."""
        return None

    def run_tags(self, settings: Any) -> dict[str, str]:
        """Extra tags of a cell's run (``rdbench.<name>``), e.g. an unstable step run anyway."""
        return {}

    def unused_settings(self, settings: Any) -> set[str]:
        """Dotted setting names (a name covers its sub-keys) that this case never reads: they are
        not logged as params (e.g. the Lorenz parameters of a sine run). They still enter the config
        hash."""
        return set()

    def group_key(self, settings: Any) -> Hashable | None:
        """Jobs whose settings share a non-None key may run together in one batch."""
        return None

    def memory_bytes(self, settings: Sequence[Any]) -> int | None:
        """An estimate of the device memory one batch of jobs with these settings needs
        (None: no estimate). The runner refuses a batch above what the device has
        before any run exists."""
        return None

    @abc.abstractmethod
    def run(self, jobs: Sequence[Job], ctx: RunContext) -> list[Outcome | BaseException]:
        """Run the jobs (one group) and return one entry per job, in order.

        An entry is the job's :class:`Outcome`, or the exception that made that job
        fail (e.g. one diverging row of a batched simulation): the runner marks that
        job's cell FAILED with it and the others FINISHED. An exception raised out of
        ``run`` fails the whole group.
        """


def available_memory(device: torch.device) -> int | None:
    """Bytes the device can still give: free CUDA memory, or MemAvailable of /proc/meminfo on CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return available_host_memory()


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use cpu or auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}; allowed: cpu, cuda, cuda:N, auto")
    return torch.device(name)
