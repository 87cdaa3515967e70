"""Fig. 2 and Fig. 3 of the paper, redrawn with seaborn from the tracking store.

* Fig. 2: the Dynamic Balance Ratio R_t (Eq. 20) against normalised time
  t = step / last step in [0, 1], one panel per system (RD, LSTM, DDPM) stacked on
  one shared time axis, each panel with its own y range (its curves, taking in the
  balance line R_t = 1 when that keeps them on a quarter of the height or more). A
  line per case is the mean over seeds, a band the seeds' range. Each cell's
  ``R_t_norm`` series (logged at steps round(1000 t)) is interpolated onto the
  common time axis first, so seeds whose runs stopped at different steps
  (Gray-Scott's early stop) still line up. The time axis is normalised because
  the systems' own steps (Gray-Scott iterations, LSTM epochs, DDPM noise levels)
  are not comparable. Controls (``control.<name>.R_t_norm``) are drawn, when asked
  for, in a second column of panels (one per system, beside its model panel, the
  model's mean as a thin solid reference, a log axis when they span more than a
  factor of ``CONTROL_LOG_RATIO``), so they never set the range of a model panel.
* Fig. 3: the final value of R_t per system and case as bars (mean over seeds),
  each seed as a dot and the published value as a black diamond; the mean's value
  is written above the highest of the bar, its dots and its diamond, in dark text
  with a white outline, so it collides with neither. ``--log-scale`` puts it on a
  log axis too.
* Series that coincide (cases of one panel, or controls in every row of a system) are
  drawn once, the legend naming them all (:mod:`rdbench.plots`); the title note (the
  study, its profile, the seeds of each row) is wrapped to the figure's width.

This module reads only the store (through the cells frame and the client's metric
history) and never imports a system.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib import ticker as mticker  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from rdbench.plots import merge_coinciding  # noqa: E402
from rdbench.report.published import Published  # noqa: E402
from rdbench.report.table import SYSTEM_NAMES, control_names, row_keys, row_name  # noqa: E402
from rdbench.tracking.runs import NORMALISED_STEPS  # noqa: E402

FIGURE_FILES = ("fig2_R_t", "fig3_R_final")
TIME_POINTS = 501  # common normalised-time axis of Fig. 2
PANEL_MARGIN = 0.06  # of a panel's data range, above and below
BALANCE_SPAN = 4.0  # a panel takes in R_t = 1 if its data still fill 1/4 of the height
CONTROL_LOG_RATIO = 20.0  # a controls panel is drawn on a log axis when its lines span more than this factor
CONTROL_STYLES = ("--", (0, (1, 1)), (0, (4, 1, 1, 1)), (0, (6, 2)))
VALUE_LABEL_GAP = 4  # points between Fig. 3's highest marker of a bar and its value label
TITLE_CHARS_PER_INCH = 12  # a title note is wrapped to the figure's width at this many characters per inch
LOG_HEADROOM = 1.6  # Fig. 3 on a log axis: the top of the axis at this factor above the highest marker


def title(text: str, note: str, width_in: float) -> str:
    """``text``, then ``note`` wrapped to the figure's width (a long study note is never cut off)."""
    if not note:
        return text
    return text + "\n" + textwrap.fill(note, width=max(40, int(TITLE_CHARS_PER_INCH * width_in)))


def r_t_frame(client, cells: pd.DataFrame, points: int = TIME_POINTS, prefix: str = "") -> pd.DataFrame:
    """R_t of every FINISHED cell on a common normalised time axis (long form).

    Columns: row, system, seed, run_id, t, R_t. ``prefix`` ``"control.<name>."``
    reads a control's series instead of the model's (cells without it are left out).
    """
    grid = np.linspace(0.0, 1.0, points)
    parts = []
    for _, cell in cells[cells["status"] == "FINISHED"].iterrows():
        history = client.get_metric_history(cell["run_id"], prefix + "R_t_norm")
        if not history:
            continue
        steps = np.array([m.step for m in history], dtype=float)
        values = np.array([m.value for m in history], dtype=float)
        order = np.argsort(steps, kind="stable")
        t, r = steps[order] / NORMALISED_STEPS, values[order]
        parts.append(
            pd.DataFrame(
                {
                    "row": row_name(cell["system"], cell["variant"]),
                    "system": cell["system"],
                    "seed": cell["seed"],
                    "run_id": cell["run_id"],
                    "t": grid,
                    "R_t": np.interp(grid, t, r) if len(t) > 1 else np.full(points, r[-1]),
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=["row", "system", "seed", "run_id", "t", "R_t"])
    return pd.concat(parts, ignore_index=True)


def control_frames(client, cells: pd.DataFrame, points: int = TIME_POINTS) -> dict[str, pd.DataFrame]:
    """R_t of each control found in the metric keys (``control.<name>.R``), per control name."""
    frames = {}
    for name in control_names(list(cells.columns)):
        frame = r_t_frame(client, cells, points, prefix=f"control.{name}.")
        if len(frame):
            frames[name] = frame
    return frames


def _palette(rows: Sequence[str]) -> dict[str, tuple]:
    colours = sns.color_palette("tab10" if len(rows) <= 10 else "husl", len(rows))
    return dict(zip(rows, colours, strict=True))


def _mean_and_range(part: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """t, the mean over seeds of R_t, and its minimum and maximum over seeds."""
    stats = part.groupby("t")["R_t"].agg(["mean", "min", "max"])
    return stats.index.to_numpy(), stats["mean"].to_numpy(), stats["min"].to_numpy(), stats["max"].to_numpy()


def _panel_limits(values: Sequence[np.ndarray], log_scale: bool) -> tuple[float, float]:
    """y range of a model panel: its curves and bands with a margin of ``PANEL_MARGIN``, widened
    to take in R_t = 1 when the data still fill 1/``BALANCE_SPAN`` of the height (log10 space on a log axis)."""
    data = np.concatenate([np.asarray(v, dtype=float) for v in values])
    data = data[np.isfinite(data) & ((data > 0) if log_scale else True)]
    if len(data) == 0:
        return (0.5, 2.0) if log_scale else (0.0, 2.0)
    f, inv = (np.log10, lambda v: float(10.0**v)) if log_scale else (float, float)
    lo, hi = f(data.min()), f(data.max())
    one = f(1.0)
    wide_lo, wide_hi = min(lo, one), max(hi, one)
    if wide_hi - wide_lo <= BALANCE_SPAN * (hi - lo):
        lo, hi = wide_lo, wide_hi
    pad = PANEL_MARGIN * (hi - lo) if hi > lo else PANEL_MARGIN * max(abs(lo), 1.0)
    return inv(lo - pad), inv(hi + pad)


def _log_axis(ax: plt.Axes) -> None:
    """A log R_t axis labelled in plain numbers at 1, 2 and 5 of each decade (a panel often spans less than one)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(mticker.NullFormatter())


def _legend(ax: plt.Axes, title: str | None = None, **kwargs: Any) -> None:
    ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              fontsize="small", title_fontsize="small", **kwargs)


def _model_panel(ax: plt.Axes, series: pd.DataFrame, palette: dict[str, tuple], log_scale: bool) -> None:
    """One system's cases (mean over seeds, seeds' range as a band), the y range set by them alone.

    Cases whose means coincide (:func:`~rdbench.plots.merge_coinciding`) are drawn once, as the
    first of them, and the legend names them all (``RD spot = RD stripe (identical)``)."""
    values, banded = [], False
    stats = {row: _mean_and_range(part) for row, part in series.groupby("row", sort=False)}
    labels = merge_coinciding({row: s[1] for row, s in stats.items()})
    for row, part in series.groupby("row", sort=False):
        if row not in labels:
            continue
        t, mean, low, high = stats[row]
        if part["seed"].nunique() > 1:
            ax.fill_between(t, low, high, color=palette[row], alpha=0.25, linewidth=0, gid=f"band:{row}")
            values += [low, high]
            banded = True
        ax.plot(t, mean, color=palette[row], linewidth=1.6, label=labels[row], gid=row)
        values.append(mean)
    if log_scale:
        _log_axis(ax)
    ax.set_ylim(*_panel_limits(values, log_scale))
    low, high = ax.get_ylim()
    if low <= 1.0 <= high:
        ax.axhline(1.0, color="0.3", linewidth=0.9, linestyle=":", label="R_t = 1 (balance)", gid="balance")
    _legend(ax, "case" + ("\n(band: range over seeds)" if banded else ""))


def _controls_panel(
    ax: plt.Axes, series: pd.DataFrame, controls: dict[str, pd.DataFrame], palette: dict[str, tuple],
    log_scale: bool,
) -> None:
    """One system's controls (mean over seeds) in its rows' colours, the model's mean as a thin reference."""
    rows = list(dict.fromkeys(series["row"]))
    drawn = []
    for row in rows:
        t, mean, _, _ = _mean_and_range(series[series["row"] == row])
        ax.plot(t, mean, color=palette[row], linewidth=0.9, alpha=0.7, gid=f"reference:{row}")
    handles = [Line2D([], [], color="0.3", linewidth=0.9, label="model (mean)")]
    means = {name: {row: _mean_and_range(part)[:2] for row, part in frame[frame["row"].isin(rows)]
                    .groupby("row", sort=False)} for name, frame in controls.items()}
    means = {name: by_row for name, by_row in means.items() if by_row}
    # controls that coincide in every row of this system are drawn once, the legend naming them all
    labels = merge_coinciding({name: np.concatenate([by_row[r][1] if r in by_row else np.full(1, np.nan)
                                                     for r in rows]) for name, by_row in means.items()})
    for k, (name, by_row) in enumerate(means.items()):
        if name not in labels:
            continue
        style = CONTROL_STYLES[k % len(CONTROL_STYLES)]
        for row, (t, mean) in by_row.items():
            ax.plot(t, mean, color=palette[row], linewidth=1.1, linestyle=style, gid=f"control:{row}:{name}")
            drawn.append(mean)
        handles.append(Line2D([], [], color="0.3", linewidth=1.1, linestyle=style, label=labels[name],
                              gid=f"legend:{name}"))
    values = np.concatenate(drawn) if drawn else np.array([1.0])
    positive = values[np.isfinite(values)]
    if log_scale or (positive.min() > 0 and positive.max() / positive.min() > CONTROL_LOG_RATIO):
        _log_axis(ax)
    _legend(ax, "control (colour: case)", handles=handles)


def figure_2(
    series: pd.DataFrame,
    log_scale: bool = False,
    title_note: str = "",
    controls: dict[str, pd.DataFrame] | None = None,
) -> plt.Figure:
    """R_t over normalised time: a panel per system on a shared time axis, each with its own y range.

    ``controls`` (name -> frame from :func:`control_frames`), when given and not
    empty, adds a column of panels: one per system, beside its model panel, with
    each control a line of its own style in the colour of its row. Axes carry gids
    ``panel:<system>`` and ``controls:<system>``; lines ``<row>``, ``band:<row>``,
    ``control:<row>:<name>``, ``reference:<row>`` and ``balance``.
    """
    rows = list(dict.fromkeys(series["row"]))
    systems = list(dict.fromkeys(series["system"]))
    palette = _palette(rows)
    controls = {k: v for k, v in (controls or {}).items() if len(v)}
    ncols = 2 if controls else 1
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(
        max(len(systems), 1), ncols, sharex=True, squeeze=False, layout="constrained",
        figsize=(6.2 * ncols + 1.8, 2.3 * max(len(systems), 1) + 0.9),
    )
    for i, system in enumerate(systems):
        name = SYSTEM_NAMES.get(system, system)
        mine = series[series["system"] == system]
        ax = axes[i, 0]
        ax.set_gid(f"panel:{system}")
        _model_panel(ax, mine, palette, log_scale)
        ax.set_title(name, loc="left", fontsize="medium", fontweight="bold")
        ax.set_ylabel("R_t" + (" (log)" if log_scale else ""))
        if controls:
            ax = axes[i, 1]
            ax.set_gid(f"controls:{system}")
            _controls_panel(ax, mine, controls, palette, log_scale)
            ax.set_title(f"{name}: controls", loc="left", fontsize="medium")
            ax.set_ylabel("R_t" + (" (log)" if ax.get_yscale() == "log" else ""))
    for ax in axes[-1]:
        ax.set_xlim(0, 1)
        ax.set_xlabel("normalised time t = step / last step")
    fig.suptitle(title("Fig. 2: Dynamic Balance Ratio R_t = M_react,t / M_diff,t", title_note,
                       fig.get_figwidth()))
    return fig


def final_frame(cells: pd.DataFrame) -> pd.DataFrame:
    """R_final of every FINISHED cell with its row name, rows in table order."""
    keys = row_keys(cells)
    done = cells[cells["status"] == "FINISHED"].copy()
    done["row"] = [row_name(s, v) for s, v in zip(done["system"], done["variant"], strict=True)]
    order = {row_name(s, v): i for i, (s, v, _) in enumerate(keys)}
    done["order"] = done["row"].map(order)
    return done.sort_values(["order", "seed"])[["row", "system", "case", "variant", "seed", "run_id", "R_final"]]


def figure_3(
    finals: pd.DataFrame, published: Published, title_note: str = "", log_scale: bool = False
) -> plt.Figure:
    """Final R_t per row as bars (mean over seeds), seeds as dots, published values marked, the mean written
    above the highest of them (annotations with gid ``value:<row>``). ``log_scale``: a logarithmic R axis,
    so that one large row (RD's R_final can reach 30 in short runs) does not flatten the others."""
    rows = list(dict.fromkeys(finals["row"]))
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 3.0), 5.2), layout="constrained")
    palette = _palette(rows)
    sns.barplot(
        data=finals, x="row", y="R_final", order=rows, hue="row", hue_order=rows, palette=palette,
        estimator="mean", errorbar=None, legend=False, ax=ax, alpha=0.85,
    )
    multi = finals.groupby("row")["seed"].nunique().max() > 1
    if multi:
        sns.stripplot(
            data=finals, x="row", y="R_final", order=rows, color="0.15", size=4, jitter=0.15,
            ax=ax, legend=False,
        )
    firsts = finals.drop_duplicates("row").set_index("row")
    xs, ys = [], []
    for i, row in enumerate(rows):
        ref = published.get((firsts.loc[row, "system"], firsts.loc[row, "variant"]))
        if ref is not None:
            xs.append(i)
            ys.append(ref.R_final)
    if xs:
        ax.scatter(xs, ys, marker="D", s=40, color="black", zorder=5, label="published (paper, Fig. 3)", gid="published")
    tops = finals.groupby("row")["R_final"].max().reindex(rows).to_numpy(dtype=float, copy=True)
    means = finals.groupby("row")["R_final"].mean().reindex(rows).to_numpy(dtype=float, copy=True)
    for x, y in zip(xs, ys, strict=True):
        tops[x] = max(tops[x], y)
    if log_scale:
        _log_axis(ax)
    for i, (top, mean) in enumerate(zip(tops, means, strict=True)):
        ax.annotate(
            f"{mean:.3f}", (i, max(top, mean, 0.0)), xytext=(0, VALUE_LABEL_GAP + 3), textcoords="offset points",
            ha="center", va="bottom", fontsize=8, fontweight="bold", color="0.1", gid=f"value:{rows[i]}",
            path_effects=[patheffects.withStroke(linewidth=2.5, foreground="white")], zorder=6,
        )
    high = max(float(np.nanmax(tops)), 1.0)
    if log_scale:  # bars rise from the bottom of the axis; room above for the value labels, in decades
        values = finals["R_final"].to_numpy(dtype=float)
        low = min(float(np.nanmin(values[values > 0])) if (values > 0).any() else 1.0, 1.0) / LOG_HEADROOM
        ax.set_ylim(low, high * LOG_HEADROOM)
    else:
        low = min(0.0, float(np.nanmin(finals["R_final"])))
        ax.set_ylim(low, high + 0.16 * (high - low))  # room for the value labels above the highest markers
    ax.axhline(1.0, color="0.3", linewidth=0.9, linestyle=":", label="R = 1 (balance)")
    ax.set_xlabel("system / case")
    ax.set_ylabel("final R_t (t = 1)" + (" (log)" if log_scale else ""))
    # over the whole figure, as Fig. 2's (the axes leave room for the legend: a title over them alone is cut)
    fig.suptitle(title("Fig. 3: final value of the Dynamic Balance Ratio", title_note, fig.get_figwidth()))
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    handles, labels = ax.get_legend_handles_labels()
    if multi:
        handles.append(Line2D([], [], marker="o", color="0.15", linestyle="", markersize=4))
        labels.append("one seed")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def save_figure(fig: plt.Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """PNG (150 dpi) and PDF of ``fig`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths


def draw_figures(
    client: Any, cells: pd.DataFrame, published: Published, out_dir: str | Path,
    log_scale: bool = False, title_note: str = "", controls: bool = True,
) -> list[Path]:
    """Draw Fig. 2 (with a column of control panels if ``controls``) and Fig. 3 of ``cells``
    (series read from the store) and save them, PNG and PDF."""
    series = r_t_frame(client, cells)
    fig2 = figure_2(series, log_scale=log_scale, title_note=title_note,
                    controls=control_frames(client, cells) if controls else None)
    fig3 = figure_3(final_frame(cells), published, title_note=title_note, log_scale=log_scale)
    paths = save_figure(fig2, out_dir, FIGURE_FILES[0]) + save_figure(fig3, out_dir, FIGURE_FILES[1])
    plt.close(fig2)
    plt.close(fig3)
    return paths
