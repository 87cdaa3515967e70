"""Every shared fixture of the suite (test modules import none of each other).

A real MLflow sqlite store per test session, a fresh experiment per test, the smoke
grid run once per session, and helpers as fixtures: ``runs_of``, ``mlflow_run``.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
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
    --env-manager local -P k=v...` in a subprocess; asserts that it succeeded and returns it."""

    def run(entry_point: str, params: dict, *, experiment: str, tracking_uri: str, cwd, env=None):
        mlflow_bin = shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")
        full_env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, **(env or {})}
        # the entry points call `rdbench`: find it beside this interpreter even in a venv not activated
        full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
        full_env.pop("MLFLOW_RUN_ID", None)
        command = [mlflow_bin, "run", str(REPO), "-e", entry_point, "--env-manager", "local",
                   "--experiment-name", experiment]
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
