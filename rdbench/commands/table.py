"""``rdbench table``: Table 1 regenerated from the tracking store; ``rdbench compare``: two studies side by side."""

from __future__ import annotations

import click

from rdbench.commands.options import (
    CliError,
    experiment_name,
    one_parent,
    options,
    out_option,
    selection_options,
)
from rdbench.commands.output import print_comparison, print_report


@click.command()
@selection_options
def table(experiment, parent_run_ids, all_cells, out_dir, log, published_path) -> None:
    """Regenerate Table 1 from the tracking store: CSV, Markdown and LaTeX, beside the published values.

    Reads the cells of the latest whole grid (or --parent RUN_ID, or --all-cells),
    prints the table, writes it to --out and logs it to the grid's parent run
    (artifacts and an MLflow table the UI shows). Two --parent: the two studies
    side by side with their differences, as `rdbench compare A B`.
    """
    if len(parent_run_ids) == 2:
        if all_cells:
            raise CliError("--parent and --all-cells exclude each other")
        print_comparison(parent_run_ids, out_dir, log=log, published_path=published_path)
        return
    print_report(experiment_name(experiment), one_parent(parent_run_ids, "table"), out_dir, all_cells=all_cells,
                 log=log, published_path=published_path, figures=False)


@click.command()
@click.argument("study_a")
@click.argument("study_b")
@options(
    out_option,
    click.option("--log/--no-log", default=True, show_default=True,
                 help="Log the comparison to both parents (compare/vs_<other study id>.md, .csv)."),
    click.option("--published", "published_path", default=None, type=click.Path(exists=True, dir_okay=False),
                 help="Published values (default conf/published.yaml)."),
)
def compare(study_a, study_b, out_dir, log, published_path) -> None:
    """Two studies side by side: Table 1 of STUDY_A and STUDY_B (parent run ids or short study ids), row by
    row, with the differences B - A; written to --out (compare.csv, compare.md) and logged to both parents."""
    print_comparison((study_a, study_b), out_dir, log=log, published_path=published_path)
