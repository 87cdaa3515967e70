"""The one timing loop every benchmark uses: variants interleaved round by round.

On a shared, noisy machine two variants timed one after the other see different
load; interleaving them round by round (and optionally alternating the order) and
keeping the best (or median) round of each makes their ratio meaningful.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass
class Timings:
    """Seconds per call of each variant, one entry per round."""

    seconds: dict[str, list[float]]

    def best(self, name: str) -> float:
        return min(self.seconds[name])

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])


def interleaved(
    variants: Mapping[str, Callable[[], object]],
    rounds: int,
    *,
    repeat: int = 1,
    sync: Callable[[], None] | None = None,
    alternate: bool = False,
    warmup: bool = False,
) -> Timings:
    """Time every variant in each of ``rounds`` rounds (``repeat`` calls a round, averaged).

    ``sync`` waits for queued device work (``torch.cuda.synchronize``) before and after
    each timed block; ``alternate`` reverses the order every other round; ``warmup``
    calls each variant once first (lazy initialisation, allocator, kernels), untimed.
    """
    names = list(variants)
    wait = sync or (lambda: None)
    if warmup:
        for name in names:
            variants[name]()
        wait()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[::-1] if alternate and r % 2 else names
        for name in order:
            wait()
            t0 = time.perf_counter()
            for _ in range(repeat):
                variants[name]()
            wait()
            seconds[name].append((time.perf_counter() - t0) / repeat)
    return Timings(seconds)
