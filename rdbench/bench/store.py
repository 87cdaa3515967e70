"""``rdbench bench store``: N processes log a cell each into one tracking store at once.

What a scale-out executor does to the store, measured: N worker processes (spawned,
MLflow imported, then released together by a barrier) each log one realistic cell
through rdbench's own :class:`~rdbench.tracking.TrackedRun`: a run with rdbench's
tags, ~60 params, a few 1000-5000 point series in ``log_batch`` calls of 1000
points, summary metrics, a few artifacts (two CSV files and a JSON dict), then
FINISHED. All of them create the same fresh experiment at the same moment (as the
cells of a new study do), and against a fresh sqlite file they also create the
store itself; with ``experiment_exists`` the benchmark creates the experiment (and
the store) first, as a driver opening the study's parent run does.

Afterwards the store is read back: a cell has *landed* when it has a FINISHED run
holding every param, every point of every series and every artifact. Reported per
store and N: runs expected / landed, runs incomplete, duplicated or left RUNNING,
errors (by operation and message), retries (the worker's own, ``retries`` per
operation, and the HTTP retries MLflow's REST client made underneath), wall time
from the barrier to the last worker, and the workers' peak resident memory.

Targets (``run_store_benchmark``): ``server`` (a temporary PostgreSQL-backed MLflow
server, :mod:`rdbench.tracking.server`), ``sqlite-fresh`` (a file that does not
exist yet), ``sqlite-existing`` (a file whose schema exists), or any tracking URI.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing as mp
import os
import queue
import resource
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TARGETS = ("server", "sqlite-fresh", "sqlite-existing")
BENCH_TAG = "rdbench.bench_id"
SERIES_NAMES = ("reaction_t", "diffusion_t", "R_t", "R_t_norm", "loss", "grad_norm")


@dataclass(frozen=True)
class CellShape:
    """What one benchmark cell logs (the defaults resemble an rdbench grid cell)."""

    params: int = 60
    series: int = 4
    points: int = 2000
    artifacts: int = 3  # two CSV files and a JSON dict (at least 1)

    def __post_init__(self):
        if not 1 <= self.series <= len(SERIES_NAMES):
            raise ValueError(f"series must be 1..{len(SERIES_NAMES)}, got {self.series}")
        if self.params < 1 or self.points < 1 or self.artifacts < 1:
            raise ValueError("params, points and artifacts must be at least 1")


@dataclass
class StoreBenchResult:
    """One measurement: ``processes`` cells written at once into ``uri``."""

    label: str
    uri: str
    processes: int
    expected: int
    landed: int
    incomplete: int  # runs present but not FINISHED with all their data
    duplicates: int  # extra runs for a cell that already has one
    running_left: int  # runs still RUNNING after every worker ended
    errors: int  # cells whose worker gave up (an operation failed after its retries)
    error_kinds: dict[str, int] = field(default_factory=dict)
    retries: int = 0  # operations the workers retried
    http_retries: int = 0  # retries inside MLflow's REST client (urllib3)
    wall_s: float = 0.0
    worker_peak_rss_mb: float = 0.0
    read_back_error: str | None = None  # the store could not be read afterwards: nothing counted landed

    @property
    def lost(self) -> int:
        return self.expected - self.landed


# --------------------------------------------------------------------------- worker


class _RetryCounter(logging.Handler):
    """Counts urllib3's "Incremented Retry" records: one per HTTP retry MLflow's client makes."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record):
        if record.getMessage().startswith("Incremented Retry"):
            self.count += 1


WORKER_ENV = {
    # MLflow 3.17.2's telemetry thread, when its config fetch fails (no internet), pops
    # _MLFLOW_TELEMETRY_SESSION_ID from os.environ while a request may be reading the
    # environment: that request fails with KeyError '_MLFLOW_TELEMETRY_SESSION_ID' (seen in
    # 1 of 16 workers). Off here, so that the benchmark measures the store.
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # no "View run at" line per run
}


def _cell_worker(index: int, uri: str, experiment: str, bench_id: str, shape: CellShape,
                 retries: int, barrier, results) -> None:
    """One benchmark cell, in its own process; puts one dict on ``results``."""
    os.environ.update(WORKER_ENV)
    counter = _RetryCounter()
    retry_log = logging.getLogger("urllib3.util.retry")
    retry_log.setLevel(logging.DEBUG)
    retry_log.addHandler(counter)
    retry_log.propagate = False
    import numpy as np
    from mlflow.tracking import MlflowClient

    from rdbench.tracking.runs import TrackedRun

    report = {"index": index, "ok": False, "error": None, "retries": 0}
    rng = np.random.default_rng(index)
    params = {f"p{i:02d}": float(rng.random()) for i in range(shape.params)}
    steps = list(range(shape.points))
    series = {name: rng.random(shape.points).tolist() for name in SERIES_NAMES[: shape.series]}
    tmp = Path(tempfile.mkdtemp(prefix="rdbench-bench-store-"))
    csv_series = tmp / "model_series.csv"
    csv_series.write_text("step," + ",".join(series) + "\n" + "\n".join(
        f"{s}," + ",".join(f"{series[n][s]:.6g}" for n in series) for s in steps) + "\n")
    csv_samples = tmp / "model_samples.csv"
    csv_samples.write_text("sample,M_react,M_diff,R\n" + "\n".join(
        f"{i},{rng.random():.6g},{rng.random():.6g},{rng.random():.6g}" for i in range(64)) + "\n")

    def attempt(op: str, fn: Callable[[], object]):
        for k in range(retries + 1):
            try:
                return fn()
            except Exception as exc:
                if k == retries:
                    raise _OpFailed(op, exc) from exc
                report["retries"] += 1
                time.sleep(0.2 * 2**k)

    run = None
    try:
        barrier.wait(timeout=600)
        t0 = time.monotonic()
        tags = {"rdbench.system": "bench", "rdbench.case": f"c{index}", "rdbench.seed": str(index),
                "rdbench.profile": "bench", "rdbench.kind": "cell", BENCH_TAG: bench_id}
        # the client's first call opens the store (and, on a fresh sqlite file, creates its schema)
        run = attempt("create run", lambda: TrackedRun.create(MlflowClient(uri), experiment,
                                                              f"cell-{index:03d}", tags))
        attempt("log params", lambda: run.log_params(params))
        attempt("log metrics", lambda: run.log_metrics({"M_react": 0.3, "M_diff": 0.3, "R": 1.0}))
        for name, values in series.items():
            attempt(f"log series {name}", lambda n=name, v=values: run.log_series(n, v, steps))
        artifacts = [lambda: run.log_artifact(csv_series, "balance"),
                     lambda: run.log_dict({"cell": index, "settings": params}, "config.json"),
                     lambda: run.log_artifact(csv_samples, "balance")]
        for i in range(shape.artifacts):
            if i < len(artifacts):
                attempt(f"artifact {i}", artifacts[i])
            else:
                attempt(f"artifact {i}", lambda i=i: run.log_dict({"extra": i}, f"extra/{i}.json"))
        attempt("set_terminated", run.finish)
        report["ok"] = True
        report["seconds"] = time.monotonic() - t0
    except _OpFailed as failed:
        report["error"] = f"{failed.op}: {_one_line(failed.cause)}"
        if run is not None:
            try:
                run.fail(failed.cause)
            except Exception as exc:  # the store refused even that: the run stays as it is
                report["error"] += f" (and marking it FAILED failed: {_one_line(exc)})"
    except Exception as exc:  # the barrier broke, or a bug here
        report["error"] = f"worker: {_one_line(exc)}"
    finally:
        report["http_retries"] = counter.count
        report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        for path in tmp.iterdir():
            path.unlink()
        tmp.rmdir()
        results.put(report)


class _OpFailed(Exception):
    def __init__(self, op: str, cause: BaseException):
        super().__init__(op)
        self.op, self.cause = op, cause


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line; SQLAlchemy's statement and parameters cut to their start."""
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    sql = text.find(" [SQL: ")
    if sql >= 0:  # "... database is locked [SQL: INSERT INTO metrics ...] [parameters: ...] (Background ...)"
        text = text[: sql + 60] + " ...]"
    return text if len(text) <= 400 else f"{text[:180]} ... {text[-200:]}"


# --------------------------------------------------------------------------- one measurement


def bench_store(
    tracking_uri: str,
    *,
    processes: int = 8,
    shape: CellShape = CellShape(),
    retries: int = 0,
    experiment_exists: bool = False,
    label: str | None = None,
    timeout: float = 900.0,
) -> StoreBenchResult:
    """``processes`` workers log a cell each into ``tracking_uri`` at once; read the store back.

    ``experiment_exists``: this process creates the experiment (and so a fresh store's
    schema) before the workers start, as a driver that opens the study's parent run
    first would; otherwise every worker creates it at the same moment.
    """
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    ctx = mp.get_context("spawn")  # fresh interpreters: no MLflow client state is inherited
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    experiment = f"bench-store-{uuid.uuid4().hex[:8]}"
    if experiment_exists:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri).create_experiment(experiment)
    bench_id = uuid.uuid4().hex
    workers = [ctx.Process(target=_cell_worker, daemon=True,
                           args=(i, tracking_uri, experiment, bench_id, shape, retries, barrier, results))
               for i in range(processes)]
    for w in workers:
        w.start()
    barrier.wait(timeout=600)  # every worker has imported MLflow
    t0 = time.monotonic()
    reports = []
    deadline = t0 + timeout
    while len(reports) < processes and time.monotonic() < deadline:
        try:
            reports.append(results.get(timeout=1.0))
        except queue.Empty:
            if not any(w.is_alive() for w in workers) and results.empty():
                break
    wall = time.monotonic() - t0
    for w in workers:
        w.join(timeout=5)
        if w.is_alive():
            w.kill()
            w.join()
    kinds = collections.Counter(r["error"] for r in reports if r["error"])
    missing = processes - len(reports)
    if missing:
        kinds[f"worker: no report (died or timed out after {timeout:.0f} s)"] += missing
    result = StoreBenchResult(
        label=label or tracking_uri, uri=tracking_uri, processes=processes, expected=processes,
        landed=0, incomplete=0, duplicates=0, running_left=0, errors=sum(kinds.values()),
        error_kinds=dict(kinds), retries=sum(r["retries"] for r in reports),
        http_retries=sum(r["http_retries"] for r in reports), wall_s=wall,
        worker_peak_rss_mb=max((r["peak_rss_mb"] for r in reports), default=0.0))
    try:
        _read_back(result, experiment, bench_id, shape)
    except Exception as exc:
        result.read_back_error = _one_line(exc)
    return result


def _read_back(result: StoreBenchResult, experiment: str, bench_id: str, shape: CellShape) -> None:
    """Fill landed / incomplete / duplicates / running_left from what the store holds."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(result.uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return
    runs = client.search_runs([exp.experiment_id], f"tags.`{BENCH_TAG}` = '{bench_id}'",
                              max_results=10 * result.expected + 100)
    complete_cells: collections.Counter = collections.Counter()
    for run in runs:
        if run.info.status == "RUNNING":
            result.running_left += 1
        if _complete(client, run, shape):
            complete_cells[run.data.tags.get("rdbench.case")] += 1
        else:
            result.incomplete += 1
    result.landed = len(complete_cells)
    per_cell = collections.Counter(r.data.tags.get("rdbench.case") for r in runs)
    result.duplicates = sum(n - 1 for n in per_cell.values() if n > 1)


def _complete(client, run, shape: CellShape) -> bool:
    if run.info.status != "FINISHED" or len(run.data.params) < shape.params:
        return False
    for name in SERIES_NAMES[: shape.series]:
        if len(client.get_metric_history(run.info.run_id, name)) != shape.points:
            return False
    return _count_artifacts(client, run.info.run_id) >= shape.artifacts


def _count_artifacts(client, run_id: str, path: str | None = None) -> int:
    total = 0
    for entry in client.list_artifacts(run_id, path):
        total += _count_artifacts(client, run_id, entry.path) if entry.is_dir else 1
    return total


# --------------------------------------------------------------------------- the comparison


URI_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "file")


def check_targets(targets: Iterable[str]) -> None:
    """ValueError, one line, for a target that is neither a named one nor a tracking URI (a bare word
    would otherwise be taken as a folder of a file store and every cell counted as lost)."""
    for target in targets:
        scheme, sep, rest = target.partition("://")
        if target in TARGETS or (sep and rest and scheme.split("+")[0] in URI_SCHEMES):
            continue
        raise ValueError(f"unknown --target {target!r}; allowed: {', '.join(TARGETS)}, or a tracking URI "
                         f"({', '.join(s + '://...' for s in URI_SCHEMES)})")


def run_store_benchmark(
    targets: Iterable[str] = TARGETS,
    process_counts: Sequence[int] = (8, 16),
    *,
    shape: CellShape = CellShape(),
    retries: int = 0,
    experiment_exists: bool = False,
    workdir: str | Path | None = None,
    server_workers: int = 2,
    echo: Callable[[str], None] = print,
) -> list[StoreBenchResult]:
    """Every target x every N, one after another; prints each result as it comes and a table at the end.

    ``server`` starts a temporary PostgreSQL-backed MLflow server in ``workdir`` (a
    temporary folder by default) and stops it afterwards; when PostgreSQL or
    psycopg2 is missing it is reported and skipped. Each sqlite measurement gets a
    new file.
    """
    from rdbench.tracking import server as tracking_server

    check_targets(targets)
    own_tmp = None
    if workdir is None:
        own_tmp = tempfile.TemporaryDirectory(prefix="rdbench-bench-store-")
        workdir = own_tmp.name
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)  # PostgreSQL runs as its own user when rdbench runs as root
    echo(f"processes {list(process_counts)}; cell: {shape.params} params, "
         f"{shape.series} series x {shape.points} points, {shape.artifacts} artifacts; "
         f"worker retries per operation: {retries}; experiment "
         f"{'created before the workers start' if experiment_exists else 'created by all workers at once'}")
    results = []
    try:
        for target in targets:
            server_folder = None
            try:
                if target == "server":
                    server_folder = workdir / "server"
                    state = tracking_server.start(server_folder, mlflow_port=0, workers=server_workers,
                                                  echo=lambda line: echo(f"  [server] {line}"))
                    uris = {n: (f"server (PostgreSQL, {server_workers} workers)", state.local_uri)
                            for n in process_counts}
                elif target in ("sqlite-fresh", "sqlite-existing"):
                    uris = {n: (target, f"sqlite:///{workdir / f'{target}-{n}.db'}") for n in process_counts}
                    if target == "sqlite-existing":
                        from mlflow.tracking import MlflowClient

                        for _, uri in uris.values():
                            MlflowClient(uri).search_experiments()  # creates the schema
                else:
                    uris = {n: (target, target) for n in process_counts}
                for n in process_counts:
                    label, uri = uris[n]
                    result = bench_store(uri, processes=n, shape=shape, retries=retries,
                                         experiment_exists=experiment_exists, label=label)
                    results.append(result)
                    echo(format_results([result], header=False)[0])
            except tracking_server.ServerError as exc:
                echo(f"  {target}: skipped: {exc}")
            finally:
                if server_folder is not None and (server_folder / tracking_server.STATE_FILE).exists():
                    tracking_server.stop(server_folder)
    finally:
        if own_tmp is not None:
            own_tmp.cleanup()
    for line in format_results(results):
        echo(line)
    return results


def format_results(results: Sequence[StoreBenchResult], header: bool = True) -> list[str]:
    """A plain-text table, then one line per distinct error."""
    lines = []
    if header:
        lines.append(f"{'store':34} {'N':>3} {'landed':>7} {'lost':>5} {'errors':>6} {'retries':>7} "
                     f"{'http-retries':>12} {'dup':>4} {'running':>7} {'wall s':>7} {'peak MB':>8}")
    for r in results:
        lines.append(f"{r.label[:34]:34} {r.processes:>3} {r.landed:>3}/{r.expected:<3} {r.lost:>5} "
                     f"{r.errors:>6} {r.retries:>7} {r.http_retries:>12} {r.duplicates:>4} "
                     f"{r.running_left:>7} {r.wall_s:>7.1f} {r.worker_peak_rss_mb:>8.0f}")
    if header:
        for r in results:
            for kind, count in sorted(r.error_kinds.items()):
                lines.append(f"  {r.label} N={r.processes}: {count} x {kind}")
            if r.read_back_error:
                lines.append(f"  {r.label} N={r.processes}: reading the store back failed: {r.read_back_error}")
    return lines
