"""The DDPM plug-in: train a U-Net noise predictor, then measure its sampler's balance.

One job (dataset x seed) runs, in order:

1. the **untrained** control: the freshly initialised network (seeded, so the
   same one a resume rebuilds) sampled through the same probe, with the same
   sampling noise as the final measurement (a paired comparison);
2. training (:mod:`.train`), continuing from the checkpoint of the same config when
   there is one (``--no-resume`` refuses instead of going back), checkpointing every
   ``checkpoint_every`` steps into ``<data dir>/checkpoints/<config hash>/`` and, every ``probe_every`` steps,
   measuring ``R`` with the EMA weights on ``probe_samples`` samples
   (``R_during_training`` against the training step);
3. the measurement: the EMA network sampled ``sampler.samples`` times; every
   reverse step feeds the meter reaction, diffusion and ``||eps_theta||``
   (:mod:`.sample`). ``M_diff``'s closed form ``sqrt(C H W) mean_t sigma_t`` is
   logged beside the measured one;
4. the **oracle** controls (:mod:`.oracle`): the exact denoiser of a seeded subset
   of the training set (a network that learned perfectly) and of uniform-noise
   images (data with no structure), through the same sampler with the same noise.

Nothing here imports MLflow: losses, images and checkpoints go through the job's
Recorder.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from rdbench.config import ConfigError, Settings
from rdbench.systems.base import Job, Outcome, RunContext, System
from rdbench.systems.ddpm.data import DATASETS, IMAGE_SIZE, ImageSet, default_data_dir, load_dataset
from rdbench.systems.ddpm.model import UNet, count_parameters
from rdbench.systems.ddpm.oracle import OracleSettings, oracle_controls
from rdbench.systems.ddpm.sample import measure, network_predictor
from rdbench.systems.ddpm.schedule import NoiseSchedule
from rdbench.systems.ddpm.train import TrainConfig, Trainer, exclusive

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]


class ScheduleSettings(Settings):
    """Linear beta schedule (Ho et al.: T = 1000, beta from 1e-4 to 0.02)."""

    timesteps: Annotated[int, Field(ge=2)]
    beta_start: PositiveFloat
    beta_end: PositiveFloat


class SamplerSettings(Settings):
    variance: Literal["fixed_large", "fixed_small"]  # sigma_t^2 = beta_t, or the posterior variance
    final_noise: bool  # inject sigma_0 z at the last step too (Ho et al. and diffusers: no)
    samples: PositiveInt  # images generated for the measurement (and for the untrained control)
    batch_size: PositiveInt  # images per sampling batch


class ModelSettings(Settings):
    """The U-Net (:class:`~rdbench.systems.ddpm.model.UNet`): one entry per resolution."""

    channels: Annotated[list[PositiveInt], Field(min_length=1)]
    attention: list[bool]  # self-attention at that resolution (down and up path)
    blocks_per_level: PositiveInt
    dropout: Fraction
    groups: PositiveInt  # GroupNorm groups
    heads: PositiveInt  # attention heads


class DDPMSettings(Settings):
    dataset: Literal["mnist", "fashionmnist", "cifar10", "digits"]
    pixel_range: tuple[float, float]  # [0, 1] as the authors, [-1, 1] as Ho et al.
    train_steps: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat
    weight_decay: NonNegativeFloat
    grad_clip: NonNegativeFloat  # max gradient norm; 0 disables clipping
    ema_decay: Fraction
    log_every: PositiveInt  # loss logged as the mean over this many steps
    checkpoint_every: PositiveInt
    probe_every: NonNegativeInt  # measure R during training every this many steps (0: never)
    probe_samples: PositiveInt
    bf16: bool  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool  # channels-last memory on CUDA (ignored on CPU)
    schedule: ScheduleSettings
    sampler: SamplerSettings
    model: ModelSettings
    oracle: OracleSettings


def build_schedule(settings: DDPMSettings, device: torch.device | str = "cpu") -> NoiseSchedule:
    s = settings.schedule
    return NoiseSchedule(
        s.timesteps, s.beta_start, s.beta_end, settings.sampler.variance, settings.sampler.final_noise, device
    )


def build_model(settings: DDPMSettings, seed: int) -> UNet:
    """The U-Net for the dataset's channel count, initialised from ``seed``."""
    m = settings.model
    torch.manual_seed(seed)
    return UNet(
        DATASETS[settings.dataset].channels, m.channels, m.attention, m.blocks_per_level, m.dropout, m.groups, m.heads
    )


def checkpoint_dir(job: Job, ctx: RunContext) -> Path:
    """``<data dir>/checkpoints/<config hash>``: one folder per cell, found again by ``--resume``."""
    if not job.config_hash:
        raise ValueError("a DDPM job needs its config_hash: checkpoints are kept per configuration")
    root = ctx.data_dir or default_data_dir()
    return Path(root) / "checkpoints" / job.config_hash


def image_grid(images: torch.Tensor, pixel_range: tuple[float, float], columns: int = 8) -> np.ndarray:
    """Samples ``(N, C, H, W)`` -> one ``HxW`` (grey) or ``HxWx3`` array in [0, 1], 2-pixel gaps."""
    lo, hi = pixel_range
    x = ((images.float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    n, c, h, w = x.shape
    columns = min(columns, n)
    rows = -(-n // columns)
    grid = torch.ones(c, rows * (h + 2) - 2, columns * (w + 2) - 2)
    for i in range(n):
        r, k = divmod(i, columns)
        grid[:, r * (h + 2) : r * (h + 2) + h, k * (w + 2) : k * (w + 2) + w] = x[i]
    out = grid.permute(1, 2, 0).numpy().astype(np.float64)
    return out[:, :, 0] if c == 1 else out


class DDPM(System):
    """Plug-in: trains and measures one DDPM per job."""

    name = "ddpm"
    Settings = DDPMSettings

    def check(self, settings: DDPMSettings) -> None:
        lo, hi = settings.pixel_range
        if not lo < hi:
            raise ConfigError(f"pixel_range {list(settings.pixel_range)}: the low end must be below the high end")
        s = settings.schedule
        if not s.beta_start < s.beta_end < 1:
            raise ConfigError(f"schedule: need 0 < beta_start < beta_end < 1, got {s.beta_start}, {s.beta_end}")
        m = settings.model
        if len(m.attention) != len(m.channels):
            raise ConfigError(
                f"model.attention has {len(m.attention)} entries, model.channels {len(m.channels)}: one per level"
            )
        if IMAGE_SIZE % 2 ** (len(m.channels) - 1):
            raise ConfigError(f"model.channels: {len(m.channels)} levels cannot halve {IMAGE_SIZE}x{IMAGE_SIZE} images")
        for c in m.channels:
            if c % m.groups:
                raise ConfigError(f"model.channels entry {c} is not divisible by model.groups={m.groups}")
        for c, att in zip(m.channels, m.attention, strict=True):
            if att and c % m.heads:
                raise ConfigError(f"model.channels entry {c} (with attention) is not divisible by model.heads={m.heads}")

    def run(self, jobs: Sequence[Job], ctx: RunContext) -> list[Outcome]:
        return [self.run_one(job, ctx) for job in jobs]

    def run_one(self, job: Job, ctx: RunContext) -> Outcome:
        s: DDPMSettings = job.settings
        self.check(s)
        device = ctx.device
        data: ImageSet = load_dataset(s.dataset, ctx.data_dir)
        job.recorder.log_dict(data.describe(), "dataset.json")
        schedule = build_schedule(s, device)
        shape = data.spec.shape

        def balance(model, n: int, label: str):
            eps = network_predictor(model, s.bf16, s.channels_last)
            with ctx.progress(s.schedule.timesteps * -(-n // s.sampler.batch_size), label) as bar:
                return measure(eps, schedule, n, s.sampler.batch_size, shape, job.seed, device, bar)

        # 1. the untrained control (the same initial weights a resumed run rebuilds)
        model = build_model(s, job.seed).to(device)
        n_params = count_parameters(model)
        untrained, untrained_images = balance(model, s.sampler.samples, f"ddpm/{job.case} untrained")
        job.recorder.log_metrics(_probe_metrics(untrained), step=0)
        job.recorder.log_image(image_grid(untrained_images, s.pixel_range), "samples/untrained.png",
                               cmap="gray" if shape[0] == 1 else None)

        # 2. training, with checkpoints and R probes
        folder = checkpoint_dir(job, ctx)
        trainer = Trainer(model, schedule, data, _train_config(s), job.seed, device, folder)

        def on_probe(ema_model, step: int) -> None:
            result, _ = balance(ema_model, s.probe_samples, f"ddpm/{job.case} probe@{step}")
            job.recorder.log_metrics(_probe_metrics(result), step=step)

        with exclusive(folder):  # one process at a time trains this configuration
            if ctx.resume:  # the default: continuing gives the same weights as never stopping
                resumed = trainer.try_resume()
            else:
                trainer.refuse_if_ahead()
                resumed = False
            with ctx.progress(s.train_steps - trainer.step, f"ddpm/{job.case} training") as bar:
                report = trainer.train(
                    log_loss=lambda loss, step: job.recorder.log_metrics({"loss": loss}, step=step),
                    on_checkpoint=lambda path, step: job.recorder.log_artifact(path, "checkpoints"),
                    on_probe=on_probe,
                    progress=bar,
                )

        # 3. the measurement with the EMA weights
        t0 = time.perf_counter()
        result, images = balance(trainer.ema.model, s.sampler.samples, f"ddpm/{job.case} sampling")
        sampling_s = time.perf_counter() - t0
        job.recorder.log_metrics(_probe_metrics(result), step=report.steps)
        job.recorder.log_image(image_grid(images, s.pixel_range), "samples/trained.png",
                               cmap="gray" if shape[0] == 1 else None)
        closed = schedule.closed_form_m_diff(int(np.prod(shape)))

        # 4. the exact-denoiser controls: a perfect learner, and data with no structure at all
        with ctx.progress(s.schedule.timesteps * 2 * -(-s.sampler.samples // s.sampler.batch_size),
                          f"ddpm/{job.case} oracle") as bar:
            oracles, oracle_counts = oracle_controls(
                s.oracle, data, s.pixel_range, schedule, s.sampler.samples, s.sampler.batch_size,
                job.seed, device, bar,
            )
        return Outcome(
            balance=result,
            controls={"untrained": untrained, **oracles},
            metrics={
                **oracle_counts,
                "M_diff_closed_form": closed,
                "M_diff_over_closed_form": result.M_diff / closed,
                "M_eps_over_sqrt_dim": result.summary()["M_eps"] / float(np.sqrt(np.prod(shape))),
                "final_loss": report.final_loss,
                "train_steps_done": float(report.steps),
                "resumed_from_step": float(report.start_step if resumed else 0),
                "train_images_per_s": report.images_per_s,
                "checkpoints_written": float(report.checkpoints),
                "sampling_s": sampling_s,
                "n_parameters": float(n_params),
            },
        )


def _probe_metrics(result) -> dict[str, float]:
    """R and its parts at one point of training (logged against the training step)."""
    return {
        "R_during_training": result.R,
        "R_final_during_training": result.R_final,
        "M_react_during_training": result.M_react,
    }


def _train_config(s: DDPMSettings) -> TrainConfig:
    """The training knobs: the settings' fields of the same names, and ``steps = train_steps``."""
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"steps"}
    return TrainConfig(steps=s.train_steps, **{name: getattr(s, name) for name in names})
