"""Runs whose process is gone: who owns a RUNNING run, and the sweep that closes orphans.

Every run rdbench opens carries its owner: ``rdbench.host``, ``rdbench.pid`` and the
process's start time (``rdbench.pid_start``, so that a recycled pid is not mistaken for
the owner), and, while it runs, a heartbeat (``rdbench.heartbeat``, unix seconds) that
a background thread refreshes. A process killed by SIGKILL or the OOM killer cannot
end its runs; the next rdbench command on the store does (:func:`close_orphans`):

* a RUNNING run owned by a process of this host that no longer exists is KILLED;
* a RUNNING run of another host whose heartbeat is older than
  ``RDBENCH_HEARTBEAT_STALE_S`` (600 s) is KILLED;

grid parents included, each with the reason in ``rdbench.error``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlflow.entities import RunStatus, RunTag

from rdbench.tracking.store import all_experiment_ids, search_runs
from rdbench.tracking.tags import TAG_ERROR, TAG_KIND

TAG_HOST = "rdbench.host"
TAG_PID = "rdbench.pid"
TAG_PID_START = "rdbench.pid_start"
TAG_HEARTBEAT = "rdbench.heartbeat"


def _env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (``/proc``), None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), counted after the command name


def owner_tags(pid: int | None = None) -> dict[str, str]:
    """The tags that name this process (or process ``pid`` of this host) as a run's owner."""
    pid = pid or os.getpid()
    return {TAG_HOST: socket.gethostname(), TAG_PID: str(pid), TAG_PID_START: process_start(pid) or "",
            TAG_HEARTBEAT: str(int(time.time()))}


def owner_alive(tags: dict[str, str], now: float | None = None) -> bool | None:
    """Whether the process that owns a run with these tags is alive: True, False, or None (unknown)."""
    host, pid = tags.get(TAG_HOST), tags.get(TAG_PID)
    if not host or not pid or not pid.isdigit():
        return None  # not an rdbench run, or one from before owners were recorded
    if host == socket.gethostname():
        start = process_start(int(pid))
        return start is not None and start == tags.get(TAG_PID_START, start)
    beat = tags.get(TAG_HEARTBEAT, "")
    if not beat.isdigit():
        return None
    stale = _env_seconds("RDBENCH_HEARTBEAT_STALE_S", 600.0)
    return (now or time.time()) - int(beat) < stale


def close_orphans(client: Any, experiment_ids: Iterable[str] | None = None) -> list[str]:
    """Mark KILLED every RUNNING rdbench run whose owner is gone; return their ids."""
    ids = list(experiment_ids) if experiment_ids is not None else all_experiment_ids(client)
    if not ids:
        return []
    closed = []
    for run in search_runs(client, ids, "attributes.status = 'RUNNING'"):
        tags = run.data.tags
        if TAG_KIND not in tags or owner_alive(tags) is not False:
            continue
        where = f"{tags.get(TAG_HOST)} pid {tags.get(TAG_PID)}"
        client.log_batch(run.info.run_id, tags=[RunTag(
            TAG_ERROR, f"KILLED: its process ({where}) ended without closing it (SIGKILL, OOM killer, power loss)")])
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        closed.append(run.info.run_id)
    return closed


class Heartbeat:
    """Refreshes ``rdbench.heartbeat`` on this process's open runs every ``interval`` seconds."""

    def __init__(self, interval: float | None = None):
        self.interval = interval or _env_seconds("RDBENCH_HEARTBEAT_S", 60.0)
        self._runs: dict[str, Any] = {}  # run id -> client
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, client: Any, run_id: str) -> None:
        with self._lock:
            self._runs[run_id] = client
            if self._thread is None:
                self._thread = threading.Thread(target=self._beat, name="rdbench-heartbeat", daemon=True)
                self._thread.start()

    def remove(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def _beat(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                runs = list(self._runs.items())
            now = str(int(time.time()))
            for run_id, client in runs:
                try:
                    client.set_tag(run_id, TAG_HEARTBEAT, now)
                except Exception:  # noqa: BLE001 - a missed beat is not an error; the next one may land
                    pass


HEARTBEAT = Heartbeat()
