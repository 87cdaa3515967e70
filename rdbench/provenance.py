"""Where a result came from: the commit of the rdbench checkout, the user, the command line.

A leaf module (standard library only), so that code which must not load MLflow or
torch (the container driver) and the tracking layer share one definition.
"""

from __future__ import annotations

import getpass
import os
import shlex
import subprocess
import sys
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


def user() -> str:
    """The user running rdbench (what the MLflow UI's User column shows), or ``unknown``."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


_command: list[str] | None = None


def set_command(args: list[str]) -> None:
    """Record the command line the ``rdbench`` entry point was given (what :func:`command_line` says)."""
    global _command
    _command = ["rdbench", *args]


def source_name() -> str:
    """``rdbench grid smoke``: the command and its first argument (a path as its file's stem), without a
    ``/`` (the MLflow UI's Source column shows what follows the last one: ``nodata``, ``smoke.yaml``).
    The whole command line is :func:`command_line`."""
    args = _command or [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    words = [Path(args[0]).name]
    for arg in args[1:]:
        if arg.startswith("-"):
            break
        words.append(Path(arg).stem if "/" in arg or arg.endswith((".yaml", ".yml", ".py")) else arg)
        if len(words) == 3:  # rdbench, the subcommand, its first argument
            break
    return " ".join(w.replace("/", "_") for w in words)


def command_line(limit: int = 500) -> str:
    """``rdbench run rd --case spot``: the command that made a run (the MLflow UI's Source column)."""
    if _command is not None:
        return shlex.join(_command)[:limit]
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return shlex.join([name, *sys.argv[1:]])[:limit]
