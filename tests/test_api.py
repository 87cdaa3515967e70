"""The public Python API (docs/api.md): its example runs as written, only five names are public,
`import rdbench` stays light, bad input raises before any run exists, and every run says how it
was made (versions, device, the checkout's dirty flag and diff)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import rdbench
from rdbench import provenance

REPO = Path(__file__).resolve().parent.parent


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


def test_the_example_of_docs_api_runs(tmp_path, monkeypatch, experiment, mlflow_client, runs_of, capsys):
    (code,) = python_blocks((REPO / "docs" / "api.md").read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", experiment)  # what the example's functions default to
    namespace: dict = {}
    exec(compile(code, "docs/api.md", "exec"), namespace)  # noqa: S102 - the documented example itself
    runs = runs_of(mlflow_client, experiment)
    kinds = sorted(r.data.tags.get("rdbench.kind") for r in runs)
    assert kinds == ["cell", "cell", "grid", "phase"]  # the grid reused the spot run: one cell run more
    assert all(r.info.status == "FINISHED" for r in runs)
    table1 = namespace["table1"]
    assert list(table1["case"]) == ["spot", "stripe"] and set(table1["R_paper"]) == {1.0107, 1.0093}
    result = namespace["result"]
    assert result.R == pytest.approx(result.M_react / result.M_diff) and len(result.R_t) == 60
    assert "RunResult(rd/spot seed=0 [smoke] FINISHED" in capsys.readouterr().out


def test_only_the_five_functions_are_public_and_import_rdbench_is_light():
    assert sorted(rdbench.__all__) == ["grid", "load", "phase", "run", "table"]
    code = ("import sys, rdbench; assert 'torch' not in sys.modules and 'mlflow' not in sys.modules, 'heavy'; "
            "assert callable(rdbench.run) and callable(rdbench.phase); "
            "import rdbench.phase.plan; assert callable(rdbench.phase) and rdbench.phase.plan.plan_map")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(AttributeError, match="no attribute 'plan_run'"):
        rdbench.plan_run  # noqa: B018 - internal steps stay in rdbench.api


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rdbench.run("nope"), "unknown system 'nope'"),
        (lambda: rdbench.run("rd", case="nope", profile="smoke"), "nope"),
        (lambda: rdbench.run("rd", profile="smoke", steps="many"), "steps"),
        (lambda: rdbench.run("rd", profile="smoke", device="tpu"), "unknown device 'tpu'"),
        (lambda: rdbench.grid("no-such-grid"), "unknown grid 'no-such-grid'"),
        (lambda: rdbench.grid("smoke", executor="slurm"), "unknown executor 'slurm'"),
        (lambda: rdbench.phase("rd", feed="0.02:0.05", kill="0.05:0.06:2"), "0.02:0.05"),
    ],
)
def test_bad_input_raises_a_value_error_before_any_run(call, message, experiment, monkeypatch, mlflow_client):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", experiment)
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
    assert mlflow_client.get_experiment_by_name(experiment) is None  # nothing was created


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A git checkout that rdbench takes for its own (provenance.repo_root), one commit deep."""
    folder = tmp_path / "checkout"
    folder.mkdir()
    git(folder, "init", "-q")
    git(folder, "config", "user.email", "t@example.com")
    git(folder, "config", "user.name", "t")
    (folder / ".gitignore").write_text("mlflow.db\n")
    (folder / "model.py").write_text("x = 1\n")
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "first")
    monkeypatch.setattr(provenance, "repo_root", lambda: folder)
    provenance.tree_state.cache_clear()
    yield folder
    provenance.tree_state.cache_clear()


def test_tree_state_sees_changes_untracked_files_and_cuts_a_long_diff(checkout, tmp_path):
    assert provenance.tree_state(checkout) == provenance.TreeState(dirty=False, diff="")
    (checkout / "mlflow.db").write_text("ignored")
    assert not provenance.tree_state.__wrapped__(checkout).dirty  # an ignored file is not a change
    (checkout / "model.py").write_text("x = 2\n")
    (checkout / "new.py").write_text("y = 1\n")
    state = provenance.tree_state.__wrapped__(checkout)
    assert state.dirty and "# untracked: new.py" in state.diff and "-x = 1\n+x = 2" in state.diff
    cut = provenance.tree_state.__wrapped__(checkout, limit=40)
    assert cut.diff.startswith(state.diff[:40]) and "cut at 40 of" in cut.diff
    outside = tmp_path / "plain"
    outside.mkdir()
    assert provenance.tree_state.__wrapped__(outside) is None and provenance.checkout_root(outside) is None


def test_a_fresh_run_says_how_it_was_made(checkout, experiment, monkeypatch, mlflow_client):
    import mlflow
    import numpy
    import torch

    (checkout / "model.py").write_text("x = 2\n")  # a dirty tree
    result = rdbench.run("rd", case="spot", profile="smoke", steps=20, device="cpu", experiment=experiment)
    tags = result.tags
    assert tags["rdbench.env.python"] == ".".join(map(str, sys.version_info[:3]))
    assert tags["rdbench.env.torch"] == torch.__version__ and tags["rdbench.env.numpy"] == numpy.__version__
    assert tags["rdbench.env.mlflow"] == mlflow.__version__
    assert tags["rdbench.env.cuda"] == (torch.version.cuda or "none") and tags["rdbench.env.cudnn"]
    assert tags["rdbench.env.device"] == "cpu" and tags["rdbench.env.device_name"]
    assert tags["rdbench.git.dirty"] == "true"
    assert tags["mlflow.source.git.commit"] == subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    patch = Path(mlflow_client.download_artifacts(result.run_id, "provenance/git_diff.patch"))
    assert "+x = 2" in patch.read_text()

    git(checkout, "commit", "-qam", "second")  # clean again: the flag says so and no diff is kept
    provenance.tree_state.cache_clear()
    clean = rdbench.run("rd", case="spot", profile="smoke", steps=20, seed=1, device="cpu", experiment=experiment)
    assert clean.tags["rdbench.git.dirty"] == "false"
    assert not mlflow_client.list_artifacts(clean.run_id, "provenance")


def test_a_failing_cell_raises_run_failed_with_the_failed_run_read_back(experiment, mlflow_client, runs_of):
    from rdbench.api import RunFailed

    with pytest.raises(RunFailed, match="SimulationDiverged") as caught:
        rdbench.run("rd", profile="smoke", feed=1e6, allow_unstable=True, device="cpu", experiment=experiment)
    failed = caught.value.result
    (run,) = runs_of(mlflow_client, experiment)
    assert failed.run_id == run.info.run_id and failed.status == run.info.status == "FAILED"
    assert failed.error.startswith("SimulationDiverged") and failed.R != failed.R  # nan: nothing measured
    assert len(failed.R_t) == 0
