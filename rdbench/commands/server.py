"""``rdbench server start|stop|status FOLDER``: a production-shaped tracking store on a head node.

PostgreSQL (Debian's ``postgresql`` package, a data folder under FOLDER, loopback only)
and ``mlflow server --serve-artifacts`` on it, so that workers on other machines need
no shared file system; or, with ``--backend-uri``, an MLflow server on a PostgreSQL you
already run. The library is :mod:`rdbench.tracking.server`.
"""

from __future__ import annotations

import sys

import click

from rdbench.commands.options import MAX_PROCESSES, CliError, Seconds, count

MAX_WAIT_S = 3600.0  # a wait longer than an hour is a typo


def _run(call):
    from rdbench.tracking.server import ServerError

    try:
        return call()
    except ServerError as exc:
        error = CliError(str(exc))
        error.exit_code = exc.exit_code
        raise error from None


@click.group()
def server() -> None:
    """Start, stop or look at the tracking server (PostgreSQL + MLflow) that a cluster's workers share."""


@server.command("start")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address the MLflow server listens on (0.0.0.0 for a cluster). PostgreSQL stays on loopback.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535),
              help="MLflow server port (0: any free port).")
@click.option("--pg-port", default=None, type=click.IntRange(1, 65535), help="PostgreSQL port (default: a free one).")
@click.option("--backend-uri", envvar="RDBENCH_BACKEND_URI", default=None, metavar="URI",
              help="An existing PostgreSQL (postgresql+psycopg2://user:pw@host:port/db): start only the MLflow "
                   "server on it. Also $RDBENCH_BACKEND_URI, which keeps the password out of shell history.")
@click.option("--workers", default=2, show_default=True, type=count(1, MAX_PROCESSES), help="MLflow server workers.")
@click.option("--allowed-hosts", default=None, help="MLflow's --allowed-hosts (a head reached by DNS name).")
@click.option("--timeout", default=120.0, show_default=True, type=Seconds(min=1, max=MAX_WAIT_S), help="Seconds to wait for health.")
def start(folder, host, port, pg_port, backend_uri, workers, allowed_hosts, timeout) -> None:
    """Start PostgreSQL (initialised in FOLDER the first time) and the MLflow server on it."""
    from rdbench.tracking import server as ts

    state = _run(lambda: ts.start(folder, host, mlflow_port=port, pg_port=pg_port, backend_uri=backend_uri,
                                  workers=workers, allowed_hosts=allowed_hosts, timeout=timeout, echo=click.echo))
    click.echo(f"export MLFLOW_TRACKING_URI={state.tracking_uri}")


@server.command("stop")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--timeout", default=30.0, show_default=True, type=Seconds(min=1, max=MAX_WAIT_S),
              help="Seconds to wait before stopping harder.")
def stop(folder, timeout) -> None:
    """Stop the MLflow server and PostgreSQL recorded in FOLDER."""
    from rdbench.tracking import server as ts

    for line in _run(lambda: ts.stop(folder, timeout=timeout, echo=click.echo)):
        click.echo(line)


@server.command("status")
@click.argument("folder", type=click.Path(file_okay=False))
def status(folder) -> None:
    """Say what runs from FOLDER; exit 0 when the server runs, 3 when it does not (as pg_ctl status)."""
    from rdbench.tracking import server as ts

    found = _run(lambda: ts.status(folder))
    for line in found.lines():
        click.echo(line)
    if not found.running:
        sys.exit(3)
