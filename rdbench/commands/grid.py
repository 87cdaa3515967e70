"""``rdbench grid GRID``: a configured study as one parent MLflow run, then Table 1 and the figures."""

from __future__ import annotations

import contextlib

import click

from rdbench.commands.options import (
    MAX_PROCESSES,
    CliError,
    count,
    data_dir_option,
    device_option,
    experiment_name,
    experiment_option,
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


@contextlib.contextmanager
def executor_for(kind: str, address: str | None, workers: int | None, uri: str):
    """The executor ``--executor`` names, connected (Ray: a one-line error if it cannot be used)."""
    if kind != "ray":
        from rdbench.study.executor import InProcess

        yield InProcess()
        return
    from rdbench.study.ray_executor import RayExecutor

    with RayExecutor(address, workers, uri) as ray_executor:
        yield ray_executor


@click.command(
    epilog=(
        "Examples:\n\n"
        "  rdbench grid conf/offline.yaml          # RD, LSTM, DDPM on digits; no network\n\n"
        "  rdbench grid quick --only ddpm/mnist    # one row of the quick grid\n\n"
        "  rdbench grid paper --only 'rd/*' --force\n\n"
        "  rdbench grid paper --executor ray       # each batch a Ray task (docs/scale-out.md)\n\n"
        "A cell whose identical resolved config already has a FINISHED run in the\n"
        "experiment is skipped (its run is reused); --force reruns it. The grid's phase\n"
        "maps (its `phase:` entries) run after its cells, unless --only is given."
    ),
)
@click.argument("grid_file")
@options(
    click.option("--only", multiple=True, metavar="PATTERN",
                 help="Run only the matching cells: ddpm, ddpm/mnist, 'rd/*', rd/spot/seed=1. Repeatable."),
    click.option("--force", is_flag=True, help="Rerun cells that already have a FINISHED run."),
    click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a setting in every cell. Repeatable."),
    device_option,
    experiment_option,
    data_dir_option,
    resume_option,
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
def grid(grid_file, only, force, sets, device, experiment, data_dir, resume, report, out_dir, log_scale,
         executor, address, workers) -> None:
    """Run the grid GRID_FILE (conf/paper.yaml, quick, offline, smoke...) as one parent MLflow run.

    Every cell (system x case x seed) is a child run. A failing cell is marked
    FAILED and the others go on; the command then exits non-zero.
    """
    from pathlib import Path

    from rdbench.config import read_yaml

    if Path(grid_file).is_file():  # an unreadable or oversized file is refused before torch loads
        with one_line_errors():
            read_yaml(grid_file)
    from rdbench.commands.phase import run_map
    from rdbench.phase.plan import plan_grid_maps
    from rdbench.study.execution import run_grid
    from rdbench.study.grid import plan_grid
    from rdbench.study.runner import check_memory, failure_summary
    from rdbench.tracking.projects import point_to, project_run
    from rdbench.tracking.ui import compare_url, grid_view

    with one_line_errors():
        plan = plan_grid(grid_file, only, parse_sets(sets))
    ctx = run_context(device, data_dir, resume)
    with one_line_errors():
        maps = [] if only else plan_grid_maps(plan, parse_sets(sets), ctx.device)  # --only picks cells
    if executor != "ray":  # on Ray, the executor's check estimates each batch on a worker
        with one_line_errors():
            check_memory(plan.cells, ctx.device)
    client = open_tracking()
    project = project_run(client, experiment, experiment_name(experiment))  # under `mlflow run`
    experiment = project.experiment if project else experiment_name(experiment)
    parent = project.run_id if project and project.adopt else None  # MLflow's run is the parent
    if executor != "ray" and (address or workers):
        raise CliError("--address and --workers go with --executor ray")
    with one_line_errors(), executor_for(executor, address, workers, client.tracking_uri) as runner:
        click.echo(f"grid {plan.name} ({plan.path}): {len(plan.cells)} cells -> experiment {experiment!r}, "
                   f"store {client.tracking_uri}, executor {runner.name}")
        with one_line_errors(*store_errors()):
            result = run_grid(plan, experiment, ctx, force=force, parent_run_id=parent,
                              on_report=Announcer(len(plan.cells)), executor=runner)
    if project:
        point_to(client, project, [(result.parent_run_id, f"grid:{plan.name}")])
    click.echo(f"grid {plan.name}: {result.summary()}; parent run {result.parent_run_id}")
    click.echo(f"compare the cells: `mlflow ui --backend-store-uri {client.tracking_uri}`, "
               f"then {compare_url(result.experiment_id, view=grid_view(result.parent_run_id))}")
    if report and (result.count("FINISHED") or result.count("SKIPPED")):
        print_report(experiment, result.parent_run_id, out_dir, log_scale=log_scale)
    for phase_plan, rows, budget in maps:
        run_map(phase_plan, rows, budget, ctx.device, experiment, resume, None, parent_run_id=result.parent_run_id)
    failed = failure_summary(result.reports)
    if failed:
        raise CliError(failed)
