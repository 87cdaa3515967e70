"""A report of a selection of cell runs: Table 1 and the figures, written and logged.

:func:`build_report` reads the cells of a :class:`~rdbench.report.selection.Selection`
and builds Table 1; :func:`write_report` writes the table (CSV, Markdown, LaTeX) and
the figures (PNG, PDF) to a folder and, when the selection is a grid, logs them to the
grid's parent run (the table also as an MLflow table the UI renders).

The parent's description (``mlflow.note.content``: the grid file's ``description``) gets a
short Markdown Table 1 under :data:`TABLE_NOTE_HEADING`, and the MLflow table
``table/table1.json`` holds the compact Table 1 (:func:`~rdbench.report.table.compact_table`:
R and its spread first); every column is in ``table/table1.csv``.

A regeneration replaces what the previous one logged: ``table/table1.{csv,md,tex,json}``,
the description's Table 1
and ``figures/fig2_R_t.*``, ``figures/fig3_R_final.*`` are one file each on the parent
run, always the latest (the run's history of regenerations is not kept; rerun
``rdbench table --parent RUN_ID`` to rebuild it from the cells).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rdbench.config import ConfigError
from rdbench.report.published import Published, load_published
from rdbench.report.selection import Selection
from rdbench.report.table import (
    build_table,
    cells_frame,
    compact_table,
    row_name,
    summary_markdown,
    write_table,
)
from rdbench.tracking.runs import TrackedRun
from rdbench.tracking.tags import TAG_NOTE

TABLE_DIR = "table"  # artifact folders on the grid's parent run
FIGURE_DIR = "figures"
TABLE_JSON = "table1.json"  # the MLflow table the UI renders (compact), replaced at each regeneration
TABLE_NOTE_HEADING = "### Table 1 (`rdbench table`)"  # where the parent's description gets Table 1


@dataclass
class Report:
    """Table 1 of a selection of cell runs, and where its files went."""

    selection: Selection
    cells: pd.DataFrame
    table: pd.DataFrame
    published: Published
    files: list[Path] = field(default_factory=list)
    logged_to: str | None = None

    @property
    def caption(self) -> str:
        return f"Table 1 regenerated from {self.selection.title}"

    @property
    def note(self) -> str:
        """The provenance line of figure titles: the study (name, short id, partial or not), the
        profiles, the seeds of each row, and the rows that have no FINISHED run (so are not drawn)."""
        profiles = ", ".join(dict.fromkeys(self.table["profile"]))
        parts = [self.selection.title, f"profile {profiles}", seeds_note(self.table)]
        if self.missing_rows:
            parts.append("not drawn, no FINISHED run: " + ", ".join(self.missing_rows))
        return "; ".join(parts)

    @property
    def missing_rows(self) -> list[str]:
        """Rows (``DDPM digits``) with cells in the selection (failed, killed, never run) but none FINISHED."""
        keys = [*zip(self.cells["system"], self.cells["variant"], strict=True)]
        for label in self.selection.missing:
            system, _, variant = label.rsplit("/seed=", 1)[0].partition("/")
            keys.append((system, variant))
        done = set(zip(self.table["system"], self.table["variant"], strict=True))
        return [row_name(s, v) for s, v in dict.fromkeys(keys) if (s, v) not in done]

    @property
    def left_out(self) -> pd.DataFrame:
        """The selected cells that are not in the table (not FINISHED)."""
        return self.cells[self.cells["status"] != "FINISHED"]


def seeds_note(table: pd.DataFrame) -> str:
    """``2 seeds per row``, or, when rows differ, ``seeds per row: 2 (RD spot, RD stripe), 1 (DDPM digits)``."""
    groups: dict[int, list[str]] = {}
    for _, row in table.iterrows():
        groups.setdefault(int(row["n_seeds"]), []).append(row_name(row["system"], row["variant"]))
    if len(groups) == 1:
        (n,) = groups
        return f"{n} seed{'s' if n != 1 else ''} per row"
    return "seeds per row: " + ", ".join(f"{n} ({', '.join(rows)})" for n, rows in groups.items())


def build_report(selection: Selection, published_path: str | Path | None = None) -> Report:
    """Cells and Table 1 of ``selection`` (an error if none of its cells FINISHED)."""
    cells = cells_frame(selection.runs)
    if cells.empty or not (cells["status"] == "FINISHED").any():
        raise ConfigError(f"{selection.description} has no FINISHED cell run to tabulate")
    published = load_published(published_path)
    return Report(selection, cells, build_table(cells, published), published)


def write_report(
    client: Any,
    report: Report,
    out_dir: str | Path,
    *,
    table: bool = True,
    figures: bool = True,
    log: bool = True,
    log_scale: bool = False,
    controls: bool = True,
) -> Report:
    """Write Table 1 and/or the figures to ``out_dir``; log them to the grid's parent if ``log``."""
    from rdbench.report.figures import draw_figures  # matplotlib: only when figures are drawn

    target = TrackedRun(client, report.selection.parent_run_id) if log and report.selection.parent_run_id else None
    if table:
        paths = write_table(report.table, out_dir, report.caption)
        report.files += paths
        if target:
            for path in paths:
                target.log_artifact(path, TABLE_DIR)
            _replace_table(client, target, compact_table(report.table))
            _note_table(client, target, report)
    if figures:
        paths = draw_figures(client, report.cells, report.published, out_dir,
                             log_scale=log_scale, title_note=report.note, controls=controls)
        report.files += paths
        if target:
            for path in paths:
                target.log_artifact(path, FIGURE_DIR)
    if target:
        report.logged_to = target.run_id
    return report


def _note_table(client: Any, target: TrackedRun, report: Report) -> None:
    """Put Table 1's summary into the parent's description, below the grid file's, replacing an earlier one."""
    note = client.get_run(target.run_id).data.tags.get(TAG_NOTE, "")
    head = note.split(TABLE_NOTE_HEADING)[0].rstrip()
    body = f"{TABLE_NOTE_HEADING}\n\n{report.note}\n\n{summary_markdown(report.table)}"
    target.set_tags({TAG_NOTE: f"{head}\n\n{body}" if head else body})


def _replace_table(client: Any, target: TrackedRun, table: pd.DataFrame) -> None:
    """Log ``table`` as ``table/table1.json``, replacing an earlier one.

    MLflow's ``log_table`` appends to an existing file (a regenerated table would
    hold every row twice), so only the first regeneration goes through it (it also
    registers the file with the UI); later ones write the same format (pandas
    ``split`` JSON, as ``log_table`` does) over the file.
    """
    name = f"{TABLE_DIR}/{TABLE_JSON}"
    if name not in {a.path for a in client.list_artifacts(target.run_id, TABLE_DIR)}:
        target.log_table(table, name)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / TABLE_JSON
        table.to_json(path, orient="split", index=False, date_format="iso")
        target.log_artifact(path, TABLE_DIR)
