"""The Gray-Scott reaction-diffusion system (paper Sec. 4.1, Eqs. 1, 12, 15).

Two morphogens on a periodic square grid evolve by

    du/dt = Du lap(u) - u v^2 + F (1 - u)
    dv/dt = Dv lap(v) + u v^2 - (F + k) v

integrated with explicit Euler and the periodic 5-point Laplacian. Following the
paper, the measured pair is the inhibitor's: reaction ``u v^2 - (F + k) v`` (Eq. 12)
and diffusion ``Dv lap(v)`` (Eq. 15). The activator's terms are recorded too, as
the extra series ``reaction_u`` and ``diffusion_u``.

Solver and measurement are kept apart: :class:`GrayScottSimulation` advances a
batch (one row per feed rate x seed, all in one tensor, on CPU or CUDA) and hands
norms to a :class:`~rdbench.balance.BalanceMeter`; it never computes a metric itself.
One step is a pure function (:func:`gray_scott_step`) that returns its named
parts; the measured variant computes the norms in the same pass so that
``torch.compile`` can fuse stencil, update and reductions into one kernel.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from rdbench.balance import DIFFUSION, REACTION, BalanceMeter, term_norms
from rdbench.config import ConfigError, Settings
from rdbench.systems.base import Job, Outcome, RunContext, System

TERMS = (REACTION, DIFFUSION, "reaction_u", "diffusion_u")
MIN_RECORDED_STEPS = 10  # fewer recorded steps make R_t a handful of points and R meaningless
LIVE_ARRAYS = 16  # full-grid arrays a step has alive at once: u, v, their next values, terms, stencil temporaries


class InitialCondition(Settings):
    """Uniform background, a centred square of another concentration, Gaussian noise."""

    background_u: float
    background_v: float
    square_size: NonNegativeInt  # side of the centred square, in grid cells (0: no square)
    square_u: float
    square_v: float
    noise: NonNegativeFloat  # std of the N(0, 1) noise added to both fields


class EarlyStop(Settings):
    """Stop a sample once its mean |v_{n+1} - v_n| falls below ``tolerance`` (0 disables)."""

    tolerance: NonNegativeFloat
    min_steps: NonNegativeInt
    check_every: PositiveInt


class ReferenceStart(Settings):
    """A control: the same run from another initial condition (unset fields keep the real one's)."""

    square_size: NonNegativeInt | None = None
    noise: NonNegativeFloat | None = None


class GrayScottSettings(Settings):
    domain_length: PositiveFloat  # side of the square domain (the paper: [-1, 1] -> 2)
    grid_size: PositiveInt  # N intervals per side; dx = domain_length / grid_size
    dt: PositiveFloat
    steps: PositiveInt
    record_every: PositiveInt  # record the terms every this many steps (1: every step)
    diffusion_u: PositiveFloat  # Du
    diffusion_v: PositiveFloat  # Dv
    feed: NonNegativeFloat  # F
    kill: NonNegativeFloat  # k
    initial: InitialCondition
    early_stop: EarlyStop
    controls: dict[str, ReferenceStart]  # reference starts measured beside the real run
    dtype: Literal["float32", "float64"]
    compile: bool  # fuse the step with torch.compile (pays a compile once per shape)
    flush_denormal: bool  # treat subnormal floats as 0 on CPU: the decaying background of v
    # reaches ~1e-38 within a few hundred steps and subnormal arithmetic is many times slower

    @property
    def dx(self) -> float:
        return self.domain_length / self.grid_size

    @property
    def max_stable_dt(self) -> float:
        """Explicit Euler on the 5-point Laplacian is stable for dt <= dx^2 / (4 max(Du, Dv))."""
        return self.dx**2 / (4 * max(self.diffusion_u, self.diffusion_v))


class SimulationDiverged(RuntimeError):
    """The state became NaN or Inf."""


def laplacian(x: torch.Tensor, dx: float) -> torch.Tensor:
    """Periodic 5-point Laplacian over the last two dimensions, divided by dx^2."""
    neighbours = (
        torch.roll(x, 1, -1) + torch.roll(x, -1, -1) + torch.roll(x, 1, -2) + torch.roll(x, -1, -2)
    )
    return (neighbours - 4 * x) / (dx * dx)


@dataclass
class GrayScottStep:
    """One explicit Euler step and its named parts (rates, without the dt factor)."""

    u: torch.Tensor
    v: torch.Tensor
    reaction_v: torch.Tensor
    diffusion_v: torch.Tensor
    reaction_u: torch.Tensor
    diffusion_u: torch.Tensor


def gray_scott_step(
    u: torch.Tensor,
    v: torch.Tensor,
    feed: torch.Tensor,
    kill: torch.Tensor,
    diffusion_u: float,
    diffusion_v: float,
    dt: float,
    dx: float,
) -> GrayScottStep:
    """Eq. (1) with the Gray-Scott reactions, advanced by dt. ``feed``/``kill`` broadcast per row."""
    uvv = u * v * v
    reaction_u = -uvv + feed * (1 - u)
    reaction_v = uvv - (feed + kill) * v
    diffusion_u_term = diffusion_u * laplacian(u, dx)
    diffusion_v_term = diffusion_v * laplacian(v, dx)
    return GrayScottStep(
        u=u + dt * (reaction_u + diffusion_u_term),
        v=v + dt * (reaction_v + diffusion_v_term),
        reaction_v=reaction_v,
        diffusion_v=diffusion_v_term,
        reaction_u=reaction_u,
        diffusion_u=diffusion_u_term,
    )


def _advance(u, v, feed, kill, diffusion_u: float, diffusion_v: float, dt: float, dx: float):
    s = gray_scott_step(u, v, feed, kill, diffusion_u, diffusion_v, dt, dx)
    return s.u, s.v


def _advance_measured(u, v, feed, kill, diffusion_u: float, diffusion_v: float, dt: float, dx: float):
    s = gray_scott_step(u, v, feed, kill, diffusion_u, diffusion_v, dt, dx)
    norms = term_norms([s.reaction_v, s.diffusion_v, s.reaction_u, s.diffusion_u])
    return s.u, s.v, norms


def initial_state(
    settings: GrayScottSettings, seed: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (u, v) start of one sample: background, centred square, then noise (CPU, seeded)."""
    init = settings.initial
    n = settings.grid_size
    u = torch.full((n, n), init.background_u, dtype=torch.float64)
    v = torch.full((n, n), init.background_v, dtype=torch.float64)
    if init.square_size:
        lo = n // 2 - init.square_size // 2
        hi = lo + init.square_size
        u[lo:hi, lo:hi] = init.square_u
        v[lo:hi, lo:hi] = init.square_v
    gen = torch.Generator().manual_seed(seed)
    u += init.noise * torch.randn((n, n), generator=gen, dtype=torch.float64)
    v += init.noise * torch.randn((n, n), generator=gen, dtype=torch.float64)
    return u.to(dtype), v.to(dtype)


class GrayScottSimulation:
    """A batch of Gray-Scott samples that share grid, dt and steps (feed, kill, seed per row)."""

    def __init__(
        self,
        settings: Sequence[GrayScottSettings],
        seeds: Sequence[int],
        device: torch.device | str = "cpu",
    ):
        first = settings[0]
        self.settings = first
        self.device = torch.device(device)
        self.dtype = getattr(torch, first.dtype)
        if first.flush_denormal:
            torch.set_flush_denormal(True)
        starts = [initial_state(s, seed, self.dtype) for s, seed in zip(settings, seeds, strict=True)]
        self.u = torch.stack([p[0] for p in starts]).to(self.device)
        self.v = torch.stack([p[1] for p in starts]).to(self.device)
        shape = (len(settings), 1, 1)
        self.feed = torch.tensor([s.feed for s in settings], dtype=self.dtype, device=self.device).view(shape)
        self.kill = torch.tensor([s.kill for s in settings], dtype=self.dtype, device=self.device).view(shape)
        self.constants = (first.diffusion_u, first.diffusion_v, first.dt, first.dx)
        if first.compile:
            self._step = torch.compile(_advance, dynamic=False)
            self._step_measured = torch.compile(_advance_measured, dynamic=False)
        else:
            self._step, self._step_measured = _advance, _advance_measured
        self.steps_run = 0

    @property
    def batch(self) -> int:
        return self.u.shape[0]

    def advance(self, meter: BalanceMeter | None = None, step: int = 0) -> None:
        """One step; when ``meter`` is given, the step's term norms are recorded into it."""
        if meter is None:
            self.u, self.v = self._step(self.u, self.v, self.feed, self.kill, *self.constants)
        else:
            self.u, self.v, norms = self._step_measured(self.u, self.v, self.feed, self.kill, *self.constants)
            meter.record(step, norms)
        self.steps_run += 1

    @torch.inference_mode()
    def run(self, meter: BalanceMeter, progress=None) -> int:
        """Run ``steps`` steps (or until every sample has stopped early); return steps run."""
        s = self.settings
        stop = s.early_stop
        for n in range(s.steps):
            recorded = n % s.record_every == 0 or n == s.steps - 1
            check = (n + 1) % stop.check_every == 0 or n == s.steps - 1
            v_before = self.v if (check and stop.tolerance > 0) else None
            self.advance(meter if recorded else None, n)
            if progress is not None:
                progress.update(1)
            if check:
                self._check_finite(n)
                if v_before is not None and n + 1 >= stop.min_steps:
                    change = (self.v - v_before).abs().flatten(1).mean(dim=1)
                    converged = torch.nonzero(change < stop.tolerance).flatten().cpu().numpy()
                    meter.stop_samples(converged)
                    if meter.stopped().all():
                        break
        return self.steps_run

    def _check_finite(self, step: int) -> None:
        bad = ~(torch.isfinite(self.u).flatten(1).all(1) & torch.isfinite(self.v).flatten(1).all(1))
        if bool(bad.any()):
            rows = torch.nonzero(bad).flatten().tolist()
            feeds = [round(float(self.feed[r]), 6) for r in rows]
            raise SimulationDiverged(
                f"Gray-Scott state became NaN/Inf by step {step + 1} (rows {rows}, feed {feeds}); "
                f"dt={self.settings.dt} may be too large for these rates"
            )


def reference_settings(settings: GrayScottSettings, start: ReferenceStart) -> GrayScottSettings:
    """The settings of a control row: the real ones with the reference initial condition."""
    changes = start.model_dump(exclude_none=True)
    initial = settings.initial.model_copy(update=changes)
    return settings.model_copy(update={"initial": initial, "controls": {}})


class GrayScott(System):
    """Plug-in: runs jobs that share grid/dt/steps as one batched simulation.

    It logs no dataset (``log_input``) and no model: a cell integrates Eq. (1) from an
    initial condition drawn from its seed; its final fields are logged as figures."""

    name = "rd"
    Settings = GrayScottSettings

    def check(self, settings: GrayScottSettings) -> None:
        if settings.dt > settings.max_stable_dt:
            raise ConfigError(
                f"unstable dt={settings.dt}: explicit Euler needs dt <= dx^2 / (4 max(Du, Dv)) "
                f"= {settings.max_stable_dt:.6g} for dx={settings.dx:.6g}"
            )
        recorded = len(range(0, settings.steps, settings.record_every)) + ((settings.steps - 1) % settings.record_every > 0)
        if recorded < MIN_RECORDED_STEPS:
            raise ConfigError(
                f"record_every={settings.record_every} with steps={settings.steps} records {recorded} steps; "
                f"R and R_t need at least {MIN_RECORDED_STEPS}: lower record_every or raise steps"
            )
        if settings.initial.square_size > settings.grid_size:
            raise ConfigError(
                f"initial.square_size={settings.initial.square_size} exceeds grid_size={settings.grid_size}"
            )

    def memory_bytes(self, settings: Sequence[GrayScottSettings]) -> int:
        """Rows (jobs and their control rows) x N^2 cells x bytes x the arrays a step keeps alive."""
        first = settings[0]
        rows = len(settings) * (1 + len(first.controls))
        itemsize = 4 if first.dtype == "float32" else 8
        return rows * first.grid_size**2 * itemsize * LIVE_ARRAYS

    def group_key(self, settings: GrayScottSettings) -> str:
        shared = settings.model_dump(mode="json", exclude={"feed", "kill"})
        return json.dumps(shared, sort_keys=True)

    def run(self, jobs: Sequence[Job], ctx: RunContext) -> list[Outcome]:
        """One batch: the jobs' rows, then one row per (control, job) from its reference start."""
        settings = [job.settings for job in jobs]
        for s in settings:
            self.check(s)
        control_names = list(settings[0].controls)
        rows = list(settings)
        for name in control_names:
            rows += [reference_settings(s, s.controls[name]) for s in settings]
        seeds = [job.seed for job in jobs] * (1 + len(control_names))
        sim = GrayScottSimulation(rows, seeds, ctx.device)
        meter = BalanceMeter(sim.batch, TERMS, device=sim.device)
        with ctx.progress(settings[0].steps, f"gray-scott x{sim.batch}") as bar:
            steps_run = sim.run(meter, bar)
        stopped = meter.stopped()
        outcomes = []
        for row, job in enumerate(jobs):
            job.recorder.log_figure(field_figure(sim.u[row], "u", "viridis", job, meter, row, steps_run), "fields/final_u.png")
            job.recorder.log_figure(field_figure(sim.v[row], "v", "magma", job, meter, row, steps_run), "fields/final_v.png")
            result = meter.result([row])
            controls = {
                name: meter.result([row + (k + 1) * len(jobs)]) for k, name in enumerate(control_names)
            }
            outcomes.append(
                Outcome(
                    balance=result,
                    controls=controls,
                    metrics={
                        "steps_run": float(int(result.steps[-1]) + 1 if stopped[row] else steps_run),
                        "early_stopped": float(stopped[row]),
                    },
                )
            )
        return outcomes


def field_figure(field: torch.Tensor, name: str, cmap: str, job: Job, meter: BalanceMeter, row: int, steps_run: int):
    """One concentration field with its colour bar and a title naming the case, F, k and the last
    step (an early-stopped row's own)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s: GrayScottSettings = job.settings
    step = int(meter.result([row]).steps[-1]) + 1 if meter.stopped()[row] else steps_run
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    image = ax.imshow(field.cpu().numpy().astype(np.float64), cmap=cmap, interpolation="nearest", origin="lower")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=name)
    ax.set_title(f"{name}: {job.case}, F={s.feed:g}, k={s.kill:g}, step {step}")
    ax.set_xticks([])
    ax.set_yticks([])
    plt.close(fig)
    return fig
