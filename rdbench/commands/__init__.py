"""The ``rdbench`` command line: one module per subcommand, the only code that imports click.

    rdbench run rd --case spot                  # one Table 1 row, tracked in MLflow
    rdbench grid conf/offline.yaml              # a whole study: a parent run, a child per cell
    rdbench table                               # Table 1 from the store, beside the paper
    rdbench bench rd                            # throughput against a numpy baseline

Commands parse, check, call the library (:mod:`rdbench.study`, :mod:`rdbench.report`,
:mod:`rdbench.bench`, :mod:`rdbench.container`) and print; no science here. Each
subcommand is imported on first use, so ``rdbench run`` does not load seaborn or the
Docker SDK, and a bad argument is refused before torch and MLflow load.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys

import click

# subcommand -> "module:attribute" of its click command, imported on first use
COMMANDS = {
    "bench": "rdbench.commands.bench:bench",
    "compare": "rdbench.commands.table:compare",
    "container": "rdbench.commands.container:container",
    "figures": "rdbench.commands.figures:figures",
    "grid": "rdbench.commands.grid:grid",
    "oracle": "rdbench.commands.oracle:oracle",
    "phase": "rdbench.commands.phase:phase",
    "run": "rdbench.commands.run:run",
    "server": "rdbench.commands.server:server",
    "table": "rdbench.commands.table:table",
}


class LazyGroup(click.Group):
    """A click group whose commands in COMMANDS are imported on first use, and whose every
    error is one line: a usage error too (click would print the usage and a hint)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from rdbench.provenance import set_command

        set_command(list(sys.argv[1:] if args is None else args))
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
            click.echo(f"Error: {' '.join(exc.format_message().split())}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort as exc:  # Ctrl-C, or SIGTERM (Terminated): the runs in flight are KILLED
            cause = exc.__cause__
            click.echo(f"Aborted: {cause}" if cause and str(cause) else "Aborted.", err=True)
            sys.exit(128 + signal.SIGTERM if type(cause).__name__ == "Terminated" else 128 + signal.SIGINT)
        sys.exit(code if isinstance(code, int) else 0)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS and name not in self.commands:
            module_name, _, attr = COMMANDS[name].partition(":")
            self.add_command(getattr(importlib.import_module(module_name), attr), name)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
@click.option("--trust-plugin", "trusted", multiple=True, metavar="MODULE",
              help="Allow system plug-ins from MODULE (a config file alone cannot make rdbench import code "
                   "from outside rdbench.systems). Repeatable.")
def main(verbose: bool, trusted: tuple[str, ...]) -> None:
    """rdbench: measure the reaction/diffusion balance of Gray-Scott, LSTM and DDPM systems.

    Every run is recorded in MLflow (MLFLOW_TRACKING_URI, default sqlite:///mlflow.db
    in the working directory); look at it with `mlflow ui`.
    """
    from rdbench.commands.options import one_line_errors, terminate_on_sigterm
    from rdbench.config import trust_plugin_module

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    terminate_on_sigterm()
    with one_line_errors():
        for module in trusted:
            trust_plugin_module(module)
