"""``rdbench bench rd``: Gray-Scott cell updates per second against a plain numpy step.

All variants run in one process, interleaved round by round, on the same grid and
dtype; the best round of each is kept (the least disturbed by other load). Printed:

* numpy ``np.roll`` step (no metrics)                  -- the baseline
* rdbench eager, metrics recorded at every step
* rdbench fused (torch.compile), no metrics recorded
* rdbench fused (torch.compile), metrics at every step -- the headline
* ratio headline / numpy, and the recording overhead (fused with / without metrics - 1)
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from rdbench.balance import BalanceMeter
from rdbench.bench.timing import interleaved
from rdbench.config import load_system
from rdbench.systems.base import resolve_device
from rdbench.systems.grayscott import TERMS, GrayScottSettings, GrayScottSimulation, initial_state


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
def rdbench_run(settings: GrayScottSettings, batch: int, device: torch.device, measured: bool) -> None:
    sim = GrayScottSimulation([settings] * batch, list(range(batch)), device)
    meter = BalanceMeter(batch, TERMS, device=device)
    if measured:
        for n in range(settings.steps):
            sim.advance(meter, n)
    else:
        for _ in range(settings.steps):
            sim.advance()
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_rd(grid_size: int, steps: int, batch: int, rounds: int, device: str,
             echo: Callable[[str], None] = print) -> None:
    """Gray-Scott throughput: rdbench (eager and fused) against a numpy np.roll step."""
    dev = resolve_device(device)
    conf = load_system("rd")
    dx = conf.resolve("spot").dx  # keep the paper's dx (and so its stable dt) on the bigger grid
    overrides = {"grid_size": grid_size, "domain_length": grid_size * dx, "steps": steps, "early_stop.tolerance": 0.0}
    eager = conf.resolve("spot", overrides={**overrides, "compile": False})
    fused = conf.resolve("spot", overrides={**overrides, "compile": True})

    t0 = time.perf_counter()
    rdbench_run(fused.model_copy(update={"steps": 2}), batch, dev, True)
    rdbench_run(fused.model_copy(update={"steps": 2}), batch, dev, False)
    compile_s = time.perf_counter() - t0

    variants = {
        "numpy np.roll step (no metrics)": lambda: numpy_run(eager, steps, batch),
        "rdbench eager, metrics every step": lambda: rdbench_run(eager, batch, dev, True),
        "rdbench fused, no metrics": lambda: rdbench_run(fused, batch, dev, False),
        "rdbench fused, metrics every step": lambda: rdbench_run(fused, batch, dev, True),
    }
    timings = interleaved(variants, rounds)
    best = {name: timings.best(name) for name in variants}
    updates = grid_size * grid_size * batch * steps
    echo(
        f"Gray-Scott {grid_size}x{grid_size}, batch {batch}, {steps} steps x {rounds} rounds, "
        f"{eager.dtype}, device {dev}, torch threads {torch.get_num_threads()}"
    )
    echo(f"(torch.compile warm-up: {compile_s:.1f} s, not timed)")
    for name, seconds in best.items():
        echo(f"  {name:38s} {updates / seconds / 1e6:9.1f} M cell-updates/s")
    numpy_rate = updates / best["numpy np.roll step (no metrics)"]
    headline = updates / best["rdbench fused, metrics every step"]
    overhead = best["rdbench fused, metrics every step"] / best["rdbench fused, no metrics"] - 1
    echo(f"ratio fused-with-metrics / numpy: {headline / numpy_rate:.2f}x")
    echo(f"ratio eager-with-metrics / numpy: {updates / best['rdbench eager, metrics every step'] / numpy_rate:.2f}x")
    echo(f"recording metrics every step costs {100 * overhead:+.1f} % of the fused step")
