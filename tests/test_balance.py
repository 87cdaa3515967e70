"""The balance meter (Eqs. 12-20) against hand computations."""

import numpy as np
import pytest
import torch

from rdbench.balance import BalanceMeter, BalanceResult, term_norms


def test_term_norms_is_one_frobenius_norm_per_sample():
    a = torch.arange(24, dtype=torch.float64).reshape(2, 3, 4)
    b = -2 * a
    norms = term_norms([a, b])
    expected = [np.sqrt((np.arange(12) ** 2).sum()), np.sqrt((np.arange(12, 24) ** 2).sum())]
    assert norms.shape == (2, 2)
    np.testing.assert_allclose(norms[:, 0].numpy(), expected)
    np.testing.assert_allclose(norms[:, 1].numpy(), 2 * np.array(expected))


def test_meter_matches_hand_computation():
    # two samples, three steps; reaction/diffusion chosen so each norm is easy: ||(3, 4)|| = 5 etc.
    react = [[[3.0, 4.0], [0.0, 1.0]], [[6.0, 8.0], [0.0, 2.0]], [[0.0, 5.0], [3.0, 0.0]]]
    diff = [[[0.0, 2.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], [[0.0, 10.0], [0.0, 4.0]]]
    meter = BalanceMeter(2)
    for t in range(3):
        meter.observe(10 + t, {"reaction": torch.tensor(react[t]), "diffusion": torch.tensor(diff[t])})
    r = meter.result()
    # per-sample norms: sample 0 react 5, 10, 5 ; sample 1 react 1, 2, 3
    #                   sample 0 diff  2, 1, 10 ; sample 1 diff  1, 1, 4
    np.testing.assert_allclose(r.norms["reaction"], [[5, 10, 5], [1, 2, 3]])
    np.testing.assert_allclose(r.norms["diffusion"], [[2, 1, 10], [1, 1, 4]])
    assert r.M_react == pytest.approx((5 + 10 + 5 + 1 + 2 + 3) / 6)
    assert r.M_diff == pytest.approx((2 + 1 + 10 + 1 + 1 + 4) / 6)
    assert r.R == pytest.approx(26 / 19)  # ratio of means (Eq. 18), not a mean of ratios
    np.testing.assert_allclose(r.R_t, [(5 + 1) / (2 + 1), (10 + 2) / (1 + 1), (5 + 3) / (10 + 4)])
    assert r.R_final == pytest.approx(8 / 14)
    np.testing.assert_allclose(r.time, [0, 0.5, 1])
    np.testing.assert_array_equal(r.steps, [10, 11, 12])
    np.testing.assert_allclose(r.R_per_sample, [20 / 13, 6 / 6])
    assert r.summary()["R_std"] == pytest.approx(np.std([20 / 13, 1.0]))


def test_meter_needs_reaction_and_diffusion_first():
    with pytest.raises(ValueError, match="reaction, diffusion"):
        BalanceMeter(1, ("diffusion", "reaction"))


def test_equal_magnitudes_give_ratio_one():
    meter = BalanceMeter(3)
    gen = torch.Generator().manual_seed(0)
    for t in range(50):
        x = torch.randn(3, 8, 8, generator=gen)
        meter.observe(t, [x, -x])
    r = meter.result()
    assert r.R == pytest.approx(1.0)
    np.testing.assert_allclose(r.R_t, 1.0)


def test_meter_holds_norms_not_states_in_one_growing_buffer():
    meter = BalanceMeter(2, ("reaction", "diffusion", "extra"))
    big = torch.ones(2, 64, 64)
    for t in range(300):
        meter.observe(t, [big, 2 * big, 3 * big])
    # O(steps x samples x terms), independent of the state size: one buffer, doubled past 256 steps
    assert tuple(meter._buffer.shape) == (512, 2, 3)
    result = meter.result()
    assert result.n_steps == 300 and result.steps[-1] == 299
    for k, name in enumerate(("reaction", "diffusion", "extra")):
        assert np.allclose(result.norms[name], 64.0 * (k + 1))  # ||c * ones(64, 64)|| = 64 c, every step


def test_stopped_samples_keep_shorter_series():
    meter = BalanceMeter(2)
    for t in range(5):
        if t == 3:
            meter.stop_samples([0])
        meter.record(t, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert meter.result([0]).n_steps == 3
    assert meter.result([1]).n_steps == 5
    with pytest.raises(ValueError, match="different series lengths"):
        meter.result()


def test_results_read_every_sample_alone_at_once():
    """``results()`` equals ``result([i])`` for each sample, stopped ones with their shorter series."""
    meter = BalanceMeter(3, ("reaction", "diffusion", "extra"))
    gen = torch.Generator().manual_seed(0)
    for t in range(6):
        if t == 2:
            meter.stop_samples([1])
        meter.record(t, torch.rand(3, 3, generator=gen))
    # several steps at once, as the Triton step hands them over
    meter.record_many([6, 8], torch.rand(2, 3, 3, generator=gen))
    assert meter.n_recorded == 8 and meter.result([0]).steps.tolist() == [0, 1, 2, 3, 4, 5, 6, 8]
    for i, alone in enumerate(meter.results()):
        expected = meter.result([i])
        np.testing.assert_array_equal(alone.steps, expected.steps)
        for name in meter.term_names:
            np.testing.assert_array_equal(alone.norms[name], expected.norms[name])
    assert meter.results()[1].n_steps == 2
    with pytest.raises(ValueError, match=r"norms of shape \(1, 3, 3\), expected \(2, 3, 3\)"):
        meter.record_many([9, 10], torch.rand(1, 3, 3))


def test_pool_concatenates_samples():
    a = BalanceResult(np.arange(3), {"reaction": np.ones((1, 3)), "diffusion": np.ones((1, 3))})
    b = BalanceResult(np.arange(3), {"reaction": 3 * np.ones((2, 3)), "diffusion": np.ones((2, 3))})
    pooled = BalanceResult.pool([a, b])
    assert pooled.n_samples == 3
    assert pooled.M_react == pytest.approx(7 / 3)


def test_zero_diffusion_gives_infinite_ratio_not_an_error():
    meter = BalanceMeter(1)
    meter.record(0, torch.tensor([[1.0, 1.0]]))
    meter.record(1, torch.tensor([[1.0, 0.0]]))
    r = meter.result()
    assert np.isinf(r.R_t[-1]) and r.R == pytest.approx(2.0)
