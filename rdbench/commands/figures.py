"""``rdbench figures``: Fig. 2 and Fig. 3 redrawn from the tracking store."""

from __future__ import annotations

import click

from rdbench.commands.options import experiment_name, log_scale_option, selection_options
from rdbench.commands.output import print_report


@click.command(short_help="Redraw Fig. 2 and Fig. 3 from the tracking store.")
@selection_options
@log_scale_option
def figures(experiment, parent_run_id, all_cells, out_dir, log, published_path, log_scale) -> None:
    """Redraw Fig. 2 (R_t over normalised time) and Fig. 3 (final R_t) from the tracking store, PNG and PDF."""
    print_report(experiment_name(experiment), parent_run_id, out_dir, all_cells=all_cells, log=log,
                 published_path=published_path, table=False, log_scale=log_scale)
