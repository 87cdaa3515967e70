"""``rdbench run SYSTEM``: run cases x seeds of one system, one MLflow run per cell."""

from __future__ import annotations

import click

from rdbench.commands.options import (
    CliError,
    data_dir_option,
    device_option,
    experiment_name,
    experiment_option,
    one_line_errors,
    open_tracking,
    options,
    parse_extra_options,
    parse_sets,
    parse_settings,
    resume_option,
    run_context,
    set_option,
    settings_option,
    store_errors,
)
from rdbench.commands.output import cell_line
from rdbench.config import available_systems


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    epilog=(
        "Examples:\n\n"
        "  rdbench run rd --case spot --case stripe --seed 0 --seed 1\n\n"
        "  rdbench run rd --feed 0.03 --steps 2000 --profile quick\n\n"
        "  rdbench run lstm --dataset lorenz\n\n"
        "Any setting of the system's config file can be given as --NAME VALUE or\n"
        "--set NAME=VALUE (nested: --set early_stop.tolerance=0)."
    ),
)
@click.argument("system")
@click.option("-c", "--case", "--dataset", "cases", multiple=True,
              help="Case to run (rd: spot, stripe...; lstm/ddpm: the dataset). Repeatable. Default: the system's default case.")
@click.option("-s", "--seed", "seeds", multiple=True, type=int, help="Random seed. Repeatable. Default: 0.")
@click.option("-p", "--profile", default="paper", show_default=True, help="Settings profile: paper, quick, smoke (see conf/systems/).")
@options(
    set_option,
    settings_option,
    click.option("--model", "model", default=None, metavar="PATH_OR_ID",
                 help="Measure this trained model instead of training one (the system's `pretrained` setting): "
                      "a model an earlier rdbench run logged, runs:/RUN_ID/model (ddpm, lstm), or a diffusers "
                      "pipeline folder or Hub id (ddpm)."),
    click.option("--config", "config_path", type=click.Path(), help="System config file to use instead of conf/systems/SYSTEM.yaml."),
    device_option,
    experiment_option,
    data_dir_option,
    resume_option,
    click.option("--allow-unstable", is_flag=True,
                 help="rd: run a point whose explicit Euler step the stability estimate calls unstable "
                      "(refused otherwise); its run is tagged rdbench.unstable=true."),
)
@click.pass_context
def run(ctx: click.Context, system: str, cases, seeds, profile, sets, settings, model, config_path, device, experiment,
        data_dir, resume, allow_unstable) -> None:
    """Run SYSTEM (one of the files in conf/systems/: rd, lstm, ddpm...) and track it in MLflow.

    One MLflow run per case x seed. Under `mlflow run`, a single cell logs into the run
    that `mlflow run` created; several cells become its children.
    """
    overrides = {**parse_extra_options(ctx.args), **parse_settings(settings), **parse_sets(sets)}
    if system not in available_systems() and config_path is None:  # before the heavy imports
        raise CliError(f"unknown system {system!r}; allowed: {', '.join(available_systems())}")
    from rdbench.study.cells import plan_cells, plugin
    from rdbench.study.runner import check_memory, failure_summary, run_cells
    from rdbench.tracking.projects import point_to, project_run

    with one_line_errors():
        if model is not None:
            if "pretrained" not in plugin(system, config_path).system.Settings.model_fields:
                raise CliError(f"--model: system {system!r} measures only models it trains itself (no pretrained setting)")
            overrides["pretrained"] = model
        if allow_unstable:
            if "allow_unstable" not in plugin(system, config_path).system.Settings.model_fields:
                raise CliError(f"--allow-unstable: system {system!r} has no stability check to override")
            overrides["allow_unstable"] = True
        cells = plan_cells(system, cases or None, seeds or (0,), profile, overrides, config_path)
    run_ctx = run_context(device, data_dir, resume)
    with one_line_errors():
        check_memory(cells, run_ctx.device)
    client = open_tracking()
    project = project_run(client, experiment, experiment_name(experiment))  # under `mlflow run`
    experiment = project.experiment if project else experiment_name(experiment)
    adopt = project.run_id if project and project.adopt and len(cells) == 1 else None
    parent = project.run_id if project and project.adopt and len(cells) > 1 else None
    if project and not project.adopt:  # MLflow's run in `Default` points to the runs rdbench makes
        point_to(client, project, [("(starting)", cell.run_name) for cell in cells])
    with one_line_errors(*store_errors()):
        reports = run_cells(cells, experiment, run_ctx, parent_run_id=parent, adopt_run_id=adopt,
                            on_report=lambda r: click.echo(cell_line(r)))
    if project:
        point_to(client, project, [(r.run_id, r.cell.run_name) for r in reports if r.run_id])
    failed = failure_summary(reports)
    if failed:
        raise CliError(failed)
