"""The explicit Euler stability estimate (reaction included) on hand-made cases, and its use by `rdbench run`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rdbench.config import ConfigError, conf_dir
from rdbench.study.cells import plugin
from rdbench.systems.grayscott import GrayScott, stable_dt
from rdbench.systems.grayscott_stability import (
    euler_amplification,
    euler_stability,
    homogeneous_states,
    laplacian_modes,
    max_stable_dt,
    mode_eigenvalues,
    saddle_node_kill,
)

DU, DV, DX, N = 1.0e-5, 0.5e-5, 0.01, 200


def paper(**changes):
    found = plugin("rd")
    return found.config.resolve("spot", "paper", changes, found.system.Settings)


def test_pure_diffusion_reproduces_the_diffusive_bound():
    bound = DX**2 / (4 * max(DU, DV))  # 2.5
    assert max_stable_dt(0.0, 0.0, DU, DV, N, DX) == pytest.approx(bound, rel=1e-12)
    assert euler_amplification(0.0, 0.0, DU, DV, bound, N, DX) == pytest.approx(1.0, abs=1e-12)
    assert euler_amplification(0.0, 0.0, DU, DV, 1.01 * bound, N, DX) > 1
    # the checkerboard of u at dt = 2: |1 - 8 Du dt / dx^2| = 0.6
    assert euler_amplification(0.0, 0.0, DU, DV, 2.0, N, DX) == pytest.approx(0.6, abs=1e-12)


def test_the_laplacian_modes_run_from_the_uniform_mode_to_the_checkerboard():
    mu = laplacian_modes(8, 1.0)
    assert mu[0] == 0 and mu[-1] == pytest.approx(8.0)
    s = 4 * np.sin(np.pi * np.arange(8) / 8) ** 2  # every (i, j) of an 8 x 8 grid, by brute force
    assert set(np.round(mu, 9)) == set(np.round((s[:, None] + s[None, :]).ravel(), 9))
    huge = laplacian_modes(100_000, 2e-5)  # sampled, not 2.5e9 pairs
    assert len(huge) <= 1 << 16 and huge[0] == 0 and huge[-1] == pytest.approx(8 / 4e-10)


@pytest.mark.parametrize(("feed", "kill"), [(0.029, 0.062), (0.055, 0.05), (0.0578, 0.0338), (0.02, 0.04)])
def test_the_homogeneous_states_are_steady_and_exist_below_the_saddle_node(feed, kill):
    states = homogeneous_states(feed, kill)
    assert states[0] == (1.0, 0.0)
    assert len(states) == (3 if kill <= saddle_node_kill(feed) else 1)
    for u, v in states:
        assert -u * v * v + feed * (1 - u) == pytest.approx(0, abs=1e-12)
        assert u * v * v - (feed + kill) * v == pytest.approx(0, abs=1e-12)


def brute_force(feed, kill, dt, n):
    """max |eigenvalue of I + dt (J - diag(Du, Dv) mu)| over every (i, j) mode and state, numpy.linalg, counting
    only the eigenvalues sigma of J - D mu that decay (Re < 0) and that the step does not resolve (dt |sigma| >= 1)."""
    i = np.arange(n)
    mu = ((4 * np.sin(np.pi * i / n) ** 2)[:, None] + (4 * np.sin(np.pi * i / n) ** 2)[None, :]).ravel() / DX**2
    worst = 0.0
    for u, v in homogeneous_states(feed, kill):
        jac = np.array([[-v * v - feed, -2 * u * v], [v * v, 2 * u * v - feed - kill]])
        sigma = np.linalg.eigvals(jac[None] - mu[:, None, None] * np.diag([DU, DV])[None]).ravel()
        counted = sigma[(sigma.real < 0) & (dt * np.abs(sigma) >= 1)]
        worst = max(worst, float(np.abs(1 + dt * counted).max(initial=0.0)))
    return worst


@pytest.mark.parametrize(("feed", "kill"), [(0.0578, 0.0338), (0.029, 0.062), (0.07, 0.035), (0.02, 0.05)])
def test_the_estimate_matches_a_brute_force_eigenvalue_computation(feed, kill):
    assert euler_amplification(feed, kill, DU, DV, 2.0, 64, DX) == pytest.approx(brute_force(feed, kill, 2.0, 64),
                                                                                  rel=1e-9)


def test_the_grid_scale_instability_of_the_high_feed_low_kill_corner():
    # (F, k) = (0.0578, 0.0338): the upper state v ~ 0.45, where u's checkerboard mode is multiplied by
    # about 1 - dt (F + v^2) - 8 Du dt / dx^2 < -1 (docs/phase-map.md): unstable at the paper's dt = 2
    result = euler_stability(0.0578, 0.0338, DU, DV, 2.0, N, DX)
    assert not result.stable and result.amplification > 1.1
    limit = result.max_stable_dt
    assert euler_amplification(0.0578, 0.0338, DU, DV, 0.999 * limit, N, DX) <= 1
    assert euler_amplification(0.0578, 0.0338, DU, DV, 1.001 * limit, N, DX) > 1


def test_growing_modes_are_physics_and_are_not_counted():
    # the middle state below the saddle-node is a saddle: one eigenvalue of its uniform mode is positive
    sigma = mode_eigenvalues(0.055, 0.05, DU, DV, np.array([0.0]))
    assert (sigma.real > 0).any()
    assert euler_stability(0.055, 0.05, DU, DV, 0.5, N, DX).stable


def test_the_paper_points_and_every_configured_grid_pass():
    for case in ("spot", "stripe", "stripe_authors"):
        found = plugin("rd")
        GrayScott().check(found.config.resolve(case, "paper", {}, found.system.Settings))
    from rdbench.study.grid import plan_grid

    grids = [p for p in sorted(Path(conf_dir()).glob("*.yaml")) if "cells:" in p.read_text()]
    assert grids
    for path in grids:
        assert plan_grid(str(path), {}).cells  # each cell was checked


def test_an_unstable_point_is_refused_naming_a_stable_dt_unless_allowed():
    settings = paper(feed=0.0578, kill=0.0338)
    with pytest.raises(ConfigError, match=r"unstable point feed=0.0578, kill=0.0338.*by 1.12.* dt=1.8 is stable") as info:
        GrayScott().check(settings)
    assert "\n" not in str(info.value)
    GrayScott().check(settings.model_copy(update={"dt": 1.8}))  # the named dt passes
    GrayScott().check(settings.model_copy(update={"allow_unstable": True}))
    GrayScott().check(settings.model_copy(update={"scheme": "etdrk4"}))  # no Euler bound for the other scheme
    assert GrayScott().run_tags(settings.model_copy(update={"allow_unstable": True})) == {"unstable": "true"}
    assert GrayScott().run_tags(paper()) == {}


@pytest.mark.parametrize(("limit", "named"), [(1.8826, 1.8), (2.4125, 2.4), (0.0339, 0.033), (2.0, 1.9)])
def test_the_named_dt_is_rounded_down(limit, named):
    from rdbench.systems.grayscott_stability import Stability

    assert stable_dt(Stability(1.5, limit)) == pytest.approx(named)
    assert stable_dt(Stability(1.5, limit)) < limit or math.isclose(limit, named)
