"""The tracking store: opening it (checked, created once), experiments, the paged run search.

Everything goes through :class:`mlflow.MlflowClient` with explicit ids (no global
"active run"), so several runs can be open at once (a batch of cells, a parent and
its children), and ``mlflow run``'s ``MLFLOW_RUN_ID`` is used only where rdbench
adopts it on purpose (:func:`active_env_run_id`).

:func:`open_store` checks the store before anything is written and fails in one line
(:class:`StoreError`) naming the URI and what to do: an unreachable server, a file
that is not an MLflow database, a store folder that is not writable, a database
locked by another process. A new sqlite store is created under a file lock, so many
processes started at once on a missing ``mlflow.db`` do not race through MLflow's
schema creation; an experiment created by two processes at once is tolerated.

Bounds, from the environment (documented in docs/grids-and-reports.md):

* ``RDBENCH_STORE_TIMEOUT_S`` (10): seconds to wait for a locked database when the
  store is opened;
* ``RDBENCH_SERVER_TIMEOUT_S`` (5): seconds to wait for a server that does not answer
  (one that refuses the connection is given ``REFUSED_GRACE_S``, one that answers an
  HTTP error or something other than MLflow's JSON is refused at once), so that a dead
  server is reported within 10 s of the command's start;
* ``RDBENCH_STORE_RETRIES`` (2): MLflow's HTTP retries per request, unless
  ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` is set (MLflow's default, 7, waits minutes);
* ``RDBENCH_STORE_WAIT_S`` (120): how long a write waits out a locked sqlite database
  during a run before the run fails.

MLflow's own log (the SQL tracebacks of a store that fails mid-run, its schema
messages) goes to a file, :func:`mlflow_log_path`, not the terminal: the command's one
line (:func:`describe_fault`) names the store, the cause and that file.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import sqlite3
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

REFUSED_GRACE_S = 2.0  # a server that refuses connections this long is down, not restarting
MLFLOW_LOGGERS = ("mlflow", "alembic", "sqlalchemy")  # whose records go to the log file, not the terminal
SEARCH_PAGE = 1000  # runs per page of a search (MLflow's maximum for most stores)
SQLITE_HEADER = b"SQLite format 3\x00"
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"  # MLflow's download progress bar (tqdm)
T = TypeVar("T")


class StoreError(RuntimeError):
    """The tracking store cannot be used; the message is one line naming the URI and what to do."""


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        raise StoreError(f"{name}={os.environ[name]!r} is not a number of seconds") from None


def store_timeout() -> float:
    return _env_float("RDBENCH_STORE_TIMEOUT_S", 10.0)


def server_timeout() -> float:
    return _env_float("RDBENCH_SERVER_TIMEOUT_S", 5.0)


def write_wait() -> float:
    return _env_float("RDBENCH_STORE_WAIT_S", 120.0)


def tracking_uri() -> str:
    """The configured store (``MLFLOW_TRACKING_URI`` or MLflow's default)."""
    import mlflow

    return mlflow.get_tracking_uri()


_opened: set[str] = set()


def client() -> MlflowClient:
    """A client on the configured store (``MLFLOW_TRACKING_URI`` or MLflow's default), opened
    with :func:`open_store` the first time in this process."""
    return open_store()


def open_store(uri: str | None = None) -> MlflowClient:
    """A client on the store at ``uri`` (default: the configured one), checked and created once.

    Raises :class:`StoreError` (one line) for a store that cannot be used.
    """
    uri = uri or tracking_uri()
    if uri not in _opened:
        quiet_mlflow_logs()
        _bound_http_retries()
        if uri.startswith("sqlite:"):
            _prepare_sqlite(uri)
        elif uri.startswith(("http://", "https://")):
            _check_server(uri)
        else:
            _probe(uri)
        _opened.add(uri)
    return MlflowClient(uri)


def _bound_http_retries() -> None:
    """MLflow retries an unreachable server for minutes by default: bound it, unless the user set it.

    Also turns MLflow's telemetry off unless the user chose: offline, its config thread
    removes ``_MLFLOW_TELEMETRY_SESSION_ID`` from the environment while a request of
    another thread may read it (MLflow 3.17.2), failing that request with a KeyError.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ:
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = os.environ.get("RDBENCH_STORE_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(store_timeout(), 1))))


def mlflow_log_path() -> Path:
    """Where MLflow's own log goes: ``$RDBENCH_MLFLOW_LOG``, else ``rdbench-<uid>/mlflow.log`` in the temp folder."""
    env = os.environ.get("RDBENCH_MLFLOW_LOG")
    return Path(env) if env else Path(tempfile.gettempdir()) / f"rdbench-{os.getuid()}" / "mlflow.log"


def quiet_mlflow_logs() -> None:
    """Send MLflow's (and SQLAlchemy's, Alembic's) log records to :func:`mlflow_log_path` instead of the
    terminal, so that a store fault is one line of rdbench's, not pages of tracebacks. With
    ``rdbench --verbose`` (the root logger at DEBUG) they stay on the terminal."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return
    path = mlflow_log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path)
    except OSError:
        handler = logging.NullHandler()  # nowhere to write: quiet all the same
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    for name in MLFLOW_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
            old.close()
        logger.addHandler(handler)
        logger.propagate = False


def describe_fault(exc: BaseException, uri: str | None = None) -> str:
    """One line for a store that failed mid-command: the URI, the root cause without its SQL, the log file."""
    text = " ".join(str(exc).split())
    text = re.sub(r"\[SQL: .*", "", text)
    text = re.sub(r"\(Background on this error at: [^)]*\)|\(raised as a result of [^)]*\)", "", text).strip()
    return (f"tracking store {uri or tracking_uri()} failed: {text[:300] or type(exc).__name__}; "
            f"MLflow's log: {mlflow_log_path()}")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///...`` URI (None for an in-memory database)."""
    rest = uri.split(":", 1)[1]
    if not rest.startswith("///"):
        return None
    path = rest[3:].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _prepare_sqlite(uri: str) -> None:
    path = sqlite_path(uri)
    if path is None:
        _probe(uri)
        return
    folder = path.parent if str(path.parent) else Path(".")
    if path.exists():
        with open(path, "rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
        if header and header != SQLITE_HEADER:
            raise StoreError(
                f"tracking store {uri}: {path} is not an SQLite database (corrupt, or another file); "
                f"move it away or point MLFLOW_TRACKING_URI at another store"
            )
        if not os.access(path, os.R_OK | os.W_OK) or not os.access(folder, os.W_OK):
            raise StoreError(f"tracking store {uri}: {path} or its folder is not writable; "
                             f"fix the permissions or point MLFLOW_TRACKING_URI elsewhere")
        _wait_for_lock(uri, path)
    else:
        if not folder.is_dir():
            raise StoreError(f"tracking store {uri}: folder {folder} does not exist; create it or "
                             f"point MLFLOW_TRACKING_URI elsewhere")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise StoreError(f"tracking store {uri}: cannot create {path.name}: folder {folder} is not "
                             f"writable; run where you can write, or point MLFLOW_TRACKING_URI elsewhere")
    # Create (or migrate) the schema once: concurrent first starts wait for the first one.
    try:
        lock = open(folder / f".{path.name}.rdbench-lock", "a")
    except OSError as exc:
        raise StoreError(f"tracking store {uri}: cannot write in {folder} ({exc.strerror}); run where you can "
                         f"write, or point MLFLOW_TRACKING_URI elsewhere") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _probe(uri)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _wait_for_lock(uri: str, path: Path) -> None:
    """A database another process holds locked for longer than the store timeout is refused."""
    try:
        conn = sqlite3.connect(str(path), timeout=store_timeout())
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.rollback()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreError(f"tracking store {uri} is locked by another process for over {store_timeout():.0f} s "
                             f"(RDBENCH_STORE_TIMEOUT_S); wait for it to finish, or use another store") from None
        raise StoreError(f"tracking store {uri}: {path} is not a usable SQLite database ({exc}); "
                         f"move it away or point MLFLOW_TRACKING_URI at another store") from None


def _probe(uri: str) -> None:
    """One cheap request through MLflow itself (creates a new sqlite store's schema)."""
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - MlflowException, SQLAlchemy and OS errors alike
        text = " ".join(str(exc).split())[:300]
        raise StoreError(f"tracking store {uri} cannot be used: {type(exc).__name__}: {text}") from None


def _check_server(uri: str) -> None:
    """``GET /health`` within :func:`server_timeout` (MLflow's own client would retry for minutes), then
    one MLflow request: a server that answers an HTTP error, or HTML where MLflow's JSON belongs, is
    refused in one line too."""
    url = uri.rstrip("/") + "/health"
    start = time.monotonic()
    deadline = start + server_timeout()
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=max(0.5, deadline - time.monotonic())) as response:
                if response.status == 200:
                    _probe(uri)
                    return
        except urllib.error.HTTPError as exc:
            raise StoreError(f"tracking server {uri} answered HTTP {exc.code} ({exc.reason}) on /health; "
                             f"is it an MLflow server? Check it, or set MLFLOW_TRACKING_URI elsewhere") from None
        except (urllib.error.URLError, OSError) as exc:
            error = exc
            refused = isinstance(getattr(exc, "reason", exc), ConnectionRefusedError)
            if refused and time.monotonic() - start > REFUSED_GRACE_S:
                break
        time.sleep(0.25)
    reason = getattr(error, "reason", error) or "no answer"
    raise StoreError(f"tracking server {uri} is unreachable ({reason}) within {time.monotonic() - start:.0f} s; "
                     f"start it (`rdbench server start`), or set MLFLOW_TRACKING_URI to a store you can reach")


def retrying(call: Callable[[], T], what: str = "write") -> T:
    """``call()``, waiting out a locked sqlite database for up to ``RDBENCH_STORE_WAIT_S`` seconds."""
    deadline = time.monotonic() + write_wait()
    pause = 0.2
    while True:
        try:
            return call()
        except MlflowException as exc:
            if "database is locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 5.0)


def experiment_id(mlflow_client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created on first use (restored if it was deleted).

    Two processes creating the same new experiment at once both get its id.
    """
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return mlflow_client.create_experiment(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS" and "already exists" not in str(exc).lower() \
                and "unique constraint" not in str(exc).lower():
            raise
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is None:
        raise StoreError(f"experiment {name!r} could not be created nor found in {mlflow_client.tracking_uri}")
    return exp.experiment_id


def search_runs(
    mlflow_client: MlflowClient,
    experiment_ids: Sequence[str],
    filter_string: str = "",
    order_by: Sequence[str] = ("attributes.start_time ASC",),
) -> list[Any]:
    """Every run matching ``filter_string`` (all pages), as ``mlflow.entities.Run``."""
    runs: list[Any] = []
    token = None
    while True:
        page = mlflow_client.search_runs(
            list(experiment_ids), filter_string=filter_string, max_results=SEARCH_PAGE,
            order_by=list(order_by), page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def all_experiment_ids(mlflow_client: MlflowClient) -> list[str]:
    """The ids of every active experiment (all pages)."""
    ids, token = [], None
    while True:
        page = mlflow_client.search_experiments(max_results=SEARCH_PAGE, page_token=token)
        ids.extend(e.experiment_id for e in page)
        token = page.token
        if not token:
            return ids


def active_env_run_id() -> str | None:
    """The run ``mlflow run`` created for this process, if any (``MLFLOW_RUN_ID``)."""
    return os.environ.get("MLFLOW_RUN_ID") or None


@contextlib.contextmanager
def quiet_downloads():
    """No tqdm progress bar on the terminal while artifacts are downloaded (restored afterwards)."""
    before = os.environ.get(PROGRESS_BAR_ENV)
    os.environ[PROGRESS_BAR_ENV] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PROGRESS_BAR_ENV, None)
        else:
            os.environ[PROGRESS_BAR_ENV] = before
