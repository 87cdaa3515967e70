"""Public diffusion models: a diffusers ``DDPMPipeline`` measured as it is, without training.

The setting ``pretrained`` names the model:

* a local folder, as ``DDPMPipeline.save_pretrained`` writes it (``model_index.json``
  naming ``DDPMPipeline``, ``unet/`` holding a ``UNet2DModel``, ``scheduler/``
  holding a ``DDPMScheduler`` config), or a folder holding just a ``UNet2DModel``
  and its scheduler config (``unet/`` + ``scheduler/``, or ``config.json`` +
  ``scheduler_config.json`` side by side);
* a Hugging Face Hub id (``google/ddpm-cifar10-32``): its JSON files are fetched
  into the Hub cache (``$HF_HOME``) when the settings are checked, its weights when
  the run starts; a cached model works offline.

:func:`locate` reads only the JSON configs (no weights, no network for a folder),
so that a missing file, an unreachable Hub, a folder of another pipeline class or
a scheduler rdbench cannot follow is one :class:`~rdbench.config.ConfigError` line
before any run exists. rdbench then samples with its own sampler and probe
(:mod:`.sample`) and the model's own schedule, taken from diffusers' own
``DDPMScheduler`` built from that config: its ``alphas_cumprod`` (what the model was
trained with), its ``variance_type`` (``fixed_small`` or ``fixed_large``), its
``prediction_type`` (``epsilon``, ``sample`` or ``v_prediction``) and its
``clip_sample`` / ``clip_sample_range``. All ``num_train_timesteps`` steps are taken,
as ``DDPMPipeline`` does with ``num_inference_steps`` equal to them. Images live in
the pipeline's range [-1, 1] (``DDPMPipeline`` maps them to [0, 1] by ``x / 2 + 0.5``).

diffusers is an optional dependency (``pip install rdbench[diffusers]``), imported
only here and only when a pretrained model is used.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rdbench.config import ConfigError
from rdbench.systems.ddpm.sample import EpsPredictor
from rdbench.systems.ddpm.schedule import PREDICTIONS, VARIANCES, NoiseSchedule

INSTALL_HINT = "pip install rdbench[diffusers]"
PIPELINE_CLASS = "DDPMPipeline"
UNET_CLASS = "UNet2DModel"
SCHEDULER_CLASS = "DDPMScheduler"
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PIXEL_RANGE = (-1.0, 1.0)  # what DDPMPipeline's models generate
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def require_diffusers():
    """The diffusers module, or one line saying how to install it."""
    try:
        import diffusers
    except ImportError:
        raise ConfigError(f"pretrained models need the optional package diffusers: {INSTALL_HINT}") from None
    return diffusers


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what}: cannot read {path}: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: {path} is not a JSON object")
    return data


@dataclass(frozen=True)
class PretrainedModel:
    """A located DDPM pipeline: where it is and its two configs (no weights loaded)."""

    spec: str  # what the user gave
    location: str  # what from_pretrained is given: the folder, or the Hub id
    folder: Path  # the local folder holding the configs (a Hub cache snapshot for a Hub id)
    unet_subfolder: str | None
    unet_config: dict[str, Any]
    scheduler_config: dict[str, Any]  # as diffusers resolves it (every default filled in)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        size = self.unet_config.get("sample_size")
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return (int(self.unet_config.get("in_channels", 3)), int(h), int(w))

    def schedule(self, final_noise: bool = False, device: torch.device | str = "cpu") -> NoiseSchedule:
        """The model's own schedule: diffusers' ``alphas_cumprod`` and the config's variance,
        prediction type and clipping (see the module docstring)."""
        from diffusers import DDPMScheduler

        scheduler = DDPMScheduler.from_config(self.scheduler_config)
        c = scheduler.config
        clip = float(c.clip_sample_range) if c.clip_sample else None
        return NoiseSchedule.from_alpha_bars(
            scheduler.alphas_cumprod, c.variance_type, final_noise, device, c.prediction_type, clip
        )

    def load_unet(self, device: torch.device | str = "cpu") -> torch.nn.Module:
        from diffusers import UNet2DModel

        kwargs = {"subfolder": self.unet_subfolder} if self.unet_subfolder else {}
        try:
            unet = UNet2DModel.from_pretrained(self.location, **kwargs)
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"pretrained {self.spec!r}: cannot load the UNet2DModel weights: "
                               f"{' '.join(str(exc).split())[:300]}") from None
        return unet.to(device).eval()

    def describe(self) -> dict[str, Any]:
        """The model as the run records it: where it came from, its shape and both configs."""
        return {
            "pretrained": self.spec,
            "location": self.location,
            "config_folder": str(self.folder),
            "unet_subfolder": self.unet_subfolder,
            "sample_shape": list(self.sample_shape),
            "pixel_range": list(PIXEL_RANGE),
            "unet_config": self.unet_config,
            "scheduler_config": self.scheduler_config,
        }


def unet_predictor(unet: torch.nn.Module) -> EpsPredictor:
    """A ``UNet2DModel`` as the sampler's ``output(x_t, t)`` (whatever it predicts), in float32."""
    unet.eval()

    def output(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(x_t, t).sample.float()

    return output


def locate(spec: str) -> PretrainedModel:
    """Find the model's configs and check that rdbench can measure it; ConfigError otherwise."""
    what = f"pretrained {spec!r}"
    if spec.startswith(("runs:/", "models:/")):
        raise ConfigError(f"{what}: MLflow model URIs are not supported yet; give a folder or a Hub id")
    folder = Path(spec).expanduser()
    if folder.is_dir():
        location = str(folder)
    elif folder.exists():
        raise ConfigError(f"{what}: is a file; give the folder a DDPMPipeline was saved to, or a Hub id")
    elif HUB_ID.match(spec):
        folder, location = _hub_configs(spec, what), spec
    else:
        raise ConfigError(f"{what}: no such folder, and not a Hugging Face Hub id (owner/name)")
    require_diffusers()
    unet_sub, unet_config, scheduler_config = _read_layout(folder, what)
    model = PretrainedModel(spec, location, folder, unet_sub, unet_config, _resolve_scheduler(scheduler_config, what))
    _check_supported(model, what)
    if location == str(folder):
        weights_dir = folder / unet_sub if unet_sub else folder
        if not any((weights_dir / name).is_file() for name in WEIGHT_FILES):
            raise ConfigError(f"{what}: no weights in {weights_dir} (expected {' or '.join(WEIGHT_FILES)})")
    return model


def _hub_configs(repo_id: str, what: str) -> Path:
    """The Hub snapshot of the model's JSON files (from the cache when offline)."""
    require_diffusers()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json"]))
    except Exception as exc:  # noqa: BLE001 - offline, not found, gated: one line whatever the cause
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ConfigError(
            f"{what}: not a local folder, and fetching its configs from the Hugging Face Hub failed "
            f"(no network, or no such model?) with nothing in the cache: {type(exc).__name__}: {reason}"
        ) from None


def _read_layout(folder: Path, what: str) -> tuple[str | None, dict, dict]:
    """(unet subfolder, unet config, scheduler config) of a pipeline or UNet + scheduler folder."""
    index = folder / "model_index.json"
    if index.is_file():
        data = _read_json(index, what)
        cls = data.get("_class_name")
        if cls != PIPELINE_CLASS:
            raise ConfigError(
                f"{what}: model_index.json names {cls}; rdbench measures a {PIPELINE_CLASS} "
                f"(a {UNET_CLASS} and a {SCHEDULER_CLASS})"
            )
    unet_sub = "unet" if (folder / "unet" / "config.json").is_file() else None
    unet_path = folder / "unet" / "config.json" if unet_sub else folder / "config.json"
    scheduler_path = next(
        (p for p in (folder / "scheduler" / "scheduler_config.json", folder / "scheduler_config.json") if p.is_file()),
        None,
    )
    if not unet_path.is_file() or scheduler_path is None:
        missing = "unet/config.json" if not unet_path.is_file() else "scheduler/scheduler_config.json"
        raise ConfigError(
            f"{what}: no {missing} in {folder}; expected a folder written by DDPMPipeline.save_pretrained "
            "(model_index.json, unet/, scheduler/)"
        )
    unet_config = _read_json(unet_path, what)
    scheduler_config = _read_json(scheduler_path, what)
    if unet_config.get("_class_name") != UNET_CLASS:
        raise ConfigError(f"{what}: {unet_path.relative_to(folder)} describes a {unet_config.get('_class_name')}; "
                          f"rdbench measures a {UNET_CLASS}")
    if scheduler_config.get("_class_name") != SCHEDULER_CLASS:
        raise ConfigError(f"{what}: {scheduler_path.relative_to(folder)} describes a "
                          f"{scheduler_config.get('_class_name')}; rdbench follows a {SCHEDULER_CLASS}")
    return unet_sub, unet_config, scheduler_config


def _resolve_scheduler(config: dict[str, Any], what: str) -> dict[str, Any]:
    """The scheduler config with diffusers' defaults filled in (as DDPMScheduler reads it)."""
    from diffusers import DDPMScheduler

    try:
        scheduler = DDPMScheduler.from_config(config)
    except Exception as exc:  # noqa: BLE001 - any rejection of the config is the user's input
        raise ConfigError(f"{what}: diffusers rejects its scheduler config: {' '.join(str(exc).split())[:200]}") from None
    return {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")} | {"_class_name": SCHEDULER_CLASS}


def _check_supported(model: PretrainedModel, what: str) -> None:
    c, u = model.scheduler_config, model.unet_config
    allowed = {
        "variance_type": VARIANCES,
        "prediction_type": PREDICTIONS,
    }
    for key, values in allowed.items():
        if c.get(key) not in values:
            raise ConfigError(f"{what}: scheduler {key}={c.get(key)!r} is not supported; allowed: {', '.join(values)}")
    if c.get("trained_betas") is None and c.get("beta_schedule") not in BETA_SCHEDULES:
        raise ConfigError(f"{what}: scheduler beta_schedule={c.get('beta_schedule')!r} is not supported; "
                          f"allowed: {', '.join(BETA_SCHEDULES)} (or trained_betas)")
    for key in ("thresholding", "rescale_betas_zero_snr"):
        if c.get(key):
            raise ConfigError(f"{what}: scheduler {key}=true is not supported")
    if int(c.get("num_train_timesteps", 0)) < 2:
        raise ConfigError(f"{what}: scheduler num_train_timesteps={c.get('num_train_timesteps')}; need at least 2")
    if u.get("out_channels", u.get("in_channels")) != u.get("in_channels"):
        raise ConfigError(f"{what}: the UNet has {u.get('out_channels')} output channels for {u.get('in_channels')} "
                          "input channels (a learned-variance model); only fixed variances are supported")
    if u.get("num_class_embeds") or u.get("class_embed_type"):
        raise ConfigError(f"{what}: a class-conditional UNet2DModel is not supported (unconditional models only)")
    if u.get("sample_size") is None:
        raise ConfigError(f"{what}: the UNet config has no sample_size (the image size it generates)")
