"""The DDPM noise schedule and its reverse step (Ho et al. 2020; paper Sec. 3.3, Eqs. 9-17).

Indexing follows diffusers and the authors' code: timesteps are 0-based,
``t = T-1`` is pure noise and ``t = 0`` is the last reverse step (the paper's
``t = 1``). With ``beta_t``, ``alpha_t = 1 - beta_t`` and ``abar_t = prod_{s<=t} alpha_s``:

* forward (training) sample: ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``
* reverse step: ``x_{t-1} = mean_t + sigma_t z`` with ``sigma_t = sqrt(beta_t)``
  (``fixed_large``, the authors' choice) or the posterior standard deviation
  ``sqrt(beta_t (1 - abar_{t-1}) / (1 - abar_t))`` (``fixed_small``, Ho et al.'s
  CIFAR10 choice and diffusers' default).

**Beta schedules** (:func:`make_betas`): ``linear`` (Ho et al.: ``beta_t`` evenly
spaced from ``beta_start`` to ``beta_end``), ``scaled_linear`` (``sqrt(beta_t)``
evenly spaced, then squared; diffusers' name) and ``cosine`` (Nichol & Dhariwal
2021, Eq. 17: ``abar(t) = cos^2(((t/T + s) / (1 + s)) pi/2)``, ``beta_t = min(1 -
abar((t+1)/T) / abar(t/T), max_beta)``; diffusers' ``squaredcos_cap_v2``). With
``reference_timesteps`` set, the linear endpoints are given for that many steps and
scaled by ``reference_timesteps / T`` (Nichol & Dhariwal's convention), so that any
``T`` reaches about the same ``abar_{T-1}``.

**The mean of the reverse step, for each thing a network may predict.** Ho et al.'s
posterior mean (their Eq. 7) is ``mean_t = c0_t x0_hat + ct_t x_t`` with
``c0_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t)`` and ``ct_t = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t)``,
where ``x0_hat`` is the network's estimate of the clean image:

* ``epsilon`` (predicts the noise, Ho et al.): ``x0_hat = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t)``;
  substituted, ``mean_t = (x_t - beta_t / sqrt(1 - abar_t) eps_theta) / sqrt(alpha_t)`` (Ho et al.
  Eq. 11, the paper's Eq. 14 drift);
* ``sample`` (predicts ``x_0`` itself): ``x0_hat = f_theta``;
* ``v_prediction`` (Salimans & Ho 2022, ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0``):
  ``x0_hat = sqrt(abar_t) x_t - sqrt(1 - abar_t) v_theta``.

``clip_range`` (diffusers' ``clip_sample``) clamps ``x0_hat`` to ``[-r, r]`` before it
enters the mean. Whatever the parameterisation, the step is split the way the paper
reads it as a reaction-diffusion update (Eqs. 12-17): *reaction* = ``mean_t - x_t``
(the whole deterministic, learned drift), *diffusion* = ``sigma_t z`` (the injected
noise). Eq. (14) literally writes ``||eps_theta||``; that tensor is returned too, as
its own term: the network's output for ``epsilon``, and for the other two the noise
it implies, ``(x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)`` with the unclipped
``x0_hat``. A schedule built from a kind computes an ``epsilon`` step without clipping
with Eq. 11 directly (the numbers rdbench has always produced); a schedule taken
from a model (:meth:`NoiseSchedule.from_alpha_bars`) always goes through ``x0_hat``
and Eq. 7 in diffusers' order of operations, so that it reproduces diffusers'
``DDPMScheduler.step`` exactly for the same coefficients.

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
ScheduleKind = Literal["linear", "scaled_linear", "cosine"]
Prediction = Literal["epsilon", "sample", "v_prediction"]

VARIANCES = ("fixed_large", "fixed_small")
SCHEDULE_KINDS = ("linear", "scaled_linear", "cosine")
PREDICTIONS = ("epsilon", "sample", "v_prediction")


def make_betas(
    kind: ScheduleKind,
    timesteps: int,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    cosine_offset: float = 0.008,
    max_beta: float = 0.999,
    reference_timesteps: int | None = None,
) -> torch.Tensor:
    """``beta_t`` for ``t = 0..T-1`` in float64 (the kinds are described in the module docstring)."""
    if timesteps < 1:
        raise ValueError(f"timesteps must be positive, got {timesteps}")
    if kind in ("linear", "scaled_linear") and reference_timesteps:
        scale = reference_timesteps / timesteps
        beta_start, beta_end = beta_start * scale, beta_end * scale
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    if kind == "scaled_linear":
        return torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), timesteps, dtype=torch.float64) ** 2
    if kind == "cosine":
        steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        abar = torch.cos((steps + cosine_offset) / (1 + cosine_offset) * math.pi / 2) ** 2
        return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)
    raise ValueError(f"unknown schedule kind {kind!r}; allowed: {', '.join(SCHEDULE_KINDS)}")


@dataclass
class ReverseStep:
    """One reverse step and its named parts (all of the batch's shape)."""

    x_prev: torch.Tensor  # x_{t-1} = x_t + reaction + diffusion
    reaction: torch.Tensor  # mean_t - x_t: the learned drift
    diffusion: torch.Tensor  # sigma_t z: the injected noise
    eps: torch.Tensor  # eps_theta(x_t, t) (or the noise the prediction implies): Eq. (14) as written


class NoiseSchedule:
    """A beta schedule with the constants of the forward and reverse processes.

    ``NoiseSchedule(T, beta_start, beta_end, variance, final_noise, device, kind=...)``
    builds the betas from a kind (:func:`make_betas`); :meth:`from_alpha_bars` takes
    the ``abar_t`` of an existing model (a diffusers scheduler's ``alphas_cumprod``).
    ``prediction`` says what the network predicts and ``clip_range`` (or ``None``)
    whether its ``x0_hat`` is clamped. The constants are computed in float64 and the
    per-step scalars kept as Python floats, so that a reverse step launches no
    indexing kernel.
    """

    def __init__(
        self,
        timesteps: int,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        variance: Variance = "fixed_large",
        final_noise: bool = False,
        device: torch.device | str = "cpu",
        *,
        kind: ScheduleKind = "linear",
        cosine_offset: float = 0.008,
        max_beta: float = 0.999,
        reference_timesteps: int | None = None,
        prediction: Prediction = "epsilon",
        clip_range: float | None = None,
    ):
        betas = make_betas(kind, timesteps, beta_start, beta_end, cosine_offset, max_beta, reference_timesteps)
        self.kind = kind
        self.via_x0 = False
        self._setup(betas, torch.cumprod(1.0 - betas, dim=0), variance, final_noise, device, prediction, clip_range)

    @classmethod
    def from_alpha_bars(
        cls,
        alpha_bars: torch.Tensor,
        variance: Variance = "fixed_small",
        final_noise: bool = False,
        device: torch.device | str = "cpu",
        prediction: Prediction = "epsilon",
        clip_range: float | None = None,
    ) -> NoiseSchedule:
        """The schedule whose cumulative products are ``alpha_bars`` (``beta_t = 1 - abar_t / abar_{t-1}``,
        as diffusers' ``DDPMScheduler.step`` derives it)."""
        abar = alpha_bars.to(torch.float64).cpu()
        prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        schedule = cls.__new__(cls)
        schedule.kind = "given"
        schedule.via_x0 = True
        schedule._setup(1.0 - abar / prev, abar, variance, final_noise, device, prediction, clip_range)
        return schedule

    def _setup(self, betas, alpha_bars, variance, final_noise, device, prediction, clip_range) -> None:
        timesteps = betas.shape[0]
        if timesteps < 1:
            raise ValueError(f"timesteps must be positive, got {timesteps}")
        if variance not in VARIANCES:
            raise ValueError(f"unknown variance {variance!r}; allowed: {', '.join(VARIANCES)}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; allowed: {', '.join(PREDICTIONS)}")
        if not (0 < float(betas.min()) and float(betas.max()) < 1):
            raise ValueError(f"betas must lie in (0, 1), got {float(betas.min())}..{float(betas.max())}")
        self.timesteps = timesteps
        self.variance = variance
        self.final_noise = final_noise
        self.prediction = prediction
        self.clip_range = clip_range
        alphas = 1.0 - betas
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
        self._sqrt_abar = alpha_bars.sqrt().tolist()
        self._sqrt_one_minus_abar = (1.0 - alpha_bars).sqrt().tolist()
        self._x0_coef = (alpha_bars_prev.sqrt() * betas / (1.0 - alpha_bars)).tolist()  # c0_t (Ho et al. Eq. 7)
        self._xt_coef = (alphas.sqrt() * (1.0 - alpha_bars_prev) / (1.0 - alpha_bars)).tolist()  # ct_t
        device = torch.device(device)
        self.sqrt_alpha_bars = alpha_bars.sqrt().to(device, torch.float32)
        self.sqrt_one_minus_alpha_bars = (1.0 - alpha_bars).sqrt().to(device, torch.float32)

    def with_prediction(self, prediction: Prediction) -> NoiseSchedule:
        """The same schedule for a network that predicts ``prediction`` (e.g. the exact denoiser's eps)."""
        return NoiseSchedule.from_alpha_bars(
            self.alpha_bars, self.variance, self.final_noise, self.sqrt_alpha_bars.device, prediction, self.clip_range
        )

    def describe(self) -> dict:
        """What the schedule is, for the record (a run's artifact)."""
        return {
            "kind": self.kind,
            "mean_via_x0": self.via_x0,
            "timesteps": self.timesteps,
            "beta_first": float(self.betas[0]),
            "beta_last": float(self.betas[-1]),
            "alpha_bar_last": float(self.alpha_bars[-1]),
            "variance": self.variance,
            "final_noise": self.final_noise,
            "prediction": self.prediction,
            "clip_range": self.clip_range,
        }

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

    def direct_update(self) -> bool:
        """Ho et al. Eq. 11 applies as is: an epsilon network, no clipping, rdbench's own schedule
        (then :meth:`direct_tables` holds the whole step's coefficients)."""
        return self.prediction == "epsilon" and self.clip_range is None and not self.via_x0

    def direct_tables(self) -> tuple[list[float], list[float], list[float]]:
        """Per timestep ``1/sqrt(alpha_t)``, ``beta_t/sqrt(1-abar_t)`` and ``sigma_t``: Eq. 11's coefficients."""
        return self._mean_scale, self._eps_scale, self._sigma

    def _x0_hat(self, x_t: torch.Tensor, t: int, output: torch.Tensor) -> torch.Tensor:
        """The clean-image estimate of a network ``output`` at ``t`` (before any clipping)."""
        if self.prediction == "epsilon":
            return (x_t - self._sqrt_one_minus_abar[t] * output) / self._sqrt_abar[t]
        if self.prediction == "sample":
            return output
        return self._sqrt_abar[t] * x_t - self._sqrt_one_minus_abar[t] * output  # v_prediction

    def _mean_and_eps(self, x_t: torch.Tensor, t: int, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.direct_update():
            return (x_t - self._eps_scale[t] * output) * self._mean_scale[t], output
        x0 = self._x0_hat(x_t, t, output)
        eps = output if self.prediction == "epsilon" else (x_t - self._sqrt_abar[t] * x0) / self._sqrt_one_minus_abar[t]
        if self.clip_range is not None:
            x0 = x0.clamp(-self.clip_range, self.clip_range)
        return self._x0_coef[t] * x0 + self._xt_coef[t] * x_t, eps

    def reverse_step(self, x_t: torch.Tensor, t: int, output: torch.Tensor, z: torch.Tensor) -> ReverseStep:
        """``x_{t-1} = mean_t + sigma_t z`` (Ho et al. Eqs. 7, 11 and Algorithm 2), split into its parts."""
        mean, eps = self._mean_and_eps(x_t, t, output)
        reaction = mean - x_t
        diffusion = self._sigma[t] * z
        return ReverseStep(x_prev=mean + diffusion, reaction=reaction, diffusion=diffusion, eps=eps)

    def reverse_mean(self, x_t: torch.Tensor, t: int, output: torch.Tensor) -> torch.Tensor:
        """The deterministic part of the step alone (the unmeasured sampler's fast path)."""
        return self._mean_and_eps(x_t, t, output)[0]

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
