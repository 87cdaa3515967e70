"""System metrics of a running cell: CPU, memory and, where there is one, GPU, as MLflow's ``system/*`` metrics.

While a group of cells runs, a background thread samples the machine every
``RDBENCH_SYSTEM_METRICS_S`` seconds (10; 0 switches it off) and logs, to every run of
the group, the metrics the MLflow UI's "System metrics" panel shows:

* ``system/cpu_utilization_percentage``, ``system/system_memory_usage_megabytes``,
  ``system/system_memory_usage_percentage`` and ``system/process_rss_megabytes`` (psutil);
* ``system/gpu_<i>_utilization_percentage`` and ``system/gpu_<i>_memory_usage_megabytes``
  for each NVIDIA GPU (NVML, through nvidia-ml-py), when a driver answers.

One sample is taken at the start and one at the end, so a cell shorter than the
interval has two points. The samples of a batch are the process's, shared by its cells.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from mlflow.entities import Metric

DEFAULT_INTERVAL_S = 10.0
MIB = 2**20


def interval() -> float:
    try:
        return float(os.environ.get("RDBENCH_SYSTEM_METRICS_S", DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S


def _gpus() -> list[Any]:
    try:
        import pynvml

        pynvml.nvmlInit()
        return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # noqa: BLE001 - no NVML library, no driver, no GPU: CPU metrics only
        return []


def sample(gpus: Sequence[Any] = ()) -> dict[str, float]:
    """One reading of the machine and this process."""
    import psutil

    memory = psutil.virtual_memory()
    out = {
        "system/cpu_utilization_percentage": psutil.cpu_percent(interval=None),
        "system/system_memory_usage_megabytes": (memory.total - memory.available) / MIB,
        "system/system_memory_usage_percentage": memory.percent,
        "system/process_rss_megabytes": psutil.Process().memory_info().rss / MIB,
    }
    if gpus:
        import pynvml

        for i, handle in enumerate(gpus):
            out[f"system/gpu_{i}_utilization_percentage"] = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            out[f"system/gpu_{i}_memory_usage_megabytes"] = pynvml.nvmlDeviceGetMemoryInfo(handle).used / MIB
    return out


class SystemMetrics:
    """``with SystemMetrics(client, run_ids): ...`` samples while the block runs."""

    def __init__(self, client: Any, run_ids: Sequence[str], every: float | None = None):
        self.client = client
        self.run_ids = list(run_ids)
        self.every = interval() if every is None else every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._step = 0
        self._gpus: list[Any] = []

    def __enter__(self) -> SystemMetrics:
        if self.every > 0 and self.run_ids:
            self._gpus = _gpus()
            self._log()
            self._thread = threading.Thread(target=self._loop, name="rdbench-system-metrics", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=30)
            self._log()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._log()

    def _log(self) -> None:
        try:
            values = sample(self._gpus)
        except Exception:  # noqa: BLE001 - a failed reading is skipped, never fails the cell
            return
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, self._step) for k, v in values.items()]
        self._step += 1
        for run_id in self.run_ids:
            try:
                self.client.log_batch(run_id, metrics=metrics)
            except Exception:  # noqa: BLE001 - a missed sample is not an error of the cell
                pass
