"""The pattern label on hand-made fields and series: flat, discs, stripes, oscillating, unstable, NaN; and on a
real unstable row (explicit Euler at the paper's dt in the high-F, low-k corner)."""

from __future__ import annotations

import numpy as np
import pytest

from rdbench.phase.labels import (
    DIVERGED,
    NONE,
    OSCILLATING,
    SPOTS,
    STRIPES,
    UNSTABLE,
    compactness,
    grid_scale_share,
    label_point,
    oscillates,
    periodic_components,
    relabel,
)
from rdbench.phase.plan import load_phase_config

RULE = load_phase_config("rd").labels
N = 96
STEADY = np.ones(400)  # an R_t that has settled


def discs(centres, radius: float, n: int = N) -> np.ndarray:
    """v = 0.3 inside discs (periodic distance), 0.05 outside."""
    y, x = np.mgrid[0:n, 0:n]
    v = np.full((n, n), 0.05)
    for cy, cx in centres:
        dy = np.minimum(abs(y - cy), n - abs(y - cy))
        dx = np.minimum(abs(x - cx), n - abs(x - cx))
        v[dy**2 + dx**2 <= radius**2] = 0.3
    return v


def test_a_flat_field_is_none_and_noise_below_the_threshold_too():
    assert label_point(np.full((N, N), 0.2), STEADY, RULE)[0] == NONE
    rng = np.random.default_rng(0)
    assert label_point(1e-4 * rng.standard_normal((N, N)), STEADY, RULE)[0] == NONE


def test_a_field_of_discs_is_spots():
    centres = [(y, x) for y in range(8, N, 24) for x in range(8, N, 24)]
    label, shape = label_point(discs(centres, 5), STEADY, RULE)
    assert label == SPOTS
    assert shape.components == len(centres)
    assert shape.spot_share == 1.0


def test_a_disc_across_the_corner_of_the_torus_is_one_component():
    labels, n = periodic_components(discs([(0, 0)], 6) > 0.2)
    assert n == 1
    area, compact = compactness(labels, n)
    assert compact[0] < RULE.spot_compactness  # its perimeter is counted across the edges too


def test_stripes_and_a_labyrinth_are_stripes():
    y, x = np.mgrid[0:N, 0:N]
    stripes = 0.2 + 0.1 * np.sin(2 * np.pi * 4 * x / N)
    label, shape = label_point(stripes, STEADY, RULE)
    assert label == STRIPES and shape.components == 4 and shape.spot_share == 0.0
    rng = np.random.default_rng(1)  # a smoothed random field thresholded: winding, branching bands
    k = np.fft.fftfreq(N)
    spectrum = np.exp(-((k[:, None] ** 2 + k[None, :] ** 2) - 0.06**2) ** 2 / 1e-5)
    maze = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((N, N))) * spectrum))
    assert label_point(maze, STEADY, RULE)[0] == STRIPES


def test_elongated_blobs_are_not_spots():
    v = np.full((N, N), 0.05)
    for row in range(4, N, 16):
        v[row : row + 4, 10:40] = 0.3  # 30 x 4 bars: compactness (2 * 34)^2 / (4 pi 120) ~ 3
    assert label_point(v, STEADY, RULE)[0] == STRIPES


def test_an_r_t_that_goes_up_and_down_is_oscillating_and_a_drift_is_not():
    t = np.linspace(0, 40 * np.pi, 2000)
    field = discs([(40, 40)], 6)
    assert oscillates(1 + 0.2 * np.sin(t), RULE)
    assert label_point(field, 1 + 0.2 * np.sin(t), RULE)[0] == OSCILLATING
    assert not oscillates(np.linspace(0.5, 1.5, 2000), RULE)  # a pattern still growing
    assert not oscillates(1 + 0.3 * (t / t[-1]) ** 2, RULE)  # curving, but one way
    rng = np.random.default_rng(2)
    assert not oscillates(1 + 1e-4 * rng.standard_normal(2000), RULE)  # jitter below the amplitude
    assert label_point(field, np.ones(2000), RULE)[0] == SPOTS


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_field_or_a_diverged_row_is_diverged(bad):
    v = discs([(40, 40)], 6)
    assert label_point(v, STEADY, RULE, diverged=True)[0] == DIVERGED
    v[3, 3] = bad
    assert label_point(v, STEADY, RULE)[0] == DIVERGED


def checkerboard(n: int = N) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n]
    return (-1.0) ** (x + y)


def test_a_grid_scale_checkerboard_is_unstable_and_round_off_below_none_std_is_none():
    rng = np.random.default_rng(3)
    assert grid_scale_share(checkerboard(), RULE.grid_band) == pytest.approx(1.0)
    v = 0.45 + 1e-2 * checkerboard() * (1 + 0.3 * rng.standard_normal((N, N)))
    label, shape = label_point(v, STEADY, RULE)
    assert label == UNSTABLE and shape.grid_share > 0.8
    # float32 round-off left on a resting field near the boundary sits in the slowest-decaying, grid-scale modes
    label, shape = label_point(0.45 + 3e-8 * checkerboard(), STEADY, RULE)
    assert label == NONE and shape.grid_share > 0.8
    y, x = np.mgrid[0:N, 0:N]  # a checkerboard in patches, with a slow background: one-cell spots to the old rule
    patchy = 0.3 + 0.05 * np.sin(2 * np.pi * x / N) + 0.1 * checkerboard() * (np.sin(2 * np.pi * 3 * y / N) > 0)
    label, shape = label_point(patchy, STEADY, RULE)
    assert label == UNSTABLE and shape.components > N * N / 8


def test_white_noise_and_real_patterns_have_little_grid_scale_variance():
    rng = np.random.default_rng(4)
    white = grid_scale_share(rng.standard_normal((N, N)), RULE.grid_band)
    assert 0.1 < white < 0.3 < RULE.grid_share  # the band's share of the modes
    spots = discs([(y, x) for y in range(8, N, 24) for x in range(8, N, 24)], 5)
    assert grid_scale_share(spots, RULE.grid_band) < 0.05
    assert label_point(spots + 0.002 * checkerboard(), STEADY, RULE)[0] == SPOTS  # a small ripple stays a pattern
    assert grid_scale_share(np.full((N, N), 0.3), RULE.grid_band) == 0.0


def test_a_real_unstable_row_is_unstable_and_the_stable_scheme_labels_the_same_point_otherwise():
    """(F, k) = (0.0578, 0.0338) at dt = 2 (dx = 0.01: a 48 x 48 grid on a 0.48 domain), 400 steps."""
    from rdbench.balance import BalanceMeter
    from rdbench.study.cells import plugin
    from rdbench.systems.grayscott import TERMS, GrayScottSimulation

    found = plugin("rd")
    labels = {}
    for scheme in ("euler", "etdrk4"):
        settings = found.config.resolve("spot", "paper", {
            "feed": 0.0578, "kill": 0.0338, "grid_size": 48, "domain_length": 0.48, "steps": 400,
            "initial.square_size": 16, "kernel": "eager", "controls": {}, "allow_unstable": True, "scheme": scheme,
        }, found.system.Settings)
        sim = GrayScottSimulation([settings], [0])
        meter = BalanceMeter(1, TERMS)
        sim.run(meter)
        labels[scheme], shape = label_point(sim.v[0].numpy(), meter.result([0]).R_t, RULE)
        if scheme == "euler":
            assert shape.grid_share > 0.8 and shape.components > 48 * 48 / 4  # one-cell components
    assert labels == {"euler": UNSTABLE, "etdrk4": NONE}


def test_relabel_applies_the_rule_to_a_stored_table():
    import pandas as pd

    table = pd.DataFrame({
        "label": ["unstable", "unstable", "spots", "oscillating", "diverged", "none"],
        "v_std": [3e-8, 0.05, 0.05, 0.05, np.nan, 1e-4],
        "grid_share": [0.9, 1.0, 1e-5, 0.01, np.nan, 0.9],
    })
    assert list(relabel(table, RULE)) == ["none", "unstable", "spots", "oscillating", "diverged", "none"]
