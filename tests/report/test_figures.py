"""Fig. 2 and Fig. 3 from the tracking store: one line or bar per row, seeds, published marks, readable."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.collections import PolyCollection
from matplotlib.patches import Rectangle

from rdbench.cli import main
from rdbench.report.figures import TIME_POINTS, figure_2, figure_3, final_frame, r_t_frame
from rdbench.report.published import load_published


def seed_mean_at(client, run_ids, end):
    """Mean over runs of the first (``end=0``) or last (``end=-1``) logged R_t_norm, straight from the store."""
    return np.mean([sorted((m.step, m.value) for m in client.get_metric_history(r, "R_t_norm"))[end][1]
                    for r in run_ids])


def test_fig2_has_one_line_per_row_and_a_seed_band(smoke_cells):
    series = r_t_frame(smoke_cells.client, smoke_cells.cells)
    assert len(series) == TIME_POINTS * len(smoke_cells.cells)
    fig = figure_2(series)
    ax = fig.axes[0]
    lines = [line for line in ax.lines if line.get_gid() != "balance"]
    assert [line.get_gid() for line in lines] == smoke_cells.rows
    for line in lines:
        runs = smoke_cells.cells[[f"{s.upper()} {c}" == line.get_gid()
                            for s, c in zip(smoke_cells.cells["system"], smoke_cells.cells["case"], strict=True)]]["run_id"]
        x, y = line.get_xdata(), line.get_ydata()
        assert x[0] == 0.0 and x[-1] == 1.0 and len(x) == TIME_POINTS
        assert y[0] == pytest.approx(seed_mean_at(smoke_cells.client, runs, 0))
        assert y[-1] == pytest.approx(seed_mean_at(smoke_cells.client, runs, -1))
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == len(smoke_cells.multi_seed) >= 1  # a row with several seeds gets a band (their range)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[: len(smoke_cells.rows)] == smoke_cells.rows and "band: range over seeds" in ax.get_legend().get_title().get_text()
    assert ax.get_xlabel() == "normalised time t" and "R_t" in ax.get_ylabel() and ax.get_title().startswith("Fig. 2")
    assert ax.get_yscale() == "linear"
    plt.close(fig)
    fig = figure_2(series, log_scale=True)
    assert fig.axes[0].get_yscale() == "log"
    plt.close(fig)


def test_fig3_has_one_bar_per_row_a_dot_per_seed_and_published_marks(smoke_cells):
    published = load_published()
    finals = final_frame(smoke_cells.cells)
    fig = figure_3(finals, published)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == len(smoke_cells.rows)
    for bar, row in zip(sorted(bars, key=lambda b: b.get_x()), smoke_cells.rows, strict=True):
        system, case = row.split(" ", 1)
        values = smoke_cells.cells[(smoke_cells.cells["system"] == system.lower()) & (smoke_cells.cells["case"] == case)]["R_final"]
        assert bar.get_height() == pytest.approx(values.mean())
    assert [t.get_text() for t in ax.get_xticklabels()] == smoke_cells.rows
    dots = [c for c in ax.collections if c.get_gid() != "published"]
    assert sum(len(c.get_offsets()) for c in dots) == len(smoke_cells.cells)  # one dot per cell
    (marks,) = [c for c in ax.collections if c.get_gid() == "published"]
    keys = [(row.split(" ", 1)[0].lower(), row.split(" ", 1)[1]) for row in smoke_cells.rows]
    expected = [published[key].R_final for key in keys if key in published]
    assert len(expected) >= 2
    np.testing.assert_allclose(marks.get_offsets()[:, 1], expected)
    plt.close(fig)


def _boxes(fig, artists):
    renderer = fig.canvas.get_renderer()
    return [a.get_window_extent(renderer) for a in artists if a.get_visible() and a.get_text()]


@pytest.mark.parametrize("which", ["fig2", "fig3"])
def test_no_text_overlaps(smoke_cells, which):
    if which == "fig2":
        fig = figure_2(r_t_frame(smoke_cells.client, smoke_cells.cells), title_note="grid 'smoke_cells'; profile smoke_cells")
    else:
        fig = figure_3(final_frame(smoke_cells.cells), load_published(), title_note="grid 'smoke_cells'; profile smoke_cells")
    fig.canvas.draw()
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    ticks = _boxes(fig, ax.get_xticklabels())
    for a, b in itertools.combinations(ticks, 2):
        assert not a.overlaps(b), "x tick labels overlap"
    legend = ax.get_legend().get_window_extent(renderer)
    assert not legend.overlaps(ax.get_window_extent(renderer)), "legend covers the plot"
    figure_box = fig.bbox
    for text in [ax.title, ax.xaxis.label, ax.yaxis.label]:
        box = text.get_window_extent(renderer)
        assert figure_box.x0 - 1 <= box.x0 and box.x1 <= figure_box.x1 + 1, f"{text.get_text()!r} is cut off"
        assert figure_box.y0 - 1 <= box.y0 and box.y1 <= figure_box.y1 + 1, f"{text.get_text()!r} is cut off"
    assert legend.x1 <= figure_box.x1 + 1, "legend is cut off"
    plt.close(fig)


def test_figures_command_writes_png_and_pdf_and_logs_them(smoke_cells, tmp_path):
    result = CliRunner().invoke(main, ["figures", "--parent", smoke_cells.parent, "--out", str(tmp_path), "--log-scale"])
    assert result.exit_code == 0, result.output
    for stem in ("fig2_R_t", "fig3_R_final"):
        assert (tmp_path / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    assert not (tmp_path / "table1.csv").exists()
    logged = {a.path for a in smoke_cells.client.list_artifacts(smoke_cells.parent, "figures")}
    assert logged == {f"figures/{s}.{e}" for s in ("fig2_R_t", "fig3_R_final") for e in ("png", "pdf")}


def test_fig2_draws_each_control_dashed_in_its_rows_colour(smoke_cells):
    from rdbench.report.figures import control_frames

    controls = control_frames(smoke_cells.client, smoke_cells.cells)
    assert {"no_pattern", "untrained", "shuffled"} <= set(controls)  # found from the metric keys
    fig = figure_2(r_t_frame(smoke_cells.client, smoke_cells.cells), controls=controls)
    ax = fig.axes[0]
    model = {line.get_gid(): line for line in ax.lines if line.get_gid() in smoke_cells.rows}
    drawn = [line for line in ax.lines if str(line.get_gid()).startswith("control:")]
    expected = {(row, name) for name, frame in controls.items() for row in frame["row"].unique()}
    assert {tuple(line.get_gid().split(":")[1:]) for line in drawn} == expected
    for line in drawn:
        _, row, name = line.get_gid().split(":")
        assert line.get_linestyle() != "-" and line.get_color() == model[row].get_color()
        runs = controls[name][controls[name]["row"] == row]["run_id"].unique()
        first = np.mean([sorted((m.step, m.value) for m in smoke_cells.client.get_metric_history(
            r, f"control.{name}.R_t_norm"))[0][1] for r in runs])
        assert line.get_ydata()[0] == pytest.approx(first)
    assert f"{smoke_cells.rows[0]}: " in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    plt.close(fig)
