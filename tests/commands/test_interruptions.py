"""Every way a process can end leaves its runs FINISHED, FAILED or KILLED, never RUNNING.

SIGTERM and Ctrl-C end the runs in flight KILLED with the reason; after SIGKILL (or the
OOM killer) the next rdbench command on the store closes what the dead process left.
A grid killed mid-way and rerun gives the same Table 1 as one never interrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import rdbench
from rdbench.cli import main
from rdbench.config import conf_dir
from rdbench.report.published import load_published
from rdbench.report.selection import select_runs
from rdbench.report.table import QUANTITIES, build_table, cells_frame

RUN_RD = ["run", "rd", "--profile", "smoke", "--steps", "400000", "--set", "early_stop.tolerance=0", "--device", "cpu"]


def start(args, uri: str, data_dir: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}
    env.update(MLFLOW_TRACKING_URI=uri, RDBENCH_DATA_DIR=str(data_dir), OMP_NUM_THREADS="1",
               PYTHONPATH=str(Path(rdbench.__file__).parents[1]))
    return subprocess.Popen([sys.executable, "-m", "rdbench", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, proc: subprocess.Popen, seconds: float = 600, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, f"ended before {what}: {proc.stdout.read()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def runs_in(client, experiment: str) -> list:
    """Every run of ``experiment`` (none before it exists)."""
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000) if exp else []


def statuses(client, experiment: str) -> dict[str, str]:
    return {r.info.run_name: r.info.status for r in runs_in(client, experiment)}


def running_cells(client, experiment: str) -> list[str]:
    """The cell runs (not grid parents) now RUNNING."""
    return [r.info.run_name for r in runs_in(client, experiment)
            if r.info.status == "RUNNING" and r.data.tags.get("rdbench.kind") == "cell"]


@pytest.mark.slow
def test_sigterm_ends_the_run_killed_with_the_reason(experiment, tracking_uri, mlflow_client, tmp_path, runs_of):
    proc = start([*RUN_RD, "--experiment", experiment], tracking_uri, tmp_path)
    wait_for(lambda: running_cells(mlflow_client, experiment), proc, what="the run to start")
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "Aborted: received SIGTERM" in out
    (run,) = runs_of(mlflow_client, experiment)
    assert run.info.status == "KILLED"
    assert run.data.tags["rdbench.error"] == "Terminated: received SIGTERM"


@pytest.mark.slow
def test_after_sigkill_the_next_command_closes_the_orphaned_run(experiment, tracking_uri, mlflow_client, tmp_path,
                                                               runs_of):
    proc = start([*RUN_RD, "--experiment", experiment], tracking_uri, tmp_path)
    wait_for(lambda: running_cells(mlflow_client, experiment), proc, what="the run to start")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    (left,) = runs_of(mlflow_client, experiment)
    assert left.info.status == "RUNNING"  # what a SIGKILL leaves behind
    result = CliRunner().invoke(main, ["table", "--experiment", experiment, "--all-cells", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no FINISHED cell run" in result.output  # refused: the one cell was killed
    (closed,) = runs_of(mlflow_client, experiment)
    assert closed.info.status == "KILLED"
    assert f"pid {left.data.tags['rdbench.pid']}" in closed.data.tags["rdbench.error"]


def smoke_table(client, parent_run_id: str):
    table = build_table(cells_frame(select_runs(client, parent_run_id=parent_run_id).runs), load_published())
    return {(r["system"], r["case"]): tuple(r[q] for q in QUANTITIES) for r in table.to_dict("records")}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_grid_interrupted_in_its_ddpm_training_resumes_to_the_table_of_an_uninterrupted_one(
    sig, smoke, experiment, tracking_uri, mlflow_client, tmp_path
):
    """The smoke grid killed while its DDPM cell trains: the next command leaves nothing RUNNING, the table
    of the killed grid lists its finished cells, and the rerun's Table 1 equals the uninterrupted grid's."""
    grid = [str(conf_dir() / "smoke.yaml"), "--experiment", experiment, "--device", "cpu", "--no-report",
            "--data-dir", str(tmp_path)]  # the rerun finds the killed training's checkpoint there
    proc = start(["grid", *grid], tracking_uri, tmp_path)
    checkpoints = tmp_path / "checkpoints"
    wait_for(lambda: list(checkpoints.glob("*/latest.pt")), proc, what="the DDPM cell's first checkpoint")
    proc.send_signal(sig)
    proc.wait(timeout=120)

    table = CliRunner().invoke(main, ["table", "--experiment", experiment, "--out", str(tmp_path / "t1")])
    assert table.exit_code == 0, table.output  # the killed grid's finished cells are tabulated
    assert "RUNNING" not in statuses(mlflow_client, experiment).values()
    assert set(statuses(mlflow_client, experiment).values()) <= {"FINISHED", "KILLED"}
    killed = [n for n, s in statuses(mlflow_client, experiment).items() if s == "KILLED"]
    assert "grid:smoke" in killed and any(n.startswith("ddpm/digits") for n in killed), killed

    rerun = CliRunner().invoke(main, ["grid", *grid])
    assert rerun.exit_code == 0, rerun.output
    assert "0 failed" in rerun.output and "skipped (already finished)" in rerun.output
    (ddpm,) = [r for r in mlflow_client.search_runs([mlflow_client.get_experiment_by_name(experiment).experiment_id],
                                                    "attributes.status = 'FINISHED'") if r.info.run_name.startswith("ddpm")]
    assert ddpm.data.metrics["resumed_from_step"] > 0  # continued from the killed training's checkpoint
    exp_id = mlflow_client.get_experiment_by_name(experiment).experiment_id
    (latest,) = mlflow_client.search_runs([exp_id], "tags.`rdbench.grid` = 'smoke'", order_by=["start_time DESC"],
                                          max_results=1)
    resumed = smoke_table(mlflow_client, latest.info.run_id)
    uninterrupted = smoke_table(smoke.client, smoke.parent)
    assert resumed.keys() == uninterrupted.keys()
    for key, values in uninterrupted.items():  # float32 arithmetic: equal to its precision (the killed
        # grid trained on 1 thread, the uninterrupted one on 2: summation orders differ)
        assert resumed[key] == pytest.approx(values, rel=1e-6, nan_ok=True), key


@pytest.mark.slow
def test_two_grids_started_at_once_run_each_cell_once(experiment, tracking_uri, mlflow_client, tmp_path):
    spec = yaml.safe_load((conf_dir() / "smoke.yaml").read_text())
    spec["cells"] = [e for e in spec["cells"] if e["system"] == "rd"]
    path = tmp_path / "rd.yaml"
    path.write_text(yaml.safe_dump(spec))
    procs = [start(["grid", str(path), "--experiment", experiment, "--device", "cpu", "--no-report"],
                   tracking_uri, tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    exp_id = mlflow_client.get_experiment_by_name(experiment).experiment_id
    cells = mlflow_client.search_runs([exp_id], "tags.`rdbench.kind` = 'cell'", max_results=1000)
    hashes = [r.data.tags["rdbench.config_hash"] for r in cells]
    assert len(hashes) == len(set(hashes)) == 4, [(r.info.run_name, r.info.status) for r in cells]
    assert {r.info.status for r in cells} == {"FINISHED"}
