"""Table 1 from cell runs: one row per system and case, mean and spread over seeds beside the paper.

:func:`cells_frame` turns cell runs (tags and metrics) into a frame; :func:`build_table`
groups FINISHED cells by system and case and sets the mean and sample standard
deviation over seeds beside the published values; controls (``control.<name>.R``) and
alternative magnitudes such as DDPM's ``M_diff_closed_form`` are found from the metric
keys. :func:`to_markdown`, :func:`to_latex` and :func:`write_table` render it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rdbench.config import SystemConfig
from rdbench.report.published import Published
from rdbench.tracking.tags import (
    TAG_CASE,
    TAG_ERROR,
    TAG_HASH,
    TAG_LABEL,
    TAG_PROFILE,
    TAG_RUN_NAME,
    TAG_SEED,
    TAG_SYSTEM,
)

QUANTITIES = ("M_react", "M_diff", "R", "R_final")  # Eqs. (12)-(19) and Fig. 3
SYSTEM_NAMES = {"rd": "RD", "lstm": "LSTM", "ddpm": "DDPM"}
CONTROL_KEY = re.compile(r"^control\.(?P<name>.+)\.R$")
# e.g. M_diff_closed_form (not RD's M_reaction_u, nor the series logged while training)
ALTERNATIVE_KEY = re.compile(r"^M_(react|diff)_(?!.*during_training$).+$")
SEED_SUFFIX = re.compile(r"/(seed=|s)\d+( \[[^\]]*\])?$")  # runs from before the rdbench.label tag
TABLE_FILES = ("table1.csv", "table1.md", "table1.tex")


# --------------------------------------------------------------------------- cells and Table 1


def cells_frame(runs: Sequence[Any]) -> pd.DataFrame:
    """One row per cell run: identity (tags), status, error, and every scalar metric."""
    rows = []
    for run in runs:
        tags = run.data.tags
        name = tags.get(TAG_RUN_NAME) or run.info.run_name or ""
        system = tags.get(TAG_SYSTEM, "")
        label = tags.get(TAG_LABEL) or SEED_SUFFIX.sub("", name) or f"{system}/{tags.get(TAG_CASE, '')}"
        rows.append(
            {
                "run_id": run.info.run_id,
                "run_name": name,
                "status": run.info.status,
                "system": system,
                "case": tags.get(TAG_CASE, ""),
                "variant": label.partition("/")[2] or tags.get(TAG_CASE, ""),
                "seed": int(tags.get(TAG_SEED, -1)),
                "profile": tags.get(TAG_PROFILE, ""),
                "config_hash": tags.get(TAG_HASH, ""),
                "error": tags.get(TAG_ERROR),
                **run.data.metrics,
            }
        )
    return pd.DataFrame(rows)


def row_name(system: str, variant: str) -> str:
    """``RD spot``: a row's name in the figures and their notes."""
    return f"{SYSTEM_NAMES.get(system, system)} {variant}"


def control_names(columns: Sequence[str]) -> list[str]:
    """Controls present in the metric keys (``control.<name>.R``), in first-seen order."""
    names = []
    for col in columns:
        m = CONTROL_KEY.match(col)
        if m and m["name"] not in names:
            names.append(m["name"])
    return names


def alternative_metrics(columns: Sequence[str]) -> list[str]:
    return [c for c in columns if ALTERNATIVE_KEY.match(c)]


def row_keys(cells: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(system, variant, profile) of the FINISHED cells, in the order of first appearance."""
    if cells.empty:
        return []
    done = cells[cells["status"] == "FINISHED"]
    return list(dict.fromkeys(zip(done["system"], done["variant"], done["profile"], strict=True)))


def build_table(cells: pd.DataFrame, published: Published) -> pd.DataFrame:
    """Table 1: one row per system and case, mean and sample std over seeds beside the paper.

    Only FINISHED cells count. ``<q>_paper`` for q in M_react, M_diff, R, R_final;
    ``<q>_delta`` (ours minus the paper) only for rows of the ``paper`` profile
    (``comparable``), NaN for any other profile, whose settings are not the paper's;
    controls as ``control.<name>.<q>``.
    """
    columns = list(cells.columns)
    controls = control_names(columns)
    extras = alternative_metrics(columns)
    out = []
    for system, variant, profile in row_keys(cells):
        group = cells[
            (cells["status"] == "FINISHED") & (cells["system"] == system)
            & (cells["variant"] == variant) & (cells["profile"] == profile)
        ].sort_values("seed")
        case = group["case"].iloc[0]
        row: dict[str, Any] = {
            "system": system, "case": case, "variant": variant, "profile": profile,
            "n_seeds": len(group), "seeds": " ".join(str(s) for s in group["seed"]),
        }
        paper = published.get((system, case)) if variant == case else None
        row["comparable"] = profile == SystemConfig.PAPER
        for q in QUANTITIES:
            mean, std = _mean_std(group.get(q))
            ref = getattr(paper, q) if paper else math.nan
            delta = mean - ref if row["comparable"] else math.nan
            row.update({q: mean, f"{q}_std": std, f"{q}_paper": ref, f"{q}_delta": delta})
        for name in extras:
            row[name], row[f"{name}_std"] = _mean_std(group.get(name))
        for name in controls:
            for q in QUANTITIES:
                key = f"control.{name}.{q}"
                row[key], row[f"{key}_std"] = _mean_std(group.get(key))
        row["failed_cells"] = int(
            ((cells["status"] == "FAILED") & (cells["system"] == system) & (cells["variant"] == variant)).sum()
        )
        row["run_ids"] = " ".join(group["run_id"])
        out.append(row)
    table = pd.DataFrame(out)
    table.attrs.update(controls=controls, extras=extras)
    return table


def _mean_std(values: pd.Series | None) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for one seed) of the finite values."""
    if values is None:
        return math.nan, math.nan
    x = values.to_numpy(dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else math.nan


# --------------------------------------------------------------------------- rendering


PARTS = ("paper", "controls")  # the two tables of the Markdown (and terminal) output
LATEX_PARTS = ("magnitudes", "ratios", "controls")  # the LaTeX tables: each fits a two-column page
PART_QUANTITIES = {"paper": QUANTITIES, "magnitudes": QUANTITIES[:2], "ratios": QUANTITIES[2:]}
PART_TITLES = {"magnitudes": "magnitudes M_react and M_diff (Eqs. 12-19)", "ratios": "ratios R and R_final (Fig. 3)"}
LATEX_PM_COLUMNS = 4  # mean ± std columns per LaTeX table: a wider controls table is split
NOT_COMPARABLE = "n/c"  # the Δ of a row whose profile is not the paper's, in a table that has paper rows


def comparable(table: pd.DataFrame) -> pd.Series:
    """Rows of the ``paper`` profile: the only ones set against the paper with a Δ."""
    if "comparable" in table:
        return table["comparable"].astype(bool)
    return table["profile"] == SystemConfig.PAPER


def comparability_note(table: pd.DataFrame) -> str:
    """One sentence when some rows are not of the ``paper`` profile (empty when all are)."""
    others = list(dict.fromkeys(table.loc[~comparable(table), "profile"])) if len(table) else []
    if not others:
        return ""
    which = ", ".join(repr(p) for p in others)
    plural = "s" if len(others) > 1 else ""
    where = f"its rows' Δ read {NOT_COMPARABLE}" if comparable(table).any() else "no Δ is shown"
    return (f"Not comparable with the paper: profile{plural} {which} ran with other settings than the paper's "
            f"(the `paper` profile), so the published values are for reference only and {where}.")


def display_columns(table: pd.DataFrame, part: str = "paper") -> list[tuple[str, str, str | None]]:
    """(header, value column, std column) of one part of the human-readable table.

    ``paper`` (``magnitudes``, ``ratios``): M_react, M_diff, R and R_final (the first
    two, the last two) beside the published values and, when a row is of the
    ``paper`` profile, the difference. ``controls``: R beside each control's R and
    the alternative magnitudes (e.g. M_diff_closed_form); empty when the runs have none.
    """
    cols: list[tuple[str, str, str | None]] = [("seeds", "n_seeds", None)]
    if part in PART_QUANTITIES:
        delta = bool(comparable(table).any()) if len(table) else False
        for q in PART_QUANTITIES[part]:
            cols += [(q, q, f"{q}_std"), (f"{q} paper", f"{q}_paper", None)]
            if delta:
                cols.append((f"Δ{q}", f"{q}_delta", None))
        return cols
    extras, controls = table.attrs.get("extras", []), table.attrs.get("controls", [])
    if not extras and not controls:
        return []
    cols.append(("R", "R", "R_std"))
    for name in controls:
        cols.append((f"R {name}", f"control.{name}.R", f"control.{name}.R_std"))
    for name in extras:
        cols.append((name, name, f"{name}_std"))
    return cols


def format_value(value: Any, std: Any = None, signed: bool = False, pm: str = " ± ") -> str:
    """A table cell: ``1.0105 ± 0.0003`` (4 decimals; ``signed``: ``+0.0011``), an integer as is, ``–`` for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (int, np.integer)):
        return str(value)
    text = f"{value:+.4f}" if signed else f"{value:.4f}"
    if std is not None and isinstance(std, float) and math.isfinite(std):
        text += f"{pm}{std:.4f}"
    return text


def display_rows(table: pd.DataFrame, part: str = "paper", pm: str = " ± ") -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows of one part (empty header when the part has no column)."""
    cols = display_columns(table, part)
    if not cols:
        return [], []
    profiles = table["profile"].nunique() > 1 if len(table) else False
    header = ["system", "case", *(["profile"] if profiles else []), *[c[0] for c in cols]]
    body = []
    for _, r in table.iterrows():
        cells = [SYSTEM_NAMES.get(r["system"], r["system"]), r["variant"], *([r["profile"]] if profiles else [])]
        for head, value, std in cols:
            if head.startswith("Δ") and not bool(r.get("comparable", True)):
                cells.append(NOT_COMPARABLE)
                continue
            cells.append(format_value(r.get(value), r.get(std) if std else None, signed=head.startswith("Δ"), pm=pm))
        body.append(cells)
    return header, body


# The MLflow UI's table view (log_table): R and its spread first, then R_final, the magnitudes and the
# controls' R; every column stays in table1.csv.
COMPACT_COLUMNS = ("system", "case", "profile", "n_seeds", "R", "R_std", "R_paper", "R_final", "R_final_std",
                   "R_final_paper", "M_react", "M_react_std", "M_diff", "M_diff_std", "failed_cells")


def compact_table(table: pd.DataFrame) -> pd.DataFrame:
    """Table 1 as the MLflow UI shows it: :data:`COMPACT_COLUMNS` (``case`` is the row's case with any
    overrides), then ``R <control>`` for each control; the full table is ``table1.csv``."""
    out = table.assign(case=table["variant"])[[c for c in COMPACT_COLUMNS if c in table or c == "case"]]
    for name in table.attrs.get("controls", []):
        out[f"R {name}"] = table[f"control.{name}.R"]
    return out


def summary_markdown(table: pd.DataFrame) -> str:
    """A short Markdown Table 1 (R, R_final and their spread beside the paper) for a run's description."""
    lines = ["| system | case | profile | seeds | R | R paper | R_final | R_final paper |", "|---" * 8 + "|"]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join([
            SYSTEM_NAMES.get(r["system"], r["system"]), r["variant"], r["profile"], str(r["n_seeds"]),
            format_value(r["R"], r["R_std"]), format_value(r["R_paper"]), format_value(r["R_final"], r["R_final_std"]), format_value(r["R_final_paper"]),
        ]) + " |")
    note = comparability_note(table)
    return "\n".join(lines) + (f"\n\n*{note}*" if note else "") + "\n"


CONTROLS_TITLE = "Controls and other magnitudes (R of each control, mean ± std over seeds):"


def to_markdown(table: pd.DataFrame) -> str:
    """Table 1 beside the paper (and a note when a profile is not comparable with it), then the controls."""
    out = []
    for part in PARTS:
        header, body = display_rows(table, part)
        if not header:
            continue
        if part == "controls":
            out += ["", CONTROLS_TITLE, ""]
        out += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        out += ["| " + " | ".join(row) + " |" for row in body]
        if part == "paper" and comparability_note(table):
            out += ["", f"> **{comparability_note(table)}**"]
    return "\n".join(out) + "\n"


def _latex_parts(table: pd.DataFrame) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of each LaTeX table: magnitudes, ratios, then the controls in chunks of
    at most ``LATEX_PM_COLUMNS`` mean ± std columns."""
    out = []
    for part in LATEX_PARTS:
        header, body = display_rows(table, part, pm=r" $\pm$ ")
        if not header:
            continue
        if part != "controls":
            out.append((PART_TITLES[part], header, body))
            continue
        first = header.index("seeds") + 1
        chunks = [list(range(i, min(i + LATEX_PM_COLUMNS, len(header))))
                  for i in range(first, len(header), LATEX_PM_COLUMNS)]
        for k, chunk in enumerate(chunks, 1):
            keep = [*range(first), *chunk]
            title = CONTROLS_TITLE.rstrip(":") + (f" ({k}/{len(chunks)})" if len(chunks) > 1 else "")
            out.append((title, [header[i] for i in keep], [[row[i] for i in keep] for row in body]))
    return out


def _latex_grouped_header(header: list[str], esc: Any) -> list[str]:
    """Two header rows: each quantity over its columns (``\\cmidrule``), then mean ± std, paper, Δ."""
    first = header.index("seeds") + 1
    groups: dict[str, list[int]] = {}
    sub = list(header[:first])
    for i, h in enumerate(header[first:], first):
        q = h.removeprefix("Δ").removesuffix(" paper")
        groups.setdefault(q, []).append(i)
        sub.append("Δ" if h.startswith("Δ") else "paper" if h.endswith(" paper") else "mean ± std")
    top = [""] * first + [r"\multicolumn{" + str(len(cols)) + "}{c}{" + esc(q) + "}" for q, cols in groups.items()]
    rules = " ".join(r"\cmidrule(lr){" + f"{cols[0] + 1}-{cols[-1] + 1}" + "}" for cols in groups.values())
    return [" & ".join(top) + r" \\", rules, " & ".join(esc(h) for h in sub) + r" \\"]


# The paper's symbols in LaTeX: M_react, M_diff (Eqs. 12-17), R (Eq. 18), R_final and R_t (Eq. 20);
# a suffix (M_diff_closed_form) becomes words after the symbol.
LATEX_SYMBOLS = {"M_react": r"M_{\mathrm{react}}", "M_diff": r"M_{\mathrm{diff}}",
                 "R_final": r"R_{\mathrm{final}}", "R_t": "R_t", "R": "R"}
SYMBOL = re.compile(r"(?<![A-Za-z0-9_])(Δ?)(M_react|M_diff|R_final|R_t|R)((?:_[A-Za-z]+)*)(?![A-Za-z0-9])")
LATEX_LABEL = "tab:rdbench-table1"  # each table's \label: this, then its part (magnitudes, ratios, controls)


def latex_text(text: str) -> str:
    """``text`` for LaTeX: special characters escaped, the paper's quantities as math symbols
    (``M_react`` -> ``$M_{\\mathrm{react}}$``, ``M_diff_closed_form`` -> ``$M_{\\mathrm{diff}}$ closed form``)."""
    out, last = [], 0
    for match in SYMBOL.finditer(text):
        out.append(_latex_escape(text[last : match.start()]))
        suffix = match[3].strip("_").replace("_", " ")
        delta = r"\Delta " if match[1] else ""
        out.append(f"${delta}{LATEX_SYMBOLS[match[2]]}$" + (f" {_latex_escape(suffix)}" if suffix else ""))
        last = match.end()
    out.append(_latex_escape(text[last:]))
    return "".join(out)


def _latex_escape(text: str) -> str:
    text = text.replace("\\", r"\textbackslash{}")
    for ch in "&%$#_{}":
        text = text.replace(ch, "\\" + ch)
    return text.replace("Δ", r"$\Delta$").replace("–", "--").replace("±", r"$\pm$")


def latex_label(title: str) -> str:
    """The ``\\label`` of the LaTeX table titled ``title``: ``tab:rdbench-table1-ratios``, ``...-controls-2``."""
    part = next((p for p, t in PART_TITLES.items() if t == title), "controls")
    chunk = re.search(r"\((\d+)/\d+\)$", title)
    return f"{LATEX_LABEL}-{part}" + (f"-{chunk[1]}" if chunk else "")


def to_latex(table: pd.DataFrame, caption: str = "") -> str:
    """Booktabs tables (need ``\\usepackage{booktabs}``), each a ``table*`` with its ``\\label``
    (:func:`latex_label`) that fits the text width of a two-column page: Table 1's magnitudes, its
    ratios (each beside the paper, with a footnote when a profile is not comparable with it), then
    the controls. The paper's quantities are math symbols (:func:`latex_text`)."""
    esc = latex_text

    def esc_cell(text: str) -> str:
        return " $\\pm$ ".join(esc(part) for part in text.split(" $\\pm$ "))

    note = comparability_note(table)
    lines = []
    for title, header, body in _latex_parts(table):
        paper = title in PART_TITLES.values()
        text = f"{caption}: {title}" if caption and paper else (f"Table 1: {title}" if paper else title)
        lines += [
            r"\begin{table*}[t]", r"\centering", r"\small",
            r"\caption{" + esc(text) + "}",
            r"\label{" + latex_label(title) + "}",
            r"\begin{tabular}{@{}ll" + "r" * (len(header) - 2) + "@{}}", r"\toprule",
            *(_latex_grouped_header(header, esc) if paper else [" & ".join(esc(h) for h in header) + r" \\"]),
            r"\midrule",
            *[" & ".join(esc_cell(c) for c in row) + r" \\" for row in body],
            r"\bottomrule", r"\end{tabular}",
        ]
        if paper and note:
            lines += [r"\par\smallskip", r"{\footnotesize " + esc(note.replace("`", "")) + "}"]
        lines.append(r"\end{table*}")
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, out_dir: str | Path, caption: str = "") -> list[Path]:
    """``table1.csv`` (every number, full precision), ``table1.md`` and ``table1.tex``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in TABLE_FILES]
    table.to_csv(paths[0], index=False, float_format="%.10g")
    paths[1].write_text(to_markdown(table))
    paths[2].write_text(to_latex(table, caption))
    return paths
