"""``rdbench container build|run|reproduce``: rdbench in its Docker image (``make image``, ``make reproduce``).

    rdbench container build                         # docker/Dockerfile -> rdbench:latest
    rdbench container reproduce --grid conf/paper.yaml --gpus all
    rdbench container run --gpus all -- run rd --case spot   # any rdbench command inside
    rdbench container reproduce --dry-run           # print the equivalent docker commands
    python -m rdbench.commands.container reproduce ...   # the same, without loading torch or MLflow

Every failure is one line naming what is missing and what runs without it.
"""

from __future__ import annotations

import shlex

import click

from rdbench.commands.options import CliError, experiment_name, options
from rdbench.container.engine import (
    build_image,
    check_gpu_runtime,
    connect,
    ensure_image,
    run_container,
)
from rdbench.container.spec import (
    BUILD_POLICIES,
    DEFAULT_IMAGE,
    GPU_FORMS,
    BuildSpec,
    ContainerError,
    Workspace,
    grid_argument,
    reproduce_args,
    run_spec,
)


def _echo(message: str) -> None:
    click.echo(f"rdbench container: {message}", err=True)


build_options = options(
    click.option("--image", default=DEFAULT_IMAGE, show_default=True, help="Tag of the image."),
    click.option("--base-image", default=None,
                 help="BASE_IMAGE build argument. Default: the Dockerfile's nvidia/cuda tag."),
    click.option("--torch", "torch_packages", default=None, metavar="REQUIREMENTS",
                 help="Replace the pinned torch/torchvision, e.g. 'torch==2.13.0+cpu torchvision==0.28.0'."),
    click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE",
                 help="Another build argument (PIP_FIND_LINKS=...). Repeatable."),
    click.option("--build-network", default=None, help="Network of the build's RUN steps (host, ...)."),
    click.option("--dry-run", is_flag=True, help="Print the equivalent docker commands; contact no engine."),
)


run_options = options(
    click.option("--gpus", default="", show_default=True, help=f"GPUs for the container: {GPU_FORMS}."),
    click.option("--tracking-dir", default="outputs/tracking", show_default=True,
                 help="Host folder of the MLflow store (mlflow.db + artifacts), mounted at its own path."),
    click.option("--data-dir", default="data", show_default=True, help="Host folder of the datasets, mounted at /data."),
    click.option("--network", default=None, help="Network of the container (none, host...). Default: the engine's."),
    click.option("--user", default=None, help="uid:gid inside the container. Default: the caller's."),
    click.option("--experiment", default=None, help="MLflow experiment. Default: $MLFLOW_EXPERIMENT_NAME or 'rdbench'."),
    click.option("--artifact-dir", "artifact_dirs", multiple=True, metavar="DIR",
                 help="A host folder where experiments of the store may keep artifacts, mounted at its path. "
                      "Only the folders you name are mounted. Repeatable."),
)


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
        raise CliError(str(exc)) from None


@container.command("run", context_settings={"ignore_unknown_options": True})
@click.option("--image", default=DEFAULT_IMAGE, show_default=True, help="Image to run.")
@run_options
@click.option("--dry-run", is_flag=True, help="Print the equivalent docker command; contact no engine.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED, required=True)
def run_command(image, gpus, tracking_dir, data_dir, network, user, experiment, artifact_dirs, dry_run, args) -> None:
    """Run `rdbench ARGS...` in IMAGE with the store and data mounted:

        rdbench container run --gpus all -- run rd --case spot
    """
    try:
        workspace = Workspace.resolve(tracking_dir, data_dir, artifact_dirs=artifact_dirs,
                                      experiment=experiment_name(experiment))
        spec = run_spec(image, args, workspace, gpus, user, network, experiment)
        if dry_run:
            click.echo(shlex.join(spec.docker_cli()))
            return
        client = connect()
        check_gpu_runtime(client, gpus)
        workspace.make_folders()
        run_container(client, spec, _echo)
    except ContainerError as exc:
        raise CliError(str(exc)) from None


@container.command("reproduce")
@click.option("--grid", default="conf/paper.yaml", show_default=True, help="Grid file (or a name from conf/).")
@click.option("--device", default="auto", show_default=True, help="Device inside the container: auto, cuda, cpu.")
@click.option("--out-dir", default="outputs/report", show_default=True, help="Host folder for Table 1 and the figures.")
@click.option("--build", "build_policy", type=click.Choice(BUILD_POLICIES), default="auto", show_default=True,
              help="auto: build when the image is missing or older than the checkout.")
@build_options
@run_options
def reproduce_command(grid, device, out_dir, build_policy, image, base_image, torch_packages, build_args,
                      build_network, dry_run, gpus, tracking_dir, data_dir, network, user, experiment,
                      artifact_dirs) -> None:
    """Build the image if needed, then run GRID in it and regenerate Table 1.

    The results land in TRACKING_DIR/mlflow.db, which `mlflow ui` and `rdbench table`
    on the host read (`make ui`, `make table`).
    """
    try:
        build = _build_spec(image, base_image, torch_packages, build_args, build_network)
        workspace = Workspace.resolve(tracking_dir, data_dir, out_dir, artifact_dirs, experiment_name(experiment))
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
        raise CliError(str(exc)) from None


if __name__ == "__main__":  # `python -m rdbench.commands.container`: what the Makefile calls
    container(prog_name="rdbench container")
