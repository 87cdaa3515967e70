"""Running a phase map as one MLflow run: chunks in order, saved as they end, then table and figures.

:func:`run_phase_map` opens (or, to resume, reopens) the map's run, runs the points no
saved chunk holds in chunks of ``rows`` (:func:`~rdbench.phase.plan.size_chunks`), logs
each chunk as it ends (:mod:`rdbench.phase.record`) and, when every point is done, the
run's table of every (F, k, seed) (``phase/points.csv`` and ``mlflow.log_table``), the
per-(F, k) summary over seeds, the heatmaps and the mosaic (:mod:`rdbench.phase.figures`),
and its cost: wall time (the sum over chunks, across resumes) and cell updates per
second. The run is FINISHED when the map is complete, KILLED when interrupted (or
stopped by ``chunk_limit``), FAILED on an error; never left RUNNING.
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from mlflow.entities import RunStatus

from rdbench.config import ConfigError, flatten_settings
from rdbench.phase.figures import figures, summarise
from rdbench.phase.labels import LABELS
from rdbench.phase.landmarks import Landmarks
from rdbench.phase.plan import PhasePlan, chunks
from rdbench.phase.record import load_chunks, log_frame, save_chunk
from rdbench.phase.simulate import ChunkResult, run_chunk
from rdbench.tracking.environment import device_tags
from rdbench.tracking.liveness import owner_alive
from rdbench.tracking.runs import TrackedRun
from rdbench.tracking.store import client as tracking_client
from rdbench.tracking.store import experiment_id, retrying, search_runs
from rdbench.tracking.tags import (
    KIND_PHASE,
    TAG_ERROR,
    TAG_KIND,
    TAG_PARENT,
    TAG_PHASE_HASH,
    TAG_PROFILE,
    TAG_SYSTEM,
)

FINISHED, KILLED, SKIPPED = "FINISHED", "KILLED", "SKIPPED"


@dataclass
class PhaseResult:
    """How a map ended: its run, status, table (every point done so far) and cost."""

    run_id: str
    status: str
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    chunks_run: int = 0
    chunks_reused: int = 0
    wall_time_s: float = 0.0
    cell_updates: int = 0

    peak_rss_mib: float = 0.0  # this process's peak resident set
    peak_device_mib: float | None = None  # CUDA: the peak allocated by torch

    @property
    def cell_updates_per_s(self) -> float:
        return self.cell_updates / self.wall_time_s if self.wall_time_s else float("nan")


def _open_run(client, plan: PhasePlan, experiment: str, resume: bool,
              parent_run_id: str | None, device) -> tuple[TrackedRun | None, str | None]:
    """(the run to write to, or None when a FINISHED map is reused; the reused run's id)."""
    exp_id = experiment_id(client, experiment)
    tags = {TAG_KIND: KIND_PHASE, TAG_SYSTEM: plan.system, TAG_PROFILE: plan.profile,
            TAG_PHASE_HASH: plan.config_hash, **({TAG_PARENT: parent_run_id} if parent_run_id else {}),
            **device_tags(device)}
    if resume:
        runs = search_runs(client, [exp_id], f"tags.`{TAG_PHASE_HASH}` = '{plan.config_hash}'",
                           order_by=("attributes.start_time DESC",))
        if runs:
            last = runs[0]
            if last.info.status == "FINISHED":
                return None, last.info.run_id
            if last.info.status == "RUNNING" and owner_alive(last.data.tags) is not False:
                raise ConfigError(f"this map is running in another process (run {last.info.run_id}); "
                                  f"wait for it, or --no-resume to start another")
            retrying(lambda: client.update_run(last.info.run_id, status="RUNNING"))
            if TAG_ERROR in last.data.tags:  # the reason it stopped before is no longer true
                retrying(lambda: client.delete_tag(last.info.run_id, TAG_ERROR))
            return TrackedRun.adopt(client, last.info.run_id, tags), None
    return TrackedRun.create(client, experiment, plan.name, tags, parent_run_id=parent_run_id), None


def run_phase_map(
    plan: PhasePlan,
    experiment: str,
    device,
    rows: int,
    *,
    budget_bytes: int | None = None,
    resume: bool = True,
    parent_run_id: str | None = None,
    on_chunk: Callable[[ChunkResult, int, int], None] | None = None,
    chunk_limit: int | None = None,
) -> PhaseResult:
    """Run ``plan`` in chunks of ``rows`` points into one MLflow run (module docstring).

    ``resume`` continues the latest unfinished run of the same map, or reuses a
    FINISHED one (status SKIPPED); ``chunk_limit`` stops (KILLED) after that many new
    chunks, as a kill would. ``on_chunk(chunk, done, total)`` is called as chunks end.
    """
    client = tracking_client()
    run, reused = _open_run(client, plan, experiment, resume, parent_run_id, device)
    if run is None:
        return PhaseResult(reused, SKIPPED)
    try:
        run.log_params({
            "system": plan.system, "profile": plan.profile, "feed": str(plan.feed), "kill": str(plan.kill),
            "seeds": ",".join(map(str, plan.seeds)), "points": len(plan.points), "chunk_rows": rows,
            "max_memory_bytes": budget_bytes, "device": str(device),
            **{k: v for k, v in flatten_settings(plan.settings).items() if k not in ("feed", "kill", "controls")},
        })
        done, tiles = load_chunks(run)
        result = PhaseResult(run.run_id, KILLED, chunks_reused=int(done["chunk"].nunique()) if len(done) else 0)
        finished = set(done["point"].astype(int)) if len(done) else set()
        todo = chunks([p.index for p in plan.points if p.index not in finished], rows)
        frames = [done] if len(done) else []
        for number, indices in enumerate(todo):
            if chunk_limit is not None and number >= chunk_limit:
                result.table = pd.concat(frames, ignore_index=True)
                run.end(RunStatus.KILLED, f"stopped after {chunk_limit} chunk(s) (chunk limit)")
                return result
            chunk = run_chunk([plan.points[i] for i in indices], plan.config.labels, plan.config.tile, device)
            frames.append(save_chunk(run, chunk))
            tiles.update({i: tile for i, tile in zip(indices, chunk.tiles, strict=True)})
            result.chunks_run += 1
            if on_chunk:
                on_chunk(chunk, sum(len(f) for f in frames), len(plan.points))
        table = pd.concat(frames, ignore_index=True).sort_values("point", ignore_index=True)
        result.table = table
        per_chunk = table.drop_duplicates("chunk")
        result.wall_time_s = float(per_chunk["chunk_wall_s"].sum())
        result.cell_updates = int(per_chunk["chunk_cell_updates"].sum())
        result.peak_rss_mib, result.peak_device_mib = peak_memory(device)
        _log_map(run, plan, table, np.stack([tiles[i] for i in range(len(plan.points))]), result)
        run.finish()  # ArtifactsLost when what was logged is not all in the store
    except BaseException as exc:  # Ctrl-C, SIGTERM, a store or simulation error: never left RUNNING
        with contextlib.suppress(Exception):
            run.fail(exc)
        raise
    result.status = FINISHED
    return result


def peak_memory(device) -> tuple[float, float | None]:
    """(peak resident set of this process, peak CUDA memory torch allocated or None) in MiB."""
    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if torch.device(device).type == "cuda":
        return rss, torch.cuda.max_memory_allocated(device) / 2**20
    return rss, None


def _log_map(run: TrackedRun, plan: PhasePlan, table: pd.DataFrame, tiles: np.ndarray, result: PhaseResult) -> None:
    """The table, the per-(F, k) summary, the figures and the cost of a complete map."""
    import matplotlib.pyplot as plt

    points = table.drop(columns=["chunk_wall_s", "chunk_cell_updates"])
    log_frame(run, points, "phase/points.csv")
    run.log_table(points, "phase/points.json")
    summary = summarise(points)
    log_frame(run, summary, "phase/summary.csv")
    for stem, fig in figures(points, summary, tiles, plan.marked, Landmarks(plan.settings)).items():
        run.log_figure(fig, f"phase/{stem}.png")
        plt.close(fig)
    counts = points["label"].value_counts()
    run.log_metrics({
        "points": len(points), "wall_time_s": result.wall_time_s, "cell_updates": result.cell_updates,
        "cell_updates_per_s": result.cell_updates_per_s, "chunks_run": result.chunks_run,
        "chunks_reused": result.chunks_reused, "peak_rss_mib": result.peak_rss_mib,
        **({"peak_device_mib": result.peak_device_mib} if result.peak_device_mib is not None else {}),
        **{f"label_{name.replace('-', '_')}": int(counts.get(name, 0)) for name in LABELS},
    })
