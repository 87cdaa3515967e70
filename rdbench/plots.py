"""What rdbench's figures share: the colour of an undefined point, and finding series that coincide.

A leaf module (numpy and matplotlib's colour maps only), used by the report's Fig. 2,
the phase map's heatmaps and the oracle sweep's figure.

* An undefined point (a diverged run, R = 0/0) is drawn in the candidate colour that is
  farthest from every colour of the map's scale (:func:`undefined_colour`), so it can
  never be read as a value, and is named in the legend (:data:`UNDEFINED_LABEL`).
* Series that coincide hide each other on a plot. :func:`coinciding` finds them
  numerically (equal within :data:`COINCIDE_RTOL`, relative) so a figure draws one line
  and says so in its legend (:func:`coincidence_label`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

UNDEFINED_CANDIDATES = ("magenta", "black", "lime", "lightgrey")
UNDEFINED_LABEL = "undefined (diverged, or 0/0)"
# Series closer than this (relative, at every point) are one line on a figure: 1 % is under a
# marker's width on any of rdbench's axes (a decade of log axis spans hundreds of pixels).
COINCIDE_RTOL = 0.01


def _rgb(colour: str | Sequence[float]) -> np.ndarray:
    from matplotlib.colors import to_rgb

    return np.asarray(to_rgb(colour), dtype=float)


def scale_distance(colour: str | Sequence[float], cmap: str) -> float:
    """The smallest RGB distance between ``colour`` and any of the 256 colours of ``cmap``'s scale."""
    from matplotlib import colormaps

    scale = colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3]
    return float(np.linalg.norm(scale - _rgb(colour), axis=1).min())


def undefined_colour(cmap: str) -> str:
    """Of :data:`UNDEFINED_CANDIDATES`, the colour farthest from ``cmap``'s whole scale."""
    return max(UNDEFINED_CANDIDATES, key=lambda c: scale_distance(c, cmap))


def max_relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(|a|, |b|) over the finite points (inf if the shapes differ, or if one of the
    two is finite where the other is not)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return float("inf")
    finite_a, finite_b = np.isfinite(a), np.isfinite(b)
    if (finite_a != finite_b).any():
        return float("inf")
    a, b = a[finite_a], b[finite_a]
    scale = np.maximum(np.abs(a), np.abs(b))
    keep = scale > 0  # where both are 0 they agree
    return float((np.abs(a - b)[keep] / scale[keep]).max()) if keep.any() else 0.0


def coinciding(series: Mapping[str, np.ndarray], rtol: float = COINCIDE_RTOL) -> list[tuple[list[str], float]]:
    """Groups of two or more series (names in the order given) that coincide: each within ``rtol`` of
    the group's first one. Each group comes with its largest relative difference (0.0: identical)."""
    names = list(series)
    taken: set[str] = set()
    groups = []
    for i, first in enumerate(names):
        if first in taken:
            continue
        members, worst = [first], 0.0
        for other in names[i + 1 :]:
            if other in taken:
                continue
            diff = max_relative_difference(series[first], series[other])
            if diff <= rtol:
                members.append(other)
                worst = max(worst, diff)
        if len(members) > 1:
            taken.update(members)
            groups.append((members, worst))
    return groups


def coincidence_label(names: Sequence[str], difference: float) -> str:
    """``a = b (identical)``, or ``a ≈ b (within 0.2 %)``: the legend entry of series drawn as one."""
    if difference == 0.0:
        return " = ".join(names) + " (identical)"
    return " ≈ ".join(names) + f" (within {100 * difference:.2g} %)"


def merge_coinciding(series: Mapping[str, np.ndarray], rtol: float = COINCIDE_RTOL) -> dict[str, str]:
    """The series to draw, each with its legend label: a group of coinciding series is drawn once, as its
    first member, labelled with :func:`coincidence_label`; the other members are left out."""
    labels = {name: name for name in series}
    for members, difference in coinciding(series, rtol):
        labels[members[0]] = coincidence_label(members, difference)
        for other in members[1:]:
            del labels[other]
    return labels
