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
One step is a pure function (:func:`gray_scott_step`, the reference) that returns
its named parts.

Speed and memory. The state lives in two preallocated buffers (u and v with a
one-cell periodic halo, current and next, swapped every step). The compiled step
(``kernel: compiled``, the default on CPU) is one torch.compile'd kernel on CPU and CUDA alike: it reads the
four neighbours as shifted slices of the padded state (a ``torch.roll`` makes the
CPU kernel compute ``index mod N`` per cell and gather), writes the update straight
into the next buffer and reduces the four term norms in the same call. The eager step
(``kernel: eager``) runs the same equations op by op into five buffers allocated
once. Neither allocates anything the size of the grid per step. On CUDA the default
(``kernel: auto``) is one Triton kernel per step (:mod:`rdbench.systems.grayscott_kernels`,
which also says where the compiled step's time went on a GPU): the wrap by index (the
halo is left alone), the norms summed in the same pass and handed to the meter a block
of steps at a time, the early-stop and divergence sums folded into the check steps' pass.

Why that matters: the resident set of a long CPU run was reported growing without
bound (a 12-row 256x256 batch: ~250 MB/s, OOM-killed at 24 GB) and staying at 0.7 GB
with ``MALLOC_MMAP_THRESHOLD_=131072``. The old step allocated a dozen fresh
grid-sized tensors per step. That the environment variable cures it points at glibc's
malloc: blocks above its mmap threshold are mmap'd and returned on free, but by
default the threshold rises (up to 32 MB) each time such a block is freed, so later
blocks come from the heap, where interleaved small long-lived allocations fragment it
and freed memory is not given back; the variable pins the threshold. (The growth did
not reproduce on the shared 2-core machine where this was rewritten: the old code
stayed at ~0.8 GB for two minutes there.) Allocating the grid-sized arrays once takes
the allocator out of the loop, whatever its settings.

Divergence is per row: a row whose state turns NaN/Inf is frozen and reported on its
own (:attr:`GrayScottSimulation.diverged_at`), and the others run on unchanged.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from rdbench.balance import DIFFUSION, REACTION, BalanceMeter
from rdbench.config import ConfigError, Settings
from rdbench.systems.base import Job, Outcome, RunContext, System
from rdbench.systems.grayscott_kernels import STAGED_STEPS, TritonStep, interpreter_on
from rdbench.systems.grayscott_kernels import available as triton_available
from rdbench.systems.grayscott_spectral import LIVE_ARRAYS as SPECTRAL_LIVE_ARRAYS
from rdbench.systems.grayscott_spectral import ETDRK4Step
from rdbench.systems.grayscott_stability import Stability, stability_of

TERMS = (REACTION, DIFFUSION, "reaction_u", "diffusion_u")
MIN_RECORDED_STEPS = 10  # fewer recorded steps make R_t a handful of points and R meaningless
LIVE_ARRAYS = 9  # full-grid arrays a batch keeps: u, v, their next values and the eager step's 5 intermediates
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"  # compiled kernels kept across runs (default ~/.cache/rdbench/torchinductor)


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
    # The step's engine: triton (one Triton kernel, CUDA, float32; grayscott_kernels.py), compiled
    # (torch.compile, pays a compile once per shape), eager (op by op); auto: triton where it can
    # run (CUDA, float32, triton importable), else compiled.
    kernel: Literal["auto", "triton", "compiled", "eager"]
    flush_denormal: bool  # treat subnormal floats as 0 on CPU: the decaying background of v
    # reaches ~1e-38 within a few hundred steps and subnormal arithmetic is many times slower
    scheme: Literal["euler", "etdrk4"] = "euler"  # euler: the paper's; etdrk4: rdbench.systems.grayscott_spectral
    allow_unstable: bool = False  # run an (F, k, dt) whose Euler step the stability estimate calls unstable

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


def padded_laplacian(p: torch.Tensor, dx: float) -> torch.Tensor:
    """:func:`laplacian` of the interior of ``p``, a field with a one-cell periodic halo.

    ``p`` is ``(..., N + 2, N + 2)`` whose border repeats the opposite edge (:func:`fill_halo`):
    the four neighbours are plain shifted slices, so a compiled kernel reads them with
    contiguous vector loads instead of computing ``index mod N`` per cell.
    """
    x = p[..., 1:-1, 1:-1]
    neighbours = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]
    return (neighbours - 4 * x) / (dx * dx)


def fill_halo(p: torch.Tensor) -> torch.Tensor:
    """Copy each edge of the interior into the opposite halo (periodic wrap), in place."""
    p[..., 0, 1:-1].copy_(p[..., -2, 1:-1])
    p[..., -1, 1:-1].copy_(p[..., 1, 1:-1])
    p[..., :, 0].copy_(p[..., :, -2])
    p[..., :, -1].copy_(p[..., :, 1])
    return p


def _padded_terms(state, feed, kill, diffusion_u: float, diffusion_v: float, dx: float):
    """u, v and the four rates of Eq. (1) (``reaction_v, diffusion_v, reaction_u, diffusion_u``,
    the order of :data:`TERMS`) on the padded ``state``: ``(2, rows, N + 2, N + 2)``, u then v."""
    u, v = state[0, :, 1:-1, 1:-1], state[1, :, 1:-1, 1:-1]
    uvv = u * v * v
    reaction_u = -uvv + feed * (1 - u)
    reaction_v = uvv - (feed + kill) * v
    diffusion_u_term = diffusion_u * padded_laplacian(state[0], dx)
    diffusion_v_term = diffusion_v * padded_laplacian(state[1], dx)
    return u, v, (reaction_v, diffusion_v_term, reaction_u, diffusion_u_term)


def _update_into(state, u_out, v_out, feed, kill, diffusion_u: float, diffusion_v: float, dt: float, dx: float):
    """Eq. (1) advanced by dt (explicit Euler), written into ``u_out``/``v_out``."""
    u, v, (reaction_v, diffusion_v_term, reaction_u, diffusion_u_term) = _padded_terms(
        state, feed, kill, diffusion_u, diffusion_v, dx)
    u_out.copy_(u + dt * (reaction_u + diffusion_u_term))
    v_out.copy_(v + dt * (reaction_v + diffusion_v_term))


def _term_norms(state, feed, kill, diffusion_u: float, diffusion_v: float, dx: float):
    """Per row, the L2 norm of each rate over the grid (Eqs. 12, 15 and the activator's pair):
    ``(rows, 4)``. Reduced over the grid's two dims (the halo makes a flattened view strided)."""
    _, _, terms = _padded_terms(state, feed, kill, diffusion_u, diffusion_v, dx)
    # The norm of the row norms is the Frobenius norm. Reduced in two stages of N, the compiled CPU
    # kernel sums plainly; one reduction of N^2 > 4096 float32 values makes inductor use its cascade
    # summation, which doubled the cost of a measured step at batch 1.
    return torch.stack([torch.linalg.vector_norm(torch.linalg.vector_norm(t, dim=-1), dim=-1) for t in terms],
                       dim=1)


def _measured_update_into(state, u_out, v_out, feed, kill, diffusion_u: float, diffusion_v: float, dt: float,
                          dx: float):
    """:func:`_term_norms` of the state, then :func:`_update_into`: one compiled kernel."""
    norms = _term_norms(state, feed, kill, diffusion_u, diffusion_v, dx)
    _update_into(state, u_out, v_out, feed, kill, diffusion_u, diffusion_v, dt, dx)
    return norms


# Inductor keeps an expression read by several consumers (here each Laplacian: by the update and
# by its norm) as a grid-sized temporary once it reads more than a few inputs; the update and the
# norms then cost a full extra write and read, and a fresh grid-sized tensor per call. Raised, both
# loops recompute the stencil from the state (cheap: it is in cache) and allocate nothing per call.
FUSION_OPTIONS = {"realize_reads_threshold": 100, "realize_opcount_threshold": 1000,
                  "realize_acc_reads_threshold": 100}

_compiled: tuple | None = None


def compiled_step():
    """The fused step, compiled once per process; its kernels are kept on disk between runs
    (``$TORCHINDUCTOR_CACHE_DIR``, by default ``~/.cache/rdbench/torchinductor``). The batch
    dimension turns dynamic on the second batch size seen: one kernel serves every chunk size."""
    global _compiled
    if _compiled is None:
        os.environ.setdefault(CACHE_ENV, str(Path.home() / ".cache" / "rdbench" / "torchinductor"))
        _compiled = (torch.compile(_update_into, options=FUSION_OPTIONS),
                     torch.compile(_measured_update_into, options=FUSION_OPTIONS))
    update, measured_update = _compiled

    def step(state, u_out, v_out, feed, kill, diffusion_u, diffusion_v, dt, dx, measured):
        if measured:
            return measured_update(state, u_out, v_out, feed, kill, diffusion_u, diffusion_v, dt, dx)
        update(state, u_out, v_out, feed, kill, diffusion_u, diffusion_v, dt, dx)
        return None

    return step


class _EagerStep:
    """:func:`_update_into` and :func:`_term_norms` op by op, every intermediate in a buffer allocated once (``kernel: eager``)."""

    def __init__(self, like: torch.Tensor, feed: torch.Tensor, kill: torch.Tensor):
        self.uvv, self.ru, self.rv, self.lu, self.lv = (torch.empty_like(like) for _ in range(5))
        self.neg_feed = -feed
        self.neg_loss = -(feed + kill)
        self.norms = torch.empty((len(TERMS), like.shape[0]), dtype=like.dtype, device=like.device)

    @staticmethod
    def _laplacian(p: torch.Tensor, out: torch.Tensor, scale: float) -> torch.Tensor:
        torch.add(p[:, :-2, 1:-1], p[:, 2:, 1:-1], out=out).add_(p[:, 1:-1, :-2]).add_(p[:, 1:-1, 2:])
        return out.add_(p[:, 1:-1, 1:-1], alpha=-4.0).mul_(scale)

    def __call__(self, state, u_out, v_out, feed, kill, diffusion_u, diffusion_v, dt, dx, measured):
        u, v = state[0, :, 1:-1, 1:-1], state[1, :, 1:-1, 1:-1]
        torch.mul(u, v, out=self.uvv).mul_(v)
        torch.addcmul(feed, u, self.neg_feed, out=self.ru).sub_(self.uvv)  # F (1 - u) - u v^2
        torch.addcmul(self.uvv, v, self.neg_loss, out=self.rv)  # u v^2 - (F + k) v
        self._laplacian(state[0], self.lu, diffusion_u / (dx * dx))
        self._laplacian(state[1], self.lv, diffusion_v / (dx * dx))
        torch.add(self.ru, self.lu, out=u_out).mul_(dt).add_(u)
        torch.add(self.rv, self.lv, out=v_out).mul_(dt).add_(v)
        if not measured:
            return None
        for k, term in enumerate((self.rv, self.lv, self.ru, self.lu)):
            torch.linalg.vector_norm(term, dim=(-2, -1), out=self.norms[k])
        return self.norms.T


def check_kernel_dtype(settings: GrayScottSettings) -> None:
    """The Triton kernel computes in float32 (its scalar arguments are float32)."""
    if settings.kernel == "triton" and settings.dtype != "float32":
        raise ConfigError(f"kernel=triton needs dtype=float32, got dtype={settings.dtype}; "
                          f"use kernel=auto, compiled or eager")


def step_kernel(settings: GrayScottSettings, device: torch.device) -> str:
    """The step engine ``settings.kernel`` names on ``device``: ``auto`` is ``triton`` on CUDA with
    float32 where triton imports, else ``compiled``. ``triton`` on CPU runs only under Triton's
    interpreter (``TRITON_INTERPRET=1``, for tests); it needs float32."""
    kernel = settings.kernel
    if kernel == "auto":
        usable = device.type == "cuda" and settings.dtype == "float32" and triton_available()
        return "triton" if usable else "compiled"
    if kernel == "triton":
        check_kernel_dtype(settings)
        if not triton_available():
            raise ConfigError("kernel=triton: triton is not importable here; allowed here: auto, compiled, eager")
        if device.type != "cuda" and not interpreter_on():
            raise ConfigError(f"kernel=triton runs on CUDA (device is {device}); on CPU only under Triton's "
                              f"interpreter (TRITON_INTERPRET=1, for tests); use kernel=auto, compiled or eager")
    return kernel


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


def initial_states(settings: Sequence[GrayScottSettings], seeds: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """:func:`initial_state` of every row, ``(2, rows, N, N)`` on the CPU (u then v), drawn on a
    thread per core: each row's seeded float64 noise is most of the cost of building a batch
    (a few ms a row; a 4,096-row phase-map chunk spent seconds here) and torch draws it without
    the GIL. The same values as drawing row by row."""
    n = settings[0].grid_size
    out = torch.empty((2, len(settings), n, n), dtype=dtype)

    def draw(row: int) -> tuple[torch.Tensor, torch.Tensor]:
        return initial_state(settings[row], seeds[row], dtype)

    # the threads only draw; the rows are written here (inference mode, if on, is per thread)
    with ThreadPoolExecutor(min(os.cpu_count() or 1, len(settings))) as pool:
        for row, (u, v) in enumerate(pool.map(draw, range(len(settings)))):
            out[0, row], out[1, row] = u, v
    return out


class GrayScottSimulation:
    """A batch of Gray-Scott samples that share grid, dt and steps (feed, kill, seed per row).

    The batch interface (what the runner and the phase map build on):

    * ``GrayScottSimulation(settings, seeds, device)``: one row per (settings, seed) pair;
      rows may differ in ``feed``, ``kill`` and the initial condition, nothing else.
    * :meth:`run` ``(meter, progress=None) -> steps run``: advances every row, recording the
      term norms of row ``i`` as sample ``i`` of the :class:`BalanceMeter`. It never raises
      for a diverging row.
    * :attr:`diverged_at`: per row, the step by which its state was found NaN/Inf (-1: never).
      A diverged row is frozen (its fields stop updating), its meter series is stopped there,
      and the other rows run on exactly as they would alone. :meth:`divergence` gives the
      :class:`SimulationDiverged` of a row (one line naming its step, F, k and seed) or None.
    * :attr:`u`, :attr:`v`: the current fields, ``(rows, N, N)`` on ``device``.

    Memory is allocated once: the state (u and v with a one-cell periodic halo, see
    :func:`fill_halo`) and its next value, swapped every step, and, for the eager step, its
    five intermediates. Nothing the size of the grid
    is allocated per step, so the resident set stays flat however long the run.
    """

    def __init__(
        self,
        settings: Sequence[GrayScottSettings],
        seeds: Sequence[int],
        device: torch.device | str = "cpu",
    ):
        first = settings[0]
        self.settings = first
        self.seeds = list(seeds)
        self.device = torch.device(device)
        self.dtype = getattr(torch, first.dtype)
        if first.flush_denormal:
            torch.set_flush_denormal(True)
        n = first.grid_size
        self._state = torch.empty((2, len(settings), n + 2, n + 2), dtype=self.dtype, device=self.device)
        self._state[:, :, 1:-1, 1:-1].copy_(initial_states(settings, seeds, self.dtype))
        fill_halo(self._state)
        self._spare = torch.empty_like(self._state)
        shape = (len(settings), 1, 1)
        self.feed = torch.tensor([s.feed for s in settings], dtype=self.dtype, device=self.device).view(shape)
        self.kill = torch.tensor([s.kill for s in settings], dtype=self.dtype, device=self.device).view(shape)
        self.constants = (first.diffusion_u, first.diffusion_v, first.dt, first.dx)
        self._triton: TritonStep | None = None
        if first.scheme == "etdrk4":  # the spectral step has no kernel choice: batched FFTs on either device
            self.kernel = "etdrk4"
            self._step = ETDRK4Step(n, first.dx, first.diffusion_u, first.diffusion_v, first.dt, self.dtype, self.device,
                                    probe=_term_norms)
        else:
            self.kernel = step_kernel(first, self.device)
            if self.kernel == "triton":
                self._triton = TritonStep(len(settings), self.device, min(STAGED_STEPS, first.steps))
                self._step = None
            else:
                self._step = compiled_step() if self.kernel == "compiled" else _EagerStep(self.u, self.feed, self.kill)
        self.diverged_at = np.full(len(settings), -1, dtype=np.int64)
        self._frozen: list[int] = []
        self.steps_run = 0

    @property
    def u(self) -> torch.Tensor:
        """The activator field of every row, ``(rows, N, N)`` (a view of the padded state)."""
        return self._state[0, :, 1:-1, 1:-1]

    @property
    def v(self) -> torch.Tensor:
        """The inhibitor field of every row, ``(rows, N, N)``."""
        return self._state[1, :, 1:-1, 1:-1]

    @property
    def batch(self) -> int:
        return self._state.shape[1]

    def advance(self, meter: BalanceMeter | None = None, step: int = 0, check: bool = False) -> None:
        """One step; when ``meter`` is given, the step's term norms are recorded into it (by the
        Triton kernel: staged on the device, in the meter after :meth:`flush`). ``check``: the
        Triton kernel also sums this step's change and new state (:meth:`check_sums`)."""
        if self._triton is not None:
            try:
                self._triton(self._state, self._spare, self.feed, self.kill, self.constants, meter is not None,
                             step, check, meter)
            except Exception as exc:  # noqa: BLE001 - Triton's compile errors have no common type
                if self.device.type != "cuda":
                    raise
                self._fall_back_from_triton(meter, exc)
                return self.advance(meter, step)
            self._spare, self._state = self._state, self._spare
            self.steps_run += 1
            return None
        nxt = self._spare
        u_next, v_next = nxt[0, :, 1:-1, 1:-1], nxt[1, :, 1:-1, 1:-1]
        args = (self._state, u_next, v_next, self.feed, self.kill, *self.constants, meter is not None)
        try:
            norms = self._step(*args)
        except torch._dynamo.exc.BackendCompilerFailed as exc:  # e.g. no C++ compiler on this machine
            self._step = _EagerStep(self.u, self.feed, self.kill)
            cause = getattr(exc, "inner_exception", None) or exc
            first = (str(cause).strip().splitlines() or [""])[0][:200]
            warnings.warn(f"Gray-Scott: torch.compile failed ({type(cause).__name__}: {first}); running the "
                          f"eager step (same equations, slower)", RuntimeWarning, stacklevel=2)
            norms = self._step(*args)
        for row in self._frozen:
            u_next[row].copy_(self.u[row])
            v_next[row].copy_(self.v[row])
        fill_halo(nxt)
        self._spare, self._state = self._state, nxt
        if meter is not None:
            meter.record(step, norms)
        self.steps_run += 1
        return None

    def _fall_back_from_triton(self, meter: BalanceMeter | None, exc: BaseException) -> None:
        """The Triton kernel failed to build or launch: hand over to the compiled step (its
        staged norms flushed, the halo the kernel never wrote filled, the frozen rows kept)."""
        if meter is not None:
            self._triton.flush(meter)
        self._triton = None
        self.kernel = "compiled"
        self._step = compiled_step()
        fill_halo(self._state)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        warnings.warn(f"Gray-Scott: the Triton kernel failed ({type(exc).__name__}: {first}); running the "
                      f"compiled step (same equations, slower)", RuntimeWarning, stacklevel=3)

    def flush(self, meter: BalanceMeter) -> None:
        """Hand the Triton kernel's staged norms to ``meter`` (the other steps record at once)."""
        if self._triton is not None:
            self._triton.flush(meter)

    @torch.inference_mode()
    def run(self, meter: BalanceMeter, progress=None) -> int:
        """Run ``steps`` steps (or until every row has stopped early or diverged); return steps run."""
        s = self.settings
        stop = s.early_stop
        for n in range(s.steps):
            recorded = n % s.record_every == 0 or n == s.steps - 1
            check = (n + 1) % stop.check_every == 0 or n == s.steps - 1
            self.advance(meter if recorded else None, n, check)
            if progress is not None:
                progress.update(1)
            if check:
                self.flush(meter)
                change, totals = self._check_sums()
                self._freeze_diverged(n, meter, totals)
                if stop.tolerance > 0 and n + 1 >= stop.min_steps:
                    meter.stop_samples(torch.nonzero(change() < stop.tolerance).flatten().cpu().numpy())
                if meter.stopped().all():
                    break
        self.flush(meter)
        return self.steps_run

    def _check_sums(self):
        """(a callable giving each row's mean |v_{n+1} - v_n|, each row's sum of u + v) of the
        step just run: from the Triton kernel's check sums, else computed from the state."""
        if self._triton is not None:
            change, totals = self._triton.check_sums(self.settings.grid_size ** 2)
            return (lambda: change), totals
        # the previous v is in the spare buffer, which the next step overwrites anyway
        return (lambda: self._spare[1, :, 1:-1, 1:-1].sub_(self.v).abs_().mean(dim=(-2, -1))), None

    def _freeze_diverged(self, step: int, meter: BalanceMeter, totals: torch.Tensor | None = None) -> None:
        """Freeze the rows whose state is no longer finite and stop their series.

        A row's sum is NaN/Inf iff one of its entries is, or when entries pass ~1e38 / N^2
        in float32: diverged either way. Two small reductions, no grid-sized temporary
        (``totals``, each row's sum of u + v, when the Triton kernel summed them in its pass).
        """
        if totals is None:
            totals = self.u.sum(dim=(-2, -1)) + self.v.sum(dim=(-2, -1))
        bad = torch.nonzero(~torch.isfinite(totals)).flatten().cpu().tolist()
        new = [row for row in bad if self.diverged_at[row] < 0]
        if new:
            self.diverged_at[new] = step + 1
            self._frozen.extend(new)
            if self._triton is not None:
                self._triton.freeze(new)
            meter.stop_samples(new)

    def divergence(self, row: int) -> SimulationDiverged | None:
        """Why ``row`` failed (one line: its step, F, k, seed and dt), or None if it stayed finite."""
        step = int(self.diverged_at[row])
        if step < 0:
            return None
        return SimulationDiverged(
            f"Gray-Scott state became NaN/Inf by step {step} (feed={float(self.feed[row]):.6g}, "
            f"kill={float(self.kill[row]):.6g}, seed={self.seeds[row]}); "
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
        if settings.scheme == "euler":
            self._check_euler(settings)
        recorded = len(range(0, settings.steps, settings.record_every)) + ((settings.steps - 1) % settings.record_every > 0)
        if recorded < MIN_RECORDED_STEPS:
            raise ConfigError(
                f"record_every={settings.record_every} with steps={settings.steps} records {recorded} steps; "
                f"R and R_t need at least {MIN_RECORDED_STEPS}: lower record_every or raise steps"
            )
        check_kernel_dtype(settings)
        if settings.initial.square_size > settings.grid_size:
            raise ConfigError(
                f"initial.square_size={settings.initial.square_size} exceeds grid_size={settings.grid_size}"
            )

    @staticmethod
    def _check_euler(settings: GrayScottSettings) -> None:
        """The diffusive bound, then the estimate with the reaction (:mod:`.grayscott_stability`)."""
        if settings.dt > settings.max_stable_dt:
            raise ConfigError(
                f"unstable dt={settings.dt}: explicit Euler needs dt <= dx^2 / (4 max(Du, Dv)) "
                f"= {settings.max_stable_dt:.6g} for dx={settings.dx:.6g}"
            )
        if settings.allow_unstable:
            return
        stability = stability_of(settings)
        if not stability.stable:
            raise ConfigError(
                f"unstable point feed={settings.feed:g}, kill={settings.kill:g}: the explicit Euler step at "
                f"dt={settings.dt:g} amplifies a damped grid mode by {stability.amplification:.4g} per step "
                f"(linearised at the homogeneous states, reaction included); dt={stable_dt(stability):g} is "
                f"stable, or --allow-unstable runs it anyway (scheme=etdrk4 has no such bound)"
            )

    def run_tags(self, settings: GrayScottSettings) -> dict[str, str]:
        """``unstable: true`` for an Euler run the stability estimate calls unstable (``allow_unstable``)."""
        if settings.scheme == "euler" and not stability_of(settings).stable:
            return {"unstable": "true"}
        return {}

    def memory_bytes(self, settings: Sequence[GrayScottSettings]) -> int:
        """Rows (jobs and their control rows) x (N + 2)^2 cells (with the halo) x bytes x the arrays
        a batch keeps (:data:`LIVE_ARRAYS`; the fused step needs 4 of the 9, the eager one all)."""
        first = settings[0]
        rows = len(settings) * (1 + len(first.controls))
        itemsize = 4 if first.dtype == "float32" else 8
        arrays = SPECTRAL_LIVE_ARRAYS if first.scheme == "etdrk4" else LIVE_ARRAYS
        return rows * (first.grid_size + 2) ** 2 * itemsize * arrays

    def group_key(self, settings: GrayScottSettings) -> str:
        shared = settings.model_dump(mode="json", exclude={"feed", "kill", "allow_unstable"})  # the step reads none
        return json.dumps(shared, sort_keys=True)

    def run(self, jobs: Sequence[Job], ctx: RunContext) -> list[Outcome | BaseException]:
        """One batch: the jobs' rows, then one row per (control, job) from its reference start.

        A job whose row (or one of its control rows) diverged gets its
        :class:`SimulationDiverged` in place of an Outcome: its cell fails with that one-line
        reason while the other jobs of the batch finish with the results they have alone.
        """
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
        outcomes: list[Outcome | BaseException] = []
        for row, job in enumerate(jobs):
            job_rows = [row + k * len(jobs) for k in range(1 + len(control_names))]
            diverged = [r for r in job_rows if sim.diverged_at[r] >= 0]
            if diverged:
                failure = sim.divergence(diverged[0])
                if diverged[0] != row:
                    failure = SimulationDiverged(f"control {control_names[diverged[0] // len(jobs) - 1]}: {failure}")
                outcomes.append(failure)
                continue
            result = meter.result([row])
            last_step = int(result.steps[-1]) + 1 if stopped[row] else steps_run  # an early-stopped row's own
            job.recorder.log_figure(field_figure(sim.u[row], "u", "viridis", job, last_step), "fields/final_u.png")
            job.recorder.log_figure(field_figure(sim.v[row], "v", "magma", job, last_step), "fields/final_v.png")
            controls = {
                name: meter.result([row + (k + 1) * len(jobs)]) for k, name in enumerate(control_names)
            }
            outcomes.append(
                Outcome(
                    balance=result,
                    controls=controls,
                    metrics={
                        "steps_run": float(last_step),
                        "early_stopped": float(stopped[row]),
                    },
                )
            )
        return outcomes


def stable_dt(stability: Stability) -> float:
    """A round dt just below the largest stable one (two significant digits, rounded down)."""
    limit = stability.max_stable_dt
    scale = 10 ** (math.floor(math.log10(limit)) - 1)
    return math.floor(limit / scale * (1 - 1e-9)) * scale


def field_figure(field: torch.Tensor, name: str, cmap: str, job: Job, step: int):
    """One concentration field with its colour bar and a title naming the case, F, k and ``step``,
    the row's last step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s: GrayScottSettings = job.settings
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    image = ax.imshow(field.cpu().numpy().astype(np.float64), cmap=cmap, interpolation="nearest", origin="lower")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=name)
    ax.set_title(f"{name}: {job.case}, F={s.feed:g}, k={s.kill:g}, step {step}")
    ax.set_xticks([])
    ax.set_yticks([])
    plt.close(fig)
    return fig
