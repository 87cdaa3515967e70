"""The convergence map's comparison (hand-made tables) and the landmarks drawn on every figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from rdbench.phase.compare import compare_points, count_table, label_change_figure
from rdbench.phase.figures import heatmap
from rdbench.phase.landmarks import Landmarks
from rdbench.study.cells import plugin
from rdbench.systems.grayscott_stability import saddle_node_kill


def table(labels, rs):
    feeds, kills = np.meshgrid([0.03, 0.06], [0.035, 0.06], indexing="ij")
    return pd.DataFrame({"feed": feeds.ravel(), "kill": kills.ravel(), "seed": 0, "label": labels, "R": rs})


FIRST = table(["spots", "unstable", "none", "stripes-labyrinth"], [1.01, 1.5, 2.0, 1.02])
SECOND = table(["spots", "none", "none", "spots"], [1.0101, 1.9, np.nan, 1.02])


def test_compare_points_pairs_the_rows_and_measures_the_change():
    both = compare_points(FIRST, SECOND.sample(frac=1, random_state=0))  # order does not matter
    assert list(both["changed"]) == [False, True, False, True]
    assert both["abs_dR"].iloc[0] == pytest.approx(1e-4) and both["abs_dR"].iloc[1] == pytest.approx(0.4)
    assert np.isnan(both["abs_dR"].iloc[2])  # undefined in one map: undefined change


def test_the_count_table_crosses_the_labels_with_totals():
    counts = count_table(compare_points(FIRST, SECOND)).set_index("first \\ second")
    assert counts.loc["unstable", "none"] == 1 and counts.loc["stripes-labyrinth", "spots"] == 1
    assert counts.loc["total", "total"] == 4 and counts.loc["spots", "total"] == 1


def settings():
    found = plugin("rd")
    return found.config.resolve("spot", "paper", {}, found.system.Settings)


def test_the_landmarks_are_drawn_on_the_figures():
    both = compare_points(FIRST, SECOND)
    landmarks = Landmarks(settings(), resolution=12)
    fig = label_change_figure(both, "scheme=etdrk4", {"spot": (0.029, 0.062)}, landmarks)
    ax = fig.axes[0]
    (saddle,) = [line for line in ax.get_lines() if line.get_label().startswith("saddle-node")]
    feeds = saddle.get_ydata()
    assert saddle.get_xdata() == pytest.approx(saddle_node_kill(feeds))
    assert any(line.get_label().startswith("Euler stability boundary") for line in ax.get_lines())
    assert ax.collections  # the contour of the estimate at 1
    plt.close(fig)
    summary = FIRST.assign(R_mean=FIRST["R"])
    fig = heatmap(summary, "R_mean", "R", "coolwarm", {}, landmarks)
    assert any(line.get_label().startswith("saddle-node") for line in fig.axes[0].get_lines())
    plt.close(fig)


def test_the_boundary_separates_the_unstable_corner():
    landmarks = Landmarks(settings(), resolution=6)
    feeds, kills, amplification = landmarks.boundary((0.01, 0.08), (0.03, 0.07))
    assert amplification[-1, 0] > 1 > amplification[0, -1]  # high F, low k unstable; low F, high k stable
    assert landmarks.boundary((0.01, 0.08), (0.03, 0.07))[2] is amplification  # computed once
    etdrk4 = Landmarks(settings().model_copy(update={"scheme": "etdrk4"}), resolution=6)
    fig, ax = plt.subplots()
    ax.set_xlim(0.03, 0.07)
    ax.set_ylim(0.01, 0.08)
    etdrk4.draw(ax)
    assert [line.get_label() for line in ax.get_lines()] == ["saddle-node k = sqrt(F)/2 - F"]  # no Euler bound
    plt.close(fig)
