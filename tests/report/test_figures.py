"""Fig. 2 and Fig. 3 from the tracking store: a panel per system, seeds, controls apart, published marks, readable."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from matplotlib.patches import Rectangle

from rdbench.cli import main
from rdbench.report.figures import (
    TIME_POINTS,
    control_frames,
    figure_2,
    figure_3,
    final_frame,
    r_t_frame,
)
from rdbench.report.published import load_published

FLAT = 0.05  # a real curve must span at least this fraction of its panel's height


def seed_mean_at(client, run_ids, end, key="R_t_norm"):
    """Mean over runs of the first (``end=0``) or last (``end=-1``) logged value of ``key``, straight from the store."""
    return np.mean([sorted((m.step, m.value) for m in client.get_metric_history(r, key))[end][1] for r in run_ids])


def runs_of_row(cells, row):
    return cells[[f"{s.upper()} {c}" == row for s, c in zip(cells["system"], cells["case"], strict=True)]]["run_id"]


def panels(fig, kind="panel"):
    return {ax.get_gid().split(":", 1)[1]: ax for ax in fig.axes if str(ax.get_gid()).startswith(f"{kind}:")}


def drawn_texts(fig):
    """Every non-empty visible text the renderer draws: titles, labels, tick labels in view, legends, annotations."""
    fig.canvas.draw()
    texts = [t for t in (fig._suptitle, fig._supxlabel, fig._supylabel) if t is not None] + list(fig.texts)
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                if min(lo, hi) <= tick.get_loc() <= max(lo, hi):
                    texts.append(tick.label1)
        legend = ax.get_legend()
        if legend is not None:
            texts += [legend.get_title(), *legend.get_texts()]
    renderer = fig.canvas.get_renderer()
    unique = {id(t): t for t in texts}.values()  # the suptitle is also one of fig.texts
    return [(t.get_text(), t.get_window_extent(renderer)) for t in unique if t.get_visible() and t.get_text()]


def text_collisions(fig):
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(drawn_texts(fig), 2) if box_a.overlaps(box_b)]


def cut_off(fig):
    box = fig.bbox
    return [text for text, b in drawn_texts(fig)
            if b.x0 < box.x0 - 1 or b.x1 > box.x1 + 1 or b.y0 < box.y0 - 1 or b.y1 > box.y1 + 1]


def legends_over_axes(fig):
    """(legend's axes, covered axes) where a legend lies over the plotting area of any panel."""
    renderer = fig.canvas.get_renderer()
    out = []
    for owner in fig.axes:
        if owner.get_legend() is None:
            continue
        legend = owner.get_legend().get_window_extent(renderer)
        out += [(owner.get_gid(), ax.get_gid()) for ax in fig.axes if legend.overlaps(ax.get_window_extent(renderer))]
    return out


def flattened(ax, gids):
    """Lines among ``gids`` whose data span less than FLAT of the panel's height (and are not constant)."""
    out = []
    for line in ax.lines:
        if line.get_gid() not in gids:
            continue
        y = np.asarray(line.get_ydata(), dtype=float)
        if np.ptp(y) <= 1e-9 * max(1.0, np.abs(y).max()):
            continue  # genuinely constant
        to_axes = ax.transData + ax.transAxes.inverted()
        lo, hi = (to_axes.transform([[0.5, v]])[0, 1] for v in (y.min(), y.max()))
        if hi - lo < FLAT:
            out.append((line.get_gid(), round(hi - lo, 4)))
    return out


def test_fig2_has_a_panel_per_system_a_line_per_case_and_a_seed_band(smoke_cells):
    cells, client = smoke_cells.cells, smoke_cells.client
    series = r_t_frame(client, cells)
    assert len(series) == TIME_POINTS * len(cells)
    fig = figure_2(series)
    by_system = panels(fig)
    assert list(by_system) == list(dict.fromkeys(cells["system"]))  # rd, lstm, ddpm, in grid order
    assert not panels(fig, "controls")
    drawn = []
    for system, ax in by_system.items():
        lines = [line for line in ax.lines if line.get_gid() != "balance"]
        assert {line.get_gid().split(" ")[0].lower() for line in lines} == {system}
        drawn += [line.get_gid() for line in lines]
        for line in lines:
            runs = runs_of_row(cells, line.get_gid())
            x, y = line.get_xdata(), line.get_ydata()
            assert x[0] == 0.0 and x[-1] == 1.0 and len(x) == TIME_POINTS
            assert y[0] == pytest.approx(seed_mean_at(client, runs, 0))
            assert y[-1] == pytest.approx(seed_mean_at(client, runs, -1))
            low, high = ax.get_ylim()
            assert low <= y.min() and y.max() <= high
        bands = {c.get_gid() for c in ax.collections}
        assert bands == {f"band:{line.get_gid()}" for line in lines if line.get_gid() in smoke_cells.multi_seed}
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend[: len(lines)] == [line.get_gid() for line in lines]
        assert ax.get_xlim() == (0.0, 1.0) and ax.get_yscale() == "linear"
    assert drawn == smoke_cells.rows and len(smoke_cells.multi_seed) >= 1
    assert len({ax.get_ylim() for ax in by_system.values()}) == len(by_system)  # each panel its own range
    assert fig.axes[-1].get_xlabel().startswith("normalised time t") and fig.get_suptitle().startswith("Fig. 2")
    plt.close(fig)
    fig = figure_2(series, log_scale=True)
    assert {ax.get_yscale() for ax in fig.axes} == {"log"}
    plt.close(fig)


def test_fig2_controls_have_panels_of_their_own_and_leave_the_systems_ranges_alone(smoke_cells):
    cells, client = smoke_cells.cells, smoke_cells.client
    controls = control_frames(client, cells)
    assert {"no_pattern", "untrained", "shuffled"} <= set(controls)  # found from the metric keys
    series = r_t_frame(client, cells)
    alone, fig = figure_2(series), figure_2(series, controls=controls)
    assert list(panels(fig, "controls")) == list(panels(fig)) == list(panels(alone))
    for system, ax in panels(fig).items():
        assert ax.get_ylim() == panels(alone)[system].get_ylim()  # the controls do not set a system's range
        assert not [line for line in ax.lines if str(line.get_gid()).startswith("control:")]
    model = {line.get_gid(): line for ax in panels(fig).values() for line in ax.lines}
    drawn = [line for ax in panels(fig, "controls").values() for line in ax.lines
             if str(line.get_gid()).startswith("control:")]
    expected = {(row, name) for name, frame in controls.items() for row in frame["row"].unique()}
    assert {tuple(line.get_gid().split(":")[1:]) for line in drawn} == expected
    for line in drawn:
        _, row, name = line.get_gid().split(":")
        assert line.get_linestyle() != "-" and line.get_color() == model[row].get_color()
        assert line.axes.get_gid() == f"controls:{row.split(' ')[0].lower()}"
        runs = controls[name][controls[name]["row"] == row]["run_id"].unique()
        assert line.get_ydata()[0] == pytest.approx(seed_mean_at(client, runs, 0, f"control.{name}.R_t_norm"))
    for ax in panels(fig, "controls").values():
        names = {line.get_gid().split(":")[2] for line in ax.lines if str(line.get_gid()).startswith("control:")}
        assert names <= {t.get_text() for t in ax.get_legend().get_texts()}
    plt.close(fig)
    plt.close(alone)


def test_fig3_has_one_bar_per_row_a_dot_per_seed_published_marks_and_the_values(smoke_cells):
    published = load_published()
    cells = smoke_cells.cells
    fig = figure_3(final_frame(cells), published)
    ax = fig.axes[0]
    bars = sorted((p for p in ax.patches if isinstance(p, Rectangle)), key=lambda b: b.get_x())
    assert len(bars) == len(smoke_cells.rows)
    values = {t.get_gid(): t.get_text() for t in ax.texts}
    for bar, row in zip(bars, smoke_cells.rows, strict=True):
        system, case = row.split(" ", 1)
        mean = cells[(cells["system"] == system.lower()) & (cells["case"] == case)]["R_final"].mean()
        assert bar.get_height() == pytest.approx(mean)
        assert values[f"value:{row}"] == f"{mean:.3f}"
    assert [t.get_text() for t in ax.get_xticklabels()] == smoke_cells.rows
    dots = [c for c in ax.collections if c.get_gid() != "published"]
    assert sum(len(c.get_offsets()) for c in dots) == len(cells)  # one dot per cell
    (marks,) = [c for c in ax.collections if c.get_gid() == "published"]
    keys = [(row.split(" ", 1)[0].lower(), row.split(" ", 1)[1]) for row in smoke_cells.rows]
    expected = [published[key].R_final for key in keys if key in published]
    assert len(expected) >= 2
    np.testing.assert_allclose(marks.get_offsets()[:, 1], expected)
    plt.close(fig)


NOTE = ("study 'smoke' [1a2b3c4d]; profile smoke; seeds per row: 2 (RD spot, RD stripe, LSTM sine), 1 (DDPM digits); "
        "not drawn, no FINISHED run: DDPM mnist")  # as long as a study's note gets
FIGURES = {
    "fig2": lambda c, note: figure_2(r_t_frame(c.client, c.cells), title_note=note),
    "fig2-log": lambda c, note: figure_2(r_t_frame(c.client, c.cells), log_scale=True, title_note=note),
    "fig2-controls": lambda c, note: figure_2(r_t_frame(c.client, c.cells), title_note=note,
                                              controls=control_frames(c.client, c.cells)),
    "fig3": lambda c, note: figure_3(final_frame(c.cells), load_published(), title_note=note),
    "fig3-log": lambda c, note: figure_3(final_frame(c.cells), load_published(), title_note=note, log_scale=True),
}


@pytest.mark.parametrize("which", list(FIGURES))
def test_figures_are_readable(smoke_cells, which):
    """No text over other text or cut off, no legend over a panel, no real curve flattened, no label over a marker."""
    fig = FIGURES[which](smoke_cells, NOTE)
    assert drawn_texts(fig) and text_collisions(fig) == []
    assert cut_off(fig) == []
    assert legends_over_axes(fig) == []
    for ax in panels(fig).values():
        assert flattened(ax, set(smoke_cells.rows)) == []
    if which.startswith("fig3"):
        (ax,) = fig.axes
        renderer = fig.canvas.get_renderer()
        labels = [t for t in ax.texts if str(t.get_gid()).startswith("value:")]
        assert len(labels) == len(smoke_cells.rows)
        points = np.concatenate([ax.transData.transform(c.get_offsets()) for c in ax.collections])
        assert len(points) >= len(smoke_cells.cells)  # the seed dots and the published diamonds
        for label in labels:
            box = label.get_window_extent(renderer).padded(3)  # a marker's radius, in pixels
            assert not any(box.contains(x, y) for x, y in points), f"{label.get_text()} covers a marker"
            assert ax.get_window_extent(renderer).contains(*box.p1), f"{label.get_text()} leaves the axes"
    plt.close(fig)


def test_the_readability_checks_catch_a_squashed_curve_and_colliding_text():
    """The checks above can fail: one axis for a curve near 1 and a control climbing to 50, two labels on one spot."""
    fig, ax = plt.subplots()
    t = np.linspace(0, 1, 50)
    ax.plot(t, 1 + 0.02 * np.sin(8 * t), gid="RD spot")
    ax.plot(t, 1 + 50 * t, gid="control:RD spot:no_pattern")
    ax.plot(t, np.full_like(t, 3.0), gid="LSTM flat")
    ax.set_gid("panel:rd")
    ax.text(0.5, 20, "one")
    ax.text(0.5, 20, "two")
    assert [gid for gid, _ in flattened(ax, {"RD spot", "LSTM flat"})] == ["RD spot"]
    assert ("one", "two") in text_collisions(fig)
    plt.close(fig)


def png_width(path):
    return int.from_bytes(path.read_bytes()[16:20], "big")  # the IHDR chunk's width


def test_figures_command_writes_png_and_pdf_and_logs_them(smoke_cells, tmp_path):
    result = CliRunner().invoke(main, ["figures", "--parent", smoke_cells.parent, "--out", str(tmp_path), "--log-scale"])
    assert result.exit_code == 0, result.output
    for stem in ("fig2_R_t", "fig3_R_final"):
        assert (tmp_path / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    assert not (tmp_path / "table1.csv").exists()
    logged = {a.path for a in smoke_cells.client.list_artifacts(smoke_cells.parent, "figures")}
    assert logged == {f"figures/{s}.{e}" for s in ("fig2_R_t", "fig3_R_final") for e in ("png", "pdf")}
    alone = tmp_path / "alone"
    result = CliRunner().invoke(main, ["figures", "--parent", smoke_cells.parent, "--out", str(alone), "--no-controls",
                                       "--no-log"])
    assert result.exit_code == 0, result.output
    assert png_width(alone / "fig2_R_t.png") < png_width(tmp_path / "fig2_R_t.png")  # no column of control panels


def synthetic_series(curves, seeds=(0,)):
    """An r_t_frame of made-up rows: ``{row: values over t}``, each row's system from its first word."""
    t = np.linspace(0.0, 1.0, 11)
    return pd.DataFrame([{"row": row, "system": row.split(" ")[0].lower(), "seed": seed, "run_id": f"{row}-{seed}",
                          "t": x, "R_t": y * (1 + 0.01 * seed)} for row, values in curves.items() for seed in seeds
                         for x, y in zip(t, values(t), strict=True)])


def test_coinciding_series_are_drawn_once_and_named_so():
    curve = lambda t: 1 + 0.3 * np.sin(3 * t)  # noqa: E731
    series = synthetic_series({"RD spot": curve, "RD stripe": curve, "RD near": lambda t: curve(t) * 1.03,
                               "RD apart": lambda t: curve(t) * 1.2})  # 3 % apart is not coinciding
    controls = {name: synthetic_series({"RD spot": lambda t: 0.5 + t, "RD stripe": lambda t: 0.7 + t,
                                        "RD near": lambda t: 0.6 + t, "RD apart": lambda t: 0.6 + t})
                for name in ("oracle", "oracle_uniform")}
    controls["untrained"] = synthetic_series({"RD spot": lambda t: 2 + t})
    fig = figure_2(series, controls=controls)
    ax = panels(fig)["rd"]
    lines = {line.get_gid(): line.get_label() for line in ax.lines if line.get_gid() != "balance"}
    assert lines == {"RD spot": "RD spot = RD stripe (identical)", "RD near": "RD near", "RD apart": "RD apart"}
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "RD spot = RD stripe (identical)" in legend and "RD stripe" not in legend
    side = panels(fig, "controls")["rd"]
    names = {line.get_gid().split(":")[2] for line in side.lines if str(line.get_gid()).startswith("control:")}
    assert names == {"oracle", "untrained"}  # oracle_uniform lies under oracle: not drawn, named in the legend
    assert "oracle = oracle_uniform (identical)" in [t.get_text() for t in side.get_legend().get_texts()]
    plt.close(fig)
    near = synthetic_series({"LSTM a": curve, "LSTM b": lambda t: curve(t) * 1.004})
    fig = figure_2(near)
    (label,) = [line.get_label() for line in panels(fig)["lstm"].lines if line.get_gid() != "balance"]
    assert label == "LSTM a ≈ LSTM b (within 0.4 %)"
    plt.close(fig)


def test_identical_sweep_variances_are_one_line_named_in_the_legend():
    from rdbench.systems.ddpm.sweep import fit_exponents, sweep_figure

    rows = []
    for schedule, scale in (("linear", 1.0), ("cosine", 1.5)):
        for variance, factor in (("fixed_large", 1.0), ("fixed_small", 1.0 if schedule == "linear" else 1.3)):
            for t in (50, 250, 1000):
                r = scale * factor * t ** -0.5
                rows.append({"schedule": schedule, "variance": variance, "timesteps": t, "R": r,
                             "mean_beta": 1.0 / t, "mean_sqrt_beta": t ** -0.5})
    table = pd.DataFrame(rows)
    fig = sweep_figure(table, fit_exponents(table))
    measured = [line for line in fig.axes[0].lines if line.get_gid()]
    assert [line.get_gid() for line in measured] == ["linear:fixed_large", "cosine:fixed_large", "cosine:fixed_small"]
    assert measured[0].get_label().startswith("linear, fixed_large = fixed_small (identical): R ~ T^-0.500")
    assert measured[1].get_label().startswith("cosine, fixed_large: ")  # 30 % apart: two lines
    plt.close(fig)


def test_undefined_phase_points_have_a_colour_outside_the_scale_named_in_the_legend():
    from rdbench.phase.figures import HEATMAPS, heatmap, mosaic
    from rdbench.plots import UNDEFINED_LABEL, scale_distance

    feeds, kills = np.linspace(0.02, 0.05, 3), np.linspace(0.05, 0.06, 2)
    summary = pd.DataFrame([{"feed": f, "kill": k, "R_mean": 1.0 + 0.1 * i, "R_final_mean": 1.0,
                             "abs_R_minus_1_mean": 0.1 * i} for i, (f, k) in enumerate(
                                 (f, k) for f in feeds for k in kills)])
    summary.loc[0, ["R_mean", "abs_R_minus_1_mean"]] = np.nan  # a diverged point
    summary.loc[1, "R_mean"] = 1.0  # R = 1: the centre of coolwarm, light grey, no longer the undefined colour
    for stem, (column, title, cmap) in HEATMAPS.items():
        fig = heatmap(summary, column, title, cmap, {"spot": (0.03, 0.055)})
        ax = fig.axes[0]
        bad = ax.images[0].get_cmap().get_bad()
        assert scale_distance(bad[:3], cmap) > 0.5, (stem, bad)  # far from every colour of the scale
        (patch,) = ax.get_legend().get_patches()
        undefined = int(np.isnan(summary[column]).sum())
        assert ax.get_legend().get_texts()[0].get_text() == f"{UNDEFINED_LABEL}: {undefined} of 6 points"
        assert np.allclose(patch.get_facecolor(), bad)
        assert "grey" not in ax.get_title() and cut_off(fig) == []
        plt.close(fig)
    points = pd.DataFrame([{"feed": f, "kill": k, "seed": 0, "point": i}
                           for i, (f, k) in enumerate((f, k) for f in feeds for k in kills)])
    tiles = np.ones((len(points), 4, 4), dtype=np.float32)
    tiles[2] = np.nan
    fig = mosaic(points, tiles, {})
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == f"{UNDEFINED_LABEL}: 1 of 6 points"
    assert scale_distance(fig.axes[0].images[0].get_cmap().get_bad()[:3], "magma") > 0.5
    plt.close(fig)


def test_the_note_counts_seeds_per_row_names_the_study_and_the_rows_it_lacks(smoke_cells):
    from rdbench.report.publish import Report, seeds_note
    from rdbench.report.selection import Selection
    from rdbench.report.table import build_table

    published = load_published()
    cells = smoke_cells.cells.copy()
    table = build_table(cells, published)
    assert seeds_note(table) == "seeds per row: 2 (RD spot, RD stripe, LSTM sine), 1 (DDPM digits)"
    assert seeds_note(table[table["n_seeds"] == 2]) == "2 seeds per row"
    cells.loc[cells["system"] == "ddpm", "status"] = "KILLED"  # as in the offline grid: DDPM never finished
    selection = Selection("e", "d", "p" * 32, study="smoke", study_id="1a2b3c4d", missing=["ddpm/mnist/seed=0"])
    report = Report(selection, cells, build_table(cells, published), published)
    assert report.note == ("study 'smoke' [1a2b3c4d]; profile smoke; 2 seeds per row; "
                           "not drawn, no FINISHED run: DDPM digits, DDPM mnist")
    fig = figure_2(r_t_frame(smoke_cells.client, cells), title_note=report.note)
    assert "not drawn, no FINISHED run: DDPM digits" in fig.get_suptitle().replace("\n", " ")
    assert cut_off(fig) == []
    plt.close(fig)


def test_fig3_on_a_log_axis_keeps_small_bars_readable():
    """RD's R_final of 28.8 in a short run flattens every other bar on a linear axis, not on --log-scale's."""
    finals = pd.DataFrame([
        {"row": row, "system": system, "case": case, "variant": case, "seed": 0, "run_id": row, "R_final": value}
        for row, system, case, value in (("RD spot", "rd", "spot", 28.8), ("LSTM sine", "lstm", "sine", 1.01),
                                         ("DDPM digits", "ddpm", "digits", 0.64))])

    def smallest_bar_height(fig):
        ax = fig.axes[0]
        fig.canvas.draw()
        bars = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_width() > 0]
        heights = [p.get_window_extent().height for p in bars]
        return min(heights) / ax.get_window_extent().height

    linear = figure_3(finals, load_published(), title_note=NOTE)
    log = figure_3(finals, load_published(), title_note=NOTE, log_scale=True)
    assert linear.axes[0].get_yscale() == "linear" and log.axes[0].get_yscale() == "log"
    assert smallest_bar_height(linear) < 0.05 < smallest_bar_height(log)
    for fig in (linear, log):
        assert cut_off(fig) == [] and text_collisions(fig) == []
        plt.close(fig)
