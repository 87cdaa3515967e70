"""What the commands print: the one-line cell summary, the running tally of a grid, a report."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from rdbench.commands.options import CliError, one_line_errors, open_tracking

SUMMARY = ("M_react", "M_diff", "R", "R_final")


def cell_line(report: Any, width: int = 40) -> str:
    """One line per ended cell: its run name, status, and M_react, M_diff, R, R_final or the error."""
    if report.status == "FAILED":
        detail = report.error or ""
    else:
        m = report.metrics
        detail = "  ".join(f"{k}={m[k]:.4f}" for k in SUMMARY if k in m)
    return f"{report.cell.run_name:<{width}s} {report.status:<8s} {detail}  run={report.run_id}"


class Announcer:
    """A grid's running display: one line per cell with a progress bar, a running tally and the ETA of
    the whole grid (the mean time of the cells run so far times the cells left; reused cells cost none)."""

    def __init__(self, total: int, echo: Callable[[str], None] = click.echo,
                 clock: Callable[[], float] = time.perf_counter):
        self.total = total
        self.echo = echo
        self.clock = clock
        self.done = 0
        self.tally: dict[str, int] = {"FINISHED": 0, "SKIPPED": 0, "FAILED": 0}
        self.start = clock()

    def __call__(self, report: Any) -> None:
        from rdbench.progress import duration, eta_s

        self.done += 1
        self.tally[report.status] = self.tally.get(report.status, 0) + 1
        width = 12
        filled = round(width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        elapsed = self.clock() - self.start
        ran = self.done - self.tally["SKIPPED"]
        left = self.total - self.done
        eta = "done" if not left else f"ETA {duration(eta_s(elapsed, ran, ran + left))} for {left} cell(s)"
        self.echo(f"[{self.done:>{len(str(self.total))}}/{self.total} {bar}] {cell_line(report, 34)}")
        self.echo(
            f"    so far: {self.tally['FINISHED']} finished, {self.tally['SKIPPED']} skipped, "
            f"{self.tally['FAILED']} failed; {elapsed:.0f} s; {eta}"
        )


def print_report(
    experiment: str | None,
    parent_run_id: str | None,
    out_dir: str | Path,
    *,
    all_cells: bool = False,
    table: bool = True,
    figures: bool = True,
    log: bool = True,
    log_scale: bool = False,
    controls: bool = True,
    published_path: str | Path | None = None,
) -> None:
    """Table 1 and/or the figures of the chosen cell runs: printed, written to ``out_dir``, logged."""
    import rdbench.api as api
    from rdbench.report.publish import write_report
    from rdbench.report.table import to_markdown

    if parent_run_id and all_cells:
        raise CliError("--parent and --all-cells exclude each other")
    if published_path:  # a bad file is refused before the store is opened
        from rdbench.report.published import load_published

        with one_line_errors():
            load_published(published_path)
    client = open_tracking()
    with one_line_errors():  # what rdbench.table() returns is this report's table
        report = api.build_report(parent_run_id, experiment=experiment, all_cells=all_cells, published=published_path)
    if report.selection.partial:
        click.echo(f"note: a partial run of its grid ({report.selection.partial})")
    if table:
        click.echo(f"\nTable 1 from {report.selection.description}:")
        click.echo(to_markdown(report.table))
        for _, cell in report.left_out.iterrows():
            click.echo(f"  not in the table: {cell['run_name']} {cell['status']}: {cell['error'] or ''}")
    with one_line_errors(OSError):
        write_report(client, report, out_dir, table=table, figures=figures, log=log, log_scale=log_scale,
                     controls=controls)
    click.echo("wrote " + ", ".join(str(p) for p in report.files))
    if report.logged_to:
        click.echo(f"logged to the parent run {report.logged_to}")


def print_comparison(parents: tuple[str, str], out_dir: str | Path, *, log: bool = True,
                     published_path: str | Path | None = None) -> None:
    """Two studies side by side (``rdbench compare A B``): printed, written to ``out_dir``, logged to both."""
    from rdbench.report.compare import write_comparison
    from rdbench.report.publish import build_report
    from rdbench.report.selection import select_runs

    client = open_tracking()
    with one_line_errors():
        a, b = (build_report(select_runs(client, parent_run_id=p), published_path) for p in parents)
    if a.selection.parent_run_id == b.selection.parent_run_id:
        raise CliError(f"--parent {parents[0]} and {parents[1]} are the same study; compare two different ones")
    with one_line_errors(OSError):
        text, paths = write_comparison(client, a, b, out_dir, log=log)
    click.echo(f"\nTable 1 of two studies side by side (Δ: B - A):\n{text}")
    click.echo("wrote " + ", ".join(str(p) for p in paths))
    if log:
        click.echo(f"logged to the parent runs {a.selection.parent_run_id} and {b.selection.parent_run_id}")
