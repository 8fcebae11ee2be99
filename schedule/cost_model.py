"""Cycles a stream tile takes on its unit: compute and streaming, whichever is slower.

* matmul: multiply-accumulates / `macs_per_cycle`; ternary matmul: additions /
  `ternary_adds_per_cycle` (a ternary weight selects add, subtract or skip); on a
  `per_weight` unit the matrix has its own adders, sized so one input row takes
  `cycles_per_vector` cycles;
* attention products: multiply-accumulates / `macs_per_cycle`;
* vector ops: elements x passes / `elements_per_cycle`, a transcendental counting
  `transcendental_passes` passes;
* data movement and transfers: bytes / `stream_bytes_per_cycle`.

Every tile also streams its operands in and its results out: when the unit's
`stream_bytes_per_cycle` is set, a tile takes at least bytes / that rate (this is where
weights streamed from SRAM cost time on `tsp`, and why decode is bandwidth-bound). Then
`tile_cycles` of fixed overhead (filling the unit's pipeline) is added per tile, so
smaller tiles overlap more but pay more overhead.
"""

from __future__ import annotations

import math

from harden.schedule.machine import UnitKind


def tile_cycles(
    unit: UnitKind,
    operator_class: str,
    fraction: float,
    *,
    macs: int = 0,
    weight_elements: int = 0,
    elements: int = 0,
    vector_passes: float = 0.0,
    transcendentals: float = 0.0,
    bytes_streamed: float = 0.0,
) -> int:
    """Cycles of one tile doing `fraction` of an op's work and streaming `bytes_streamed` bytes."""
    compute = 0.0
    if operator_class in ("matmul", "ternary_matmul", "attention"):
        if unit.placement == "per_weight":
            rate = weight_elements / unit.cycles_per_vector if weight_elements else 0.0
        elif operator_class == "ternary_matmul":
            rate = unit.ternary_adds_per_cycle
        else:
            rate = unit.macs_per_cycle
        compute = macs * fraction / rate if rate else 0.0
    elif operator_class in ("elementwise", "transcendental", "reduction"):
        passes = vector_passes + transcendentals * unit.transcendental_passes
        compute = elements * fraction * passes / unit.elements_per_cycle
    stream = bytes_streamed / unit.stream_bytes_per_cycle if unit.stream_bytes_per_cycle else 0.0
    # Round up, but not for float noise (1e-9 of a cycle) in an exact division.
    busy = math.ceil(max(compute, stream) - 1e-9)
    return max(1, busy + unit.tile_cycles)
