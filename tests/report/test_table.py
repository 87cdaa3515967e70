"""Table 1 from the tracking store: it equals the runs' metrics, sits beside the published values, is logged."""

from __future__ import annotations

import json
import math
import re
import uuid

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from mlflow import MlflowClient

from rdbench.cli import main
from rdbench.config import ConfigError, conf_dir
from rdbench.report.compare import compare_markdown, compare_tables
from rdbench.report.published import load_published
from rdbench.report.selection import select_runs
from rdbench.report.table import (
    build_table,
    cells_frame,
    comparability_note,
    display_rows,
    to_latex,
    to_markdown,
)
from rdbench.tracking.runs import TrackedRun

QUANTITIES = ("M_react", "M_diff", "R", "R_final")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def children_by_row(client, parent_id):
    """The parent's cell runs, read straight from the store (its children, or cells it ran that a
    later grid reused and nested under itself), grouped by (system, case)."""
    exp_id = client.get_run(parent_id).info.experiment_id
    found = [*client.search_runs([exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"),
             *client.search_runs([exp_id], filter_string=f"tags.`rdbench.first_parent` = '{parent_id}'")]
    runs = {r.info.run_id: r for r in found if r.data.tags.get("rdbench.first_parent", parent_id) == parent_id}.values()
    groups: dict[tuple[str, str], list] = {}
    for run in runs:
        groups.setdefault((run.data.tags["rdbench.system"], run.data.tags["rdbench.case"]), []).append(run)
    return groups


def test_table_equals_the_runs_metrics_beside_the_published_values(smoke):
    selection = select_runs(smoke.client, parent_run_id=smoke.parent)
    assert selection.experiment == smoke.experiment
    table = build_table(cells_frame(selection.runs), load_published())
    published = {(r["system"], c): r for r in yaml.safe_load((conf_dir() / "published.yaml").read_text())["rows"]
                 for c in r["cases"]}
    groups = children_by_row(smoke.client, smoke.parent)
    assert sorted(zip(table["system"], table["case"], strict=True)) == sorted(groups)
    for _, row in table.iterrows():
        runs = groups[(row["system"], row["case"])]
        assert row["n_seeds"] == len(runs) >= 1
        for q in QUANTITIES:
            values = np.array([r.data.metrics[q] for r in runs])
            assert row[q] == pytest.approx(values.mean(), rel=1e-12)
            if len(values) > 1:
                assert row[f"{q}_std"] == pytest.approx(values.std(ddof=1), rel=1e-9)
            else:
                assert math.isnan(row[f"{q}_std"])
            paper = published.get((row["system"], row["case"]))
            if paper:
                assert row[f"{q}_paper"] == paper[q]
            assert math.isnan(row[f"{q}_delta"])  # the smoke profile is not comparable with the paper
        assert not row["comparable"]
        controls = {k.split(".")[1] for r in runs for k in r.data.metrics if k.startswith("control.") and k.endswith(".R")}
        for name in controls:
            values = np.array([r.data.metrics[f"control.{name}.R"] for r in runs])
            assert row[f"control.{name}.R"] == pytest.approx(values.mean(), rel=1e-12)
        assert sorted(row["run_ids"].split()) == sorted(r.info.run_id for r in runs)


def test_table_command_prints_writes_and_logs_to_the_parent(smoke, tmp_path):
    out = tmp_path / "out"
    result = invoke("table", "--parent", smoke.parent, "--out", out)
    assert result.exit_code == 0, result.output
    assert "| system | case | seeds | M_react | M_react paper | M_diff |" in result.output  # no Δ for smoke
    assert "> **Not comparable with the paper: profile 'smoke' ran with other settings" in result.output
    assert "| RD | spot | 2 |" in result.output and "| RD | stripe | 2 |" in result.output
    assert "| LSTM | sine | 2 |" in result.output and "| DDPM | digits | 1 |" in result.output
    headers = [line for line in result.output.splitlines() if line.startswith("| system")]
    assert len(headers) == 2 and "| R | R no_pattern |" in headers[1]  # controls found in the metric keys
    assert "| R untrained |" in headers[1] and "| R shuffled |" in headers[1]
    csv = pd.read_csv(out / "table1.csv")
    expected = build_table(cells_frame(select_runs(smoke.client, parent_run_id=smoke.parent).runs), load_published())
    pd.testing.assert_frame_equal(csv[["system", "case"]], expected[["system", "case"]])
    for q in QUANTITIES:
        np.testing.assert_allclose(csv[q], expected[q], rtol=1e-9)
    assert (out / "table1.md").read_text() == to_markdown(expected)
    tex = (out / "table1.tex").read_text()
    assert tex.count(r"\begin{table*}") >= 3 and r"\toprule" in tex and r"$\pm$" in tex
    assert r"$M_{\mathrm{react}}$" in tex and "M\\_react" not in tex and "R\\_final" not in tex  # symbols, not text
    labels = re.findall(r"\\label\{([^}]*)\}", tex)
    assert len(labels) == tex.count(r"\begin{table*}") == len(set(labels))  # one \label per table
    assert labels[:2] == ["tab:rdbench-table1-magnitudes", "tab:rdbench-table1-ratios"]
    assert r"{\footnotesize Not comparable with the paper: profile 'smoke'" in tex
    logged = {a.path for a in smoke.client.list_artifacts(smoke.parent, "table")}
    assert {"table/table1.csv", "table/table1.md", "table/table1.tex", "table/table1.json"} <= logged
    exp_id = smoke.client.get_run(smoke.parent).info.experiment_id
    shown = smoke.client.load_table(exp_id, "table/table1.json", run_ids=[smoke.parent])
    np.testing.assert_allclose(shown["R"], expected["R"], rtol=1e-9)
    assert list(shown.columns[:6]) == ["system", "case", "profile", "n_seeds", "R", "R_std"]  # R first in the UI
    assert len(shown.columns) <= 20 and len(csv.columns) > 40  # the full table is the CSV file
    note = smoke.client.get_run(smoke.parent).data.tags["mlflow.note.content"]  # the parent's description
    assert note.startswith("**smoke** (smoke.yaml): seconds-long grid for tests")  # from the grid file
    assert note.count("### Table 1") == 1 and "| RD | spot | smoke | 2 | " in note

    again = invoke("table", "--parent", smoke.parent, "--out", out)
    assert again.exit_code == 0, again.output
    after = {a.path for a in smoke.client.list_artifacts(smoke.parent, "table")}
    assert after == logged  # one Table 1 per regeneration: the files are replaced, none added
    shown = smoke.client.load_table(exp_id, "table/table1.json", run_ids=[smoke.parent])
    assert len(shown) == len(expected)  # replaced, not appended to
    np.testing.assert_allclose(shown["R"], expected["R"], rtol=1e-9)
    tables = json.loads(smoke.client.get_run(smoke.parent).data.tags["mlflow.loggedArtifacts"])
    assert tables.count({"path": "table/table1.json", "type": "table"}) == 1  # the UI's table view finds it
    assert smoke.client.get_run(smoke.parent).data.tags["mlflow.note.content"].count("### Table 1") == 1  # replaced


def make_cell(client, exp_id, system, case, seed, metrics, status="FINISHED", config_hash=None, error=None,
              profile="smoke"):
    tags = {"rdbench.kind": "cell", "rdbench.system": system, "rdbench.case": case, "rdbench.seed": str(seed),
            "rdbench.profile": profile, "rdbench.config_hash": config_hash or uuid.uuid4().hex[:16],
            "mlflow.runName": f"{system}/{case}/seed={seed}"}
    if error:
        tags["rdbench.error"] = error
    run = client.create_run(exp_id, run_name=tags["mlflow.runName"], tags=tags)
    TrackedRun(client, run.info.run_id).log_metrics(metrics)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def test_controls_and_alternative_magnitudes_are_found_from_metric_keys(tracking_uri):
    client = MlflowClient(tracking_uri)
    experiment = f"keys-{uuid.uuid4().hex[:8]}"
    exp_id = client.create_experiment(experiment)
    base = {"M_react": 0.2, "M_diff": 3.0, "R": 0.2 / 3.0, "R_final": 0.7, "M_diff_closed_form": 3.03,
            "M_react_during_training": 0.3}  # a training-time series, not a magnitude of the table
    for seed, scale in ((0, 1.0), (1, 3.0)):
        make_cell(client, exp_id, "ddpm", "digits", seed,
                  {**base, "control.untrained.R": 0.01 * scale, "control.brandnew.R": 5.0 * scale,
                   "control.brandnew.M_react": 1.0})
    make_cell(client, exp_id, "ddpm", "digits", 2, {}, status="FAILED", error="RuntimeError: boom")
    same = uuid.uuid4().hex[:16]
    make_cell(client, exp_id, "rd", "spot", 0, {**base, "R": 1.5}, config_hash=same)
    make_cell(client, exp_id, "rd", "spot", 0, {**base, "R": 1.25}, config_hash=same)  # a later rerun
    make_cell(client, exp_id, "rd", "spot", 0, {}, status="FAILED", config_hash=same, error="x")  # never wins

    selection = select_runs(client, experiment, all_cells=True)
    table = build_table(cells_frame(selection.runs), load_published())
    ddpm = table.set_index("system").loc["ddpm"]
    assert ddpm["control.untrained.R"] == pytest.approx(0.02) and ddpm["control.brandnew.R"] == pytest.approx(10.0)
    assert ddpm["control.brandnew.R_std"] == pytest.approx(np.std([5.0, 15.0], ddof=1))
    assert ddpm["M_diff_closed_form"] == pytest.approx(3.03)
    assert ddpm["failed_cells"] == 1 and ddpm["n_seeds"] == 2
    assert math.isnan(ddpm["R_paper"])  # digits is not in the paper
    rd = table.set_index("system").loc["rd"]
    assert rd["n_seeds"] == 1 and rd["R"] == pytest.approx(1.25) and math.isnan(rd["R_std"])
    md = to_markdown(table)
    header = md.splitlines()[md.splitlines().index("Controls and other magnitudes (R of each control, mean ± std over seeds):") + 2]
    assert header == "| system | case | seeds | R | R untrained | R brandnew | M_diff_closed_form |"
    assert "| DDPM | digits | 2 | 0.0667 ± 0.0000 | 0.0200 ± 0.0141 | 10.0000 ± 7.0711 | 3.0300 ± 0.0000 |" in md
    assert "| DDPM | digits | 2 |" in md and "| RD | spot | 1 | 0.2000 | 0.3589 | 3.0000 ± " not in md
    assert "| RD | spot | 1 | 0.2000 | 0.3589 | 3.0000 | 0.3551 |" in md


def test_a_variant_with_overrides_is_its_own_row_without_a_published_value(tracking_uri):
    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment(f"variant-{uuid.uuid4().hex[:8]}")
    m = {"M_react": 1.0, "M_diff": 1.0, "R": 1.0, "R_final": 1.0}
    make_cell(client, exp_id, "rd", "spot", 0, m)
    run_id = make_cell(client, exp_id, "rd", "spot", 0, {**m, "R": 2.0})
    client.set_tag(run_id, "mlflow.runName", "rd/spot[feed=0.03]/seed=0")
    table = build_table(cells_frame(client.search_runs([exp_id])), load_published())
    by_variant = table.set_index("variant")
    assert by_variant.loc["spot", "R_paper"] == 1.0107
    assert by_variant.loc["spot[feed=0.03]", "R"] == 2.0 and math.isnan(by_variant.loc["spot[feed=0.03]", "R_paper"])
    assert r"spot[feed=0.03]" in to_latex(table)


def test_bad_selections_are_one_line_errors(smoke, tmp_path):
    result = invoke("table", "--experiment", "no-such-experiment", "--out", tmp_path)
    assert result.exit_code == 2 and "no experiment 'no-such-experiment'" in result.output
    result = invoke("table", "--parent", "0" * 32, "--out", tmp_path)
    assert result.exit_code == 2 and f"no run {'0' * 32!r}" in result.output
    result = invoke("table", "--parent", "abc", "--all-cells", "--out", tmp_path)
    assert result.exit_code == 2 and "exclude each other" in result.output
    client = smoke.client
    empty = f"empty-{uuid.uuid4().hex[:8]}"
    client.create_experiment(empty)
    result = invoke("table", "--experiment", empty, "--out", tmp_path)
    assert result.exit_code == 2 and "has no grid run" in result.output


def test_the_published_file_is_validated(tmp_path):
    published = load_published()
    assert published[("rd", "stripe_authors")].R == 1.0093 and len({id(v) for v in published.values()}) == 8
    bad = tmp_path / "published.yaml"
    bad.write_text(yaml.safe_dump({"source": "x", "rows": [{"system": "rd", "cases": ["spot"], "label": "l",
                                                              "M_react": 1, "M_diff": 1, "R": "one", "R_final": 1}]}))
    with pytest.raises(ConfigError, match=r"published.yaml: bad value 'one' for 'rows.0.R'"):
        load_published(bad)


def math_shown(match):
    """What a math symbol shows: ``$M_{\\mathrm{react}}$`` -> ``Mreact`` (commands and braces are not printed)."""
    return re.sub(r"\\[A-Za-z]+|[{}_^$ ]", "", match[0])


def latex_width_pt(tabular: str) -> float:
    """A tabular's width, estimated from its widest cell per column: 4.6 pt a character (\\small digits
    are 0.5 em of 9 pt; letters are about as wide), 12 pt between columns, math and commands counted as shown."""
    rows = [line.removesuffix(r" \\").split(" & ") for line in tabular.splitlines()
            if line.endswith(r"\\") and r"\multicolumn" not in line]  # a spanning header fits its columns
    shown = [[re.sub(r"\$[^$]*\$", math_shown, re.sub(r"\$\\pm\$", "±", re.sub(r"\$\\Delta\$", "Δ", c)))
              .replace("\\_", "_") for c in r] for r in rows]
    widths = [max(len(r[i]) for r in shown) for i in range(len(shown[0]))]
    return 4.6 * sum(widths) + 12 * (len(widths) - 1)


def test_delta_against_the_paper_only_for_the_paper_profile_and_a_latex_that_fits_a_page(tracking_uri):
    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment(f"profiles-{uuid.uuid4().hex[:8]}")
    m = {"M_react": 0.36, "M_diff": 0.35, "R": 1.0286, "R_final": 1.0061, "control.no_pattern.R": 41.2,
         "control.untrained.R": 0.9, "control.shuffled.R": 1.2, "control.oracle.R": 0.07,
         "control.oracle_noise.R": 0.08, "M_diff_closed_form": 3.0}
    for seed in (0, 1):
        make_cell(client, exp_id, "rd", "spot", seed, {**m, "R": 1.0286 + seed / 100}, profile="paper")
        make_cell(client, exp_id, "rd", "spot", seed, {**m, "R": 15.3}, profile="quick")
    table = build_table(cells_frame(client.search_runs([exp_id])), load_published())
    rows = table.set_index("profile")
    assert rows.loc["paper", "comparable"] and rows.loc["paper", "R_delta"] == pytest.approx(1.0336 - 1.0107)
    assert not rows.loc["quick", "comparable"] and math.isnan(rows.loc["quick", "R_delta"])
    assert rows.loc["quick", "R_paper"] == 1.0107  # still shown, for reference
    md = to_markdown(table)
    assert "| RD | spot | paper | 2 | 0.3600 ± 0.0000 | 0.3589 | +0.0011 |" in md
    assert "| RD | spot | quick | 2 | 0.3600 ± 0.0000 | 0.3589 | n/c |" in md
    note = comparability_note(table)
    assert note.startswith("Not comparable with the paper: profile 'quick'") and "n/c" in note
    assert f"> **{note}**" in md
    paper_only = table[table["profile"] == "paper"]
    assert comparability_note(paper_only) == "" and "Not comparable" not in to_markdown(paper_only)

    tex = to_latex(table, "Table 1 regenerated")
    tables = tex.split(r"\end{table*}")[:-1]
    assert len(tables) == 4  # magnitudes, ratios, the controls in two
    react, diff = r"$M_{\mathrm{react}}$", r"$M_{\mathrm{diff}}$"
    assert rf"\caption{{Table 1 regenerated: magnitudes {react} and {diff}" in tables[0]
    assert "& $R$ &" not in tables[0] and r"\multicolumn{3}{c}{$R_{\mathrm{final}}$}" in tables[1]
    assert all(r"\footnotesize Not comparable" in t for t in tables[:2])
    assert r"n/c" in tables[0] and r"+0.0011" in tables[0]
    assert rf"\multicolumn{{3}}{{c}}{{{react}}} & \multicolumn{{3}}{{c}}{{{diff}}}" in tables[0]
    assert r"$R$ oracle\_noise" in tables[3] and rf"{diff} closed form" in tables[3]  # controls, alternatives
    assert [re.search(r"\\label\{([^}]*)\}", t)[1] for t in tables] == [
        "tab:rdbench-table1-magnitudes", "tab:rdbench-table1-ratios",
        "tab:rdbench-table1-controls-1", "tab:rdbench-table1-controls-2"]
    for t in tables:
        assert latex_width_pt(t) <= 516, t  # the text width of a two-column page (7.16 in)
    header, body = display_rows(table, "paper", pm=r" $\pm$ ")  # the single table before the split
    assert latex_width_pt("\n".join(" & ".join(r) + r" \\" for r in [header, *body])) > 516


def test_two_tables_side_by_side_with_their_differences(tracking_uri):
    client = MlflowClient(tracking_uri)
    frames = []
    for r, cases in ((1.0, ("spot", "stripe")), (1.1, ("spot", "wide"))):
        exp_id = client.create_experiment(f"cmp-{uuid.uuid4().hex[:8]}")
        for case in cases:
            for seed in (0, 1):
                make_cell(client, exp_id, "rd", case, seed, {"M_react": r, "M_diff": 1.0, "R": r + seed / 100,
                                                              "R_final": 2 * r})
        frames.append(build_table(cells_frame(client.search_runs([exp_id])), load_published()))
    both = compare_tables(*frames).set_index("variant")
    assert list(both.index) == ["spot", "stripe", "wide"] and list(both["in"]) == ["both", "A", "B"]
    assert both.loc["spot", "ΔR"] == pytest.approx(0.1) and both.loc["spot", "ΔR %"] == pytest.approx(0.1 / 1.005 * 100)
    assert both.loc["spot", "ΔR_final"] == pytest.approx(0.2) and math.isnan(both.loc["stripe", "ΔR"])
    md = compare_markdown(compare_tables(*frames), "study 'a' [1]", "study 'b' [2]")
    assert md.startswith("A = study 'a' [1]\nB = study 'b' [2]\n")
    assert "| RD | spot | smoke | 2 | 2 | 1.0050 ± 0.0071 | 1.1050 ± 0.0071 | +0.1000 (+9.95 %) |" in md
    assert "| RD | stripe | smoke | 2 | – |" in md and "only in A" in md and "only in B" in md


def rd_grid(tmp_path):
    path = tmp_path / "rdgrid.yaml"
    path.write_text(yaml.safe_dump({"description": "two RD cells", "profile": "smoke", "seeds": [0],
                                    "cells": [{"system": "rd", "cases": ["spot", "stripe"]}]}))
    return path


def test_a_partial_run_is_marked_never_picked_by_default_and_two_studies_compare(tracking_uri, tmp_path):
    client = MlflowClient(tracking_uri)
    experiment = f"studies-{uuid.uuid4().hex[:8]}"
    path = rd_grid(tmp_path)
    base = ["grid", path, "--experiment", experiment, "--device", "cpu", "--no-report"]
    whole = invoke(*base, "--name", "base")
    assert whole.exit_code == 0, whole.output
    part = invoke(*base, "--only", "rd/spot", "--set", "steps=30")
    assert part.exit_code == 0, part.output
    parents = {r.data.tags["rdbench.study_name"]: r for r in client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], "tags.`rdbench.kind` = 'grid'")}
    a, b = parents["base"], parents["rdgrid"]  # --name, else the grid file's name
    assert "rdbench.partial" not in a.data.tags and a.info.run_name == "grid:base"
    assert b.data.tags["rdbench.partial"] == "--only rd/spot; --set steps=30" and b.info.run_name == "grid:rdgrid (partial)"
    short_a, short_b = a.data.tags["rdbench.study_id"], b.data.tags["rdbench.study_id"]
    assert short_a == a.info.run_id[:8] and f"(study 'base' [{short_a}])" in whole.output
    assert "*Partial run* (--only rd/spot; --set steps=30)" in b.data.tags["mlflow.note.content"]
    assert b.data.tags["mlflow.source.name"] == "rdbench grid rdgrid"  # no "/": the UI shows it whole

    latest = select_runs(client, experiment)  # the partial run is newer, but not the default
    assert latest.parent_run_id == a.info.run_id and latest.title == f"study 'base' [{short_a}]"
    named = select_runs(client, parent_run_id=short_b)  # by its short id
    assert named.parent_run_id == b.info.run_id and named.title.endswith(", partial: --only rd/spot; --set steps=30")
    table = invoke("table", "--experiment", experiment, "--out", tmp_path / "t")
    assert table.exit_code == 0 and f"Table 1 from study 'base' [{short_a}] (parent run" in table.output
    assert table.output.count("experiment") == 1  # named once
    cells = invoke("table", "--experiment", experiment, "--all-cells", "--no-log", "--out", tmp_path / "t")
    assert f"Table 1 from every cell of experiment {experiment!r}:" in cells.output
    assert cells.output.count(f"experiment {experiment!r}") == 1

    compared = invoke("compare", short_a, short_b, "--out", tmp_path / "c")
    assert compared.exit_code == 0, compared.output
    assert f"A = study 'base' [{short_a}]" in compared.output and f"B = study 'rdgrid' [{short_b}], partial" in compared.output
    assert "| RD | spot | smoke | 1 | – |" in compared.output and "| RD | spot[steps=30] | smoke | – | 1 |" in compared.output
    assert (tmp_path / "c" / "compare.md").read_text() in compared.output
    for mine, other in ((a, short_b), (b, short_a)):
        logged = {f.path for f in client.list_artifacts(mine.info.run_id, "compare")}
        assert logged == {f"compare/vs_{other}.md", f"compare/vs_{other}.csv"}
    again = invoke("table", "--parent", a.info.run_id, "--parent", short_b, "--no-log", "--out", tmp_path / "c2")
    assert again.exit_code == 0 and (tmp_path / "c2" / "compare.md").read_text() == (tmp_path / "c" / "compare.md").read_text()
    for args, message in ((("figures", "--parent", short_a, "--parent", short_b), "takes one --parent, got 2"),
                          (("compare", short_a, a.info.run_id), "are the same study"),
                          (("grid", path, "--name", " "), "--name is empty")):
        bad = invoke(*args, "--out", tmp_path / "x") if args[0] != "grid" else invoke(*args)
        assert bad.exit_code == 2 and message in bad.output, bad.output

    only = f"only-partial-{uuid.uuid4().hex[:8]}"
    assert invoke("grid", path, "--experiment", only, "--only", "rd/spot", "--no-report").exit_code == 0
    refused = invoke("table", "--experiment", only, "--out", tmp_path / "y")
    assert refused.exit_code == 2 and "has only partial grid runs" in refused.output and "--parent" in refused.output
