"""The oracle sweep: R of the exact denoiser against the number of steps T, per noise schedule.

The exact denoiser eps* (:mod:`.oracle`) is the best possible network for a finite
training set, so its R is what a *perfectly* trained DDPM gives. Sweeping T and the
schedule (``conf/sweeps/oracle.yaml``) shows what sets the DDPM's low R.

**The scaling law.** A reverse step's drift, the reaction ``mean_t - x_t =
(1/sqrt(alpha_t) - 1) x_t - beta_t / (sqrt(alpha_t) sqrt(1 - abar_t)) eps`` (Ho et al.
Eq. 11; the paper's Eqs. 12-14), is of order ``beta_t``, while its noise, the
diffusion ``sigma_t z`` (Eqs. 15-17), is of order ``sqrt(beta_t)``. So
``R = M_react / M_diff ~ mean_t beta_t / mean_t sqrt(beta_t)``, and a schedule whose
betas scale like ``1 / T`` (the linear kinds with endpoints scaled by ``1000 / T``,
and the cosine schedule, which discretises a fixed ``abar(t / T)``) gives
``R ~ T^(-1/2)``, whatever the data and however well the network learned them.
:func:`fit_exponents` fits ``log R = log c + b log T`` by least squares per schedule
and variance and reports ``b``.

:func:`run_sweep` returns a :class:`SweepResult`: the table (one row per schedule x
variance x T), the fits, the settings and the wall time, with :meth:`SweepResult.params`,
:meth:`SweepResult.metrics` and :meth:`SweepResult.figure` (R against T per schedule,
log axes) for whoever records it (an MLflow run). Nothing here prints or tracks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field, NonNegativeInt, PositiveInt

from rdbench.config import Settings, conf_dir, flatten_settings, load_system, read_yaml, validate
from rdbench.systems.base import ProgressFactory, no_progress
from rdbench.systems.ddpm.oracle import ExactDenoiser
from rdbench.systems.ddpm.sample import measure
from rdbench.systems.ddpm.schedule import Variance
from rdbench.systems.ddpm.system import DDPMSettings, build_schedule, check_schedule, load_images

SWEEP_FILE = "sweeps/oracle.yaml"


class SweepSettings(Settings):
    """``conf/sweeps/oracle.yaml``: which cells the sweep measures."""

    description: str = ""
    case: str  # a case of conf/systems/ddpm.yaml (the dataset)
    profile: str  # its pixel range, sampler (final_noise) and oracle chunk size
    seed: NonNegativeInt
    samples: PositiveInt
    batch_size: PositiveInt
    train_images: NonNegativeInt  # 0: the whole set
    timesteps: Annotated[list[Annotated[int, Field(ge=2)]], Field(min_length=2)]
    variances: Annotated[list[Variance], Field(min_length=1)]
    schedules: Annotated[dict[str, dict[str, Any]], Field(min_length=1)]


def load_sweep_settings(path: str | Path | None = None) -> SweepSettings:
    """Read and validate the sweep file (default ``conf/sweeps/oracle.yaml``)."""
    path = Path(path) if path else conf_dir() / SWEEP_FILE
    return validate(SweepSettings, read_yaml(path), str(path))


def cell_settings(sweep: SweepSettings, schedule: str, variance: str, timesteps: int) -> DDPMSettings:
    """The DDPM settings of one cell: the case and profile, with this schedule, variance and T."""
    overrides = {f"schedule.{k}": v for k, v in sweep.schedules[schedule].items()}
    overrides.update({"schedule.timesteps": timesteps, "sampler.variance": variance})
    settings = load_system("ddpm").resolve(sweep.case, sweep.profile, overrides)
    check_schedule(settings)
    return settings


def check_sweep(sweep: SweepSettings) -> None:
    """Resolve every cell once (ConfigError on the first that cannot run), before any sampling."""
    for name in sweep.schedules:
        for variance in sweep.variances:
            for timesteps in sweep.timesteps:
                cell_settings(sweep, name, variance, timesteps)


@dataclass
class SweepResult:
    """What one sweep measured."""

    table: pd.DataFrame  # one row per schedule x variance x T
    fits: pd.DataFrame  # one row per schedule x variance: exponent b of R ~ c T^b
    settings: SweepSettings
    dataset: dict[str, Any]
    wall_s: float
    device: str = "cpu"

    def params(self) -> dict[str, Any]:
        """Everything that shaped the sweep, flat (for MLflow params)."""
        return {**flatten_settings(self.settings), "dataset": self.dataset.get("dataset"),
                "dataset_images": self.dataset.get("images"), "device": self.device}

    def metrics(self) -> dict[str, float]:
        """The fitted exponents (``exponent.<schedule>.<variance>``), their R^2, and the wall time."""
        out = {"wall_s": self.wall_s}
        for row in self.fits.itertuples():
            out[f"exponent.{row.schedule}.{row.variance}"] = row.exponent
            out[f"fit_r2.{row.schedule}.{row.variance}"] = row.r2
        return out

    def figure(self):
        return sweep_figure(self.table, self.fits)


def run_sweep(
    sweep: SweepSettings,
    device: torch.device | str = "cpu",
    data_dir: str | Path | None = None,
    progress: ProgressFactory = no_progress,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Sample with the exact denoiser of the case's images for every schedule x variance x T.

    All cells share the seed, so cells of one T see the same ``x_T`` and ``z``. ``on_row``
    is called with each finished row (e.g. to print it); ``progress(total, label)`` as in
    :class:`~rdbench.systems.base.RunContext`.
    """
    device = torch.device(device)
    check_sweep(sweep)
    first = cell_settings(sweep, next(iter(sweep.schedules)), sweep.variances[0], sweep.timesteps[0])
    data = load_images(first, data_dir)
    count = min(sweep.train_images, len(data)) if sweep.train_images else len(data)
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(sweep.seed))[:count]
    images = data.batch(index, first.pixel_range).to(device)
    shape = data.spec.shape
    rows = []
    start = time.perf_counter()
    for name in sweep.schedules:
        for variance in sweep.variances:
            for timesteps in sweep.timesteps:
                s = cell_settings(sweep, name, variance, timesteps)
                schedule = build_schedule(s, device)
                denoiser = ExactDenoiser(images, schedule.alpha_bars.to(device), s.oracle.chunk_size)
                batches = -(-sweep.samples // sweep.batch_size)
                t0 = time.perf_counter()
                with progress(timesteps * batches, f"oracle {name}/{variance} T={timesteps}") as bar:
                    result, _ = measure(denoiser, schedule, sweep.samples, sweep.batch_size, shape, sweep.seed,
                                        device, bar)
                betas = schedule.betas[schedule.recorded_steps()]
                row = {
                    "schedule": name,
                    "variance": variance,
                    "timesteps": timesteps,
                    "M_react": result.M_react,
                    "M_diff": result.M_diff,
                    "R": result.R,
                    "R_final": result.R_final,
                    "M_diff_closed_form": schedule.closed_form_m_diff(int(np.prod(shape))),
                    "mean_beta": float(betas.mean()),
                    "mean_sqrt_beta": float(betas.sqrt().mean()),
                    "alpha_bar_last": float(schedule.alpha_bars[-1]),
                    "seconds": time.perf_counter() - t0,
                }
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    wall = time.perf_counter() - start
    table = pd.DataFrame(rows)
    return SweepResult(table, fit_exponents(table), sweep, {**data.describe(), "oracle_images": count}, wall,
                       str(device))


def fit_exponents(table: pd.DataFrame) -> pd.DataFrame:
    """Least squares of ``log R`` on ``log T`` per schedule and variance: ``R ~ c T^b``.

    Columns: schedule, variance, exponent (b), prefactor (c), r2 (of the fit on logs),
    points, and the same fit of ``mean_beta / mean_sqrt_beta`` (the scaling law's
    prediction, ``exponent_beta_ratio``).
    """
    out = []
    for (name, variance), group in table.groupby(["schedule", "variance"], sort=False):
        log_t = np.log(group["timesteps"].to_numpy(dtype=float))
        log_r = np.log(group["R"].to_numpy(dtype=float))
        slope, intercept = np.polyfit(log_t, log_r, 1)
        residual = log_r - (slope * log_t + intercept)
        spread = ((log_r - log_r.mean()) ** 2).sum()
        ratio = np.log((group["mean_beta"] / group["mean_sqrt_beta"]).to_numpy(dtype=float))
        out.append({
            "schedule": name,
            "variance": variance,
            "exponent": float(slope),
            "prefactor": float(np.exp(intercept)),
            "r2": float(1 - (residual ** 2).sum() / spread) if spread > 0 else float("nan"),
            "points": len(group),
            "exponent_beta_ratio": float(np.polyfit(log_t, ratio, 1)[0]),
        })
    return pd.DataFrame(out)


def sweep_figure(table: pd.DataFrame, fits: pd.DataFrame):
    """R against T (log axes), one colour per schedule, solid fixed_large / dashed fixed_small,
    with the fitted power laws as thin lines and their exponents in the legend.

    Variances of one schedule whose R coincide at every T (:func:`rdbench.plots.merge_coinciding`)
    are drawn once, the legend saying so (``fixed_large ≈ fixed_small (within 0.2 %)``):
    otherwise the first line hides under the second without a word."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rdbench.plots import merge_coinciding

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = dict(zip(table["schedule"].unique(), plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    styles = {"fixed_large": ("-", "o"), "fixed_small": ("--", "s")}
    for schedule, mine in fits.groupby("schedule", sort=False):
        curves = {fit.variance: table[(table["schedule"] == schedule) & (table["variance"] == fit.variance)]
                  .sort_values("timesteps") for fit in mine.itertuples()}
        names = merge_coinciding({v: rows["R"].to_numpy() for v, rows in curves.items()})
        for fit in mine.itertuples():
            if fit.variance not in names:
                continue
            rows = curves[fit.variance]
            ls, marker = styles.get(fit.variance, (":", "^"))
            ax.plot(rows["timesteps"], rows["R"], ls=ls, marker=marker, color=colours[schedule],
                    label=f"{schedule}, {names[fit.variance]}: R ~ T^{fit.exponent:.3f}", gid=f"{schedule}:{fit.variance}")
            t = np.geomspace(rows["timesteps"].min(), rows["timesteps"].max(), 50)
            ax.plot(t, fit.prefactor * t ** fit.exponent, lw=0.6, color=colours[schedule], alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("T (diffusion steps)")
    ax.set_ylabel("R = M_react / M_diff (exact denoiser)")
    ax.set_title("DDPM exact denoiser: R against T per noise schedule")
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    ax.legend(fontsize=7)
    fig.tight_layout()
    plt.close(fig)
    return fig
