"""Opening the tracking store: faults are one line within seconds; many processes start at once and lose nothing."""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import rdbench

RDBENCH = [sys.executable, "-m", "rdbench"]
SMOKE_RUN = ["run", "rd", "--profile", "smoke", "--steps", "20", "--device", "cpu"]


def rdbench_env(uri: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}
    env.update(MLFLOW_TRACKING_URI=uri, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(rdbench.__file__).parents[1]),
               **extra)
    return env


def run_rdbench(args, uri: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RDBENCH, *args], env=rdbench_env(uri, **extra), capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_fast(proc: subprocess.CompletedProcess, seconds: float, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    # Not a speed target: MLflow's own retries take minutes (105 s to 250 s); under a minute, interpreter
    # start and torch import included on a loaded shared machine, shows that they are bounded.
    assert seconds < 60, f"took {seconds:.1f} s"


def timed(args, uri, **extra):
    start = time.monotonic()
    proc = run_rdbench(args, uri, **extra)
    return proc, time.monotonic() - start


def test_a_garbage_database_file_is_one_line(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is not a database\n" * 100)
    proc, seconds = timed(SMOKE_RUN, f"sqlite:///{db}")
    assert_one_line_fast(proc, seconds, f"sqlite:///{db}", "is not an SQLite database")


def test_a_truncated_database_is_one_line(tmp_path, tracking_uri):
    source = Path(tracking_uri.removeprefix("sqlite:///"))
    db = tmp_path / "mlflow.db"
    db.write_bytes(source.read_bytes()[: 3 * 4096 + 100])
    proc, seconds = timed(SMOKE_RUN, f"sqlite:///{db}")
    assert_one_line_fast(proc, seconds, f"sqlite:///{db}")


def test_a_new_store_where_nothing_can_be_written_is_one_line(tmp_path):
    proc, seconds = timed(SMOKE_RUN, "sqlite:////proc/rdbench-store/mlflow.db")
    assert_one_line_fast(proc, seconds, "/proc/rdbench-store", "does not exist")
    proc, seconds = timed(SMOKE_RUN, "sqlite:////proc/rdbench-mlflow.db")
    assert_one_line_fast(proc, seconds, "sqlite:////proc/rdbench-mlflow.db")


def test_an_unreachable_server_is_one_line_within_seconds():
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for args in (SMOKE_RUN, ["grid", "smoke", "--only", "rd/spot"], ["table"]):
        proc, seconds = timed(args, f"http://127.0.0.1:{port}", RDBENCH_STORE_TIMEOUT_S="3")
        assert_one_line_fast(proc, seconds, f"http://127.0.0.1:{port} is unreachable", "rdbench server start")


class _Answers(http.server.BaseHTTPRequestHandler):
    """What a server that is not MLflow answers: HTML with HTTP 200, or HTTP 500 (``status``)."""

    status = 200

    def do_GET(self):  # noqa: N802 - http.server's hook
        body = b"<html><body>a web page, not MLflow</body></html>"
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def tracking_into(uri: str, monkeypatch):
    """Commands in this process track into ``uri`` (MLflow prefers a URI set in the process to the
    environment's: the session's store was set so)."""
    import mlflow

    before = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


@contextlib.contextmanager
def fake_server(kind: str):
    """A real local HTTP server on 127.0.0.1 answering HTML (``html``) or HTTP 500 (``500``), or a socket
    that accepts connections and never answers (``silent``); yields its URI."""
    if kind == "silent":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(16)  # connections complete in the backlog; nobody reads them
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        return
    handler = type("Handler", (_Answers,), {"status": 500 if kind == "500" else 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("kind", "fragment"), [
    ("html", "response body was not in a valid JSON format"),
    ("500", "answered HTTP 500 (Internal Server Error) on /health"),
    ("silent", "is unreachable (timed out) within 2 s"),
])
def test_a_server_that_answers_html_an_error_or_nothing_is_one_store_fault_line(kind, fragment, monkeypatch):
    """Opening the store: one StoreError naming the URI, within the server timeout (5 s by default) plus a
    margin; then a command on it is that one line, exit status 2, nothing before it."""
    from click.testing import CliRunner

    from rdbench.cli import main
    from rdbench.tracking.store import StoreError, open_store

    monkeypatch.setenv("RDBENCH_SERVER_TIMEOUT_S", "2")
    with fake_server(kind) as uri:
        start = time.monotonic()
        with pytest.raises(StoreError) as caught:
            open_store(uri)
        assert time.monotonic() - start < 2 + 5, "bounded by RDBENCH_SERVER_TIMEOUT_S"  # not a speed target
        assert uri in str(caught.value) and fragment in str(caught.value)
        with tracking_into(uri, monkeypatch):
            result = CliRunner().invoke(main, ["table", "--experiment", "x"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], result.output


def test_mlflow_log_records_go_to_a_file_not_the_terminal(tmp_path, monkeypatch, capfd):
    import logging

    from rdbench.tracking.store import describe_fault, mlflow_log_path, quiet_mlflow_logs

    monkeypatch.setenv("RDBENCH_MLFLOW_LOG", str(tmp_path / "mlflow.log"))
    quiet_mlflow_logs()
    logging.getLogger("mlflow.store.db.utils").error("SQLAlchemy database error: a traceback here")
    assert capfd.readouterr().err == ""
    assert "a traceback here" in mlflow_log_path().read_text()
    line = describe_fault(RuntimeError("(sqlite3.OperationalError) attempt to write a readonly database "
                                       "[SQL: INSERT INTO tags VALUES (?)] [parameters: ('x',)]"), "sqlite:///s.db")
    assert line == (f"tracking store sqlite:///s.db failed: (sqlite3.OperationalError) attempt to write a "
                    f"readonly database; MLflow's log: {tmp_path / 'mlflow.log'}")


def test_a_store_deleted_mid_run_is_one_line_and_nothing_before_it(tmp_path, monkeypatch, capfd):
    """The store's folder deleted while a cell logs its outcome: exit 2 and one line naming the store and
    the cause; MLflow's SQL tracebacks go to its log file, not the terminal."""
    import shutil

    from click.testing import CliRunner

    import rdbench.study.runner as runner
    from rdbench.cli import main

    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.setenv("RDBENCH_MLFLOW_LOG", str(tmp_path / "mlflow.log"))
    log_outcome = runner.log_outcome

    def delete_the_store_then_log(*args, **kwargs):
        shutil.rmtree(store)
        log_outcome(*args, **kwargs)

    monkeypatch.setattr(runner, "log_outcome", delete_the_store_then_log)
    capfd.readouterr()
    with tracking_into(uri, monkeypatch):
        result = CliRunner().invoke(main, [*SMOKE_RUN, "--experiment", "deleted"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: tracking store {uri} failed: "), result.output
    assert "[SQL:" not in lines[0] and f"MLflow's log: {tmp_path / 'mlflow.log'}" in lines[0]
    terminal = capfd.readouterr()
    assert "Traceback" not in terminal.err + terminal.out and "ERROR" not in terminal.err + terminal.out


def test_a_store_locked_by_another_process_is_one_line(tmp_path):
    db = tmp_path / "mlflow.db"
    assert run_rdbench(SMOKE_RUN, f"sqlite:///{db}").returncode == 0  # a real store
    holder = sqlite3.connect(str(db))
    holder.execute("BEGIN EXCLUSIVE")
    try:
        proc, seconds = timed(SMOKE_RUN, f"sqlite:///{db}", RDBENCH_STORE_TIMEOUT_S="2")
    finally:
        holder.rollback()
        holder.close()
    assert_one_line_fast(proc, seconds, "is locked by another process", "RDBENCH_STORE_TIMEOUT_S")


@pytest.mark.slow
def test_a_lock_held_during_a_run_is_waited_out(tmp_path, runs_of):
    """An outside writer holding the database for 8 s while a cell logs: the cell waits and finishes."""
    import mlflow

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    proc = subprocess.Popen([*RDBENCH, "run", "rd", "--profile", "smoke", "--steps", "3000", "--device", "cpu",
                             "--experiment", "locked"], env=rdbench_env(uri), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    client = mlflow.MlflowClient(uri)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (db.exists() and runs_of(client, "locked")):
        time.sleep(0.5)
    holder = sqlite3.connect(str(db), timeout=60)
    holder.execute("BEGIN EXCLUSIVE")
    time.sleep(8)
    holder.rollback()
    holder.close()
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    (run,) = runs_of(client, "locked")
    assert run.info.status == "FINISHED"


def _start_together(commands, env_for) -> list[subprocess.CompletedProcess]:
    """Start every command at once (released by one barrier) and wait for all."""
    barrier = threading.Barrier(len(commands))
    results: list = [None] * len(commands)

    def go(i: int) -> None:
        barrier.wait()
        results[i] = subprocess.run(commands[i], env=env_for(i), capture_output=True, text=True, timeout=900)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(commands))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.slow
def test_eight_processes_started_at_once_on_a_fresh_sqlite_store_all_land(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    commands = [[*RDBENCH, *SMOKE_RUN, "--seed", str(i), "--experiment", "fresh"] for i in range(8)]
    results = _start_together(commands, lambda i: rdbench_env(uri))
    assert all(r.returncode == 0 for r in results), [r.stdout + r.stderr for r in results if r.returncode]
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("fresh").experiment_id])
    assert sorted(r.data.tags["rdbench.seed"] for r in runs) == [str(i) for i in range(8)]
    assert {r.info.status for r in runs} == {"FINISHED"}


@pytest.mark.slow
def test_eight_processes_started_at_once_on_a_new_server_experiment_all_land(tmp_path, mlflow_server):
    import mlflow

    commands = [[*RDBENCH, *SMOKE_RUN, "--seed", str(i), "--experiment", "new-on-server"] for i in range(8)]
    results = _start_together(commands, lambda i: rdbench_env(mlflow_server))
    assert all(r.returncode == 0 for r in results), [r.stdout + r.stderr for r in results if r.returncode]
    client = mlflow.MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("new-on-server").experiment_id])
    assert sorted(r.data.tags["rdbench.seed"] for r in runs) == [str(i) for i in range(8)]
    assert {r.info.status for r in runs} == {"FINISHED"}
