"""deploy/kuberay-raycluster.yaml against what rdbench relies on.

No Kubernetes cluster is reachable here, so the manifest is never applied: this
checks that it parses, that every pod runs the image `make image` builds with Ray
from the image's venv as the user the Dockerfile sets, at the Ray version CI pins,
that each node announces to Ray exactly the CPUs and GPUs its container is given,
that workers join the head's port, and that every pod carries the Ray token and a
tracking URI that rdbench accepts for a cluster.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from rdbench.tracking.server import refuse_local_store_for_cluster

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "deploy" / "kuberay-raycluster.yaml"


def makefile_default(name: str) -> str:
    return re.search(rf"^{name} \?= (\S+)$", (REPO / "Makefile").read_text(), re.M).group(1)


def dockerfile_env(name: str) -> str:
    return re.search(rf"\b{name}=(\S+)", (REPO / "docker" / "Dockerfile").read_text()).group(1)


def pinned(package: str) -> str:
    text = (REPO / "requirements" / "pinned.txt").read_text()
    return re.search(rf"^{re.escape(package)}(?:\[[^\]]*\])?==(\S+)$", text, re.M).group(1)


@pytest.fixture(scope="module")
def cluster() -> dict:
    (doc,) = list(yaml.safe_load_all(MANIFEST.read_text()))
    return doc


def groups(cluster):
    """(name, is_head, pod spec) of the head group and every worker group."""
    yield "head", True, cluster["spec"]["headGroupSpec"]["template"]["spec"]
    for group in cluster["spec"]["workerGroupSpecs"]:
        yield group["groupName"], False, group["template"]["spec"]


def ray_start(container: dict) -> dict[str, str]:
    """The options of the container's `ray start` (its shell command, parsed)."""
    assert container["command"] == ["/bin/bash", "-c", "--"]
    (script,) = container["args"]
    words = shlex.split(script.split("exec ", 1)[1])
    assert words[:2] == [f"{dockerfile_env('VIRTUAL_ENV')}/bin/ray", "start"], words
    options = {}
    for word in words[2:]:
        key, _, value = word.partition("=")
        options[key] = value
    return options


def test_it_is_one_kuberay_raycluster_at_the_pinned_ray_version(cluster):
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert cluster["spec"]["rayVersion"] == pinned("ray")
    # the commands below are the ones that run, not KubeRay's generated ones
    assert cluster["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"


def test_every_pod_runs_the_image_make_image_builds_as_its_user(cluster):
    uid, gid = re.search(r"^USER (\d+):(\d+)$", (REPO / "docker/Dockerfile").read_text(), re.M).groups()
    for name, _, pod in groups(cluster):
        assert [c["image"] for c in pod["containers"]] == [makefile_default("IMAGE")], name
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (int(uid), int(gid))


def test_nodes_announce_exactly_their_containers_resources(cluster):
    seen_gpu = False
    for name, is_head, pod in groups(cluster):
        (container,) = pod["containers"]
        options = ray_start(container)
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        assert requests == limits, f"{name}: requests and limits differ (Ray would see the limits)"
        assert "--block" in options, name  # the container lives as long as the node
        gpus = int(limits.get("nvidia.com/gpu", 0))
        assert int(options["--num-gpus"]) == gpus, name
        seen_gpu |= gpus > 0
        if is_head:
            assert "--head" in options and options["--num-cpus"] == "0"  # cells run on the workers
        else:
            assert int(options["--num-cpus"]) == int(limits["cpu"]), name
        assert options["--dashboard-agent-listen-port"] == "52365"  # what the probes ask
    assert seen_gpu, "no worker group offers the GPU a DDPM cell asks for"


def test_workers_join_the_head_port(cluster):
    head = ray_start(next(pod for _, is_head, pod in groups(cluster) if is_head)["containers"][0])
    for name, is_head, pod in groups(cluster):
        if not is_head:
            address = ray_start(pod["containers"][0])["--address"]
            assert address == f"${{FQ_RAY_IP:-{cluster['metadata']['name']}-head-svc}}:{head['--port']}", name


def test_every_pod_has_the_token_and_a_tracking_uri_rdbench_accepts_for_a_cluster(cluster):
    for name, _, pod in groups(cluster):
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token", name
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "rdbench-ray-token", "key": "token"}
        refuse_local_store_for_cluster(env["MLFLOW_TRACKING_URI"]["value"], "auto")  # raises if not
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert "/dev/shm" in mounts, f"{name}: Ray's object store needs more than the default 64 MiB"


def test_probes_use_the_images_python_not_wget(cluster):
    python = f"{dockerfile_env('VIRTUAL_ENV')}/bin/python"
    for name, _, pod in groups(cluster):
        for probe in ("readinessProbe", "livenessProbe"):
            command = pod["containers"][0][probe]["exec"]["command"]
            assert command[:2] == [python, "-c"], name
            compile(command[2], f"{name} {probe}", "exec")
            assert "52365/api/local_raylet_healthz" in command[2]
