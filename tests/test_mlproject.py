"""`mlflow run` end to end: the entry points, run from a virtualenv that is not activated."""

import pytest


@pytest.mark.slow
def test_mlflow_run_rd_logs_into_its_own_run_with_every_setting_as_a_param(experiment, tracking_uri, mlflow_client,
                                                                            tmp_path, runs_of, mlflow_run):
    mlflow_run("rd", {"profile": "smoke", "settings": "feed=0.03 steps=40", "device": "cpu"},
               experiment=experiment, tracking_uri=tracking_uri, cwd=tmp_path)
    runs = runs_of(mlflow_client, experiment)
    assert len(runs) == 1, "rdbench must log into the run mlflow run created, not a second one"
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "rd/spot[feed=0.03,steps=40]/s0 [smoke]"  # rdbench's name, not MLflow's
    assert run.data.params["feed"] == "0.03" and run.data.params["steps"] == "40"
    assert run.data.params["grid_size"] == "32"  # resolved from the profile, logged with its value
    assert "''" not in run.data.params.values()
    assert run.data.tags["rdbench.system"] == "rd" and run.data.tags["mlflow.user"]
    assert "R" in run.data.metrics
    assert len(mlflow_client.get_metric_history(run.info.run_id, "R_t")) == 40


@pytest.mark.slow
def test_mlflow_run_without_an_experiment_lands_in_rdbench_and_leaves_a_pointer(tmp_path, runs_of, mlflow_run):
    """The issue's case: `mlflow run . -e lstm -P dataset=sine --env-manager local`, no experiment given."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow_run("lstm", {"dataset": "sine", "profile": "smoke", "device": "cpu"}, experiment=None, tracking_uri=uri,
               cwd=tmp_path)
    client = mlflow.MlflowClient(uri)
    (run,) = runs_of(client, "rdbench")
    assert run.info.status == "FINISHED" and run.info.run_name == "lstm/sine/s0 [smoke]"
    (pointer,) = runs_of(client, "Default")
    assert pointer.info.run_name == "mlflow run -> rdbench/lstm/sine/s0 [smoke]"
    assert pointer.data.tags["rdbench.results_in"] == f"rdbench:{run.info.run_id}"
    assert run.info.run_id in pointer.data.tags["mlflow.note.content"]
