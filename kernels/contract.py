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

KERNEL_DIRECTORY = Path(sys.prefix) / "harden-kernels"
"""Where the Makefile builds kernels/vnni_linear.c into the environment (`make install`)."""

KERNEL_BUILDS = (
    ("vnni_linear.o", ("avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512vbmi"), "AVX-512 VNNI"),
    ("vnni_linear_avx2.o", ("avx2", "fma"), "AVX2"),
)
"""The builds of the one C source, best first: (object, /proc/cpuinfo flags it needs, name).
An object has no run-time dispatch of its own: the backend links the first one the host can
run, so a module lowered on one CPU runs on another, with the same results (exact integer
sums, the same f32 operations in the same order)."""


@functools.cache
def kernel_build() -> tuple[Path, str] | None:
    """(object, ISA name) of the C kernels for this host's CPU, or None if it has no build."""
    flags = cpu_flags()
    for name, required, isa in KERNEL_BUILDS:
        if all(flag in flags for flag in required):
            return KERNEL_DIRECTORY / name, isa
    return None


def kernel_isa() -> str | None:
    """The instruction set of the C kernels this host runs ("AVX-512 VNNI", "AVX2"), or None."""
    build = kernel_build()
    return build[1] if build else None


@functools.cache
def unavailable_reason() -> str | None:
    """Why the C kernels cannot run here (CPU features missing, object not built), or None."""
    build = kernel_build()
    if build is None:
        return f"this CPU lacks both AVX-512 VNNI and AVX2 with FMA (flags {', '.join(KERNEL_BUILDS[-1][1])})"
    if not build[0].is_file():
        return f"the kernel object {build[0]} is not built (`make install` builds it)"
    return None


@functools.cache
def cpu_description() -> str:
    """This CPU as benchmark records name it: /proc/cpuinfo's model name, family and model
    (VMs often report only "AMD EPYC", which covers Zen 1 to Zen 5) and the instruction
    set the C kernels run with here."""
    fields = _first_processor()
    build = kernel_build()
    kernels = f"C kernels: {build[1]}" if build else "C kernels: none (no AVX2)"
    name = fields.get("model name", "unknown CPU")
    family = f"family {fields['cpu family']} model {fields.get('model', '?')}; " if "cpu family" in fields else ""
    return f"{name} ({family}{kernels})"


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The feature flags of this host's CPU (/proc/cpuinfo), empty where unknown."""
    return frozenset(_first_processor().get("flags", "").split())


@functools.cache
def _first_processor() -> dict[str, str]:
    """The fields of the first processor in /proc/cpuinfo (all processors of a host agree on
    model and flags), empty where it cannot be read."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields
