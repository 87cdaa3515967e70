"""Progress that a log file can show: a timestamped line at a steady interval, with the rate and the ETA.

On a terminal a bar redraws in place; redirected to a file it would print nothing
useful, so off a terminal :class:`LogProgress` writes one line every ``interval``
seconds (``RDBENCH_PROGRESS_S``, default 30):

    2026-12-04T20:31:05Z ddpm/digits training: step 1200/5000 (24%), 11.8 steps/s, ETA 5 min 22 s

and, once it has written one, a last line when the task ends (a task shorter than the
interval stays silent). :func:`eta_s` is the same estimate for a grid's cells
(``rdbench grid`` prints the total ETA after each cell). A leaf module (standard
library only): the systems report through ``update(n)``, the clock can be injected,
so the tests use a fake clock, never a sleep.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import TextIO

INTERVAL_ENV = "RDBENCH_PROGRESS_S"
DEFAULT_INTERVAL_S = 30.0
BAR_WIDTH = 24  # characters of the in-place bar on a terminal


def interval_s() -> float:
    """Seconds between two progress lines off a terminal (``$RDBENCH_PROGRESS_S``, default 30)."""
    text = os.environ.get(INTERVAL_ENV)
    if text is None:
        return DEFAULT_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{INTERVAL_ENV}={text!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{INTERVAL_ENV}={text!r}: the interval must be a positive number of seconds")
    return value


def duration(seconds: float) -> str:
    """``42 s``, ``5 min 22 s``, ``2 h 03 min``: a duration a reader takes in at a glance."""
    if seconds != seconds or seconds == float("inf"):  # nan or inf: no estimate yet
        return "unknown"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def eta_s(elapsed: float, done: float, total: float) -> float:
    """Seconds left at the mean rate so far (nan before anything is done)."""
    if done <= 0 or elapsed <= 0:
        return float("nan")
    return elapsed / done * max(total - done, 0)


def utc_stamp(now: float) -> str:
    return datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class LogProgress:
    """Counts steps; every ``interval`` seconds (and at the end) writes one timestamped line.

    ``clock`` is a monotonic clock (the interval and the rate), ``wall`` the time of day
    of the stamp; both default to the real ones. ``update`` costs one clock read.
    """

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        self.total = max(int(total), 0)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval_s() if interval is None else interval
        self.clock = clock
        self.wall = wall
        self.done = 0
        self.start = clock()
        self.next_line = self.start + self.interval
        self.lines = 0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now >= self.next_line:
            self.write(now)
            self.next_line = now + self.interval

    def line(self, now: float) -> str:
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else float("nan")
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        left = eta_s(elapsed, self.done, self.total)
        ended = self.total and self.done >= self.total
        tail = f"done in {duration(elapsed)}" if ended else f"ETA {duration(left)}"
        label = f"{self.label}: " if self.label else ""
        return f"{utc_stamp(self.wall())} {label}step {self.done}/{self.total}{share}, {rate:.3g} steps/s, {tail}"

    def write(self, now: float) -> None:
        print(self.line(now), file=self.stream, flush=True)
        self.lines += 1

    def close(self) -> None:
        """The last line of a task that has written one (a log shows how it ended and how fast it went)."""
        if self.lines:
            self.write(self.clock())


class TerminalBar:
    """A bar redrawn in place on a terminal (``\\r``), with the rate and the ETA."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, redraw_s: float = 0.2):
        self.total = max(int(total), 0)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.redraw_s = redraw_s
        self.done = 0
        self.start = clock()
        self.drawn = float("-inf")

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.drawn >= self.redraw_s:
            self.draw(now)

    def draw(self, now: float) -> None:
        self.drawn = now
        filled = round(BAR_WIDTH * self.done / self.total) if self.total else BAR_WIDTH
        left = eta_s(now - self.start, self.done, self.total)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
                          f"{self.done}/{self.total} ETA {duration(left)}   ")
        self.stream.flush()

    def close(self) -> None:
        self.draw(self.clock())
        self.stream.write("\n")
        self.stream.flush()


@contextlib.contextmanager
def progress(total: int, label: str = "", stream: TextIO | None = None) -> Iterator[LogProgress | TerminalBar]:
    """The progress display of one task: a bar on a terminal, timestamped lines elsewhere
    (a log file, a notebook, a pipe). What ``rdbench.run`` uses; ``rdbench`` commands use
    click's bar on a terminal and :class:`LogProgress` elsewhere."""
    stream = stream if stream is not None else sys.stderr
    shown = TerminalBar(total, label, stream) if stream.isatty() else LogProgress(total, label, stream)
    try:
        yield shown
    finally:
        shown.close()


@contextlib.contextmanager
def log_progress(total: int, label: str = "") -> Iterator[LogProgress]:
    """:class:`LogProgress` on stderr as a context manager (its last line written on exit)."""
    shown = LogProgress(total, label)
    try:
        yield shown
    finally:
        shown.close()
