"""The exact denoiser: the best possible epsilon-predictor for a finite training set.

For training images {x0_i} (the empirical data distribution) and the forward process
``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``, the posterior over which image
produced ``x_t`` is a softmax:

    w_i(x_t) = softmax_i( -||x_t - sqrt(abar_t) x0_i||^2 / (2 (1 - abar_t)) )
    E[x0 | x_t] = sum_i w_i x0_i
    eps*(x_t, t) = (x_t - sqrt(abar_t) E[x0 | x_t]) / sqrt(1 - abar_t)

``eps*`` minimises the DDPM training loss exactly, so sampling with it shows what
the balance ratio R would be for a network that learned *perfectly* (it reproduces
training images). Plugged into the same sampler and probe as the U-Net, it is the
"oracle" control; on a set of pure uniform noise images it is the "no structure at
all" reference.

Computed in float64 with a streaming log-sum-exp over chunks of the training set,
so memory stays ``O(batch x chunk)`` however many images are used.
"""

from __future__ import annotations

import torch
from pydantic import NonNegativeInt, PositiveInt

from rdbench.balance import BalanceResult
from rdbench.config import Settings
from rdbench.systems.ddpm.data import ImageSet
from rdbench.systems.ddpm.sample import measure
from rdbench.systems.ddpm.schedule import NoiseSchedule


class ExactDenoiser:
    """``eps*(x_t, t)`` for the empirical distribution of ``images``.

    ``images``: ``(N, C, H, W)`` training images in the pixel range the model sees.
    ``alpha_bars``: ``abar_t`` for every 0-based timestep ``t`` (as in
    :class:`~rdbench.systems.ddpm.schedule.NoiseSchedule`).
    """

    def __init__(self, images: torch.Tensor, alpha_bars: torch.Tensor, chunk_size: int = 4096):
        if images.dim() != 4 or images.shape[0] == 0:
            raise ValueError(f"images must be a non-empty (N, C, H, W) tensor, got {tuple(images.shape)}")
        self.shape = tuple(images.shape[1:])
        self.data = images.reshape(images.shape[0], -1).to(torch.float64)
        self.data_sq = (self.data * self.data).sum(dim=1)  # ||x0_i||^2
        self.alpha_bars = alpha_bars.to(device=images.device, dtype=torch.float64)
        self.chunk_size = chunk_size

    def posterior_mean(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``E[x0 | x_t]`` in float64, shape of ``x_t``; ``t`` holds one timestep per row."""
        batch = x_t.shape[0]
        x = x_t.reshape(batch, -1).to(torch.float64)
        abar = self.alpha_bars[t.to(self.alpha_bars.device)].view(batch, 1)
        sqrt_abar = abar.sqrt()
        x_sq = (x * x).sum(dim=1, keepdim=True)
        running_max = torch.full((batch, 1), -torch.inf, dtype=torch.float64, device=x.device)
        weight_sum = torch.zeros((batch, 1), dtype=torch.float64, device=x.device)
        weighted = torch.zeros_like(x)
        for start in range(0, self.data.shape[0], self.chunk_size):
            chunk = self.data[start : start + self.chunk_size]
            # ||x - sqrt(a) x0_i||^2 = ||x||^2 - 2 sqrt(a) x.x0_i + a ||x0_i||^2
            dist_sq = x_sq - 2 * sqrt_abar * (x @ chunk.T) + abar * self.data_sq[start : start + self.chunk_size]
            logits = -dist_sq / (2 * (1 - abar))
            new_max = torch.maximum(running_max, logits.max(dim=1, keepdim=True).values)
            rescale = torch.exp(running_max - new_max)
            w = torch.exp(logits - new_max)
            weight_sum = weight_sum * rescale + w.sum(dim=1, keepdim=True)
            weighted = weighted * rescale + w @ chunk
            running_max = new_max
        return (weighted / weight_sum).view(x_t.shape)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``eps*(x_t, t)``, returned in ``x_t``'s dtype (the sampler's EpsPredictor signature)."""
        batch = x_t.shape[0]
        abar = self.alpha_bars[t.to(self.alpha_bars.device)].view(batch, *([1] * (x_t.dim() - 1)))
        x0_mean = self.posterior_mean(x_t, t)
        eps = (x_t.to(torch.float64) - abar.sqrt() * x0_mean) / (1 - abar).sqrt()
        return eps.to(x_t.dtype)


def uniform_noise_images(n: int, shape: tuple[int, ...], pixel_range: tuple[float, float], seed: int) -> torch.Tensor:
    """``n`` images of i.i.d. uniform pixels in ``pixel_range``: a data set with no structure at all."""
    low, high = pixel_range
    gen = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand((n, *shape), generator=gen, dtype=torch.float64)


class OracleSettings(Settings):
    """How the oracle controls are built (``0`` images switches a control off)."""

    train_images: NonNegativeInt  # training images the exact denoiser uses (capped at the set's size)
    noise_images: NonNegativeInt  # uniform-noise images for the "no structure" reference
    chunk_size: PositiveInt  # training images per matmul in the streaming log-sum-exp


def oracle_memory_bytes(settings: OracleSettings, available_images: int, shape: tuple[int, int, int],
                        batch_size: int) -> int:
    """A lower bound, in bytes, of the controls' memory: the training subset and the noise images
    in float64 (the noise also as generated), and one sampling batch's distances to a chunk."""
    pixels = shape[0] * shape[1] * shape[2]
    images = min(settings.train_images, available_images) + 2 * settings.noise_images
    return 8 * (images * pixels + batch_size * (settings.chunk_size + 2 * pixels))


def oracle_controls(
    settings: OracleSettings,
    data: ImageSet | None,
    pixel_range: tuple[float, float],
    schedule: NoiseSchedule,
    samples: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    progress=None,
    shape: tuple[int, int, int] | None = None,
) -> tuple[dict[str, BalanceResult], dict[str, float]]:
    """Sample with eps* on a seeded subset of the training set (``oracle``) and on uniform
    noise images (``oracle_noise``), through the same sampler and meter as the network.

    The same ``seed`` as the network's measurement gives the same x_T and z at every step,
    so the comparison is paired. ``shape`` defaults to the data's; with ``data=None``
    only the noise control runs. Whatever the network predicted, eps* is sampled as an
    epsilon predictor on the same schedule. Returns the controls and the image counts used.
    """
    results: dict[str, BalanceResult] = {}
    counts: dict[str, float] = {}
    shape = shape or data.spec.shape
    schedule = schedule.with_prediction("epsilon") if schedule.prediction != "epsilon" else schedule
    alpha_bars = schedule.alpha_bars.to(device)
    sets = {}
    if settings.train_images and data is not None:
        k = min(settings.train_images, len(data))
        index = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:k]
        sets["oracle"] = data.batch(index, pixel_range)
    if settings.noise_images:
        sets["oracle_noise"] = uniform_noise_images(settings.noise_images, shape, pixel_range, seed)
    for name, images in sets.items():
        denoiser = ExactDenoiser(images.to(device), alpha_bars, settings.chunk_size)
        results[name], _ = measure(denoiser, schedule, samples, batch_size, shape, seed, device, progress)
        counts[f"{name}_images"] = float(images.shape[0])
    return results, counts
