"""Background processes rdbench starts (the tracking server, its PostgreSQL): ports and sessions.

Every long-running process rdbench starts is the leader of a new session
(``subprocess.Popen(..., start_new_session=True)``). What it forks stays in that
session even when it moves to a process group of its own (Ray's workers, uvicorn's
workers do), so the session id finds every one of them again, from any process and
any network namespace, and :func:`stop_session` ends them: the polite signal
first, SIGKILL for whatever is left after ``timeout`` seconds. Nothing here stops
a process by name.

Linux only (it reads ``/proc``), like the services it serves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

PROC = Path("/proc")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on at ``host`` now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """True when a server could not bind ``host:port`` (someone listens there already).

    SO_REUSEADDR is set as the servers set it, so a port left in TIME_WAIT counts as free.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state letter, parent pid, session id) of a process, or None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ..."; comm may hold spaces and parentheses
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[3])


def _live_processes() -> dict[int, tuple[str, int, int]]:
    table = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            info = _stat(int(entry.name))
            if info is not None and info[0] not in ("Z", "X"):
                table[int(entry.name)] = info
    return table


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    info = _stat(pid)
    return info is not None and info[0] not in ("Z", "X")


def command_line(pid: int) -> str:
    """The command line of ``pid`` ('' when it is gone): to check a recorded pid before signalling it."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def session_members(sid: int) -> list[int]:
    """The live processes of session ``sid`` (its leader included while it runs)."""
    return sorted(pid for pid, info in _live_processes().items() if info[2] == sid)


def children(pid: int) -> list[int]:
    """The live direct children of ``pid`` (PostgreSQL's, which each start a session of their own)."""
    return sorted(child for child, info in _live_processes().items() if info[1] == pid)


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def wait_gone(sid: int, timeout: float) -> list[int]:
    """Wait up to ``timeout`` s for session ``sid`` to empty; the members still alive."""
    deadline = time.monotonic() + timeout
    while True:
        left = session_members(sid)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def stop_session(sid: int, *, timeout: float = 10.0, first: int = signal.SIGTERM) -> bool:
    """Stop every process of session ``sid``: ``first`` to all, SIGKILL to what is left after ``timeout`` s.

    Returns True when the session was already empty or emptied politely, False when
    SIGKILL was needed. Raises RuntimeError if processes survive SIGKILL for 10 s.
    """
    members = session_members(sid)
    if not members:
        return True
    _signal_all(members, first)
    if not wait_gone(sid, timeout):
        return True
    _signal_all(session_members(sid), signal.SIGKILL)
    left = wait_gone(sid, 10.0)
    if left:
        raise RuntimeError(f"processes {left} of session {sid} survived SIGKILL")
    return False
