"""Training ``eps_theta`` with the simple loss ``||eps - eps_theta(x_t, t)||^2`` (Ho et al. Eq. 14).

AdamW, gradient clipping, an EMA copy of the weights for sampling, and on CUDA
bf16 autocast and channels-last memory.

Two ways to run a step, one setting (``capture`` in conf/systems/ddpm.yaml):

* the eager loop (``off``; ``auto`` on a CPU): a batch index drawn on the host, the
  loss, backward, clipping, AdamW and the EMA update op by op from Python;
* the static-buffer step (:class:`StaticStep`; ``auto`` on CUDA, ``on`` everywhere):
  the same computation as one function of device tensors only, the training set
  resident on the device, the epoch's permutation in a device buffer indexed by a
  device step counter, ``t`` and the noise drawn on the device by the trainer's
  generator, the EMA decay computed on the device from the step counter, the loss
  summed into a device accumulator read every ``log_every`` steps. On CUDA it is
  captured once as a CUDA graph and replayed (:mod:`.capture`: why a graph and not
  ``torch.compile``), with fused ``capturable`` AdamW; on a CPU it is called
  directly, which is what the tests compare with the eager loop. A step that cannot
  be captured falls back to the eager loop with one warning.

Every ``checkpoint_every`` steps the whole training state (model, EMA, optimizer,
step, RNG states) is written atomically (temporary file + ``os.replace``) to
``<folder>/latest.pt``; with ``resume`` a run continues from it, loaded with ``torch.load(weights_only=True)``.

Determinism across a resume: the batch order is a pure function of (seed, step)
(one permutation per epoch from a generator seeded with seed and epoch), and the
generator that draws ``t`` and the noise, and torch's global generator (dropout),
are saved in the checkpoint. So continuing from a checkpoint gives the same weights
as never stopping, and the DDPM system continues from its config's checkpoint by
default. This holds for both ways of stepping: the static step draws the same batch
order (the host computes the epoch's permutation with :func:`batch_indices`' rule
and copies it into the device buffer), and draws ``t``, the noise and dropout from
the same generators, whose states the checkpoint saves (a CUDA graph advances a
registered generator's offset at every replay, so its saved state is current). The
two ways agree with each other within float rounding, not bit for bit (the EMA decay
is computed in float32 on the device), and ``capture`` is part of the config hash, so
a run resumes from a checkpoint of its own mode.

Provenance: ``latest.json`` also names the run that wrote the checkpoint (which logs
it as its artifact ``checkpoints/latest.pt``), so a run that continues from it can say
where its weights came from (:class:`CheckpointOrigin`); :meth:`Trainer.discard` deletes
it, to train from scratch (``--fresh``).

Safety: a checkpoint is never replaced by one from fewer steps (its step is kept in
``latest.json`` beside it); one process at a time trains into a folder (an exclusive
``flock`` on ``.lock``); an unreadable checkpoint is a one-line error naming it.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rdbench.systems.ddpm.capture import (
    CaptureMode,
    Replay,
    Snapshot,
    bf16_autocast,
    static_step_wanted,
)
from rdbench.systems.ddpm.data import ImageSet
from rdbench.systems.ddpm.schedule import NoiseSchedule

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "latest.pt"
STEP_FILE = "latest.json"  # {"step": N, "run_id": ...} of latest.pt, readable without loading the weights
LOCK_FILE = ".lock"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used or must not be replaced; the message says what to do."""


class EMA:
    """Exponential moving average of a model's weights, with the usual warm-up.

    The decay used at update ``n`` is ``min(decay, (1 + n) / (10 + n))``: early
    averages are not dominated by the random initial weights (with 0.9999 and no
    warm-up, a short run would sample with almost untrained weights).
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, n: int) -> None:
        """The eager update after ``n`` optimizer steps (the decay a Python float)."""
        self.blend(model, 1.0 - min(self.decay, (1 + n) / (10 + n)))

    @torch.no_grad()
    def update_on_device(self, model: nn.Module, n: torch.Tensor, decay: torch.Tensor) -> None:
        """The same update with ``n`` and ``decay`` as device tensors: no host value read (capturable)."""
        n = n.to(torch.float32)
        self.blend(model, 1.0 - torch.minimum(decay, (1 + n) / (10 + n)))

    @torch.no_grad()
    def blend(self, model: nn.Module, weight: float | torch.Tensor) -> None:
        """:func:`ema_blend` of every parameter; buffers copied."""
        ema_blend(list(self.model.parameters()), [p.detach() for p in model.parameters()], weight)
        for b_ema, b in zip(self.model.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)


@torch.no_grad()
def ema_blend(ema: list[torch.Tensor], params: list[torch.Tensor], weight: float | torch.Tensor) -> None:
    """``ema += weight * (params - ema)``, tensor by tensor, in three multi-tensor kernels; ``weight`` may be
    a device tensor (no host read: capturable)."""
    diff = torch._foreach_sub(params, ema)
    torch._foreach_mul_(diff, weight)
    torch._foreach_add_(ema, diff)


@dataclass
class TrainConfig:
    """The training knobs (a view of the system's settings)."""

    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    grad_clip: float  # max global gradient norm; 0 disables clipping
    ema_decay: float
    log_every: int
    checkpoint_every: int
    probe_every: int  # 0: no probe during training
    pixel_range: tuple[float, float]
    bf16: bool
    channels_last: bool
    capture: CaptureMode = "auto"  # auto: the static step captured on CUDA, the eager loop on a CPU


@dataclass
class TrainReport:
    start_step: int  # the step training started from (> 0 after a resume)
    steps: int  # the step it reached
    final_loss: float
    images_per_s: float  # over the steps trained by this process, probes excluded
    checkpoints: int  # checkpoints written by this process


@dataclass(frozen=True)
class CheckpointOrigin:
    """Where a checkpoint came from: its file, its step and the run that wrote it (None: unknown,
    e.g. one written before rdbench recorded it)."""

    path: Path
    step: int | None
    run_id: str | None

    def describe(self) -> str:
        step = f"step {self.step}" if self.step is not None else "an unknown step"
        by = f"written by run {self.run_id}" if self.run_id else "written by an unknown run"
        return f"{self.path} at {step}, {by}"


def checkpoint_origin(path: Path) -> CheckpointOrigin | None:
    """The checkpoint at ``path`` and what ``latest.json`` says of it; None when there is none."""
    if not path.exists():
        return None
    try:
        info = json.loads(path.with_name(STEP_FILE).read_text())
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict):
        info = {}
    try:
        step = int(info["step"])
    except (KeyError, TypeError, ValueError):
        step = None  # a checkpoint written before the step file: unknown, never assumed ahead
    run_id = info.get("run_id")
    return CheckpointOrigin(path, step, run_id if isinstance(run_id, str) and run_id else None)


def checkpoint_step(path: Path) -> int | None:
    """The step of the checkpoint at ``path`` (from its ``latest.json``), None when there is none."""
    origin = checkpoint_origin(path)
    return origin.step if origin else None


def save_checkpoint(path: Path, state: dict[str, Any], run_id: str | None = None) -> None:
    """Write ``state`` to ``path`` atomically (a reader never sees half a file), never going back;
    ``latest.json`` records its step and ``run_id``, the run that wrote it.

    Raises :class:`CheckpointError` if the checkpoint there is from more steps than ``state``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = checkpoint_step(path)
    if existing is not None and existing > int(state["step"]):
        raise CheckpointError(
            f"checkpoint {path} is at step {existing}; refusing to replace it with step {state['step']}: "
            f"continue from it (the default), or delete {path.parent} to start over"
        )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    step_tmp = path.with_name(f".{STEP_FILE}.{os.getpid()}.tmp")
    step_tmp.write_text(json.dumps({"step": int(state["step"]), "run_id": run_id}))
    os.replace(step_tmp, path.with_name(STEP_FILE))


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """The training state at ``path``; an unreadable file is a CheckpointError naming it."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be read (truncated or corrupt: {reason}); delete {path.parent} to start over"
        ) from None


@contextlib.contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` exclusively: a second process training the same config fails at once."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(
                f"checkpoint folder {folder} is in use by another process training the same configuration"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def batch_indices(n_images: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """The images of training step ``step``: epoch-wise shuffling, a pure function of (seed, step)."""
    per_epoch = n_images // batch_size
    epoch, k = divmod(step, per_epoch)
    return epoch_permutation(n_images, seed, epoch)[k * batch_size : (k + 1) * batch_size]


def epoch_permutation(n_images: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the images in ``epoch`` (on the CPU): one seeded permutation per epoch."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n_images, generator=gen)


class Trainer:
    """Trains one model on one image set; checkpoints and resumes."""

    def __init__(
        self,
        model: nn.Module,
        schedule: NoiseSchedule,
        data: ImageSet,
        config: TrainConfig,
        seed: int,
        device: torch.device,
        checkpoint_dir: Path,
        run_id: str | None = None,
    ):
        if config.batch_size > len(data):
            raise ValueError(f"batch_size {config.batch_size} exceeds the {len(data)} images of {data.spec.name!r}")
        self.cuda = device.type == "cuda"
        self.channels_last = config.channels_last and self.cuda
        self.autocast = config.bf16 and self.cuda
        self.model = model.to(device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = EMA(self.model, config.ema_decay)
        self.static = static_step_wanted(config.capture, device)
        self.optimizer = make_optimizer(self.model, config.lr, config.weight_decay, device, capturable=self.static)
        self.schedule = schedule
        self.data = data.to(device)
        self.config = config
        self.seed = seed
        self.device = device
        self.checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME
        self.run_id = run_id  # recorded in latest.json: the run whose artifact the checkpoint is
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.step = 0

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        state = {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.cuda:
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.model.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"].cpu())  # RNG states live on the CPU
        torch.set_rng_state(state["torch_rng"].cpu())
        if self.cuda and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        self.step = int(state["step"])

    def try_resume(self) -> CheckpointOrigin | None:
        """Load the latest checkpoint if there is one; returns where it came from (None: there was none)."""
        origin = checkpoint_origin(self.checkpoint_path)
        if origin is None:
            return None
        self.load(load_checkpoint(self.checkpoint_path, self.device))
        return CheckpointOrigin(origin.path, self.step, origin.run_id)

    def discard(self) -> bool:
        """Delete this configuration's checkpoint (``--fresh``: train from scratch); True if there was one."""
        found = self.checkpoint_path.exists()
        for path in (self.checkpoint_path, self.checkpoint_path.with_name(STEP_FILE)):
            path.unlink(missing_ok=True)
        return found

    def refuse_if_ahead(self) -> None:
        """Starting over (``--no-resume``) must not replace a further-along checkpoint: say how instead."""
        step = checkpoint_step(self.checkpoint_path)
        if self.checkpoint_path.exists() and (step is None or step > 0):
            where = f"at step {step}" if step is not None else "of unknown step"
            raise CheckpointError(
                f"--no-resume: checkpoint {self.checkpoint_path} {where} exists for this configuration; "
                f"run without --no-resume to continue from it, or delete {self.checkpoint_path.parent} to start over"
            )

    # ------------------------------------------------------------------ training

    def loss(self, x0: torch.Tensor) -> torch.Tensor:
        """The simple loss at uniformly drawn timesteps."""
        t = torch.randint(0, self.schedule.timesteps, (x0.shape[0],), generator=self.generator, device=self.device)
        noise = torch.randn(x0.shape, generator=self.generator, device=self.device)
        x_t = self.schedule.add_noise(x0, t, noise)
        if self.channels_last:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        with bf16_autocast(self.autocast):
            pred = self.model(x_t, t)
        return F.mse_loss(pred.float(), noise)

    def _eager_step(self, window: torch.Tensor) -> None:
        """One step of the eager loop: the host draws the batch index, Python runs every op."""
        cfg = self.config
        index = batch_indices(len(self.data), cfg.batch_size, self.seed, self.step).to(self.device)
        loss = self.loss(self.data.batch(index, cfg.pixel_range))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.ema.update(self.model, self.step + 1)
        window += loss.detach()

    def stepper(self, window: torch.Tensor) -> Callable[[], None]:
        """What :meth:`train` calls once per step (from ``self.step``); the loss is added to ``window``."""
        if self.static:
            try:
                return StaticStep(self, window)
            except RuntimeError as exc:  # an op that cannot be captured: the eager loop, said once
                log.warning("capturing the training step failed (%s); training with the eager loop",
                            " ".join(str(exc).split())[:300])
                self.static = False
        return lambda: self._eager_step(window)

    def train(
        self,
        log_loss: Callable[[float, int], None],
        on_checkpoint: Callable[[Path, int], None] | None = None,
        on_probe: Callable[[nn.Module, int], None] | None = None,
        progress=None,
    ) -> TrainReport:
        """Train from ``self.step`` to ``config.steps``; returns what happened."""
        cfg = self.config
        start_step = self.step
        self.model.train()
        window = torch.zeros((), device=self.device)  # the loss summed on the device, read every log_every steps
        window_n = 0
        last_loss = float("nan")
        checkpoints = 0
        probe_s = 0.0
        t0 = time.perf_counter()  # images/s include the static step's warm-up and capture
        step = self.stepper(window) if self.step < cfg.steps else None
        try:
            while self.step < cfg.steps:
                step()
                self.step += 1
                window_n += 1
                if progress is not None:
                    progress.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    last_loss = float(window) / window_n  # one device sync per log interval
                    log_loss(last_loss, self.step)
                    window.zero_()
                    window_n = 0
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    save_checkpoint(self.checkpoint_path, self.state(), self.run_id)
                    checkpoints += 1
                    if on_checkpoint is not None:
                        on_checkpoint(self.checkpoint_path, self.step)
                if on_probe is not None and cfg.probe_every and self.step % cfg.probe_every == 0 and self.step < cfg.steps:
                    p0 = time.perf_counter()
                    on_probe(self.ema.model, self.step)
                    probe_s += time.perf_counter() - p0
                    self.model.train()
        finally:
            if isinstance(step, StaticStep):
                step.release()  # the graph and its memory pool go now, not at the next garbage collection
        elapsed = time.perf_counter() - t0 - probe_s
        trained = self.step - start_step
        return TrainReport(
            start_step=start_step,
            steps=self.step,
            final_loss=last_loss,
            images_per_s=trained * cfg.batch_size / elapsed if trained else float("nan"),
            checkpoints=checkpoints,
        )


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, device: torch.device,
                   capturable: bool) -> torch.optim.AdamW:
    """AdamW: fused on CUDA (one kernel for all parameters), ``capturable`` (its step count on the device)
    when the step is captured; torch's default implementation on a CPU. The learning rate is constant in
    every profile, so it stays a Python float (a schedule would pass it as a device tensor)."""
    cuda = device.type == "cuda"
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay,
                             fused=True if cuda else None, capturable=capturable and cuda)


class StaticStep:
    """One training step as a function of static device buffers (captured as a CUDA graph on CUDA).

    Buffers: the epoch's permutation ``perm`` (``per_epoch x batch_size`` indices, refilled by
    the host once per epoch), the step counter ``step`` (the next step, incremented inside the
    step), the EMA decay ``decay`` (a device tensor: it could change without recapture), the
    loss accumulator ``window``; plus the parameters, gradients, optimizer state and EMA
    weights, all updated in place. :meth:`compute` is the function captured: batch, ``t``
    and noise drawn on the device, forward, the simple loss (Ho et al. Eq. 14), backward,
    gradient clipping, AdamW, the EMA update.
    """

    def __init__(self, trainer: Trainer, window: torch.Tensor):
        cfg = trainer.config
        self.trainer = trainer
        self.window = window
        self.per_epoch = len(trainer.data) // cfg.batch_size
        device = trainer.device
        self.perm = torch.empty(self.per_epoch, cfg.batch_size, dtype=torch.long, device=device)
        self.epoch: int | None = None
        self.step = torch.full((), trainer.step, dtype=torch.long, device=device)
        self.decay = torch.tensor(cfg.ema_decay, dtype=torch.float32, device=device)
        self.params = list(trainer.model.parameters())
        self._load_epoch(trainer.step)
        reset = self._reset_after_warmup() if device.type == "cuda" else None
        self.replay = Replay(self.compute, device, reset=reset, generators=[trainer.generator],
                             before_each=lambda: trainer.optimizer.zero_grad(set_to_none=True))

    def _load_epoch(self, step: int) -> None:
        """Fill ``perm`` with the permutation of ``step``'s epoch if it holds another one (host side)."""
        epoch = step // self.per_epoch
        if epoch == self.epoch:
            return
        cfg = self.trainer.config
        order = epoch_permutation(len(self.trainer.data), self.trainer.seed, epoch)
        order = order[: self.per_epoch * cfg.batch_size].view(self.per_epoch, cfg.batch_size)
        if self.perm.is_cuda:  # from pinned memory, without waiting (torch keeps it alive until copied)
            order = order.pin_memory()
        self.perm.copy_(order, non_blocking=True)
        self.epoch = epoch

    def _reset_after_warmup(self):
        """A callable putting back what the warm-up calls changed (weights, moments, counters, generators)."""
        t = self.trainer
        tensors = [*self.params, *t.model.buffers(), *t.ema.model.parameters(), *t.ema.model.buffers(),
                   *self._optimizer_tensors(), self.step, self.window]
        generators = [t.generator]
        if t.cuda:
            generators.append(torch.cuda.default_generators[t.device.index or 0])
        snapshot = Snapshot(tensors, generators)
        return lambda: snapshot.restore(appeared=self._optimizer_tensors())

    def _optimizer_tensors(self) -> list[torch.Tensor]:
        return [v for state in self.trainer.optimizer.state.values() for v in state.values()
                if isinstance(v, torch.Tensor)]

    def compute(self) -> None:
        """The function captured: one training step over the static buffers."""
        t = self.trainer
        cfg = t.config
        row = torch.remainder(self.step, self.per_epoch).view(1)
        index = self.perm.index_select(0, row).view(-1)
        loss = t.loss(t.data.batch(index, cfg.pixel_range))
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        t.optimizer.step()
        self.step += 1
        t.ema.update_on_device(t.model, self.step, self.decay)
        self.window += loss.detach()

    def __call__(self) -> None:
        """Train step ``trainer.step``: the epoch's permutation loaded if it is a new epoch, then one call/replay."""
        self._load_epoch(self.trainer.step)
        self.replay()

    def release(self) -> None:
        """Drop the graph (it refers back to this object through :meth:`compute`)."""
        self.replay = None
