"""The ETDRK4 scheme (scheme: etdrk4): its coefficients, exact diffusion, fourth order in time, batching, the probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from rdbench.balance import BalanceMeter
from rdbench.study.cells import plugin
from rdbench.systems.grayscott import TERMS, GrayScott, GrayScottSimulation, _term_norms
from rdbench.systems.grayscott_spectral import ETDRK4Step, etdrk4_coefficients, five_point_symbol


def smoke(**changes):
    found = plugin("rd")
    return found.config.resolve("spot", "smoke", {"scheme": "etdrk4", **changes}, found.system.Settings)


@pytest.mark.parametrize("z", [-3.0, -0.5, -1e-3, -1e-9, 0.0, -40.0])
def test_the_contour_coefficients_match_the_closed_forms_and_their_limits(z):
    c = etdrk4_coefficients(np.array([z]), 1.0)
    if abs(z) > 0.1:  # the closed forms are accurate away from 0
        ez = np.exp(z)
        assert c["Q"][0] == pytest.approx((np.exp(z / 2) - 1) / z, rel=1e-10)
        assert c["f1"][0] == pytest.approx((-4 - z + ez * (4 - 3 * z + z * z)) / z**3, rel=1e-8)
        assert c["f2"][0] == pytest.approx((2 + z + ez * (z - 2)) / z**3, rel=1e-8)
        assert c["f3"][0] == pytest.approx((-4 - 3 * z - z * z + ez * (4 - z)) / z**3, rel=1e-8)
    else:  # where they cancel catastrophically, the limits at 0: Q = 1/2, f1 = f2 = f3 = 1/6
        assert c["Q"][0] == pytest.approx(0.5, abs=1e-3)
        for name in ("f1", "f2", "f3"):
            assert c[name][0] == pytest.approx(1 / 6, abs=1e-3)


def test_the_symbol_is_the_five_point_laplacians():
    n, dx = 16, 0.1
    field = np.random.default_rng(0).standard_normal((n, n))
    lap = (np.roll(field, 1, 0) + np.roll(field, -1, 0) + np.roll(field, 1, 1) + np.roll(field, -1, 1) - 4 * field)
    assert np.fft.irfft2(np.fft.rfft2(field) * five_point_symbol(n, dx), s=(n, n)) == pytest.approx(lap / dx**2)


def test_pure_diffusion_is_exact():
    """F = k = 0, v = 0: u diffuses alone, each 5-point mode decays by exp(-Du mu t) exactly, whatever dt."""
    n, dx, du, dt = 32, 0.01, 1e-5, 7.0  # dt far above the Euler bound dx^2 / (4 Du) = 2.5
    step = ETDRK4Step(n, dx, du, 0.5e-5, dt, torch.float64, torch.device("cpu"))
    y, x = np.mgrid[0:n, 0:n]
    u0 = 1 + 0.1 * np.cos(2 * np.pi * 3 * x / n) * np.cos(2 * np.pi * y / n)
    state = torch.tensor(np.stack([u0, np.zeros((n, n))])[:, None])
    zero = torch.zeros(1, 1, 1, dtype=torch.float64)
    for _ in range(5):
        state = step.advance(state, zero, zero)
    mu = (4 * np.sin(np.pi * 3 / n) ** 2 + 4 * np.sin(np.pi / n) ** 2) / dx**2
    expected = 1 + 0.1 * np.exp(-du * mu * 5 * dt) * np.cos(2 * np.pi * 3 * x / n) * np.cos(2 * np.pi * y / n)
    assert state[0, 0].numpy() == pytest.approx(expected, abs=1e-12)


def test_the_uniform_reaction_converges_at_fourth_order():
    """On uniform fields ETDRK4 is RK4 for the reaction ODE: its error falls ~16x when dt halves."""
    feed, kill, u0, v0, t_end = 0.03, 0.05, 0.6, 0.3, 40.0
    exact = solve_ivp(lambda t, y: [-y[0] * y[1] ** 2 + feed * (1 - y[0]), y[0] * y[1] ** 2 - (feed + kill) * y[1]],
                      (0, t_end), [u0, v0], rtol=1e-12, atol=1e-14).y[:, -1]
    f, k = (torch.tensor([[[feed]]], dtype=torch.float64), torch.tensor([[[kill]]], dtype=torch.float64))
    errors = []
    for dt in (4.0, 2.0):
        step = ETDRK4Step(4, 0.01, 1e-5, 0.5e-5, dt, torch.float64, torch.device("cpu"))
        state = torch.tensor([[[[u0] * 4] * 4], [[[v0] * 4] * 4]], dtype=torch.float64)
        for _ in range(int(t_end / dt)):
            state = step.advance(state, f, k)
        errors.append(np.abs(state[:, 0, 0, 0].numpy() - exact).max())
    assert 10 < errors[0] / errors[1] < 24


def test_rows_of_a_batch_run_as_they_would_alone_and_the_probe_is_the_euler_steps():
    rows = [smoke(feed=0.029), smoke(feed=0.055)]
    together = GrayScottSimulation(rows, [0, 1])
    meter = BalanceMeter(2, TERMS)
    together.run(meter)
    for i, settings in enumerate(rows):
        alone = GrayScottSimulation([settings], [i])
        one = BalanceMeter(1, TERMS)
        alone.run(one)
        assert torch.allclose(alone.v[0], together.v[i], atol=1e-6)
        assert one.result([0]).R == pytest.approx(meter.result([i]).R, rel=1e-5)
    # the recorded norms are those of the Euler step's probe on the same state
    sim = GrayScottSimulation([rows[0]], [0])
    probe = BalanceMeter(1, TERMS)
    sim.advance(probe, 0)
    state = sim._spare  # the state the step started from
    s = rows[0]
    expected = _term_norms(state, sim.feed, sim.kill, s.diffusion_u, s.diffusion_v, s.dx)
    assert probe.result([0]).norms[TERMS[0]][0, 0] == pytest.approx(float(expected[0, 0]), rel=1e-6)
    assert probe.result([0]).norms[TERMS[1]][0, 0] == pytest.approx(float(expected[0, 1]), rel=1e-6)


def test_the_memory_estimate_counts_the_spectral_stages():
    euler = GrayScott().memory_bytes([smoke(scheme="euler")])
    assert GrayScott().memory_bytes([smoke()]) > 3 * euler


@pytest.mark.slow
def test_the_two_schemes_agree_at_the_papers_points():
    """Spot and stripe (F = 0.029, 0.055; k = 0.062) at the paper's dx and dt on a 64 x 64 grid, 1500 steps:
    R within 0.3 % and the same label (the full paper runs are measured by command in docs/phase-map.md)."""
    from rdbench.phase.labels import label_point
    from rdbench.phase.plan import load_phase_config

    found = plugin("rd")
    rule = load_phase_config("rd").labels
    results = {}
    for scheme in ("euler", "etdrk4"):
        rows = [found.config.resolve(case, "paper", {
            "grid_size": 64, "domain_length": 0.64, "steps": 1500, "kernel": "eager", "controls": {}, "scheme": scheme,
        }, found.system.Settings) for case in ("spot", "stripe")]
        sim = GrayScottSimulation(rows, [0, 0])
        meter = BalanceMeter(2, TERMS)
        sim.run(meter)
        results[scheme] = [(meter.result([i]).R, label_point(sim.v[i].numpy(), meter.result([i]).R_t, rule)[0])
                           for i in range(2)]
    for (r_euler, label_euler), (r_etdrk4, label_etdrk4) in zip(results["euler"], results["etdrk4"], strict=True):
        assert r_etdrk4 == pytest.approx(r_euler, rel=3e-3)
        assert label_euler == label_etdrk4
    assert [label for _, label in results["euler"]] == ["spots", "stripes-labyrinth"]
