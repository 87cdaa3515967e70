"""rdbench.tracking.server: PostgreSQL + the MLflow server, for real; its one-line failures; the cluster guard.

The ``services`` tests use the session's real server (conftest ``tracking_server``):
a run with metrics and an artifact goes through it, the artifact lands in the
server's artifacts folder; a second server is started, stopped (no process left),
started again on the same data folder (the runs are still there); and an MLflow
server alone is pointed at the first one's PostgreSQL (``backend_uri``). The
failure tests start nothing that could stay behind, and check that.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rdbench import processes
from rdbench.tracking import server as ts


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


def log_cell(uri: str, experiment: str, tmp_path: Path) -> tuple[str, str]:
    """A run with a 1000-point series, params and an artifact through ``uri``; (experiment id, run id)."""
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(uri)
    exp_id = client.create_experiment(experiment)
    run = client.create_run(exp_id, run_name="cell", tags={"rdbench.kind": "cell"})
    client.log_batch(run.info.run_id, metrics=[Metric("R_t", i / 1000, 0, i) for i in range(1000)])
    client.log_param(run.info.run_id, "case", "spot")
    artifact = tmp_path / "series.csv"
    artifact.write_text("step,R_t\n0,1.0\n")
    client.log_artifact(run.info.run_id, str(artifact), "balance")
    client.set_terminated(run.info.run_id, "FINISHED")
    return exp_id, run.info.run_id


# ----------------------------------------------------------------------------- the real server


@pytest.mark.services
def test_a_run_goes_through_the_server_and_its_artifact_lands_in_the_folder(tracking_server, tmp_path):
    state = tracking_server
    assert state.tracking_uri.startswith("http://127.0.0.1:")
    assert state.backend_uri.startswith("postgresql+psycopg2://mlflow:***@127.0.0.1:")
    exp_id, run_id = log_cell(state.tracking_uri, "through-the-server", tmp_path)

    import mlflow

    run = mlflow.MlflowClient(state.tracking_uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"case": "spot"}
    history = mlflow.MlflowClient(state.tracking_uri).get_metric_history(run_id, "R_t")
    assert len(history) == 1000
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # served, not a path on this disk
    landed = Path(state.folder) / "artifacts" / exp_id / run_id / "artifacts" / "balance" / "series.csv"
    assert landed.read_text() == "step,R_t\n0,1.0\n"
    # the runs live in PostgreSQL: no sqlite file or mlruns folder appeared anywhere in the folder
    assert not list(Path(state.folder).glob("*.db")) and not (Path(state.folder) / "mlruns").exists()


@pytest.mark.services
def test_status_reports_both_processes_and_health(tracking_server):
    st = ts.status(tracking_server.folder)
    assert st.running and st.healthy and st.mlflow_running and st.postgres_running
    text = "\n".join(st.lines())
    assert tracking_server.tracking_uri in text and "healthy" in text and "***" in text
    password = (Path(tracking_server.folder) / "postgres.password").read_text().strip()
    assert password not in (Path(tracking_server.folder) / ts.STATE_FILE).read_text()
    assert password not in " ".join(processes.command_line(p)
                                    for p in processes.session_members(tracking_server.mlflow_pid))


@pytest.mark.services
def test_stop_leaves_no_process_and_a_restart_keeps_the_runs(tracking_server, tmp_path, assert_server_gone, make_reachable_folder):
    folder = make_reachable_folder("rdbench-test-restart-")
    try:
        state = ts.start(folder, mlflow_port=0, workers=1)
        _, run_id = log_cell(state.tracking_uri, "kept", tmp_path)
        with pytest.raises(ts.ServerError) as again:
            ts.start(folder, mlflow_port=0)
        assert "already running" in one_line(again) and again.value.exit_code == 2
        lines = ts.stop(folder)
        assert lines == [f"MLflow server (pid {state.mlflow_pid}) stopped",
                         f"PostgreSQL (pid {state.postgres.pid}) stopped"]
        assert_server_gone(state)
        assert not (folder / ts.STATE_FILE).exists()
        assert not ts.status(folder).running

        again = ts.start(folder, mlflow_port=0, workers=1)  # same data folder: no initdb, same database
        import mlflow

        assert mlflow.MlflowClient(again.tracking_uri).get_run(run_id).info.status == "FINISHED"
        ts.stop(folder)
        assert_server_gone(again)
    finally:
        if (folder / ts.STATE_FILE).exists():
            ts.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.services
def test_an_existing_postgresql_gets_only_an_mlflow_server(tracking_server, tmp_path, assert_server_gone, make_reachable_folder):
    pg = tracking_server.postgres
    password = (Path(tracking_server.folder) / "postgres.password").read_text().strip()
    backend = f"postgresql+psycopg2://mlflow:{password}@127.0.0.1:{pg.port}/mlflow"
    folder = make_reachable_folder("rdbench-test-existing-pg-")
    try:
        state = ts.start(folder, backend_uri=backend, mlflow_port=0, workers=1)
        assert state.postgres is None and password not in (folder / ts.STATE_FILE).read_text()
        _, run_id = log_cell(state.tracking_uri, "existing-pg", tmp_path)
        import mlflow

        # the same database: the session's own server sees the run
        assert mlflow.MlflowClient(tracking_server.tracking_uri).get_run(run_id).info.status == "FINISHED"
        assert ts.stop(folder) == [f"MLflow server (pid {state.mlflow_pid}) stopped"]
        assert_server_gone(state)
        assert processes.alive(pg.pid)  # not ours to stop
    finally:
        if (folder / ts.STATE_FILE).exists():
            ts.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- one-line failures


def test_mlflow_port_in_use_is_one_line_and_starts_nothing(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ts.ServerError) as err:
            ts.start(tmp_path / "s", mlflow_port=port, backend_uri=f"sqlite:///{tmp_path}/x.db")
    assert one_line(err) == f"port {port} on 127.0.0.1 is in use: choose another MLflow port"
    assert err.value.exit_code == 2 and not (tmp_path / "s" / ts.STATE_FILE).exists()


def test_missing_postgres_binaries_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(ts, "DEBIAN_PG_ROOT", tmp_path / "none")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("RDBENCH_PG_BIN", raising=False)
    with pytest.raises(ts.ServerError) as err:
        ts.start(tmp_path / "s", mlflow_port=0)
    assert "apt-get install postgresql" in one_line(err) and err.value.exit_code == 2
    assert not (tmp_path / "s" / ts.STATE_FILE).exists()


def test_missing_psycopg2_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # importlib finds no such module
    with pytest.raises(ts.ServerError) as err:
        ts.start(tmp_path / "s", mlflow_port=0)
    assert "psycopg2 is not installed" in one_line(err) and "pip install psycopg2-binary" in str(err.value)


def test_a_server_that_is_not_healthy_in_time_is_stopped_with_its_last_log_line(tmp_path):
    folder = tmp_path / "s"
    with pytest.raises(ts.ServerError) as err:
        ts.start(folder, mlflow_port=0, backend_uri=f"sqlite:///{tmp_path}/x.db", timeout=1)
    text = one_line(err)
    assert text.startswith("the MLflow server did not become healthy within 1 s") and "last line of" in text
    assert not (folder / ts.STATE_FILE).exists()
    # nothing of it runs any more: no process names this folder
    assert not [p for p in map(int, filter(str.isdigit, os.listdir("/proc")))
                if str(folder) in processes.command_line(p)]


def test_an_unreachable_existing_postgresql_is_one_line_without_its_password(tmp_path):
    pytest.importorskip("psycopg2")
    port = processes.free_port()
    with pytest.raises(ts.ServerError) as err:
        ts.start(tmp_path / "s", mlflow_port=0,
                 backend_uri=f"postgresql+psycopg2://u:secret@127.0.0.1:{port}/db")
    text = one_line(err)
    assert text.startswith(f"cannot connect to PostgreSQL at postgresql+psycopg2://u:***@127.0.0.1:{port}/db")
    assert "secret" not in text and err.value.exit_code == 2


def test_stop_without_a_server_is_one_line(tmp_path):
    with pytest.raises(ts.ServerError) as err:
        ts.stop(tmp_path)
    assert "no tracking server recorded in" in one_line(err) and err.value.exit_code == 2


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root (runs PostgreSQL as postgres)")
def test_a_folder_postgres_cannot_reach_names_the_parent_that_blocks_it(tmp_path):
    try:
        ts.find_postgres_bin()
    except ts.ServerError as exc:
        pytest.skip(str(exc))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(ts.ServerError) as err:
        ts.start(locked / "server", mlflow_port=0)
    text = one_line(err)
    assert "runs as user 'postgres'" in text and "is not searchable by it" in text
    # the first folder on the way that postgres cannot search (pytest's base temp is 0700 too)
    assert "chmod o+x" in text and not (locked / "server" / ts.STATE_FILE).exists()


def test_password_is_masked_in_uris():
    assert ts.mask_password("postgresql+psycopg2://mlflow:s3cr3t@127.0.0.1:5432/mlflow") == \
        "postgresql+psycopg2://mlflow:***@127.0.0.1:5432/mlflow"
    assert ts.mask_password("postgresql://mlflow@db/mlflow") == "postgresql://mlflow@db/mlflow"


def test_the_command_line_module_runs_without_click(tmp_path):
    code = "import sys, rdbench.tracking.server, rdbench.processes; print('click' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- the cluster guard


@pytest.mark.parametrize("uri", [None, "sqlite:///mlflow.db", "sqlite:////abs/m.db", "file:///data/mlruns",
                                 "./mlruns", "/abs/mlruns", "postgresql+psycopg2://u:pw@db/mlflow"])
@pytest.mark.parametrize("address", ["auto", "10.0.0.5:6379", "ray://head:10001"])
def test_a_store_on_disk_is_refused_for_a_ray_cluster(uri, address):
    with pytest.raises(ts.ServerError) as err:
        ts.refuse_local_store_for_cluster(uri, address)
    text = one_line(err)
    assert f"Ray cluster ({address})" in text and "rdbench server start" in text
    assert "MLFLOW_TRACKING_URI=http://HEAD:5000" in text and "pw@" not in text
    assert err.value.exit_code == 2


@pytest.mark.parametrize("uri,address", [
    ("sqlite:///mlflow.db", None), ("sqlite:///mlflow.db", "local"), ("./mlruns", ""),
    ("http://head:5000", "10.0.0.5:6379"), ("https://mlflow.example.org", "auto"), ("databricks", "auto"),
])
def test_a_served_store_or_a_local_ray_passes_the_guard(uri, address):
    ts.refuse_local_store_for_cluster(uri, address)
