"""The DDPM plug-in: train a U-Net noise predictor, then measure its sampler's balance.

One job (dataset x seed) runs, in order:

1. the **untrained** control: the freshly initialised network (seeded, so the
   same one a resume rebuilds) sampled through the same probe, with the same
   sampling noise as the final measurement (a paired comparison);
2. training (:mod:`.train`), continuing from the checkpoint of the same config when
   there is one (announced, and tagged on the run with the file, its step and the run
   that wrote it; ``--no-resume`` refuses instead of going back; ``--fresh`` deletes it
   and trains from scratch), checkpointing every
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

The training set is a run input (``log_input``: name, source, digest); the EMA
network that was measured is logged as the MLflow model ``model``
(:class:`~rdbench.systems.records.ModelRecord`: its config, its state dict). With
``pretrained`` set to such a model (``--model runs:/<id>/model``), :meth:`DDPM.run_logged`
rebuilds it and repeats steps 1, 3 and 4 without training: the same R for the same
settings and seed. Sample grids show the first images at five reverse steps
(:mod:`.grid`).

With ``pretrained`` set to a diffusers ``DDPMPipeline`` folder or Hub id
(:mod:`.pretrained`), steps 1 and 2 are skipped: the public model is sampled through
the same probe with its own schedule (its scheduler config decides the number of
steps, the betas, the variance, the clipping and what the network predicts; the
``schedule`` and ``sampler.variance`` settings are not used), then the oracle
controls run on that schedule, in the pipeline's pixel range [-1, 1]. The model's
configs and the schedule used are logged as ``pretrained/model.json`` and
``pretrained/schedule.json``.

Images come from a named dataset (:mod:`.data`) or from the user's files
(``imagefolder:DIR``, ``npz:FILE``; :mod:`.user_images`), with their own channel
count and size; the U-Net needs a size its levels can halve (``check()`` says so).

Nothing here imports MLflow: losses, images, checkpoints, datasets and the model go
through the job's Recorder.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import (
    BeforeValidator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
)

from rdbench.config import ConfigError, Settings
from rdbench.systems.base import Job, Outcome, RunContext, System
from rdbench.systems.ddpm import pretrained as public
from rdbench.systems.ddpm.capture import CaptureMode, static_step_wanted
from rdbench.systems.ddpm.data import DATASETS, ImageSet, default_data_dir, load_dataset
from rdbench.systems.ddpm.grid import sampling_grid
from rdbench.systems.ddpm.model import UNet, count_parameters
from rdbench.systems.ddpm.oracle import OracleSettings, oracle_controls, oracle_memory_bytes
from rdbench.systems.ddpm.sample import measure, network_predictor
from rdbench.systems.ddpm.schedule import NoiseSchedule, ScheduleKind
from rdbench.systems.ddpm.train import (
    CHECKPOINT_NAME,
    LOCK_FILE,
    TrainConfig,
    Trainer,
    checkpoint_step,
    exclusive,
)
from rdbench.systems.ddpm.user_images import (
    ImageSurvey,
    load_image_folder,
    load_npz,
    survey_image_folder,
    survey_npz,
)
from rdbench.systems.records import ModelRecord, is_logged_model, load_logged_model

log = logging.getLogger(__name__)
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]


def _capture_mode(value):
    """YAML 1.1 (the config files, ``--set``) reads ``on`` and ``off`` as booleans: read them back as the modes."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


CaptureSetting = Annotated[CaptureMode, BeforeValidator(_capture_mode)]
USER_DATASETS = ("imagefolder", "npz")


class ScheduleSettings(Settings):
    """The beta schedule (:func:`~rdbench.systems.ddpm.schedule.make_betas`; Ho et al.: linear,
    T = 1000, beta from 1e-4 to 0.02)."""

    kind: ScheduleKind  # linear, scaled_linear or cosine (Nichol & Dhariwal 2021)
    timesteps: Annotated[int, Field(ge=2)]
    beta_start: PositiveFloat  # linear and scaled_linear
    beta_end: PositiveFloat
    reference_timesteps: PositiveInt | None  # linear kinds: endpoints given for this T, scaled by it / T
    cosine_offset: PositiveFloat  # cosine: the offset s
    max_beta: Annotated[float, Field(gt=0.0, lt=1.0)]  # cosine: betas capped here


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
    dataset: Literal["mnist", "fashionmnist", "cifar10", "digits", "imagefolder", "npz"]
    data_path: str | None = None  # imagefolder: the folder; npz: the array file
    data_key: str | None = None  # npz: the array's name (null: 'images', or the file's only array)
    image_size: PositiveInt | None = None  # imagefolder / npz: resize every image to this square size
    pretrained: str | None = None  # a diffusers DDPMPipeline folder or Hub id: measured, not trained
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
    capture: CaptureSetting  # auto: training and sampling steps as CUDA graphs on CUDA, eager on CPU; on; off
    schedule: ScheduleSettings
    sampler: SamplerSettings
    model: ModelSettings
    oracle: OracleSettings


def build_schedule(settings: DDPMSettings, device: torch.device | str = "cpu") -> NoiseSchedule:
    s = settings.schedule
    return NoiseSchedule(
        s.timesteps, s.beta_start, s.beta_end, settings.sampler.variance, settings.sampler.final_noise, device,
        kind=s.kind, cosine_offset=s.cosine_offset, max_beta=s.max_beta, reference_timesteps=s.reference_timesteps,
    )


def build_model(settings: DDPMSettings, seed: int, image_channels: int | None = None) -> UNet:
    """The U-Net for ``image_channels`` (default: the named dataset's), initialised from ``seed``."""
    m = settings.model
    channels = image_channels if image_channels is not None else DATASETS[settings.dataset].channels
    torch.manual_seed(seed)
    return UNet(channels, m.channels, m.attention, m.blocks_per_level, m.dropout, m.groups, m.heads)


def check_schedule(settings: DDPMSettings) -> None:
    """ConfigError unless the schedule settings make valid betas (every beta in (0, 1))."""
    s = settings.schedule
    if s.kind != "cosine" and not s.beta_start < s.beta_end < 1:
        raise ConfigError(f"schedule: need 0 < beta_start < beta_end < 1, got {s.beta_start}, {s.beta_end}")
    try:
        build_schedule(settings)
    except ValueError as exc:  # e.g. endpoints scaled by reference_timesteps / T reach 1
        raise ConfigError(f"schedule ({s.kind}, T={s.timesteps}): {exc}") from None


def memory_bytes(settings: DDPMSettings, shape: tuple[int, int, int], batch: int | None = None,
                 samples: int | None = None) -> int:
    """A lower bound, in bytes, of what training and measuring one DDPM holds at once, from the
    settings alone: the residual blocks' 3x3 weights with their gradient and Adam's two moments
    (16 bytes a parameter), the block outputs one training batch keeps for backward at each level's
    resolution (forward and gradient), the sampler's batch (forward only), the generated images and
    the schedule's per-step tables. ``batch`` and ``samples`` replace the settings' (``bench ddpm``)."""
    c, h, w = shape
    m = settings.model
    params = sum(2 * m.blocks_per_level * 9 * ch * ch for ch in m.channels)
    per_image = sum((2 * m.blocks_per_level + 1) * ch * (h >> level) * (w >> level)
                    for level, ch in enumerate(m.channels))
    batch = batch or settings.batch_size
    sampler = samples or settings.sampler.batch_size
    images = (settings.sampler.samples + settings.probe_samples) * c * h * w
    oracle = oracle_memory_bytes(settings.oracle, settings.oracle.train_images, shape, sampler)
    return (16 * params + 4 * per_image * (2 * batch + sampler) + 4 * images
            + 8 * SCHEDULE_TABLES * settings.schedule.timesteps + oracle)


SCHEDULE_TABLES = 8  # float64 per-timestep tables of a NoiseSchedule (betas, alphas, their products...)


def survey_images(settings: DDPMSettings) -> ImageSurvey | None:
    """Count, channels and size of the user's images (a folder's headers, an npz array); None for
    a named dataset. A bad input raises ConfigError."""
    if settings.dataset == "imagefolder":
        return survey_image_folder(settings.data_path, settings.image_size)
    if settings.dataset == "npz":
        return survey_npz(settings.data_path, settings.data_key, settings.image_size)
    return None


def image_shape(settings: DDPMSettings) -> tuple[int, int, int]:
    """``(C, H, W)`` of the dataset's images: a named set's, or read from the user's files."""
    survey = survey_images(settings)
    return survey.shape if survey is not None else DATASETS[settings.dataset].shape


def load_images(settings: DDPMSettings, data_dir: str | Path | None = None) -> ImageSet:
    """The training images of the configured dataset (named, image folder or npz file)."""
    if settings.dataset == "imagefolder":
        return load_image_folder(settings.data_path, settings.image_size)
    if settings.dataset == "npz":
        return load_npz(settings.data_path, settings.data_key, settings.image_size)
    return load_dataset(settings.dataset, data_dir)


def checkpoint_dir(job: Job, ctx: RunContext) -> Path:
    """``<data dir>/checkpoints/<config hash>``: one folder per cell, found again by ``--resume``."""
    if not job.config_hash:
        raise ValueError("a DDPM job needs its config_hash: checkpoints are kept per configuration")
    return checkpoint_folder(job.config_hash, ctx)


def checkpoint_folder(config_hash: str, ctx: RunContext) -> Path:
    root = ctx.data_dir or default_data_dir()
    return Path(root) / "checkpoints" / config_hash


DATASETS_DEFAULT = "mnist"  # the case of a pretrained pipeline with no dataset of its shape (not loaded then)


def dataset_present(name: str, data_dir: Path | None) -> bool:
    """Whether the named dataset's files are in ``data_dir`` (digits ships with scikit-learn: always)."""
    spec = DATASETS[name]
    folder = Path(data_dir or default_data_dir()) / spec.folder
    return all((folder / file).exists() for file in spec.files)


def oracle_dataset(shape: tuple[int, int, int], data_dir: Path | None) -> str | None:
    """The named dataset whose images have ``shape`` and whose files are here; the bundled ``digits``
    (not MNIST) only when no real one is; None when none has that shape."""
    matching = [name for name, spec in DATASETS.items() if spec.shape == tuple(shape)]
    present = [name for name in matching if dataset_present(name, data_dir)]
    real = [name for name in present if DATASETS[name].files]
    return (real or present or [None])[0]


def _shapes_here(data_dir: Path | None) -> str:
    names = [name for name in DATASETS if dataset_present(name, data_dir)]
    return ", ".join(f"{name} {_dims(DATASETS[name].shape)}" for name in names) or "none"


def _locked_elsewhere(folder: Path) -> bool:
    """Whether another process holds ``folder``'s training lock now (probed without waiting, then let go)."""
    lock = folder / LOCK_FILE
    if not lock.exists():
        return False
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


class DDPM(System):
    """Plug-in: trains and measures one DDPM per job."""

    name = "ddpm"
    Settings = DDPMSettings

    def check(self, settings: DDPMSettings) -> None:
        """Refuse what cannot run, reading the user's images (headers) and the pretrained model's
        configs (no weights) so that a bad input fails before any run exists."""
        lo, hi = settings.pixel_range
        if not lo < hi:
            raise ConfigError(f"pixel_range {list(settings.pixel_range)}: the low end must be below the high end")
        check_schedule(settings)
        survey = self._check_data(settings)
        shape = survey.shape if survey is not None else DATASETS[settings.dataset].shape
        if is_logged_model(settings.pretrained):
            self._check_model(settings.model, shape)
            load_logged_model(settings.pretrained, self.name).require(network_config(settings, shape))
            return
        if settings.pretrained:
            model = public.locate(settings.pretrained)
            if settings.oracle.train_images and shape != model.sample_shape:
                raise ConfigError(
                    f"pretrained {settings.pretrained!r} generates {_dims(model.sample_shape)} images but dataset "
                    f"{settings.dataset!r} has {_dims(shape)}: the oracle control needs the model's shape; pick a "
                    "dataset of that shape (e.g. imagefolder:DIR with image_size) or set oracle.train_images=0"
                )
            return
        self._check_model(settings.model, shape)
        if survey is not None and settings.batch_size > survey.count:
            raise ConfigError(f"batch_size={settings.batch_size} exceeds the {survey.count} images of {survey.source}")

    def case_for_model(self, model: str, data_dir: Path | None) -> tuple[str, dict, str] | None:
        """A public pipeline with no ``--dataset``: the oracle control needs training images of the shape
        it generates, so the case is a named dataset of that shape whose files are here
        (:func:`oracle_dataset`); with none, the default case with ``oracle.train_images=0``: the oracle
        control on training images is skipped (the noise control runs). A model rdbench logged keeps
        the default case (it was trained on a dataset; ``check()`` compares)."""
        if is_logged_model(model):
            return None
        shape = public.locate(model).sample_shape
        found = oracle_dataset(shape, data_dir)
        if found is not None:
            return found, {}, f"--model {model} generates {_dims(shape)} images: the oracle control uses dataset {found}"
        return (DATASETS_DEFAULT, {"oracle.train_images": 0},
                f"--model {model} generates {_dims(shape)} images and no dataset of that shape is here "
                f"({_shapes_here(data_dir)}): the oracle control on training images is skipped (oracle_noise runs)")

    def check_run(self, settings: DDPMSettings, config_hash: str, ctx: RunContext) -> None:
        """Before the run exists: ``--no-resume`` with a checkpoint of this configuration further than step 0,
        or another process training this configuration now (both are checked again, under the lock, when
        training starts: a process that takes the lock in between still fails its own run)."""
        if settings.pretrained or not config_hash:
            return
        folder = checkpoint_folder(config_hash, ctx)
        if _locked_elsewhere(folder):
            raise ConfigError(f"checkpoint folder {folder} is in use by another process training the same "
                              "configuration; wait for it, or change a setting or the seed")
        path = folder / CHECKPOINT_NAME
        step = checkpoint_step(path)
        if not ctx.resume and path.exists() and (step is None or step > 0):
            where = f"at step {step}" if step is not None else "of unknown step"
            raise ConfigError(f"--no-resume: checkpoint {path} {where} exists for this configuration; run without "
                              f"--no-resume to continue from it, or delete {folder} to start over")

    def memory_bytes(self, settings: Sequence[DDPMSettings]) -> int | None:
        """One job's lower bound (:func:`memory_bytes`); a pretrained pipeline is not estimated."""
        s = settings[0]
        if s.pretrained:
            return None
        shape = image_shape(s) if s.dataset in USER_DATASETS else DATASETS[s.dataset].shape
        return memory_bytes(s, shape)

    @staticmethod
    def _check_data(settings: DDPMSettings) -> ImageSurvey | None:
        """The user's images surveyed (None for a named set); the data settings must fit the dataset kind."""
        if settings.dataset in USER_DATASETS:
            if not settings.data_path:
                raise ConfigError(f"dataset {settings.dataset!r} needs data_path "
                                  f"(on the command line: --dataset {settings.dataset}:PATH)")
        else:
            for key in ("data_path", "data_key", "image_size"):
                if getattr(settings, key) is not None:
                    raise ConfigError(f"{key} applies to the datasets {' and '.join(USER_DATASETS)}, "
                                      f"not to {settings.dataset!r} (its images are {_dims(DATASETS[settings.dataset].shape)})")
        if settings.dataset != "npz" and settings.data_key is not None:
            raise ConfigError(f"data_key applies to npz files, not to dataset {settings.dataset!r}")
        return survey_images(settings)

    @staticmethod
    def _check_model(m: ModelSettings, shape: tuple[int, int, int]) -> None:
        if len(m.attention) != len(m.channels):
            raise ConfigError(
                f"model.attention has {len(m.attention)} entries, model.channels {len(m.channels)}: one per level"
            )
        factor = 2 ** (len(m.channels) - 1)
        if shape[1] % factor or shape[2] % factor:
            raise ConfigError(
                f"model.channels: {len(m.channels)} levels halve the images {len(m.channels) - 1} times, so their "
                f"height and width must be divisible by {factor}; the images are {shape[1]}x{shape[2]}: "
                "set image_size or use fewer levels"
            )
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
        if is_logged_model(s.pretrained):
            return self.run_logged(job, ctx)
        if s.pretrained:
            return self.run_pretrained(job, ctx)
        device = ctx.device
        data: ImageSet = load_images(s, ctx.data_dir)
        job.recorder.log_dict(data.describe(), "dataset.json")
        job.recorder.log_input(data.record("training"))
        schedule = build_schedule(s, device)
        shape = data.spec.shape

        def balance(model, n: int, label: str):
            eps = network_predictor(model, s.bf16, s.channels_last)
            with ctx.progress(s.schedule.timesteps * -(-n // s.sampler.batch_size), label) as bar:
                return measure(eps, schedule, n, s.sampler.batch_size, shape, job.seed, device, bar,
                               static=static_step_wanted(s.capture, device))

        # 1. the untrained control (the same initial weights a resumed run rebuilds)
        model = build_model(s, job.seed, shape[0]).to(device)
        n_params = count_parameters(model)
        untrained = _untrained_control(job, ctx, model, schedule, shape)

        # 2. training, with checkpoints and R probes
        folder = checkpoint_dir(job, ctx)
        trainer = Trainer(model, schedule, data, _train_config(s), job.seed, device, folder,
                          run_id=getattr(job.recorder, "run_id", None))

        def on_probe(ema_model, step: int) -> None:
            result, _ = balance(ema_model, s.probe_samples, f"ddpm/{job.case} probe@{step}")
            job.recorder.log_metrics(_probe_metrics(result), step=step)

        with exclusive(folder):  # one process at a time trains this configuration
            resumed = _start(trainer, job, ctx)
            with ctx.progress(s.train_steps - trainer.step, f"ddpm/{job.case} training") as bar:
                report = trainer.train(
                    log_loss=lambda loss, step: job.recorder.log_metrics({"loss": loss}, step=step),
                    on_checkpoint=lambda path, step: job.recorder.log_artifact(path, "checkpoints"),
                    on_probe=on_probe,
                    progress=bar,
                )

        # 3. the measurement with the EMA weights, 4. the exact-denoiser controls
        result, controls, metrics = _measure_with_controls(
            job, ctx, network_predictor(trainer.ema.model, s.bf16, s.channels_last), schedule, shape,
            s.pixel_range, data, "trained",
        )
        job.recorder.log_metrics(_probe_metrics(result), step=report.steps)
        job.recorder.log_model(ModelRecord(
            self.name, trainer.ema.model, {**network_config(s, shape), **_provenance(job), "train_steps": report.steps},
            _input_example(shape),
        ))
        return Outcome(
            balance=result,
            controls={"untrained": untrained, **controls},
            metrics={
                **metrics,
                "final_loss": report.final_loss,
                "train_steps_done": float(report.steps),
                "resumed_from_step": float(report.start_step if resumed else 0),
                "train_images_per_s": report.images_per_s,
                "checkpoints_written": float(report.checkpoints),
                "n_parameters": float(n_params),
            },
        )

    def run_logged(self, job: Job, ctx: RunContext) -> Outcome:
        """A network logged by an earlier run (``--model runs:/<id>/model``) measured again without
        training: rebuilt from its config, its weights loaded (strict), then the same untrained
        control, measurement and oracle controls as the run that trained it, hence the same R for
        the same seed and settings (``check()`` refused any setting that shapes the network)."""
        s: DDPMSettings = job.settings
        logged = load_logged_model(s.pretrained, self.name)
        job.recorder.log_dict(logged.config, "reloaded/model.json")
        data = load_images(s, ctx.data_dir)
        job.recorder.log_dict(data.describe(), "dataset.json")
        job.recorder.log_input(data.record("evaluation"))
        schedule = build_schedule(s, ctx.device)
        shape = data.spec.shape
        model = build_model(s, job.seed, shape[0]).to(ctx.device)
        untrained = _untrained_control(job, ctx, model, schedule, shape)
        logged.load_into(model, ctx.device)
        result, controls, metrics = _measure_with_controls(
            job, ctx, network_predictor(model, s.bf16, s.channels_last), schedule, shape, s.pixel_range, data,
            "reloaded",
        )
        return Outcome(
            balance=result,
            controls={"untrained": untrained, **controls},
            metrics={**metrics, "n_parameters": float(count_parameters(model)),
                     "train_steps_done": float(logged.config.get("train_steps", 0))},
        )

    def run_pretrained(self, job: Job, ctx: RunContext) -> Outcome:
        """A public diffusers model sampled through the probe with its own schedule; no training,
        no untrained control; the oracle controls on the same schedule in the range [-1, 1]."""
        s: DDPMSettings = job.settings
        model = public.locate(s.pretrained)
        job.recorder.log_dict(model.describe(), "pretrained/model.json")
        schedule = model.schedule(s.sampler.final_noise, ctx.device)
        job.recorder.log_dict(schedule.describe(), "pretrained/schedule.json")
        unet = model.load_unet(ctx.device)
        data = None
        if s.oracle.train_images:
            data = load_images(s, ctx.data_dir)
            job.recorder.log_dict(data.describe(), "dataset.json")
            job.recorder.log_input(data.record("oracle"))
        result, controls, metrics = _measure_with_controls(
            job, ctx, public.unet_predictor(unet), schedule, model.sample_shape, public.PIXEL_RANGE, data, "pretrained",
        )
        return Outcome(
            balance=result,
            controls=controls,
            metrics={**metrics, "n_parameters": float(count_parameters(unet)), "timesteps": float(schedule.timesteps)},
        )


def _start(trainer: Trainer, job: Job, ctx: RunContext) -> bool:
    """Where training starts: from scratch (``ctx.fresh`` discards the config's checkpoint), from the
    checkpoint (the default: continuing gives the same weights as never stopping; announced in one line
    and noted on the run with the file, its step and the run that wrote it), or refused (``--no-resume``
    with a checkpoint ahead). True when it continued from a checkpoint."""
    if ctx.fresh:
        if trainer.discard():
            log.warning("ddpm/%s: --fresh: deleted the checkpoint in %s; training from step 0",
                        job.case, trainer.checkpoint_path.parent)
        return False
    if not ctx.resume:
        trainer.refuse_if_ahead()
        return False
    origin = trainer.try_resume()
    if origin is None:
        return False
    log.warning("ddpm/%s: reusing checkpoint %s (--fresh trains from scratch)", job.case, origin.describe())
    job.recorder.note_checkpoint(origin.path, origin.step, origin.run_id)
    return True


def _measure_with_controls(
    job: Job,
    ctx: RunContext,
    predictor,
    schedule: NoiseSchedule,
    shape: tuple[int, int, int],
    pixel_range: tuple[float, float],
    data: ImageSet | None,
    label: str,
):
    """The measurement (``sampler.samples`` images through the probe, the grid logged as
    ``samples/<label>.png``) and the oracle controls with the same noise; returns
    (result, controls, metrics)."""
    s: DDPMSettings = job.settings
    batches = -(-s.sampler.samples // s.sampler.batch_size)
    t0 = time.perf_counter()
    snapshots: dict[int, torch.Tensor] = {}
    with ctx.progress(schedule.timesteps * batches, f"ddpm/{job.case} sampling") as bar:
        result, _ = measure(predictor, schedule, s.sampler.samples, s.sampler.batch_size, shape, job.seed,
                            ctx.device, bar, snapshots, static=static_step_wanted(s.capture, ctx.device))
    sampling_s = time.perf_counter() - t0
    job.recorder.log_image(sampling_grid(snapshots, schedule.timesteps, pixel_range), f"samples/{label}.png")
    closed = schedule.closed_form_m_diff(int(np.prod(shape)))
    with ctx.progress(schedule.timesteps * 2 * batches, f"ddpm/{job.case} oracle") as bar:
        controls, counts = oracle_controls(
            s.oracle, data, pixel_range, schedule, s.sampler.samples, s.sampler.batch_size, job.seed, ctx.device,
            bar, shape,
        )
    metrics = {
        **counts,
        "M_diff_closed_form": closed,
        "M_diff_over_closed_form": result.M_diff / closed,
        "M_eps_over_sqrt_dim": result.summary()["M_eps"] / float(np.sqrt(np.prod(shape))),
        "sampling_s": sampling_s,
    }
    return result, controls, metrics


def _untrained_control(job: Job, ctx: RunContext, model, schedule: NoiseSchedule, shape: tuple[int, int, int]):
    """The freshly initialised network measured through the probe (the same sampling noise as the
    measurement); its grid is ``samples/untrained.png``."""
    s: DDPMSettings = job.settings
    snapshots: dict[int, torch.Tensor] = {}
    eps = network_predictor(model, s.bf16, s.channels_last)
    steps = s.schedule.timesteps * -(-s.sampler.samples // s.sampler.batch_size)
    with ctx.progress(steps, f"ddpm/{job.case} untrained") as bar:
        untrained, _ = measure(eps, schedule, s.sampler.samples, s.sampler.batch_size, shape, job.seed, ctx.device,
                               bar, snapshots, static=static_step_wanted(s.capture, ctx.device))
    job.recorder.log_metrics(_probe_metrics(untrained), step=0)
    job.recorder.log_image(sampling_grid(snapshots, schedule.timesteps, s.pixel_range), "samples/untrained.png")
    return untrained


def network_config(s: DDPMSettings, shape: tuple[int, int, int]) -> dict:
    """What shapes the trained network and what its output means: a logged model is reloaded only
    with settings that match it entry by entry."""
    return {
        "image_shape": list(shape),
        "model": s.model.model_dump(mode="json"),
        "schedule": s.schedule.model_dump(mode="json"),
        "pixel_range": list(s.pixel_range),
    }


def _provenance(job: Job) -> dict:
    return {"case": job.case, "seed": job.seed, "profile": job.profile, "config_hash": job.config_hash}


def _input_example(shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """The U-Net's inputs for the model signature: one noisy image ``x`` and its timestep ``t``."""
    return {"x": np.zeros((1, *shape), dtype=np.float32), "t": np.zeros((1,), dtype=np.int64)}


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


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
