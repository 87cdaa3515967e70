"""Where a phase map keeps its chunks: artifacts of its one MLflow run, written as each chunk ends.

Each finished chunk adds ``phase/chunks/chunk_<first point>.csv`` (its table rows, with
the chunk's wall time and cell updates) and ``.npy`` (its final-v tiles) to the map's
run. A map that is killed leaves those behind; the next ``rdbench phase`` with the same
config hash (:attr:`~rdbench.phase.plan.PhasePlan.config_hash`, the run's
``rdbench.phase_hash`` tag) reopens that run, reads them back and runs only the points
no chunk holds: it resumes at its first unfinished chunk.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from rdbench.phase.simulate import ChunkResult
from rdbench.tracking.runs import TrackedRun
from rdbench.tracking.store import quiet_downloads, retrying

CHUNKS = "phase/chunks"


def save_chunk(run: TrackedRun, chunk: ChunkResult) -> pd.DataFrame:
    """Log one finished chunk (table rows and tiles) to the map's run; return its table rows."""
    first = int(chunk.rows[0]["point"])
    frame = pd.DataFrame(chunk.rows).assign(chunk=first, chunk_wall_s=chunk.wall_s, chunk_cell_updates=chunk.cell_updates)
    with tempfile.TemporaryDirectory() as tmp:
        frame.to_csv(Path(tmp) / f"chunk_{first:06d}.csv", index=False)
        np.save(Path(tmp) / f"chunk_{first:06d}.npy", chunk.tiles)
        retrying(lambda: run.client.log_artifacts(run.run_id, tmp, CHUNKS))
    return frame


def log_frame(run: TrackedRun, frame: pd.DataFrame, artifact_file: str) -> None:
    """A table as a CSV artifact of the run."""
    folder, _, name = artifact_file.rpartition("/")
    with tempfile.TemporaryDirectory() as tmp:
        frame.to_csv(Path(tmp) / name, index=False)
        retrying(lambda: run.client.log_artifact(run.run_id, str(Path(tmp) / name), folder or None))


def load_chunks(run: TrackedRun) -> tuple[pd.DataFrame, dict[int, np.ndarray]]:
    """Every chunk a run holds: the table rows so far and the tile of each point done."""
    listed = retrying(lambda: run.client.list_artifacts(run.run_id, CHUNKS), "read")
    stems = sorted({Path(f.path).stem for f in listed if f.path.endswith(".csv")})
    frames, tiles = [], {}
    with tempfile.TemporaryDirectory() as tmp, quiet_downloads():
        for stem in stems:
            csv = Path(run.client.download_artifacts(run.run_id, f"{CHUNKS}/{stem}.csv", tmp))
            npy = Path(run.client.download_artifacts(run.run_id, f"{CHUNKS}/{stem}.npy", tmp))
            frame = pd.read_csv(csv)
            for point, tile in zip(frame["point"], np.load(npy), strict=True):
                tiles[int(point)] = tile
            frames.append(frame)
    if not frames:
        return pd.DataFrame(), {}
    return pd.concat(frames, ignore_index=True).sort_values("point", ignore_index=True), tiles
