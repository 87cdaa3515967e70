"""The DDPM noise schedule and its reverse step (Ho et al. 2020; paper Sec. 3.3, Eqs. 9-11, 14, 17).

Indexing follows diffusers and the authors' code: timesteps are 0-based,
``t = T-1`` is pure noise and ``t = 0`` is the last reverse step (the paper's
``t = 1``). With a linear schedule ``beta_t``, ``alpha_t = 1 - beta_t`` and
``abar_t = prod_{s<=t} alpha_s``:

* forward (training) sample: ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``
* reverse mean (Ho et al. Eq. 11): ``mean_t = (x_t - beta_t / sqrt(1 - abar_t) eps_theta) / sqrt(alpha_t)``
* reverse step: ``x_{t-1} = mean_t + sigma_t z`` with ``sigma_t = sqrt(beta_t)``
  (``fixed_large``, the authors' choice) or the posterior standard deviation
  ``sqrt(beta_t (1 - abar_{t-1}) / (1 - abar_t))`` (``fixed_small``).

The step is split the way the paper reads it as a reaction-diffusion update:
*reaction* = ``mean_t - x_t`` (the whole deterministic, learned drift; Eqs. 12-14
as the authors computed them), *diffusion* = ``sigma_t z`` (Eqs. 15-17). Eq. (14)
literally writes ``||eps_theta||``; that tensor is returned too, as its own term.

**The noise-free last step.** Ho et al. and diffusers add no noise at ``t = 0``
(and ``fixed_small`` has ``sigma_0 = 0`` anyway). Unless ``final_noise`` is set,
the last step is deterministic: its diffusion term is exactly 0, so its ratio is
infinite and it carries no balance information; the sampler then does not record
it (see :mod:`.sample`). ``M_diff``'s closed form is taken over the same steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

Variance = Literal["fixed_large", "fixed_small"]


@dataclass
class ReverseStep:
    """One reverse step and its named parts (all of the batch's shape)."""

    x_prev: torch.Tensor  # x_{t-1} = x_t + reaction + diffusion
    reaction: torch.Tensor  # mean_t - x_t: the learned drift
    diffusion: torch.Tensor  # sigma_t z: the injected noise
    eps: torch.Tensor  # eps_theta(x_t, t): Eq. (14) as written


class NoiseSchedule:
    """A linear beta schedule with the constants of the forward and reverse processes.

    The constants are computed in float64 and stored in float32 on ``device``;
    per-step scalars used by the sampler are kept as Python floats so that a
    reverse step launches no indexing kernel.
    """

    def __init__(
        self,
        timesteps: int,
        beta_start: float,
        beta_end: float,
        variance: Variance = "fixed_large",
        final_noise: bool = False,
        device: torch.device | str = "cpu",
    ):
        if timesteps < 1:
            raise ValueError(f"timesteps must be positive, got {timesteps}")
        if variance not in ("fixed_large", "fixed_small"):
            raise ValueError(f"unknown variance {variance!r}; allowed: fixed_large, fixed_small")
        self.timesteps = timesteps
        self.variance = variance
        self.final_noise = final_noise
        betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
        alphas = 1.0 - betas
        alpha_bars = torch.cumprod(alphas, dim=0)
        alpha_bars_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
        if variance == "fixed_large":
            sigmas = betas.sqrt()
        else:
            sigmas = (betas * (1.0 - alpha_bars_prev) / (1.0 - alpha_bars)).sqrt()
        if not final_noise:
            sigmas = sigmas.clone()
            sigmas[0] = 0.0
        self.betas = betas
        self.alpha_bars = alpha_bars
        # sigma_t actually applied at each step (0 at t = 0 unless final_noise)
        self.sigmas = sigmas
        self._mean_scale = (1.0 / alphas.sqrt()).tolist()  # 1 / sqrt(alpha_t)
        self._eps_scale = (betas / (1.0 - alpha_bars).sqrt()).tolist()  # beta_t / sqrt(1 - abar_t)
        self._sigma = sigmas.tolist()
        device = torch.device(device)
        self.sqrt_alpha_bars = alpha_bars.sqrt().to(device, torch.float32)
        self.sqrt_one_minus_alpha_bars = (1.0 - alpha_bars).sqrt().to(device, torch.float32)

    # ------------------------------------------------------------------ forward process

    def add_noise(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` for a batch of timesteps ``t``."""
        shape = (-1,) + (1,) * (x0.dim() - 1)
        a = self.sqrt_alpha_bars.to(x0.device)[t].view(shape)
        b = self.sqrt_one_minus_alpha_bars.to(x0.device)[t].view(shape)
        return a * x0 + b * noise

    # ------------------------------------------------------------------ reverse process

    def sigma(self, t: int) -> float:
        """The standard deviation of the noise the reverse step at ``t`` injects."""
        return self._sigma[t]

    def injects_noise(self, t: int) -> bool:
        return self._sigma[t] > 0.0

    def reverse_step(self, x_t: torch.Tensor, t: int, eps: torch.Tensor, z: torch.Tensor) -> ReverseStep:
        """``x_{t-1} = mean_t + sigma_t z`` (Ho et al. Eq. 11 and Algorithm 2), split into its parts."""
        mean = (x_t - self._eps_scale[t] * eps) * self._mean_scale[t]
        reaction = mean - x_t
        diffusion = self._sigma[t] * z
        return ReverseStep(x_prev=mean + diffusion, reaction=reaction, diffusion=diffusion, eps=eps)

    def reverse_mean(self, x_t: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
        """The deterministic part of the step alone (the unmeasured sampler's fast path)."""
        return (x_t - self._eps_scale[t] * eps) * self._mean_scale[t]

    def recorded_steps(self) -> list[int]:
        """Timesteps (in reverse order, T-1 first) whose step injects noise and is measured."""
        return [t for t in range(self.timesteps - 1, -1, -1) if self.injects_noise(t)]

    def closed_form_m_diff(self, sample_numel: int) -> float:
        """``M_diff`` without sampling: ``sqrt(C H W) * mean_t sigma_t`` over the measured steps.

        ``E||sigma_t z|| = sigma_t E||z||`` and ``E||z|| ~= sqrt(d)`` for ``z ~ N(0, I_d)``
        (exactly ``sqrt(2) Gamma((d+1)/2) / Gamma(d/2)``, 0.01 % lower for d = 1024).
        """
        sigmas = [self._sigma[t] for t in self.recorded_steps()]
        return math.sqrt(sample_numel) * sum(sigmas) / len(sigmas)
