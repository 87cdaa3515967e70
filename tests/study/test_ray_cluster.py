"""The two-node Ray cluster the scale-out tests run on (conftest ``ray_cluster``), for real.

Two ``ray start`` processes (a head and a second node, 1 CPU each) inside a network
namespace the fixture made, token authentication on. Checked here: tasks spread
over both nodes; a task whose node is killed mid-task is retried on the head
(``max_retries``); a task on the second node logs a run into the PostgreSQL-backed
MLflow server inside the namespace and the test process reads it back through the
veth pair; a driver without the token is refused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.services


def last_json(text: str):
    """The driver's result: its last line starting RESULT (Ray may print its own lines after it)."""
    results = [line for line in text.splitlines() if line.startswith("RESULT ")]
    assert results, f"no RESULT line in the driver's output: {text[-2000:]!r}"
    return json.loads(results[-1].removeprefix("RESULT "))


def test_tasks_are_spread_over_both_nodes(ray_two_nodes, ray_prelude):
    code = ray_prelude + """
@ray.remote(num_cpus=1)
def where(seconds):
    time.sleep(seconds)
    return ray.get_runtime_context().get_node_id()
# one CPU per node: two one-CPU tasks at once must use both nodes
print("RESULT", json.dumps(sorted(ray.get([where.remote(1.0), where.remote(1.0)]))))
"""
    nodes = last_json(ray_two_nodes.python(code, timeout=120).stdout)
    assert nodes == sorted([ray_two_nodes.head_id, ray_two_nodes.worker_id])


def test_a_task_on_a_killed_node_is_retried_on_the_head(ray_two_nodes, tmp_path, ray_prelude):
    cluster = ray_two_nodes
    attempts = tmp_path / "attempts"
    code = ray_prelude + f"""
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

@ray.remote(num_cpus=1, max_retries=2)
def cell():
    node = ray.get_runtime_context().get_node_id()
    with open({str(attempts)!r}, "a+") as f:
        f.seek(0)
        first = not f.read()
        f.write(node + "\\n")
    time.sleep(120 if first else 0.5)  # the first attempt is killed long before its end
    return node

# soft affinity: the second node while it lives, any node after
ref = cell.options(scheduling_strategy=NodeAffinitySchedulingStrategy({cluster.worker_id!r}, soft=True)).remote()
print("RESULT", json.dumps(ray.get(ref, timeout=180)))
"""
    driver = cluster.popen_python(code)
    try:
        deadline = time.monotonic() + 120
        while not (attempts.exists() and attempts.read_text().strip()):
            assert driver.poll() is None, driver.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.2)
        assert attempts.read_text().split() == [cluster.worker_id]
        cluster.kill_worker()
        killed_at = time.monotonic()
        out, err = driver.communicate(timeout=240)
        retried_in = time.monotonic() - killed_at
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert driver.returncode == 0, err[-3000:]
    assert last_json(out) == cluster.head_id
    assert attempts.read_text().split() == [cluster.worker_id, cluster.head_id]
    print(f"retried and finished on the head {retried_in:.1f} s after the kill")


def test_a_worker_on_the_second_node_logs_into_the_server_in_the_namespace(ray_two_nodes, netns_tracking_server, tmp_path, ray_prelude):
    uri = netns_tracking_server.tracking_uri
    assert uri.startswith(f"http://{ray_two_nodes.netns.ns_ip}:")
    code = ray_prelude + f"""
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

@ray.remote(num_cpus=1)
def cell():
    import tempfile
    import mlflow
    from mlflow.entities import Metric
    client = mlflow.MlflowClient({uri!r})
    exp = client.create_experiment("from-ray")
    run = client.create_run(exp, run_name="cell")
    client.log_batch(run.info.run_id, metrics=[Metric("R_t", i / 10, 0, i) for i in range(1000)])
    with tempfile.TemporaryDirectory() as tmp:
        path = tmp + "/table.csv"
        open(path, "w").write("a,b\\n1,2\\n")
        client.log_artifact(run.info.run_id, path)
    client.set_terminated(run.info.run_id, "FINISHED")
    return [run.info.run_id, exp, ray.get_runtime_context().get_node_id()]

strategy = NodeAffinitySchedulingStrategy({ray_two_nodes.worker_id!r}, soft=False)
print("RESULT", json.dumps(ray.get(cell.options(scheduling_strategy=strategy).remote(), timeout=240)))
"""
    run_id, exp_id, node = last_json(ray_two_nodes.python(code, timeout=300).stdout)
    assert node == ray_two_nodes.worker_id

    import mlflow

    client = mlflow.MlflowClient(uri)  # from outside the namespace, through the veth pair
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run_id, "R_t")) == 1000
    landed = Path(netns_tracking_server.folder) / "artifacts" / exp_id / run_id / "artifacts" / "table.csv"
    assert landed.read_text() == "a,b\n1,2\n"


def test_a_driver_without_the_token_is_refused(ray_two_nodes, tmp_path, ray_prelude):
    code = ray_prelude + "print('connected')"
    env = {"RAY_AUTH_TOKEN_PATH": str(tmp_path / "wrong_token"), "HOME": str(tmp_path)}
    (tmp_path / "wrong_token").write_text("0" * 64)
    proc = ray_two_nodes.popen_python(code, env={**ray_two_nodes.env, **env})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "connected" not in out
    assert "auth" in err.lower() or "token" in err.lower(), err[-2000:]
