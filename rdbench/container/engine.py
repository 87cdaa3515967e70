"""The Docker engine, through the Docker SDK for Python: connect, build when stale, run, stream.

    rdbench container build                         # docker/Dockerfile -> rdbench:latest
    rdbench container reproduce --grid conf/paper.yaml --gpus all
    rdbench container run --gpus all -- run rd --case spot   # any rdbench command inside

What ``reproduce`` does, in order:

1. Builds the image when it is missing or stale (:func:`ensure_image`). The image
   carries a label with a hash of its build context (the files ``.dockerignore``
   lets in) and build arguments; a checkout that hashes the same needs no rebuild.
2. Runs ``rdbench grid GRID`` in a container (:func:`run_container`), which records
   every cell in the host's tracking store and ends by regenerating Table 1 and the
   figures.

What is sent (specs, mounts, the equivalent command lines) is computed in
:mod:`rdbench.container.spec`.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import Any

from rdbench.container.spec import (
    BUILD_POLICIES,
    CONTEXT_HASH_LABEL,
    WITHOUT_DOCKER,
    BuildSpec,
    ContainerError,
    RunSpec,
    device_requests,
    engine_address,
)


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
