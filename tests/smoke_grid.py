"""The smoke grid (conf/smoke.yaml), run once per test session and shared by the grid, report and figure tests."""

from __future__ import annotations

import functools
import uuid
from types import SimpleNamespace

from click.testing import CliRunner

from rdbench.config import conf_dir
from rdbench.grid import TAG_GRID

SMOKE = conf_dir() / "smoke.yaml"


@functools.cache
def smoke_grid(tracking_uri: str) -> SimpleNamespace:
    """Run ``rdbench grid conf/smoke.yaml`` into a new experiment; its name, parent run and output."""
    from mlflow import MlflowClient

    from rdbench.cli import main

    experiment = f"smoke-{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(
        main, ["grid", str(SMOKE), "--experiment", experiment, "--device", "cpu", "--no-report"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri)
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    (parent,) = client.search_runs([exp_id], filter_string=f"tags.`{TAG_GRID}` = 'smoke'")
    return SimpleNamespace(experiment=experiment, parent=parent.info.run_id, output=result.output, client=client)
