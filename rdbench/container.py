"""rdbench in its Docker image, driven through the Docker SDK for Python.

    rdbench container build                         # docker/Dockerfile -> rdbench:latest
    rdbench container reproduce --grid conf/paper.yaml --gpus all
    rdbench container run --gpus all -- run rd --case spot   # any rdbench command inside
    rdbench container reproduce --dry-run           # print the equivalent docker commands
    python -m rdbench.container reproduce ...       # the same, without loading torch or MLflow

What ``reproduce`` does, in order:

1. Builds the image when it is missing or stale. The image carries a label with a
   hash of its build context (the files ``.dockerignore`` lets in) and build
   arguments; a checkout that hashes the same needs no rebuild.
2. Runs ``rdbench grid GRID`` in a container, which records every cell in the
   host's tracking store and ends by regenerating Table 1 and the figures.

The container runs as the calling user (uid:gid), so what it writes on the host
belongs to that user. The tracking folder (sqlite DB + artifacts) is mounted at
its own absolute host path, and the container works in it: MLflow records
absolute artifact paths, and these must resolve on the host too (``mlflow ui``,
``rdbench table``). An experiment of the store whose artifacts live elsewhere on
the host is mounted at its own path as well. GPUs reach the container as a
``device_requests`` entry, the SDK's form of ``docker run --gpus``.

Every failure is one line naming what is missing and what runs without it.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

DEFAULT_IMAGE = "rdbench:latest"
DOCKERFILE = "docker/Dockerfile"
CONTEXT_HASH_LABEL = "org.rdbench.context-hash"
IMAGE_ROOT = "/opt/rdbench"  # where docker/Dockerfile puts the checkout
IMAGE_DATA_DIR = "/data"  # mount points the Dockerfile declares
IMAGE_TRACKING_DIR = "/tracking"
EXTRA_GRID_DIR = "/opt/rdbench-grids"  # a grid file from outside the checkout is mounted here
GPU_FORMS = "'all', a count such as 2, 'device=0,1', or '' for none"
WITHOUT_DOCKER = "`make reproduce-local` (or `rdbench grid`) runs the same grid without Docker"
BUILD_POLICIES = ("auto", "always", "never")


class ContainerError(Exception):
    """A one-line failure of a container step (the CLI prints it and exits 2)."""


def repo_root() -> Path:
    """The checkout docker/Dockerfile is built from (the folder above the package)."""
    return Path(__file__).resolve().parent.parent


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


# ----------------------------------------------------------------------------- GPUs


def device_requests(gpus: str | None) -> list[Any]:
    """``--gpus`` as the Docker Engine API's DeviceRequests (what ``docker run --gpus`` sends).

    ``all`` -> every GPU; ``2`` -> two GPUs; ``device=0,1`` -> those GPUs; ``''``, ``none``
    or ``0`` -> no request at all (the container sees no GPU).
    """
    from docker.types import DeviceRequest

    value = (gpus or "").strip()
    if value in ("", "none", "0"):
        return []
    if value == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if value.isdigit():
        return [DeviceRequest(count=int(value), capabilities=[["gpu"]])]
    if value.startswith("device="):
        ids = [i.strip() for i in value[len("device="):].split(",") if i.strip()]
        if ids:
            return [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
    raise ContainerError(f"--gpus {gpus!r} is not understood; allowed: {GPU_FORMS}")


# ----------------------------------------------------------------------------- build


def dockerignore_patterns(root: Path) -> list[str]:
    """The patterns of ``root/.dockerignore``, read the way the Docker SDK reads them."""
    path = root / ".dockerignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@dataclass
class BuildSpec:
    """One ``docker build`` of docker/Dockerfile with the repository root as context."""

    image: str = DEFAULT_IMAGE
    root: Path = field(default_factory=repo_root)
    dockerfile: str = DOCKERFILE
    base_image: str | None = None  # None: the Dockerfile's default (an exact nvidia/cuda tag)
    torch_packages: str | None = None  # None: torch/torchvision as requirements/pinned.txt pins
    build_args: Mapping[str, str] = field(default_factory=dict)
    network: str | None = None  # None: the engine's default build network

    def buildargs(self) -> dict[str, str]:
        args = dict(self.build_args)
        if self.base_image:
            args["BASE_IMAGE"] = self.base_image
        if self.torch_packages:
            args["TORCH_PACKAGES"] = self.torch_packages
        return args

    def context_files(self) -> list[str]:
        """Relative paths of the files sent to the engine (what .dockerignore lets in)."""
        from docker.utils.build import exclude_paths

        included = exclude_paths(str(self.root), dockerignore_patterns(self.root), self.dockerfile)
        return sorted(p for p in included if (self.root / p).is_file())

    def context_hash(self) -> str:
        """A hash of every file in the context, the Dockerfile and the build arguments."""
        digest = hashlib.sha256()
        for rel in self.context_files():
            digest.update(rel.encode() + b"\0" + (self.root / rel).read_bytes() + b"\0")
        for key, value in sorted(self.buildargs().items()):
            digest.update(f"{key}={value}\0".encode())
        return digest.hexdigest()[:16]

    def docker_cli(self, context_hash: str | None = None) -> list[str]:
        """The equivalent command line (the SDK uses the classic builder, hence DOCKER_BUILDKIT=0)."""
        cmd = ["DOCKER_BUILDKIT=0", "docker", "build", "-f", str(self.root / self.dockerfile), "-t", self.image]
        for key, value in self.buildargs().items():
            cmd += ["--build-arg", f"{key}={value}"]
        if self.network:
            cmd += ["--network", self.network]
        cmd += ["--label", f"{CONTEXT_HASH_LABEL}={context_hash or self.context_hash()}", str(self.root)]
        return cmd


# ----------------------------------------------------------------------------- run


@dataclass(frozen=True)
class BindMount:
    source: str
    target: str
    read_only: bool = False

    def cli(self) -> str:
        return f"type=bind,source={self.source},target={self.target}" + (",readonly" if self.read_only else "")


@dataclass
class RunSpec:
    """One ``docker run`` of the image with the store, the data folder and GPUs wired in."""

    image: str
    args: list[str]
    user: str
    gpus: str | None = None
    mounts: list[BindMount] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    network: str | None = None  # None: the engine's default network
    shm_size: str | None = "2g"  # PyTorch data loaders share batches through /dev/shm

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``client.containers.create(image, args, **kwargs)``."""
        from docker.types import Mount

        kwargs: dict[str, Any] = {
            "user": self.user,
            "environment": dict(self.environment),
            "mounts": [Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in self.mounts],
            "detach": True,
        }
        requests = device_requests(self.gpus)
        if requests:
            kwargs["device_requests"] = requests
        if self.working_dir:
            kwargs["working_dir"] = self.working_dir
        if self.network:
            kwargs["network_mode"] = self.network
        if self.shm_size:
            kwargs["shm_size"] = self.shm_size
        return kwargs

    def docker_cli(self) -> list[str]:
        cmd = ["docker", "run", "--rm", "--user", self.user]
        if device_requests(self.gpus):
            cmd += ["--gpus", self.gpus or ""]
        if self.network:
            cmd += ["--network", self.network]
        if self.shm_size:
            cmd += ["--shm-size", self.shm_size]
        for mount in self.mounts:
            cmd += ["--mount", mount.cli()]
        for key, value in self.environment.items():
            cmd += ["-e", f"{key}={value}"]
        if self.working_dir:
            cmd += ["-w", self.working_dir]
        return cmd + [self.image, *self.args]


def local_path(uri: str) -> Path | None:
    """``/abs/dir`` or ``file:///abs/dir`` -> a Path; anything else (s3:, mlflow-artifacts:) -> None."""
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    return Path(uri) if uri.startswith("/") else None


def outside_artifact_roots(tracking_dir: Path) -> list[Path]:
    """Local artifact folders of the store's active experiments that lie outside ``tracking_dir``.

    An experiment created by a process working elsewhere keeps its artifacts there;
    the container must see that folder at the same path to log into it.
    """
    db = tracking_dir / "mlflow.db"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT artifact_location FROM experiments WHERE lifecycle_stage = 'active'"
            ).fetchall()
    except sqlite3.Error:
        return []  # not an MLflow store yet; the container creates it
    roots: set[Path] = set()
    for (location,) in rows:
        path = local_path(location or "")
        if path is not None and not path.is_relative_to(tracking_dir):
            roots.add(path)
    return sorted(roots)


@dataclass
class Workspace:
    """The host folders a container run touches, all absolute."""

    tracking_dir: Path
    data_dir: Path
    out_dir: Path | None = None

    @classmethod
    def resolve(cls, tracking_dir: str, data_dir: str, out_dir: str | None = None) -> Workspace:
        return cls(Path(tracking_dir).resolve(), Path(data_dir).resolve(),
                   Path(out_dir).resolve() if out_dir else None)

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.tracking_dir / 'mlflow.db'}"

    def folders(self) -> list[Path]:
        """Every host folder that will be mounted (made beforehand, so the caller owns them)."""
        extra = outside_artifact_roots(self.tracking_dir)
        return [self.tracking_dir, self.data_dir, *([self.out_dir] if self.out_dir else []), *extra]

    def mounts(self) -> list[BindMount]:
        track = str(self.tracking_dir)
        mounts = [
            BindMount(track, track),  # same path: artifact URIs resolve on the host
            BindMount(track, IMAGE_TRACKING_DIR),  # the Dockerfile's mount point (no anonymous volume)
            BindMount(str(self.data_dir), IMAGE_DATA_DIR),
        ]
        if self.out_dir and not self.out_dir.is_relative_to(self.tracking_dir):
            mounts.append(BindMount(str(self.out_dir), str(self.out_dir)))
        mounts += [BindMount(str(p), str(p)) for p in outside_artifact_roots(self.tracking_dir)]
        return mounts

    def make_folders(self) -> None:
        for folder in self.folders():
            folder.mkdir(parents=True, exist_ok=True)


def checkout_commit(root: Path) -> str | None:
    """HEAD of the checkout the image is built from (imports no MLflow, unlike rdbench.tracking)."""
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("RDBENCH_GIT_COMMIT")
    return out.stdout.strip() or None


def caller_environment(experiment: str | None) -> dict[str, str]:
    """What the container needs to know about the caller (names, commit, experiment)."""
    env: dict[str, str] = {}
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = ""
    if name:
        env["USER"] = env["LOGNAME"] = name  # getpass.getuser() in the container reads these
    commit = checkout_commit(repo_root())
    if commit:
        env["RDBENCH_GIT_COMMIT"] = commit  # the image has no .git
    experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if experiment:
        env["MLFLOW_EXPERIMENT_NAME"] = experiment
    return env


def run_spec(
    image: str,
    args: Sequence[str],
    workspace: Workspace,
    gpus: str | None = None,
    user: str | None = None,
    network: str | None = None,
    experiment: str | None = None,
    extra_mounts: Sequence[BindMount] = (),
) -> RunSpec:
    env = {
        "MLFLOW_TRACKING_URI": workspace.tracking_uri,
        "RDBENCH_DATA_DIR": IMAGE_DATA_DIR,
        **caller_environment(experiment),
    }
    return RunSpec(
        image=image,
        args=list(args),
        user=user or f"{os.getuid()}:{os.getgid()}",
        gpus=gpus,
        mounts=[*workspace.mounts(), *extra_mounts],
        environment=env,
        working_dir=str(workspace.tracking_dir),  # experiments it creates keep artifacts here
        network=network,
    )


def grid_argument(grid: str, root: Path) -> tuple[str, list[BindMount]]:
    """The grid as the container sees it: a file of the checkout -> its copy in the image;
    a file elsewhere -> mounted read-only; a name (``paper``) -> unchanged."""
    path = Path(grid)
    if not path.is_file():
        if "/" in grid or grid.endswith((".yaml", ".yml")):
            raise ContainerError(f"grid file {grid!r} does not exist; give a path or a name from conf/ (paper, quick, smoke)")
        return grid, []
    path = path.resolve()
    if path.is_relative_to(root):
        return f"{IMAGE_ROOT}/{path.relative_to(root).as_posix()}", []
    target = f"{EXTRA_GRID_DIR}/{path.name}"
    return target, [BindMount(str(path), target, read_only=True)]


def reproduce_args(grid_in_container: str, device: str, out_dir: Path) -> list[str]:
    """``rdbench grid`` runs every cell, then regenerates Table 1 and the figures into out_dir."""
    return ["grid", grid_in_container, "--device", device, "--out", str(out_dir)]


# ----------------------------------------------------------------------------- engine


def connect() -> Any:
    """A client on the engine, or a one-line ContainerError saying none is reachable."""
    try:
        import docker.errors

        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:  # the SDK raises DockerException, requests' and OS errors
        reason = " ".join(str(exc).split())[:200]
        raise ContainerError(
            f"no Docker engine reachable at {engine_address()} ({reason}); start Docker or set "
            f"DOCKER_HOST, or run without Docker: {WITHOUT_DOCKER}"
        ) from None
    return client


def check_gpu_runtime(client: Any, gpus: str | None) -> None:
    """GPUs asked for but the engine has no NVIDIA runtime: a one-line error before any build."""
    if not device_requests(gpus):
        return
    runtimes = sorted((client.info().get("Runtimes") or {}).keys())
    if "nvidia" not in runtimes:
        raise ContainerError(
            f"--gpus {gpus} (GPUS={gpus}) asks for GPUs, but the Docker engine at {engine_address()} has no "
            f"NVIDIA runtime (runtimes: {', '.join(runtimes) or 'none'}); install the NVIDIA Container Toolkit, "
            f"or run on CPU with GPUS= , or {WITHOUT_DOCKER}"
        )


def image_label(client: Any, image: str) -> str | None:
    """The context-hash label of ``image``; None when the image is missing."""
    import docker.errors

    try:
        found = client.images.get(image)
    except docker.errors.ImageNotFound:
        return None
    return (found.labels or {}).get(CONTEXT_HASH_LABEL, "")


def build_image(client: Any, spec: BuildSpec, context_hash: str, echo: Callable[[str], None]) -> None:
    """Build with the classic builder, streaming its log; a failed step is a one-line error."""
    import docker.errors

    echo(f"building {spec.image} from {spec.dockerfile} (context hash {context_hash})")
    try:
        for chunk in client.api.build(
            path=str(spec.root), dockerfile=spec.dockerfile, tag=spec.image, buildargs=spec.buildargs(),
            network_mode=spec.network, labels={CONTEXT_HASH_LABEL: context_hash},
            rm=True, forcerm=True, decode=True,
        ):
            if "stream" in chunk:
                sys.stdout.write(chunk["stream"])
                sys.stdout.flush()
            if "error" in chunk:
                message = " ".join(str(chunk["error"]).split())
                raise ContainerError(f"docker build of {spec.image} failed: {message}")
    except docker.errors.APIError as exc:
        raise ContainerError(f"docker build of {spec.image} failed: {' '.join(str(exc).split())}") from None


def ensure_image(client: Any, spec: BuildSpec, policy: str, echo: Callable[[str], None]) -> None:
    """Build per ``policy``: auto (missing or stale), always, never (must exist)."""
    if policy not in BUILD_POLICIES:
        raise ContainerError(f"--build {policy!r}: allowed: {', '.join(BUILD_POLICIES)}")
    wanted = spec.context_hash()
    found = image_label(client, spec.image)
    if policy == "never":
        if found is None:
            raise ContainerError(f"image {spec.image} is missing and --build never forbids building it; run `make image`")
        return
    if policy == "auto" and found == wanted:
        echo(f"image {spec.image} is current (context hash {wanted}); not rebuilding")
        return
    build_image(client, spec, wanted, echo)


def run_container(client: Any, spec: RunSpec, echo: Callable[[str], None]) -> None:
    """Run to completion, streaming output; a non-zero exit is a one-line error."""
    import docker.errors

    echo("running: " + shlex.join(spec.args) + f" in {spec.image} as {spec.user}")
    try:
        container = client.containers.create(spec.image, spec.args, **spec.run_kwargs())
    except docker.errors.ImageNotFound:
        raise ContainerError(f"image {spec.image} is missing; build it with `make image`") from None
    except docker.errors.APIError as exc:
        raise ContainerError(_run_failure(spec, exc)) from None
    try:
        try:
            container.start()
        except docker.errors.APIError as exc:
            raise ContainerError(_run_failure(spec, exc)) from None
        for line in container.logs(stream=True, follow=True):
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
        status = container.wait().get("StatusCode", 1)
    except KeyboardInterrupt:
        container.stop(timeout=10)
        raise
    finally:
        container.remove(force=True, v=True)
    if status != 0:
        raise ContainerError(f"`rdbench {shlex.join(spec.args)}` exited with status {status} in the container")


def _run_failure(spec: RunSpec, exc: Exception) -> str:
    text = " ".join(str(exc).split())
    if "could not select device driver" in text or "nvidia" in text.lower():
        return (f"--gpus {spec.gpus} could not be served: the engine has no working NVIDIA runtime ({text[:160]}); "
                f"install the NVIDIA Container Toolkit, or run on CPU with GPUS= , or {WITHOUT_DOCKER}")
    return f"docker run of {spec.image} failed: {text[:300]}"


# ----------------------------------------------------------------------------- CLI


class _OneLineError(click.ClickException):
    """Like rdbench.cli.CliError (exit status 2), without importing the CLI and its torch."""

    exit_code = 2


def _fail(exc: ContainerError) -> click.ClickException:
    return _OneLineError(str(exc))


def _echo(message: str) -> None:
    click.echo(f"rdbench container: {message}", err=True)


def build_options(func):
    options = [
        click.option("--image", default=DEFAULT_IMAGE, show_default=True, help="Tag of the image."),
        click.option("--base-image", default=None,
                     help="BASE_IMAGE build argument. Default: the Dockerfile's nvidia/cuda tag."),
        click.option("--torch", "torch_packages", default=None, metavar="REQUIREMENTS",
                     help="Replace the pinned torch/torchvision, e.g. 'torch==2.13.0+cpu torchvision==0.28.0'."),
        click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE",
                     help="Another build argument (PIP_FIND_LINKS=...). Repeatable."),
        click.option("--build-network", default=None, help="Network of the build's RUN steps (host, ...)."),
        click.option("--dry-run", is_flag=True, help="Print the equivalent docker commands; contact no engine."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def run_options(func):
    options = [
        click.option("--gpus", default="", show_default=True, help=f"GPUs for the container: {GPU_FORMS}."),
        click.option("--tracking-dir", default="outputs/tracking", show_default=True,
                     help="Host folder of the MLflow store (mlflow.db + artifacts), mounted at its own path."),
        click.option("--data-dir", default="data", show_default=True, help="Host folder of the datasets, mounted at /data."),
        click.option("--network", default=None, help="Network of the container (none, host...). Default: the engine's."),
        click.option("--user", default=None, help="uid:gid inside the container. Default: the caller's."),
        click.option("--experiment", default=None, help="MLflow experiment. Default: $MLFLOW_EXPERIMENT_NAME or 'rdbench'."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _build_spec(image, base_image, torch_packages, build_args, build_network) -> BuildSpec:
    pairs = {}
    for item in build_args:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ContainerError(f"--build-arg {item!r}: expected KEY=VALUE")
        pairs[key] = value
    return BuildSpec(image=image, base_image=base_image or None, torch_packages=torch_packages or None,
                     build_args=pairs, network=build_network or None)


@click.group("container")
def container() -> None:
    """Build the CUDA image and run rdbench in it (Docker SDK; `make image`, `make reproduce`)."""


@container.command("build")
@build_options
def build_command(image, base_image, torch_packages, build_args, build_network, dry_run) -> None:
    """Build IMAGE from docker/Dockerfile (always; `reproduce` builds only when stale)."""
    try:
        spec = _build_spec(image, base_image, torch_packages, build_args, build_network)
        if dry_run:
            click.echo(shlex.join(spec.docker_cli()))
            return
        build_image(connect(), spec, spec.context_hash(), _echo)
    except ContainerError as exc:
        raise _fail(exc) from None


@container.command("run", context_settings={"ignore_unknown_options": True})
@click.option("--image", default=DEFAULT_IMAGE, show_default=True, help="Image to run.")
@run_options
@click.option("--dry-run", is_flag=True, help="Print the equivalent docker command; contact no engine.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED, required=True)
def run_command(image, gpus, tracking_dir, data_dir, network, user, experiment, dry_run, args) -> None:
    """Run `rdbench ARGS...` in IMAGE with the store and data mounted:

        rdbench container run --gpus all -- run rd --case spot
    """
    try:
        workspace = Workspace.resolve(tracking_dir, data_dir)
        spec = run_spec(image, args, workspace, gpus, user, network, experiment)
        if dry_run:
            click.echo(shlex.join(spec.docker_cli()))
            return
        client = connect()
        check_gpu_runtime(client, gpus)
        workspace.make_folders()
        run_container(client, spec, _echo)
    except ContainerError as exc:
        raise _fail(exc) from None


@container.command("reproduce")
@click.option("--grid", default="conf/paper.yaml", show_default=True, help="Grid file (or a name from conf/).")
@click.option("--device", default="auto", show_default=True, help="Device inside the container: auto, cuda, cpu.")
@click.option("--out-dir", default="outputs/report", show_default=True, help="Host folder for Table 1 and the figures.")
@click.option("--build", "build_policy", type=click.Choice(BUILD_POLICIES), default="auto", show_default=True,
              help="auto: build when the image is missing or older than the checkout.")
@build_options
@run_options
def reproduce_command(grid, device, out_dir, build_policy, image, base_image, torch_packages, build_args,
                      build_network, dry_run, gpus, tracking_dir, data_dir, network, user, experiment) -> None:
    """Build the image if needed, then run GRID in it and regenerate Table 1.

    The results land in TRACKING_DIR/mlflow.db, which `mlflow ui` and `rdbench table`
    on the host read (`make ui`, `make table`).
    """
    try:
        build = _build_spec(image, base_image, torch_packages, build_args, build_network)
        workspace = Workspace.resolve(tracking_dir, data_dir, out_dir)
        grid_in_container, grid_mounts = grid_argument(grid, build.root)
        spec = run_spec(image, reproduce_args(grid_in_container, device, workspace.out_dir),
                        workspace, gpus, user, network, experiment, grid_mounts)
        if dry_run:
            when = {"auto": "# when the image is missing or its label differs", "always": "", "never": None}[build_policy]
            if when is not None:
                click.echo(shlex.join(build.docker_cli()) + (f"  {when}" if when else ""))
            click.echo(shlex.join(spec.docker_cli()))
            return
        client = connect()
        check_gpu_runtime(client, gpus)
        ensure_image(client, build, build_policy, _echo)
        workspace.make_folders()
        run_container(client, spec, _echo)
        _echo(f"done: runs in {workspace.tracking_uri}; Table 1 in {workspace.out_dir}; "
              f"`make ui` opens the store")
    except ContainerError as exc:
        raise _fail(exc) from None


if __name__ == "__main__":  # `python -m rdbench.container`: what the Makefile calls
    container(prog_name="rdbench container")
