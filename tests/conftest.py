"""Every shared fixture of the suite (test modules import none of each other).

A real MLflow sqlite store per test session, a fresh experiment per test, the smoke
grid run once per session, helpers as fixtures (``runs_of``, ``mlflow_run``...), and at
the end the real services: PostgreSQL + the MLflow server, a two-node Ray cluster.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

torch.set_num_threads(2)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory) -> Path:
    """Datasets and checkpoints of every test go to a temporary folder, never the home cache."""
    folder = tmp_path_factory.mktemp("data")
    os.environ["RDBENCH_DATA_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory) -> str:
    """A real sqlite tracking store (created once: its migrations take seconds)."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("MLFLOW_RUN_ID", None)
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.MlflowClient().search_experiments()  # create the schema now
    return uri


@pytest.fixture
def experiment(tracking_uri, monkeypatch) -> str:
    """A fresh experiment name for one test (runs of other tests do not leak in)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def mlflow_client(tracking_uri):
    import mlflow

    return mlflow.MlflowClient(tracking_uri)


@pytest.fixture(scope="session")
def runs_of():
    """``runs_of(client, experiment_name)``: all runs of an experiment (empty if it was never created)."""

    def runs(client, experiment_name: str):
        exp = client.get_experiment_by_name(experiment_name)
        if exp is None:
            return []
        return client.search_runs([exp.experiment_id], max_results=1000)

    return runs


@pytest.fixture(scope="session")
def mlflow_run():
    """``mlflow_run(entry_point, params, experiment=, tracking_uri=, cwd=, env=)``: `mlflow run <repo> -e ENTRY
    --env-manager local [--experiment-name EXP] -P k=v...` in a subprocess, from a virtualenv that is not
    activated (its bin folder off PATH); asserts that it succeeded and returns it."""

    def run(entry_point: str, params: dict, *, experiment: str, tracking_uri: str, cwd, env=None):
        mlflow_bin = shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")
        full_env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, **(env or {})}
        # as from a virtualenv that is not activated: its bin folder is not on PATH
        venv_bin = str(Path(sys.executable).parent)
        full_env["PATH"] = os.pathsep.join(p for p in full_env.get("PATH", "").split(os.pathsep) if p != venv_bin)
        full_env.pop("MLFLOW_RUN_ID", None)
        full_env.pop("MLFLOW_EXPERIMENT_NAME", None)
        command = [mlflow_bin, "run", str(REPO), "-e", entry_point, "--env-manager", "local"]
        if experiment is not None:
            command += ["--experiment-name", experiment]
        for key, value in params.items():
            command += ["-P", f"{key}={value}"]
        proc = subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    return run


@pytest.fixture
def one_thread():
    """Small convolutions run faster on one thread on a shared, busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def smoke(tracking_uri) -> SimpleNamespace:
    """``rdbench grid conf/smoke.yaml`` run once per session into its own experiment.

    Shared by the grid, report and figure tests: its experiment, parent run, output
    and a client on the store.
    """
    from click.testing import CliRunner
    from mlflow import MlflowClient

    from rdbench.cli import main
    from rdbench.config import conf_dir
    from rdbench.tracking.tags import TAG_GRID

    experiment = f"smoke-{uuid.uuid4().hex[:8]}"
    path = conf_dir() / "smoke.yaml"
    result = CliRunner().invoke(
        main, ["grid", str(path), "--experiment", experiment, "--device", "cpu", "--no-report"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri)
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    (parent,) = client.search_runs([exp_id], filter_string=f"tags.`{TAG_GRID}` = 'smoke'")
    return SimpleNamespace(experiment=experiment, parent=parent.info.run_id, output=result.output,
                           client=client, path=path)


@pytest.fixture(scope="session")
def fake_mnist():
    """``fake_mnist(root, folder="MNIST", n=12, seed=0)``: random MNIST-format IDX files under
    ``root/folder/raw`` (what torchvision's loader reads); returns the training images."""
    import gzip
    import struct

    import numpy as np

    def write_idx(folder: Path, images, labels, prefix: str, gz: bool = False) -> None:
        # MNIST's IDX format: big-endian magic (0x0803 images / 0x0801 labels), sizes, uint8 data
        folder.mkdir(parents=True, exist_ok=True)
        blobs = {
            f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 0x0803, *images.shape) + images.tobytes(),
            f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 0x0801, len(labels)) + labels.tobytes(),
        }
        for name, blob in blobs.items():
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(blob))
            else:
                (folder / name).write_bytes(blob)

    def make(root: Path, folder: str = "MNIST", n: int = 12, seed: int = 0):
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(Path(root) / folder / "raw", images, labels, "train")
        write_idx(Path(root) / folder / "raw", images[:3], labels[:3], "t10k")
        return images

    return make


@pytest.fixture(scope="session")
def smoke_cells(smoke) -> SimpleNamespace:
    """The smoke grid with its cells read back from the store, their row names, the rows with several seeds."""
    from rdbench.report.selection import select_runs
    from rdbench.report.table import cells_frame

    grid = smoke
    cells = cells_frame(select_runs(grid.client, parent_run_id=grid.parent).runs)
    rows = list(dict.fromkeys(f"{s.upper()} {c}" for s, c in zip(cells["system"], cells["case"], strict=True)))
    multi_seed = [r for r in rows if (cells["system"].str.upper() + " " + cells["case"] == r).sum() > 1]
    return SimpleNamespace(**vars(grid), cells=cells, rows=rows, multi_seed=multi_seed)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network (name resolution and connections fail at once, as on a machine without one) and an
    empty Hugging Face cache."""

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable (simulated offline)")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


WHEEL_PORT = 38111  # fixed, so the build argument (and Docker's layer cache) repeats between runs


@pytest.fixture
def wheel_server():
    """Serve a folder over loopback HTTP; the build reaches it through --network host."""
    servers = []

    def serve(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        try:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", WHEEL_PORT), handler)
        except OSError:  # taken: any free port (the pip layer is then rebuilt)
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server on loopback (sqlite backend, artifacts served), stopped at the end."""
    import signal
    import time
    import urllib.request

    folder = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", f"file://{folder / 'artifacts'}", "--serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


# =============================================================================================
# Real services: a PostgreSQL-backed MLflow server, and a two-node Ray cluster in a
# private network namespace. Each fixture starts the real thing once per session and always
# stops it, pass or fail, then checks that none of its processes is left. A test that needs a
# component this machine lacks SKIPS with the reason, except under RDBENCH_REQUIRE_SERVICES=1
# (set by .ci/run), where it FAILS. Start-up times are printed at the end of the session.
# =============================================================================================

SERVICE_START_S: dict[str, float] = {}  # what each service took to start, for the session summary


def require_service(reason: str):
    """Skip with ``reason``; fail instead where RDBENCH_REQUIRE_SERVICES is set (CI)."""
    if os.environ.get("RDBENCH_REQUIRE_SERVICES"):
        pytest.fail(f"RDBENCH_REQUIRE_SERVICES is set but {reason}")
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter):
    if SERVICE_START_S:
        terminalreporter.section("service start-up (the services fixtures)")
        for name, seconds in SERVICE_START_S.items():
            terminalreporter.write_line(f"{name}: {seconds:.1f} s")


def reachable_folder(prefix: str) -> Path:
    """A new folder under /tmp that PostgreSQL's own user can reach (pytest's tmp_path is 0700 root)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


def _require_postgres() -> None:
    import importlib.util

    from rdbench.tracking import server as ts

    try:
        ts.find_postgres_bin()
    except ts.ServerError as exc:
        require_service(str(exc))
    if importlib.util.find_spec("psycopg2") is None:
        require_service(f"psycopg2 is missing: {ts.INSTALL_PSYCOPG2}")


def _assert_server_gone(state) -> None:
    from rdbench import processes

    left = processes.session_members(state.mlflow_pid)
    if state.postgres is not None:
        left += [state.postgres.pid] if processes.alive(state.postgres.pid) else []
        left += processes.children(state.postgres.pid)
    assert not left, f"processes left behind by the tracking server: {left}"


@pytest.fixture(scope="session")
def tracking_server():
    """PostgreSQL + ``mlflow server --serve-artifacts`` on 127.0.0.1 (rdbench.tracking.server)."""
    _require_postgres()
    from rdbench.tracking import server as ts

    folder = reachable_folder("rdbench-test-server-")
    t0 = time.monotonic()
    state = ts.start(folder, mlflow_port=0, workers=1)
    SERVICE_START_S["PostgreSQL + MLflow server (first start: initdb, migrations)"] = time.monotonic() - t0
    try:
        yield state
    finally:
        ts.stop(folder)
        _assert_server_gone(state)
        shutil.rmtree(folder, ignore_errors=True)


class Netns:
    """A network namespace the tests made: ``lo`` plus one veth pair with private /30 addresses.

    Ray, and the servers its workers reach, run inside (every Ray node is 127.0.0.1
    there); the test process reaches a server inside at ``ns_ip`` through the veth.
    """

    def __init__(self):
        taken = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
        for _ in range(100):
            third, fourth = random.randrange(256), 4 * random.randrange(64)
            if f"10.213.{third}." not in taken:
                break
        self.host_ip, self.ns_ip = f"10.213.{third}.{fourth + 1}", f"10.213.{third}.{fourth + 2}"
        tag = f"{os.getpid() % 100000:05d}{random.randrange(16**3):03x}"
        self.name = f"rdbench-{tag}"
        self.veth_host, self.veth_ns = f"rdbh{tag}", f"rdbn{tag}"

    def create(self) -> None:
        ip = ["ip"]
        for args in (["netns", "add", self.name],
                     ["link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_ns],
                     ["link", "set", self.veth_ns, "netns", self.name],
                     ["addr", "add", f"{self.host_ip}/30", "dev", self.veth_host],
                     ["link", "set", self.veth_host, "up"]):
            subprocess.run(ip + args, check=True, capture_output=True)
        for args in (["link", "set", "lo", "up"],
                     ["addr", "add", f"{self.ns_ip}/30", "dev", self.veth_ns],
                     ["link", "set", self.veth_ns, "up"]):
            subprocess.run(self.inside(["ip", *args]), check=True, capture_output=True)

    def inside(self, command: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)  # takes the veth pair along
        subprocess.run(["ip", "link", "del", self.veth_host], capture_output=True)


@pytest.fixture(scope="session")
def netns():
    if os.geteuid() != 0:
        require_service("the Ray cluster runs in a private network namespace, which needs root")
    if not shutil.which("ip"):
        require_service("`ip` is missing: apt-get install iproute2")
    ns = Netns()
    try:
        ns.create()
    except subprocess.CalledProcessError as exc:
        ns.delete()
        require_service(f"cannot make a network namespace: {(exc.stderr or b'').decode().strip()}")
    try:
        yield ns
    finally:
        left = ns.pids()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        ns.delete()
        assert not left, f"processes left in network namespace {ns.name}: {left}"


@pytest.fixture(scope="session")
def netns_tracking_server(netns):
    """The PostgreSQL-backed MLflow server inside ``netns``, at http://NS_IP:5000 (reached by the
    Ray workers inside and by the test process through the veth)."""
    _require_postgres()
    from rdbench.tracking import server as ts

    folder = reachable_folder("rdbench-test-nsserver-")
    code = (f"import json; from rdbench.tracking import server as ts; "
            f"s = ts.start({str(folder)!r}, host={netns.ns_ip!r}, workers=1); print(s.tracking_uri)")
    t0 = time.monotonic()
    proc = subprocess.run(netns.inside([sys.executable, "-c", code]), capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": _pythonpath()})
    assert proc.returncode == 0, proc.stderr[-2000:]
    SERVICE_START_S["PostgreSQL + MLflow server in the namespace"] = time.monotonic() - t0
    state = ts.ServerState.read(folder)
    try:
        yield state
    finally:
        ts.stop(folder)  # by pid: works from outside the namespace
        _assert_server_gone(state)
        shutil.rmtree(folder, ignore_errors=True)


def _pythonpath() -> str:
    """This checkout first, so that Ray's workers and the drivers import the rdbench under test."""
    return os.pathsep.join(p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p)


RAY_PRELUDE = """
import json, os, sys, time
import ray
ray.init(address=os.environ["RDBENCH_TEST_RAY_ADDRESS"], logging_level="ERROR", log_to_driver=False)
"""


class RayCluster:
    """A Ray head and a second node on this machine, each its own ``ray start --block`` process
    (a session of its own) inside ``netns``, with token authentication on.

    The token: a file the fixture writes, named by RAY_AUTH_TOKEN_PATH with RAY_AUTH_MODE=token
    in the environment of every node and driver (nothing is written to ~/.ray).
    """

    HEAD_PORT = 6379  # the namespace is new: nothing else listens there

    def __init__(self, netns: Netns):
        self.netns = netns
        self.folder = Path(tempfile.mkdtemp(prefix="rdb-ray-", dir="/tmp"))  # short: Ray's socket paths
        token = self.folder / "auth_token"
        token.write_text(uuid.uuid4().hex + uuid.uuid4().hex)
        token.chmod(0o600)
        self.address = f"127.0.0.1:{self.HEAD_PORT}"
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("MLFLOW_", "RAY_", "PYTEST_"))}
        self.env.update({
            "PYTHONPATH": _pythonpath(), "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
            "RDBENCH_TEST_RAY_ADDRESS": self.address,
            # MLflow 3.17.2's telemetry thread, failing offline, pops an os.environ key that a
            # request may be reading (KeyError '_MLFLOW_TELEMETRY_SESSION_ID'): off in the workers
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # a lost node is declared dead after ~5 s instead of ~30 s
            "RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": "5",
        })
        self.ray = str(Path(sys.executable).parent / "ray")
        self.head: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.head_id = self.worker_id = ""

    def _start_node(self, args: list[str], log: str) -> subprocess.Popen:
        common = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                  "--object-store-memory", str(100 * 1024 * 1024), "--disable-usage-stats"]
        with open(self.folder / log, "ab") as out:
            return subprocess.Popen(self.netns.inside([self.ray, "start", *args, *common]), env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)

    def start(self) -> None:
        self.head = self._start_node(["--head", "--port", str(self.HEAD_PORT), "--include-dashboard",
                                      "false", "--temp-dir", str(self.folder / "t")], "head.log")
        self.start_worker()

    def start_worker(self) -> None:
        self.worker = self._start_node(["--address", self.address], "worker.log")
        nodes = self._wait_for_two_nodes()
        self.head_id, self.worker_id = nodes["head"], nodes["worker"]

    def _wait_for_two_nodes(self, timeout: float = 180) -> dict:
        code = textwrap.dedent("""
            import json, os, time, ray
            deadline = time.monotonic() + float(os.environ["WAIT_S"])
            while True:
                try:
                    ray.init(address=os.environ["RDBENCH_TEST_RAY_ADDRESS"], logging_level="ERROR",
                             log_to_driver=False)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            while True:
                alive = [n for n in ray.nodes() if n["Alive"]]
                if len(alive) >= 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.25)
            head = [n["NodeID"] for n in alive if "node:__internal_head__" in n["Resources"]]
            other = [n["NodeID"] for n in alive if "node:__internal_head__" not in n["Resources"]]
            print("RESULT", json.dumps({"head": head[0] if head else "", "worker": other[0] if other else ""}))
        """)
        proc = self.python(code, timeout=timeout + 30, env={"WAIT_S": str(timeout)})
        nodes = json.loads([x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1][7:])
        assert nodes["head"] and nodes["worker"], f"the two Ray nodes did not come up: {nodes}; " + self.logs()
        return nodes

    def python(self, code: str, *, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run ``code`` in a Python process inside the namespace (a Ray driver: RAY_PRELUDE connects)."""
        proc = subprocess.run(self.netns.inside([sys.executable, "-c", code]), capture_output=True,
                              text=True, timeout=timeout, env={**self.env, **(env or {})})
        assert proc.returncode == 0, f"driver failed ({proc.returncode}): {proc.stderr[-3000:]}"
        return proc

    def popen_python(self, code: str, env: dict | None = None) -> subprocess.Popen:
        """Like :meth:`python`, not waited for; ``env`` replaces the cluster's environment."""
        return subprocess.Popen(self.netns.inside([sys.executable, "-c", code]), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env or self.env)

    def kill_worker(self) -> None:
        """SIGKILL every process of the second node at once: raylet, agents, task workers."""
        from rdbench import processes

        processes.stop_session(self.worker.pid, timeout=0.0, first=signal.SIGKILL)
        self.worker.wait()

    def worker_alive(self) -> bool:
        return self.worker is not None and self.worker.poll() is None

    def logs(self) -> str:
        return " | ".join(f"{p.name}: {p.read_text(errors='replace')[-800:]}" for p in self.folder.glob("*.log"))

    def stop(self) -> list[int]:
        """SIGTERM each node (Ray drains and stops its processes), SIGKILL what is left; returns leftovers."""
        from rdbench import processes

        left = []
        for node in (self.worker, self.head):
            if node is None:
                continue
            processes.stop_session(node.pid, timeout=10)  # Ray drains up to 30 s; nothing to keep here
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.wait(timeout=5)
            left += processes.session_members(node.pid)
        shutil.rmtree(self.folder, ignore_errors=True)
        return left


@pytest.fixture(scope="session")
def ray_cluster(netns):
    """Two Ray nodes (head + second node, 1 CPU each) inside ``netns``; both alive at each test start."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        require_service("ray is not installed: pip install 'rdbench[ray]'")
    cluster = RayCluster(netns)
    t0 = time.monotonic()
    try:
        cluster.start()
        SERVICE_START_S["Ray cluster, head + second node"] = time.monotonic() - t0
        yield cluster
    finally:
        left = cluster.stop()
        assert not left, f"Ray processes left behind: {left}"


@pytest.fixture
def ray_two_nodes(ray_cluster):
    """``ray_cluster`` with its second node running (restarted if a test killed it)."""
    if not ray_cluster.worker_alive():
        ray_cluster.start_worker()
    return ray_cluster


@pytest.fixture(scope="session")
def ray_prelude() -> str:
    """Python source that connects a driver to the test cluster (prepend it to a driver's code)."""
    return RAY_PRELUDE


@pytest.fixture(scope="session")
def make_reachable_folder():
    """``make_reachable_folder(prefix)``: a new folder the ``postgres`` user can reach."""
    return reachable_folder


@pytest.fixture(scope="session")
def assert_server_gone():
    """``assert_server_gone(state)``: no process of a stopped tracking server is left."""
    return _assert_server_gone
