"""How a run was made: the versions of the stack, the device, and the state of the checkout, as tags.

:func:`version_tags` (Python, torch, MLflow, numpy, the CUDA torch was built for and
cuDNN) and :func:`git_tags` (the dirty flag) go on every run :class:`~.runs.TrackedRun`
opens; :func:`device_tags` on every run that knows its device (cells, grid parents, phase
maps). The diff of a dirty checkout is logged beside them by ``TrackedRun``. Versions are
read once per process.
"""

from __future__ import annotations

import functools
import platform
from typing import Any

from rdbench.provenance import tree_state
from rdbench.tracking.tags import (
    TAG_CUDA,
    TAG_CUDNN,
    TAG_DEVICE,
    TAG_DEVICE_NAME,
    TAG_GIT_DIRTY,
    TAG_MLFLOW,
    TAG_NUMPY,
    TAG_PYTHON,
    TAG_TORCH,
)

NONE = "none"


@functools.lru_cache(maxsize=1)
def version_tags() -> dict[str, str]:
    """The stack a run ran on (torch, imported by every system, is imported here too)."""
    import mlflow
    import numpy
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        TAG_PYTHON: platform.python_version(),
        TAG_TORCH: torch.__version__,
        TAG_MLFLOW: mlflow.__version__,
        TAG_NUMPY: numpy.__version__,
        TAG_CUDA: torch.version.cuda or NONE,
        TAG_CUDNN: str(cudnn) if cudnn else NONE,
    }


def git_tags() -> dict[str, str]:
    """``rdbench.git.dirty``, when rdbench runs from a checkout (nothing otherwise)."""
    state = tree_state()
    return {} if state is None else {TAG_GIT_DIRTY: str(state.dirty).lower()}


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says, else ``cpu``."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_tags(device: Any) -> dict[str, str]:
    """The device a run used (``cuda:0``, ``cpu``) and its name (the GPU's, or the CPU's model)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return {TAG_DEVICE: f"cuda:{index}", TAG_DEVICE_NAME: torch.cuda.get_device_name(index)}
    return {TAG_DEVICE: str(device), TAG_DEVICE_NAME: cpu_name()}
