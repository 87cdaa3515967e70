"""``rdbench table``: Table 1 regenerated from the tracking store."""

from __future__ import annotations

import click

from rdbench.commands.options import experiment_name, selection_options
from rdbench.commands.output import print_report


@click.command()
@selection_options
def table(experiment, parent_run_id, all_cells, out_dir, log, published_path) -> None:
    """Regenerate Table 1 from the tracking store: CSV, Markdown and LaTeX, beside the published values.

    Reads the cells of the latest grid (or --parent RUN_ID, or --all-cells),
    prints the table, writes it to --out and logs it to the grid's parent run
    (artifacts and an MLflow table the UI shows).
    """
    print_report(experiment_name(experiment), parent_run_id, out_dir, all_cells=all_cells, log=log,
                 published_path=published_path, figures=False)
