"""The oracle sweep: R of the exact denoiser against T per schedule, the fitted exponents, the figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from rdbench.config import ConfigError
from rdbench.systems.ddpm.sweep import check_sweep, fit_exponents, load_sweep_settings, run_sweep


def test_fit_recovers_a_power_law():
    t = np.array([50, 100, 250, 1000, 4000])
    table = pd.DataFrame({"schedule": "a", "variance": "fixed_large", "timesteps": t, "R": 3.0 * t ** -0.5,
                          "mean_beta": 1.0 / t, "mean_sqrt_beta": t ** -0.5})
    (fit,) = fit_exponents(table).to_dict("records")
    assert fit["exponent"] == pytest.approx(-0.5) and fit["prefactor"] == pytest.approx(3.0)
    assert fit["r2"] == pytest.approx(1.0) and fit["points"] == 5
    assert fit["exponent_beta_ratio"] == pytest.approx(-0.5)


def test_the_shipped_sweep_file_is_valid():
    sweep = load_sweep_settings()
    assert sweep.timesteps == [50, 100, 250, 1000, 4000] and sweep.case == "digits"
    assert set(sweep.schedules) == {"linear", "scaled_linear", "cosine"}
    assert sweep.variances == ["fixed_large", "fixed_small"]
    check_sweep(sweep)


def test_a_sweep_cell_that_cannot_exist_is_refused_before_sampling():
    sweep = load_sweep_settings().model_copy(update={"timesteps": [10, 50]})
    with pytest.raises(ConfigError, match=r"schedule \(linear, T=10\)"):
        run_sweep(sweep)


@pytest.mark.usefixtures("one_thread")
def test_a_small_sweep_measures_every_cell():
    sweep = load_sweep_settings().model_copy(update={
        "timesteps": [25, 100], "samples": 2, "batch_size": 2, "train_images": 30, "variances": ["fixed_large"],
        "schedules": {"linear": {"kind": "linear", "reference_timesteps": 1000}, "cosine": {"kind": "cosine"}},
    })
    rows = []
    result = run_sweep(sweep, on_row=rows.append)
    table = result.table
    assert len(table) == len(rows) == 4
    assert list(table["schedule"]) == ["linear", "linear", "cosine", "cosine"]
    for name in ("linear", "cosine"):
        r = table[table["schedule"] == name].sort_values("timesteps")["R"].to_list()
        assert r[1] < r[0]  # more, smaller steps: a smaller drift/noise ratio
    assert np.allclose(table["M_diff"], table["M_diff_closed_form"], rtol=0.15)  # 2 samples
    assert set(result.fits["schedule"]) == {"linear", "cosine"} and (result.fits["exponent"] < 0).all()
    metrics = result.metrics()
    assert {"wall_s", "exponent.linear.fixed_large", "fit_r2.cosine.fixed_large"} <= set(metrics)
    params = result.params()
    assert params["schedules.linear.reference_timesteps"] == 1000 and params["dataset_images"] == 1797
    assert result.dataset["oracle_images"] == 30
    figure = result.figure()
    assert len(figure.axes[0].lines) == 4  # a measured line and a fitted one per schedule


@pytest.mark.usefixtures("one_thread")
def test_oracle_sweep_command_records_one_mlflow_run(tmp_path, experiment, mlflow_client, runs_of):
    from click.testing import CliRunner

    from rdbench.cli import main
    from rdbench.config import conf_dir

    spec = yaml.safe_load((conf_dir() / "sweeps" / "oracle.yaml").read_text())
    spec.update(timesteps=[50, 100], variances=["fixed_large"], samples=2, batch_size=2, train_images=64,
                schedules={"linear": spec["schedules"]["linear"]})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(main, ["oracle", "--sweep", "--sweep-config", str(path), "--out", str(tmp_path / "out"),
                                       "--experiment", experiment])
    assert result.exit_code == 0, result.output
    (run,) = runs_of(mlflow_client, experiment)
    assert run.info.status == "FINISHED" and run.data.tags["rdbench.kind"] == "oracle_sweep"
    assert "exponent.linear.fixed_large" in run.data.metrics
    steps = sorted(m.step for m in mlflow_client.get_metric_history(run.info.run_id, "R.linear.fixed_large"))
    assert steps == [50, 100]
    logged = {a.path for a in mlflow_client.list_artifacts(run.info.run_id, "sweep")}
    assert {"sweep/table.csv", "sweep/fits.csv", "sweep/R_vs_T.png", "sweep/table.md"} <= logged
    assert (tmp_path / "out" / "R_vs_T.png").exists() and "fitted exponent" in result.output
