"""``rdbench grid GRID``: a configured study as one parent MLflow run, then Table 1 and the figures."""

from __future__ import annotations

import click

from rdbench.commands.options import (
    MAX_PROCESSES,
    CliError,
    count,
    data_dir_option,
    device_option,
    experiment_option,
    fresh_option,
    log_scale_option,
    one_line_errors,
    open_tracking,
    options,
    out_option,
    parse_sets,
    resume_option,
    run_context,
    store_errors,
)
from rdbench.commands.output import Announcer, print_report


@click.command(
    epilog=(
        "Examples:\n\n"
        "  rdbench grid conf/offline.yaml          # RD, LSTM, DDPM on digits; no network\n\n"
        "  rdbench grid quick --only ddpm/mnist    # one row of the quick grid\n\n"
        "  rdbench grid paper --only 'rd/*' --force\n\n"
        "  rdbench grid paper --executor ray       # each batch a Ray task (docs/scale-out.md)\n\n"
        "  rdbench grid quick --name baseline      # a named study (`rdbench compare A B`: two side by side)\n\n"
        "A cell whose identical resolved config already has a FINISHED run in the\n"
        "experiment is skipped (its run is reused); --force reruns it. The grid's phase\n"
        "maps (its `phase:` entries) run after its cells, unless --only is given. A run\n"
        "of part of a grid (--only, --set) is marked partial: `table` and `figures`\n"
        "read it only when given its --parent."
    ),
)
@click.argument("grid_file")
@options(
    click.option("--only", multiple=True, metavar="PATTERN",
                 help="Run only the matching cells: ddpm, ddpm/mnist, 'rd/*', rd/spot/seed=1. Repeatable."),
    click.option("--force", is_flag=True, help="Rerun cells that already have a FINISHED run."),
    click.option("--name", default=None, metavar="NAME",
                 help="Name the study (default: the grid file's name); `table` and `figures` show it."),
    click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a setting in every cell. Repeatable."),
    device_option,
    experiment_option,
    data_dir_option,
    resume_option,
    fresh_option,
    click.option("--report/--no-report", default=True, show_default=True,
                 help="Regenerate Table 1, Fig. 2 and Fig. 3 at the end and log them to the parent run."),
    out_option,
    log_scale_option,
    click.option("--executor", type=click.Choice(["in-process", "ray"]), default="in-process", show_default=True,
                 help="Where the cells run: one after another in this process, or each batch as a Ray task."),
    click.option("--address", default=None, metavar="ADDR",
                 help="--executor ray: a running Ray cluster (host:port, or 'auto'). Default: a local Ray instance."),
    click.option("--workers", default=None, type=count(1, MAX_PROCESSES),
                 help="--executor ray without --address: CPUs of the local Ray instance. Default: every CPU."),
)
def grid(grid_file, only, force, name, sets, device, experiment, data_dir, resume, fresh, report, out_dir,
         log_scale,
         executor, address, workers) -> None:
    """Run the grid GRID_FILE (conf/paper.yaml, quick, offline, smoke...) as one parent MLflow run.

    Every cell (system x case x seed) is a child run. A failing cell is marked
    FAILED and the others go on; the command then exits non-zero. --fresh reruns every
    cell, training from scratch. The same as rdbench.grid() from Python (docs/api.md).
    """
    from pathlib import Path

    from rdbench.config import read_yaml

    if Path(grid_file).is_file():  # an unreadable or oversized file is refused before torch loads
        with one_line_errors():
            read_yaml(grid_file)
    import rdbench.api as api
    from rdbench.commands.phase import run_map
    from rdbench.study.execution import study_id
    from rdbench.study.runner import failure_summary
    from rdbench.tracking.ui import compare_url, grid_view

    ctx = run_context(device, data_dir, resume, fresh)
    with one_line_errors():
        planned = api.plan_study(grid_file, only, parse_sets(sets), ctx, name=name,
                                 check_memory_here=executor != "ray")
    plan = planned.grid
    client = open_tracking()
    with one_line_errors(), api.executor_for(executor, address, workers, client.tracking_uri) as runner:
        click.echo(f"grid {plan.name} ({plan.path}): {len(plan.cells)} cells -> experiment "
                   f"{api.experiment_name(experiment)!r}, store {client.tracking_uri}, executor {runner.name}")
        with one_line_errors(*store_errors()):
            result = api.run_study(planned, runner, experiment, force=force or fresh,
                                   on_report=Announcer(len(plan.cells)))
    partial = f", partial: {plan.partial}" if plan.partial else ""
    click.echo(f"grid {plan.name}: {result.summary()}; parent run {result.parent_run_id} "
               f"(study {plan.study!r} [{study_id(result.parent_run_id)}]{partial})")
    click.echo(f"compare the cells: `mlflow ui --backend-store-uri {client.tracking_uri}`, "
               f"then {compare_url(result.experiment_id, view=grid_view(result.parent_run_id))}")
    if report and (result.count("FINISHED") or result.count("SKIPPED")):
        print_report(result.experiment, result.parent_run_id, out_dir, log_scale=log_scale)
    for phase_plan, rows, budget in planned.maps:
        run_map(phase_plan, rows, budget, ctx.device, result.experiment, resume, None,
                parent_run_id=result.parent_run_id)
    failed = failure_summary(result.reports)
    if failed:
        raise CliError(failed)
