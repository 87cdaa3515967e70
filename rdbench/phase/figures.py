"""The figures of a phase map: heatmaps over the (k, F) plane and a mosaic of the final v fields.

As in Pearson (1993, Science 261:189), k runs along the horizontal axis and F up the
vertical one. Every figure carries the analytic landmarks (:mod:`~rdbench.phase.landmarks`:
the saddle-node line and the explicit-Euler stability boundary). The heatmaps show the mean over seeds of R (Eq. 18), R_final (Eq. 20 at
the last step) and |R - 1| on logarithmic colour scales, the seeds' standard deviation
of R when there are several, and the paper's points (its spot and stripe cases) as
markers. The mosaic lays each point's final v (area-averaged to a tile) at its place.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from rdbench.phase.labels import LABELS  # noqa: E402
from rdbench.phase.landmarks import Landmarks  # noqa: E402
from rdbench.plots import UNDEFINED_LABEL, undefined_colour  # noqa: E402

HEATMAPS = {  # file stem -> (column of the per-(F, k) summary, colour bar label, colour map)
    "heatmap_R": ("R_mean", "R (Eq. 18), mean over seeds", "coolwarm"),
    "heatmap_R_final": ("R_final_mean", "R_final (Eq. 20, last step), mean over seeds", "coolwarm"),
    "heatmap_abs_R_minus_1": ("abs_R_minus_1_mean", "|R - 1|, mean over seeds", "viridis"),
}
SPREAD = ("heatmap_R_std", "R_std", "std of R over seeds", "viridis")
SINGLE_STEP = 1e-3  # the cell width drawn for an axis of one value


def summarise(points: pd.DataFrame) -> pd.DataFrame:
    """One row per (feed, kill): mean and std over seeds of R, R_final, |R - 1|; the most common label."""
    frame = points.assign(abs_R_minus_1=(points["R"] - 1).abs())
    grouped = frame.groupby(["feed", "kill"], sort=True)
    out = grouped[["R", "R_final", "abs_R_minus_1", "M_react", "M_diff"]].agg(["mean", "std"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out["seeds"] = grouped.size()
    out["label"] = grouped["label"].agg(lambda s: s.value_counts().sort_index(key=_label_order).idxmax())
    return out.reset_index()


def _label_order(index: pd.Index) -> pd.Index:
    return index.map(lambda name: LABELS.index(name) if name in LABELS else len(LABELS))


def _grid(summary: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    table = summary.pivot(index="feed", columns="kill", values=column).sort_index().sort_index(axis=1)
    return table.index.to_numpy(float), table.columns.to_numpy(float), table.to_numpy(float)


def _extent(values: np.ndarray) -> tuple[float, float]:
    step = float(np.diff(values).mean()) if len(values) > 1 else SINGLE_STEP
    return float(values[0] - step / 2), float(values[-1] + step / 2)


def _mark(ax, marked: Mapping[str, tuple[float, float]]) -> None:
    for case, (feed, kill) in marked.items():
        ax.scatter([kill], [feed], marker="*", s=220, c="white", edgecolors="black", linewidths=1.2, zorder=3)
        ax.annotate(case, (kill, feed), xytext=(6, 6), textcoords="offset points", fontsize=10,
                    color="black", backgroundcolor=(1, 1, 1, 0.7), zorder=4)


def heatmap(summary: pd.DataFrame, column: str, title: str, cmap: str,
            marked: Mapping[str, tuple[float, float]], landmarks: Landmarks | None = None) -> plt.Figure:
    """A log-coloured map of ``column`` over (k, F) with the paper's points and the landmarks marked."""
    feeds, kills, values = _grid(summary, column)
    positive = values[np.isfinite(values) & (values > 0)]
    norm = None
    if positive.size:
        lo, hi = float(positive.min()), float(positive.max())
        if column.startswith("R") and not column.startswith("R_std"):  # centred on R = 1
            span = max(abs(np.log10(lo)), abs(np.log10(hi)), 1e-3)
            lo, hi = 10**-span, 10**span
        norm = LogNorm(lo, hi if hi > lo else lo * 10)
    fig, ax = plt.subplots(figsize=(7.5, 6))
    masked = np.ma.masked_where(~np.isfinite(values) | (values <= 0), values)
    image = ax.imshow(masked, origin="lower", aspect="auto", cmap=_with_undefined(cmap), norm=norm,
                      extent=(*_extent(kills), *_extent(feeds)), interpolation="nearest")
    fig.colorbar(image, ax=ax, label=title)
    _mark(ax, marked)
    _undefined_legend(ax, cmap, int(np.ma.count_masked(masked)), masked.size)
    if landmarks is not None:
        landmarks.draw(ax)
    ax.set_xlabel("kill rate k")
    ax.set_ylabel("feed rate F")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _with_undefined(cmap: str):
    """``cmap`` with its undefined (masked) points in a colour outside its scale (:func:`~rdbench.plots.undefined_colour`)."""
    return plt.get_cmap(cmap).with_extremes(bad=undefined_colour(cmap))


def _undefined_legend(ax, cmap: str, count: int, total: int) -> None:
    """Name the undefined colour under the axes (always, so that a map without one says it has none)."""
    patch = Patch(facecolor=undefined_colour(cmap), edgecolor="0.3", label=f"{UNDEFINED_LABEL}: {count} of {total} points",
                  gid="undefined")
    ax.legend(handles=[patch], loc="upper left", bbox_to_anchor=(0.0, -0.1), frameon=False, fontsize=9)


def mosaic(points: pd.DataFrame, tiles: np.ndarray, marked: Mapping[str, tuple[float, float]],
           landmarks: Landmarks | None = None) -> plt.Figure:
    """The final v of every (F, k) (the lowest seed), each at its place on the plane (Pearson 1993)."""
    first = points.sort_values("seed").drop_duplicates(["feed", "kill"])
    feeds, kills = np.sort(first["feed"].unique()), np.sort(first["kill"].unique())
    tile = tiles.shape[-1]
    canvas = np.full((len(feeds) * tile, len(kills) * tile), np.nan, dtype=np.float32)
    for _, row in first.iterrows():
        i, j = int(np.searchsorted(feeds, row["feed"])), int(np.searchsorted(kills, row["kill"]))
        canvas[i * tile : (i + 1) * tile, j * tile : (j + 1) * tile] = tiles[int(row["point"])][::-1]
    size = min(14.0, max(6.0, 1.0 + 0.35 * max(len(feeds), len(kills))))
    fig, ax = plt.subplots(figsize=(size * 1.15, size))
    image = ax.imshow(np.ma.masked_invalid(canvas), origin="lower", aspect="auto", cmap=_with_undefined("magma"),
                      extent=(*_extent(kills), *_extent(feeds)), interpolation="nearest")
    fig.colorbar(image, ax=ax, label="final v")
    _mark(ax, marked)
    _undefined_legend(ax, "magma", sum(bool(np.isnan(tiles[int(p)]).any()) for p in first["point"]), len(first))
    if landmarks is not None:
        landmarks.draw(ax)
    ax.set_xlabel("kill rate k")
    ax.set_ylabel("feed rate F")
    ax.set_title("final v at every (F, k)", fontsize=10)
    fig.tight_layout()
    return fig


def figures(points: pd.DataFrame, summary: pd.DataFrame, tiles: np.ndarray,
            marked: Mapping[str, tuple[float, float]], landmarks: Landmarks | None = None) -> dict[str, plt.Figure]:
    """Every figure of a map by file stem: the heatmaps of ``summary`` (:func:`summarise` of
    ``points``), the spread (several seeds) and the mosaic, each with the landmarks."""
    out = {stem: heatmap(summary, column, title, cmap, marked, landmarks)
           for stem, (column, title, cmap) in HEATMAPS.items()}
    if points["seed"].nunique() > 1:
        stem, column, title, cmap = SPREAD
        out[stem] = heatmap(summary, column, title, cmap, marked, landmarks)
    out["mosaic_v"] = mosaic(points, tiles, marked, landmarks)
    return out
