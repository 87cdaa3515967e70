"""Datasets and networks in a real MLflow store: log_input, log_model, and reading a model back."""

from __future__ import annotations

import json

import mlflow.pytorch
import numpy as np
import pytest
import torch

from rdbench.config import ConfigError
from rdbench.systems.records import ModelRecord, dataset_record, load_logged_model, register_fetcher
from rdbench.tracking.models import fetch_model_files
from rdbench.tracking.runs import TrackedRun


class TwoInputs(torch.nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.linear = torch.nn.Linear(width, width)

    def forward(self, x, t):
        return self.linear(x) * (1 + t[:, None].float())


def test_datasets_are_run_inputs_with_name_source_and_digest(experiment, mlflow_client, tmp_path):
    run = TrackedRun.create(mlflow_client, experiment, "inputs")
    values = np.arange(24, dtype=np.float32).reshape(4, 6)
    path = tmp_path / "series.npy"
    np.save(path, values)
    run.log_input(dataset_record("series/train", str(path), values, "training", "four rows"))
    run.log_input(dataset_record("sine/test", "code:rdbench.systems.lstm.data", torch.as_tensor(values), "evaluation"))
    run.log_input(dataset_record("mnist", "https://example.org/mnist", values[:2], "training"))
    run.finish()
    inputs = {d.dataset.name: d for d in mlflow_client.get_run(run.run_id).inputs.dataset_inputs}
    assert set(inputs) == {"series/train", "sine/test", "mnist"}
    local = inputs["series/train"].dataset
    assert local.source_type == "local" and json.loads(local.source)["uri"].endswith("series.npy")
    assert json.loads(local.profile) == {"rows": 4, "shape": [4, 6], "dtype": "float32", "description": "four rows"}
    assert inputs["sine/test"].dataset.source_type == "code" and inputs["mnist"].dataset.source_type == "http"
    # the digest is of the values: the same array as numpy or as a tensor, another array another digest
    assert local.digest == inputs["sine/test"].dataset.digest != inputs["mnist"].dataset.digest
    assert {i.tags[0].key: i.tags[0].value for i in inputs.values()}["mlflow.data.context"] in ("training", "evaluation")


def test_a_logged_model_is_rebuilt_from_its_state_dict_and_config(experiment, mlflow_client):
    register_fetcher(fetch_model_files)
    torch.manual_seed(0)
    module = TwoInputs(3).eval()
    run = TrackedRun.create(mlflow_client, experiment, "model",
                            {"rdbench.system": "toy", "rdbench.case": "csv:a b.csv", "rdbench.seed": "2"})
    run.log_params({"width": 3, "steps": 10})
    run.log_metrics({"loss_during_training": 0.5})  # before the model
    example = {"x": np.ones((1, 3), np.float32), "t": np.zeros((1,), np.int64)}
    run.log_model(ModelRecord("toy", module, {"width": 3, "case": "c", "profile": "smoke"}, example))
    run.log_metrics({"R": 1.02, "M_react": 0.5})  # the final metrics: linked to the model
    run.finish()
    uri = f"runs:/{run.run_id}/model"  # what rdbench's --model takes, whatever the model's name

    (output,) = mlflow_client.get_run(run.run_id).outputs.model_outputs
    model = mlflow_client.get_logged_model(output.model_id)
    assert model.name == "toy-csv_a_b_csv-seed2"  # system, case, seed; no character MLflow refuses
    assert model.params == {"width": "3", "steps": "10"}
    linked = {m.key: m.value for m in model.metrics}  # MLflow links what the run had; rdbench what comes after
    assert linked == {"loss_during_training": 0.5, "R": 1.02, "M_react": 0.5}
    assert mlflow_client.get_run(run.run_id).data.metrics["R"] == 1.02  # still the run's metrics too

    logged = load_logged_model(uri, "toy")
    assert logged.config["width"] == 3 and logged.config["system"] == "toy"
    assert sorted(p.name for p in logged.folder.rglob("*") if p.is_file()) == ["MLmodel", "rdbench-model.json",
                                                                               "state_dict.pt"]  # no pickle
    rebuilt = logged.load_into(TwoInputs(3))
    x, t = torch.randn(2, 3), torch.tensor([0, 2])
    assert torch.equal(rebuilt(x, t), module(x, t))
    # MLflow's own loader agrees, by the model's name under the run or by its id
    assert torch.equal(mlflow.pytorch.load_model(f"runs:/{run.run_id}/{model.name}")(x, t), module(x, t))
    assert torch.equal(mlflow.pytorch.load_model(f"models:/{model.model_id}")(x, t), module(x, t))

    logged.require({"width": 3})
    with pytest.raises(ConfigError, match=r"trained with width=3 but these settings have width=4"):
        logged.require({"width": 4})
    with pytest.raises(ConfigError, match=r"it is a 'toy' model, not a 'lstm' one"):
        load_logged_model(uri, "lstm")
    with pytest.raises(RuntimeError, match="size mismatch"):
        logged.load_into(TwoInputs(4))  # strict: a network of another shape never half-loads


def test_an_mlflow_model_rdbench_did_not_log_is_named_as_such(experiment, mlflow_client):
    register_fetcher(fetch_model_files)
    run = TrackedRun.create(mlflow_client, experiment, "foreign")
    logged = mlflow_client.create_logged_model(mlflow_client.get_run(run.run_id).info.experiment_id, name="model",
                                               source_run_id=run.run_id)
    mlflow.pytorch.log_model(torch.nn.Linear(2, 2), name="model", model_id=logged.model_id, run_id=run.run_id,
                             serialization_format="pickle", pip_requirements=["torch"])
    run.finish()
    with pytest.raises(ConfigError, match="not a model logged by rdbench"):
        load_logged_model(f"runs:/{run.run_id}/model", "lstm")
    with pytest.raises(ConfigError, match="cannot fetch it"):
        load_logged_model(f"runs:/{run.run_id}/nothing-here", "lstm")
