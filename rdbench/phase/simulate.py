"""One chunk of a phase map: its points as rows of one Gray-Scott batch, measured and labelled.

The rows advance together through :meth:`GrayScottSimulation.run
<rdbench.systems.grayscott.GrayScottSimulation.run>` (one tensor, CPU or CUDA, the
profile's step: fused or eager) and feed one :class:`~rdbench.balance.BalanceMeter`.
Each row gets its own M_react, M_diff (Eqs. 12, 15, 19), R (Eq. 18) and R_final
(Eq. 20 at the last recorded step), from its own series: a row that stops early (the
profile's early stop) keeps the series up to then. A row that turns NaN/Inf is frozen
by the simulation (``diverged_at``), reported as diverged with empty metrics, and the
others run on unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rdbench.balance import BalanceMeter
from rdbench.phase.labels import label_point
from rdbench.phase.plan import LabelRule, Point
from rdbench.systems.grayscott import TERMS, GrayScottSimulation
from rdbench.systems.grayscott_stability import stability_of

NAN = float("nan")


@dataclass
class ChunkResult:
    """A chunk's table rows (one dict per point, in order), final-v tiles and cost."""

    rows: list[dict]
    tiles: np.ndarray  # (points, tile, tile) float32: each final v, area-averaged
    wall_s: float
    cell_updates: int


@torch.inference_mode()
def run_chunk(points: Sequence[Point], rule: LabelRule, tile: int, device: torch.device | str = "cpu") -> ChunkResult:
    """Simulate ``points`` as one batch and return their table rows, tiles and the time it took."""
    start = time.perf_counter()
    settings = points[0].settings
    sim = GrayScottSimulation([p.settings for p in points], [p.seed for p in points], device)
    meter = BalanceMeter(sim.batch, TERMS, device=sim.device)
    sim.run(meter)  # a row that diverges is frozen there; the others run on
    diverged = sim.diverged_at >= 0
    tiles = F.adaptive_avg_pool2d(sim.v.unsqueeze(1).float(), tile).squeeze(1).cpu().numpy()
    tiles[diverged] = np.nan
    final_v = sim.v.cpu().numpy()
    stopped = meter.stopped()
    results = meter.results()  # one read-back of every row's series (not one per row)
    rows = []
    for i, point in enumerate(points):
        result = results[i]
        if diverged[i]:
            steps_run = int(sim.diverged_at[i])
        else:
            steps_run = int(result.steps[-1]) + 1 if stopped[i] else sim.steps_run
        label, shape = label_point(final_v[i], result.R_t, rule, diverged=bool(diverged[i]))
        summary = result.summary()
        metrics = {k: (NAN if diverged[i] else summary[k]) for k in ("M_react", "M_diff", "R", "R_final")}
        rows.append({
            "point": point.index, "feed": point.feed, "kill": point.kill, "seed": point.seed, **metrics,
            "label": label, "v_std": shape.v_std, "components": shape.components, "spot_share": shape.spot_share,
            "grid_share": shape.grid_share, "amplification": stability_of(point.settings).amplification,
            "steps_run": steps_run, "early_stopped": bool(stopped[i] and not diverged[i]),
            "diverged": bool(diverged[i]),
        })
    cell_updates = sim.batch * settings.grid_size**2 * sim.steps_run
    return ChunkResult(rows, tiles.astype(np.float32), time.perf_counter() - start, cell_updates)
