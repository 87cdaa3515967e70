"""Where a result came from: the commit of the rdbench checkout and whether it was dirty, the user, the command line.

A leaf module (standard library only), so that code which must not load MLflow or
torch (the container driver) and the tracking layer share one definition.
"""

from __future__ import annotations

import functools
import getpass
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

COMMIT_ENV = "RDBENCH_GIT_COMMIT"  # set where there is no .git (the Docker image)


def repo_root() -> Path:
    """The folder above the package: a checkout's root in a development install."""
    return Path(__file__).resolve().parent.parent


def _git(root: Path, *args: str) -> str | None:
    """``git -C root ARGS`` output, None when git or the checkout is not there."""
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def checkout_root(root: Path | None = None) -> Path | None:
    """``root`` (default: the folder above the package) when it is the top of a git checkout,
    else None (an installed package, or one inside some other repository)."""
    root = (root or repo_root()).resolve()
    top = _git(root, "rev-parse", "--show-toplevel")
    return root if top is not None and Path(top.strip()).resolve() == root else None


def git_commit(root: Path | None = None) -> str | None:
    """HEAD of the rdbench checkout, if the package lives in one (else ``$RDBENCH_GIT_COMMIT``)."""
    found = checkout_root(root)
    commit = _git(found, "rev-parse", "HEAD") if found else None
    return (commit or "").strip() or os.environ.get(COMMIT_ENV)


GIT_DIFF_LIMIT = 1_000_000  # characters of `git diff` kept with a run: a diff this big is a work tree, not a fix


@dataclass(frozen=True)
class TreeState:
    """Whether the checkout differs from its commit, and how (``git diff HEAD``, bounded)."""

    dirty: bool
    diff: str


@functools.lru_cache(maxsize=8)
def tree_state(root: Path | None = None, limit: int = GIT_DIFF_LIMIT) -> TreeState | None:
    """The checkout's state, once per process (the code that runs is the code loaded at start);
    None outside a checkout. Dirty as ``git status`` says: a tracked file differs from HEAD (staged
    or not) or a file git does not ignore is untracked (``mlflow.db``, ``outputs/`` and checkpoints
    are ignored). The diff is ``git diff HEAD`` after a list of the untracked files, cut at
    ``limit`` characters with a last line saying so."""
    found = checkout_root(root)
    status = _git(found, "status", "--porcelain") if found else None
    diff = _git(found, "diff", "HEAD", "--no-color", "--no-ext-diff") if found else None
    if status is None or diff is None:
        return None
    untracked = [line[3:] for line in status.splitlines() if line.startswith("?? ")]
    text = "".join(f"# untracked: {name}\n" for name in untracked) + diff
    if len(text) > limit:
        text = text[:limit] + f"\n# ... cut at {limit} of {len(text)} characters (rdbench.provenance.GIT_DIFF_LIMIT)\n"
    return TreeState(dirty=bool(status.strip()), diff=text)


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
