"""The LSTM system's parts: generators, probe, model, training (no MLflow here)."""

import numpy as np
import pytest
import torch
from torch import nn

from rdbench.balance import BalanceMeter
from rdbench.bench.lstm import CellLoopLSTM
from rdbench.config import ConfigError, load_system
from rdbench.systems.lstm.data import generate_sequences, make_dataset
from rdbench.systems.lstm.model import build_model, last_value_loss, shuffled_copy, train_model
from rdbench.systems.lstm.probe import LSTMProbe, measure_generation, measure_teacher_forced
from rdbench.systems.lstm.system import LSTMSystem

CONF = load_system("lstm")


def settings(dataset="sine", profile="smoke", **overrides):
    return CONF.resolve(dataset, profile, overrides)


# --------------------------------------------------------------------------- probe


@pytest.mark.parametrize("init", ["pytorch", "normal"])
@pytest.mark.parametrize("input_size", [1, 3])
def test_probe_reproduces_nn_lstm_h_and_c(init, input_size):
    torch.manual_seed(7)
    lstm = nn.LSTM(input_size, 16, batch_first=True)
    if init == "normal":  # the authors' N(0, 1) weights drive the gates into saturation
        with torch.no_grad():
            for p in lstm.parameters():
                p.normal_()
    x = torch.randn(5, 60, input_size)
    h_ref, (h_last_ref, c_last_ref) = lstm(x)

    probe = LSTMProbe(lstm)
    h, c = probe.zero_state(5)
    for t in range(x.shape[1]):
        s = probe.step(x[:, t], h, c)
        # Eq. (11): the update is exactly reaction minus diffusion
        torch.testing.assert_close(s.c - c, s.reaction - s.diffusion, atol=1e-5, rtol=0)
        h, c = s.h, s.c
        torch.testing.assert_close(h, h_ref[:, t], atol=1e-5, rtol=0)
    torch.testing.assert_close(h, h_last_ref[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(c, c_last_ref[0], atol=1e-5, rtol=0)

    hs, (h_run, c_run) = probe.run(x)
    torch.testing.assert_close(hs, h_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(c_run, c_last_ref[0], atol=1e-5, rtol=0)


def test_probe_rejects_what_it_cannot_replicate():
    with pytest.raises(ValueError, match="single-layer"):
        LSTMProbe(nn.LSTM(1, 4, num_layers=2))
    with pytest.raises(ValueError, match="single-layer"):
        LSTMProbe(nn.LSTM(1, 4, bidirectional=True))


def test_generation_feeds_back_its_own_predictions_and_records_every_step():
    model = build_model(16, "pytorch", seed=3)
    seed_windows = torch.randn(4, 12)
    meter = BalanceMeter(4)
    gen = measure_generation(model, seed_windows, steps=20, meter=meter, record_warmup=True)
    assert gen.predictions.shape == (4, 20)
    # the fused nn.LSTM reading the seed and then the generated values predicts the same values
    fed = torch.cat([seed_windows, gen.predictions[:, :-1]], dim=1)
    with torch.no_grad():
        fused = model(fed)
    torch.testing.assert_close(gen.predictions, fused[:, 11:], atol=1e-5, rtol=0)

    result = meter.result()
    assert result.n_samples == 4 and list(result.steps) == list(range(32))
    assert np.all(result.norms["diffusion"][:, 0] == 0)  # C_{t-1} = 0 at the first step
    assert np.all(result.norms["reaction"][:, 0] > 0)

    meter = BalanceMeter(4)
    measure_generation(model, seed_windows, steps=20, meter=meter, record_warmup=False)
    assert list(meter.result().steps) == list(range(12, 32))


def test_teacher_forcing_matches_the_fused_forward():
    model = build_model(8, "normal", seed=0)
    x = torch.randn(6, 25)
    meter = BalanceMeter(6)
    predictions = measure_teacher_forced(model, x, meter)
    with torch.no_grad():
        torch.testing.assert_close(predictions, model(x), atol=1e-5, rtol=0)
    assert meter.result().n_steps == 25


def test_the_benchmarks_cell_loop_computes_what_the_fused_model_does():
    fused = build_model(16, "normal", seed=4)
    x = torch.randn(3, 30)
    with torch.no_grad():
        torch.testing.assert_close(CellLoopLSTM(fused)(x), fused(x), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- data


@pytest.mark.parametrize("dataset", ["sine", "lorenz", "vanderpol"])
def test_generators_are_deterministic_per_seed(dataset):
    s = settings(dataset)
    a = generate_sequences(s, 6, 30, seed=11)
    b = generate_sequences(s, 6, 30, seed=11)
    c = generate_sequences(s, 6, 30, seed=12)
    assert a.shape == (6, 30) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert np.isfinite(a).all()
    # sequences differ from one another (random frequency/phase/initial state)
    assert np.std(a[:, -1]) > 0.1


def test_sine_values_follow_frequency_phase_and_noise():
    clean = generate_sequences(settings("sine", **{"sine.noise": 0.0}), 50, 200, seed=0)
    assert np.abs(clean).max() <= 1.0
    assert np.abs(clean).max() > 0.99
    noisy = generate_sequences(settings("sine"), 50, 200, seed=0)
    np.testing.assert_allclose(np.std(noisy - clean), 0.05, rtol=0.05)  # the same draws + noise


def test_lorenz_stays_on_the_attractor():
    s = settings("lorenz")
    values = {c: generate_sequences(s.model_copy(update={"lorenz": s.lorenz.model_copy(update={"component": c})}),
                                    20, 200, seed=1) for c in "xyz"}
    assert np.abs(values["x"]).max() < 25 and np.abs(values["y"]).max() < 30
    assert 0 < values["z"].min() and values["z"].max() < 50
    assert values["x"].min() < -10 and values["x"].max() > 10  # both wings visited


def test_vanderpol_is_on_its_limit_cycle():
    x = generate_sequences(settings("vanderpol"), 20, 200, seed=2)
    assert np.abs(x).max() < 2.1
    # after the transient every sequence swings through the whole cycle (amplitude ~2)
    assert np.all(x.max(axis=1) > 1.9) and np.all(x.min(axis=1) < -1.9)


@pytest.mark.parametrize("dataset", ["sine", "lorenz", "vanderpol"])
def test_make_dataset_splits_and_normalises_with_training_statistics(dataset):
    s = settings(dataset, **{"n_sequences": 50, "test_fraction": 0.2})
    data = make_dataset(s, seed=0)
    assert data.train.shape == (40, 40) and data.test.shape == (10, 40)
    if dataset == "sine":
        assert (data.offset, data.scale) == (0.0, 1.0)
    else:
        assert abs(data.train.mean()) < 1e-9 and data.train.std() == pytest.approx(1.0)
        raw = generate_sequences(s, 50, 40, seed=0)
        np.testing.assert_allclose(data.test * data.scale + data.offset, raw[40:])


# --------------------------------------------------------------------------- model and training


def test_initialisation_is_seeded_and_normal_matches_the_authors():
    a, b, c = build_model(16, "normal", 5), build_model(16, "normal", 5), build_model(16, "normal", 6)
    torch.testing.assert_close(a.state_dict(), b.state_dict())
    assert not torch.equal(a.lstm.weight_hh_l0, c.lstm.weight_hh_l0)
    assert a.lstm.weight_hh_l0.std().item() == pytest.approx(1.0, abs=0.1)
    assert torch.count_nonzero(a.lstm.bias_ih_l0) == 0 and torch.count_nonzero(a.lstm.bias_hh_l0) == 0
    default = build_model(16, "pytorch", 5)
    assert default.lstm.weight_hh_l0.abs().max().item() <= 0.25  # U(-1/sqrt(16), 1/sqrt(16))


def test_shuffled_copy_keeps_each_tensors_values_but_not_their_order():
    model = build_model(16, "pytorch", 0)
    shuffled = shuffled_copy(model, seed=1)
    for (name, p), q in zip(model.named_parameters(), shuffled.parameters(), strict=True):
        torch.testing.assert_close(p.flatten().sort().values, q.flatten().sort().values, msg=name)
        if p.numel() > 1:
            assert not torch.equal(p, q), name


def test_training_beats_the_last_value_forecast_by_far():
    s = settings("sine", **{"sine.noise": 0.0, "n_sequences": 48, "seq_len": 40})
    data = make_dataset(s, seed=0)
    train = torch.tensor(data.train, dtype=torch.float32)
    test = torch.tensor(data.test, dtype=torch.float32)
    model = build_model(16, "pytorch", seed=0)
    history = train_model(model, train, test, epochs=50, learning_rate=2e-2, batch_size=None, seed=0)
    baseline = last_value_loss(test)
    assert history.epochs_run == 50 and len(history.test_loss) == 50
    # measured: 0.14 x the last-value loss and 1/60 of the untrained loss
    assert history.test_loss[-1] < 0.25 * baseline, (history.test_loss[-1], baseline)
    assert history.test_loss[-1] < 0.05 * history.test_loss[0]


def test_early_stop_ends_a_stalled_training():
    x = torch.zeros(8, 10)  # nothing to learn: the loss stalls at once
    model = build_model(4, "pytorch", seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    history = train_model(model, x, x, epochs=50, learning_rate=1e-3, batch_size=4, seed=0,
                          patience=3, min_delta=1e-3)
    assert history.stopped_early and history.epochs_run == 4


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"seq_len": 1}, "seq_len=1: next-step prediction needs sequences of at least 2 values"),
        ({"measure.samples": 9}, "measure.samples=9 exceeds the 8 test sequences"),
        ({"measure.seed_length": 41}, "measure.seed_length=41 exceeds seq_len=40"),
        ({"n_sequences": 2, "test_fraction": 0.1}, "leaves 2 train and 0 test sequences"),
        ({"sine.freq_min": 3.0}, "sine.freq_min=3.0 exceeds sine.freq_max=2.0"),
    ],
)
def test_check_rejects_settings_that_cannot_run(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        LSTMSystem().check(settings("sine", **overrides))


def test_every_profile_and_case_resolves():
    for profile in CONF.profiles:
        for case in CONF.cases:
            s = CONF.resolve(case, profile)
            assert s.dataset == case
            LSTMSystem().check(s)
    paper = CONF.resolve("sine")
    assert (paper.hidden_size, paper.n_sequences, paper.seq_len, paper.epochs) == (16, 1000, 200, 200)
    assert (paper.learning_rate, paper.batch_size, paper.init) == (1e-2, None, "normal")
    assert paper.measure.mode == "generate" and paper.measure.generate_steps == 200


@pytest.mark.parametrize(
    ("dataset", "extra", "unused"),
    [
        ("sine", {}, {"lorenz", "vanderpol", "solver", "data_path", "file"}),
        ("lorenz", {}, {"sine", "vanderpol", "data_path", "file"}),
        ("vanderpol", {"measure.mode": "teacher"},
         {"sine", "lorenz", "data_path", "file", "measure.seed_length", "measure.generate_steps",
          "measure.record_warmup", "measure.plot_samples"}),
    ],
)
def test_a_case_logs_only_the_settings_it_reads(dataset, extra, unused):
    from rdbench.config import flatten_settings
    from rdbench.study.cells import plan_cells

    (cell,) = plan_cells("lstm", [dataset], [0], "smoke", extra)
    assert LSTMSystem().unused_settings(cell.settings) == unused
    params = cell.params("cpu")
    assert all(k.split(".")[0] not in unused and k not in unused for k in params)
    assert set(flatten_settings(cell.settings)) - set(params)  # dropped from the params ...
    assert params[f"{dataset}.noise"] is not None and params["hidden_size"] == 16  # ... the case's own kept
