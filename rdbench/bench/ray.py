"""``rdbench bench ray``: a small grid of LSTM cells in-process and on a local Ray instance.

One run, side by side: the same grid (``cells`` LSTM cells, the smoke profile with
``epochs`` epochs, single-threaded as the LSTM system runs them) through
:func:`~rdbench.study.execution.run_grid` with the in-process executor and with
:class:`~rdbench.study.ray_executor.RayExecutor` on a local Ray instance of 1 and of 2
CPUs (``workers``). Each variant runs in a fresh process of its own, into a fresh
sqlite store created before the clock starts, so that none inherits another's
imports, caches or memory.

Printed per variant: Ray's start-up (``ray.init``), the grid's wall time (the parent
run opened to the last cell closed, workers' imports included), seconds per cell,
the Ray overhead per cell (grid wall time minus in-process, over the cells: with one
worker the same cells run one after another, so the difference is Ray's), the peak
resident memory of the driver and of the driver with every process under it (raylet,
GCS, workers), sampled; then the speed-up from 1 to 2 workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

IN_PROCESS = 0  # ``workers`` of the in-process variant
SAMPLE_S = 0.2  # how often the memory sampler looks


@dataclass
class Variant:
    """How one variant went."""

    workers: int  # 0: in-process
    startup_s: float
    wall_s: float
    finished: int
    peak_driver_mb: float
    peak_tree_mb: float

    @property
    def name(self) -> str:
        if self.workers == IN_PROCESS:
            return "in-process"
        return f"ray, {self.workers} worker{'s' if self.workers > 1 else ''}"


class PeakMemory:
    """Samples the resident memory of this process and of every process under it, keeps the peaks."""

    def __init__(self, interval: float = SAMPLE_S):
        import psutil

        self.me = psutil.Process()
        self.interval = interval
        self.driver = self.tree = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rdbench-peak-memory", daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def sample(self) -> None:
        import psutil

        own = self.me.memory_info().rss
        total = own
        for child in self.me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:  # ended between the listing and the look
                pass
        self.driver, self.tree = max(self.driver, own), max(self.tree, total)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


def write_grid(folder: Path, cells: int) -> Path:
    """A grid of ``cells`` LSTM cells (the sine case, seeds 0..cells-1, smoke profile)."""
    path = folder / "bench-ray.yaml"
    seeds = ", ".join(str(s) for s in range(cells))
    path.write_text(f"description: rdbench bench ray\nprofile: smoke\nseeds: [{seeds}]\n"
                    "cells:\n  - system: lstm\n    cases: [sine]\n")
    return path


def run_variant(workers: int, grid: str, epochs: int, store: str, out: mp.Queue) -> None:
    """One variant, in a process of its own: the grid into a fresh sqlite store; a Variant back on ``out``."""
    os.environ["MLFLOW_TRACKING_URI"] = store
    import torch

    from rdbench.study.execution import run_grid
    from rdbench.study.executor import InProcess
    from rdbench.study.grid import plan_grid
    from rdbench.study.ray_executor import RayExecutor
    from rdbench.systems.base import RunContext
    from rdbench.tracking.store import client, experiment_id

    plan = plan_grid(grid, (), {"epochs": epochs})
    experiment_id(client(), "bench-ray")  # the store and experiment exist before the clock starts
    ctx = RunContext(device=torch.device("cpu"))
    with PeakMemory() as peak:
        start = time.perf_counter()
        if workers == IN_PROCESS:
            startup = 0.0
            result = run_grid(plan, "bench-ray", ctx, executor=InProcess())
        else:
            with RayExecutor(num_cpus=workers, uri=store) as executor:
                startup = time.perf_counter() - start
                result = run_grid(plan, "bench-ray", ctx, executor=executor)
        wall = result.wall_time_s
    out.put(Variant(workers, startup, wall, result.count("FINISHED"), peak.driver / 2**20, peak.tree / 2**20))


def bench_ray(cells: int, epochs: int, worker_counts: Sequence[int], workdir: str | None,
              echo: Callable[[str], None] = print) -> list[Variant]:
    """Run the in-process variant, then one Ray variant per entry of ``worker_counts``; print the table."""
    if cells < 1 or epochs < 1 or not worker_counts or min(worker_counts) < 1:
        raise ValueError("cells, epochs and every --workers must be at least 1")
    if workdir is None:  # the stores of the variants go with the run
        with tempfile.TemporaryDirectory(prefix="rdbench-bench-ray-") as tmp:
            return bench_ray(cells, epochs, worker_counts, tmp, echo)
    folder = Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    grid = write_grid(folder, cells)
    spawn = mp.get_context("spawn")
    echo(f"Ray executor: {cells} LSTM cells (lstm/sine, smoke profile, epochs={epochs}, 1 torch thread each), "
         f"device cpu, a fresh sqlite store per variant; this machine: {os.cpu_count()} CPUs, "
         f"load average {os.getloadavg()[0]:.2f} at the start")
    results: list[Variant] = []
    for workers in (IN_PROCESS, *worker_counts):
        out = spawn.Queue()
        store = f"sqlite:///{folder / f'store-{workers}.db'}"
        proc = spawn.Process(target=run_variant, args=(workers, str(grid), epochs, store, out))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"the {'in-process' if workers == IN_PROCESS else f'{workers}-worker Ray'} "
                               f"variant failed (exit {proc.exitcode})")
        results.append(out.get(timeout=10))
    base = results[0]
    echo(f"{'variant':<16} {'start-up s':>10} {'grid s':>8} {'s/cell':>7} {'overhead/cell s':>15} "
         f"{'finished':>8} {'peak driver MB':>14} {'peak all MB':>11}")
    for v in results:
        overhead = "" if v.workers == IN_PROCESS else f"{(v.wall_s - base.wall_s) / cells:+.2f}"
        echo(f"{v.name:<16} {v.startup_s:>10.1f} {v.wall_s:>8.1f} {v.wall_s / cells:>7.2f} {overhead:>15} "
             f"{v.finished:>5}/{cells:<2} {v.peak_driver_mb:>14.0f} {v.peak_tree_mb:>11.0f}")
    one = next((v for v in results if v.workers == 1), None)
    for v in results:
        if one is not None and v.workers > 1:
            echo(f"speed-up 1 -> {v.workers} workers: {one.wall_s / v.wall_s:.2f}x (ideal {v.workers}.00x)")
    echo(f"load average {os.getloadavg()[0]:.2f} at the end (other processes on the machine slow every variant)")
    return results
