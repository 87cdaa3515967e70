"""Where a result came from: the commit of the rdbench checkout.

A leaf module (standard library only), so that code which must not load MLflow or
torch (the container driver) and the tracking layer share one definition.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

COMMIT_ENV = "RDBENCH_GIT_COMMIT"  # set where there is no .git (the Docker image)


def repo_root() -> Path:
    """The folder above the package: a checkout's root in a development install."""
    return Path(__file__).resolve().parent.parent


def git_commit(root: Path | None = None) -> str | None:
    """HEAD of the rdbench checkout, if the package lives in one (else ``$RDBENCH_GIT_COMMIT``)."""
    root = (root or repo_root()).resolve()
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return os.environ.get(COMMIT_ENV)
    top, _, commit = out.stdout.strip().partition("\n")
    if Path(top).resolve() != root:  # an installed package inside some other repository
        return os.environ.get(COMMIT_ENV)
    return commit.strip() or None
