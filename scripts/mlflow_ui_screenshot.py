#!/usr/bin/env python3
"""Open the MLflow UI in a real headless browser and screenshot a grid's comparison.

    python scripts/mlflow_ui_screenshot.py                       # the latest grid in ./mlflow.db
    python scripts/mlflow_ui_screenshot.py --tracking-uri sqlite:////tmp/x/mlflow.db --out-dir docs

What it does, with nothing but the tracking store, `mlflow ui` and Debian's
chromium (`apt-get install -y chromium`):

1. saves the grid's *shared view* as ``rdbench grid`` also saves it (an experiment
   tag ``mlflow.sharedViewState.rdbench-grid-<parent run id>``, what the UI's
   "Share" button stores; see ``rdbench.tracking.ui.shared_view_state``): the grid's
   parent ``grid:<name>`` with every cell of the study nested under it, the cells it
   reused from an earlier, interrupted grid included, sorted by name; metric charts
   filtered to ``R_t`` (R_t on each system's own step axis, R_t_norm on the common
   0..1000 axis), columns system, case, seed, profile, R, R_final;
2. starts ``mlflow ui`` on 127.0.0.1 (a free port) against the store;
3. runs ``chromium --headless --screenshot --virtual-time-budget`` on the chart
   view and on the table view, each with a new temporary profile;
4. checks the rendered page (``--dump-dom``) names the parent, every cell run of the
   study (the cells a resumed grid reused included) and the R_t charts, and that the
   table view counts exactly 1 + that many matching runs; exits non-zero if not.

Prints the URL of the shared view, which anyone can open in a browser.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit(f"mlflow ui did not answer at {url} within {timeout:.0f} s")


def chromium(binary: str, url: str, budget_ms: int, window: str, *, screenshot: Path | None = None) -> str:
    """One headless chromium run with a fresh profile: a screenshot, or the rendered DOM."""
    with tempfile.TemporaryDirectory(prefix="rdbench-chromium-") as profile:
        args = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={window}",
                f"--virtual-time-budget={budget_ms}"]
        args.append(f"--screenshot={screenshot}" if screenshot else "--dump-dom")
        done = subprocess.run([*args, url], capture_output=True, text=True, timeout=300)
    if screenshot and (done.returncode != 0 or not screenshot.exists()):
        raise SystemExit(f"chromium failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    parser.add_argument("--experiment", default=os.environ.get("MLFLOW_EXPERIMENT_NAME", "rdbench"))
    parser.add_argument("--parent", default=None, help="grid parent run id (default: the latest grid)")
    parser.add_argument("--out-dir", default="docs", type=Path)
    parser.add_argument("--chart-filter", default="R_t", help="metric charts to show (UI search box)")
    parser.add_argument("--budget-ms", type=int, default=40000,
                        help="chromium --virtual-time-budget (virtual time: the charts need ~20000 to load)")
    parser.add_argument("--window", default="2000,1100")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
    if not args.chromium:
        raise SystemExit("no chromium on PATH; on Debian: apt-get install -y chromium")

    from mlflow import MlflowClient

    from rdbench.report.selection import latest_grid_run, select_runs
    from rdbench.tracking.ui import compare_url, grid_view, prepare_ui

    client = MlflowClient(args.tracking_uri)
    parent = client.get_run(args.parent) if args.parent else latest_grid_run(client, args.experiment)
    exp_id = parent.info.experiment_id
    cells = select_runs(client, parent_run_id=parent.info.run_id).runs  # children and reused cell runs
    names = [parent.info.run_name, *sorted({r.info.run_name for r in cells})]
    prepare_ui(client, exp_id, parent.info.run_id, args.chart_filter)
    view = grid_view(parent.info.run_id)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="rdbench-mlflow-ui-", suffix=".log", delete=False)
    ui = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", args.tracking_uri,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_for(f"{base}/health", timeout=240)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        problems = []
        for mode, name, must_show in (
            ("CHART", "mlflow_ui_charts.png", ["R_t_norm", *names]),
            ("TABLE", "mlflow_ui_runs.png", [*names, f"{len(names)} matching runs"]),
        ):
            url = compare_url(exp_id, base, mode, view)
            shot = args.out_dir / name
            chromium(args.chromium, url, args.budget_ms, args.window, screenshot=shot)
            dom = re.sub(r"<[^>]+>", "", chromium(args.chromium, url, args.budget_ms, args.window))  # text only
            missing = [text for text in must_show if text not in dom]
            if missing:
                problems.append(f"{mode} view does not show {missing}")
            print(f"wrote {shot} ({shot.stat().st_size} bytes) from {url}")
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait()
    print(f"parent {parent.info.run_name} ({parent.info.run_id}) with {len(cells)} cell runs")
    print(f"open the same view with `mlflow ui` running: {compare_url(exp_id, view=view)}")
    if problems:
        print("; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
