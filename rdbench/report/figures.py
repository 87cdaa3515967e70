"""Fig. 2 and Fig. 3 of the paper, redrawn with seaborn from the tracking store.

* Fig. 2: the Dynamic Balance Ratio R_t (Eq. 20) against normalised time t in
  [0, 1], one line per system and case (the mean over seeds), the seeds' range
  as a band. Each cell's ``R_t_norm`` series (logged at steps round(1000 t)) is
  interpolated onto one common time axis first, so seeds whose runs stopped at
  different steps (Gray-Scott's early stop) still line up.
  Controls (``control.<name>.R_t_norm``) are drawn as thin dashed lines in the
  colour of their row.
* Fig. 3: the final value of R_t per system and case as bars (mean over seeds),
  each seed as a dot and the published value as a black marker.

This module reads only the store (through the cells frame and the client's metric
history) and never imports a system.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from rdbench.report.published import Published  # noqa: E402
from rdbench.report.table import SYSTEM_NAMES, control_names, row_keys  # noqa: E402
from rdbench.tracking.runs import NORMALISED_STEPS  # noqa: E402

FIGURE_FILES = ("fig2_R_t", "fig3_R_final")
TIME_POINTS = 501  # common normalised-time axis of Fig. 2
SYSTEM_DASHES = {"rd": "", "lstm": (5, 2), "ddpm": (6, 2, 1, 2)}  # solid, dashed, dash-dot as in the paper


def row_name(system: str, variant: str) -> str:
    return f"{SYSTEM_NAMES.get(system, system)} {variant}"


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


def figure_2(
    series: pd.DataFrame,
    log_scale: bool = False,
    title_note: str = "",
    controls: dict[str, pd.DataFrame] | None = None,
) -> plt.Figure:
    """R_t over normalised time: one line per row (system/case), seeds' range as a band.

    Each control in ``controls`` adds, per row that has it, a thin dashed line in the
    row's colour (the mean over seeds), labelled ``<row>: <control>``.
    """
    rows = list(dict.fromkeys(series["row"]))
    systems = list(dict.fromkeys(series["system"]))
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(9.5, 5.2), layout="constrained")
    many_seeds = series.groupby("row")["seed"].nunique().max() > 1 if len(series) else False
    sns.lineplot(
        data=series, x="t", y="R_t", hue="row", hue_order=rows, palette=_palette(rows),
        style="system", style_order=systems,
        dashes={s: SYSTEM_DASHES.get(s, (2, 2)) for s in systems},
        estimator="mean", errorbar=("pi", 100) if many_seeds else None,
        linewidth=1.6, ax=ax, legend=False,
    )
    for line, row in zip(ax.lines, rows, strict=True):
        line.set_label(row)
        line.set_gid(row)
    if many_seeds:  # a row with one seed has no band: drop the empty one seaborn drew
        seeds = series.groupby("row")["seed"].nunique()
        for band, row in zip(list(ax.collections), rows, strict=True):
            band.set_gid(f"band:{row}")
            if seeds[row] < 2:
                band.remove()
    palette = _palette(rows)
    marks = ["--", (0, (1, 1)), (0, (4, 1, 1, 1)), (0, (6, 2))]
    for k, (name, frame) in enumerate((controls or {}).items()):
        for row, part in frame.groupby("row", sort=False):
            if row not in palette:
                continue
            mean = part.groupby("t")["R_t"].mean()
            ax.plot(mean.index, mean.to_numpy(), color=palette[row], linewidth=1.0, alpha=0.85,
                    linestyle=marks[k % len(marks)], label=f"{row}: {name}", gid=f"control:{row}:{name}")
    ax.axhline(1.0, color="0.3", linewidth=0.9, linestyle=":", label="R_t = 1 (balance)", gid="balance")
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel("normalised time t")
    ax.set_ylabel("R_t = M_react,t / M_diff,t" + (" (log scale)" if log_scale else ""))
    ax.set_title("Fig. 2: Dynamic Balance Ratio over normalised time" + (f"\n{title_note}" if title_note else ""))
    legend_title = "system / case" + ("\n(band: range over seeds)" if many_seeds else "")
    ax.legend(title=legend_title, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
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
    finals: pd.DataFrame, published: Published, title_note: str = ""
) -> plt.Figure:
    """Final R_t per row as bars (mean over seeds), seeds as dots, published values marked."""
    rows = list(dict.fromkeys(finals["row"]))
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 3.0), 5.2), layout="constrained")
    palette = _palette(rows)
    sns.barplot(
        data=finals, x="row", y="R_final", order=rows, hue="row", hue_order=rows, palette=palette,
        estimator="mean", errorbar=None, legend=False, ax=ax, alpha=0.85,
    )
    for container in ax.containers:
        ax.bar_label(container, fmt="%.3f", label_type="center", fontsize=8, color="white", fontweight="bold")
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
    ax.axhline(1.0, color="0.3", linewidth=0.9, linestyle=":", label="R = 1 (balance)")
    ax.set_xlabel("system / case")
    ax.set_ylabel("final R_t (t = 1)")
    ax.set_title("Fig. 3: final value of the Dynamic Balance Ratio" + (f"\n{title_note}" if title_note else ""))
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    handles, labels = ax.get_legend_handles_labels()
    if multi:
        from matplotlib.lines import Line2D

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
    log_scale: bool = False, title_note: str = "",
) -> list[Path]:
    """Draw Fig. 2 and Fig. 3 of ``cells`` (series read from the store) and save them, PNG and PDF."""
    series = r_t_frame(client, cells)
    fig2 = figure_2(series, log_scale=log_scale, title_note=title_note, controls=control_frames(client, cells))
    fig3 = figure_3(final_frame(cells), published, title_note=title_note)
    paths = save_figure(fig2, out_dir, FIGURE_FILES[0]) + save_figure(fig3, out_dir, FIGURE_FILES[1])
    plt.close(fig2)
    plt.close(fig3)
    return paths
