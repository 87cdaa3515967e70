"""The DDPM exact-denoiser controls alone (``rdbench oracle``), no training: a check and a sweep.

* :func:`oracle_check` samples with eps* (the exact denoiser of a finite image set,
  :mod:`rdbench.systems.ddpm.oracle`) on the chosen dataset and on uniform-noise images
  of the same shape, with the dataset's schedule and sampler from
  ``conf/systems/ddpm.yaml`` (the paper profile: T = 1000, linear beta 1e-4..0.02,
  sigma_t = sqrt(beta_t)), and prints M_react, M_diff and R of both through the same
  meter as every other measurement. Nothing is tracked: a check a reader can rerun in
  a minute.
* :func:`oracle_sweep` measures R of the exact denoiser for every schedule x variance x T
  of ``conf/sweeps/oracle.yaml`` (:mod:`rdbench.systems.ddpm.sweep`), fits R ~ c T^b per
  schedule, and records the sweep as ONE MLflow run: params, the exponents as metrics,
  the table, the fits, the figure of R against T, written to a folder too.
"""

from __future__ import annotations

import contextlib
import json
import resource
import time
from collections.abc import Callable
from pathlib import Path

import torch

from rdbench.config import load_system
from rdbench.memory import check_fits
from rdbench.systems.base import ProgressFactory, available_memory, no_progress, resolve_device
from rdbench.systems.ddpm.oracle import OracleSettings, oracle_controls, oracle_memory_bytes
from rdbench.systems.ddpm.sweep import SweepResult, check_sweep, load_sweep_settings, run_sweep
from rdbench.systems.ddpm.system import build_schedule, load_images
from rdbench.tracking.runs import TrackedRun
from rdbench.tracking.store import client as tracking_client
from rdbench.tracking.tags import TAG_KIND

KIND_SWEEP = "oracle_sweep"
SWEEP_COLUMNS = ("schedule", "variance", "timesteps", "M_react", "M_diff", "R", "R_final", "seconds")


def oracle_check(dataset: str, profile: str, images: int, samples: int, seed: int, data_dir: str | None,
                 device: str, echo: Callable[[str], None] = print) -> None:
    """Balance of the DDPM exact denoiser on ``dataset`` and on uniform noise (no training)."""
    conf = load_system("ddpm")
    settings = conf.resolve(dataset, profile)  # ConfigError: the caller's one-line error
    dev = resolve_device(device)
    torch.manual_seed(seed)
    data = load_images(settings, data_dir)
    count = images or len(data)
    oracle_settings = OracleSettings(train_images=count, noise_images=count, chunk_size=settings.oracle.chunk_size)
    check_fits(oracle_memory_bytes(oracle_settings, len(data), data.spec.shape, samples), available_memory(dev),
               f"the oracle with --images {count} --samples {samples}", "use fewer --images or --samples", str(dev))
    schedule = build_schedule(settings, dev)
    start = time.perf_counter()
    results, counts = oracle_controls(
        oracle_settings, data, settings.pixel_range, schedule, samples, samples, seed, dev
    )
    elapsed = time.perf_counter() - start
    s = settings.schedule
    echo(
        f"DDPM exact denoiser, {conf.case_label(dataset)} ({data.spec.description}), profile {profile}: "
        f"T={s.timesteps}, {s.kind} beta {s.beta_start}..{s.beta_end}, "
        f"{settings.sampler.variance}, pixels in {list(settings.pixel_range)}, {samples} samples, seed {seed}"
    )
    for name, result in results.items():
        echo(
            f"  {name:13s} ({int(counts[f'{name}_images'])} images)  M_react={result.M_react:.4f}  "
            f"M_diff={result.M_diff:.4f}  R={result.R:.4f}  R_final={result.R_final:.4f}"
        )
    echo(f"  closed-form M_diff: {schedule.closed_form_m_diff(int(torch.tensor(data.spec.shape).prod())):.4f}")
    echo(f"({elapsed:.1f} s on {dev})")


def sweep_markdown(result: SweepResult) -> str:
    """R per T (rows) and schedule x variance (columns), then the fitted exponent of each column."""
    wide = result.table.pivot_table(index="timesteps", columns=["schedule", "variance"], values="R", sort=False)
    header = ["T"] + [f"{s} {v}" for s, v in wide.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([str(t)] + [f"{r:.4f}" for r in row]) + " |" for t, row in wide.iterrows()]
    fits = result.fits.set_index(["schedule", "variance"])
    lines.append("| fitted exponent b (R ~ c T^b) | "
                 + " | ".join(f"{fits.loc[(s, v), 'exponent']:.3f}" for s, v in wide.columns) + " |")
    return "\n".join(lines) + "\n"


def oracle_sweep(
    experiment: str,
    out_dir: str | Path,
    sweep_path: str | Path | None = None,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    progress: ProgressFactory = no_progress,
    echo: Callable[[str], None] = print,
) -> tuple[SweepResult, str]:
    """Run the sweep into one MLflow run (and ``out_dir``); return the result and the run id."""
    sweep = load_sweep_settings(sweep_path)
    check_sweep(sweep)  # ConfigError before any run exists
    dev = resolve_device(device)
    client = tracking_client()
    run = TrackedRun.create(client, experiment, "oracle-sweep", {TAG_KIND: KIND_SWEEP})
    try:
        echo("  ".join(SWEEP_COLUMNS))
        result = run_sweep(sweep, dev, data_dir, progress, on_row=lambda row: echo("  ".join(
            f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in SWEEP_COLUMNS)))
        run.log_params(result.params())
        run.log_metrics({**result.metrics(),
                         "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
        for row in result.table.itertuples():  # R against T, one series per schedule x variance
            run.log_metrics({f"R.{row.schedule}.{row.variance}": row.R}, step=int(row.timesteps))
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        result.table.to_csv(out / "table.csv", index=False)
        result.fits.to_csv(out / "fits.csv", index=False)
        (out / "table.md").write_text(sweep_markdown(result))
        (out / "dataset.json").write_text(json.dumps(result.dataset, indent=2))
        figure = result.figure()
        figure.savefig(out / "R_vs_T.png", dpi=120)
        for name in ("table.csv", "fits.csv", "table.md", "dataset.json", "R_vs_T.png"):
            run.log_artifact(out / name, "sweep")
        run.log_table(result.table, "sweep/table.json")
        run.finish()
    except BaseException as exc:
        with contextlib.suppress(Exception):
            run.fail(exc)
        raise
    return result, run.run_id


def fits_lines(result: SweepResult) -> list[str]:
    return [f"  {row.schedule:14s} {row.variance:12s} R ~ {row.prefactor:.3f} T^{row.exponent:.3f}  "
            f"(R^2 {row.r2:.4f})" for row in result.fits.itertuples()]

