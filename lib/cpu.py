"""The CPU's feature flags, as Linux lists them in /proc/cpuinfo (empty where that cannot be read)."""
from __future__ import annotations

import functools
from pathlib import Path


@functools.cache
def cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags() -> set[str]:
    """The flags of the first processor listed (they are the same on every core of the machines we run on)."""
    for line in cpuinfo().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()
