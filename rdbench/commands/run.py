"""``rdbench run SYSTEM``: run cases x seeds of one system, one MLflow run per cell."""

from __future__ import annotations

import click

from rdbench.commands.options import (
    CliError,
    data_dir_option,
    device_option,
    experiment_option,
    fresh_option,
    one_line_errors,
    open_tracking,
    options,
    parse_extra_options,
    parse_sets,
    parse_settings,
    resume_option,
    run_context,
    seed_type,
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
@click.option("-s", "--seed", "seeds", multiple=True, type=seed_type, help="Random seed. Repeatable. Default: 0.")
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
    fresh_option,
    click.option("--allow-unstable", is_flag=True,
                 help="rd: run a point whose explicit Euler step the stability estimate calls unstable "
                      "(refused otherwise); its run is tagged rdbench.unstable=true."),
)
@click.pass_context
def run(ctx: click.Context, system: str, cases, seeds, profile, sets, settings, model, config_path, device, experiment,
        data_dir, resume, fresh, allow_unstable) -> None:
    """Run SYSTEM (one of the files in conf/systems/: rd, lstm, ddpm...) and track it in MLflow.

    One MLflow run per case x seed. Under `mlflow run`, a single cell logs into the run
    that `mlflow run` created; several cells become its children. The same as
    rdbench.run() from Python (docs/api.md).
    """
    overrides = {**parse_extra_options(ctx.args), **parse_settings(settings), **parse_sets(sets)}
    if system not in available_systems() and config_path is None:  # before the heavy imports
        raise CliError(f"unknown system {system!r}; allowed: {', '.join(available_systems())}")
    import rdbench.api as api
    from rdbench.study.runner import failure_summary

    with one_line_errors():
        if allow_unstable:
            from rdbench.study.cells import plugin

            if "allow_unstable" not in plugin(system, config_path).system.Settings.model_fields:
                raise CliError(f"--allow-unstable: system {system!r} has no stability check to override")
            overrides["allow_unstable"] = True
        cells = api.plan_run(system, cases, seeds or (0,), profile, overrides, config_path, model, data_dir,
                             click.echo)
    run_ctx = run_context(device, data_dir, resume, fresh)
    open_tracking()
    with one_line_errors(*store_errors()):
        reports = api.run_cells(cells, run_ctx, experiment, on_report=lambda r: click.echo(cell_line(r)))
    failed = failure_summary(reports)
    if failed:
        raise CliError(failed)
