"""`rdbench run ddpm` end to end on the real MLflow store: tracking, bad input, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow.models
import pytest
import torch
from click.testing import CliRunner

from rdbench.cli import main


def invoke(*args):
    return CliRunner().invoke(main, list(args))


@pytest.mark.usefixtures("one_thread")
def test_smoke_run_on_digits_is_tracked(experiment, mlflow_client, tmp_path, runs_of):
    result = invoke("run", "ddpm", "--dataset", "digits", "--profile", "smoke", "--device", "cpu",
                    "--data-dir", str(tmp_path), "--experiment", experiment, "--train-steps", "10",
                    "--probe-every", "5")
    assert result.exit_code == 0, result.output
    (run,) = runs_of(mlflow_client, experiment)
    assert run.info.status == "FINISHED"
    p, m = run.data.params, run.data.metrics
    assert p["dataset"] == "digits" and p["train_steps"] == "10" and p["sampler.variance"] == "fixed_large"
    assert p["model.channels"] == "[8, 16]" and p["schedule.timesteps"] == "50"
    for key in ("M_react", "M_diff", "R", "R_final", "M_eps", "M_diff_closed_form", "final_loss",
                "control.untrained.R", "control.untrained.M_diff", "train_images_per_s", "n_parameters"):
        assert key in m, key
    assert m["M_diff"] == pytest.approx(m["M_diff_closed_form"], rel=0.05)  # 4 samples x 49 steps
    assert m["control.untrained.M_diff"] == m["M_diff"]  # the same noise: a paired comparison
    assert m["train_steps_done"] == 10 and m["n_steps"] == 49  # the noise-free last step is not measured
    client = mlflow_client
    loss = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(h.step for h in loss) == [5, 10]
    r_train = client.get_metric_history(run.info.run_id, "R_during_training")
    assert sorted(h.step for h in r_train) == [0, 5, 10]  # untrained, the probe, the final measurement
    for series in ("R_t", "react_t", "diff_t", "eps_t", "control.untrained.R_t"):
        assert len(client.get_metric_history(run.info.run_id, series)) == 49, series
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"dataset.json", "samples", "checkpoints", "balance"} <= artifacts
    assert {f.path for f in client.list_artifacts(run.info.run_id, "samples")} == {
        "samples/trained.png", "samples/untrained.png"}
    (ckpt,) = client.list_artifacts(run.info.run_id, "checkpoints")
    state = torch.load(client.download_artifacts(run.info.run_id, ckpt.path), weights_only=True)
    assert state["step"] == 10
    with open(client.download_artifacts(run.info.run_id, "dataset.json")) as fh:
        assert "NOT MNIST" in json.load(fh)["description"]


def test_artifacts_deleted_before_the_end_fail_the_run_naming_what_is_missing(
        experiment, mlflow_client, tmp_path, runs_of, monkeypatch):
    """The store's artifact folder deleted after the cell logged and before it ends: FAILED, one line
    naming the missing artifacts, exit 2; never FINISHED with a hole in its record."""
    import shutil
    from urllib.parse import urlparse

    from rdbench.tracking.runs import TrackedRun
    from rdbench.tracking.tags import TAG_ERROR

    finish = TrackedRun.finish

    def delete_the_artifact_folder_then_finish(run):
        artifacts = Path(urlparse(run.client.get_run(run.run_id).info.artifact_uri).path)
        shutil.rmtree(artifacts.parents[1])  # the experiment's folder of the artifact store
        finish(run)

    monkeypatch.setattr(TrackedRun, "finish", delete_the_artifact_folder_then_finish)
    result = invoke("run", "ddpm", "--dataset", "digits", "--profile", "smoke", "--device", "cpu",
                    "--data-dir", str(tmp_path), "--experiment", experiment, "--train-steps", "4")
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert "logged artifacts are missing from the store" in line
    assert "dataset.json" in line and "samples/untrained.png" in line
    (run,) = runs_of(mlflow_client, experiment)
    assert run.info.status == "FAILED"
    assert "dataset.json" in run.data.tags[TAG_ERROR]


def test_no_resume_past_a_checkpoint_and_a_configuration_in_training_are_refused_before_any_run(
        experiment, mlflow_client, tmp_path, runs_of):
    """Both checks run before the run exists: one line, exit 2, nothing in the store."""
    from rdbench.study.cells import plan_cells
    from rdbench.systems.ddpm.train import exclusive

    args = ["run", "ddpm", "--dataset", "digits", "--profile", "smoke", "--device", "cpu", "--data-dir",
            str(tmp_path), "--experiment", experiment, "--train-steps", "4"]
    (cell,) = plan_cells("ddpm", ["digits"], (0,), "smoke", {"train_steps": 4})
    folder = tmp_path / "checkpoints" / cell.config_hash
    with exclusive(folder):  # as a second process training the same configuration holds it
        result = invoke(*args)
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert f"checkpoint folder {folder} is in use by another process" in line
    torch.save({"step": 3}, folder / "latest.pt")
    (folder / "latest.json").write_text(json.dumps({"step": 3}))
    result = invoke(*args, "--no-resume")
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert f"--no-resume: checkpoint {folder / 'latest.pt'} at step 3 exists" in line
    assert runs_of(mlflow_client, experiment) == []


def test_missing_dataset_offline_is_one_clear_line(experiment, mlflow_client, tmp_path, offline, runs_of):
    result = invoke("run", "ddpm", "--dataset", "mnist", "--profile", "smoke", "--device", "cpu",
                    "--data-dir", str(tmp_path), "--experiment", experiment)
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if "DatasetUnavailable" in line]
    assert lines, result.output
    expected = (f"dataset 'mnist' not found in {tmp_path / 'MNIST' / 'raw'} (expected files: "
                "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte) "
                "and downloading it failed, probably no network")
    assert all(expected in line for line in lines), result.output
    (run,) = runs_of(mlflow_client, experiment)
    assert run.info.status == "FAILED"
    assert expected in run.data.tags["rdbench.error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "imagenet"], "unknown dataset 'imagenet' for system 'ddpm'; allowed: mnist, fashionmnist, cifar10, digits"),
        (["--dataset", "digits", "--train-steps", "0"], "bad value 0 for 'train_steps': Input should be greater than 0"),
        (["--dataset", "digits", "--train-steps", "-3"], "bad value -3 for 'train_steps': Input should be greater than 0"),
        (["--dataset", "digits", "--set", "model.groups=3"], "not divisible by model.groups=3"),
    ],
)
def test_bad_input_is_one_line_nonzero_and_leaves_no_run(args, message, experiment, mlflow_client, runs_of):
    result = invoke("run", "ddpm", "--profile", "smoke", *args, "--experiment", experiment)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert runs_of(mlflow_client, experiment) == []


def _checkpoint_step(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["step"])
    except Exception:  # noqa: BLE001 - not written yet
        return -1


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_sigkill_then_rerun_resumes_and_reaches_the_step_count_losing_at_most_one_interval(experiment, mlflow_client, tracking_uri, tmp_path, runs_of):
    every, total = 10, 80
    args = ["run", "ddpm", "--dataset", "digits", "--profile", "smoke", "--device", "cpu",
            "--train-steps", str(total), "--checkpoint-every", str(every), "--log-every", "2",
            "--probe-every", "0", "--data-dir", str(tmp_path), "--experiment", experiment]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_RUN_ID", None)
    proc = subprocess.Popen([sys.executable, "-m", "rdbench.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(tmp_path.glob("checkpoints/*/latest.pt"))
            if found and _checkpoint_step(found[0]) >= 3 * every:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read().decode()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    (killed,) = runs_of(mlflow_client, experiment)
    assert killed.info.status == "RUNNING"  # what a SIGKILL leaves behind
    reached = max(h.step for h in mlflow_client.get_metric_history(killed.info.run_id, "loss"))
    (found,) = tmp_path.glob("checkpoints/*/latest.pt")
    saved = _checkpoint_step(found)
    assert saved % every == 0 and saved >= 3 * every

    result = invoke(*args)  # a plain rerun: continues from the checkpoint (the default)
    assert result.exit_code == 0, result.output
    runs = {r.info.run_id: r for r in runs_of(mlflow_client, experiment)}
    resumed = next(r for r in runs.values() if r.info.run_id != killed.info.run_id)
    assert resumed.info.status == "FINISHED"
    killed_now = runs[killed.info.run_id]
    assert killed_now.info.status == "KILLED"  # closed by the next command: its process was gone
    assert "ended without closing it" in killed_now.data.tags["rdbench.error"]
    m = resumed.data.metrics
    assert m["train_steps_done"] == total
    assert m["resumed_from_step"] == saved
    assert reached - m["resumed_from_step"] <= every  # lost at most one checkpoint interval
    loss_steps = sorted(h.step for h in mlflow_client.get_metric_history(resumed.info.run_id, "loss"))
    assert loss_steps[0] == saved + 2 and loss_steps[-1] == total


@pytest.mark.slow
def test_mlflow_run_ddpm_entry_point(experiment, tracking_uri, mlflow_client, tmp_path, runs_of, mlflow_run):
    """`mlflow run . -e ddpm` (digits, smoke) logs the DDPM cell into the run mlflow created."""
    mlflow_run("ddpm", {"dataset": "digits", "profile": "smoke", "settings": "train_steps=10", "device": "cpu"},
               experiment=experiment, tracking_uri=tracking_uri, cwd=tmp_path,
               env={"RDBENCH_DATA_DIR": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"})
    (run,) = runs_of(mlflow_client, experiment)
    assert run.info.status == "FINISHED"
    assert run.data.params["train_steps"] == "10" and "''" not in run.data.params.values()
    assert run.data.tags["rdbench.system"] == "ddpm" and run.data.tags["rdbench.case"] == "digits"
    assert {"R", "M_diff_closed_form", "control.untrained.R"} <= set(run.data.metrics)
    assert list((tmp_path / "data" / "checkpoints").glob("*/latest.pt"))  # under RDBENCH_DATA_DIR


@pytest.mark.usefixtures("one_thread")
def test_a_logged_ddpm_reloads_and_remeasures_the_same_r(experiment, mlflow_client, tmp_path, runs_of):
    common = ["--dataset", "digits", "--profile", "smoke", "--device", "cpu", "--data-dir", str(tmp_path),
              "--experiment", experiment, "--train-steps", "6", "--probe-every", "0"]
    assert invoke("run", "ddpm", *common).exit_code == 0
    (trained,) = runs_of(mlflow_client, experiment)
    run_id = trained.info.run_id
    (data,) = mlflow_client.get_run(run_id).inputs.dataset_inputs
    assert data.dataset.name == "digits" and data.dataset.source_type == "code" and len(data.dataset.digest) == 16
    assert json.loads(data.dataset.profile)["shape"] == [1797, 1, 32, 32]
    info = mlflow.models.get_model_info(f"runs:/{run_id}/ddpm-digits-seed0")  # named after system, case, seed
    assert [i["name"] for i in info.signature.inputs.to_dict()] == ["x", "t"]
    assert info.metadata["rdbench"]["model"]["channels"] == [8, 16]

    result = invoke("run", "ddpm", *common, "--model", f"runs:/{run_id}/model")
    assert result.exit_code == 0, result.output
    (again,) = [r for r in runs_of(mlflow_client, experiment) if r.info.run_id != run_id]
    m0, m1 = trained.data.metrics, again.data.metrics
    for key in ("R", "M_react", "M_diff", "R_final", "M_eps", "control.untrained.R", "control.oracle.R", "control.oracle_noise.R"):
        assert m1[key] == pytest.approx(m0[key], rel=1e-6), key
    assert not mlflow_client.get_metric_history(again.info.run_id, "loss")  # nothing was trained

    grid = plt.imread(mlflow_client.download_artifacts(again.info.run_id, "samples/reloaded.png", str(tmp_path)))
    assert grid.shape[0] >= 5 * 256 and grid.shape[2] in (3, 4)  # x_T, 3 steps, x_0: rows of >= 256 px

    bad = invoke("run", "ddpm", *common, "--model", f"runs:/{run_id}/model", "--set", "schedule.timesteps=40")
    assert bad.exit_code == 2, bad.output
    assert "it was trained with schedule.timesteps=50 but these settings have schedule.timesteps=40" in bad.output
    assert len(runs_of(mlflow_client, experiment)) == 2


@pytest.mark.usefixtures("one_thread")
def test_a_reused_checkpoint_is_announced_and_tagged_and_fresh_trains_again(experiment, mlflow_client, tmp_path,
                                                                             runs_of, caplog):
    import logging

    import rdbench

    settings = {"train_steps": 10, "probe_every": 0}
    first = rdbench.run("ddpm", case="digits", profile="smoke", device="cpu", data_dir=tmp_path,
                        experiment=experiment, **settings)
    assert first.metrics["resumed_from_step"] == 0 and first.metrics["checkpoints_written"] == 1
    assert not any(k.startswith("rdbench.checkpoint.") for k in first.tags)
    # the checkpoint lives in the tracking store too, as the artifact of the run that wrote it
    stored = torch.load(mlflow_client.download_artifacts(first.run_id, "checkpoints/latest.pt"), weights_only=True)
    assert stored["step"] == 10

    with caplog.at_level(logging.WARNING, logger="rdbench.systems.ddpm.system"):
        second = rdbench.run("ddpm", case="digits", profile="smoke", device="cpu", data_dir=tmp_path,
                             experiment=experiment, **settings)
    (line,) = [r.getMessage() for r in caplog.records if "checkpoint" in r.getMessage()]
    assert "reusing checkpoint" in line and f"written by run {first.run_id}" in line and "--fresh" in line
    path = second.tags["rdbench.checkpoint.path"]
    assert path.endswith("latest.pt") and Path(path).parent.parent == tmp_path / "checkpoints"
    assert second.tags["rdbench.checkpoint.run_id"] == first.run_id and second.tags["rdbench.checkpoint.step"] == "10"
    assert second.metrics["resumed_from_step"] == 10 and second.metrics["checkpoints_written"] == 0
    assert second.R == first.R  # the same EMA weights measured with the same noise

    result = invoke("run", "ddpm", "--dataset", "digits", "--profile", "smoke", "--device", "cpu", "--data-dir",
                    str(tmp_path), "--experiment", experiment, "--train-steps", "10", "--probe-every", "0", "--fresh")
    assert result.exit_code == 0, result.output
    (third,) = [r for r in runs_of(mlflow_client, experiment) if r.info.run_id not in (first.run_id, second.run_id)]
    assert not any(k.startswith("rdbench.checkpoint.") for k in third.data.tags)
    assert third.data.metrics["resumed_from_step"] == 0 and third.data.metrics["checkpoints_written"] == 1
    assert third.data.metrics["R"] == first.R  # training is deterministic: from scratch gives the same weights
    step_file = json.loads((Path(path).with_name("latest.json")).read_text())
    assert step_file == {"step": 10, "run_id": third.info.run_id}  # the checkpoint now comes from the third run
