"""The Ray executor: each batch of cells one Ray task, the driver keeps the runs honest.

``rdbench grid CONF --executor ray [--address ADDR]``. The driver (this process) has
made the grid's parent run and found the cells already FINISHED; every batch that
runs together in-process (:func:`~rdbench.study.runner.batches`) becomes one Ray task
asking for the resources its system declares (``resources:`` in
``conf/systems/<name>.yaml``: ``cpu``, and ``gpu_on_cuda`` when the grid runs on
CUDA). The task calls the same :func:`~rdbench.study.runner.run_cells` as the
in-process executor, with the parent's run id and the driver's tracking URI, so the
cells' runs are the same: names, tags, params, metrics, series and artifacts.

Faults, handled by the driver, not by Ray's own retries (so that the dead attempt's
run is closed before the next one starts, and the reason is kept on it):

* a task whose worker process or node died (``WorkerCrashedError``,
  ``NodeDiedError``, the OOM killer...): the batch's runs left RUNNING under the
  parent are ended KILLED with the reason in ``rdbench.error``; the cells that did
  finish keep their run; the others run again, up to the system's
  ``resources.max_retries`` times, after which they are FAILED;
* a task whose code raised: its cells are FAILED with the error (not retried);
* Ctrl-C or SIGTERM on the driver: every task in flight is cancelled
  (``ray.cancel``: the cell sees a KeyboardInterrupt and ends its runs KILLED;
  after ``cancel_grace_s`` the worker is killed) and any run still RUNNING is
  ended KILLED by the driver.

Stores: a ``sqlite:///`` or local-path tracking URI is a file on the driver's
machine; on a cluster with more than one node the workers elsewhere cannot write
it, so it is refused (:func:`check_store`) before any run exists. A local Ray
instance (no ``--address``) writes into sqlite like several ``rdbench`` processes
do (the store's create lock and write retries, :mod:`rdbench.tracking.store`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import RunStatus

from rdbench.config import ConfigError, Resources
from rdbench.study.cells import Cell, plugin
from rdbench.study.runner import (
    FAILED,
    FINISHED,
    KILLED,
    CellReport,
    batches,
    check_memory,
    run_cells,
)
from rdbench.systems.base import RunContext, no_progress
from rdbench.tracking.runs import TrackedRun, one_line
from rdbench.tracking.store import client as tracking_client
from rdbench.tracking.store import search_runs, sqlite_path
from rdbench.tracking.store import tracking_uri as configured_uri
from rdbench.tracking.tags import KIND_CELL, TAG_HASH, TAG_KIND, TAG_PARENT

INSTALL_RAY = "pip install 'rdbench[ray]'"
SERVER_HINT = ("start a tracking server on the head node (`rdbench server start`) and point "
               "MLFLOW_TRACKING_URI at the http:// URI it prints")
REASON_CHARS = 600  # Ray's errors carry whole tracebacks: the error tag keeps their start


def file_store(uri: str) -> bool:
    """Whether ``uri`` is a store inside a file or folder of this machine (sqlite, file:, a path)."""
    if uri.startswith(("sqlite:", "file:")):
        return True
    return "://" not in uri and not uri.startswith("databricks")  # a bare path (``./mlruns``)


def check_store(uri: str, nodes: int) -> None:
    """Refuse (ConfigError, one line) a file store for a Ray cluster of more than one node."""
    if nodes > 1 and file_store(uri):
        raise ConfigError(
            f"tracking URI {uri!r} is a file on this machine, which the Ray workers on the cluster's "
            f"other {nodes - 1} node(s) cannot write; {SERVER_HINT}"
        )


def worker_uri(uri: str) -> str:
    """``uri`` as a worker in another folder must read it: a relative sqlite file or path made absolute."""
    if uri.startswith("sqlite:"):
        path = sqlite_path(uri)
        return f"sqlite:///{path.resolve()}" if path is not None and not path.is_absolute() else uri
    if uri.startswith("file:") and not uri.startswith("file:///"):
        return Path(uri[len("file:"):]).resolve().as_uri()
    if file_store(uri):
        return Path(uri).resolve().as_uri()
    return uri


def resources_of(cell: Cell) -> Resources:
    return plugin(cell.system, cell.config_path).config.spec.resources


def task_options(cell: Cell, device_type: str) -> dict[str, Any]:
    """The Ray task options of a batch whose first cell is ``cell`` (its system's ``resources``).

    Ray's own retries are off: the driver retries (see the module's docstring).
    """
    res = resources_of(cell)
    return {"num_cpus": res.cpu, "num_gpus": res.gpu_on_cuda if device_type == "cuda" else 0,
            "max_retries": 0, "retry_exceptions": False, "name": f"rdbench {cell.run_name}"}


def memory_refusal(cells: Sequence[Cell], device: str) -> str | None:
    """The body of a Ray task: :func:`check_memory` of one batch on this worker's device; the one-line
    refusal, or None when it fits."""
    import torch

    try:
        check_memory(cells, torch.device(device))
    except ConfigError as exc:
        return str(exc)
    return None


def run_batch(uri: str, cells: Sequence[Cell], experiment: str, ctx: RunContext, parent_run_id: str,
              claim: bool, reuse_finished: bool) -> list[tuple[str | None, str, str | None, dict]]:
    """The body of one Ray task: :func:`run_cells` into the driver's store; plain tuples back."""
    import mlflow

    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    if ctx.device.type == "cuda":  # Ray set CUDA_VISIBLE_DEVICES to the GPU(s) it gave this task
        import torch

        ctx = dataclasses.replace(ctx, device=torch.device("cuda"))
    reports = run_cells(cells, experiment, ctx, parent_run_id=parent_run_id, claim=claim,
                        reuse_finished=reuse_finished)
    return [(r.run_id, r.status, r.error, dict(r.metrics)) for r in reports]


@dataclass
class Attempt:
    """One batch in flight: its cells (grid-order index, cell) and which attempt this is (0: first)."""

    batch: list[tuple[int, Cell]]
    attempt: int = 0

    @property
    def max_retries(self) -> int:
        return resources_of(self.batch[0][1]).max_retries

    @property
    def hashes(self) -> set[str]:
        return {cell.config_hash for _, cell in self.batch}


class RayExecutor:
    """Runs each batch as a Ray task, on ``address`` (a running cluster) or a local Ray instance.

    Use it as a context manager: entering connects to Ray and checks the store
    (:func:`check_store`); leaving disconnects (and stops a local instance).
    ``num_cpus`` sizes a local instance (default: every CPU); ``cancel_grace_s`` is
    how long cancelled tasks get to end their runs themselves before being killed.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, uri: str | None = None,
                 cancel_grace_s: float = 10.0):
        self.address = address
        self.num_cpus = num_cpus
        self.uri = worker_uri(uri or configured_uri())
        self.cancel_grace_s = cancel_grace_s
        self.nodes = 0
        self._ray: Any = None
        self._owns = False  # whether entering started (or connected) Ray, and leaving must stop it

    def __enter__(self) -> RayExecutor:
        try:
            import ray
        except ImportError:
            raise ConfigError(f"--executor ray needs Ray, which is not installed: {INSTALL_RAY}") from None
        if self.address is not None and self.num_cpus is not None:
            raise ConfigError("--workers sizes a local Ray instance; a cluster (--address) has the CPUs its nodes "
                              "were started with")
        kwargs: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False}
        if self.address is None:  # "local": a new instance, never a cluster found on this machine
            kwargs.update(num_cpus=self.num_cpus, include_dashboard=False)
        if not ray.is_initialized():
            self._owns = True
            try:
                ray.init(address=self.address or "local", **kwargs)
            except Exception as exc:  # noqa: BLE001 - no address, a refused token, a version mismatch: one line
                where = f"the Ray cluster at {self.address!r}" if self.address else "a local Ray instance"
                raise ConfigError(f"cannot connect to {where}: {one_line(exc)[:REASON_CHARS]} (a cluster with "
                                  "token authentication needs its token: RAY_AUTH_TOKEN_PATH)") from None
        self._ray = ray
        self.nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        try:
            check_store(self.uri, self.nodes)
        except ConfigError:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._ray is not None and self._owns:
            with contextlib.suppress(Exception):
                self._ray.shutdown()
        self._ray = None

    def check(self, cells: Sequence[Cell], ctx: RunContext) -> None:
        """Refuse (ConfigError) a batch that asks for more CPUs or GPUs than the whole cluster has
        (Ray would keep it pending for ever), or more memory than a worker it would run on has: the
        memory estimate runs as a Ray task with the batch's resources, on a worker's device, not the
        driver's. Called before the grid's parent run exists."""
        if self._ray is None:
            return
        have = self._ray.cluster_resources()
        self._check_resources(cells, ctx, have)
        remote = self._ray.remote(memory_refusal)
        refs = [remote.options(**task_options(batch[0][1], ctx.device.type)).remote(
            [cell for _, cell in batch], str(ctx.device)) for batch in batches(cells)]
        for refusal in self._ray.get(refs):
            if refusal:
                raise ConfigError(f"on a Ray worker: {refusal}")

    def _check_resources(self, cells: Sequence[Cell], ctx: RunContext, have: dict) -> None:
        for batch in batches(cells):
            opts = task_options(batch[0][1], ctx.device.type)
            for key, name in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
                if opts[key] > have.get(name, 0):
                    raise ConfigError(
                        f"{batch[0][1].run_name}: its system asks for {opts[key]:g} {name} per batch "
                        f"(resources in its config file) but the Ray cluster has {have.get(name, 0):g}; "
                        f"give the cluster {name}s or use another --device"
                    )

    # ------------------------------------------------------------------ running

    def run(self, cells, experiment, ctx, *, parent_run_id, on_report=None, claim=True, reuse_finished=True):
        """Run every batch of ``cells`` as a Ray task; one report per cell, in the order given."""
        if self._ray is None:
            raise RuntimeError("RayExecutor.run outside `with RayExecutor(...)`")
        ray = self._ray
        remote = ray.remote(run_batch)
        ctx = dataclasses.replace(ctx, progress=no_progress)  # no terminal in a worker
        reports: dict[int, CellReport] = {}
        pending: dict[Any, Attempt] = {}

        def report(index: int, item: CellReport) -> None:
            reports[index] = item
            if on_report:
                on_report(item)

        def submit(attempt: Attempt) -> None:
            first = attempt.batch[0][1]
            ref = remote.options(**task_options(first, ctx.device.type)).remote(
                self.uri, [cell for _, cell in attempt.batch], experiment, ctx, parent_run_id, claim,
                reuse_finished)
            pending[ref] = attempt

        for batch in batches(cells):
            submit(Attempt(batch))
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    self._collect(ref, pending.pop(ref), parent_run_id, report, submit)
        except KeyboardInterrupt:
            self._cancel(pending, parent_run_id, report)
            raise
        return [reports[i] for i in range(len(cells))]

    def _collect(self, ref: Any, attempt: Attempt, parent_run_id: str,
                 report: Callable[[int, CellReport], None], submit: Callable[[Attempt], None]) -> None:
        """Report a batch that ended; close and retry one whose worker died."""
        ray = self._ray
        try:
            results = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the cells' code raised past run_cells: no retry
            error = one_line(exc)[:REASON_CHARS]
            self._close_running(parent_run_id, attempt.hashes, RunStatus.FAILED, error)
            for index, cell in attempt.batch:
                report(index, CellReport(cell, None, FAILED, error=error))
            return
        except ray.exceptions.RayError as exc:  # the worker process or its node died
            self._retry(attempt, exc, parent_run_id, report, submit)
            return
        for (index, cell), (run_id, status, error, metrics) in zip(attempt.batch, results, strict=True):
            report(index, CellReport(cell, run_id, status, error=error, metrics=metrics))

    def _retry(self, attempt: Attempt, exc: BaseException, parent_run_id: str,
               report: Callable[[int, CellReport], None], submit: Callable[[Attempt], None]) -> None:
        tries = attempt.max_retries + 1
        again = attempt.attempt + 1 < tries
        why = (f"KILLED: its Ray worker died mid-cell (process killed or node lost), attempt "
               f"{attempt.attempt + 1} of {tries}{', run again' if again else ''}: {one_line(exc)}")[:REASON_CHARS]
        done = self._close_running(parent_run_id, attempt.hashes, RunStatus.KILLED, why)
        rest = []
        for index, cell in attempt.batch:
            run = done.get(cell.config_hash)
            if run is not None:  # it finished before the worker died
                report(index, CellReport(cell, run.info.run_id, FINISHED, metrics=dict(run.data.metrics)))
            else:
                rest.append((index, cell))
        if not rest:
            return
        if again:
            submit(Attempt(rest, attempt.attempt + 1))
            return
        for index, cell in rest:
            report(index, CellReport(cell, None, FAILED, error=why))

    def _cancel(self, pending: dict[Any, Attempt], parent_run_id: str,
                report: Callable[[int, CellReport], None]) -> None:
        """Ctrl-C: cancel every task in flight, then end whatever they left RUNNING as KILLED."""
        ray = self._ray
        refs = list(pending)
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref)  # a KeyboardInterrupt in the task: run_cells ends its runs KILLED
        left = refs
        with contextlib.suppress(Exception):
            _, left = ray.wait(refs, num_returns=len(refs), timeout=self.cancel_grace_s)
        for ref in left:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        why = "KILLED: the grid's driver was interrupted (Ctrl-C or SIGTERM) and cancelled this cell's Ray task"
        self._close_running(parent_run_id, set().union(*(a.hashes for a in pending.values())),
                            RunStatus.KILLED, why)
        for ref, attempt in pending.items():
            try:  # a task may have ended on its own meanwhile
                results = ray.get(ref, timeout=0)
            except Exception:  # noqa: BLE001 - cancelled, killed or still unwinding: its cells are KILLED
                results = None
            for i, (index, cell) in enumerate(attempt.batch):
                if results is not None:
                    run_id, status, error, metrics = results[i]
                    report(index, CellReport(cell, run_id, status, error=error, metrics=metrics))
                else:
                    report(index, CellReport(cell, None, KILLED, error=why))

    # ------------------------------------------------------------------ the store

    def _close_running(self, parent_run_id: str, hashes: set[str], status: int, reason: str) -> dict[str, Any]:
        """End the runs of ``hashes`` left RUNNING under the parent (their process is gone); return
        the FINISHED runs of ``hashes`` by config hash (one search serves both)."""
        if not hashes:
            return {}
        client = tracking_client()
        parent = client.get_run(parent_run_id)
        runs = search_runs(client, [parent.info.experiment_id],
                           f"tags.`{TAG_PARENT}` = '{parent_run_id}' and tags.`{TAG_KIND}` = '{KIND_CELL}'")
        finished = {}
        for run in runs:
            key = run.data.tags.get(TAG_HASH)
            if key not in hashes:
                continue
            if run.info.status == "RUNNING":
                TrackedRun(client, run.info.run_id).end(status, reason)
            elif run.info.status == "FINISHED":
                finished[key] = run
        return finished
