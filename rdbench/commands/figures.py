"""``rdbench figures``: Fig. 2 and Fig. 3 redrawn from the tracking store."""

from __future__ import annotations

import click

from rdbench.commands.options import (
    experiment_name,
    log_scale_option,
    one_parent,
    selection_options,
)
from rdbench.commands.output import print_report


@click.command(short_help="Redraw Fig. 2 and Fig. 3 from the tracking store.")
@selection_options
@log_scale_option
@click.option("--controls/--no-controls", default=True, show_default=True,
              help="Fig. 2 with a column of control panels beside the systems' panels (never on their axes).")
def figures(experiment, parent_run_ids, all_cells, out_dir, log, published_path, log_scale, controls) -> None:
    """Redraw Fig. 2 (R_t over normalised time, a panel per system) and Fig. 3 (final R_t), PNG and PDF.

    Fig. 2 shares the normalised time axis t = step / last step between the
    panels; each panel has its own R_t range. With --controls (the default) each
    system's controls get a panel of their own beside it; --no-controls draws the
    systems alone, as in the paper.
    """
    print_report(experiment_name(experiment), one_parent(parent_run_ids, "figures"), out_dir, all_cells=all_cells, log=log,
                 published_path=published_path, table=False, log_scale=log_scale, controls=controls)
