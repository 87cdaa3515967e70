"""The balance meter: reaction and diffusion magnitudes, written once for every system.

A system's per-step update splits into a *reaction* term (what creates or restores
structure) and a *diffusion* term (what spreads, decays or randomises it). At each
recorded step the meter takes, for every sample of the batch, ONE L2 (Frobenius)
norm over the sample's whole state of each term (paper Eqs. 12-17: the whole grid
for Gray-Scott, all hidden units for the LSTM, the whole image for the DDPM), with
no ``dt`` factor. From those norms it derives

* ``M_react`` and ``M_diff``: the mean norm over recorded steps (Eq. 19), then over
  samples;
* ``R = M_react / M_diff``: the Mean Dynamic Balance Ratio (Eq. 18), a ratio of
  means, not a mean of ratios;
* ``R_t = react_t / diff_t``: the Dynamic Balance Ratio per step (Eq. 20, with the
  paper's typo ``M_react,t / M_react,t`` fixed), where ``react_t`` and ``diff_t``
  are the sample means of the norms at step t, on normalised time in [0, 1];
* ``R_final``: the last value of ``R_t`` (Fig. 3);
* the spread (standard deviation) of the per-sample R and R_final.

The meter stores only norms: ``(recorded steps x samples x terms)`` numbers, so a
whole series costs O(steps) memory and never holds a state. The norms stay on the
system's device in one buffer, doubled when full, until :meth:`BalanceMeter.result`
reads them: recording is an in-place copy that never forces a device synchronisation.
(One small tensor kept per step, as before, left a long CPU run's resident set growing
by about 100 KB a step: the small tensors, allocated between the step's freed
temporaries, kept glibc from returning the heap.)

It knows nothing about any particular system: it is fed either the term tensors
(:meth:`BalanceMeter.observe`) or norms already computed with :func:`term_norms`
inside a system's fused step (:meth:`BalanceMeter.record`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

REACTION = "reaction"
DIFFUSION = "diffusion"
INITIAL_STEPS = 256  # the meter's first buffer holds this many recorded steps


def term_norms(terms: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-sample L2 norms of each term: ``(batch, ...)`` tensors -> ``(batch, n_terms)``.

    One Frobenius norm over everything but the leading (sample) dimension, as in
    Eqs. (12)-(17). Pure torch, so a system may call it inside a compiled step.
    """
    return torch.stack([t.reshape(t.shape[0], -1).norm(dim=1) for t in terms], dim=1)


class BalanceMeter:
    """Collects per-step, per-sample term norms; :meth:`result` turns them into metrics.

    ``term_names`` lists the terms in the order they are fed; the first two must be
    ``"reaction"`` and ``"diffusion"`` (the pair that defines R); any further names
    (e.g. ``"reaction_u"``) are extra series reported beside them.
    """

    def __init__(
        self,
        n_samples: int,
        term_names: Sequence[str] = (REACTION, DIFFUSION),
        device: torch.device | str = "cpu",
    ):
        names = tuple(term_names)
        if names[:2] != (REACTION, DIFFUSION):
            raise ValueError(f"term_names must start with reaction, diffusion; got {names}")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate term names: {names}")
        if n_samples <= 0:
            raise ValueError(f"n_samples must be positive, got {n_samples}")
        self.term_names = names
        self.n_samples = n_samples
        self.device = torch.device(device)
        self._buffer: torch.Tensor | None = None  # (capacity, samples, terms); rows [0, n_recorded) filled
        self._steps: list[int] = []
        # Number of recorded steps that count for each sample (rows stopped early keep fewer).
        self._length = np.full(n_samples, -1, dtype=np.int64)

    # ------------------------------------------------------------------ feeding

    def observe(self, step: int, terms: Sequence[torch.Tensor] | Mapping[str, torch.Tensor]) -> None:
        """Record one step from its term tensors (one row per sample)."""
        if isinstance(terms, Mapping):
            missing = [n for n in self.term_names if n not in terms]
            if missing:
                raise KeyError(f"terms missing from step {step}: {missing}")
            terms = [terms[n] for n in self.term_names]
        self.record(step, term_norms(terms))

    def record(self, step: int, norms: torch.Tensor) -> None:
        """Record one step from norms already computed with :func:`term_norms`."""
        expected = (self.n_samples, len(self.term_names))
        if tuple(norms.shape) != expected:
            raise ValueError(f"norms of shape {tuple(norms.shape)}, expected {expected}")
        n = len(self._steps)
        if self._buffer is None or n == self._buffer.shape[0]:
            self._grow(norms)
        self._buffer[n].copy_(norms.detach())
        self._steps.append(int(step))

    def record_many(self, steps: Sequence[int], norms: torch.Tensor) -> None:
        """Record several steps at once: ``norms`` is ``(len(steps), samples, terms)``; one copy."""
        expected = (len(steps), self.n_samples, len(self.term_names))
        if tuple(norms.shape) != expected:
            raise ValueError(f"norms of shape {tuple(norms.shape)}, expected {expected}")
        n = len(self._steps)
        if self._buffer is None or n + len(steps) > self._buffer.shape[0]:
            self._grow(norms[0], n + len(steps))
        self._buffer[n:n + len(steps)].copy_(norms.detach())
        self._steps.extend(int(s) for s in steps)

    def _grow(self, norms: torch.Tensor, needed: int = 0) -> None:
        """A buffer twice as long (at least ``INITIAL_STEPS`` and ``needed``), keeping what was recorded."""
        n = len(self._steps)
        capacity = max(INITIAL_STEPS, 2 * n, needed)
        buffer = torch.empty((capacity, *norms.shape), dtype=norms.dtype, device=norms.device)
        if self._buffer is not None:
            buffer[:n].copy_(self._buffer[:n])
        self._buffer = buffer

    def stop_samples(self, rows: Sequence[int] | np.ndarray) -> None:
        """Freeze the series of ``rows`` at the steps recorded so far (e.g. early stop)."""
        for row in np.asarray(rows, dtype=np.int64).ravel():
            if self._length[row] < 0:
                self._length[row] = len(self._steps)

    @property
    def n_recorded(self) -> int:
        return len(self._steps)

    def stopped(self) -> np.ndarray:
        """Boolean mask of samples whose series is frozen."""
        return self._length >= 0

    # ------------------------------------------------------------------ reading

    def result(self, rows: Sequence[int] | None = None) -> BalanceResult:
        """The metrics of ``rows`` (default: all samples), which must share a series length."""
        if not self._steps:
            raise ValueError("the meter recorded no step")
        rows = list(range(self.n_samples)) if rows is None else list(rows)
        lengths = np.where(self._length < 0, len(self._steps), self._length)[rows]
        if len(set(lengths.tolist())) != 1:
            raise ValueError(f"samples {rows} have different series lengths {lengths.tolist()}")
        length = int(lengths[0])
        stacked = self._buffer[:length]  # (steps, samples, terms), one transfer
        norms = stacked[:, rows].to(torch.float64).cpu().numpy()
        return BalanceResult(
            steps=np.asarray(self._steps[:length], dtype=np.int64),
            norms={name: norms[:, :, k].T.copy() for k, name in enumerate(self.term_names)},
        )

    def results(self) -> list[BalanceResult]:
        """The metrics of every sample alone (:meth:`result` ``([i])`` for each ``i``, each with its
        own series length), from one read-back of the buffer instead of one per sample."""
        if not self._steps:
            raise ValueError("the meter recorded no step")
        lengths = np.where(self._length < 0, len(self._steps), self._length)
        # (samples, terms, steps): on a GPU rearranged there, so each series arrives contiguous;
        # on the CPU a view of the buffer (a copy would cost as much as the strided reads)
        stored = self._buffer[:len(self._steps)]
        if stored.device.type == "cpu":
            series = stored.numpy().transpose(1, 2, 0)
        else:
            series = stored.permute(1, 2, 0).contiguous().cpu().numpy()
        steps = np.asarray(self._steps, dtype=np.int64)
        return [BalanceResult(steps=steps[:n].copy(), norms={
                    name: series[i, k, None, :n].astype(np.float64) for k, name in enumerate(self.term_names)})
                for i, n in enumerate(lengths.tolist())]



@dataclass(frozen=True)
class BalanceResult:
    """Per-sample norm series of one measurement and the metrics derived from them.

    ``norms[name]`` has shape ``(samples, steps)``; ``steps`` holds the system's own
    step index of each recorded step.
    """

    steps: np.ndarray
    norms: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return self.norms[REACTION].shape[0]

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    @property
    def extra_terms(self) -> list[str]:
        return [n for n in self.norms if n not in (REACTION, DIFFUSION)]

    @property
    def time(self) -> np.ndarray:
        """Normalised time in [0, 1]: 0 at the first recorded step, 1 at the last (Fig. 2)."""
        if self.n_steps == 1:
            return np.ones(1)
        span = self.steps[-1] - self.steps[0]
        return (self.steps - self.steps[0]) / span

    def term_t(self, name: str) -> np.ndarray:
        """Sample mean of a term's norm at each step (``react_t``, ``diff_t``...)."""
        return self.norms[name].mean(axis=0)

    def per_sample_mean(self, name: str) -> np.ndarray:
        """Each sample's mean norm over the recorded steps (Eq. 19), shape ``(samples,)``."""
        return self.norms[name].mean(axis=1)

    @property
    def react_t(self) -> np.ndarray:
        return self.term_t(REACTION)

    @property
    def diff_t(self) -> np.ndarray:
        return self.term_t(DIFFUSION)

    @property
    def M_react(self) -> float:  # noqa: N802 - the paper's symbol
        """Eqs. (12)-(14), (19): mean over steps and samples of the reaction norm."""
        return float(self.norms[REACTION].mean())

    @property
    def M_diff(self) -> float:  # noqa: N802
        """Eqs. (15)-(17), (19): mean over steps and samples of the diffusion norm."""
        return float(self.norms[DIFFUSION].mean())

    @property
    def R(self) -> float:  # noqa: N802
        """Eq. (18): the Mean Dynamic Balance Ratio, a ratio of means."""
        return _ratio(self.M_react, self.M_diff)

    @property
    def R_t(self) -> np.ndarray:  # noqa: N802
        """Eq. (20), typo fixed: react_t / diff_t (inf where diff_t is exactly 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.react_t / self.diff_t

    @property
    def R_final(self) -> float:  # noqa: N802
        """The last value of R_t (Fig. 3)."""
        return float(self.R_t[-1])

    @property
    def R_per_sample(self) -> np.ndarray:  # noqa: N802
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.per_sample_mean(REACTION) / self.per_sample_mean(DIFFUSION)

    @property
    def R_final_per_sample(self) -> np.ndarray:  # noqa: N802
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.norms[REACTION][:, -1] / self.norms[DIFFUSION][:, -1]

    def summary(self) -> dict[str, float]:
        """Scalar metrics: M_react, M_diff, R, R_final, their spread over samples, extras."""
        out = {
            "M_react": self.M_react,
            "M_diff": self.M_diff,
            "R": self.R,
            "R_final": self.R_final,
            "R_std": float(np.std(self.R_per_sample)),
            "R_final_std": float(np.std(self.R_final_per_sample)),
            "n_samples": float(self.n_samples),
            "n_steps": float(self.n_steps),
        }
        for name in self.extra_terms:
            out[f"M_{name}"] = float(self.norms[name].mean())
        return out

    def series(self) -> dict[str, np.ndarray]:
        """Per-step series keyed by metric name: R_t, react_t, diff_t and ``<extra>_t``."""
        out = {"R_t": self.R_t, "react_t": self.react_t, "diff_t": self.diff_t}
        for name in self.extra_terms:
            out[f"{name}_t"] = self.term_t(name)
        return out

    @staticmethod
    def pool(results: Sequence[BalanceResult]) -> BalanceResult:
        """Concatenate the samples of several results measured over the same steps."""
        first = results[0]
        for other in results[1:]:
            if not np.array_equal(other.steps, first.steps) or set(other.norms) != set(first.norms):
                raise ValueError("can only pool results with the same steps and terms")
        return BalanceResult(
            steps=first.steps,
            norms={k: np.concatenate([r.norms[k] for r in results], axis=0) for k in first.norms},
        )


def _ratio(num: float, den: float) -> float:
    if den == 0:
        return float("inf") if num > 0 else float("nan")
    return num / den
