"""``rdbench phase``: a tiny map from the command line, bad input, a grid's phase map, a real kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

import rdbench
from rdbench.cli import main
from rdbench.tracking.tags import TAG_KIND, TAG_PARENT

TINY = ["rd", "--feed", "0.02:0.06:3", "--kill", "0.05:0.065:2", "--profile", "smoke", "--set", "steps=200",
        "--device", "cpu"]


def phase_runs(client, runs_of, experiment):
    return [r for r in runs_of(client, experiment) if r.data.tags.get(TAG_KIND) == "phase"]


def test_a_tiny_map_from_the_command_line(experiment, mlflow_client, runs_of, tmp_path, one_thread):
    result = CliRunner().invoke(main, ["phase", *TINY, "--seed", "3", "--max-memory", "200KB",
                                       "--experiment", experiment, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "6 points in chunks of 3 rows" in result.output and "cell-updates/s" in result.output
    (run,) = phase_runs(mlflow_client, runs_of, experiment)
    assert run.info.status == "FINISHED" and run.info.run_name == "phase:rd 3x2 seeds=3 [smoke]"
    table = pd.read_csv(tmp_path / "phase" / "points.csv")
    assert len(table) == 6 and set(table["seed"]) == {3}
    assert (tmp_path / "phase" / "mosaic_v.png").stat().st_size > 0
    again = CliRunner().invoke(main, ["phase", *TINY, "--seed", "3", "--experiment", experiment])
    assert again.exit_code == 0 and "already finished in run" in again.output


BAD = [
    (["--feed", "0.08:0.01:32"], "--feed '0.08:0.01:32': bad range; allowed: START:STOP:N"),
    (["--kill", "0.03:0.07"], "--kill '0.03:0.07' is not START:STOP:N"),
    (["--feed", "x:0.08:3"], "START and STOP must be numbers"),
    (["--max-memory", "lots"], "--max-memory 'lots': expected a size such as 2GB"),
    (["--max-memory", "10KB"], "below one row's"),
    (["--set", "kill=0.1"], "--set kill: a phase map sets feed and kill per point"),
    (["--set", "dt=9"], "unstable dt=9"),
    (["--set", "stepz=3"], "unknown key 'stepz'"),
    (["--seed", "1", "--seed", "1"], "--seed repeats a seed"),
    (["--profile", "huge"], "unknown profile 'huge'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--compare", "scheme=rk2"], "scheme"),
    (["--compare", "scheme=euler"], "--compare scheme=euler: changes no setting of the map"),
    (["--compare", "kill=0.1"], "--set kill: a phase map sets feed and kill per point"),
    (["--compare", "dt"], "dt"),
]


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[" ".join(e) for e, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_no_run(extra, message, experiment, mlflow_client, runs_of):
    args = ["phase", "rd", "--feed", "0.01:0.08:4", "--kill", "0.03:0.07:4", *extra, "--experiment", experiment]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert runs_of(mlflow_client, experiment) == []


def test_a_tiny_map_compared_under_the_second_scheme(experiment, mlflow_client, runs_of, tmp_path, one_thread):
    result = CliRunner().invoke(main, ["phase", *TINY, "--compare", "scheme=etdrk4", "--experiment", experiment,
                                       "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    runs = {r.info.run_name: r for r in phase_runs(mlflow_client, runs_of, experiment)}
    first, second = runs["phase:rd 3x2 seeds=0 [smoke]"], runs["phase:rd 3x2 seeds=0 [smoke] (scheme=etdrk4)"]
    assert second.data.tags[TAG_PARENT] == first.info.run_id and second.data.params["scheme"] == "etdrk4"
    first = mlflow_client.get_run(first.info.run_id)
    assert first.data.tags["rdbench.compare"] == "scheme=etdrk4"
    assert first.data.tags["rdbench.compare_run"] == second.info.run_id
    both = pd.read_csv(tmp_path / "phase" / "compare" / "points.csv")
    a = pd.read_csv(tmp_path / "phase" / "points.csv")
    assert len(both) == 6 and list(both["label_a"]) == list(a.sort_values(["feed", "kill"])["label"])
    assert (both["abs_dR"] >= 0).all() and first.data.metrics["compare_points"] == 6
    assert first.data.metrics["compare_label_changed"] == both["changed"].sum()
    counts = pd.read_csv(tmp_path / "phase" / "compare" / "counts.csv")
    assert counts.set_index("first \\ second").loc["total", "total"] == 6
    for stem in ("label_changes", "abs_dR"):
        assert (tmp_path / "phase" / "compare" / f"{stem}.png").stat().st_size > 0
    assert "labels of the map (rows) against scheme=etdrk4 (columns)" in result.output


def test_unknown_system_and_a_system_without_maps(experiment):
    assert "unknown system 'nosuch'" in CliRunner().invoke(main, ["phase", "nosuch", "--feed", "0:1:2", "--kill",
                                                                  "0:1:2"]).output
    result = CliRunner().invoke(main, ["phase", "lstm", "--feed", "0:1:2", "--kill", "0:1:2"])
    assert result.exit_code == 2 and "no phase map for system 'lstm'; allowed: rd" in result.output


def test_a_grid_file_runs_its_phase_map_under_the_grid(experiment, mlflow_client, runs_of, tmp_path, one_thread):
    spec = {"description": "a map", "profile": "smoke", "seeds": [0],
            "phase": [{"system": "rd", "feed": "0.03:0.05:2", "kill": "0.06:0.06:1", "overrides": {"steps": 100}}]}
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(main, ["grid", str(path), "--experiment", experiment, "--device", "cpu", "--no-report"])
    assert result.exit_code == 0, result.output
    (run,) = phase_runs(mlflow_client, runs_of, experiment)
    (parent,) = [r for r in runs_of(mlflow_client, experiment) if r.data.tags.get(TAG_KIND) == "grid"]
    assert run.info.status == "FINISHED" and run.data.tags[TAG_PARENT] == parent.info.run_id
    assert run.data.metrics["points"] == 2
    spec["phase"][0]["kill"] = "0.06:0.01:2"
    path.write_text(yaml.safe_dump(spec))
    bad = CliRunner().invoke(main, ["grid", str(path), "--experiment", experiment + "x"])
    assert bad.exit_code == 2 and "phase[0] (system 'rd'): --kill '0.06:0.01:2': bad range" in bad.output
    assert mlflow_client.get_experiment_by_name(experiment + "x") is None


@pytest.mark.slow
def test_a_map_killed_after_its_first_chunk_resumes_there(experiment, mlflow_client, runs_of, tracking_uri):
    args = ["phase", *TINY, "--set", "steps=3000", "--set", "early_stop.tolerance=0", "--max-memory", "300KB",
            "--experiment", experiment]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}
    env.update(MLFLOW_TRACKING_URI=tracking_uri, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(Path(rdbench.__file__).parents[1]))
    proc = subprocess.Popen([sys.executable, "-m", "rdbench", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "1/6 points" in line or not line:
                break
        assert "1/6 points" in lines[-1], "".join(lines)  # chunk 1 (of one row) is saved
        proc.send_signal(signal.SIGKILL)  # no handler runs: the run is left RUNNING by a dead process
    finally:
        proc.kill()
        proc.wait()
    (killed,) = phase_runs(mlflow_client, runs_of, experiment)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "marked KILLED 1 run(s)" in result.output
    (run,) = phase_runs(mlflow_client, runs_of, experiment)
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    m = run.data.metrics
    assert m["points"] == 6 and m["chunks_reused"] >= 1 and m["chunks_reused"] + m["chunks_run"] == 6
    assert f"{m['chunks_run']:.0f} chunks run, {m['chunks_reused']:.0f} reused" in result.output
