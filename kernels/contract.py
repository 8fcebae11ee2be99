"""The contract between the lowering (torch-mlir side) and the IREE backend for the ternary kernels.

Both sides import this module, and nothing else of each other: the attribute names the
lowering writes and the backend reads, where the C kernel object lives, and whether this
host can run it (the check `kernel=auto` decides by, and the backend refuses by).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

CUSTOM_DISPATCH_ATTR = "harden.ternary_vnni"
"""Dictionary attribute on a C kernel's declaration: numerics and the packed layout's sizes."""

CPU_TILING_ATTR = "harden.cpu_tiling"
"""Discardable attribute on the exact kernel's generic: {distribution, vector_common_parallel,
vector_reduction} tile sizes for IREE's CPU DoubleTilingExpert pipeline."""

DECODE_MAX_KP = 16384
"""Longest padded row the C kernel's one-dispatch decode path quantizes on its stack."""

KERNEL_OBJECT = Path(sys.prefix) / "harden-kernels" / "vnni_linear.o"
"""Built from kernels/vnni_linear.c into the environment by the Makefile (`make install`)."""

REQUIRED_CPU_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512vbmi")
"""/proc/cpuinfo names of the features the object is compiled for (it has no run-time dispatch)."""


@functools.cache
def unavailable_reason() -> str | None:
    """Why the C kernels cannot run here (object not built, CPU features missing), or None."""
    if not KERNEL_OBJECT.is_file():
        return f"the kernel object {KERNEL_OBJECT} is not built (`make install` builds it)"
    missing = [flag for flag in REQUIRED_CPU_FLAGS if flag not in cpu_flags()]
    if missing:
        return f"this CPU lacks {', '.join(missing)}"
    return None


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The feature flags of this host's CPU (/proc/cpuinfo), empty where unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()
