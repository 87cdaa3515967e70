"""Every bad input of the command line, as data: refused in one line, exit status 2, nothing in the store.

Adding a case is one line of BAD_INPUTS: the arguments after ``rdbench`` and a piece of
the one line the user must see. Commands that write to the store get ``--experiment``
of a fresh experiment, which must stay empty.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from rdbench.cli import main

STORE_COMMANDS = {"run", "grid", "table", "figures"}

BAD_INPUTS = [
    # rdbench run
    (["run", "nosuch"], "unknown system 'nosuch'; allowed: "),
    (["run", "../../etc/passwd"], "unknown system '../../etc/passwd'"),
    (["run", "rd", "--case", "blob"], "unknown case 'blob' for system 'rd'; allowed: spot, stripe"),
    (["run", "rd", "--steps", "-5"], "bad value -5 for 'steps': Input should be greater than 0"),
    (["run", "rd", "--feed", "abc"], "bad value 'abc' for 'feed': Input should be a valid number"),
    (["run", "rd", "--feed", "inf"], "bad value 'inf' for 'feed': Input should be a finite number"),
    (["run", "rd", "--feed", ".inf"], "bad value inf for 'feed': Input should be a finite number"),
    (["run", "rd", "--feed", "nan"], "for 'feed': Input should be a finite number"),
    (["run", "rd", "--dt", "3"], "unstable dt=3.0"),
    (["run", "rd", "--set", "stepz=4"], "unknown key 'stepz'; allowed keys: allow_unstable, compile,"),
    (["run", "rd", "--set", "feed"], "--set expects key=value, got 'feed'"),
    (["run", "rd", "--steps"], "option --steps needs a value"),
    (["run", "rd", "--config", "/nonexistent/rd.yaml"], "cannot read config file /nonexistent/rd.yaml"),
    (["run", "rd", "--profile", "huge"], "unknown profile 'huge' for system 'rd'; allowed: paper"),
    (["run", "rd", "--device", "tpu"], "unknown device 'tpu'"),
    (["run", "rd", "stray"], "unexpected argument 'stray'"),
    (["run", "rd", "--seed", "x"], "Invalid value for '-s' / '--seed': 'x' is not a valid integer"),
    (["run", "rd", "--profile", "smoke", "--record-every", "1000"],
     "record_every=1000 with steps=60 records 2 steps; R and R_t need at least 10"),
    (["run", "rd", "--grid-size", "100000", "--dt", "1e-6"], "GiB available; use a smaller grid_size"),
    (["run", "lstm", "--dataset", "lorentz"], "unknown dataset 'lorentz' for system 'lstm'; allowed: sine, lorenz, vanderpol"),
    (["run", "lstm", "--seq-len", "0"], "bad value 0 for 'seq_len': Input should be greater than 0"),
    (["run", "lstm", "--seq-len", "1"], "seq_len=1: next-step prediction needs sequences of at least 2 values"),
    (["run", "lstm", "--set", "dataset=mnist"], "bad value 'mnist' for 'dataset': Input should be 'sine', 'lorenz'"),
    (["run", "lstm", "--set", "measure.mode=sample"], "bad value 'sample' for 'measure.mode'"),
    (["run", "lstm", "--epochs", "0"], "bad value 0 for 'epochs': Input should be greater than 0"),
    (["run", "ddpm", "--dataset", "imagenet"],
     "unknown dataset 'imagenet' for system 'ddpm'; allowed: mnist, fashionmnist, cifar10, digits"),
    (["run", "ddpm", "--dataset", "digits", "--train-steps", "0"], "bad value 0 for 'train_steps'"),
    (["run", "ddpm", "--dataset", "digits", "--profile", "smoke", "--set", "model.groups=3"],
     "not divisible by model.groups=3"),
    # rdbench grid
    (["grid", "quik"], "unknown grid 'quik'; allowed: offline, paper, quick, smoke"),
    (["grid", "smoke", "--only", "ddpm/mnst"], "--only 'ddpm/mnst' matches no cell"),
    (["grid", "smoke", "--set", "stepz=3"], "--set: "),
    (["grid", "smoke", "--set", "steps"], "--set expects key=value, got 'steps'"),
    (["grid", "/nonexistent/grid.yaml"], "cannot read config file /nonexistent/grid.yaml"),
    # rdbench table / figures
    (["table", "--parent", "x", "--all-cells"], "--parent and --all-cells exclude each other"),
    (["table", "--parent", "nosuchrun"], "no run 'nosuchrun' in the tracking store"),
    (["figures", "--all-cells"], "no experiment"),
    # rdbench oracle, bench, container, global options
    (["oracle", "--samples", "0"], "Invalid value for '--samples': 0 is not in the range x>=1"),
    (["oracle", "--images", "-5"], "Invalid value for '--images': -5 is not in the range x>=0"),
    (["oracle", "--dataset", "nosuch"], "unknown dataset 'nosuch' for system 'ddpm'"),
    (["oracle", "--device", "tpu"], "unknown device 'tpu'"),
    (["bench", "rd", "--batch", "0"], "Invalid value for '--batch': 0 is not in the range x>=1"),
    (["bench", "ddpm", "--sampling-steps", "1"], "Invalid value for '--sampling-steps': 1 is not in the range x>=2"),
    (["container", "run", "--gpus", "al", "--dry-run", "--", "run", "rd"], "--gpus 'al' is not understood"),
    (["--trust-plugin", "../evil", "run", "rd"], "--trust-plugin '../evil' is not a module name"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_refused_in_one_line_with_exit_2_and_nothing_in_the_store(
    args, message, experiment, mlflow_client, runs_of
):
    command = next((a for a in args if not a.startswith("-")), "")
    full = [*args, "--experiment", experiment] if command in STORE_COMMANDS and "--" not in args else args
    result = CliRunner().invoke(main, full)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert message in lines[0], lines[0]
    assert runs_of(mlflow_client, experiment) == []
    running = mlflow_client.search_runs(
        [e.experiment_id for e in mlflow_client.search_experiments()], "attributes.status = 'RUNNING'")
    assert not [r for r in running if r.data.tags.get("rdbench.pid")
                and not _alive(int(r.data.tags["rdbench.pid"]))], "a RUNNING run of a process that is gone"


def _alive(pid: int) -> bool:
    from pathlib import Path

    return Path(f"/proc/{pid}").exists()


def test_an_unwritable_output_folder_is_one_line_naming_it(smoke):
    result = CliRunner().invoke(main, ["table", "--experiment", smoke.experiment, "--all-cells",
                                       "--out", "/proc/rdbench-cannot-write-here"])
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.strip().splitlines() if line.startswith("Error")]
    assert "/proc/rdbench-cannot-write-here" in line
