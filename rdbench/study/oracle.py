"""The DDPM exact-denoiser controls alone (``rdbench oracle``), no training, in about a minute on a CPU.

Samples with eps* (the exact denoiser of a finite image set, :mod:`rdbench.systems.ddpm.oracle`)
on the chosen dataset and on uniform-noise images of the same shape, with the
dataset's schedule and sampler from ``conf/systems/ddpm.yaml`` (the paper profile:
T = 1000, linear beta 1e-4..0.02, sigma_t = sqrt(beta_t)), and prints M_react,
M_diff and R of both through the same meter as every other measurement. Nothing
is tracked: it is a check a reader can rerun in a minute.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from rdbench.config import load_system
from rdbench.systems.base import resolve_device
from rdbench.systems.ddpm.data import load_dataset
from rdbench.systems.ddpm.oracle import OracleSettings, oracle_controls
from rdbench.systems.ddpm.system import build_schedule


def oracle_check(dataset: str, profile: str, images: int, samples: int, seed: int, data_dir: str | None,
                 device: str, echo: Callable[[str], None] = print) -> None:
    """Balance of the DDPM exact denoiser on ``dataset`` and on uniform noise (no training)."""
    settings = load_system("ddpm").resolve(dataset, profile)  # ConfigError: the caller's one-line error
    dev = resolve_device(device)
    torch.manual_seed(seed)
    data = load_dataset(settings.dataset, data_dir)
    count = images or len(data)
    oracle_settings = OracleSettings(train_images=count, noise_images=count, chunk_size=settings.oracle.chunk_size)
    schedule = build_schedule(settings, dev)
    start = time.perf_counter()
    results, counts = oracle_controls(
        oracle_settings, data, settings.pixel_range, schedule, samples, samples, seed, dev
    )
    elapsed = time.perf_counter() - start
    echo(
        f"DDPM exact denoiser, {settings.dataset} ({data.spec.description}), profile {profile}: "
        f"T={settings.schedule.timesteps}, beta {settings.schedule.beta_start}..{settings.schedule.beta_end}, "
        f"{settings.sampler.variance}, pixels in {list(settings.pixel_range)}, {samples} samples, seed {seed}"
    )
    for name, result in results.items():
        echo(
            f"  {name:13s} ({int(counts[f'{name}_images'])} images)  M_react={result.M_react:.4f}  "
            f"M_diff={result.M_diff:.4f}  R={result.R:.4f}  R_final={result.R_final:.4f}"
        )
    echo(f"  closed-form M_diff: {schedule.closed_form_m_diff(int(torch.tensor(data.spec.shape).prod())):.4f}")
    echo(f"({elapsed:.1f} s on {dev})")
