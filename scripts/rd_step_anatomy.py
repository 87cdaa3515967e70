"""Where a Gray-Scott phase map's time goes, counted on the machine at hand (issue 19).

    python scripts/rd_step_anatomy.py [--rows 8] [--grid 200] [--kernel compiled] [--device cpu]

1. torch.profiler over one plain step, one recorded step and one check step of a batch
   (``--kernel``): the operators and compiled kernels each launches, with calls and time.
2. The per-row work of :func:`rdbench.phase.simulate.run_chunk` that the map's wall time
   holds besides the steps, timed per row and scaled to the 64x64 map's 4,096 rows:
   drawing a row's initial state, reading a row's series back from a meter of
   ``--steps`` steps (:meth:`BalanceMeter.result`), labelling a row.

On CUDA it times the same pieces there; on CPU the operator counts are those of the CPU
build (inductor's C++ kernels), which the CUDA build mirrors op for op.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from rdbench.balance import BalanceMeter
from rdbench.config import conf_dir, load_system, read_yaml
from rdbench.phase.labels import label_point
from rdbench.phase.plan import LabelRule
from rdbench.systems.grayscott import TERMS, GrayScottSimulation, initial_state


def _profile_step(sim, meter, step, check, device):
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        sim.advance(meter, step, check)
        if check:
            sim.flush(meter)
            change, totals = sim._check_sums()  # noqa: SLF001 - what run() does on a check step
            sim._freeze_diverged(step, meter, totals)  # noqa: SLF001
            meter.stop_samples(torch.nonzero(change() < 0).flatten().cpu().numpy())
        if device.type == "cuda":
            torch.cuda.synchronize()
    return prof.key_averages()


def _per_row(label, seconds, rows, map_rows, steps):
    per_row = seconds / rows
    total = per_row * map_rows
    print(f"  {label:44s} {1e3 * per_row:8.3f} ms/row -> {total:6.1f} s for {map_rows} rows "
          f"= {1e3 * total / steps:5.2f} ms per step of {steps}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--grid", type=int, default=200)
    parser.add_argument("--steps", type=int, default=5000, help="the map's steps (the meter's length)")
    parser.add_argument("--map-rows", type=int, default=4096)
    parser.add_argument("--kernel", default="compiled", choices=["compiled", "eager", "triton"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    settings = load_system("rd").resolve("spot", overrides={"grid_size": args.grid, "kernel": args.kernel})
    rows = args.rows

    sim = GrayScottSimulation([settings] * rows, list(range(rows)), device)
    meter = BalanceMeter(rows, TERMS, device=device)
    with torch.inference_mode():
        for n in range(4):  # compile and warm up: a recorded, a plain and a check step
            sim.advance(meter if n % 2 else None, n, check=n == 3)
        print(f"== 1. one step of {rows} rows of {args.grid}x{args.grid}, kernel {sim.kernel}, device {device}")
        for name, step, check, measured in (("plain step", 3, False, False), ("recorded step", 4, False, True),
                                            ("recorded check step", 5, True, True)):
            averages = _profile_step(sim, meter if measured else None, step, check, device)
            print(f"-- {name}: operators and kernels (calls, self CPU time)")
            ops = [a for a in averages if a.self_cpu_time_total > 0 or a.key.startswith(("cpp_", "triton_"))]
            for a in sorted(ops, key=lambda a: -a.self_cpu_time_total)[:25]:
                print(f"   {a.count:4d} x {a.key[:70]:70s} {a.self_cpu_time_total / 1e3:8.3f} ms")
            launches = sum(a.count for a in averages if a.key.startswith(("cudaLaunchKernel", "cuLaunchKernel")))
            if device.type == "cuda":
                print(f"   kernel launches: {launches}")

    print(f"\n== 2. per-row work of a chunk besides the steps (scaled to {args.map_rows} rows, {args.steps} steps)")
    sample = min(rows * 8, 64)
    t0 = time.perf_counter()
    for seed in range(sample):
        initial_state(settings, seed, torch.float32)
    _per_row("initial state (CPU, float64 randn)", time.perf_counter() - t0, sample, args.map_rows, args.steps)

    big = BalanceMeter(args.map_rows, TERMS, device=device)
    big.record_many(list(range(args.steps)), torch.rand(args.steps, args.map_rows, len(TERMS), device=device))
    t0 = time.perf_counter()
    for row in range(sample):
        big.result([row])
    _per_row("meter.result([row]) (before: one read-back a row)", time.perf_counter() - t0, sample, args.map_rows,
             args.steps)
    t0 = time.perf_counter()
    big.results()
    _per_row("meter.results() (now: one read-back)", time.perf_counter() - t0, args.map_rows, args.map_rows, args.steps)
    del big

    rule = LabelRule(**read_yaml(conf_dir() / "phase" / "rd.yaml")["labels"])
    with torch.inference_mode():
        for n in range(200):
            sim.advance(None, n)
    fields = sim.v.cpu().numpy()
    r_t = np.linspace(1, 2, args.steps)
    t0 = time.perf_counter()
    for i in range(sample):
        label_point(fields[i % rows], r_t, rule)
    _per_row("label_point (scipy components)", time.perf_counter() - t0, sample, args.map_rows, args.steps)


if __name__ == "__main__":
    main()
