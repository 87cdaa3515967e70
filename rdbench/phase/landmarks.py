"""The analytic landmarks drawn on every phase-map figure, so a reader can place each region.

* The **saddle-node line** ``k = sqrt(F) / 2 - F``
  (:func:`~rdbench.systems.grayscott_stability.saddle_node_kill`): to its left (smaller k)
  the two non-trivial homogeneous states exist, to its right only u = 1, v = 0.
* The **explicit-Euler stability boundary** of the map's own grid and dt: the curve where the
  estimate of :mod:`rdbench.systems.grayscott_stability` (the Euler step's largest
  amplification of a damped mode, reaction included) crosses 1, traced as the level-1 contour
  of the estimate on a ``resolution`` x ``resolution`` grid over the figure's extent. Points
  on its unstable side run a step that amplifies grid-scale modes. Drawn only for
  ``scheme: euler`` (the ETDRK4 step treats diffusion exactly and has no such bound).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rdbench.systems.grayscott_stability import euler_amplification, saddle_node_kill

RESOLUTION = 48  # estimate evaluations per axis for the boundary's contour


@dataclass
class Landmarks:
    """The landmarks of one map's settings; the boundary is computed once per extent and reused."""

    settings: Any  # the map's GrayScottSettings (grid, dt, diffusion, scheme)
    resolution: int = RESOLUTION
    _cache: dict = field(default_factory=dict, repr=False)

    def amplification_grid(self, feeds: np.ndarray, kills: np.ndarray) -> np.ndarray:
        """The estimate at every (F, k) of the two axes: ``(len(feeds), len(kills))``."""
        s = self.settings
        return np.array([[euler_amplification(f, k, s.diffusion_u, s.diffusion_v, s.dt, s.grid_size, s.dx)
                          for k in kills] for f in feeds])

    def boundary(self, feed_range: tuple[float, float], kill_range: tuple[float, float]):
        """(feeds, kills, estimate) on the contour grid of this extent (cached)."""
        key = (feed_range, kill_range)
        if key not in self._cache:
            feeds = np.linspace(*feed_range, self.resolution)
            kills = np.linspace(*kill_range, self.resolution)
            self._cache[key] = (feeds, kills, self.amplification_grid(feeds, kills))
        return self._cache[key]

    def draw(self, ax) -> None:
        """Both landmarks on ``ax`` (k horizontal, F vertical), within its current limits, with a legend."""
        (k0, k1), (f0, f1) = ax.get_xlim(), ax.get_ylim()
        feeds = np.linspace(max(f0, 0.0), f1, 200)
        ax.plot(saddle_node_kill(feeds), feeds, color="black", linestyle="--", linewidth=1.4,
                label="saddle-node k = sqrt(F)/2 - F")
        if getattr(self.settings, "scheme", "euler") == "euler":
            grid_f, grid_k, amp = self.boundary((max(f0, 0.0), f1), (max(k0, 0.0), k1))
            if amp.min() <= 1 < amp.max():
                ax.contour(grid_k, grid_f, amp, levels=[1.0], colors="magenta", linewidths=1.6)
                ax.plot([], [], color="magenta", linewidth=1.6, label=f"Euler stability boundary (dt={self.settings.dt:g})")
        ax.set_xlim(k0, k1)
        ax.set_ylim(f0, f1)
        ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
