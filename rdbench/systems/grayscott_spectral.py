"""A second integrator for Gray-Scott (Eq. 1): ETDRK4, diffusion exact in Fourier space (``scheme: etdrk4``).

Exponential time differencing with a fourth-order Runge-Kutta stage scheme (Cox and
Matthews 2002, J. Comput. Phys. 176:430), its coefficients computed by the contour
integrals of Kassam and Trefethen (2005, SIAM J. Sci. Comput. 26:1214) so that
``(e^z - 1) / z`` and its kin lose no digits near z = 0. Each field is split into a linear
part, diffusion ``D lap``, integrated exactly per Fourier mode (the factor ``e^{dt L}``),
and the reaction of Eq. (1), integrated explicitly by the four stages.

Which Laplacian: the symbol of the **periodic 5-point Laplacian** the Euler step uses,
``L = -D (4 sin^2(pi i / N) + 4 sin^2(pi j / N)) / dx^2``, not the spectral ``-D |k|^2``.
Both schemes then solve the same semi-discrete system (the same ODEs in time, the same
steady states and patterns); a difference between them is the time stepping alone.

The balance probe is the Euler step's: before every recorded step the four term norms
(Eqs. 12, 15 and the activator's pair) are evaluated on the current state by the same
function (:func:`~rdbench.systems.grayscott._term_norms`, the 5-point Laplacian in real
space), so R (Eq. 18) means the same under either scheme.

Batched as the Euler step: one tensor of every row, batched real FFTs over the last two
dimensions; the per-row feed and kill broadcast. On CUDA the FFTs are ``torch.fft``'s
(cuFFT); on CPU they are ``scipy.fft``'s (pocketfft) on zero-copy NumPy views of the same
tensors, because torch's CPU FFT was many times slower for 200 x 200 grids on this
project's 2-core machine.
Stability: the diffusion is exact, so there is no diffusive bound on dt; the explicit
reaction stages limit dt only through the reaction's rates (about 1 / (F + v^2), far above
the paper's dt).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import scipy.fft
import torch

CONTOUR_POINTS = 32  # points on the upper half of the contour circle (Kassam-Trefethen use 32 of 64)
LIVE_ARRAYS = 32  # grid-sized arrays per row (two fields): state, spare, stage spectra and reactions


def five_point_symbol(grid_size: int, dx: float) -> np.ndarray:
    """The eigenvalues of the periodic 5-point Laplacian on the ``rfft2`` grid: ``(N, N // 2 + 1)``, <= 0."""
    full = 4 * np.sin(np.pi * np.arange(grid_size) / grid_size) ** 2
    half = full[: grid_size // 2 + 1]
    return -(full[:, None] + half[None, :]) / (dx * dx)


def etdrk4_coefficients(linear: np.ndarray, dt: float, points: int = CONTOUR_POINTS) -> dict[str, np.ndarray]:
    """E, E2, Q, f1, f2, f3 of Cox-Matthews ETDRK4 for a diagonal linear part ``linear`` (real, any shape).

    ``Q = dt phi(dt L / 2)``-like means over a circle of radius 1 around each ``dt L``
    (Kassam-Trefethen, their Eq. 2.5 and the code of their Fig. 4; the upper half circle and the real
    part, since L is real).
    """
    hl = dt * np.asarray(linear, dtype=np.float64)
    roots = np.exp(1j * np.pi * (np.arange(1, points + 1) - 0.5) / points)
    z = hl[..., None] + roots
    ez = np.exp(z)
    return {
        "E": np.exp(hl),
        "E2": np.exp(hl / 2),
        "Q": dt * np.real(np.mean((np.exp(z / 2) - 1) / z, axis=-1)),
        "f1": dt * np.real(np.mean((-4 - z + ez * (4 - 3 * z + z**2)) / z**3, axis=-1)),
        "f2": dt * np.real(np.mean((2 + z + ez * (z - 2)) / z**3, axis=-1)),
        "f3": dt * np.real(np.mean((-4 - 3 * z - z**2 + ez * (4 - z)) / z**3, axis=-1)),
    }


@contextlib.contextmanager
def one_thread_on_cpu(device: torch.device):
    """On CPU, the stages run on one torch thread (restored after): interleaved with pocketfft's calls,
    torch's OpenMP threads made a step many times slower on the busy 2-core machine (measured
    with ``rdbench bench rd``)."""
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def rfft2(x: torch.Tensor) -> torch.Tensor:
    """Real FFT over the last two dimensions: scipy's on CPU, torch's (cuFFT) elsewhere (module docstring)."""
    if x.device.type == "cpu":
        return torch.from_numpy(scipy.fft.rfft2(x.numpy(), workers=1))
    return torch.fft.rfft2(x)


def irfft2(h: torch.Tensor, n: int) -> torch.Tensor:
    """The inverse of :func:`rfft2` for an ``n x n`` grid."""
    if h.device.type == "cpu":
        return torch.from_numpy(scipy.fft.irfft2(h.numpy(), s=(n, n), workers=1))
    return torch.fft.irfft2(h, s=(n, n))


class ETDRK4Step:
    """One ETDRK4 step of a batch, with the Euler step's call signature (see
    :class:`~rdbench.systems.grayscott.GrayScottSimulation`): ``(state, u_out, v_out, feed, kill,
    diffusion_u, diffusion_v, dt, dx, measured) -> term norms (rows, 4) or None``.

    The coefficients depend on N, dx, Du, Dv and dt, shared by every row; they are computed once,
    in float64, and kept in the state's precision, shaped ``(2, 1, N, N // 2 + 1)`` (u then v).
    """

    def __init__(self, grid_size: int, dx: float, diffusion_u: float, diffusion_v: float, dt: float,
                 dtype: torch.dtype, device: torch.device, probe: Callable | None = None):
        self.probe = probe  # the Euler step's term norms on the padded state (grayscott._term_norms)
        symbol = five_point_symbol(grid_size, dx)
        per_field = [etdrk4_coefficients(d * symbol, dt) for d in (diffusion_u, diffusion_v)]
        self.grid_size = grid_size
        self.coefficients = {
            name: torch.tensor(np.stack([c[name] for c in per_field])[:, None], dtype=dtype, device=device)
            for name in per_field[0]
        }

    @staticmethod
    def reaction(x: torch.Tensor, feed: torch.Tensor, kill: torch.Tensor) -> torch.Tensor:
        """The reaction of Eq. (1) for ``x = (u, v)`` stacked ``(2, rows, N, N)``: ``(-u v^2 + F (1 - u), u v^2 - (F + k) v)``."""
        u, v = x[0], x[1]
        uvv = u * v * v
        return torch.stack((feed * (1 - u) - uvv, uvv - (feed + kill) * v))

    def advance(self, x: torch.Tensor, feed: torch.Tensor, kill: torch.Tensor) -> torch.Tensor:
        """``x`` (u, v stacked, ``(2, rows, N, N)``) advanced by one step (Cox-Matthews, Eq. 26-29)."""
        c, n = self.coefficients, self.grid_size
        fft, ifft = rfft2, lambda h: irfft2(h, n)
        x_hat = fft(x)
        n_x = fft(self.reaction(x, feed, kill))
        a_hat = c["E2"] * x_hat + c["Q"] * n_x
        n_a = fft(self.reaction(ifft(a_hat), feed, kill))
        b_hat = c["E2"] * x_hat + c["Q"] * n_a
        n_b = fft(self.reaction(ifft(b_hat), feed, kill))
        c_hat = c["E2"] * a_hat + c["Q"] * (2 * n_b - n_x)
        n_c = fft(self.reaction(ifft(c_hat), feed, kill))
        return ifft(c["E"] * x_hat + c["f1"] * n_x + 2 * c["f2"] * (n_a + n_b) + c["f3"] * n_c)

    def __call__(self, state, u_out, v_out, feed, kill, diffusion_u, diffusion_v, dt, dx, measured):
        with one_thread_on_cpu(state.device):
            norms = self.probe(state, feed, kill, diffusion_u, diffusion_v, dx) if measured else None
            nxt = self.advance(state[:, :, 1:-1, 1:-1], feed, kill)
        u_out.copy_(nxt[0])
        v_out.copy_(nxt[1])
        return norms

