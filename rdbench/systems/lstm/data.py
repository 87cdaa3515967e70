"""The three sequence datasets of the LSTM rows (paper Sec. 4.2): sine, Lorenz, Van der Pol.

Every generator is a pure function of its settings and a seed and returns an array
of shape ``(n_sequences, seq_len)`` (float64, one scalar per time step):

* :func:`sine_sequences`: ``sin(freq * t + phase) + noise * N(0, 1)`` with
  ``freq ~ U(freq_min, freq_max)`` (angular frequency), ``phase ~ U(0, 2 pi)`` and
  ``t = linspace(0, t_max, seq_len)`` (the authors': freq in [0.5, 2], t_max 10,
  noise 0.05). Without noise every value lies in [-1, 1].
* :func:`lorenz_sequences`: one coordinate of ``dx = sigma (y - x)``,
  ``dy = x (rho - z) - y``, ``dz = x y - beta z`` (sigma 10, rho 28, beta 8/3),
  sampled every ``dt`` after a discarded transient. On the attractor |x|, |y| < 30
  and 0 < z < 50.
* :func:`vanderpol_sequences`: one coordinate of ``dx = y``,
  ``dy = mu (1 - x^2) y - x``, sampled every ``dt`` after a discarded transient.
  On the limit cycle |x| <= ~2.02 for every mu (|y| grows with mu).

Each sequence starts from its own random initial state, drawn uniformly from the
configured box. The ODEs are integrated with :func:`scipy.integrate.solve_ivp`
(method, rtol and atol in config; the paper profile uses DOP853, an explicit
Runge-Kutta method of order 8, with rtol = atol = 1e-9). All sequences of a set are
integrated in ONE call on the stacked state, so the run takes seconds, not minutes.
solve_ivp's error norm is the RMS over all stacked components, so a single
trajectory may carry up to ``sqrt(components)`` times the nominal tolerance
(about 5e-8 for 1000 Lorenz sequences): far below the sampling resolution.

:func:`make_dataset` draws the chosen set (or reads the user's file, ``csv:`` and
``npy:``, :mod:`.series_file`), splits it into train (the first ``1 - test_fraction``)
and test (the rest) and, when the dataset asks for it, z-scores both with the mean
and standard deviation of the training values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import NonNegativeFloat, PositiveFloat
from scipy.integrate import solve_ivp

from rdbench.config import Settings
from rdbench.systems.lstm.series_file import FILE_KINDS, read_series

DATASETS = ("sine", "lorenz", "vanderpol")


class SolverSettings(Settings):
    """How :func:`scipy.integrate.solve_ivp` integrates the ODE datasets."""

    method: Literal["RK45", "DOP853", "Radau", "BDF", "LSODA"]
    rtol: PositiveFloat
    atol: PositiveFloat


class SineSettings(Settings):
    freq_min: PositiveFloat  # angular frequency, rad per unit of t
    freq_max: PositiveFloat
    t_max: PositiveFloat  # t = linspace(0, t_max, seq_len)
    noise: NonNegativeFloat  # std of the additive N(0, 1) noise
    normalise: bool  # z-score with the training mean and std


class LorenzSettings(Settings):
    sigma: PositiveFloat
    rho: PositiveFloat
    beta: PositiveFloat
    dt: PositiveFloat  # sampling interval
    transient: NonNegativeFloat  # time integrated and discarded before the first sample
    component: Literal["x", "y", "z"]
    initial_box: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    noise: NonNegativeFloat
    normalise: bool


class VanDerPolSettings(Settings):
    mu: PositiveFloat
    dt: PositiveFloat
    transient: NonNegativeFloat
    component: Literal["x", "y"]
    initial_box: tuple[tuple[float, float], tuple[float, float]]
    noise: NonNegativeFloat
    normalise: bool


@dataclass(frozen=True)
class SequenceData:
    """A train/test split in model units (z-scored when the dataset asks for it).

    ``train``: ``(n_train, seq_len)``; ``test``: ``(n_test, seq_len)``. A model value
    ``v`` is ``raw = v * scale + offset`` in the generator's units.
    """

    train: np.ndarray
    test: np.ndarray
    offset: float
    scale: float


def sine_sequences(s: SineSettings, n: int, seq_len: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, seq_len)`` noisy sine waves of random angular frequency and phase."""
    t = np.linspace(0.0, s.t_max, seq_len)
    freq = rng.uniform(s.freq_min, s.freq_max, size=(n, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1))
    waves = np.sin(freq * t + phase)
    return waves + s.noise * rng.standard_normal((n, seq_len))


def integrate_batch(
    rhs: Callable[[np.ndarray], np.ndarray],
    initial: np.ndarray,
    sample_times: np.ndarray,
    solver: SolverSettings,
) -> np.ndarray:
    """Integrate ``n`` copies of an autonomous ODE at once; ``initial`` is ``(n, dim)``.

    ``rhs`` maps states ``(dim, n)`` to their time derivatives ``(dim, n)``. Returns the
    states at ``sample_times``: ``(n, dim, len(sample_times))``.
    """
    n, dim = initial.shape

    def stacked(_t: float, y: np.ndarray) -> np.ndarray:
        return rhs(y.reshape(dim, n)).ravel()

    sol = solve_ivp(
        stacked,
        (0.0, float(sample_times[-1])),
        initial.T.ravel(),
        method=solver.method,
        t_eval=sample_times,
        rtol=solver.rtol,
        atol=solver.atol,
    )
    if not sol.success:
        raise RuntimeError(f"solve_ivp ({solver.method}) failed: {sol.message}")
    return sol.y.reshape(dim, n, len(sample_times)).transpose(1, 0, 2)


def _sample_times(dt: float, transient: float, seq_len: int) -> np.ndarray:
    return transient + dt * np.arange(seq_len)


def _initial_states(box, n: int, rng: np.random.Generator) -> np.ndarray:
    low = np.array([b[0] for b in box], dtype=np.float64)
    high = np.array([b[1] for b in box], dtype=np.float64)
    return rng.uniform(low, high, size=(n, len(box)))


def lorenz_sequences(
    s: LorenzSettings, n: int, seq_len: int, rng: np.random.Generator, solver: SolverSettings
) -> np.ndarray:
    """``(n, seq_len)`` samples of one Lorenz coordinate, every ``dt`` after the transient."""

    def rhs(state: np.ndarray) -> np.ndarray:
        x, y, z = state
        return np.stack([s.sigma * (y - x), x * (s.rho - z) - y, x * y - s.beta * z])

    initial = _initial_states(s.initial_box, n, rng)
    states = integrate_batch(rhs, initial, _sample_times(s.dt, s.transient, seq_len), solver)
    values = states[:, "xyz".index(s.component)]
    return values + s.noise * rng.standard_normal(values.shape)


def vanderpol_sequences(
    s: VanDerPolSettings, n: int, seq_len: int, rng: np.random.Generator, solver: SolverSettings
) -> np.ndarray:
    """``(n, seq_len)`` samples of one Van der Pol coordinate, every ``dt`` after the transient."""

    def rhs(state: np.ndarray) -> np.ndarray:
        x, y = state
        return np.stack([y, s.mu * (1 - x * x) * y - x])

    initial = _initial_states(s.initial_box, n, rng)
    states = integrate_batch(rhs, initial, _sample_times(s.dt, s.transient, seq_len), solver)
    values = states[:, "xy".index(s.component)]
    return values + s.noise * rng.standard_normal(values.shape)


def generate_sequences(settings, n: int, seq_len: int, seed: int) -> np.ndarray:
    """``(n, seq_len)`` raw sequences of ``settings.dataset``, a pure function of the seed."""
    rng = np.random.default_rng(seed)
    name = settings.dataset
    if name == "sine":
        return sine_sequences(settings.sine, n, seq_len, rng)
    if name == "lorenz":
        return lorenz_sequences(settings.lorenz, n, seq_len, rng, settings.solver)
    if name == "vanderpol":
        return vanderpol_sequences(settings.vanderpol, n, seq_len, rng, settings.solver)
    raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")


def split_counts(n_sequences: int, test_fraction: float) -> tuple[int, int]:
    """``(n_train, n_test)``: the test set is ``round(test_fraction * n)`` sequences."""
    n_test = int(round(test_fraction * n_sequences))
    return n_sequences - n_test, n_test


def raw_sequences(settings, seed: int) -> np.ndarray:
    """``(n, seq_len)`` raw values: generated (a pure function of the seed) or read from the user's file."""
    if settings.dataset in FILE_KINDS:
        return read_series(settings.dataset, settings.data_path, settings.file, settings.n_sequences, settings.seq_len)
    return generate_sequences(settings, settings.n_sequences, settings.seq_len, seed)


def make_dataset(settings, seed: int) -> SequenceData:
    """Generate (or read), split and (if asked) z-score with the training statistics."""
    raw = raw_sequences(settings, seed)
    n_train, _ = split_counts(raw.shape[0], settings.test_fraction)
    train, test = raw[:n_train], raw[n_train:]
    offset, scale = 0.0, 1.0
    file_data = settings.dataset in FILE_KINDS
    if (settings.file if file_data else getattr(settings, settings.dataset)).normalise:
        offset, scale = float(train.mean()), float(train.std())
        if scale == 0:
            name = f"{settings.dataset}:{settings.data_path}" if file_data else settings.dataset
            raise ValueError(f"{name}: training values are constant; cannot z-score")
    return SequenceData((train - offset) / scale, (test - offset) / scale, offset, scale)
