"""`rdbench run lstm` end to end on the real MLflow store, its bad input, and `mlflow run -e lstm`."""

from pathlib import Path

import mlflow.artifacts
import mlflow.pytorch
import pytest
import torch
from click.testing import CliRunner

from rdbench.cli import main
from rdbench.systems.lstm.model import build_model

REPO = Path(__file__).resolve().parents[2]


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_smoke_run_logs_balance_controls_losses_weights_and_plot(experiment, mlflow_client, tmp_path, runs_of):
    result = invoke("run", "lstm", "--dataset", "vanderpol", "--profile", "smoke", "--seed", "2",
                    "--experiment", experiment, "--device", "cpu")
    assert result.exit_code == 0, result.output
    (run,) = runs_of(mlflow_client, experiment)
    assert run.info.status == "FINISHED"
    p, m, t = run.data.params, run.data.metrics, run.data.tags
    assert t["rdbench.system"] == "lstm" and t["rdbench.case"] == "vanderpol"
    assert p["dataset"] == "vanderpol" and p["vanderpol.mu"] == "1.0" and p["epochs"] == "8"
    assert p["measure.mode"] == "generate" and p["init"] == "normal"

    # smoke: 4 seed windows, 10 warm-up + 20 generated steps
    assert m["n_samples"] == 4 and m["n_steps"] == 30
    assert m["R"] == pytest.approx(m["M_react"] / m["M_diff"])
    for control in ("untrained", "shuffled"):
        prefix = f"control.{control}."
        assert m[prefix + "n_steps"] == 30
        assert m[prefix + "R"] == pytest.approx(m[prefix + "M_react"] / m[prefix + "M_diff"])
        assert m[prefix + "M_react"] != m["M_react"]  # a different network, measured apart
    r_t = mlflow_client.get_metric_history(run.info.run_id, "R_t")
    assert sorted(h.step for h in r_t) == list(range(1, 30))  # step 0: C_{-1} = 0, R_t infinite

    train = mlflow_client.get_metric_history(run.info.run_id, "train_loss")
    test = mlflow_client.get_metric_history(run.info.run_id, "test_loss")
    assert sorted(h.step for h in train) == list(range(1, 9)) and len(test) == 8
    assert m["test_loss_final"] == pytest.approx(sorted(test, key=lambda h: h.step)[-1].value)
    assert m["epochs_run"] == 8 and m["test_loss_last_value"] > 0

    weights = mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/lstm-vanderpol-seed2/extra_files/state_dict.pt",
                                                  dst_path=str(tmp_path))
    saved = torch.load(weights, weights_only=True)
    assert saved["lstm.weight_hh_l0"].shape == (64, 16)
    initial = build_model(16, "normal", 0).state_dict()
    assert not torch.equal(saved["lstm.weight_hh_l0"], initial["lstm.weight_hh_l0"])
    plots = {f.path for f in mlflow_client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/generated_vs_true.png"}
    balance = {f.path for f in mlflow_client.list_artifacts(run.info.run_id, "balance")}
    assert {"balance/model_series.csv", "balance/control_untrained_series.csv",
            "balance/control_shuffled_series.csv"} <= balance


def test_teacher_mode_measures_the_held_out_sequences(experiment, mlflow_client, runs_of):
    result = invoke("run", "lstm", "--dataset", "sine", "--profile", "smoke", "--set", "measure.mode=teacher",
                    "--experiment", experiment, "--device", "cpu")
    assert result.exit_code == 0, result.output
    (run,) = runs_of(mlflow_client, experiment)
    m = run.data.metrics
    assert m["n_samples"] == 4 and m["n_steps"] == 39  # seq_len 40: the values that have a successor
    assert {f.path for f in mlflow_client.list_artifacts(run.info.run_id, "plots")} == set()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "lorentz"], "unknown dataset 'lorentz' for system 'lstm'; allowed: sine, lorenz, vanderpol"),
        (["--seq-len", "0"], "bad value 0 for 'seq_len': Input should be greater than 0"),
        (["--seq-len", "-3"], "bad value -3 for 'seq_len': Input should be greater than 0"),
        (["--seq-len", "1"], "seq_len=1: next-step prediction needs sequences of at least 2 values"),
        (["--set", "dataset=mnist"], "bad value 'mnist' for 'dataset': Input should be 'sine', 'lorenz', 'vanderpol', 'csv' or 'npy'"),
        (["--set", "measure.mode=sample"], "bad value 'sample' for 'measure.mode'"),
        (["--epochs", "0"], "bad value 0 for 'epochs': Input should be greater than 0"),
    ],
)
def test_bad_input_is_one_line_nonzero_and_leaves_no_run(args, message, experiment, mlflow_client, runs_of):
    result = CliRunner().invoke(main, ["run", "lstm", "--profile", "smoke", *args, "--experiment", experiment])
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert runs_of(mlflow_client, experiment) == []


@pytest.mark.slow
def test_mlflow_run_lstm_logs_into_its_own_run(experiment, tracking_uri, mlflow_client, tmp_path, runs_of, mlflow_run):
    mlflow_run("lstm", {"dataset": "lorenz", "profile": "smoke", "settings": "epochs=3", "device": "cpu"},
               experiment=experiment, tracking_uri=tracking_uri, cwd=tmp_path)
    (run,) = runs_of(mlflow_client, experiment)
    assert run.info.status == "FINISHED"
    assert run.data.params["dataset"] == "lorenz" and run.data.params["epochs"] == "3"
    assert run.data.tags["rdbench.system"] == "lstm"
    assert "R" in run.data.metrics and "control.untrained.R" in run.data.metrics


def test_bench_lstm_prints_both_ratios():
    result = invoke("bench", "lstm", "--batch", "4", "--seq-len", "6", "--train-steps", "1", "--rounds", "1")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("LSTM(1, 16) + read-out, batch 4 x 6 values, 1 rounds")
    rates = [line for line in lines if line.endswith("sequences/s")]
    assert len(rates) == 4 and all(float(line.split()[-2]) > 0 for line in rates)
    assert any(line.startswith("ratio training throughput fused / LSTMCell loop: ") for line in lines)
    assert any(line.startswith("probe cost / plain nn.LSTM forward: ") for line in lines)


@pytest.mark.usefixtures("one_thread")
def test_a_logged_lstm_reloads_and_remeasures_the_same_r(experiment, mlflow_client, runs_of):
    assert invoke("run", "lstm", "--dataset", "sine", "--profile", "smoke", "--experiment", experiment,
                  "--device", "cpu").exit_code == 0
    (trained,) = runs_of(mlflow_client, experiment)
    run_id = trained.info.run_id
    inputs = {d.dataset.name: d for d in mlflow_client.get_run(run_id).inputs.dataset_inputs}
    assert set(inputs) == {"sine/train", "sine/test"}
    assert {d.tags[0].value for d in inputs.values()} == {"training", "evaluation"}
    assert len(inputs["sine/train"].dataset.digest) == 16 and inputs["sine/train"].dataset.source_type == "code"
    params = trained.data.params
    assert "sine.freq_min" in params and not any(k.startswith(("lorenz.", "vanderpol.", "solver.", "file."))
                                                  for k in params)
    (output,) = mlflow_client.get_run(run_id).outputs.model_outputs
    model = mlflow_client.get_logged_model(output.model_id)
    assert model.name == "lstm-sine-seed0"  # system, case, seed: the UI's Models list tells them apart
    assert model.params["sine.freq_min"] == params["sine.freq_min"]  # the run's settings on the model's page
    linked = {m.key: m.value for m in model.metrics}
    assert all(linked[k] == trained.data.metrics[k] for k in ("R", "M_react", "M_diff", "R_final", "control.shuffled.R"))

    result = invoke("run", "lstm", "--dataset", "sine", "--profile", "smoke", "--experiment", experiment,
                    "--device", "cpu", "--model", f"runs:/{run_id}/model")
    assert result.exit_code == 0, result.output
    (again,) = [r for r in runs_of(mlflow_client, experiment) if r.info.run_id != run_id]
    m0, m1 = trained.data.metrics, again.data.metrics
    for key in ("R", "M_react", "M_diff", "R_final", "control.untrained.R", "control.shuffled.R"):
        assert m1[key] == pytest.approx(m0[key], rel=1e-6), key
    assert "train_loss_final" not in m1 and not mlflow_client.get_metric_history(again.info.run_id, "train_loss")
    assert {d.dataset.name for d in mlflow_client.get_run(again.info.run_id).inputs.dataset_inputs} == {"sine/test"}

    # MLflow's own loader gives the same network (it unpickles the module; rdbench never does), by its name
    module = mlflow.pytorch.load_model(f"runs:/{run_id}/{model.name}", map_location="cpu")
    x = torch.linspace(-1, 1, 12).reshape(1, 12)
    rebuilt = build_model(16, "normal", 0)
    saved = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{model.name}/extra_files/state_dict.pt")
    rebuilt.load_state_dict(torch.load(saved, weights_only=True))
    assert torch.equal(module(x), rebuilt(x))


@pytest.mark.usefixtures("one_thread")
def test_a_model_that_does_not_fit_is_one_line_and_no_run(experiment, mlflow_client, runs_of, tmp_path):
    assert invoke("run", "lstm", "--dataset", "sine", "--profile", "smoke", "--experiment", experiment,
                  "--device", "cpu").exit_code == 0
    (trained,) = runs_of(mlflow_client, experiment)
    uri = f"runs:/{trained.info.run_id}/model"
    cases = [
        (["lstm", "--profile", "smoke", "--hidden-size", "8"],
         f"--model {uri}: it was trained with hidden_size=16 but these settings have hidden_size=8"),
        (["ddpm", "--dataset", "digits", "--profile", "smoke"],
         f"--model {uri}: it is a 'lstm' model, not a 'ddpm' one; run it with `rdbench run lstm --model {uri}`"),
        (["lstm", "--profile", "smoke", "--model", "runs:/0123456789abcdef/model"], "cannot fetch it"),
        (["lstm", "--profile", "smoke", "--model", str(tmp_path)], "the LSTM reloads only models that rdbench logged"),
    ]
    for args, message in cases:
        model = [] if "--model" in args else ["--model", uri]
        result = invoke("run", *args, *model, "--experiment", experiment, "--device", "cpu")
        assert result.exit_code == 2, result.output
        (line,) = [x for x in result.output.splitlines() if x.strip()]
        assert message in line, result.output
    assert len(runs_of(mlflow_client, experiment)) == 1  # nothing was started
