"""Ancestral sampling (Ho et al. Algorithm 2) with the balance probe.

The sampler takes any network ``output(x_t, t)`` (a trained U-Net, an untrained
one, an exact denoiser, a public diffusers ``UNet2DModel``; what it predicts, eps,
x_0 or v, is the schedule's ``prediction``), so that every control goes through
the same loop and the same meter. Given a :class:`~rdbench.balance.BalanceMeter`
with terms ``("reaction", "diffusion", "eps")`` it records, per sample and per
reverse step, the norms of

* reaction = ``mean_t - x_t`` (the learned drift; Eqs. 12-14 as the authors computed them),
* diffusion = ``sigma_t z`` (Eqs. 15-17),
* eps = ``eps_theta(x_t, t)`` (Eq. 14 as literally written; for an x_0 or v network the
  noise its prediction implies, see :mod:`.schedule`).

The noise comes from one ``torch.Generator``: first ``x_T``, then one ``z`` per noisy
step, in the order diffusers' ``DDPMPipeline`` draws them, so that the same seeded
generator gives both loops the same noise.

With ``static=True`` (the DDPM system's ``capture`` setting) every noisy reverse step
of a network with the direct update (Ho et al. Eq. 11: an eps network on rdbench's own
schedule) runs as :class:`StaticReverseStep`: the U-Net, the update and the probe's
norms as one function of static buffers (``x``, a device timestep counter, the
schedule's coefficients as device tables, the norms), replayed as one CUDA graph per
batch on CUDA (:mod:`.capture`) and called directly on a CPU. It draws the same noise
from the same generator in the same order, so it samples what the eager loop samples.

Meter steps count reverse steps in generation order: step ``n`` is timestep
``t = T - 1 - n``, so normalised time runs from 0 (pure noise) to 1 (the image),
as in the paper's Fig. 2. A step that injects no noise (the last one, unless
``final_noise``) is taken but not recorded: its diffusion is exactly 0 and its
ratio infinite (see :mod:`.schedule`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from rdbench.balance import DIFFUSION, REACTION, BalanceMeter, BalanceResult, term_norms
from rdbench.systems.ddpm.capture import Replay, Snapshot, bf16_autocast
from rdbench.systems.ddpm.schedule import NoiseSchedule

log = logging.getLogger(__name__)

TERMS = (REACTION, DIFFUSION, "eps")

EpsPredictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def network_predictor(model: nn.Module, bf16: bool = False, channels_last: bool = False) -> EpsPredictor:
    """Wrap a U-Net as ``eps(x_t, t)`` in eval mode; bf16 autocast on CUDA, output in float32."""
    model.eval()
    device_type = next(model.parameters()).device.type
    use_bf16 = bf16 and device_type == "cuda"

    def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if channels_last and device_type == "cuda":
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        with bf16_autocast(use_bf16):
            out = model(x_t, t)
        return out.float().contiguous()

    return eps


@torch.inference_mode()
def sample(
    eps_fn: EpsPredictor,
    schedule: NoiseSchedule,
    n: int,
    shape: tuple[int, int, int],
    generator: torch.Generator,
    device: torch.device,
    meter: BalanceMeter | None = None,
    progress=None,
    snapshots: dict[int, torch.Tensor] | None = None,
    static: bool = False,
) -> torch.Tensor:
    """Draw ``n`` samples of ``shape`` from ``x_T ~ N(0, I)``; feed ``meter`` if given.

    ``shape`` is ``(C, H, W)``: any image size the network accepts. ``snapshots``
    (reverse step -> images), if given, receives a CPU copy of the first
    :data:`SNAPSHOT_IMAGES` images at the steps :func:`snapshot_steps` names (step 0:
    ``x_T``; step ``T``: the samples). ``static``: the noisy steps as :class:`StaticReverseStep`
    where the schedule allows it (see the module docstring).
    """
    x = torch.randn((n, *shape), generator=generator, device=device)
    t_batch = torch.empty(n, dtype=torch.long, device=device)
    T = schedule.timesteps
    keep = set(snapshot_steps(T)) if snapshots is not None else set()
    if 0 in keep:
        snapshots[0] = x[:SNAPSHOT_IMAGES].float().cpu()
    replay = None
    if static and schedule.direct_update() and any(schedule.injects_noise(t) for t in range(T)):
        try:
            replay = StaticReverseStep(eps_fn, schedule, x, generator, meter is not None)
        except RuntimeError as exc:  # a network that cannot be captured: the eager loop, said once
            log.warning("capturing the reverse step failed (%s); sampling with the eager loop",
                        " ".join(str(exc).split())[:300])
    for t in range(T - 1, -1, -1):
        noisy = schedule.injects_noise(t)
        if replay is not None and noisy:
            x = replay(x, t)
            if meter is not None:
                meter.record(T - 1 - t, replay.norms)
            _after_step(x, T - t, keep, snapshots, progress)
            continue
        t_batch.fill_(t)
        eps = eps_fn(x, t_batch)
        z = torch.randn(x.shape, generator=generator, device=device) if noisy else None
        if meter is not None and noisy:
            step = schedule.reverse_step(x, t, eps, z)
            meter.record(T - 1 - t, term_norms([step.reaction, step.diffusion, step.eps]))
            x = step.x_prev
        else:  # plain Algorithm 2, nothing measured
            x = schedule.reverse_mean(x, t, eps)
            if noisy:
                x = x + schedule.sigma(t) * z
        _after_step(x, T - t, keep, snapshots, progress)
    if replay is not None:
        replay.release()  # the graph and its memory pool go now, not at the next garbage collection
    return x


def _after_step(x: torch.Tensor, done: int, keep: set[int], snapshots, progress) -> None:
    """Keep the snapshot after ``done`` reverse steps if asked; advance the progress bar."""
    if done in keep:
        snapshots[done] = x[:SNAPSHOT_IMAGES].float().cpu()
    if progress is not None:
        progress.update(1)


class StaticReverseStep:
    """One noisy reverse step over static buffers (Ho et al. Algorithm 2, Eq. 11), with the probe's norms.

    ``x`` (a copy of ``x_T``, updated in place), ``t`` (the batch's timestep, decremented
    inside the step), the tables ``1/sqrt(alpha_t)``, ``beta_t/sqrt(1-abar_t)`` and ``sigma_t``
    on the device, and ``norms`` (reaction, diffusion, eps per sample: :func:`term_norms`).
    The step: ``eps = eps_theta(x, t)``, ``z`` from ``generator``, ``mean = (x - b_t eps)/sqrt(alpha_t)``,
    reaction ``mean - x``, diffusion ``sigma_t z``, ``x <- mean + sigma_t z``: the arithmetic of
    :meth:`NoiseSchedule.reverse_step` with the coefficients read from the tables by ``t``.
    A CUDA graph per batch on CUDA (one capture, ``timesteps`` replays), a direct call elsewhere.
    """

    def __init__(self, eps_fn: EpsPredictor, schedule: NoiseSchedule, x_T: torch.Tensor,
                 generator: torch.Generator, measured: bool):
        device = x_T.device
        self.eps_fn = eps_fn
        self.generator = generator
        self.measured = measured
        self.x = x_T.clone()
        self.t = torch.full((x_T.shape[0],), schedule.timesteps - 1, dtype=torch.long, device=device)
        self.mean_scale, self.eps_scale, self.sigma = (
            torch.tensor(table, dtype=torch.float32, device=device) for table in schedule.direct_tables()
        )
        self.norms = torch.zeros(x_T.shape[0], len(TERMS), device=device)
        self.next_t = schedule.timesteps - 1  # the timestep the buffer t holds (host copy)
        reset = None
        if device.type == "cuda":
            snapshot = Snapshot([self.x, self.t, self.norms], [generator])
            reset = snapshot.restore
        self.replay = Replay(self.step, device, reset=reset, generators=[generator])

    def step(self) -> None:
        """The captured function: one reverse step at the timestep in ``self.t``."""
        eps = self.eps_fn(self.x, self.t)
        z = torch.randn(self.x.shape, generator=self.generator, device=self.x.device)
        at = self.t[:1]
        shape = (1,) * self.x.dim()
        mean = (self.x - self.eps_scale[at].view(shape) * eps) * self.mean_scale[at].view(shape)
        diffusion = self.sigma[at].view(shape) * z
        if self.measured:
            self.norms.copy_(term_norms([mean - self.x, diffusion, eps]))
        self.x.copy_(mean + diffusion)
        self.t.sub_(1)

    def release(self) -> None:
        """Drop the graph (it refers back to this object through :meth:`step`)."""
        self.replay = None

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """``x_{t-1}`` from ``x_t = x`` (the buffer itself after the previous call): the step at ``t``."""
        if x is not self.x:  # a step taken outside the buffers in between (none with rdbench's schedules)
            self.x.copy_(x)
        if t != self.next_t:
            self.t.fill_(t)
        self.replay()
        self.next_t = t - 1
        return self.x


SNAPSHOT_IMAGES = 8  # images per snapshot row of the sample grids
SNAPSHOT_ROWS = 5  # x_T, three intermediate steps, the samples


def snapshot_steps(timesteps: int) -> list[int]:
    """Reverse steps kept for the sample grids: 0 (``x_T``), evenly spaced ones, ``timesteps`` (``x_0``)."""
    return sorted({round(k * timesteps / (SNAPSHOT_ROWS - 1)) for k in range(SNAPSHOT_ROWS)})


def measure(
    eps_fn: EpsPredictor,
    schedule: NoiseSchedule,
    n: int,
    batch_size: int,
    shape: tuple[int, int, int],
    seed: int,
    device: torch.device,
    progress=None,
    snapshots: dict[int, torch.Tensor] | None = None,
    static: bool = False,
) -> tuple[BalanceResult, torch.Tensor]:
    """Sample ``n`` images in batches through the probe; return the pooled result and the images.

    The noise comes from one generator seeded with ``seed``, so two predictors
    measured with the same seed see the same ``x_T`` and the same ``z`` at every step.
    ``snapshots`` receives the first batch's (see :func:`sample`); ``static``: see :func:`sample`.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    results, images = [], []
    for start in range(0, n, batch_size):
        rows = min(batch_size, n - start)
        meter = BalanceMeter(rows, TERMS, device=device)
        images.append(sample(eps_fn, schedule, rows, shape, generator, device, meter, progress,
                             snapshots if start == 0 else None, static))
        results.append(meter.result())
    return BalanceResult.pool(results), torch.cat(images)
