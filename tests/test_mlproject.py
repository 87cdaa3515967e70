"""`mlflow run` end to end: the entry point logs into the run that `mlflow run` created."""


import pytest


@pytest.mark.slow
def test_mlflow_run_rd_logs_into_its_own_run(experiment, tracking_uri, mlflow_client, tmp_path, runs_of, mlflow_run):
    mlflow_run("rd", {"profile": "smoke", "feed": "0.03", "steps": "40", "device": "cpu"},
               experiment=experiment, tracking_uri=tracking_uri, cwd=tmp_path)
    runs = runs_of(mlflow_client, experiment)
    assert len(runs) == 1, "rdbench must log into the run mlflow run created, not a second one"
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert run.data.params["feed"] == "0.03" and run.data.params["steps"] == "40"
    # an entry-point parameter left empty is logged by mlflow run as given (''); the value
    # rdbench resolved from the profile sits beside it
    assert run.data.params["grid_size"] == "''"
    assert run.data.params["resolved.grid_size"] == "32"
    assert run.data.tags["rdbench.system"] == "rd"
    assert "R" in run.data.metrics
    assert len(mlflow_client.get_metric_history(run.info.run_id, "R_t")) == 40
