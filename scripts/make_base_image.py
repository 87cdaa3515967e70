#!/usr/bin/env python3
"""Make a Debian base image without a registry: debootstrap + `docker import`.

The Docker test cannot pull nvidia/cuda (no registry is reachable from CI), so it
builds docker/Dockerfile FROM this image instead (BASE_IMAGE). It needs root,
debootstrap and a reachable Debian mirror. Nothing is done when the image exists.

The host's locally added CA certificates (/usr/local/share/ca-certificates/*.crt)
are copied in, the way a site adds its own CA to a base image: where TLS to the
package registries passes a site's proxy, pip in the build needs that CA. The
Dockerfile's `apt-get install ca-certificates` folds them into the system store.

    python scripts/make_base_image.py --tag rdbench-base:bookworm
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import docker.errors

import docker


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def make_base_image(
    client: docker.DockerClient, tag: str, suite: str, mirror: str, workdir: Path, ca_dir: Path
) -> None:
    if shutil.which("debootstrap") is None:
        sys.exit("make_base_image: debootstrap is not installed (apt-get install -y debootstrap)")
    with tempfile.TemporaryDirectory(prefix="rdbench-rootfs-", dir=workdir) as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", suite, str(rootfs), mirror],
            check=True, stdout=subprocess.DEVNULL,
        )
        # Keep the image small: downloaded .debs and package lists are not needed.
        for leftover in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            leftover.unlink()
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)
        site_cas = rootfs / "usr/local/share/ca-certificates"
        site_cas.mkdir(parents=True, exist_ok=True)
        for cert in sorted(ca_dir.glob("*.crt")) if ca_dir.is_dir() else []:
            shutil.copyfile(cert, site_cas / cert.name)
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."], check=True)
        repository, _, version = tag.partition(":")
        client.api.import_image_from_file(
            str(tarball), repository=repository, tag=version or "latest", changes=['CMD ["/bin/bash"]']
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="rdbench-base:bookworm")
    parser.add_argument("--suite", default="bookworm")
    parser.add_argument("--mirror", default="http://deb.debian.org/debian")
    parser.add_argument("--workdir", default="/var/tmp", help="where the root filesystem is assembled")
    parser.add_argument("--ca-dir", default="/usr/local/share/ca-certificates",
                        help="site CA certificates (*.crt) to copy into the image")
    parser.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    args = parser.parse_args()
    client = docker.from_env()
    if image_exists(client, args.tag) and not args.force:
        print(f"{args.tag} exists")
        return
    make_base_image(client, args.tag, args.suite, args.mirror, Path(args.workdir), Path(args.ca_dir))
    print(f"{args.tag} made from debootstrap {args.suite}")


if __name__ == "__main__":
    main()
