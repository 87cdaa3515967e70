"""A tiny map end to end into a real sqlite store: its run, artifacts, resume, and diverged rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rdbench.phase.mapping import FINISHED, KILLED, SKIPPED, run_phase_map
from rdbench.phase.plan import plan_map
from rdbench.tracking.tags import TAG_ERROR, TAG_KIND, TAG_PHASE_HASH

TINY = {"steps": 200, "early_stop.check_every": 50}  # smoke profile: N = 32
FIGURES = ("heatmap_R", "heatmap_R_final", "heatmap_abs_R_minus_1", "mosaic_v")


def tiny(feed="0.02:0.06:3", kill="0.05:0.065:2", seeds=(0,), **overrides):
    return plan_map("rd", feed, kill, seeds, "smoke", {**TINY, **overrides})


def artifacts(client, run_id: str, path: str = "phase") -> set[str]:
    out = set()
    for item in client.list_artifacts(run_id, path):
        out |= artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def measured(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=["chunk", "chunk_wall_s", "chunk_cell_updates"]).reset_index(drop=True)


def test_a_tiny_map_is_one_run_with_its_table_heatmaps_and_mosaic(experiment, mlflow_client, one_thread):
    plan = tiny()
    result = run_phase_map(plan, experiment, "cpu", rows=4)
    assert result.status == FINISHED and result.chunks_run == 2 and len(result.table) == 6
    run = mlflow_client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[TAG_KIND] == "phase" and run.data.tags[TAG_PHASE_HASH] == plan.config_hash
    assert run.data.params["feed"] == "0.02:0.06:3" and run.data.params["chunk_rows"] == "4"
    assert run.data.params["grid_size"] == "32" and run.data.params["steps"] == "200"
    m = run.data.metrics
    assert m["points"] == 6 and m["cell_updates_per_s"] > 0 and m["wall_time_s"] > 0 and m["peak_rss_mib"] > 0
    assert sum(v for k, v in m.items() if k.startswith("label_")) == 6
    files = artifacts(mlflow_client, result.run_id)
    assert {"phase/points.csv", "phase/points.json", "phase/summary.csv"} <= files
    assert {f"phase/{stem}.png" for stem in FIGURES} <= files
    assert "phase/heatmap_R_std.png" not in files  # one seed: no spread
    table = pd.read_csv(mlflow_client.download_artifacts(result.run_id, "phase/points.csv"))
    assert list(table["point"]) == list(range(6))
    assert np.allclose(table["R"], table["M_react"] / table["M_diff"], rtol=1e-6, equal_nan=True)
    assert set(table["label"]) <= {"none", "spots", "stripes-labyrinth", "oscillating"}
    logged = json.loads(open(mlflow_client.download_artifacts(result.run_id, "phase/points.json")).read())
    assert len(logged["data"]) == 6  # mlflow.log_table's format
    again = run_phase_map(plan, experiment, "cpu", rows=4)
    assert again.status == SKIPPED and again.run_id == result.run_id  # finished: reused


def test_seeds_are_repeats_with_a_spread(experiment, mlflow_client, one_thread):
    result = run_phase_map(tiny("0.03:0.05:2", "0.06:0.06:1", seeds=(0, 1)), experiment, "cpu", rows=8)
    assert len(result.table) == 4
    summary = pd.read_csv(mlflow_client.download_artifacts(result.run_id, "phase/summary.csv"))
    assert len(summary) == 2 and (summary["seeds"] == 2).all() and summary["R_std"].notna().all()
    assert "phase/heatmap_R_std.png" in artifacts(mlflow_client, result.run_id)


def test_a_killed_map_resumes_at_its_first_unfinished_chunk(experiment, mlflow_client, one_thread):
    plan = tiny()
    stopped = run_phase_map(plan, experiment, "cpu", rows=2, chunk_limit=1)
    assert stopped.status == KILLED and len(stopped.table) == 2
    assert mlflow_client.get_run(stopped.run_id).info.status == "KILLED"
    mlflow_client.set_tag(stopped.run_id, TAG_ERROR, "Terminated: received SIGTERM")  # as a SIGTERM leaves it
    assert {p for p in artifacts(mlflow_client, stopped.run_id) if "chunks" in p} == {
        "phase/chunks/chunk_000000.csv", "phase/chunks/chunk_000000.npy"}
    resumed = run_phase_map(plan, experiment, "cpu", rows=2)
    assert resumed.status == FINISHED and resumed.run_id == stopped.run_id
    assert (resumed.chunks_reused, resumed.chunks_run) == (1, 2)
    finished = mlflow_client.get_run(resumed.run_id)
    assert finished.info.status == "FINISHED" and TAG_ERROR not in finished.data.tags  # no stale reason
    whole = run_phase_map(plan, experiment, "cpu", rows=2, resume=False)
    assert whole.run_id != resumed.run_id and whole.chunks_run == 3
    pd.testing.assert_frame_equal(measured(resumed.table), measured(whole.table))


def test_a_diverging_row_is_labelled_diverged_and_leaves_the_others_intact(experiment, one_thread):
    # F = 1.2: the u update factor 1 - dt F = -1.4 blows up within a few steps
    both = run_phase_map(tiny("0.03:1.2:2", "0.06:0.06:1"), experiment, "cpu", rows=2).table
    alone = run_phase_map(tiny("0.03:0.03:1", "0.06:0.06:1"), experiment, "cpu", rows=1).table
    bad = both[both["feed"] == 1.2].iloc[0]
    assert bad["label"] == "diverged" and bad["diverged"] and np.isnan(bad["R"])
    good = both[both["feed"] == 0.03].iloc[0]
    assert not good["diverged"] and good["label"] != "diverged"
    assert good["label"] == alone.iloc[0]["label"]
    for column in ("M_react", "M_diff", "R", "R_final", "steps_run"):
        assert good[column] == pytest.approx(alone.iloc[0][column], rel=1e-6), column
