"""Memory estimates against what the host has left: the check every input-sized allocation passes first.

Imports nothing heavy (no torch, no numpy), so a command can refuse an input whose
estimate is too large before it loads anything.
"""

from __future__ import annotations

from pathlib import Path

from rdbench.config import ConfigError

MEMINFO = Path("/proc/meminfo")


def available_host_memory() -> int | None:
    """Bytes the host can still give (``MemAvailable`` of /proc/meminfo); None where it cannot tell."""
    try:
        with MEMINFO.open() as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def gib(size: float) -> str:
    """``12.3 GiB`` (``0.0012 GiB`` for small sizes)."""
    value = size / 2**30
    return f"{value:.1f} GiB" if value >= 0.1 else f"{value:.2g} GiB"


def check_fits(need: float, free: int | None, what: str, advice: str, where: str = "this machine") -> None:
    """ConfigError, one line, when ``need`` bytes exceed ``free`` (nothing when they fit or ``free`` is unknown)."""
    if free is not None and need > free:
        raise ConfigError(f"{what} needs about {gib(need)} and {where} has {gib(free)} available; {advice}")
