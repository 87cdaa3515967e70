"""`mlflow run` end to end: the entry point logs into the run that `mlflow run` created."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import runs_of

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_mlflow_run_rd_logs_into_its_own_run(experiment, tracking_uri, mlflow_client, tmp_path):
    mlflow_bin = shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    env.pop("MLFLOW_RUN_ID", None)
    proc = subprocess.run(
        [mlflow_bin, "run", str(REPO), "-e", "rd", "--env-manager", "local", "--experiment-name", experiment,
         "-P", "profile=smoke", "-P", "feed=0.03", "-P", "steps=40", "-P", "device=cpu"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
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
