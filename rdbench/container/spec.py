"""What a container run is, computed without an engine: build and run specs, mounts, dry-run lines.

The container runs as the calling user (uid:gid), so what it writes on the host
belongs to that user. The tracking folder (sqlite DB + artifacts) is mounted at
its own absolute host path, and the container works in it: MLflow records
absolute artifact paths, and these must resolve on the host too (``mlflow ui``,
``rdbench table``). An experiment of the store whose artifacts live elsewhere on
the host is mounted at its own path as well. GPUs reach the container as a
``device_requests`` entry, the SDK's form of ``docker run --gpus``.

Every failure is one line naming what is missing and what runs without it
(:class:`ContainerError`). Talking to the engine is :mod:`rdbench.container.engine`.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rdbench.provenance import COMMIT_ENV, git_commit, repo_root, user

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


def outside_artifact_roots(tracking_dir: Path, experiment: str | None = None) -> dict[Path, str]:
    """Local artifact folders of the store's active experiments (or of ``experiment`` only) that
    lie outside ``tracking_dir``, each with the name of an experiment that uses it.

    An experiment created by a process working elsewhere keeps its artifacts there;
    the container must see that folder at the same path to log into it. These paths
    come from the store, so they are not trusted: :meth:`Workspace.mounts` mounts one
    only if it lies in a folder the caller named.
    """
    db = tracking_dir / "mlflow.db"
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT artifact_location, name FROM experiments WHERE lifecycle_stage = 'active'"
                + (" AND name = ?" if experiment else ""), (experiment,) if experiment else ()
            ).fetchall()
    except sqlite3.Error:
        return {}  # not an MLflow store yet; the container creates it
    roots: dict[Path, str] = {}
    for location, name in rows:
        path = local_path(location or "")
        if path is not None and not path.resolve().is_relative_to(tracking_dir):
            roots.setdefault(path.resolve(), name)
    return dict(sorted(roots.items()))


@dataclass
class Workspace:
    """The host folders a container run touches, all absolute."""

    tracking_dir: Path
    data_dir: Path
    out_dir: Path | None = None
    artifact_dirs: tuple[Path, ...] = ()  # folders the caller allows experiments' artifacts in
    experiment: str | None = None  # the experiment the container logs into (None: any of the store's)

    @classmethod
    def resolve(cls, tracking_dir: str, data_dir: str, out_dir: str | None = None,
                artifact_dirs: Sequence[str] = (), experiment: str | None = None) -> Workspace:
        return cls(Path(tracking_dir).resolve(), Path(data_dir).resolve(),
                   Path(out_dir).resolve() if out_dir else None, tuple(Path(d).resolve() for d in artifact_dirs),
                   experiment)

    def named(self) -> list[Path]:
        """The folders the caller named: only these, and what lies under them, are ever mounted."""
        return [self.tracking_dir, self.data_dir, *([self.out_dir] if self.out_dir else []), *self.artifact_dirs]

    def store_roots(self) -> list[Path]:
        """The artifact folders the store's experiments need, refused unless under a named folder."""
        roots = outside_artifact_roots(self.tracking_dir, self.experiment)
        for path, experiment in roots.items():
            if not any(path.is_relative_to(folder) for folder in self.named()):
                raise ContainerError(
                    f"experiment {experiment!r} of the store {self.tracking_dir / 'mlflow.db'} keeps its artifacts "
                    f"in {path}, outside the folders you named; rdbench mounts only those: pass --artifact-dir "
                    f"{path} (ARTIFACT_DIRS={path} for make) if you trust it, or delete that experiment"
                )
        return list(roots)

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.tracking_dir / 'mlflow.db'}"

    def folders(self) -> list[Path]:
        """Every host folder that will be mounted (made beforehand, so the caller owns them)."""
        return [*self.named(), *self.store_roots()]

    def mounts(self) -> list[BindMount]:
        track = str(self.tracking_dir)
        mounts = [
            BindMount(track, track),  # same path: artifact URIs resolve on the host
            BindMount(track, IMAGE_TRACKING_DIR),  # the Dockerfile's mount point (no anonymous volume)
            BindMount(str(self.data_dir), IMAGE_DATA_DIR),
        ]
        if self.out_dir and not self.out_dir.is_relative_to(self.tracking_dir):
            mounts.append(BindMount(str(self.out_dir), str(self.out_dir)))
        inside = [p for p in self.store_roots() if not any(p.is_relative_to(a) for a in self.artifact_dirs)]
        mounts += [BindMount(str(p), str(p)) for p in [*self.artifact_dirs, *inside]]
        return mounts

    def make_folders(self) -> None:
        for folder in self.folders():
            folder.mkdir(parents=True, exist_ok=True)


def caller_environment(experiment: str | None) -> dict[str, str]:
    """What the container needs to know about the caller (names, commit, experiment)."""
    env: dict[str, str] = {}
    name = user()
    if name != "unknown":
        env["USER"] = env["LOGNAME"] = name  # getpass.getuser() in the container reads these
    commit = git_commit(repo_root())
    if commit:
        env[COMMIT_ENV] = commit  # the image has no .git
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
