"""``rdbench bench rd``: Gray-Scott cell updates per second against a plain numpy step.

All variants run in one process, interleaved round by round (:mod:`rdbench.bench.timing`),
on the same grid and dtype; the best round of each is kept (the least disturbed by other
load). Printed:

* numpy ``np.roll`` step (no metrics)                  -- the baseline
* rdbench eager (``kernel: eager``), metrics at every step
* rdbench fused (``kernel: compiled``, torch.compile; the default on CPU), no metrics recorded
* rdbench fused, metrics at every step                 -- the headline on CPU (what the paper profile runs)
* on CUDA only: rdbench triton (``kernel: triton``, one Triton kernel; the default on CUDA),
  without and with metrics every step (on CPU it would run in Triton's interpreter: meaningless
  for speed, so it is left out)
* rdbench ETDRK4 (``scheme: etdrk4``), metrics at every step -- the second integrator's cost beside it
* ratio headline / numpy, and the recording overhead (fused with / without metrics - 1)
* beside each rdbench variant, its fraction of the memory-bandwidth bound: a fused float32
  step reads u, v and writes them once, 16 B per cell update, so at most (copy bandwidth / 16 B)
  cell-updates/s, the copy bandwidth measured in the same run (a tensor copy on the device)
* the compile warm-up, timed apart (a second run in a fresh process reads the kernels
  from the on-disk cache and pays only the tracing), and the peak memory (RSS; on CUDA also
  the peak allocated device memory)

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
from rdbench.memory import check_fits
from rdbench.systems.base import available_memory, resolve_device
from rdbench.systems.grayscott import (
    TERMS,
    GrayScott,
    GrayScottSettings,
    GrayScottSimulation,
    initial_state,
    step_kernel,
)
from rdbench.systems.grayscott_kernels import BYTES_PER_UPDATE

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
    if meter is not None:
        sim.flush(meter)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return sim


def _settings(grid_size: int, steps: int, kernel: str) -> GrayScottSettings:
    conf = load_system("rd")
    dx = conf.resolve("spot").dx  # keep the paper's dx (and so its stable dt) on any grid
    overrides = {"grid_size": grid_size, "domain_length": grid_size * dx, "steps": steps,
                 "early_stop.tolerance": 0.0, "kernel": kernel}
    return conf.resolve("spot", overrides=overrides)


def copy_bandwidth(device: torch.device, at_least: int = 0, rounds: int = 5) -> float:
    """Bytes read + written per second by a tensor copy on ``device``, best of ``rounds``: of 1 GiB
    on a GPU (a smaller copy would time the launch), 64 MiB on the CPU, or ``at_least`` bytes."""
    nbytes = max(at_least, (1 << 30) if device.type == "cuda" else 64 * MIB)
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best = float("inf")
    for _ in range(rounds):
        sync()
        t0 = time.perf_counter()
        dst.copy_(src)
        sync()
        best = min(best, time.perf_counter() - t0)
    rate = 2 * src.numel() * 4 / best
    del src, dst
    if device.type == "cuda":  # the copy's buffers are not the benchmark's memory: call this first
        torch.cuda.reset_peak_memory_stats(device)
    return rate


def peak_memory(device: torch.device) -> str:
    """The process's peak resident set, and on CUDA the peak allocated device memory."""
    text = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    if device.type == "cuda":
        text += f", peak CUDA allocated {torch.cuda.max_memory_allocated(device) / MIB:.0f} MiB"
    return text


def check_size(settings: GrayScottSettings, batch: int, steps: int, dev: torch.device) -> None:
    """ConfigError before anything is allocated when a batch (the simulation, its numpy twin, the
    meter's series of ``steps`` recorded steps) needs more than ``dev`` has."""
    need = 2 * GrayScott().memory_bytes([settings] * batch) + batch * steps * len(TERMS) * 8
    check_fits(need, available_memory(dev), f"bench rd --grid-size {settings.grid_size} --batch {batch}",
               "use a smaller --grid-size or --batch", str(dev))


def bench_rd(grid_size: int, steps: int, batch: int, rounds: int, device: str,
             echo: Callable[[str], None] = print) -> None:
    """Gray-Scott throughput: rdbench (eager and fused) against a numpy np.roll step."""
    dev = resolve_device(device)
    eager = _settings(grid_size, steps, "eager")
    check_size(eager, batch, steps, dev)
    fused = _settings(grid_size, steps, "compiled")
    spectral = eager.model_copy(update={"scheme": "etdrk4"})
    triton = _settings(grid_size, steps, "triton") if step_kernel(fused.model_copy(update={"kernel": "auto"}),
                                                                  dev) == "triton" else None

    updates = grid_size * grid_size * batch * steps
    bandwidth = copy_bandwidth(dev, 2 * batch * (grid_size + 2) ** 2 * 4)
    bound = bandwidth / BYTES_PER_UPDATE

    t0 = time.perf_counter()
    for warm in (fused, triton) if triton else (fused,):
        rdbench_run(warm.model_copy(update={"steps": 2}), batch, dev, True)
        rdbench_run(warm.model_copy(update={"steps": 2}), batch, dev, False)
    compile_s = time.perf_counter() - t0

    variants = {
        "numpy np.roll step (no metrics)": lambda: numpy_run(eager, steps, batch),
        "rdbench eager, metrics every step": lambda: rdbench_run(eager, batch, dev, True),
        "rdbench fused, no metrics": lambda: rdbench_run(fused, batch, dev, False),
        "rdbench fused, metrics every step": lambda: rdbench_run(fused, batch, dev, True),
        "rdbench etdrk4, metrics every step": lambda: rdbench_run(spectral, batch, dev, True),
    }
    if triton:
        variants["rdbench triton, no metrics"] = lambda: rdbench_run(triton, batch, dev, False)
        variants["rdbench triton, metrics every step"] = lambda: rdbench_run(triton, batch, dev, True)
    timings = interleaved(variants, rounds, alternate=True)
    best = {name: timings.best(name) for name in variants}
    echo(
        f"Gray-Scott {grid_size}x{grid_size}, batch {batch}, {steps} steps x {rounds} rounds, "
        f"{eager.dtype}, device {dev}, torch threads {torch.get_num_threads()}"
    )
    echo(f"(warm-up of the compiled{' and Triton' if triton else ''} step: {compile_s:.1f} s, not timed; "
         f"kernels cached on disk for later runs)")
    echo(f"bandwidth bound: {bandwidth / 1e9:.1f} GB/s copy / {BYTES_PER_UPDATE} B per cell update = "
         f"{bound / 1e6:.1f} M cell-updates/s")
    for name, seconds in best.items():
        rate = updates / seconds
        share = "" if name.startswith("numpy") else f"   {100 * rate / bound:5.1f} % of the bound"
        echo(f"  {name:38s} {rate / 1e6:9.1f} M cell-updates/s{share}")
    numpy_rate = updates / best["numpy np.roll step (no metrics)"]
    headline = updates / best["rdbench fused, metrics every step"]
    overhead = best["rdbench fused, metrics every step"] / best["rdbench fused, no metrics"] - 1
    echo(f"ratio fused-with-metrics / numpy: {headline / numpy_rate:.2f}x")
    echo(f"ratio eager-with-metrics / numpy: {updates / best['rdbench eager, metrics every step'] / numpy_rate:.2f}x")
    echo(f"an ETDRK4 step costs {best['rdbench etdrk4, metrics every step'] / best['rdbench fused, metrics every step']:.1f}x "
         f"a fused Euler step (both with metrics)")
    echo(f"recording metrics every step costs {100 * overhead:+.1f} % of the fused step")
    if triton:
        triton_rate = updates / best["rdbench triton, metrics every step"]
        echo(f"ratio triton-with-metrics / fused-with-metrics: {triton_rate / headline:.2f}x")
        echo(f"ratio triton-with-metrics / numpy: {triton_rate / numpy_rate:.2f}x")
    echo(peak_memory(dev))


def _memory_now(device: torch.device) -> tuple[float, float]:
    """(current, peak) resident set in MiB, or allocated device memory on CUDA."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / MIB, torch.cuda.max_memory_allocated(device) / MIB
    return psutil.Process().memory_info().rss / MIB, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_rd_memory(grid_size: int, steps: int, batch: int, device: str, kernel: str = "auto",
                    echo: Callable[[str], None] = print) -> float:
    """Resident memory of one batch after ``steps`` and after ``10 x steps`` steps (metrics every
    step, the meter growing as it does in a run); returns the growth of the current RSS in %."""
    dev = resolve_device(device)
    settings = _settings(grid_size, steps, kernel)
    check_size(settings, batch, 10 * steps, dev)
    sim = GrayScottSimulation([settings] * batch, list(range(batch)), dev)
    meter = BalanceMeter(batch, TERMS, device=dev)
    start = time.perf_counter()
    marks = {}
    with torch.inference_mode():
        for n in range(10 * steps):
            sim.advance(meter, n)
            if n + 1 in (steps, 10 * steps):
                sim.flush(meter)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                marks[n + 1] = (*_memory_now(dev), time.perf_counter() - start)
    what = "allocated CUDA memory" if dev.type == "cuda" else "resident set"
    echo(f"Gray-Scott {grid_size}x{grid_size}, batch {batch}, {settings.dtype}, device {dev}, "
         f"{sim.kernel} step, metrics every step; {what} (current / peak):")
    for n, (now, peak, seconds) in marks.items():
        echo(f"  after {n:6d} steps: {now:8.1f} MiB / {peak:8.1f} MiB   ({seconds:.0f} s)")
    (first, first_peak, _), (last, last_peak, _) = marks[steps], marks[10 * steps]
    growth = 100 * (last / first - 1)
    echo(f"growth from {steps} to {10 * steps} steps: {growth:+.2f} % current, "
         f"{100 * (last_peak / first_peak - 1):+.2f} % peak (target <= {MEMORY_GROWTH_TARGET:.0f} %)")
    return growth


def kernel_rates(grid_size: int, steps: int, batch: int, kernels: list[str], device: str, rounds: int = 3,
                 echo: Callable[[str], None] = print) -> dict[str, float]:
    """Cell-updates/s of :meth:`GrayScottSimulation.run` (metrics every step, the divergence and
    early-stop checks every ``check_every`` steps, as a phase-map chunk runs them) for each of
    ``kernels`` on one batch, best of ``rounds``, the batch built and warmed up outside the timing;
    each with its fraction of the bandwidth bound (a device copy measured here). Returns the rates."""
    dev = resolve_device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    bandwidth = copy_bandwidth(dev, 2 * batch * (grid_size + 2) ** 2 * 4)
    bound = bandwidth / BYTES_PER_UPDATE
    echo(f"Gray-Scott {grid_size}x{grid_size}, batch {batch}, {steps} steps, metrics every step, device {dev}; "
         f"bound {bandwidth / 1e9:.1f} GB/s / {BYTES_PER_UPDATE} B = {bound:.3g} cell-updates/s")
    rates = {}
    for kernel in kernels:
        settings = _settings(grid_size, steps, kernel).model_copy(update={"controls": {}})
        with torch.inference_mode():  # both batches built alike: the compiled step's guards see the same tensors
            sim = GrayScottSimulation([settings] * batch, list(range(batch)), dev)
            GrayScottSimulation([settings.model_copy(update={"steps": 2})] * batch, list(range(batch)), dev).run(
                BalanceMeter(batch, TERMS, device=dev))  # compile / JIT outside the timing
        best = float("inf")
        for _ in range(rounds):
            meter = BalanceMeter(batch, TERMS, device=dev)
            sim.steps_run = 0
            sync()
            t0 = time.perf_counter()
            sim.run(meter)
            sync()
            best = min(best, time.perf_counter() - t0)
        rates[kernel] = batch * grid_size**2 * sim.steps_run / best
        echo(f"  kernel {sim.kernel:9s} {rates[kernel]:.4g} cell-updates/s = {100 * rates[kernel] / bound:5.1f} % "
             f"of the bound ({1e3 * best / sim.steps_run:.3f} ms per step)")
        del sim
    echo(peak_memory(dev))
    return rates
