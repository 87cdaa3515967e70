"""The pattern label of a phase-map point, from its final v field and its R_t series.

The rule, in order (thresholds in ``conf/phase/rd.yaml``, ``labels``):

1. **diverged**: the row turned NaN/Inf (it was frozen; the rest of the batch ran on).
2. **none**: the spatial standard deviation of the final v is below ``none_std``: the
   field is uniform (the trivial state u = 1, v = 0, or any other homogeneous one).
3. **unstable**: the explicit step is unstable and the field is a grid-scale oscillation,
   not a pattern. Read from the final v: the share of its spatial variance (mean removed)
   in the grid-scale band, the Fourier modes whose 5-point-Laplacian eigenvalue is at
   least ``grid_band`` of the largest (the checkerboard's, 8 / dx^2), is at least
   ``grid_share``. A pattern of the equations has a wavelength of many cells and almost
   none of its variance there; white noise puts about a fifth there (``grid_band``
   0.75); a step that amplifies grid-scale modes (an
   Euler factor below -1, see :mod:`rdbench.systems.grayscott_stability`) concentrates
   the variance there. Never counted as a pattern. It comes after
   ``none``: on a resting field near the stability boundary the float32 round-off that
   is left (v's std ~1e-8) sits in the slowest-decaying modes, the grid-scale ones, and
   is no instability.
4. **oscillating**: over the last ``window`` of the recorded steps, R_t (Eq. 20) minus
   its least-squares line has a standard deviation above ``oscillation_amplitude``
   times its mean and crosses zero at least ``oscillation_crossings`` times: it goes
   up and down, where a pattern that settles or keeps growing drifts one way.
   Oscillating and chaotic regimes both land here.
5. **spots** or **stripes-labyrinth**: the cells where v exceeds
   ``vmin + level (vmax - vmin)`` form connected components (4-neighbour, on the
   periodic torus: components that meet across an edge are one). Each component's
   compactness ``P^2 / (4 pi A)`` (P: the number of cell edges on its boundary, A: its
   cells; about 1.3-1.6 for a digitised disc, L / (pi w) for a stripe of length L and
   width w) measures its elongation. When at least ``spot_share`` of the pattern's
   area lies in components less compact than ``spot_compactness``, the point is
   **spots**; otherwise **stripes-labyrinth**.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from rdbench.phase.plan import LabelRule

DIVERGED, NONE, OSCILLATING, SPOTS, STRIPES = "diverged", "none", "oscillating", "spots", "stripes-labyrinth"
UNSTABLE = "unstable"
LABELS = (NONE, SPOTS, STRIPES, OSCILLATING, UNSTABLE, DIVERGED)
PATTERNS = (SPOTS, STRIPES)  # the labels that are patterns of the equations


@dataclass(frozen=True)
class Shape:
    """What the label was read from: v's spatial std, the components and the spot share of the area."""

    v_std: float
    components: int
    spot_share: float
    grid_share: float = 0.0  # share of v's variance in the grid-scale band (rule step 2)


def periodic_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of ``mask`` on the torus: labels 1..n (0: background)."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return labels, 0
    parent = np.arange(n + 1)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a_edge, b_edge in ((labels[0, :], labels[-1, :]), (labels[:, 0], labels[:, -1])):
        for a, b in zip(a_edge, b_edge, strict=True):
            if a and b:
                ra, rb = find(int(a)), find(int(b))
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(n + 1)])
    _, dense = np.unique(roots, return_inverse=True)  # root 0 (background) stays 0
    return dense[labels], int(dense.max())


def compactness(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per component (1..n): its area A and its compactness P^2 / (4 pi A), P counted on the torus."""
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(float)
    perimeter = np.zeros(n + 1)
    for axis in (0, 1):
        for shift in (1, -1):
            edge = labels != np.roll(labels, shift, axis=axis)
            perimeter += np.bincount(labels[edge], minlength=n + 1)
    return area, perimeter[1:] ** 2 / (4 * np.pi * area)


def shape_of(v: np.ndarray, rule: LabelRule) -> Shape:
    """The spatial measures the label is read from (no threshold on ``none_std`` applied yet)."""
    v = np.asarray(v, dtype=np.float64)
    std = float(v.std())
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return Shape(std, 0, 0.0)
    labels, n = periodic_components(v > lo + rule.level * (hi - lo))
    if n == 0:
        return Shape(std, 0, 0.0)
    area, compact = compactness(labels, n)
    return Shape(std, n, float(area[compact < rule.spot_compactness].sum() / area.sum()))


def grid_scale_share(v: np.ndarray, band: float) -> float:
    """The share of ``v``'s spatial variance in the modes whose 5-point-Laplacian eigenvalue is at
    least ``band`` of the checkerboard's (rule step 2); 0 for a uniform field."""
    v = np.asarray(v, dtype=np.float64)
    power = np.abs(np.fft.fft2(v - v.mean())) ** 2
    total = float(power.sum())
    if total <= 0 or not np.isfinite(total):
        return 0.0
    s0 = np.sin(np.pi * np.arange(v.shape[0]) / v.shape[0]) ** 2
    s1 = np.sin(np.pi * np.arange(v.shape[1]) / v.shape[1]) ** 2
    symbol = (s0[:, None] + s1[None, :]) / 2  # 0 for the uniform mode, 1 for the checkerboard
    return float(power[symbol >= band].sum() / total)


def oscillates(r_t: np.ndarray, rule: LabelRule) -> bool:
    """Whether the last ``window`` of R_t goes up and down (see the module docstring, step 3)."""
    r_t = np.asarray(r_t, dtype=np.float64)
    r_t = r_t[np.isfinite(r_t)]
    n = max(int(round(len(r_t) * rule.window)), 0)
    if n < 8:
        return False
    window = r_t[-n:]
    x = np.arange(n, dtype=np.float64)
    residual = window - np.polyval(np.polyfit(x, window, 1), x)
    scale = abs(float(window.mean()))
    if scale == 0 or residual.std() <= rule.oscillation_amplitude * scale:
        return False
    signs = np.sign(residual)
    signs = signs[signs != 0]
    return int(np.count_nonzero(signs[1:] != signs[:-1])) >= rule.oscillation_crossings


def label_point(v: np.ndarray, r_t: np.ndarray, rule: LabelRule, diverged: bool = False) -> tuple[str, Shape]:
    """The label of one point (module docstring) and the measures it came from."""
    if diverged or not np.isfinite(v).all():
        return DIVERGED, Shape(float("nan"), 0, float("nan"))
    shape = shape_of(v, rule)
    shape = Shape(shape.v_std, shape.components, shape.spot_share, grid_scale_share(v, rule.grid_band))
    if shape.v_std < rule.none_std:
        return NONE, shape
    if shape.grid_share >= rule.grid_share:
        return UNSTABLE, shape
    if oscillates(r_t, rule):
        return OSCILLATING, shape
    return (SPOTS if shape.spot_share >= rule.spot_share else STRIPES), shape


def relabel(table, rule: LabelRule):
    """The labels of a finished map's table (``points.csv``) under this rule, from the measures it stores.

    Exact for any table with ``v_std`` and ``grid_share``: a row's oscillation test is not stored, but
    only the spots, stripes and oscillating labels depend on it and they are kept as they were (a row
    so labelled had ``grid_share`` below the threshold and ``v_std`` above ``none_std`` under any
    order of the steps); diverged, none and unstable follow from the stored measures.
    """
    import pandas as pd

    labels = table["label"].copy()
    measured = labels != DIVERGED
    labels[measured & (table["grid_share"] >= rule.grid_share)] = UNSTABLE
    labels[measured & (table["v_std"] < rule.none_std)] = NONE
    return pd.Series(labels, index=table.index, name="label")
