"""Two studies side by side: Table 1 of each, row by row, with the differences (B - A).

:func:`compare_tables` joins two Table 1 frames on (system, case, profile): each
quantity of :data:`COMPARED` (mean ± std over seeds) of study A beside study B, their
difference and its size relative to A; a row found in one study only says so.
:func:`compare_markdown` renders it; :func:`write_comparison` writes ``compare.csv`` and
``compare.md`` and logs them to both parents (``compare/vs_<other study id>.*``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from rdbench.report.publish import Report
from rdbench.report.table import QUANTITIES, SYSTEM_NAMES, format_value

COMPARED = (QUANTITIES[2], QUANTITIES[3], QUANTITIES[0], QUANTITIES[1])  # R and R_final first
KEYS = ["system", "variant", "profile"]
COMPARE_DIR = "compare"  # artifact folder on each parent
COMPARE_FILES = ("compare.csv", "compare.md")


def compare_tables(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """One row per (system, case, profile) of either table: ``<q> A``, ``<q> A std``, ``<q> B``, ``<q> B std``,
    ``Δ<q>`` (B - A) and ``Δ<q> %`` (relative to A) for each compared quantity; ``in``: both, A or B."""
    cols = ["n_seeds", *[c for q in COMPARED for c in (q, f"{q}_std")]]

    def side(frame: pd.DataFrame, name: str) -> pd.DataFrame:
        return frame[KEYS + cols].rename(columns=lambda c: c if c in KEYS else (
            f"{c.removesuffix('_std')} {name} std" if c.endswith("_std") else f"{c} {name}"))

    out = side(a, "A").merge(side(b, "B"), on=KEYS, how="outer", sort=False, indicator="in")
    out["in"] = out["in"].map({"both": "both", "left_only": "A", "right_only": "B"}).astype(str)
    for q in COMPARED:
        out[f"Δ{q}"] = out[f"{q} B"] - out[f"{q} A"]
        out[f"Δ{q} %"] = 100.0 * out[f"Δ{q}"] / out[f"{q} A"].abs()
    return out


def _pct(value: Any) -> str:
    return "–" if value is None or not math.isfinite(float(value)) else f"{float(value):+.2f} %"


def compare_markdown(frame: pd.DataFrame, a_title: str, b_title: str) -> str:
    """A Markdown table: per row, each quantity in A and B (mean ± std) and the difference B - A (and %)."""
    header = ["system", "case", "profile", "seeds A", "seeds B"]
    for q in COMPARED:
        header += [f"{q} A", f"{q} B", f"Δ{q} (B - A)"]
    lines = [f"A = {a_title}", f"B = {b_title}", "",
             "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for _, r in frame.iterrows():
        cells = [SYSTEM_NAMES.get(r["system"], r["system"]), r["variant"], r["profile"],
                 format_value(_int(r["n_seeds A"])), format_value(_int(r["n_seeds B"]))]
        for q in COMPARED:
            cells += [format_value(r[f"{q} A"], r[f"{q} A std"]), format_value(r[f"{q} B"], r[f"{q} B std"])]
            delta = r[f"Δ{q}"]
            cells.append(f"only in {r['in']}" if r["in"] != "both" else
                         f"{format_value(delta, signed=True)} ({_pct(r[f'Δ{q} %'])})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _int(value: Any) -> Any:
    return int(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def write_comparison(client: Any, a: Report, b: Report, out_dir: str | Path, log: bool = True) -> tuple[str, list[Path]]:
    """Compare two reports: the Markdown, and the files written to ``out_dir`` (logged to both parents if ``log``)."""
    frame = compare_tables(a.table, b.table)
    text = compare_markdown(frame, a.selection.title, b.selection.title)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in COMPARE_FILES]
    frame.to_csv(paths[0], index=False, float_format="%.10g")
    paths[1].write_text(text)
    if log:
        for mine, other in ((a, b), (b, a)):
            if mine.selection.parent_run_id is None:
                continue
            name = f"vs_{other.selection.study_id or 'all_cells'}"
            for path in paths:
                client.log_text(mine.selection.parent_run_id, path.read_text(), f"{COMPARE_DIR}/{name}{path.suffix}")
    return text, paths
