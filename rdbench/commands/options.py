"""What every command shares: the one-line error, common options, parsing, the run context.

Imports neither torch nor MLflow at module level, so that a bad argument is refused
within a fraction of a second.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import click

from rdbench.config import ConfigError, parse_assignment

MAX_COUNT = 2**31 - 1  # steps, rounds, images... past this an option is a typo, not a plan
MAX_SEED = 2**32 - 1  # numpy's and torch's seeds all take 32-bit values
MAX_PROCESSES = 256  # processes or workers one command starts


def count(minimum: int = 1, maximum: int = MAX_COUNT) -> click.IntRange:
    """A whole-number option within ``[minimum, maximum]`` (click names both bounds when refusing)."""
    return click.IntRange(min=minimum, max=maximum)


class Seconds(click.FloatRange):
    """A finite duration in seconds within the range (click's FloatRange lets ``nan`` through)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return number


seed_type = count(0, MAX_SEED)
DEFAULT_OUT = "outputs/report"


class CliError(click.ClickException):
    """A one-line error and exit status 2."""

    exit_code = 2


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the runs in flight end KILLED with the reason, never RUNNING."""


def terminate_on_sigterm() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread (``timeout``, ``kill``, schedulers)."""

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(f"received {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def one_line_errors(*errors: type[BaseException]) -> Iterator[None]:
    """Turn a ConfigError (and any of ``errors``) raised in the block into a one-line CliError."""
    try:
        yield
    except (ConfigError, *errors) as exc:
        if type(exc).__module__.startswith("mlflow."):  # the store failed mid-command: its cause, not its SQL
            from rdbench.tracking.store import describe_fault

            raise CliError(describe_fault(exc)) from None
        raise CliError(" ".join(str(exc).split()) or type(exc).__name__) from None


def store_errors() -> tuple[type[BaseException], ...]:
    """The errors a store that fails mid-command raises (imports MLflow: call once a run starts)."""
    from mlflow.exceptions import MlflowException

    from rdbench.tracking.store import StoreError

    return (StoreError, MlflowException)


def experiment_name(option: str | None) -> str:
    """``--experiment``, else ``$MLFLOW_EXPERIMENT_NAME``, else ``rdbench``."""
    from rdbench.api import experiment_name as resolve

    return resolve(option)


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
        with one_line_errors():
            key, parsed = parse_assignment(f"{name.replace('-', '_')}={value}")
        out[key] = parsed
    return out


def parse_settings(text: str | None) -> dict[str, Any]:
    """``--settings "feed=0.03 steps=2000"``: several KEY=VALUE separated by spaces; ``none`` or empty: none.

    What the MLproject passes, so that MLflow logs no empty parameter and every
    setting rdbench resolves is a param with its value.
    """
    if text is None or text.strip().lower() in ("", "none"):
        return {}
    try:
        items = shlex.split(text)
    except ValueError as exc:
        raise CliError(f"--settings {text!r}: {exc}") from None
    return parse_sets(items)


def parse_sets(values: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` options as a dict (a malformed one is a one-line error)."""
    with one_line_errors():
        return dict(parse_assignment(v) for v in values)


@contextlib.contextmanager
def progress_bar(total: int, label: str = "") -> Iterator[Any]:
    """A click progress bar on a terminal; elsewhere (a log file) a timestamped line with the step, the
    rate and the ETA every $RDBENCH_PROGRESS_S seconds (:mod:`rdbench.progress`)."""
    if not sys.stderr.isatty():
        from rdbench.progress import log_progress

        with log_progress(total, label) as lines:
            yield lines
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar


def open_tracking():
    """The tracking store, checked (one line if it cannot be used), with orphaned runs closed.

    Runs left RUNNING by a process that was killed (SIGKILL, the OOM killer) are
    marked KILLED here, by whichever rdbench command opens the store next.
    """
    from rdbench.api import open_tracking as open_store

    with one_line_errors(*store_errors()):
        client, closed = open_store()
    if closed:
        click.echo(f"marked KILLED {len(closed)} run(s) whose process had ended: {', '.join(closed)}", err=True)
    return client


resume_option = click.option(
    "--resume/--no-resume", default=True, show_default=True,
    help="Continue from the checkpoint of the same configuration where there is one (training is "
         "deterministic, so this equals never stopping); --no-resume refuses rather than replace it.",
)


def run_context(device: str, data_dir: str | None, resume: bool = True, fresh: bool = False):
    """The :class:`~rdbench.systems.base.RunContext` of a command (a bad device, or a bad
    $RDBENCH_PROGRESS_S, is a one-line error); on a terminal, click's progress bar."""
    from rdbench.api import run_context as context

    with one_line_errors(ValueError):
        return context(device, data_dir, resume, fresh, progress=progress_bar)


def one_parent(parent_run_ids: Sequence[str], command: str) -> str | None:
    """The one ``--parent`` of a command that reports on a single study (None: the latest)."""
    if len(parent_run_ids) > 1:
        raise CliError(f"`rdbench {command}` takes one --parent, got {len(parent_run_ids)}; "
                       "compare two studies with `rdbench compare A B` (or `rdbench table --parent A --parent B`)")
    return parent_run_ids[0] if parent_run_ids else None


def options(*decorators: Callable) -> Callable:
    """Apply click option decorators in the order written (the first is listed first in --help)."""

    def apply(func: Callable) -> Callable:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


device_option = click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
fresh_option = click.option(
    "--fresh", is_flag=True,
    help="Train from scratch: delete the checkpoint of the same configuration instead of continuing from it (ddpm).",
)
experiment_option = click.option(
    "--experiment", default=None, help="MLflow experiment. Default: $MLFLOW_EXPERIMENT_NAME or 'rdbench'."
)
data_dir_option = click.option(
    "--data-dir", default=None, help="Where datasets are downloaded (default: $RDBENCH_DATA_DIR or a cache folder)."
)
set_option = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one setting. Repeatable.")
settings_option = click.option(
    "--settings", default=None, metavar="'KEY=VALUE ...'",
    help="Several settings in one argument, separated by spaces ('none': none); what the MLproject passes.",
)
out_option = click.option("--out", "out_dir", default=DEFAULT_OUT, show_default=True, help="Where files are written.")
log_scale_option = click.option("--log-scale", is_flag=True, help="Fig. 2 and Fig. 3 with a logarithmic R axis.")

# Which cell runs `table` and `figures` report on, where the files go.
selection_options = options(
    experiment_option,
    click.option("--parent", "parent_run_ids", multiple=True, metavar="RUN_ID",
                 help="A grid's parent run (its run id or its study's short id). Default: the latest grid run "
                      "of the experiment that ran its whole grid. `table` takes two, to compare them."),
    click.option("--all-cells", is_flag=True,
                 help="Every cell of the experiment (the latest run of each config) instead of one grid."),
    out_option,
    click.option("--log/--no-log", default=True, show_default=True, help="Log the files to the grid's parent run."),
    click.option("--published", "published_path", default=None, type=click.Path(exists=True, dir_okay=False),
                 help="Published values (default conf/published.yaml)."),
)
