"""Cells: one (system, case, seed) with fully resolved settings, and how they are planned.

A *cell* becomes one MLflow run. :func:`plan_cells` resolves and checks cells before
anything starts, so bad input never leaves a half-written run. :func:`plugin` finds a
system's plug-in once per (system, config file) and keeps it with its loaded config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rdbench.config import ConfigError, SystemConfig, config_hash, flatten_settings, load_system
from rdbench.systems.base import System
from rdbench.systems.records import register_fetcher
from rdbench.tracking.models import fetch_model_files
from rdbench.tracking.tags import (
    KIND_CELL,
    TAG_CASE,
    TAG_HASH,
    TAG_KIND,
    TAG_LABEL,
    TAG_PROFILE,
    TAG_SEED,
    TAG_SYSTEM,
)

register_fetcher(fetch_model_files)  # `--model runs:/<id>/model`: systems read logged models through it
PAPER = "paper"  # the profile of the paper's settings: run names carry any other


@dataclass(frozen=True)
class Cell:
    """One (system, case, seed) with its resolved, validated settings.

    ``config_path`` is the system file used instead of ``conf/systems/<system>.yaml``
    (``rdbench run --config``), ``None`` for the shipped one. ``case_label`` is how the
    case reads in run names and tags (``csv:/data/x/runs.csv`` -> ``csv:runs.csv``); the
    whole case is a param and part of the config hash.
    """

    system: str
    case: str
    seed: int
    profile: str
    settings: Any
    overrides: Mapping[str, Any] = field(default_factory=dict)
    config_path: str | None = None
    case_label: str = ""

    @property
    def shown_case(self) -> str:
        return self.case_label or self.case

    @property
    def label(self) -> str:
        """``system/case`` plus any overrides, e.g. ``rd/spot[feed=0.03]``."""
        extra = ",".join(f"{k}={v}" for k, v in self.overrides.items())
        return f"{self.system}/{self.shown_case}" + (f"[{extra}]" if extra else "")

    @property
    def run_name(self) -> str:
        """``rd/spot/s0``, and the profile when it is not the paper's: ``rd/spot/s0 [smoke]`` (a smoke
        run's R is not comparable with the paper's; the seed is short so that the MLflow UI's run name
        column, which cuts long names, still shows the profile)."""
        base = f"{self.label}/s{self.seed}"
        return base if self.profile == PAPER else f"{base} [{self.profile}]"

    @property
    def config_hash(self) -> str:
        return config_hash(self.system, self.case, self.seed, self.settings)

    def names(self) -> tuple[str, ...]:
        """What ``--only`` patterns match against: system, system/case, the label, the run name."""
        return (self.system, f"{self.system}/{self.shown_case}", f"{self.system}/{self.case}", self.label,
                f"{self.label}/seed={self.seed}", f"{self.label}/s{self.seed}", self.run_name)

    def tags(self) -> dict[str, str]:
        return {
            TAG_KIND: KIND_CELL,
            TAG_SYSTEM: self.system,
            TAG_CASE: self.shown_case,
            TAG_LABEL: self.label,
            TAG_SEED: str(self.seed),
            TAG_PROFILE: self.profile,
            TAG_HASH: self.config_hash,
            **{f"rdbench.{name}": value
               for name, value in plugin(self.system, self.config_path).system.run_tags(self.settings).items()},
        }

    def params(self, device: str) -> dict[str, Any]:
        """What the run logs as params: the resolved settings the case reads (not those of other cases)."""
        unused = plugin(self.system, self.config_path).system.unused_settings(self.settings)
        settings = {k: v for k, v in flatten_settings(self.settings).items()
                    if not any(k == u or k.startswith(u + ".") for u in unused)}
        return {
            "system": self.system,
            "case": self.case,
            "seed": self.seed,
            "profile": self.profile,
            "device": device,
            **settings,
        }


@dataclass(frozen=True)
class Plugin:
    """A system's loaded config file and its plug-in instance."""

    config: SystemConfig
    system: System


_PLUGINS: dict[tuple[str, str | None], Plugin] = {}


def plugin(system: str, config_path: str | Path | None = None) -> Plugin:
    """The loaded config and plug-in of ``system`` (loaded once per process and file)."""
    key = (system, str(config_path) if config_path is not None else None)
    if key not in _PLUGINS:
        config = load_system(system, config_path)
        cls = config.plugin_class()
        if not issubclass(cls, System):
            raise ConfigError(f"{config.source}: plugin {config.spec.plugin!r} is not a rdbench System subclass")
        _PLUGINS[key] = Plugin(config, cls())
    return _PLUGINS[key]


def plan_cells(
    system: str,
    cases: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    profile: str = "paper",
    overrides: Mapping[str, Any] | None = None,
    config_path: str | Path | None = None,
) -> list[Cell]:
    """Resolve and check every cell up front; any problem raises ConfigError before a run exists."""
    found = plugin(system, config_path)
    overrides = dict(overrides or {})
    path = str(config_path) if config_path is not None else None
    cells = []
    for case in cases or [found.config.spec.default_case]:
        settings = found.config.resolve(case, profile, overrides, found.system.Settings)
        found.system.check(settings)
        for seed in seeds:
            if not isinstance(seed, int) or seed < 0:
                raise ConfigError(f"bad seed {seed!r}: seeds are non-negative integers")
            cells.append(Cell(system, case, seed, profile, settings, overrides, path,
                              found.config.case_label(case)))
    return cells


def replan(cell: Cell, overrides: Mapping[str, Any]) -> Cell:
    """``cell`` with ``overrides`` added to its own (``--set`` on a grid), checked again."""
    (out,) = plan_cells(cell.system, [cell.case], [cell.seed], cell.profile,
                        {**cell.overrides, **overrides}, cell.config_path)
    return out
