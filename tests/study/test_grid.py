"""`rdbench grid`: the smoke grid end to end on a real MLflow store, skip-finished, failure isolation, bad files."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from rdbench.cli import main
from rdbench.config import ConfigError, available_systems, conf_dir
from rdbench.report.selection import select_runs
from rdbench.study.grid import load_grid, plan_grid
from rdbench.tracking.manifest import MANIFEST
from rdbench.tracking.tags import TAG_PARENT

SMOKE = conf_dir() / "smoke.yaml"

CELL_METRICS = ("M_react", "M_diff", "R", "R_final", "R_std", "R_final_std", "n_samples", "n_steps", "wall_time_s")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def grid_parents(runs):
    return [r for r in runs if r.data.tags.get("rdbench.kind") == "grid"]


def cell_runs(runs):
    return [r for r in runs if r.data.tags.get("rdbench.kind") == "cell"]


def manifest(client, run_id, tmp_path):
    return json.loads(open(client.download_artifacts(run_id, MANIFEST, str(tmp_path))).read())["cells"]


def rd_only_grid(tmp_path, extra_entries=(), **top):
    """smoke.yaml's rd entries (plus ``extra_entries``) as a new grid file."""
    spec = yaml.safe_load(SMOKE.read_text())
    spec["cells"] = [e for e in spec["cells"] if e["system"] == "rd"] + list(extra_entries)
    spec.update(top)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_smoke_grid_end_to_end_then_rerun_skips_every_cell(smoke, mlflow_client, tmp_path, runs_of):
    plan = plan_grid(SMOKE)
    expected = sorted((c.system, c.case, str(c.seed)) for c in plan.cells)
    assert len(expected) >= 4 and len(set(expected)) == len(expected)

    first = smoke  # `rdbench grid conf/smoke.yaml`, shared with the report and figure tests
    experiment = first.experiment
    (parent,) = grid_parents(runs_of(mlflow_client, experiment))
    assert parent.info.run_id == first.parent and parent.info.status == "FINISHED"
    assert parent.data.tags["rdbench.grid"] == "smoke" and parent.info.run_name == "grid:smoke"
    assert parent.data.metrics["cells_finished"] == len(expected) and parent.data.metrics["cells_failed"] == 0
    children = cell_runs(runs_of(mlflow_client, experiment))
    assert sorted((r.data.tags["rdbench.system"], r.data.tags["rdbench.case"], r.data.tags["rdbench.seed"])
                  for r in children) == expected
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags[TAG_PARENT] == parent.info.run_id
        assert run.data.tags["rdbench.profile"] == "smoke"
        assert set(CELL_METRICS) <= set(run.data.metrics)
        assert run.data.metrics["R"] == pytest.approx(run.data.metrics["M_react"] / run.data.metrics["M_diff"])
        norm = [m.step for m in mlflow_client.get_metric_history(run.info.run_id, "R_t_norm")]
        assert 0 <= min(norm) < max(norm) == 1000  # an infinite first R_t (LSTM: C_{t-1} = 0) is not logged
        assert 0 < len(mlflow_client.get_metric_history(run.info.run_id, "R_t")) <= run.data.metrics["n_steps"]
    rows = manifest(mlflow_client, parent.info.run_id, tmp_path / "m1")
    assert [r["status"] for r in rows] == ["FINISHED"] * len(expected)
    name_of = {r.info.run_id: r.info.run_name for r in children}
    assert [name_of[r["run_id"]] for r in rows] == [c.run_name for c in plan.cells]  # in grid order
    assert f"{len(expected)} finished, 0 skipped" in first.output
    exp = mlflow_client.get_experiment_by_name(experiment)  # the MLflow UI: training view, a comparison view
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    view = json.loads(exp.tags["mlflow.sharedViewState.rdbench-grid"])  # every cell of the experiment
    assert view["chartsSearchFilter"] == "R_t" and "tags.`rdbench.case`" in view["selectedColumns"]
    assert "tags.`rdbench.profile`" in view["selectedColumns"] and view["searchFilter"] == "tags.`rdbench.kind` = 'cell'"
    own = json.loads(exp.tags[f"mlflow.sharedViewState.rdbench-grid-{parent.info.run_id}"])  # this grid's study
    assert own["searchFilter"] == f"tags.`rdbench.study` = '{parent.info.run_id}'"  # the parent and its cells
    assert parent.data.tags["rdbench.study"] == parent.info.run_id
    assert {r.data.tags["rdbench.study"] for r in children} == {parent.info.run_id}
    assert f"#/experiments/{exp.experiment_id}/runs?viewStateShareKey=rdbench-grid-{parent.info.run_id}" in first.output

    second = invoke("grid", SMOKE, "--experiment", experiment, "--device", "cpu", "--no-report")
    assert second.exit_code == 0, second.output
    assert f"0 finished, {len(expected)} skipped" in second.output
    assert len(cell_runs(runs_of(mlflow_client, experiment))) == len(expected)  # no new cell run
    parents = grid_parents(runs_of(mlflow_client, experiment))
    assert len(parents) == 2
    newest = max(parents, key=lambda r: r.info.start_time)
    assert newest.info.status == "FINISHED" and newest.data.metrics["cells_skipped"] == len(expected)
    reused = manifest(mlflow_client, newest.info.run_id, tmp_path / "m2")
    assert [r["status"] for r in reused] == ["SKIPPED"] * len(expected)
    assert [r["run_id"] for r in reused] == [r["run_id"] for r in rows]
    latest = select_runs(mlflow_client, experiment)  # the latest grid: its cells are the reused runs
    assert latest.parent_run_id == newest.info.run_id
    assert [r.info.run_id for r in latest.runs] == [r["run_id"] for r in rows]
    nested = mlflow_client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{newest.info.run_id}'")
    assert sorted(r.info.run_id for r in nested) == sorted(r["run_id"] for r in rows)  # the UI nests them there
    assert {r.data.tags["rdbench.first_parent"] for r in nested} == {parent.info.run_id}
    study = mlflow_client.search_runs([exp.experiment_id], f"tags.`rdbench.study` = '{newest.info.run_id}'")
    assert sorted(r.info.run_id for r in study) == sorted([newest.info.run_id, *(r["run_id"] for r in rows)])

    forced = invoke("grid", SMOKE, "--experiment", experiment, "--only", "rd/stripe/seed=1", "--force", "--no-report")
    assert forced.exit_code == 0, forced.output
    assert "1 finished, 0 skipped" in forced.output
    assert len(cell_runs(runs_of(mlflow_client, experiment))) == len(expected) + 1


def test_a_failing_cell_is_failed_and_the_others_finish(experiment, mlflow_client, tmp_path, runs_of):
    # feed=50 makes Gray-Scott blow up (run anyway past the stability estimate); steps=40 puts it in a
    # batch of its own.
    path = rd_only_grid(
        tmp_path, [{"system": "rd", "cases": ["spot"], "seeds": [0],
                    "overrides": {"feed": 50, "steps": 40, "allow_unstable": True}}]
    )
    result = invoke("grid", path, "--experiment", experiment, "--device", "cpu", "--no-report")
    assert result.exit_code != 0
    assert "1 of 5 cells failed" in result.output and "SimulationDiverged" in result.output
    runs = {r.info.run_name: r for r in cell_runs(runs_of(mlflow_client, experiment))}
    (bad_name,) = [name for name in runs if "feed=50" in name]
    bad = runs.pop(bad_name)
    assert bad.info.status == "FAILED" and "SimulationDiverged" in bad.data.tags["rdbench.error"]
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs.values())
    (parent,) = grid_parents(runs_of(mlflow_client, experiment))
    assert parent.info.status == "FAILED" and "1 of 5 cells failed" in parent.data.tags["rdbench.error"]
    assert parent.data.metrics["cells_failed"] == 1 and parent.data.metrics["cells_finished"] == 4


def test_mlflow_run_id_becomes_the_parent(experiment, mlflow_client, monkeypatch, runs_of):
    exp_id = mlflow_client.create_experiment(experiment)
    outer = mlflow_client.create_run(exp_id, run_name="mlflow-run-entry-point")
    monkeypatch.setenv("MLFLOW_RUN_ID", outer.info.run_id)
    result = invoke("grid", SMOKE, "--only", "rd/spot", "--device", "cpu", "--no-report")
    assert result.exit_code == 0, result.output
    children = cell_runs(runs_of(mlflow_client, experiment))
    assert len(children) == 2
    assert {r.data.tags[TAG_PARENT] for r in children} == {outer.info.run_id}
    adopted = mlflow_client.get_run(outer.info.run_id)
    assert adopted.data.tags["rdbench.kind"] == "grid" and adopted.info.run_name == "grid:smoke (partial)"
    assert adopted.info.status == "RUNNING"  # `mlflow run` ends it from the exit status


def test_a_plan_knows_its_study_name_and_whether_it_is_the_whole_grid(tmp_path):
    whole = plan_grid(SMOKE)
    assert whole.study == "smoke" and whole.partial is None
    assert plan_grid(SMOKE, only=["rd", "lstm", "ddpm"]).partial is None  # every cell kept: still the whole grid
    part = plan_grid(SMOKE, only=["rd/spot"], overrides={"steps": 20}, name="short")
    assert part.study == "short" and part.name == "smoke" and part.partial == "--only rd/spot; --set steps=20"
    assert plan_grid(rd_only_grid(tmp_path), overrides={"steps": 20}).partial == "--set steps=20"
    with pytest.raises(ConfigError, match="--name is empty"):
        plan_grid(SMOKE, name="  ")


BAD_FILES = {
    "unknown top key": ({"seed": [2]}, ["unknown key 'seed'", "allowed keys: cells, description, phase, profile, seeds"]),
    "unknown entry key": ({"cells": [{"system": "rd", "cases": ["spot"], "seed": [1]}]},
                          ["unknown key 'cells.0.seed'", "allowed keys: cases, overrides, profile, seeds, system"]),
    "misspelt key": ({"cells": [{"sytem": "rd", "cases": ["spot"]}]}, ["unknown key 'cells.0.sytem'; allowed keys: cases"]),
    "missing key": ({"cells": [{"cases": ["spot"]}]}, ["missing required key 'cells.0.system'"]),
    "wrong type": ({"seeds": ["zero"]}, ["bad value 'zero' for 'seeds.0'"]),
    "negative seed": ({"seeds": [-1]}, ["bad value -1 for 'seeds.0'"]),
    "no cells": ({"cells": []}, ["'cells'"]),
    "unknown system": ({"cells": [{"system": "rdd", "cases": ["spot"]}]}, ["cells[0]", "unknown system 'rdd'", "allowed: "]),
    "unknown case": ({"cells": [{"system": "rd", "cases": ["spots"]}]}, ["cells[0]", "unknown case 'spots'", "allowed: spot"]),
    "unknown profile": ({"profile": "fast"}, ["unknown profile 'fast'", "allowed: paper"]),
    "unknown setting": ({"cells": [{"system": "rd", "cases": ["spot"], "overrides": {"feeed": 1}}]},
                        ["cells[0]", "unknown key 'feeed'"]),
    "unstable dt": ({"cells": [{"system": "rd", "cases": ["spot"], "overrides": {"dt": 100.0}}]}, ["unstable dt=100.0"]),
    "repeated cell": ({"cells": [{"system": "rd", "cases": ["spot"]}, {"system": "rd", "cases": ["spot"]}]},
                      ["cells[1]", "repeats"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_malformed_grid_file_is_rejected_before_any_run(case, experiment, mlflow_client, tmp_path):
    change, messages = BAD_FILES[case]
    spec = {"description": "d", "profile": "smoke", "seeds": [0], "cells": [{"system": "rd", "cases": ["spot"]}]}
    spec.update(change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = invoke("grid", path, "--experiment", experiment)
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: ") and str(path) in line, line
    for message in messages:
        assert message in line, line
    assert mlflow_client.get_experiment_by_name(experiment) is None  # nothing was created


def test_invalid_yaml_and_missing_file_are_one_line_errors(tmp_path, experiment):
    broken = tmp_path / "broken.yaml"
    broken.write_text("cells: [\n")
    result = invoke("grid", broken, "--experiment", experiment)
    assert result.exit_code == 2 and "is not valid YAML" in result.output
    result = invoke("grid", tmp_path / "missing.yaml", "--experiment", experiment)
    assert result.exit_code == 2 and "cannot read config file" in result.output
    result = invoke("grid", "quik", "--experiment", experiment)
    assert result.exit_code == 2 and "unknown grid 'quik'; allowed: offline, paper, quick, smoke" in result.output


def test_only_selects_cells_and_rejects_a_pattern_that_matches_nothing():
    cells = plan_grid(SMOKE, only=["rd/stripe"]).cells
    assert {(c.system, c.case) for c in cells} == {("rd", "stripe")} and len(cells) == 2
    assert [c.seed for c in plan_grid(SMOKE, only=["rd/*/seed=1"]).cells] == [1, 1]
    assert len(plan_grid(SMOKE, only=["rd"]).cells) == len(plan_grid(SMOKE, only=["rd/*"]).cells)
    with pytest.raises(ConfigError, match=r"--only 'ddpm/mnst' matches no cell .*cells: .*rd/spot, rd/stripe"):
        plan_grid(SMOKE, only=["ddpm/mnst"])


def test_grid_names_resolve_to_conf_files_and_set_applies_to_every_cell():
    plan = plan_grid("smoke", only=["rd"], overrides={"steps": 30})
    assert plan.path == SMOKE and plan.cells and all(c.settings.steps == 30 for c in plan.cells)
    assert all(c.run_name.endswith(f"[steps=30]/s{c.seed} [smoke]") for c in plan.cells)
    with pytest.raises(ConfigError, match=r"^--set: .*unknown key 'stepz'"):
        plan_grid("smoke", overrides={"stepz": 30})


@pytest.mark.parametrize("name", ["paper", "quick", "offline", "smoke"])
def test_shipped_grids_are_valid(name):
    path, spec = load_grid(name)
    assert path == conf_dir() / f"{name}.yaml" and spec.description
    missing = {e.system for e in spec.cells} - set(available_systems())
    if missing:
        pytest.skip(f"systems not there yet: {sorted(missing)}")
    plan = plan_grid(name)  # every cell resolves against its system's settings model
    assert len(plan.cells) == sum(len(e.cases) * len(e.seeds or spec.seeds) for e in spec.cells)


def test_paper_grid_covers_every_published_row():
    from rdbench.report.published import load_published

    _, spec = load_grid("paper")
    rows = {(e.system, c) for e in spec.cells for c in e.cases}
    published = {(r.system, r.cases[0]) for r in load_published().values()}
    assert published <= rows and len(published) == 8
    assert spec.profile == "paper" and len(spec.seeds) >= 3
