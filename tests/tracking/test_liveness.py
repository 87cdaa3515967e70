"""Owners of RUNNING runs: a run whose process is gone is closed by the next command; a live one is left alone."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

from rdbench.tracking.liveness import (
    TAG_HEARTBEAT,
    TAG_HOST,
    TAG_PID,
    TAG_PID_START,
    Heartbeat,
    close_orphans,
    owner_alive,
    owner_tags,
)
from rdbench.tracking.tags import TAG_ERROR, TAG_KIND


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def make_run(client, exp_id, name, tags):
    return client.create_run(exp_id, run_name=name, tags={TAG_KIND: "cell", **tags}).info.run_id


def test_runs_whose_owner_is_gone_are_killed_and_the_others_left_running(mlflow_client):
    exp_id = mlflow_client.create_experiment(f"live-{uuid.uuid4().hex[:8]}")
    now = int(time.time())
    runs = {
        "mine": make_run(mlflow_client, exp_id, "mine", owner_tags()),
        "dead here": make_run(mlflow_client, exp_id, "dead", {**owner_tags(), TAG_PID: str(dead_pid())}),
        "pid reused": make_run(mlflow_client, exp_id, "reused", {**owner_tags(), TAG_PID_START: "1"}),
        "elsewhere, silent": make_run(mlflow_client, exp_id, "silent",
                                      {TAG_HOST: "node-7", TAG_PID: "12", TAG_HEARTBEAT: str(now - 3600)}),
        "elsewhere, beating": make_run(mlflow_client, exp_id, "beating",
                                       {TAG_HOST: "node-7", TAG_PID: "13", TAG_HEARTBEAT: str(now)}),
        "no owner recorded": make_run(mlflow_client, exp_id, "legacy", {}),
    }
    closed = close_orphans(mlflow_client, [exp_id])
    assert sorted(closed) == sorted([runs["dead here"], runs["pid reused"], runs["elsewhere, silent"]])
    for name, run_id in runs.items():
        run = mlflow_client.get_run(run_id)
        if run_id in closed:
            assert run.info.status == "KILLED" and "ended without closing it" in run.data.tags[TAG_ERROR], name
        else:
            assert run.info.status == "RUNNING", name


def test_owner_alive_reads_host_pid_and_start_time():
    assert owner_alive(owner_tags()) is True
    assert owner_alive({**owner_tags(), TAG_PID: str(dead_pid())}) is False
    assert owner_alive({}) is None


def test_the_heartbeat_refreshes_open_runs(mlflow_client):
    exp_id = mlflow_client.create_experiment(f"beat-{uuid.uuid4().hex[:8]}")
    run_id = make_run(mlflow_client, exp_id, "beat", {**owner_tags(), TAG_HEARTBEAT: "1"})
    beat = Heartbeat(interval=0.2)
    beat.add(mlflow_client, run_id)
    deadline = time.monotonic() + 30
    while mlflow_client.get_run(run_id).data.tags[TAG_HEARTBEAT] == "1":
        assert time.monotonic() < deadline, "no heartbeat"
        time.sleep(0.1)
    beat.remove(run_id)
    assert int(mlflow_client.get_run(run_id).data.tags[TAG_HEARTBEAT]) >= int(time.time()) - 5
