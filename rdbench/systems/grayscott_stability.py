"""Linear stability of the explicit Euler step of Gray-Scott (Eq. 1) before anything runs.

Around a homogeneous steady state (u*, v*) the equations linearise, per Fourier mode m of
the periodic grid, to ``d/dt (du, dv) = (J - diag(Du, Dv) mu_m) (du, dv)`` with the
reaction Jacobian

    J = [[-v*^2 - F,  -2 u* v*       ],
         [ v*^2,       2 u* v* - (F + k)]]

and ``mu_m = (4 sin^2(pi i / N) + 4 sin^2(pi j / N)) / dx^2`` the eigenvalues of minus the
periodic 5-point Laplacian (0 for the uniform mode, 8 / dx^2 for the checkerboard). One
explicit Euler step multiplies the mode by ``I + dt (J - diag(Du, Dv) mu_m)``; an eigenvalue
sigma of ``J - diag(Du, Dv) mu_m`` becomes ``1 + dt sigma``.

The homogeneous states at (F, k): the trivial (1, 0) always, and, where
``k <= sqrt(F) / 2 - F`` (the saddle-node line, :func:`saddle_node_kill`), the two roots of
``(F + k) v^2 - F v + F (F + k) = 0`` with ``u = 1 - (F + k) v / F``.

The estimate (:func:`euler_amplification`) is the largest ``|1 + dt sigma|`` over every
state, every mode and both eigenvalues **among the modes the equations damp**
(``Re sigma < 0``). Modes that grow in the equations themselves (``Re sigma >= 0``: the
Turing and saddle instabilities that make the patterns) are left out on purpose: their
growth is the physics, and with them the paper's own points would count as unstable. So
an estimate above 1 means a mode that should decay grows under the step: a numerical
instability. In the pure-diffusion limit (F = k = 0, trivial state) sigma = -D mu and the
bound is ``|1 - 8 D dt / dx^2| <= 1``, i.e. ``dt <= dx^2 / (4 max D)``.

Because sigma does not depend on dt, the largest stable dt has a closed form:
``|1 + dt sigma| <= 1  <=>  dt <= -2 Re sigma / |sigma|^2`` (:func:`max_stable_dt`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def saddle_node_kill(feed: np.ndarray | float) -> np.ndarray | float:
    """The saddle-node line k = sqrt(F) / 2 - F: non-trivial homogeneous states exist for k below it."""
    return np.sqrt(feed) / 2 - feed


def homogeneous_states(feed: float, kill: float) -> list[tuple[float, float]]:
    """Every homogeneous steady state (u, v) at (F, k): (1, 0), then the two non-trivial ones if they exist."""
    states = [(1.0, 0.0)]
    loss = feed + kill
    disc = feed * feed - 4 * feed * loss * loss
    if feed > 0 and loss > 0 and disc >= 0:
        for sign in (1.0, -1.0):
            v = (feed + sign * math.sqrt(disc)) / (2 * loss)
            states.append((1 - loss * v / feed, v))
    return states


MAX_MODES = 1 << 16  # above this many (i, j) pairs, the modes are sampled evenly (conservative)


def laplacian_modes(grid_size: int, dx: float) -> np.ndarray:
    """The distinct eigenvalues mu >= 0 of minus the periodic 5-point Laplacian on an N x N grid.

    Exact up to :data:`MAX_MODES` pairs (N up to about 510); beyond, they fill [0, 8 / dx^2]
    densely and :data:`MAX_MODES` evenly spaced values of that interval stand for them (the
    estimate can then only err towards unstable), so a huge grid costs no memory here.
    """
    half = np.arange(grid_size // 2 + 1)
    if len(half) ** 2 > MAX_MODES:
        return np.linspace(0.0, 8.0, MAX_MODES) / (dx * dx)
    s = 4 * np.sin(np.pi * half / grid_size) ** 2
    return np.unique((s[:, None] + s[None, :]).ravel()) / (dx * dx)


def mode_eigenvalues(feed: float, kill: float, diffusion_u: float, diffusion_v: float,
                     mu: np.ndarray) -> np.ndarray:
    """The eigenvalues sigma of J - diag(Du, Dv) mu at every homogeneous state and mode: complex, flat."""
    out = []
    for u, v in homogeneous_states(feed, kill):
        a = -v * v - feed - diffusion_u * mu
        b = -2 * u * v
        c = v * v
        d = 2 * u * v - (feed + kill) - diffusion_v * mu
        half_trace = (a + d) / 2
        root = np.sqrt((((a - d) / 2) ** 2 + b * c).astype(complex))
        out += [half_trace + root, half_trace - root]
    return np.concatenate(out)


RESOLVED = 1.0  # dt |sigma| below this: the step resolves the mode (module docstring)


def _unstable_from(sigma: np.ndarray) -> np.ndarray:
    """Per eigenvalue, the dt above which the Euler step amplifies it as an instability (inf: never).

    A damped mode (Re sigma < 0) grows under the step when dt > -2 Re sigma / |sigma|^2, and
    counts once the step no longer resolves it, dt |sigma| >= RESOLVED; a growing mode never counts.
    """
    size = np.abs(sigma)
    with np.errstate(divide="ignore", invalid="ignore"):
        onset = np.maximum(-2 * sigma.real / size**2, RESOLVED / size)
    return np.where(sigma.real < 0, onset, np.inf)


@dataclass(frozen=True)
class Stability:
    """The estimate at one point: Euler's largest amplification of a damped mode, and the largest stable dt."""

    amplification: float
    max_stable_dt: float

    @property
    def stable(self) -> bool:
        return self.amplification <= 1.0


def euler_stability(feed: float, kill: float, diffusion_u: float, diffusion_v: float, dt: float,
                    grid_size: int, dx: float) -> Stability:
    """:func:`euler_amplification` and :func:`max_stable_dt` in one pass (module docstring)."""
    sigma = mode_eigenvalues(feed, kill, diffusion_u, diffusion_v, laplacian_modes(grid_size, dx))
    counted = (sigma.real < 0) & (dt * np.abs(sigma) >= RESOLVED)
    amplification = float(np.abs(1 + dt * sigma[counted]).max()) if counted.any() else 0.0
    return Stability(amplification, float(_unstable_from(sigma).min()))


def euler_amplification(feed, kill, diffusion_u, diffusion_v, dt, grid_size, dx) -> float:
    """max |1 + dt sigma| over the damped modes of every homogeneous state (module docstring)."""
    return euler_stability(feed, kill, diffusion_u, diffusion_v, dt, grid_size, dx).amplification


def max_stable_dt(feed, kill, diffusion_u, diffusion_v, grid_size, dx) -> float:
    """The largest dt whose Euler step amplifies no damped mode: min of -2 Re sigma / |sigma|^2."""
    return euler_stability(feed, kill, diffusion_u, diffusion_v, 1.0, grid_size, dx).max_stable_dt


def stability_of(settings) -> Stability:
    """:func:`euler_stability` of a :class:`~rdbench.systems.grayscott.GrayScottSettings`."""
    return euler_stability(settings.feed, settings.kill, settings.diffusion_u, settings.diffusion_v, settings.dt,
                           settings.grid_size, settings.dx)
