"""`rdbench run` end to end on the real MLflow store, and its bad-input behaviour."""

import pytest
from click.testing import CliRunner

from rdbench.cli import main


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_short_simulation_is_tracked(experiment, mlflow_client, runs_of):
    result = invoke("run", "rd", "--profile", "smoke", "--case", "stripe", "--seed", "3",
                    "--experiment", experiment, "--device", "cpu")
    assert result.exit_code == 0, result.output
    (run,) = runs_of(mlflow_client, experiment)
    assert run.info.status == "FINISHED"
    p, m, t = run.data.params, run.data.metrics, run.data.tags
    assert p["feed"] == "0.055" and p["grid_size"] == "32" and p["steps"] == "60"
    assert p["initial.square_size"] == "6" and p["seed"] == "3" and p["device"] == "cpu"
    assert t["rdbench.system"] == "rd" and t["rdbench.case"] == "stripe" and t["rdbench.profile"] == "smoke"
    assert t["mlflow.user"] and t["mlflow.source.type"] == "LOCAL"  # the UI's User and Source columns
    assert t["mlflow.source.name"] == "rdbench run rd"  # no "/": the UI's Source column shows it whole
    assert t["rdbench.command"].startswith("rdbench run rd --profile smoke --case stripe")
    for key in ("system/cpu_utilization_percentage", "system/process_rss_megabytes",
                "system/system_memory_usage_megabytes"):  # the UI's System metrics panel
        assert key in m, key
    assert len(mlflow_client.get_metric_history(run.info.run_id, "system/process_rss_megabytes")) >= 2
    assert len(t["rdbench.config_hash"]) == 16
    for key in ("M_react", "M_diff", "R", "R_final", "wall_time_s", "M_reaction_u", "M_diffusion_u"):
        assert key in m
    assert m["R"] == pytest.approx(m["M_react"] / m["M_diff"])
    history = mlflow_client.get_metric_history(run.info.run_id, "R_t")
    assert len(history) == 60 and sorted(h.step for h in history) == list(range(60))
    assert len(mlflow_client.get_metric_history(run.info.run_id, "react_t")) == 60
    norm = mlflow_client.get_metric_history(run.info.run_id, "R_t_norm")
    assert min(h.step for h in norm) == 0 and max(h.step for h in norm) == 1000
    files = {f.path for f in mlflow_client.list_artifacts(run.info.run_id, "balance")}
    assert {"balance/model_series.csv", "balance/model_samples.csv"} <= files
    fields = {f.path for f in mlflow_client.list_artifacts(run.info.run_id, "fields")}
    assert fields == {"fields/final_u.png", "fields/final_v.png"}
    csv_text = mlflow_client.download_artifacts(run.info.run_id, "balance/model_series.csv")
    with open(csv_text) as fh:
        assert len(fh.read().strip().splitlines()) == 61  # header + 60 steps


def test_several_cells_make_one_run_each(experiment, mlflow_client, runs_of):
    result = invoke("run", "rd", "--profile", "smoke", "-c", "spot", "-c", "stripe", "-s", "0", "-s", "1",
                    "--experiment", experiment, "--device", "cpu")
    assert result.exit_code == 0, result.output
    runs = runs_of(mlflow_client, experiment)
    assert sorted((r.data.tags["rdbench.case"], r.data.tags["rdbench.seed"]) for r in runs) == [
        ("spot", "0"), ("spot", "1"), ("stripe", "0"), ("stripe", "1")]
    assert all(r.data.metrics["batch_cells"] == 4 for r in runs)


def test_feed_option_overrides_the_case(experiment, mlflow_client, runs_of):
    result = invoke("run", "rd", "--profile", "smoke", "--feed", "0.04", "--experiment", experiment)
    assert result.exit_code == 0, result.output
    (run,) = runs_of(mlflow_client, experiment)
    assert run.data.params["feed"] == "0.04"
    assert run.info.run_name == "rd/spot[feed=0.04]/s0 [smoke]"  # the profile, when not the paper's


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nosuch"], "unknown system 'nosuch'; allowed: "),
        (["run", "rd", "--case", "blob"], "unknown case 'blob' for system 'rd'; allowed: spot, stripe"),
        (["run", "rd", "--steps", "-5"], "bad value -5 for 'steps': Input should be greater than 0"),
        (["run", "rd", "--feed", "abc"], "bad value 'abc' for 'feed': Input should be a valid number"),
        (["run", "rd", "--dt", "3"], "unstable dt=3.0"),
        (["run", "rd", "--feed", "0.0578", "--kill", "0.0338"],
         "unstable point feed=0.0578, kill=0.0338: the explicit Euler step at dt=2 amplifies a damped grid mode by 1.125"),
        (["run", "lstm", "--allow-unstable"], "--allow-unstable: system 'lstm' has no stability check to override"),
        (["run", "rd", "--set", "stepz=4"], "unknown key 'stepz'; allowed keys: allow_unstable, controls,"),
        (["run", "rd", "--config", "/nonexistent/rd.yaml"], "cannot read config file /nonexistent/rd.yaml"),
        (["run", "rd", "--profile", "huge"], "unknown profile 'huge' for system 'rd'; allowed: paper"),
        (["run", "rd", "--device", "tpu"], "unknown device 'tpu'"),
        (["run", "rd", "stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_input_is_one_line_nonzero_and_leaves_no_run(args, message, experiment, mlflow_client, runs_of):
    result = CliRunner().invoke(main, [*args, "--experiment", experiment])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert runs_of(mlflow_client, experiment) == []


def test_unreadable_yaml_is_one_line(tmp_path, experiment):
    bad = tmp_path / "rd.yaml"
    bad.write_text("plugin: [unclosed\n")
    result = CliRunner().invoke(main, ["run", "rd", "--config", str(bad), "--experiment", experiment])
    assert result.exit_code == 2 and "is not valid YAML" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_diverging_run_is_failed_not_running(experiment, mlflow_client, runs_of):
    refused = CliRunner().invoke(main, ["run", "rd", "--profile", "smoke", "--feed", "1e6", "--experiment", experiment])
    assert refused.exit_code == 2 and "unstable point feed=1e+06" in refused.output  # the estimate, before any run
    assert runs_of(mlflow_client, experiment) == []
    result = CliRunner().invoke(main, ["run", "rd", "--profile", "smoke", "--feed", "1e6", "--allow-unstable",
                                       "--experiment", experiment])
    assert result.exit_code == 2
    assert "SimulationDiverged" in result.output
    (run,) = runs_of(mlflow_client, experiment)
    assert run.info.status == "FAILED" and run.data.tags["rdbench.unstable"] == "true"
    assert run.data.tags["rdbench.error"].startswith("SimulationDiverged: Gray-Scott state became NaN/Inf")


def test_an_unstable_point_runs_when_allowed_and_is_tagged(experiment, mlflow_client, runs_of):
    args = ["run", "rd", "--profile", "smoke", "--feed", "0.0578", "--kill", "0.0338", "--set", "domain_length=0.32",
            "--experiment", experiment]  # the smoke grid at the paper's dx = 0.01
    assert CliRunner().invoke(main, args).exit_code == 2
    result = CliRunner().invoke(main, [*args, "--allow-unstable"])
    assert result.exit_code == 0, result.output
    (run,) = runs_of(mlflow_client, experiment)
    assert run.info.status == "FINISHED" and run.data.tags["rdbench.unstable"] == "true"
    assert run.data.params["allow_unstable"] == "True"
    stable = CliRunner().invoke(main, ["run", "rd", "--profile", "smoke", "--experiment", experiment])
    assert stable.exit_code == 0
    assert "rdbench.unstable" not in [r for r in runs_of(mlflow_client, experiment)
                                      if r.info.run_id != run.info.run_id][0].data.tags


def test_help_explains_overrides():
    result = invoke("run", "--help")
    assert "--NAME VALUE" in result.output and "--profile" in result.output


def test_one_diverging_cell_does_not_fail_its_batch_mates(experiment, mlflow_client, runs_of):
    """spot and a custom feed share a batch: the diverging row fails alone, its batch mate runs on."""
    from rdbench.study.cells import Cell, plan_cells
    from rdbench.study.runner import run_cells
    from rdbench.systems.base import RunContext

    cells = plan_cells("rd", ["spot", "stripe"], (0,), "smoke")
    bad = Cell("rd", "stripe", 0, "smoke", cells[1].settings.model_copy(update={"feed": 1.0e6, "allow_unstable": True}),
               {"feed": 1e6})
    reports = run_cells([cells[0], bad], experiment, RunContext())
    assert [r.status for r in reports] == ["FINISHED", "FAILED"]
    assert "SimulationDiverged" in reports[1].error and "feed=1e+06" in reports[1].error
    runs = runs_of(mlflow_client, experiment)
    statuses = {r.info.run_name: r.info.status for r in runs}
    finished = next(r for r in runs if r.info.status == "FINISHED")
    assert finished.data.metrics["batch_cells"] == 2  # measured in the shared batch, not rerun alone
    assert statuses == {"rd/spot/s0 [smoke]": "FINISHED", "rd/stripe[feed=1000000.0]/s0 [smoke]": "FAILED"}
