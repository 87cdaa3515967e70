"""A convergence map: the same points under a second setting, compared with the first, in the first map's run.

``rdbench phase rd ... --compare scheme=etdrk4`` (or ``dt=1``, repeatable for one second
setting of several keys) runs the map twice, the second map as a child run of the first,
and logs into the first map's run, under ``phase/compare/``:

* ``points.csv``: every (F, k, seed) with both labels, both R and ``abs_dR`` = |R_b - R_a|;
* ``counts.csv``: the count table, labels of the first map (rows) against the second's (columns);
* ``label_changes.png``: the points whose label changes, each marked ``first -> second``;
* ``abs_dR.png``: |Delta R| over (k, F) on a log colour scale;

and the metrics ``compare_points``, ``compare_label_changed`` and ``compare_abs_dR_median``, the
tags ``rdbench.compare`` (the second setting) and ``rdbench.compare_run`` (the child run). A point undefined in either map (diverged, R NaN) has an undefined |Delta R|.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rdbench.phase.figures import _extent, _mark, heatmap  # noqa: E402
from rdbench.phase.landmarks import Landmarks  # noqa: E402
from rdbench.phase.record import log_frame  # noqa: E402
from rdbench.tracking.runs import TrackedRun  # noqa: E402
from rdbench.tracking.store import quiet_downloads, retrying  # noqa: E402

FOLDER = "phase/compare"
KEYS = ["feed", "kill", "seed"]
TAG_COMPARE, TAG_COMPARE_RUN = "rdbench.compare", "rdbench.compare_run"


def points_of(client, run_id: str) -> pd.DataFrame:
    """A finished map's table (``phase/points.csv``)."""
    with tempfile.TemporaryDirectory() as tmp, quiet_downloads():
        return pd.read_csv(retrying(lambda: client.download_artifacts(run_id, "phase/points.csv", tmp), "read"))


def compare_points(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """One row per (F, k, seed): both labels, both R, |Delta R| and whether the label changed."""
    a = first[[*KEYS, "label", "R"]].rename(columns={"label": "label_a", "R": "R_a"})
    b = second[[*KEYS, "label", "R"]].rename(columns={"label": "label_b", "R": "R_b"})
    both = a.merge(b, on=KEYS, how="inner", validate="one_to_one").sort_values(KEYS, ignore_index=True)
    both["abs_dR"] = (both["R_b"] - both["R_a"]).abs()
    both["changed"] = both["label_a"] != both["label_b"]
    return both


def count_table(both: pd.DataFrame) -> pd.DataFrame:
    """Labels of the first map (rows) against the second's (columns), with totals."""
    table = pd.crosstab(both["label_a"], both["label_b"], margins=True, margins_name="total")
    table.index.name, table.columns.name = "first \\ second", None
    return table.reset_index()


def label_change_figure(both: pd.DataFrame, what: str, marked: Mapping[str, tuple[float, float]],
                        landmarks: Landmarks | None) -> plt.Figure:
    """The (k, F) plane: grey where the label holds, coloured by the pair where it changes (lowest seed)."""
    first = both.sort_values("seed").drop_duplicates(["feed", "kill"])
    feeds, kills = np.sort(first["feed"].unique()), np.sort(first["kill"].unique())
    pairs = sorted({f"{a} -> {b}" for a, b, c in zip(first["label_a"], first["label_b"], first["changed"],
                                                   strict=True) if c})
    codes = np.zeros((len(feeds), len(kills)))
    for _, row in first.iterrows():
        i, j = int(np.searchsorted(feeds, row["feed"])), int(np.searchsorted(kills, row["kill"]))
        codes[i, j] = 1 + pairs.index(f"{row['label_a']} -> {row['label_b']}") if row["changed"] else 0
    colours = ["lightgrey", *[plt.get_cmap("tab10")(i % 10) for i in range(len(pairs))]]
    cmap = matplotlib.colors.ListedColormap(colours)
    fig, ax = plt.subplots(figsize=(7.5, 6))
    ax.imshow(codes, origin="lower", aspect="auto", cmap=cmap, vmin=-0.5, vmax=len(colours) - 0.5,
              extent=(*_extent(kills), *_extent(feeds)), interpolation="nearest")
    _mark(ax, marked)
    if landmarks is not None:
        landmarks.draw(ax)
    handles = [matplotlib.patches.Patch(color=colours[i + 1], label=f"{pair} ({sum(both['label_a'] + ' -> ' + both['label_b'] == pair)})")
               for i, pair in enumerate(pairs)]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8)
        fig.subplots_adjust(bottom=0.12 + 0.03 * ((len(handles) + 1) // 2))
    ax.set_xlabel("kill rate k")
    ax.set_ylabel("feed rate F")
    ax.set_title(f"label changes under {what}: {int(both['changed'].sum())} of {len(both)} points "
                 f"(grey: unchanged)", fontsize=10)
    return fig


def log_comparison(run: TrackedRun, first: pd.DataFrame, second: pd.DataFrame, what: str, compare_run_id: str,
                   marked: Mapping[str, tuple[float, float]], landmarks: Landmarks | None) -> pd.DataFrame:
    """Log the comparison of two maps' tables into ``run`` (module docstring); return the count table."""
    both = compare_points(first, second)
    counts = count_table(both)
    log_frame(run, both, f"{FOLDER}/points.csv")
    log_frame(run, counts, f"{FOLDER}/counts.csv")
    per_point = both.groupby(["feed", "kill"], as_index=False)["abs_dR"].mean()
    figures = {
        "label_changes": label_change_figure(both, what, marked, landmarks),
        "abs_dR": heatmap(per_point, "abs_dR", f"|R - R({what})|, mean over seeds", "viridis", marked, landmarks),
    }
    for stem, fig in figures.items():
        run.log_figure(fig, f"{FOLDER}/{stem}.png")
        plt.close(fig)
    finite = both["abs_dR"].dropna()
    run.log_metrics({"compare_points": len(both), "compare_label_changed": int(both["changed"].sum()),
                     **({"compare_abs_dR_median": float(finite.median())} if len(finite) else {})})
    run.set_tags({TAG_COMPARE: what, TAG_COMPARE_RUN: compare_run_id})
    return counts

