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

import click

# subcommand -> "module:attribute" of its click command, imported on first use
COMMANDS = {
    "bench": "rdbench.commands.bench:bench",
    "container": "rdbench.commands.container:container",
    "figures": "rdbench.commands.figures:figures",
    "grid": "rdbench.commands.grid:grid",
    "oracle": "rdbench.commands.oracle:oracle",
    "run": "rdbench.commands.run:run",
    "table": "rdbench.commands.table:table",
}


class LazyGroup(click.Group):
    """A click group whose commands in COMMANDS are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS and name not in self.commands:
            module_name, _, attr = COMMANDS[name].partition(":")
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
