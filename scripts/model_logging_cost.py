"""What logging the paper-profile DDPM U-Net as an MLflow model costs, and reloading it (CPU).

    MLFLOW_TRACKING_URI=sqlite:////tmp/cost/mlflow.db python scripts/model_logging_cost.py

Prints the parameter count, the time of ``TrackedRun.log_model`` and of fetching, rebuilding
and loading it back (``--model runs:/<id>/model``), the process's peak RSS before and after,
and the size of the model's large files (the pickled module and the state dict). The network
is freshly initialised (no training): the costs depend only on its size.
"""

from __future__ import annotations

import os
import resource
import time

from rdbench.study.cells import plan_cells
from rdbench.systems.ddpm.model import count_parameters
from rdbench.systems.ddpm.system import _input_example, build_model, network_config
from rdbench.systems.records import ModelRecord, load_logged_model
from rdbench.tracking.runs import TrackedRun
from rdbench.tracking.store import client

SHAPE = (1, 32, 32)  # MNIST, zero-padded


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    settings = plan_cells("ddpm", ["mnist"], [0], "paper")[0].settings
    model = build_model(settings, 0, SHAPE[0]).eval()
    store = client()
    run = TrackedRun.create(store, "model-logging-cost", "ddpm paper U-Net")
    before = peak_rss_mib()
    start = time.perf_counter()
    run.log_model(ModelRecord("ddpm", model, network_config(settings, SHAPE), _input_example(SHAPE)))
    logged_s = time.perf_counter() - start
    run.finish()
    start = time.perf_counter()
    load_logged_model(f"runs:/{run.run_id}/model", "ddpm").load_into(build_model(settings, 0, SHAPE[0]))
    reload_s = time.perf_counter() - start
    model_id = store.get_run(run.run_id).outputs.model_outputs[0].model_id
    folder = store.get_logged_model(model_id).artifact_location.removeprefix("file://")
    sizes = {name: os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder) for name in names}
    print(f"parameters {count_parameters(model)}; log_model {logged_s:.2f} s; fetch + rebuild + load {reload_s:.2f} s; "
          f"peak RSS {before:.0f} -> {peak_rss_mib():.0f} MiB")
    print("files: " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sorted(sizes.items()) if v > 2**16))


if __name__ == "__main__":
    main()
