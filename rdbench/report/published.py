"""Table 1 and Fig. 3 as published, read from ``conf/published.yaml``."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from rdbench.config import PUBLISHED, conf_dir, read_yaml, validate


class PublishedRow(BaseModel):
    """One row of Table 1 as published, with the final R_t of Fig. 3."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str
    cases: list[str] = Field(min_length=1, description="rdbench case names this row stands for")
    label: str
    M_react: float
    M_diff: float
    R: float
    R_final: float


class PublishedFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    rows: list[PublishedRow] = Field(min_length=1)


Published = dict[tuple[str, str], PublishedRow]


def load_published(path: str | Path | None = None) -> Published:
    """``(system, case) -> PublishedRow`` from ``conf/published.yaml`` (or ``path``)."""
    path = Path(path) if path else conf_dir() / f"{PUBLISHED}.yaml"
    spec = validate(PublishedFile, read_yaml(path), str(path))
    return {(row.system, case): row for row in spec.rows for case in row.cases}
