"""The user's own series for the LSTM system (csv:FILE, npy:FILE): layouts, the split and
scaling of the generated sets, every bad file refused in one line, and a CSV run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rdbench.cli import main
from rdbench.config import ConfigError, load_system
from rdbench.systems.lstm import LSTMSystem
from rdbench.systems.lstm.data import make_dataset
from rdbench.systems.lstm.series_file import read_series

CONF = load_system("lstm")


def sines(n=20, length=30, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 6, length)
    return 3.0 + 2.0 * np.sin(rng.uniform(0.5, 2, (n, 1)) * t + rng.uniform(0, 6.3, (n, 1)))


def write_csv(path, rows, header=None):
    lines = ([header] if header else []) + [",".join(repr(float(v)) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n\n")  # a trailing blank line is ignored
    return path


def settings(case, profile="smoke", **overrides):
    return CONF.resolve(case, profile, overrides)


def test_csv_rows_and_columns_and_npy_read_the_same_sequences(tmp_path):
    data = sines()
    rows = write_csv(tmp_path / "rows.csv", data)
    cols = write_csv(tmp_path / "cols.csv", data.T, header="a,b,c")
    np.save(tmp_path / "s.npy", data)
    np.testing.assert_allclose(read_series("csv", rows, settings(f"csv:{rows}").file), data, rtol=1e-15)
    s = settings(f"csv:{cols}", **{"file.layout": "columns", "file.header_rows": 1})
    np.testing.assert_allclose(read_series("csv", cols, s.file), data, rtol=1e-15)
    # an npy file read with layout=columns: its columns are the sequences; 5 of them, 7 values each
    np.testing.assert_array_equal(read_series("npy", tmp_path / "s.npy", s.file, 5, 7), data.T[:5, :7])


def test_file_data_get_the_split_and_scaling_of_the_generated_sets(tmp_path):
    data = sines()
    s = settings(f"csv:{write_csv(tmp_path / 'x.csv', data)}")
    assert (s.dataset, s.n_sequences, s.seq_len) == ("csv", None, None)  # the file decides
    split = make_dataset(s, seed=0)
    assert split.train.shape == (16, 30) and split.test.shape == (4, 30)  # test_fraction 0.2, file order
    assert split.offset == pytest.approx(data[:16].mean()) and split.scale == pytest.approx(data[:16].std())
    np.testing.assert_allclose(split.test * split.scale + split.offset, data[16:], rtol=1e-12)
    capped = make_dataset(settings(f"csv:{tmp_path / 'x.csv'}", n_sequences=10, seq_len=12), seed=0)
    assert capped.train.shape == (8, 12) and capped.test.shape == (2, 12)
    raw = make_dataset(settings(f"csv:{tmp_path / 'x.csv'}", **{"file.normalise": False}), seed=0)
    np.testing.assert_allclose(raw.train, data[:16])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,2,3\n4,nan,6\n", "line 2, column 2: nan (NaN or infinite); fill or drop the gaps first"),
        ("1,2,3\n4,5\n", "line 2 has 2 values but line 1 has 3: ragged rows"),
        ("t0,t1\n1,2\n", "line 1, column 1: 't0' is not a number (a header? set file.header_rows=1)"),
        ("1,2\n3,x\n", "line 2, column 2: 'x' is not a number"),
        ("1,2\n3,\n", "line 2, column 2: empty cell"),
        ("1,2\n\n3,4\n", "line 2 is empty"),
        ("\n\n", "no data lines"),
    ],
)
def test_bad_csv_files_are_one_line_naming_the_place(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_series("csv", path, settings(f"csv:{path}").file)
    assert str(info.value).startswith(f"csv:{path}: ") and message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_npy_files_are_one_line(tmp_path):
    np.save(tmp_path / "one.npy", np.arange(10.0))
    bad = np.ones((3, 4))
    bad[1, 2] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    file_settings = settings("csv:x").file
    with pytest.raises(ConfigError, match=r"shape \(10,\); need a 2-D array"):
        read_series("npy", tmp_path / "one.npy", file_settings)
    with pytest.raises(ConfigError, match=r"inf \(NaN or infinite\) at index \[1, 2\]"):
        read_series("npy", tmp_path / "inf.npy", file_settings)
    with pytest.raises(ConfigError, match="no such file"):
        read_series("npy", tmp_path / "missing.npy", file_settings)


def test_check_counts_the_files_sequences(tmp_path):
    few = write_csv(tmp_path / "few.csv", sines(n=3))
    with pytest.raises(ConfigError, match=r"measure.samples=4 exceeds the 1 test sequences \(from csv:.*few.csv, "
                                          r"one sequence per row\)"):
        LSTMSystem().check(settings(f"csv:{few}"))
    one = write_csv(tmp_path / "one.csv", sines(n=1))
    with pytest.raises(ConfigError, match="n_sequences=1 .* leaves 1 train and 0 test sequences"):
        LSTMSystem().check(settings(f"csv:{one}"))
    short = write_csv(tmp_path / "short.csv", sines(n=20, length=8))
    with pytest.raises(ConfigError, match="measure.seed_length=10 exceeds seq_len=8"):
        LSTMSystem().check(settings(f"csv:{short}"))
    flat = write_csv(tmp_path / "flat.csv", np.ones((20, 30)))
    with pytest.raises(ConfigError, match="the training values are all 1; cannot z-score"):
        LSTMSystem().check(settings(f"csv:{flat}"))
    with pytest.raises(ConfigError, match="data_path applies to the datasets csv and npy, not to 'sine'"):
        LSTMSystem().check(settings("sine", data_path="x.csv"))


# ----------------------------------------------------------------------------- end to end


def test_run_lstm_on_a_csv_end_to_end(tmp_path, experiment, mlflow_client, runs_of):
    path = write_csv(tmp_path / "waves.csv", sines(n=30, length=40))
    result = CliRunner().invoke(main, ["run", "lstm", "--dataset", f"csv:{path}", "--profile", "smoke",
                                       "--device", "cpu", "--experiment", experiment])
    assert result.exit_code == 0, result.output
    (run,) = runs_of(mlflow_client, experiment)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "lstm/csv:waves.csv/s0 [smoke]" and run.data.tags["rdbench.case"] == "csv:waves.csv"
    p, m = run.data.params, run.data.metrics
    assert p["case"] == f"csv:{path}"  # the whole path: a param and part of the config hash
    assert p["dataset"] == "csv" and p["data_path"] == str(path) and p["file.layout"] == "rows"
    assert m["train_sequences"] == 24 and m["test_sequences"] == 6 and m["sequence_length"] == 40
    assert m["n_samples"] == 4 and m["n_steps"] == 30  # smoke: 10 warm-up + 20 generated steps
    for key in ("R", "M_react", "M_diff", "control.untrained.R", "control.shuffled.R", "train_loss_final"):
        assert key in m, key
    inputs = {d.dataset.name: d.dataset for d in mlflow_client.get_run(run.info.run_id).inputs.dataset_inputs}
    assert set(inputs) == {"csv:waves.csv/train", "csv:waves.csv/test"}
    assert json.loads(inputs["csv:waves.csv/train"].source)["uri"] == str(path.resolve())
    assert json.loads(inputs["csv:waves.csv/test"].profile)["shape"] == [6, 40]
    assert not any(k.startswith(("sine.", "lorenz.", "vanderpol.", "solver.")) for k in p)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,2,3\n4,nan,6\n", "line 2, column 2: nan (NaN or infinite)"),
        ("1,2,3\n4,5\n", "line 2 has 2 values but line 1 has 3: ragged rows"),
        ("1,2\n3,abc\n", "line 2, column 2: 'abc' is not a number"),
    ],
)
def test_a_bad_csv_exits_2_in_one_line_and_leaves_no_run(tmp_path, experiment, mlflow_client, text, message, runs_of):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    result = CliRunner().invoke(main, ["run", "lstm", "--dataset", f"csv:{path}", "--profile", "smoke",
                                       "--experiment", experiment])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert runs_of(mlflow_client, experiment) == []
