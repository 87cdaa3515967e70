"""Where a grid's cells run: the executor seam between :func:`~rdbench.study.execution.run_grid`
and :func:`~rdbench.study.runner.run_cells`.

The driver (``run_grid``) opens the grid's parent run, finds the cells already
FINISHED and hands the rest to an executor with the parent's run id. An executor
runs every batch of cells that runs together (:func:`~rdbench.study.runner.batches`)
and reports each cell as it ends. :class:`InProcess` runs them one batch after the
other in this process (the default); :class:`~rdbench.study.ray_executor.RayExecutor`
runs each batch as a Ray task. Either way the cells' runs are the same: names, tags,
params, metrics, series and artifacts, nested under the parent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from rdbench.study.cells import Cell
from rdbench.study.runner import CellReport, run_cells
from rdbench.systems.base import RunContext


class Executor(Protocol):
    """Runs cells under a parent run; returns one report per cell, in the order given."""

    name: str

    def check(self, cells: Sequence[Cell], ctx: RunContext) -> None:
        """Raise ConfigError if these cells cannot run here (before any run exists)."""

    def run(
        self,
        cells: Sequence[Cell],
        experiment: str,
        ctx: RunContext,
        *,
        parent_run_id: str,
        on_report: Callable[[CellReport], None] | None = None,
        claim: bool = True,
        reuse_finished: bool = True,
    ) -> list[CellReport]: ...


class InProcess:
    """Every batch in this process, one after the other (what ``rdbench grid`` does by default)."""

    name = "in-process"

    def check(self, cells, ctx) -> None:
        return None

    def run(self, cells, experiment, ctx, *, parent_run_id, on_report=None, claim=True, reuse_finished=True):
        return run_cells(cells, experiment, ctx, parent_run_id=parent_run_id, on_report=on_report,
                         claim=claim, reuse_finished=reuse_finished)
