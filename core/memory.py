"""How much memory this machine can give: for refusing, before the work, what would not fit
(the alternative is the kernel's OOM kill minutes later)."""

from __future__ import annotations

import os
from pathlib import Path


def available_memory_bytes() -> int:
    """MemAvailable of /proc/meminfo (what can be allocated without swapping), else all memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def format_bytes(n: int) -> str:
    """`n` bytes in the binary unit that keeps one decimal meaningful: 512 B, 16.0 KiB, 1.5 GiB."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
