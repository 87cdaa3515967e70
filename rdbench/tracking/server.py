"""A production-shaped MLflow tracking store on a head node: PostgreSQL + ``mlflow server``.

    start(folder)                     # PostgreSQL in FOLDER/postgres, MLflow on 127.0.0.1:5000
    start(folder, host="0.0.0.0")     # reachable from the other nodes of a cluster
    start(folder, backend_uri="postgresql+psycopg2://user:pw@db:5432/mlflow")  # an existing PostgreSQL
    status(folder); stop(folder)

What ``start`` does, in order:

1. PostgreSQL (Debian's ``postgresql`` package; the binaries are looked up in
   ``/usr/lib/postgresql/<version>/bin``, newest first, then on PATH): the first
   time, ``initdb`` makes a data folder ``FOLDER/postgres/data`` with a user
   ``mlflow`` whose random password is kept in ``FOLDER/postgres.password``
   (mode 0600; password authentication, no "trust"); then ``pg_ctl start`` on
   127.0.0.1 only, no Unix socket, and ``CREATE DATABASE mlflow`` once.
   PostgreSQL refuses to run as root: as root, rdbench runs ``initdb`` and
   ``pg_ctl`` as the ``postgres`` user (``runuser``) and gives it
   ``FOLDER/postgres``. Only the MLflow server talks to PostgreSQL, so it never
   listens beyond loopback whatever ``host`` is.
2. ``mlflow server --serve-artifacts --artifacts-destination FOLDER/artifacts``
   on ``host:mlflow_port``, the backend URI passed in the environment (not on
   the command line, where ``ps`` would show the password). Clients, workers on
   other nodes included, need only ``MLFLOW_TRACKING_URI=http://HOST:PORT``:
   artifacts travel through the server, no shared file system is involved.
3. Waits for ``GET /health``, then writes ``FOLDER/server.json`` (pids, ports,
   URIs; the password is never in it).

Both services run as session leaders (:mod:`rdbench.processes`); ``stop`` ends
them by the recorded pids, gracefully, then harder. A failure leaves nothing
running that this call started and is one line (:class:`ServerError`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import rdbench.processes as processes

STATE_FILE = "server.json"
PG_USER = "mlflow"  # the database role and the database MLflow uses
PG_DB = "mlflow"
PG_SERVICE_USER = "postgres"  # who runs PostgreSQL when rdbench runs as root
DEFAULT_MLFLOW_PORT = 5000
LOOPBACK = "127.0.0.1"
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")  # Debian/Ubuntu: <version>/bin/{initdb,pg_ctl}
INSTALL_POSTGRES = "apt-get install postgresql"
INSTALL_PSYCOPG2 = "pip install psycopg2-binary (or pip install 'rdbench[server]')"
SERVER_COMMANDS = "rdbench server start|stop|status"

Echo = Callable[[str], None]


class ServerError(RuntimeError):
    """A one-line failure of the tracking server; ``exit_code`` 2 for bad input, 1 otherwise."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class PostgresState:
    """The PostgreSQL that ``start`` runs for the MLflow server (absent for an existing one)."""

    pid: int
    port: int
    data_dir: str
    bin_dir: str
    run_as: str | None  # the user pg_ctl runs as (None: the caller)
    log: str


@dataclass(frozen=True)
class ServerState:
    """What ``FOLDER/server.json`` records about a started server."""

    folder: str
    host: str
    mlflow_port: int
    mlflow_pid: int
    tracking_uri: str  # what clients put in MLFLOW_TRACKING_URI
    backend_uri: str  # the password masked
    artifacts_destination: str
    mlflow_log: str
    postgres: PostgresState | None
    started_at: float

    @classmethod
    def read(cls, folder: str | Path) -> ServerState | None:
        path = Path(folder) / STATE_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            pg = data.pop("postgres")
            return cls(**data, postgres=PostgresState(**pg) if pg else None)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ServerError(f"unreadable server state {path}: {exc}", exit_code=2) from exc

    def write(self) -> None:
        path = Path(self.folder) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    @property
    def local_uri(self) -> str:
        """The tracking URI as seen from the server's own machine."""
        return f"http://{_probe_host(self.host)}:{self.mlflow_port}"


@dataclass(frozen=True)
class ServerStatus:
    """``status(folder)``: the recorded state and what is actually running."""

    folder: str
    state: ServerState | None
    mlflow_running: bool
    postgres_running: bool | None  # None: not ours (an existing PostgreSQL) or no state
    healthy: bool

    @property
    def running(self) -> bool:
        return self.healthy and self.postgres_running is not False

    def lines(self) -> list[str]:
        if self.state is None:
            return [f"no tracking server recorded in {self.folder}"]
        s = self.state
        pg = s.postgres
        return [
            f"tracking URI   {s.tracking_uri}  ({'healthy' if self.healthy else 'NOT healthy'})",
            f"mlflow server  pid {s.mlflow_pid} {'running' if self.mlflow_running else 'not running'}, log {s.mlflow_log}",
            f"backend store  {s.backend_uri}",
            (f"postgresql     pid {pg.pid} on {LOOPBACK}:{pg.port} "
             f"{'running' if self.postgres_running else 'not running'}, data {pg.data_dir}")
            if pg else "postgresql     not managed here (an existing server)",
            f"artifacts      {s.artifacts_destination}",
        ]


# --------------------------------------------------------------------------- start


def start(
    folder: str | Path,
    host: str = LOOPBACK,
    *,
    mlflow_port: int = DEFAULT_MLFLOW_PORT,
    pg_port: int | None = None,
    backend_uri: str | None = None,
    workers: int = 2,
    allowed_hosts: str | None = None,
    timeout: float = 120.0,
    echo: Echo | None = None,
) -> ServerState:
    """Start PostgreSQL (unless ``backend_uri`` names an existing database) and the MLflow server.

    ``host``: where the MLflow server listens (``0.0.0.0`` for every interface).
    ``mlflow_port`` / ``pg_port``: 0 or None picks a free port (PostgreSQL reuses the
    port it had last time in this folder, if still free). ``allowed_hosts``: MLflow's
    ``--allowed-hosts`` (its default accepts localhost and private addresses; a head
    node reached by a DNS name needs that name here). ``timeout``: seconds to wait for
    each service.
    """
    say = echo or (lambda _line: None)
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    previous = ServerState.read(folder)
    if previous and _is_ours(previous.mlflow_pid, "mlflow"):
        raise ServerError(
            f"a tracking server from {folder} is already running ({previous.tracking_uri}, "
            f"mlflow pid {previous.mlflow_pid}): stop it first", exit_code=2)
    if workers < 1:
        raise ServerError(f"workers must be at least 1, got {workers}", exit_code=2)
    if backend_uri is not None and not DATABASE_URI.match(backend_uri):
        raise ServerError(f"--backend-uri {mask_password(backend_uri)!r} is not a database URI; allowed: "
                          "postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DB (or mysql://..., sqlite:///FILE)",
                          exit_code=2)
    _require_psycopg2(backend_uri)
    if not mlflow_port:
        mlflow_port = processes.free_port(_probe_host(host))
    if processes.port_in_use(_bind_host(host), mlflow_port):
        raise ServerError(f"port {mlflow_port} on {host} is in use: choose another MLflow port", exit_code=2)

    started_pg: PostgresState | None = None
    pg: PostgresState | None = None
    try:
        if backend_uri is None:
            pg, started_pg = _start_postgres(folder, pg_port, previous, timeout, say)
            password = _password_file(folder).read_text().strip()
            backend = f"postgresql+psycopg2://{PG_USER}:{password}@{LOOPBACK}:{pg.port}/{PG_DB}"
        else:
            _check_backend(backend_uri)
            backend = backend_uri
        artifacts = folder / "artifacts"
        artifacts.mkdir(exist_ok=True)
        state = _start_mlflow(folder, host, mlflow_port, backend, artifacts, workers,
                              allowed_hosts, timeout, pg, say)
    except BaseException:
        if started_pg is not None:
            _stop_postgres(started_pg, say)
        raise
    state.write()
    return state


def _start_mlflow(folder: Path, host: str, port: int, backend: str, artifacts: Path, workers: int,
                  allowed_hosts: str | None, timeout: float, pg: PostgresState | None,
                  say: Echo) -> ServerState:
    log = folder / "mlflow.log"
    command = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
               "--workers", str(workers), "--serve-artifacts",
               "--artifacts-destination", artifacts.as_uri()]
    if allowed_hosts:
        command += ["--allowed-hosts", allowed_hosts]
    # MLflow's job runner (GenAI jobs, seven huey consumers) serves nothing rdbench logs
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ,
           "MLFLOW_BACKEND_STORE_URI": backend}
    say(f"starting the MLflow server on {host}:{port} (log {log})")
    t0 = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=folder)
    try:
        _wait_healthy(proc, f"http://{_probe_host(host)}:{port}/health", log, timeout)
    except BaseException:
        processes.stop_session(proc.pid, timeout=10)
        proc.wait()
        raise
    say(f"MLflow server healthy after {time.monotonic() - t0:.1f} s (pid {proc.pid})")
    public = host if host not in ("0.0.0.0", "::", "") else socket.getfqdn()
    return ServerState(
        folder=str(folder), host=host, mlflow_port=port, mlflow_pid=proc.pid,
        tracking_uri=f"http://{public}:{port}", backend_uri=mask_password(backend),
        artifacts_destination=artifacts.as_uri(), mlflow_log=str(log), postgres=pg,
        started_at=time.time())


def _wait_healthy(proc: subprocess.Popen, url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            raise ServerError(f"the MLflow server exited with status {code}; "
                              f"last line of {log}: {last_line(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() >= deadline:
            raise ServerError(f"the MLflow server did not become healthy within {timeout:.0f} s "
                              f"({url}); last line of {log}: {last_line(log)}")
        time.sleep(0.5)


# --------------------------------------------------------------------------- PostgreSQL


def find_postgres_bin() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: $RDBENCH_PG_BIN, Debian's newest, or PATH."""
    candidates = []
    if os.environ.get("RDBENCH_PG_BIN"):
        candidates.append(Path(os.environ["RDBENCH_PG_BIN"]))
    versions = sorted(DEBIAN_PG_ROOT.glob("*/bin"),
                      key=lambda p: _version_key(p.parent.name), reverse=True)
    candidates += versions
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise ServerError("PostgreSQL server binaries (initdb, pg_ctl) not found in "
                      f"/usr/lib/postgresql/*/bin or on PATH: {INSTALL_POSTGRES}", exit_code=2)


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name)) or (0,)


def _password_file(folder: Path) -> Path:
    return folder / "postgres.password"


def _run_as() -> str | None:
    """The user PostgreSQL must run as: None (the caller) unless the caller is root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SERVICE_USER)
    except KeyError:
        raise ServerError(f"PostgreSQL refuses to run as root and there is no {PG_SERVICE_USER!r} "
                          f"user to run it as: run as another user, or {INSTALL_POSTGRES}",
                          exit_code=2) from None
    if not shutil.which("runuser"):
        raise ServerError("PostgreSQL refuses to run as root and runuser (util-linux) is missing",
                          exit_code=2)
    return PG_SERVICE_USER


def _as_user(user: str | None, command: list[str]) -> list[str]:
    return command if user is None else ["runuser", "-u", user, "--", *command]


def _give_folder(folder: Path, user: str | None) -> None:
    """Make ``folder`` the PostgreSQL user's; one line naming the parent that blocks it if it cannot reach it."""
    folder.mkdir(mode=0o700, exist_ok=True)
    if user is None:
        return
    entry = pwd.getpwnam(user)
    os.chown(folder, entry.pw_uid, entry.pw_gid)
    folder.chmod(0o700)
    if subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(folder)]).returncode == 0:
        return
    blocking = next(
        (p for p in reversed(folder.parents)
         if subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(p)]).returncode != 0),
        folder.parent)
    raise ServerError(
        f"PostgreSQL runs as user {user!r} (it refuses root), which cannot reach {folder}: "
        f"{blocking} is not searchable by it (chmod o+x {blocking}, or choose a folder such as "
        f"/srv/rdbench)", exit_code=2)


def _start_postgres(folder: Path, pg_port: int | None, previous: ServerState | None, timeout: float,
                    say: Echo) -> tuple[PostgresState, PostgresState | None]:
    """(the running PostgreSQL, the same if this call started it else None)."""
    bin_dir = find_postgres_bin()
    user = _run_as()
    home = folder / "postgres"
    data = home / "data"
    log = home / "postgres.log"
    old = previous.postgres if previous else None
    if old and _is_ours(old.pid, "postgres"):
        say(f"PostgreSQL already running (pid {old.pid}, port {old.port})")
        return old, None
    _give_folder(home, user)
    password_file = _password_file(folder)
    if not (data / "PG_VERSION").exists():
        _initdb(bin_dir, data, home, password_file, user, say)
    port = pg_port or (old.port if old and not processes.port_in_use(LOOPBACK, old.port) else 0)
    port = port or processes.free_port(LOOPBACK)
    if processes.port_in_use(LOOPBACK, port):
        raise ServerError(f"port {port} on {LOOPBACK} is in use (another PostgreSQL?): choose another "
                          "PostgreSQL port, or use that server with backend_uri", exit_code=2)
    say(f"starting PostgreSQL on {LOOPBACK}:{port} (data {data})")
    options = f"-p {port} -c listen_addresses={LOOPBACK} -c unix_socket_directories=''"
    proc = subprocess.run(
        _as_user(user, [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
                        "-t", str(int(timeout)), "-o", options, "start"]),
        capture_output=True, text=True, stdin=subprocess.DEVNULL)
    pid = _postmaster_pid(data)
    if proc.returncode != 0 or pid is None:
        if pid is not None:  # started but not ready in time: leave nothing behind
            processes.stop_session(pid, timeout=10, first=signal.SIGQUIT)
        raise ServerError(f"PostgreSQL did not start (pg_ctl status {proc.returncode}); "
                          f"last line of {log}: {last_line(log) or last_line_of(proc.stderr)}")
    state = PostgresState(pid=pid, port=port, data_dir=str(data), bin_dir=str(bin_dir),
                          run_as=user, log=str(log))
    try:
        _create_database(port, password_file.read_text().strip(), say)
    except BaseException:
        _stop_postgres(state, say)
        raise
    return state, state


def _initdb(bin_dir: Path, data: Path, home: Path, password_file: Path, user: str | None,
            say: Echo) -> None:
    say(f"initialising a PostgreSQL data folder in {data}")
    password = secrets.token_hex(16)
    password_file.touch(mode=0o600)
    password_file.chmod(0o600)
    password_file.write_text(password + "\n")
    pwfile = home / ".initdb-password"  # readable by the PostgreSQL user for initdb only
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    try:
        proc = subprocess.run(
            _as_user(user, [str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER,
                            f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                            "--locale=C", "--no-instructions"]),
            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    finally:
        pwfile.unlink(missing_ok=True)
    if proc.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise ServerError(f"initdb failed: {last_line_of(proc.stderr) or last_line_of(proc.stdout)}")


def _postmaster_pid(data: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        return pid if processes.alive(pid) else None
    return None


def _create_database(port: int, password: str, say: Echo) -> None:
    import psycopg2

    conn = psycopg2.connect(host=LOOPBACK, port=port, user=PG_USER, password=password,
                            dbname="postgres", connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DB,))
            if cur.fetchone() is None:
                say(f"creating database {PG_DB}")
                cur.execute(f"CREATE DATABASE {PG_DB}")
    finally:
        conn.close()


def _stop_postgres(pg: PostgresState, say: Echo) -> None:
    if not processes.alive(pg.pid):
        return
    say(f"stopping PostgreSQL (pid {pg.pid})")
    backends = processes.children(pg.pid)  # each in a session of its own
    subprocess.run(
        _as_user(pg.run_as, [str(Path(pg.bin_dir) / "pg_ctl"), "-D", pg.data_dir, "-m", "fast",
                             "-w", "-t", "30", "stop"]),
        capture_output=True, stdin=subprocess.DEVNULL)
    # whatever pg_ctl left (or all of it, if pg_ctl is gone): SIGQUIT is PostgreSQL's immediate shutdown
    processes.stop_session(pg.pid, timeout=10, first=signal.SIGQUIT)
    for pid in backends:
        processes.stop_session(pid, timeout=5, first=signal.SIGQUIT)


# --------------------------------------------------------------------------- existing backend


DATABASE_URI = re.compile(r"^(postgresql|mysql|mssql|sqlite)(\+\w+)?://.+")  # what MLflow's SQL store takes


def _require_psycopg2(backend_uri: str | None) -> None:
    if backend_uri is not None and not backend_uri.startswith("postgresql"):
        return
    if importlib.util.find_spec("psycopg2") is None:
        raise ServerError(f"psycopg2 is not installed (MLflow needs it for PostgreSQL): {INSTALL_PSYCOPG2}",
                          exit_code=2)


def _check_backend(backend_uri: str) -> None:
    """Connect once to an existing PostgreSQL, so that a wrong URI is one line, not a server log."""
    if not backend_uri.startswith("postgresql"):
        return
    import psycopg2
    from sqlalchemy.engine import make_url

    try:
        url = make_url(backend_uri)
    except Exception as exc:
        raise ServerError(f"bad backend URI {mask_password(backend_uri)}: {exc}", exit_code=2) from exc
    try:
        psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                         dbname=url.database, connect_timeout=10).close()
    except psycopg2.Error as exc:
        raise ServerError(f"cannot connect to PostgreSQL at {mask_password(backend_uri)}: "
                          f"{last_line_of(str(exc))}", exit_code=2) from exc


def mask_password(uri: str) -> str:
    """``scheme://user:***@host/db`` (the URI unchanged when it has no password)."""
    return re.sub(r"(://[^/:@]+):[^@/]*@", r"\1:***@", uri)


# --------------------------------------------------------------------------- status / stop


def status(folder: str | Path) -> ServerStatus:
    """What runs from ``folder`` (no state file: nothing running, healthy False)."""
    folder = Path(folder).resolve()
    state = ServerState.read(folder)
    if state is None:
        return ServerStatus(str(folder), None, False, None, False)
    mlflow_running = _is_ours(state.mlflow_pid, "mlflow")
    healthy = False
    if mlflow_running:
        with contextlib.suppress(urllib.error.URLError, OSError):
            with urllib.request.urlopen(f"{state.local_uri}/health", timeout=5) as response:
                healthy = response.status == 200
    pg_running = _is_ours(state.postgres.pid, "postgres") if state.postgres else None
    return ServerStatus(str(folder), state, mlflow_running, pg_running, healthy)


def stop(folder: str | Path, *, timeout: float = 30.0, echo: Echo | None = None) -> list[str]:
    """Stop the MLflow server and the PostgreSQL ``start`` ran from ``folder``; lines saying what happened."""
    say = echo or (lambda _line: None)
    folder = Path(folder).resolve()
    state = ServerState.read(folder)
    if state is None:
        raise ServerError(f"no tracking server recorded in {folder} (no {STATE_FILE}): nothing to stop",
                          exit_code=2)
    done = []
    if _is_ours(state.mlflow_pid, "mlflow"):
        say(f"stopping the MLflow server (pid {state.mlflow_pid})")
        polite = processes.stop_session(state.mlflow_pid, timeout=timeout)
        done.append(f"MLflow server (pid {state.mlflow_pid}) stopped{'' if polite else ' with SIGKILL'}")
    else:
        done.append(f"MLflow server (pid {state.mlflow_pid}) was not running")
    if state.postgres is not None:
        if _is_ours(state.postgres.pid, "postgres"):
            _stop_postgres(state.postgres, say)
            done.append(f"PostgreSQL (pid {state.postgres.pid}) stopped")
        else:
            done.append(f"PostgreSQL (pid {state.postgres.pid}) was not running")
    (folder / STATE_FILE).unlink(missing_ok=True)
    return done


def _is_ours(pid: int, word: str) -> bool:
    """True when ``pid`` runs and is still the process recorded (its command names ``word``)."""
    return processes.alive(pid) and word in processes.command_line(pid)


# --------------------------------------------------------------------------- helpers


def _bind_host(host: str) -> str:
    return "0.0.0.0" if host in ("", "::") else host


def _probe_host(host: str) -> str:
    return LOOPBACK if host in ("0.0.0.0", "::", "") else host


def last_line(path: str | Path) -> str:
    """The last non-empty line of a log file ('' if none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            return last_line_of(f.read().decode(errors="replace"))
    except OSError:
        return ""


def last_line_of(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


# --------------------------------------------------------------------------- the cluster guard

LOCAL_RAY_ADDRESSES = (None, "", "local")


def refuse_local_store_for_cluster(tracking_uri: str | None, ray_address: str | None) -> None:
    """Raise ServerError when a tracking store on this machine's disk meets a Ray cluster.

    ``ray_address`` None, '' or 'local' is a Ray instance rdbench starts on this machine:
    every store works there. Any other address ('auto', 'host:port', 'ray://...') is a
    cluster whose tasks may run on other nodes, where a sqlite file or a local folder
    is another, empty store (or a shared file system whose locking sqlite cannot trust),
    and where a database URI would make each worker write its artifacts to its own
    local folder. Those need an MLflow server that serves artifacts
    (``rdbench server start`` on the head node).
    """
    if ray_address in LOCAL_RAY_ADDRESSES:
        return
    uri = tracking_uri or "sqlite:///mlflow.db (MLflow's default)"
    scheme = urlsplit(tracking_uri or "").scheme.lower()
    if scheme in ("http", "https") or (tracking_uri or "").startswith("databricks"):
        return
    if scheme in ("", "file", "sqlite") or len(scheme) == 1:  # a path, a file: URI, C:\...
        why = "a store on this machine's disk is not the one the other nodes' workers would write to"
    else:
        why = "each worker would write its artifacts to a folder on its own node"
    raise ServerError(
        f"tracking URI {mask_password(uri)} cannot serve a Ray cluster ({ray_address}): {why}; start "
        f"`rdbench server start FOLDER --host 0.0.0.0` on the head node and set "
        f"MLFLOW_TRACKING_URI=http://HEAD:{DEFAULT_MLFLOW_PORT}", exit_code=2)
