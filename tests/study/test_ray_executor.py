"""The Ray executor (rdbench.study.ray_executor): its rules without Ray, then the grid for real on
the two-node Ray cluster (conftest ``ray_two_nodes``) tracking into the PostgreSQL-backed MLflow
server inside the same network namespace (``netns_tracking_server``).

On the cluster: the smoke grid gives the same Table 1 as in-process and a rerun skips
every cell; a sqlite store is refused for a two-node cluster before any run exists; the
second node killed while it runs a cell still ends with one FINISHED run per cell, the
dead attempt KILLED with the reason, nothing RUNNING.
"""

from __future__ import annotations

import collections
import contextlib
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from rdbench.cli import main
from rdbench.config import ConfigError, load_system
from rdbench.study.cells import plan_cells
from rdbench.study.ray_executor import check_store, file_store, task_options, worker_uri
from rdbench.tracking.manifest import read_manifest

# --------------------------------------------------------------------------- without Ray


@pytest.mark.parametrize("uri, is_file", [
    ("sqlite:////tmp/x/mlflow.db", True), ("sqlite:///mlflow.db", True), ("file:///tmp/mlruns", True),
    ("./mlruns", True), ("/abs/mlruns", True), ("http://10.0.0.1:5000", False), ("https://mlflow.example", False),
    ("postgresql+psycopg2://u@h/db", False), ("databricks", False),
])
def test_file_stores_are_told_from_servers_and_databases(uri, is_file):
    assert file_store(uri) is is_file


def test_a_file_store_is_refused_for_a_cluster_of_two_nodes_with_what_to_use():
    check_store("sqlite:////tmp/x.db", nodes=1)  # one box: sqlite is fine
    check_store("http://10.0.0.1:5000", nodes=5)
    with pytest.raises(ConfigError) as err:
        check_store("sqlite:////tmp/x.db", nodes=2)
    message = str(err.value)
    assert "\n" not in message and "sqlite:////tmp/x.db" in message and "1 node(s)" in message
    assert "rdbench server start" in message


def test_workers_get_an_absolute_store_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert worker_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert worker_uri("sqlite:////abs/mlflow.db") == "sqlite:////abs/mlflow.db"
    assert worker_uri("mlruns") == (tmp_path / "mlruns").as_uri()
    assert worker_uri("http://h:5000") == "http://h:5000"


def test_a_batch_asks_for_its_systems_resources_and_a_gpu_only_on_cuda():
    (cell,) = plan_cells("lstm", ["sine"], [0], "smoke")
    declared = load_system("lstm").spec.resources
    cpu = task_options(cell, "cpu")
    assert (cpu["num_cpus"], cpu["num_gpus"]) == (declared.cpu, 0)
    assert task_options(cell, "cuda")["num_gpus"] == declared.gpu_on_cuda > 0
    assert cpu["max_retries"] == 0  # the driver retries, after closing the dead attempt's runs


def test_bad_resources_in_a_system_file_are_one_line_errors(tmp_path):
    text = Path(load_system("lstm").source).read_text()
    bad = tmp_path / "lstm.yaml"
    bad.write_text(text.replace("max_retries: 2", "max_retries: -1"))
    with pytest.raises(ConfigError, match=r"resources\.max_retries"):
        load_system("lstm", bad)
    bad.write_text(text.replace("  cpu: 1\n", "  cpus: 1\n"))
    with pytest.raises(ConfigError, match=r"unknown key 'resources\.cpus'.*cpu, gpu_on_cuda, max_retries"):
        load_system("lstm", bad)


def test_a_batch_too_big_for_a_worker_is_refused_by_the_workers_estimate():
    """What a Ray task runs on a worker before any run exists: the batch's estimate against that worker's memory."""
    from rdbench.study.ray_executor import memory_refusal

    big = plan_cells("rd", ["spot"], (0,), "smoke", {"grid_size": 100_000, "dt": 1e-6})
    assert "GiB available" in memory_refusal(big, "cpu")
    assert memory_refusal(plan_cells("rd", ["spot"], (0,), "smoke", {}), "cpu") is None


@pytest.mark.slow
def test_a_grid_on_ray_checks_memory_on_a_worker_not_the_driver(experiment, mlflow_client):
    result = CliRunner().invoke(main, ["grid", "smoke", "--only", "rd/spot", "--executor", "ray", "--workers", "1",
                                       "--set", "grid_size=100000", "--set", "dt=1e-6", "--experiment", experiment])
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert "on a Ray worker: " in line and "GiB available" in line
    assert mlflow_client.get_experiment_by_name(experiment) is None  # nothing written


def test_address_and_workers_need_the_ray_executor(experiment, mlflow_client):
    result = CliRunner().invoke(main, ["grid", "smoke", "--only", "lstm", "--address", "127.0.0.1:6379",
                                       "--experiment", experiment])
    assert result.exit_code == 2 and "--executor ray" in result.output
    assert mlflow_client.get_experiment_by_name(experiment) is None  # nothing written


# --------------------------------------------------------------------------- on the two-node cluster

DRIVER = """
import faulthandler, signal, sys
faulthandler.register(signal.SIGUSR1, all_threads=True)  # finish() asks for the stacks of a driver that hangs
# A driver is a foreground command whose Ctrl-C the tests send as SIGINT. Python installs its
# KeyboardInterrupt handler only where SIGINT is not inherited as ignored, and a suite started in
# the background of a non-interactive shell (`make test &`, CI runners) passes SIG_IGN down: the
# driver then ran its grid to the end (the flake). Restore what a terminal gives.
signal.signal(signal.SIGINT, signal.default_int_handler)
from rdbench.cli import main
main(args=sys.argv[1:], prog_name="rdbench")
"""


def driver(cluster, args: list[str], uri: str, env: dict | None = None):
    """``rdbench ARGS`` as a Ray driver inside the cluster's namespace, tracking into ``uri``."""
    import subprocess
    import sys

    env = {**cluster.env, "MLFLOW_TRACKING_URI": uri, **(env or {})}
    return subprocess.Popen(cluster.netns.inside([sys.executable, "-c", DRIVER, *args]), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, timeout: float) -> str:
    """The driver's output once it exits; past ``timeout`` its threads' stacks (faulthandler, SIGUSR1) and
    output are in the failure, so a hang says where it hangs."""
    import signal
    import subprocess

    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGUSR1)
        try:
            out, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        raise AssertionError(f"the driver did not exit within {timeout:g} s; its stacks and output:\n"
                             f"{(out or '')[-6000:]}") from None
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return out


def table_of(client, parent: str) -> pd.DataFrame:
    """Table 1 of a grid, its rows and control columns in a fixed order: the report keeps the order in
    which the store returns runs and metric keys, which differs between sqlite and PostgreSQL."""
    from rdbench.report.published import load_published
    from rdbench.report.selection import select_runs
    from rdbench.report.table import build_table, cells_frame

    runs = sorted(select_runs(client, parent_run_id=parent).runs, key=lambda r: r.info.run_name)
    cells = cells_frame(runs)
    return build_table(cells[sorted(cells.columns)], load_published())


def grid_runs(client, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000) if exp else []


@pytest.mark.services
@pytest.mark.slow
def test_the_smoke_grid_on_two_nodes_gives_the_in_process_table_and_a_rerun_skips_it(
        ray_two_nodes, netns_tracking_server, smoke):
    from mlflow import MlflowClient

    from rdbench.report.selection import select_runs
    from rdbench.report.table import to_markdown
    from rdbench.tracking.tags import KIND_GRID, TAG_KIND

    uri = netns_tracking_server.tracking_uri
    experiment = f"ray-smoke-{uuid.uuid4().hex[:8]}"
    args = ["grid", "smoke", "--executor", "ray", "--address", ray_two_nodes.address, "--experiment",
            experiment, "--device", "cpu", "--no-report"]
    out = finish(driver(ray_two_nodes, args, uri), timeout=600)
    assert "executor ray" in out and "0 failed" in out, out[-3000:]

    client = MlflowClient(uri)
    runs = grid_runs(client, experiment)
    (parent,) = [r for r in runs if r.data.tags.get(TAG_KIND) == KIND_GRID]
    cells = [r for r in runs if r is not parent]
    # the smoke grid's own cells (its manifest): other tests rerun it in its experiment and re-parent them
    in_process = select_runs(smoke.client, parent_run_id=smoke.parent).runs
    assert sorted(r.info.run_name for r in cells) == sorted(r.info.run_name for r in in_process)
    assert all(r.info.status == "FINISHED" and r.data.tags["mlflow.parentRunId"] == parent.info.run_id
               for r in cells)
    pids = {r.data.tags["rdbench.pid"] for r in cells}
    assert len(pids) >= 2, "every cell ran in one worker process: the cluster was not used"

    on_ray, here = table_of(client, parent.info.run_id), table_of(smoke.client, smoke.parent)
    assert to_markdown(on_ray) == to_markdown(here)  # Table 1 as printed
    pd.testing.assert_frame_equal(on_ray.drop(columns="run_ids"), here.drop(columns="run_ids"))  # rtol 1e-5

    again = finish(driver(ray_two_nodes, args, uri), timeout=300)
    assert "0 finished" in again and f"{len(cells)} skipped" in again, again[-3000:]
    assert len([r for r in grid_runs(client, experiment) if r.data.tags.get(TAG_KIND) != KIND_GRID]) == len(cells)


@pytest.mark.services
def test_a_sqlite_store_is_refused_on_a_two_node_cluster_before_any_run(ray_two_nodes, tmp_path):
    import sqlite3

    db = tmp_path / "mlflow.db"
    args = ["grid", "smoke", "--only", "lstm", "--executor", "ray", "--address", ray_two_nodes.address,
            "--device", "cpu", "--no-report"]
    proc = driver(ray_two_nodes, args, f"sqlite:///{db}")
    out = finish(proc, timeout=300)
    assert proc.returncode == 2, out[-3000:]
    error = [line for line in out.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "cannot write" in error[0] and "rdbench server start" in error[0]
    with sqlite3.connect(db) as con:  # the store was opened (and orphans swept), no run was made
        assert con.execute("select count(*) from runs").fetchone()[0] == 0


def running_on(client, experiment: str, pids: set[int]):
    """The RUNNING cell runs whose process is one of ``pids``."""
    return [r for r in grid_runs(client, experiment)
            if r.info.status == "RUNNING" and r.data.tags.get("rdbench.kind") == "cell"
            and int(r.data.tags.get("rdbench.pid", "0")) in pids]


def lstm_grid(folder, seeds: int) -> str:
    """A grid file of ``seeds`` LSTM cells (smoke profile)."""
    path = folder / f"lstm{seeds}.yaml"
    path.write_text(f"description: {seeds} LSTM cells\nprofile: smoke\nseeds: {list(range(seeds))}\n"
                    "cells:\n  - system: lstm\n    cases: [sine]\n")
    return str(path)


def grid_on_cluster(cluster, server, grid: str, epochs: int, until, act, timeout: float = 480):
    """Run ``grid`` on the cluster; once ``until(client, experiment)`` is truthy, call ``act(driver, found)``;
    return (the driver's exit status, its output, the experiment, a client on the server, what ``until`` found)."""
    from mlflow import MlflowClient

    client = MlflowClient(server.tracking_uri)
    experiment = f"ray-{uuid.uuid4().hex[:8]}"
    args = ["grid", grid, "--executor", "ray", "--address", cluster.address, "--experiment", experiment,
            "--device", "cpu", "--no-report", "--set", f"epochs={epochs}"]
    proc = driver(cluster, args, server.tracking_uri)
    try:
        deadline = time.monotonic() + 240
        found = None
        while not found:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the awaited cells never ran"
            found = until(client, experiment)
            time.sleep(0.3)
        act(proc, found)
        out = finish(proc, timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, experiment, client, found


@pytest.mark.services
@pytest.mark.slow
def test_the_node_running_a_cell_killed_mid_grid_leaves_one_finished_run_per_cell(
        ray_two_nodes, netns_tracking_server, tmp_path):
    from rdbench import processes

    cluster = ray_two_nodes

    def on_second_node(client, experiment):
        return running_on(client, experiment, set(processes.session_members(cluster.worker.pid)))

    rc, out, experiment, client, victim = grid_on_cluster(
        cluster, netns_tracking_server, lstm_grid(tmp_path, 3), 1500, on_second_node,
        lambda *_: cluster.kill_worker())
    assert rc == 0, out[-3000:]

    runs = [r for r in grid_runs(client, experiment) if r.data.tags.get("rdbench.kind") == "cell"]
    by_hash = collections.defaultdict(list)
    for run in runs:
        by_hash[run.data.tags["rdbench.config_hash"]].append(run.info.status)
    assert len(by_hash) == 3
    assert all(statuses.count("FINISHED") == 1 for statuses in by_hash.values()), by_hash
    assert not [r for r in runs if r.info.status == "RUNNING"]
    dead = client.get_run(victim[0].info.run_id)
    assert dead.info.status == "KILLED"
    assert "Ray worker died" in dead.data.tags["rdbench.error"] and "run again" in dead.data.tags["rdbench.error"]
    (parent,) = [r for r in grid_runs(client, experiment) if r.data.tags.get("rdbench.kind") == "grid"]
    assert parent.info.status == "FINISHED"
    rows = read_manifest(client, parent.info.run_id)  # the grid lists the FINISHED run of every cell
    assert {row.run_id for row in rows} == {r.info.run_id for r in runs if r.info.status == "FINISHED"}
    assert {row.status for row in rows} == {"FINISHED"}


@pytest.mark.services
@pytest.mark.slow
def test_ctrl_c_on_the_driver_cancels_the_tasks_and_leaves_no_run_running(
        ray_two_nodes, netns_tracking_server, tmp_path):
    import signal

    def parent_and_both_cells_running(client, experiment):
        return len([r for r in grid_runs(client, experiment) if r.info.status == "RUNNING"]) == 3

    rc, out, experiment, client, _ = grid_on_cluster(
        ray_two_nodes, netns_tracking_server, lstm_grid(tmp_path, 2), 100000, parent_and_both_cells_running,
        lambda proc, _: proc.send_signal(signal.SIGINT), timeout=240)
    assert rc == 128 + signal.SIGINT, out[-3000:]
    runs = grid_runs(client, experiment)
    assert len(runs) == 3 and {r.info.status for r in runs} == {"KILLED"}, [(r.info.run_name, r.info.status) for r in runs]
    assert all(r.data.tags.get("rdbench.error") for r in runs)


@pytest.mark.services
def test_a_batch_bigger_than_the_cluster_is_refused_before_any_run(ray_two_nodes, netns_tracking_server, tmp_path):
    import shutil

    from mlflow import MlflowClient

    from rdbench.config import conf_dir

    conf = tmp_path / "conf"
    shutil.copytree(conf_dir(), conf)
    lstm = conf / "systems" / "lstm.yaml"
    lstm.write_text(lstm.read_text().replace("resources:\n  cpu: 1\n", "resources:\n  cpu: 3\n"))
    experiment = f"ray-big-{uuid.uuid4().hex[:8]}"
    args = ["grid", "smoke", "--only", "lstm", "--executor", "ray", "--address", ray_two_nodes.address,
            "--experiment", experiment, "--device", "cpu", "--no-report"]
    proc = driver(ray_two_nodes, args, netns_tracking_server.tracking_uri, env={"RDBENCH_CONF_DIR": str(conf)})
    out = finish(proc, timeout=300)
    assert proc.returncode == 2, out[-3000:]
    assert "asks for 3 CPU per batch" in out and "the Ray cluster has 2" in out
    assert grid_runs(MlflowClient(netns_tracking_server.tracking_uri), experiment) == []
