"""``rdbench bench rd``: Gray-Scott cell updates per second against a plain numpy step.

All variants run in one process, interleaved round by round (:mod:`rdbench.bench.timing`),
on the same grid and dtype; the best round of each is kept (the least disturbed by other
load). Printed:

* numpy ``np.roll`` step (no metrics)                  -- the baseline
* rdbench eager (``compile: false``), metrics at every step
* rdbench fused (torch.compile, the default), no metrics recorded
* rdbench fused, metrics at every step                 -- the headline (what the paper profile runs)
* rdbench ETDRK4 (``scheme: etdrk4``), metrics at every step -- the second integrator's cost beside it
* ratio headline / numpy, and the recording overhead (fused with / without metrics - 1)
* the compile warm-up, timed apart (a second run in a fresh process reads the kernels
  from the on-disk cache and pays only the tracing)

``--memory`` instead runs one batch for ``steps`` then ``10 x steps`` steps and prints the
resident set after each (current and peak) and its growth: flat memory is a correctness
property (the step allocates nothing the size of the grid, see rdbench/systems/grayscott.py).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

import numpy as np
import psutil
import torch

from rdbench.balance import BalanceMeter
from rdbench.bench.timing import interleaved
from rdbench.config import load_system
from rdbench.systems.base import resolve_device
from rdbench.systems.grayscott import TERMS, GrayScottSettings, GrayScottSimulation, initial_state

MIB = 1024 * 1024
MEMORY_GROWTH_TARGET = 5.0  # % growth of the resident set from 1x to 10x the steps (issue 11)


def numpy_run(settings: GrayScottSettings, steps: int, batch: int) -> None:
    """The same explicit Euler step written plainly with ``np.roll`` (float32 like rdbench)."""
    dtype = np.dtype(settings.dtype)
    u0, v0 = initial_state(settings, 0, torch.float64)
    u = np.repeat(u0.numpy()[None], batch, 0).astype(dtype)
    v = np.repeat(v0.numpy()[None], batch, 0).astype(dtype)
    f, k = dtype.type(settings.feed), dtype.type(settings.kill)
    du, dv = dtype.type(settings.diffusion_u), dtype.type(settings.diffusion_v)
    dt, inv_dx2 = dtype.type(settings.dt), dtype.type(1.0 / settings.dx**2)

    def lap(x):
        return (np.roll(x, 1, -1) + np.roll(x, -1, -1) + np.roll(x, 1, -2) + np.roll(x, -1, -2) - 4 * x) * inv_dx2

    for _ in range(steps):
        uvv = u * v * v
        u, v = (
            u + dt * (du * lap(u) - uvv + f * (1 - u)),
            v + dt * (dv * lap(v) + uvv - (f + k) * v),
        )


@torch.inference_mode()
def rdbench_run(settings: GrayScottSettings, batch: int, device: torch.device, measured: bool,
                sim: GrayScottSimulation | None = None) -> GrayScottSimulation:
    """``settings.steps`` steps of a batch (a new one unless ``sim`` is given), metrics every step or none."""
    sim = sim or GrayScottSimulation([settings] * batch, list(range(batch)), device)
    meter = BalanceMeter(batch, TERMS, device=device) if measured else None
    for n in range(settings.steps):
        sim.advance(meter, n)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return sim


def _settings(grid_size: int, steps: int, compile: bool) -> GrayScottSettings:
    conf = load_system("rd")
    dx = conf.resolve("spot").dx  # keep the paper's dx (and so its stable dt) on any grid
    overrides = {"grid_size": grid_size, "domain_length": grid_size * dx, "steps": steps,
                 "early_stop.tolerance": 0.0, "compile": compile}
    return conf.resolve("spot", overrides=overrides)


def bench_rd(grid_size: int, steps: int, batch: int, rounds: int, device: str,
             echo: Callable[[str], None] = print) -> None:
    """Gray-Scott throughput: rdbench (eager and fused) against a numpy np.roll step."""
    dev = resolve_device(device)
    eager = _settings(grid_size, steps, compile=False)
    fused = _settings(grid_size, steps, compile=True)
    spectral = eager.model_copy(update={"scheme": "etdrk4"})

    t0 = time.perf_counter()
    rdbench_run(fused.model_copy(update={"steps": 2}), batch, dev, True)
    rdbench_run(fused.model_copy(update={"steps": 2}), batch, dev, False)
    compile_s = time.perf_counter() - t0

    variants = {
        "numpy np.roll step (no metrics)": lambda: numpy_run(eager, steps, batch),
        "rdbench eager, metrics every step": lambda: rdbench_run(eager, batch, dev, True),
        "rdbench fused, no metrics": lambda: rdbench_run(fused, batch, dev, False),
        "rdbench fused, metrics every step": lambda: rdbench_run(fused, batch, dev, True),
        "rdbench etdrk4, metrics every step": lambda: rdbench_run(spectral, batch, dev, True),
    }
    timings = interleaved(variants, rounds, alternate=True)
    best = {name: timings.best(name) for name in variants}
    updates = grid_size * grid_size * batch * steps
    echo(
        f"Gray-Scott {grid_size}x{grid_size}, batch {batch}, {steps} steps x {rounds} rounds, "
        f"{eager.dtype}, device {dev}, torch threads {torch.get_num_threads()}"
    )
    echo(f"(torch.compile warm-up: {compile_s:.1f} s, not timed; kernels cached on disk for later runs)")
    for name, seconds in best.items():
        echo(f"  {name:38s} {updates / seconds / 1e6:9.1f} M cell-updates/s")
    numpy_rate = updates / best["numpy np.roll step (no metrics)"]
    headline = updates / best["rdbench fused, metrics every step"]
    overhead = best["rdbench fused, metrics every step"] / best["rdbench fused, no metrics"] - 1
    echo(f"ratio fused-with-metrics / numpy: {headline / numpy_rate:.2f}x")
    echo(f"ratio eager-with-metrics / numpy: {updates / best['rdbench eager, metrics every step'] / numpy_rate:.2f}x")
    echo(f"an ETDRK4 step costs {best['rdbench etdrk4, metrics every step'] / best['rdbench fused, metrics every step']:.1f}x "
         f"a fused Euler step (both with metrics)")
    echo(f"recording metrics every step costs {100 * overhead:+.1f} % of the fused step")
    echo(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def _memory_now(device: torch.device) -> tuple[float, float]:
    """(current, peak) resident set in MiB, or allocated device memory on CUDA."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / MIB, torch.cuda.max_memory_allocated(device) / MIB
    return psutil.Process().memory_info().rss / MIB, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_rd_memory(grid_size: int, steps: int, batch: int, device: str, compile: bool = True,
                    echo: Callable[[str], None] = print) -> float:
    """Resident memory of one batch after ``steps`` and after ``10 x steps`` steps (metrics every
    step, the meter growing as it does in a run); returns the growth of the current RSS in %."""
    dev = resolve_device(device)
    settings = _settings(grid_size, steps, compile=compile)
    sim = GrayScottSimulation([settings] * batch, list(range(batch)), dev)
    meter = BalanceMeter(batch, TERMS, device=dev)
    start = time.perf_counter()
    marks = {}
    with torch.inference_mode():
        for n in range(10 * steps):
            sim.advance(meter, n)
            if n + 1 in (steps, 10 * steps):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                marks[n + 1] = (*_memory_now(dev), time.perf_counter() - start)
    what = "allocated CUDA memory" if dev.type == "cuda" else "resident set"
    echo(f"Gray-Scott {grid_size}x{grid_size}, batch {batch}, {settings.dtype}, device {dev}, "
         f"{'fused' if compile else 'eager'} step, metrics every step; {what} (current / peak):")
    for n, (now, peak, seconds) in marks.items():
        echo(f"  after {n:6d} steps: {now:8.1f} MiB / {peak:8.1f} MiB   ({seconds:.0f} s)")
    (first, first_peak, _), (last, last_peak, _) = marks[steps], marks[10 * steps]
    growth = 100 * (last / first - 1)
    echo(f"growth from {steps} to {10 * steps} steps: {growth:+.2f} % current, "
         f"{100 * (last_peak / first_peak - 1):+.2f} % peak (target <= {MEMORY_GROWTH_TARGET:.0f} %)")
    return growth
