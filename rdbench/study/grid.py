"""Grid files: a study of cells (system x case x seed) described in one file of ``conf/``.

A grid file (``conf/paper.yaml``, ``quick``, ``offline``, ``smoke``) lists entries; each
entry names a system, its cases, seeds, profile and any setting overrides, and expands
into cells. :func:`plan_grid` resolves and checks the whole grid before anything runs,
so a typo never leaves a half-written study; :func:`select_cells` is ``--only``.
Running a plan is :mod:`rdbench.study.execution`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from rdbench.config import ConfigError, available_grids, conf_dir, read_yaml, validate
from rdbench.study.cells import Cell, plan_cells, replan


class GridEntry(BaseModel):
    """One entry of a grid file: a system, its cases and seeds, and any overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str = Field(description="a file of conf/systems/ (rd, lstm, ddpm)")
    cases: list[str] = Field(min_length=1, description="cases (rd) or datasets (lstm, ddpm)")
    seeds: list[NonNegativeInt] | None = Field(None, min_length=1, description="default: the grid's seeds")
    profile: str | None = Field(None, description="default: the grid's profile")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted setting -> value")


class PhaseEntry(BaseModel):
    """A phase map of a grid file (``rdbench phase``'s arguments; planned by :mod:`rdbench.phase`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str = Field(description="a system with a conf/phase/<system>.yaml (rd)")
    feed: str = Field(description="START:STOP:N")
    kill: str = Field(description="START:STOP:N")
    seeds: list[NonNegativeInt] | None = Field(None, min_length=1, description="default: the grid's seeds")
    profile: str | None = Field(None, description="default: the grid's profile")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted setting -> value")
    max_memory: str | None = Field(None, description="as --max-memory (default: a fraction of the device's)")


class GridFile(BaseModel):
    """The schema of ``conf/<grid>.yaml``: cells, phase maps, or both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    profile: str = Field(description="profile of every entry that names none")
    seeds: list[NonNegativeInt] = Field(min_length=1, description="seeds of every entry that names none")
    cells: list[GridEntry] = Field(default_factory=list)
    phase: list[PhaseEntry] = Field(default_factory=list, description="phase maps, run after the cells")


@dataclass
class GridPlan:
    """A grid file resolved into checked cells, in the file's order.

    ``study`` names the study (the grid file's name unless ``--name`` gave one); ``partial``
    says how a run of part of the grid differs from the whole (``--only``, ``--set``), None
    for the whole grid as its file says."""

    name: str
    path: Path
    spec: GridFile
    cells: list[Cell]
    study: str = ""
    partial: str | None = None

    def __post_init__(self) -> None:
        self.study = self.study or self.name


def grid_path(name_or_path: str | Path) -> Path:
    """``quick`` -> ``conf/quick.yaml``; an existing path is taken as is."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in str(name_or_path):
        return path
    named = conf_dir() / f"{name_or_path}.yaml"
    if not named.exists():
        raise ConfigError(
            f"unknown grid {str(name_or_path)!r}; allowed: {', '.join(available_grids())}, or a grid file's path"
        )
    return named


def load_grid(name_or_path: str | Path) -> tuple[Path, GridFile]:
    path = grid_path(name_or_path)
    return path, validate(GridFile, read_yaml(path), str(path))


def plan_grid(
    name_or_path: str | Path,
    only: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> GridPlan:
    """Load, validate and resolve every cell; any problem is a ConfigError before a run exists.

    ``only`` keeps the cells matching any of the patterns (``ddpm``, ``ddpm/mnist``,
    ``rd/*``, ``rd/spot/seed=1``); ``overrides`` (``--set``) apply to every selected cell;
    either makes the plan ``partial``. ``name`` names the study (default: the file's name).
    """
    if name is not None and not name.strip():
        raise ConfigError("--name is empty; give the study a name, e.g. --name baseline")
    path, spec = load_grid(name_or_path)
    if not spec.cells and not spec.phase:
        raise ConfigError(f"{path}: 'cells' is empty and there is no 'phase' map; a grid needs at least one")
    cells: list[Cell] = []
    where: dict[str, str] = {}
    for index, entry in enumerate(spec.cells):
        here = f"{path}: cells[{index}] (system {entry.system!r})"
        try:
            planned = plan_cells(
                entry.system, entry.cases, entry.seeds or spec.seeds, entry.profile or spec.profile, entry.overrides
            )
        except ConfigError as exc:
            raise ConfigError(f"{here}: {exc}") from None
        for cell in planned:
            if cell.config_hash in where:
                raise ConfigError(f"{here}: cell {cell.run_name} repeats one of {where[cell.config_hash]}")
            where[cell.config_hash] = f"cells[{index}]"
            cells.append(cell)
    whole = len(cells)
    if only:
        cells = select_cells(cells, only, str(path))
    dropped = only if len(cells) < whole else ()  # an --only that keeps every cell leaves the grid whole
    if overrides:  # after --only, so a setting of one system need not exist in the others
        try:
            cells = [replan(c, overrides) for c in cells]
        except ConfigError as exc:
            raise ConfigError(f"--set: {exc}") from None
    return GridPlan(path.stem, path, spec, cells, study=(name or "").strip(), partial=partial_note(dropped, overrides))


def partial_note(only: Sequence[str], overrides: Mapping[str, Any] | None) -> str | None:
    """``--only rd/spot; --set steps=20``: how a run differs from its whole grid, or None."""
    parts = [*(f"--only {p}" for p in only), *(f"--set {k}={v}" for k, v in (overrides or {}).items())]
    return "; ".join(parts) or None


def select_cells(cells: Sequence[Cell], patterns: Sequence[str], source: str) -> list[Cell]:
    """The cells matching any pattern; a pattern that matches nothing is an error."""
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for c in cells for n in c.names()):
            rows = sorted({f"{c.system}/{c.case}" for c in cells})
            raise ConfigError(f"--only {pattern!r} matches no cell of {source}; cells: {', '.join(rows)}")
    return [c for c in cells if any(fnmatch.fnmatchcase(n, p) for p in patterns for n in c.names())]
