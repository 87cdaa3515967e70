"""Planning a map: axes, points, the config hash, and chunks sized to a memory budget."""

from __future__ import annotations

import numpy as np
import pytest

from rdbench.config import ConfigError
from rdbench.phase.plan import (
    budget,
    chunk_rows,
    chunks,
    parse_axis,
    parse_size,
    plan_map,
    size_chunks,
)
from rdbench.study.cells import plugin


def test_axes_are_linspace_and_points_run_feed_then_kill_then_seed():
    plan = plan_map("rd", "0.01:0.03:3", "0.05:0.06:2", [0, 1], "smoke")
    assert np.allclose(plan.feed.values, [0.01, 0.02, 0.03])
    assert len(plan.points) == 12
    first = plan.points[:3]
    assert [(p.feed, p.kill, p.seed) for p in first] == [(0.01, 0.05, 0), (0.01, 0.05, 1), (0.01, 0.06, 0)]
    assert all(p.settings.feed == p.feed and p.settings.kill == p.kill for p in plan.points)
    assert plan.settings.controls == {} and plan.settings.grid_size == 32  # the smoke profile, no controls
    assert plan.marked == {"spot": (0.029, 0.062), "stripe": (0.055, 0.062)}  # the paper's cases
    assert plan_map("rd", "0.02:0.02:1", "0.05:0.05:1").points[0].feed == 0.02


def test_the_hash_follows_what_shapes_the_table():
    a = plan_map("rd", "0.01:0.03:3", "0.05:0.06:2", [0], "smoke")
    assert a.config_hash == plan_map("rd", "0.01:0.03:3", "0.05:0.06:2", [0], "smoke").config_hash
    assert a.config_hash != plan_map("rd", "0.01:0.03:4", "0.05:0.06:2", [0], "smoke").config_hash
    assert a.config_hash != plan_map("rd", "0.01:0.03:3", "0.05:0.06:2", [1], "smoke").config_hash
    assert a.config_hash != plan_map("rd", "0.01:0.03:3", "0.05:0.06:2", [0], "smoke", {"steps": 61}).config_hash


def test_chunks_fit_the_budget_by_the_systems_own_estimate():
    plan = plan_map("rd", "0.01:0.08:8", "0.03:0.07:8", [0])  # paper settings: N = 200
    system = plugin("rd").system
    row = plan.row_bytes(system)
    assert row >= system.memory_bytes([plan.settings]) == system.memory_bytes([plan.points[5].settings])
    rows, total = size_chunks(plan, "cpu", "64MB")
    assert total == 64 * 10**6 and rows == total // row and 1 < rows < 64
    assert size_chunks(plan, "cpu", "1TB")[0] == 64  # never more rows than points
    parts = chunks(range(64), rows)
    assert sum(parts, []) == list(range(64)) and max(map(len, parts)) == rows
    assert budget(None, 10 * 2**30, 0.5) == 5 * 2**30  # default: a fraction of what the device has
    with pytest.raises(ConfigError, match="below one row"):
        chunk_rows(row, row - 1)
    with pytest.raises(ConfigError, match="give --max-memory"):
        budget(None, None, 0.5)


@pytest.mark.parametrize(("text", "size"), [("2GB", 2 * 10**9), ("512MB", 512 * 10**6), ("1.5GiB", 3 * 2**29),
                                            ("4096", 4096), ("64 kib", 2**16)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(("feed", "message"), [
    ("0.08:0.01:32", "bad range"), ("0.01:0.08:1", "bad range"), ("0.01:0.08:0", "bad range"),
    ("0.01:0.08", "is not START:STOP:N"), ("a:0.08:3", "must be numbers"), ("0.01:0.08:2.5", "must be numbers"),
    ("-0.01:0.08:3", "non-negative"), ("0.01:inf:3", "finite"), ("0.01:0.08:5000", "bad range"),
])
def test_bad_axes_are_one_line_naming_the_value_and_what_is_allowed(feed, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_axis(feed, "feed")
    assert f"--feed {feed!r}" in str(info.value) and "allowed: START:STOP:N" in str(info.value)


@pytest.mark.parametrize(("args", "message"), [
    (("rd", "0.01:0.03:3", "0.05:0.06:2", [0, 0]), "repeats a seed"),
    (("rd", "0.01:0.03:3", "0.05:0.06:2", [-1]), "bad seed -1"),
    (("rd", "0.01:0.03:3", "0.05:0.06:2", [0], "paper", {"kill": 0.1}), "sets feed and kill per point"),
    (("rd", "0.01:0.03:3", "0.05:0.06:2", [0], "paper", {"dt": 3}), "unstable dt=3"),
    (("rd", "0.01:0.03:3", "0.05:0.06:2", [0], "huge"), "unknown profile 'huge'"),
    (("lstm", "0.01:0.03:3", "0.05:0.06:2"), "no phase map for system 'lstm'; allowed: rd"),
])
def test_bad_maps_are_refused_before_anything_runs(args, message):
    with pytest.raises(ConfigError, match=message):
        plan_map(*args)
