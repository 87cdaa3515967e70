"""The ``rdbench`` command line: parse, load config, hand over. No science here.

    rdbench run rd --case spot                  # one Table 1 row, tracked in MLflow
    rdbench run rd --feed 0.03 --steps 2000     # any setting as --NAME VALUE
    rdbench run lstm --dataset lorenz --seed 0 --seed 1
    rdbench bench rd                            # throughput against a numpy baseline
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from rdbench.config import ConfigError, available_systems, parse_assignment

log = logging.getLogger("rdbench")

DEFAULT_EXPERIMENT = "rdbench"


class CliError(click.ClickException):
    """A one-line error and exit status 2."""

    exit_code = 2


@contextlib.contextmanager
def progress_bar(total: int, label: str = "") -> Iterator[Any]:
    """A click progress bar on a terminal; nothing elsewhere (logs stay quiet)."""
    if not sys.stderr.isatty():
        from rdbench.systems.base import no_progress  # imports torch: only when a run starts

        with no_progress(total, label) as silent:
            yield silent
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar


def experiment_name(option: str | None) -> str:
    """``--experiment``, else ``$MLFLOW_EXPERIMENT_NAME``, else ``rdbench``."""
    return option or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def parse_extra_options(args: Sequence[str]) -> dict[str, Any]:
    """``--feed 0.03 --early-stop.tolerance=0`` -> ``{"feed": 0.03, "early_stop.tolerance": 0}``.

    An empty value (``--feed ''``) leaves the setting alone, so MLproject parameters
    can default to "whatever the case and profile say".
    """
    out: dict[str, Any] = {}
    items = list(args)
    while items:
        flag = items.pop(0)
        if not flag.startswith("--") or len(flag) == 2:
            raise CliError(f"unexpected argument {flag!r}; settings are passed as --NAME VALUE or --set NAME=VALUE")
        name, eq, value = flag[2:].partition("=")
        if not eq:
            if not items or (items[0].startswith("--") and len(items[0]) > 2):
                raise CliError(f"option --{name} needs a value")
            value = items.pop(0)
        if value == "":
            continue
        key, parsed = parse_assignment(f"{name.replace('-', '_')}={value}")
        out[key] = parsed
    return out


def parse_sets(values: Sequence[str]) -> dict[str, Any]:
    return dict(parse_assignment(v) for v in values)


def common_run_context(device: str, data_dir: str | None, resume: bool = False):
    from rdbench.systems.base import RunContext, resolve_device

    try:
        dev = resolve_device(device)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return RunContext(
        device=dev,
        progress=progress_bar,
        data_dir=Path(data_dir) if data_dir else None,
        resume=resume,
    )


def print_report(report) -> None:
    if report.status == "FINISHED":
        m = report.metrics
        click.echo(
            f"{report.cell.run_name:40s} FINISHED  M_react={m['M_react']:.4f}  M_diff={m['M_diff']:.4f}  "
            f"R={m['R']:.4f}  R_final={m['R_final']:.4f}  run={report.run_id}"
        )
    else:
        click.echo(f"{report.cell.run_name:40s} {report.status}  {report.error}  run={report.run_id}")


class LazyGroup(click.Group):
    """A click group whose commands in LAZY_COMMANDS are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS and name not in self.commands:
            module_name, _, attr = LAZY_COMMANDS[name].partition(":")
            self.add_command(getattr(importlib.import_module(module_name), attr), name)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """rdbench: measure the reaction/diffusion balance of Gray-Scott, LSTM and DDPM systems.

    Every run is recorded in MLflow (MLFLOW_TRACKING_URI, default sqlite:///mlflow.db
    in the working directory); look at it with `mlflow ui`.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@main.command(
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
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one setting. Repeatable.")
@click.option("--config", "config_path", type=click.Path(), help="System config file to use instead of conf/systems/SYSTEM.yaml.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--experiment", default=None, help="MLflow experiment name. Default: $MLFLOW_EXPERIMENT_NAME or 'rdbench'.")
@click.option("--data-dir", default=None, help="Where datasets are downloaded (default: $RDBENCH_DATA_DIR or a cache folder).")
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint where the system supports it.")
@click.pass_context
def run(ctx: click.Context, system: str, cases, seeds, profile, sets, config_path, device, experiment, data_dir, resume) -> None:
    """Run SYSTEM (one of the files in conf/systems/: rd, lstm, ddpm...) and track it in MLflow.

    One MLflow run per case x seed. Under `mlflow run`, a single cell logs into the run
    that `mlflow run` created; several cells become its children.
    """
    overrides = {**parse_extra_options(ctx.args), **parse_sets(sets)}
    if system not in available_systems() and config_path is None:  # before the heavy imports
        raise CliError(f"unknown system {system!r}; allowed: {', '.join(available_systems())}")
    from rdbench import runner, tracking

    try:
        cells = runner.plan_cells(system, cases or None, seeds or (0,), profile, overrides, config_path)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    run_ctx = common_run_context(device, data_dir, resume)
    experiment = experiment_name(experiment)
    env_run = tracking.active_env_run_id()
    adopt = env_run if env_run and len(cells) == 1 else None
    parent = env_run if env_run and len(cells) > 1 else None
    if parent:
        client = tracking.client()
        experiment = client.get_experiment(client.get_run(parent).info.experiment_id).name
    reports = runner.run_cells(
        cells, experiment, run_ctx, parent_run_id=parent, adopt_run_id=adopt,
        on_report=print_report, config_path=config_path,
    )
    failed = [r for r in reports if r.status != "FINISHED"]
    if failed:
        raise CliError(f"{len(failed)} of {len(reports)} cells failed: " + "; ".join(f"{r.cell.run_name}: {r.error}" for r in failed))


# Commands that live in their own modules, imported only when used, so that
# `rdbench run` does not load seaborn, the report or the Docker SDK.
LAZY_COMMANDS = {
    "bench": "rdbench.bench:bench",
    "container": "rdbench.container:container",
    "figures": "rdbench.figures:figures_command",
    "grid": "rdbench.grid:grid_command",
    "oracle": "rdbench.bench.oracle:oracle",
    "table": "rdbench.report:table_command",
}


if __name__ == "__main__":  # pragma: no cover
    main()
