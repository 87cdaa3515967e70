"""Planning a phase map: the (F, k) axes, its points, its config hash and its memory-sized chunks.

A map is every (feed, kill, seed) of two evenly spaced axes (``START:STOP:N``, as
``numpy.linspace``) and a list of seeds, each point a row of a batched Gray-Scott
simulation whose other settings all come from the system's config, profile and
``--set``. :func:`plan_map` resolves and checks everything before anything runs (a bad
range or setting is a ConfigError). Rows run in chunks: :func:`chunk_rows` fits as
many rows in the memory budget as the system's own estimate
(:meth:`~rdbench.systems.base.System.memory_bytes`, the one that refuses a too-big
``rdbench run``) plus the balance meter's series allows.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from rdbench.config import ConfigError, Settings, conf_dir, read_yaml, validate
from rdbench.memory import available_host_memory, check_fits

AXIS = re.compile(r"^\s*(?P<start>[^:]+):(?P<stop>[^:]+):(?P<n>[^:]+)\s*$")
SIZE = re.compile(r"^\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[KMGT]i?B|B)?\s*$", re.IGNORECASE)
UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
METER_BYTES = 8  # one float64 norm per recorded step, term and row; the meter's buffer may double
MAX_AXIS_POINTS = 4096
# What a map holds in host memory per point for its whole life, beside the chunk being simulated:
# the Point and its settings copy (1.5 KB measured with tracemalloc on a 128x128 smoke plan), its
# table row, and its float32 tile twice (kept per chunk, then stacked for the mosaic).
POINT_BYTES = 2048


class LabelRule(Settings):
    """The thresholds of the pattern label (:mod:`rdbench.phase.labels`)."""

    none_std: NonNegativeFloat
    level: float = Field(gt=0, lt=1)
    spot_compactness: PositiveFloat
    spot_share: float = Field(ge=0, le=1)
    window: float = Field(gt=0, le=1)
    oscillation_amplitude: NonNegativeFloat
    oscillation_crossings: PositiveInt
    grid_band: float = Field(gt=0, lt=1)
    grid_share: float = Field(gt=0, le=1)


class PhaseConfig(Settings):
    """The schema of ``conf/phase/<system>.yaml``."""

    memory_fraction: float = Field(gt=0, le=1)
    labels: LabelRule
    tile: PositiveInt
    marked_cases: list[str] = Field(default_factory=list)


def load_phase_config(system: str) -> PhaseConfig:
    path = conf_dir() / "phase" / f"{system}.yaml"
    if not path.exists():
        found = sorted(p.stem for p in (conf_dir() / "phase").glob("*.yaml"))
        raise ConfigError(f"no phase map for system {system!r}; allowed: {', '.join(found)}")
    return validate(PhaseConfig, read_yaml(path), str(path))


@dataclass(frozen=True)
class Axis:
    """``START:STOP:N``: N evenly spaced values from START to STOP inclusive (N = 1: START alone)."""

    start: float
    stop: float
    n: int

    @property
    def values(self) -> np.ndarray:
        return np.linspace(self.start, self.stop, self.n)

    def __str__(self) -> str:
        return f"{self.start:g}:{self.stop:g}:{self.n}"


def parse_axis(text: str, name: str) -> Axis:
    """Parse ``--feed 0.01:0.08:32``; anything else is a one-line ConfigError naming what is allowed."""
    allowed = f"allowed: START:STOP:N with 0 <= START < STOP and 2 <= N <= {MAX_AXIS_POINTS}, or START:START:1"
    match = AXIS.match(str(text))
    if not match:
        raise ConfigError(f"--{name} {text!r} is not START:STOP:N; {allowed}")
    try:
        start, stop = float(match["start"]), float(match["stop"])
        n = int(match["n"])
    except ValueError:
        raise ConfigError(f"--{name} {text!r}: START and STOP must be numbers, N an integer; {allowed}") from None
    if not (math.isfinite(start) and math.isfinite(stop)) or start < 0:
        raise ConfigError(f"--{name} {text!r}: rates must be finite and non-negative; {allowed}")
    if n < 1 or n > MAX_AXIS_POINTS or (n == 1 and start != stop) or (n > 1 and not start < stop):
        raise ConfigError(f"--{name} {text!r}: bad range; {allowed}")
    return Axis(start, stop, n)


def parse_size(text: str | int) -> int:
    """``2GB``, ``512MB``, ``1.5GiB`` or a number of bytes -> bytes (decimal kB/MB/GB, binary KiB/MiB/GiB)."""
    match = SIZE.match(str(text))
    if not match:
        raise ConfigError(f"--max-memory {text!r}: expected a size such as 2GB, 512MB, 1.5GiB or a number of bytes")
    size = int(float(match["number"]) * UNITS[(match["unit"] or "B").lower()])
    if size <= 0:
        raise ConfigError(f"--max-memory {text!r}: the budget must be positive")
    return size


@dataclass(frozen=True)
class Point:
    """One row of the map: an (F, k) point and a seed; ``index`` is its place in the table."""

    index: int
    feed: float
    kill: float
    seed: int
    settings: Any  # the system's Settings with this feed and kill


@dataclass(frozen=True)
class PhasePlan:
    """A resolved map: the axes, seeds, shared settings, its points and the map's own config."""

    system: str
    profile: str
    feed: Axis
    kill: Axis
    seeds: tuple[int, ...]
    settings: Any  # shared settings (feed/kill of the profile, overwritten per point; no controls)
    overrides: Mapping[str, Any]
    config: PhaseConfig
    points: tuple[Point, ...]
    marked: Mapping[str, tuple[float, float]]  # case -> (feed, kill) of the paper's points
    variant: str = ""  # shown in the run name: the second setting of a --compare map

    @property
    def config_hash(self) -> str:
        """Everything that shapes the table: system, axes, seeds, settings and the label rule."""
        payload = json.dumps(
            {"system": self.system, "feed": str(self.feed), "kill": str(self.kill), "seeds": list(self.seeds),
             "settings": self.settings.model_dump(mode="json"), "labels": self.config.labels.model_dump(),
             "tile": self.config.tile},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        base = f"phase:{self.system} {self.feed.n}x{self.kill.n} seeds={','.join(map(str, self.seeds))}"
        base = base if self.profile == "paper" else f"{base} [{self.profile}]"
        return f"{base} ({self.variant})" if self.variant else base

    def row_bytes(self, system_impl: Any) -> int:
        """One row's memory: the system's estimate for a batch of one, plus its share of the meter."""
        one = system_impl.memory_bytes([self.settings])
        recorded = math.ceil(self.settings.steps / self.settings.record_every) + 1
        return int(one) + 2 * recorded * 4 * METER_BYTES


def plan_map(
    system: str,
    feed: str,
    kill: str,
    seeds: Sequence[int] = (0,),
    profile: str = "paper",
    overrides: Mapping[str, Any] | None = None,
    variant: str = "",
) -> PhasePlan:
    """Resolve and check a whole map before anything runs (any problem: one-line ConfigError)."""
    config = load_phase_config(system)
    feed_axis, kill_axis = parse_axis(feed, "feed"), parse_axis(kill, "kill")
    seeds = tuple(seeds) or (0,)
    for seed in seeds:
        if not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"bad seed {seed!r}: seeds are non-negative integers")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seed repeats a seed: {list(seeds)}")
    check_map_size(feed_axis.n * kill_axis.n * len(seeds), config)
    from rdbench.study.cells import plugin  # torch: after the size check

    found = plugin(system)
    overrides = dict(overrides or {})
    for key in ("feed", "kill", "controls"):
        if key in overrides or any(k.startswith(key + ".") for k in overrides):
            raise ConfigError(f"--set {key}: a phase map sets feed and kill per point and runs no controls")
    base = found.config.resolve(found.config.spec.default_case, profile, overrides, found.system.Settings)
    base = base.model_copy(update={"controls": {}})
    if "allow_unstable" in type(base).model_fields:  # a map runs unstable points and labels them
        base = base.model_copy(update={"allow_unstable": True})
    points = []
    for f in feed_axis.values:
        for k in kill_axis.values:
            settings = base.model_copy(update={"feed": float(f), "kill": float(k)})
            found.system.check(settings)
            for seed in seeds:
                points.append(Point(len(points), float(f), float(k), seed, settings))
    marked = {}
    for case in config.marked_cases:
        s = found.config.resolve(case, profile, overrides, found.system.Settings)
        marked[case] = (float(s.feed), float(s.kill))
    return PhasePlan(system, profile, feed_axis, kill_axis, seeds, base, overrides, config, tuple(points), marked,
                     variant)


def check_map_size(points: int, config: PhaseConfig) -> None:
    """Refuse (ConfigError) a map whose points alone need more host memory than is available,
    before any point is built: planning 4096 x 4096 points would otherwise grow for minutes."""
    check_fits(points * (POINT_BYTES + 2 * config.tile**2 * 4), available_host_memory(),
               f"a map of {points} points (its plan, table and tiles)", "use fewer points per axis or fewer seeds")


def budget(max_memory: str | int | None, free: int | None, fraction: float) -> int:
    """The memory budget: ``--max-memory``, else ``fraction`` of what the device has free."""
    if max_memory is not None:
        return parse_size(max_memory)
    if free is None:
        raise ConfigError("cannot tell how much memory the device has; give --max-memory (e.g. 2GB)")
    return int(free * fraction)


def chunk_rows(row_bytes: int, budget_bytes: int) -> int:
    """How many rows fit in the budget (at least one, else a ConfigError naming both)."""
    rows = budget_bytes // row_bytes
    if rows < 1:
        raise ConfigError(
            f"memory budget {budget_bytes} bytes ({budget_bytes / 2**20:.2f} MiB) is below one row's "
            f"{row_bytes / 2**20:.2f} MiB; "
            f"give a larger budget or a smaller grid_size"
        )
    return int(rows)


def size_chunks(plan: PhasePlan, device: Any, max_memory: str | int | None = None) -> tuple[int, int]:
    """(rows per chunk, budget in bytes) of ``plan`` on ``device``: ``--max-memory`` or the default
    fraction of what the device has; a budget below one row is a ConfigError."""
    from rdbench.study.cells import plugin
    from rdbench.systems.base import available_memory

    total = budget(max_memory, None if max_memory is not None else available_memory(device),
                   plan.config.memory_fraction)
    rows = chunk_rows(plan.row_bytes(plugin(plan.system).system), total)
    return min(rows, len(plan.points)), total


def plan_grid_maps(grid_plan: Any, overrides: Mapping[str, Any], device: Any) -> list[tuple[PhasePlan, int, int]]:
    """The ``phase:`` entries of a grid file (a :class:`~rdbench.study.grid.GridPlan`) as (plan, rows
    per chunk, budget bytes), every one checked before any run; ``overrides`` (``--set``) win."""
    maps = []
    for index, entry in enumerate(grid_plan.spec.phase):
        try:
            planned = plan_map(entry.system, entry.feed, entry.kill, entry.seeds or grid_plan.spec.seeds,
                               entry.profile or grid_plan.spec.profile, {**entry.overrides, **overrides})
            maps.append((planned, *size_chunks(planned, device, entry.max_memory)))
        except ConfigError as exc:
            raise ConfigError(f"{grid_plan.path}: phase[{index}] (system {entry.system!r}): {exc}") from None
    return maps


def chunks(indices: Sequence[int], rows: int) -> list[list[int]]:
    """Consecutive runs of at most ``rows`` point indices, in order."""
    indices = list(indices)
    return [indices[i : i + rows] for i in range(0, len(indices), rows)]
