"""Every bad input of the command line, as data: refused in one line, exit status 2, nothing in the store.

Adding a case is one line of BAD_INPUTS: the arguments after ``rdbench`` and a piece of
the one line the user must see. Commands that write to the store get ``--experiment``
of a fresh experiment, which must stay empty.
"""

from __future__ import annotations

import math

import click
import numpy as np
import pytest
from click.testing import CliRunner

from rdbench.cli import main

STORE_COMMANDS = {"run", "grid", "table", "figures"}

# An alias bomb: 9 levels of 9 references to the level below, 9**9 strings once expanded, 350 bytes written.
_LEVELS = "abcdefghi"
BOMB = "{" + ", ".join(
    [f"a: &a [{','.join(['lol'] * 9)}]"]
    + [f"{n}: &{n} [{','.join(['*' + p] * 9)}]" for p, n in zip(_LEVELS, _LEVELS[1:], strict=False)]
) + "}"
# Files a case names as <name>; the fixture `bad_files` writes them and the test puts their paths in.
FILES = {
    "<binary.yaml>": lambda path: path.write_bytes(b"\xff\xfe\x00\x01 not text \x80\x81"),
    "<bomb-grid.yaml>": lambda path: path.write_text(
        f"description: x\nprofile: smoke\nseeds: [0]\ncells:\n  - system: rd\n    cases: [spot]\n"
        f"    overrides: {{feed: {BOMB}}}\n"),
    "<objects.npz>": lambda path: np.savez(path, images=np.array([{"a": 1}, None], dtype=object)),
    "<folder>": lambda path: path.mkdir(),
}

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
    (["run", "rd", "--set", "stepz=4"], "unknown key 'stepz'; allowed keys: allow_unstable, controls,"),
    (["run", "rd", "--set", "feed"], "--set expects key=value, got 'feed'"),
    (["run", "rd", "--steps"], "option --steps needs a value"),
    (["run", "rd", "--config", "/nonexistent/rd.yaml"], "cannot read config file /nonexistent/rd.yaml"),
    (["run", "rd", "--profile", "huge"], "unknown profile 'huge' for system 'rd'; allowed: paper"),
    (["run", "rd", "--device", "tpu"], "unknown device 'tpu'"),
    (["run", "rd", "stray"], "unexpected argument 'stray'"),
    (["run", "rd", "--seed", "x"], "Invalid value for '-s' / '--seed': 'x' is not a valid integer"),
    (["run", "rd", "--profile", "smoke", "--record-every", "1000"],
     "record_every=1000 with steps=60 records 2 steps; R and R_t need at least 10"),
    (["run", "rd", "--grid-size", "100000", "--dt", "1e-6"], "GiB available; use smaller sizes (grid_size"),
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
    (["oracle", "--samples", "0"], "Invalid value for '--samples': 0 is not in the range"),
    (["oracle", "--images", "-5"], "Invalid value for '--images': -5 is not in the range"),
    (["oracle", "--dataset", "nosuch"], "unknown dataset 'nosuch' for system 'ddpm'"),
    (["oracle", "--device", "tpu"], "unknown device 'tpu'"),
    (["bench", "rd", "--batch", "0"], "Invalid value for '--batch': 0 is not in the range"),
    (["bench", "ddpm", "--sampling-steps", "1"], "Invalid value for '--sampling-steps': 1 is not in the range"),
    (["container", "run", "--gpus", "al", "--dry-run", "--", "run", "rd"], "--gpus 'al' is not understood"),
    (["--trust-plugin", "../evil", "run", "rd"], "--trust-plugin '../evil' is not a module name"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
    # issue 22: overflow, undecodable and expanding files, object arrays, sizes estimated before allocation
    (["run", "rd", "--steps", "99999999999999999999999"],
     "bad value 99999999999999999999999 for 'steps': Input should be at most 9223372036854775807"),
    (["run", "rd", "--set", f"feed={BOMB}"], "--set feed: YAML expands to over 100000 values"),
    (["run", "rd", "--set", "feed=&a [*a]"], "--set feed: YAML refers to itself"),
    (["run", "rd", "--feed", "x" * 100_000], "..."),  # quoted in at most ~200 characters (line length below)
    (["grid", "<bomb-grid.yaml>"], "YAML expands to over 100000 values"),
    (["grid", "smoke", "--set", f"feed={BOMB}"], "YAML expands to over 100000 values"),
    (["grid", "<binary.yaml>"], "not a YAML text file (byte 0 is not UTF-8)"),
    (["table", "--published", "<binary.yaml>"], "not a YAML text file"),
    (["figures", "--published", "<binary.yaml>"], "not a YAML text file"),
    (["run", "rd", "--config", "<binary.yaml>"], "not a YAML text file"),
    (["run", "ddpm", "--dataset", "npz:<objects.npz>"], "an array of Python objects (object); allowed: uint8 or float"),
    (["phase", "rd", "--profile", "smoke", "--feed", "0.01:0.08:4096", "--kill", "0.03:0.07:4096"],
     "a map of 16777216 points (its plan, table and tiles) needs about 232.0 GiB"),
    (["run", "ddpm", "--dataset", "digits", "--batch-size", "100000000"], "GiB available; use smaller sizes"),
    (["run", "lstm", "--seq-len", "100000000", "--n-sequences", "1000"], "GiB available; use smaller sizes"),
    (["run", "ddpm", "--dataset", "digits", "--sampler.samples", "1000000000000"], "GiB available"),
    (["bench", "rd", "--grid-size", "1000000"], "bench rd --grid-size 1000000 --batch 1 needs about"),
    (["bench", "rd", "--batch", "100000"], "bench rd --grid-size 256 --batch 100000 needs about"),
    (["bench", "rd", "--batch", "100000", "--memory"], "--batch 100000 needs about"),
    (["bench", "ddpm", "--batch", "100000000"], "bench ddpm --batch 100000000"),
    (["bench", "lstm", "--batch", "100000000"], "bench lstm --batch 100000000"),
    (["oracle", "--images", "2000000000"], "the oracle with --images 2000000000 --samples 16 needs about"),
    (["bench", "store", "--target", "bogus"], "unknown --target 'bogus'; allowed: server, sqlite-fresh"),
    (["server", "start", "<folder>", "--backend-uri", "notauri"], "--backend-uri 'notauri' is not a database URI"),
    (["server", "start", "<folder>", "--timeout", "nan"], "'nan' is not a finite number of seconds"),
]


@pytest.fixture
def bad_files(tmp_path):
    """The files of FILES, written in a fresh folder: ``{"<name>": path}``."""
    paths = {}
    for token, write in FILES.items():
        path = tmp_path / token.strip("<>")
        write(path)
        paths[token] = str(path)
    return paths


def with_files(args: list[str], files: dict[str, str]) -> list[str]:
    """``args`` with every ``<name>`` of FILES replaced by its path."""
    out = []
    for arg in args:
        for token, path in files.items():
            arg = arg.replace(token, path)
        out.append(arg)
    return out


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[" ".join(a)[:80] for a, _ in BAD_INPUTS])
def test_bad_input_is_refused_in_one_line_with_exit_2_and_nothing_in_the_store(
    args, message, experiment, mlflow_client, runs_of, bad_files
):
    command = next((a for a in args if not a.startswith("-")), "")
    full = [*args, "--experiment", experiment] if command in STORE_COMMANDS and "--" not in args else args
    result = CliRunner().invoke(main, with_files(full, bad_files))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert message in lines[0], lines[0]
    assert len(lines[0]) < 1000, "an error line quotes at most ~200 characters of a value"
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


# ----------------------------------------------------------------------------- the numeric sweep

SWEEP_VALUES = ["0", "-1", "1e30", "nan", "1" * 30]
# what each command needs besides the option swept (a folder for the server, a system, axes)
SWEEP_ARGS = {
    "server start": ["<folder>"],
    "server stop": ["<folder>"],
    "grid": ["smoke"],
    "phase": ["rd", "--feed", "0.02:0.03:2", "--kill", "0.05:0.06:2"],
    "run": ["rd"],
}


def numeric_options() -> list[tuple[str, str, click.ParamType]]:
    """``(command path, option, type)`` of every int or float option of every subcommand."""
    found = []

    def walk(command: click.Command, path: list[str]) -> None:
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name])
            return
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.type, (click.types.IntParamType,
                                                                           click.types.FloatParamType)):
                found.append((" ".join(path), param.opts[-1], param.type))

    walk(main, [])
    return found


def _accepted(kind: click.ParamType, value: str) -> bool:
    try:
        kind.convert(value, None, None)
    except click.BadParameter:
        return False
    return True


def test_every_numeric_option_refuses_zero_negative_huge_and_nan_values_in_one_line(bad_files, experiment):
    """0, -1, 1e30, nan and a 30-digit integer for every numeric option of every subcommand: each
    value the option does not allow is one line naming the option, exit status 2 (the few values an
    option allows, such as --seed 0, are left out: they would start real work)."""
    options = numeric_options()
    assert len(options) > 30, options  # every subcommand was found
    runner = CliRunner()
    refused = 0
    for path, option, kind in options:
        for value in SWEEP_VALUES:
            if _accepted(kind, value):
                assert value in ("0", "-1") or (value == "1e30" and not isinstance(kind, click.types.IntParamType)), \
                    f"{path} {option} accepts {value}"
                continue
            args = [*path.split(), *SWEEP_ARGS.get(path, []), option, value]
            result = runner.invoke(main, with_files(args, bad_files))
            lines = result.output.strip().splitlines()
            assert result.exit_code == 2 and len(lines) == 1, f"{args}: {result.output}"
            assert option in lines[0], f"{args}: {lines[0]}"
            refused += 1
    assert refused > 100


def numeric_settings(system: str) -> list[str]:
    """Dotted names of the system's int and float settings (its default case, paper profile)."""
    from rdbench.config import flatten_settings, load_system
    from rdbench.study.cells import plugin

    conf = load_system(system)
    settings = conf.resolve(conf.spec.default_case, settings_model=plugin(system).system.Settings)
    return [key for key, value in flatten_settings(settings).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)]


@pytest.mark.parametrize("system", ["rd", "lstm", "ddpm"])
def test_every_numeric_setting_is_refused_or_passes_its_checks_in_one_line(system, experiment, mlflow_client,
                                                                            runs_of):
    """0, -1, 1e30, nan and a 30-digit integer for every numeric setting of a system, on the command
    line: one line and exit status 2, never a traceback. A value the checks accept meets --device tpu,
    refused in one line just after them, so no case runs."""
    runner = CliRunner()
    keys = numeric_settings(system)
    assert len(keys) > 5, keys
    for key in keys:
        for value in SWEEP_VALUES:
            args = ["run", system, "--set", f"{key}={value}", "--device", "tpu", "--experiment", experiment]
            result = runner.invoke(main, args)
            lines = result.output.strip().splitlines()
            assert result.exit_code == 2 and len(lines) == 1, f"{args}: {result.output}"
            assert lines[0].startswith("Error: "), f"{args}: {lines[0]}"
            if value == "nan" or (value == "1" * 30 and isinstance(_default(key, system), int)):
                assert "'tpu'" not in lines[0], f"{args} was accepted: {lines[0]}"
    assert runs_of(mlflow_client, experiment) == []


def _default(key: str, system: str):
    from rdbench.config import flatten_settings, load_system
    from rdbench.study.cells import plugin

    conf = load_system(system)
    return flatten_settings(conf.resolve(conf.spec.default_case, settings_model=plugin(system).system.Settings))[key]


assert math.isnan(float(SWEEP_VALUES[3]))
