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

Meter steps count reverse steps in generation order: step ``n`` is timestep
``t = T - 1 - n``, so normalised time runs from 0 (pure noise) to 1 (the image),
as in the paper's Fig. 2. A step that injects no noise (the last one, unless
``final_noise``) is taken but not recorded: its diffusion is exactly 0 and its
ratio infinite (see :mod:`.schedule`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from rdbench.balance import DIFFUSION, REACTION, BalanceMeter, BalanceResult, term_norms
from rdbench.systems.ddpm.schedule import NoiseSchedule

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
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
        with ctx:
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
) -> torch.Tensor:
    """Draw ``n`` samples of ``shape`` from ``x_T ~ N(0, I)``; feed ``meter`` if given.

    ``shape`` is ``(C, H, W)``: any image size the network accepts. ``snapshots``
    (reverse step -> images), if given, receives a CPU copy of the first
    :data:`SNAPSHOT_IMAGES` images at the steps :func:`snapshot_steps` names (step 0:
    ``x_T``; step ``T``: the samples).
    """
    x = torch.randn((n, *shape), generator=generator, device=device)
    t_batch = torch.empty(n, dtype=torch.long, device=device)
    T = schedule.timesteps
    keep = set(snapshot_steps(T)) if snapshots is not None else set()
    if 0 in keep:
        snapshots[0] = x[:SNAPSHOT_IMAGES].float().cpu()
    for t in range(T - 1, -1, -1):
        t_batch.fill_(t)
        eps = eps_fn(x, t_batch)
        noisy = schedule.injects_noise(t)
        z = torch.randn(x.shape, generator=generator, device=device) if noisy else None
        if meter is not None and noisy:
            step = schedule.reverse_step(x, t, eps, z)
            meter.record(T - 1 - t, term_norms([step.reaction, step.diffusion, step.eps]))
            x = step.x_prev
        else:  # plain Algorithm 2, nothing measured
            x = schedule.reverse_mean(x, t, eps)
            if noisy:
                x = x + schedule.sigma(t) * z
        if T - t in keep:
            snapshots[T - t] = x[:SNAPSHOT_IMAGES].float().cpu()
        if progress is not None:
            progress.update(1)
    return x


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
) -> tuple[BalanceResult, torch.Tensor]:
    """Sample ``n`` images in batches through the probe; return the pooled result and the images.

    The noise comes from one generator seeded with ``seed``, so two predictors
    measured with the same seed see the same ``x_T`` and the same ``z`` at every step.
    ``snapshots`` receives the first batch's (see :func:`sample`).
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    results, images = [], []
    for start in range(0, n, batch_size):
        rows = min(batch_size, n - start)
        meter = BalanceMeter(rows, TERMS, device=device)
        images.append(sample(eps_fn, schedule, rows, shape, generator, device, meter, progress,
                             snapshots if start == 0 else None))
        results.append(meter.result())
    return BalanceResult.pool(results), torch.cat(images)
