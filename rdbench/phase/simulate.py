"""One chunk of a phase map: its points as rows of one Gray-Scott batch, measured and labelled.

The rows advance together through :class:`~rdbench.systems.grayscott.GrayScottSimulation`
(one tensor, CPU or CUDA) and feed one :class:`~rdbench.balance.BalanceMeter`. Each row
gets its own M_react, M_diff (Eqs. 12, 15, 19), R (Eq. 18) and R_final (Eq. 20 at the
last recorded step), from its own series: a row that stops early (the profile's
early stop) or diverges keeps the series up to then. A row that turns NaN/Inf is
frozen (set to the trivial state u = 1, v = 0, so it costs nothing more and never
spreads NaN into a reduction), reported as diverged, and the others run on.
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

NAN = float("nan")


@dataclass
class ChunkResult:
    """A chunk's table rows (one dict per point, in order), final-v tiles and cost."""

    rows: list[dict]
    tiles: np.ndarray  # (points, tile, tile) float32: each final v, area-averaged
    wall_s: float
    cell_updates: int


def _finite_rows(sim: GrayScottSimulation) -> torch.Tensor:
    return torch.isfinite(sim.u).flatten(1).all(1) & torch.isfinite(sim.v).flatten(1).all(1)


@torch.inference_mode()
def run_chunk(points: Sequence[Point], rule: LabelRule, tile: int, device: torch.device | str = "cpu") -> ChunkResult:
    """Simulate ``points`` as one batch and return their table rows, tiles and the time it took."""
    start = time.perf_counter()
    settings = points[0].settings
    sim = GrayScottSimulation([p.settings for p in points], [p.seed for p in points], device)
    meter = BalanceMeter(sim.batch, TERMS, device=sim.device)
    diverged = np.zeros(sim.batch, dtype=bool)
    stop = settings.early_stop
    for n in range(settings.steps):
        recorded = n % settings.record_every == 0 or n == settings.steps - 1
        check = (n + 1) % stop.check_every == 0 or n == settings.steps - 1
        v_before = sim.v.clone() if (check and stop.tolerance > 0) else None
        sim.advance(meter if recorded else None, n)
        if not check:
            continue
        bad = ~_finite_rows(sim)
        if bool(bad.any()):
            rows = torch.nonzero(bad).flatten().cpu().numpy()
            meter.stop_samples(rows[~diverged[rows]])
            diverged[rows] = True
            sim.u[bad], sim.v[bad] = 1.0, 0.0  # frozen: the trivial steady state
        if v_before is not None and n + 1 >= stop.min_steps:
            change = (sim.v - v_before).abs().flatten(1).mean(dim=1)
            meter.stop_samples(torch.nonzero(change < stop.tolerance).flatten().cpu().numpy())
        if meter.stopped().all():
            break
    tiles = F.adaptive_avg_pool2d(sim.v.unsqueeze(1).float(), tile).squeeze(1).cpu().numpy()
    final_v = sim.v.cpu().numpy()
    stopped = meter.stopped()
    rows = []
    for i, point in enumerate(points):
        result = meter.result([i])
        steps_run = int(result.steps[-1]) + 1 if stopped[i] and not diverged[i] else sim.steps_run
        label, shape = label_point(final_v[i], result.R_t, rule, diverged=bool(diverged[i]))
        summary = result.summary()
        metrics = {k: (NAN if diverged[i] else summary[k]) for k in ("M_react", "M_diff", "R", "R_final")}
        rows.append({
            "point": point.index, "feed": point.feed, "kill": point.kill, "seed": point.seed, **metrics,
            "label": label, "v_std": shape.v_std, "components": shape.components, "spot_share": shape.spot_share,
            "steps_run": steps_run, "early_stopped": bool(stopped[i] and not diverged[i]),
            "diverged": bool(diverged[i]),
        })
    tiles[diverged] = np.nan
    cell_updates = sim.batch * settings.grid_size**2 * sim.steps_run
    return ChunkResult(rows, tiles.astype(np.float32), time.perf_counter() - start, cell_updates)
