"""The grid manifest: ``grid/cells.json`` on a grid's parent run.

A grid's parent run lists every cell of its plan with the run that holds the cell's
result: the child it ran, or the FINISHED run of an earlier grid it reused
(skip-finished). The report reads it back to build Table 1 in grid order. This
module is the only place that spells the file's name and layout.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rdbench.tracking.runs import TrackedRun
from rdbench.tracking.store import quiet_downloads

MANIFEST = "grid/cells.json"
NOT_RUN = "NOT_RUN"  # a cell the grid did not reach (interrupted before it)


@dataclass(frozen=True)
class ManifestRow:
    """One cell of a grid and the run that holds its result."""

    system: str
    case: str
    seed: int
    profile: str
    label: str
    config_hash: str
    run_id: str | None
    status: str  # FINISHED, SKIPPED (an earlier run reused), FAILED, KILLED, NOT_RUN
    error: str | None = None


def write_manifest(run: TrackedRun, grid: str, grid_file: str, rows: Sequence[ManifestRow]) -> None:
    """Write (or overwrite) the manifest of the grid whose parent is ``run``."""
    run.log_dict(
        {"grid": grid, "grid_file": grid_file, "cells": [dataclasses.asdict(r) for r in rows]}, MANIFEST
    )


def read_manifest(client: Any, run_id: str) -> list[ManifestRow]:
    """The manifest rows of parent run ``run_id`` (empty when it has none)."""
    with tempfile.TemporaryDirectory() as tmp, quiet_downloads():
        try:
            local = client.download_artifacts(run_id, MANIFEST, tmp)
        except Exception:  # noqa: BLE001 - no manifest (MlflowException or OSError): no rows
            return []
        cells = json.loads(Path(local).read_text()).get("cells", [])
    fields = {f.name for f in dataclasses.fields(ManifestRow)}
    return [ManifestRow(**{k: v for k, v in row.items() if k in fields}) for row in cells]
