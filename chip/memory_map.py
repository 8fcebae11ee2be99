"""The SRAM memory map of a scheduled function: an address for every buffer, per chip.

The schedule says when each buffer is live (`schedule.memory.buffer_lifetimes`: from its
producer's first tile to its last reader's end); this gives each one an address so that no
two buffers live at the same time overlap. Regions are placed in this order:

1. weights held in SRAM (`weight_storage = "sram"` machines: streamed to the units every
   token), one region per weight matrix, at the bottom of the chip's memory;
2. buffers live for the whole run (the KV cache, the function's arguments and results),
   in the order the schedule lists them;
3. every other buffer, in order of its first cycle, at the lowest address free for its
   whole lifetime (first fit).

Every region starts on a multiple of `ALIGNMENT` bytes. First fit can leave gaps, so the
map's peak (the highest end address) may exceed the schedule's SRAM peak (the largest sum
of live bytes); both are reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from harden.schedule.memory import buffer_lifetimes, sram_peaks
from harden.schedule.problem import Problem, Solution

ALIGNMENT = 64  # bytes: one cache line of the host, a typical SRAM bank word multiple


@dataclass(frozen=True)
class Region:
    name: str
    kind: str  # weights, kv_cache, argument, constant, activation, transfer
    offset: int
    bytes: int
    first_cycle: int
    end_cycle: int  # exclusive

    def as_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "offset": self.offset, "bytes": self.bytes,
                "first_cycle": self.first_cycle, "end_cycle": self.end_cycle}


def _aligned(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


def _first_fit(size: int, first: int, end: int, placed: list[Region], floor: int) -> int:
    """The lowest aligned address >= floor where `size` bytes are free during [first, end)."""
    busy = sorted((r.offset, r.offset + r.bytes) for r in placed if r.first_cycle < end and first < r.end_cycle)
    address = floor
    for lo, hi in busy:
        if address + size <= lo:
            break
        address = max(address, _aligned(hi))
    return address


def memory_map(problem: Problem, solution: Solution, weights: list[list[tuple[str, int]]]) -> list[dict]:
    """Per chip: capacity, the schedule's SRAM peak, the map's peak and the regions.

    `weights[chip]` lists (name, stored bytes) of the weight matrices held in that chip's
    SRAM (empty on machines whose weights are built into the logic)."""
    makespan = solution.makespan(problem)
    lifetimes = buffer_lifetimes(problem, solution)
    peaks = sram_peaks(problem, solution)
    chips = []
    for chip in range(problem.chips):
        placed: list[Region] = []
        address = 0
        for name, size in weights[chip] if chip < len(weights) else []:
            placed.append(Region(name, "weights", address, size, 0, makespan))
            address = _aligned(address + size)
        buffers = [(b, lifetimes[i]) for i, b in enumerate(problem.buffers) if b.chip == chip and b.bytes]
        whole_run = [(b, life) for b, life in buffers if b.live_out or b.kind == "kv_cache"]
        for buffer, (first, last) in whole_run:
            placed.append(Region(buffer.name, buffer.kind, address, buffer.bytes, 0, max(makespan, last, 1)))
            address = _aligned(address + buffer.bytes)
        floor = address
        rest = [(b, life) for b, life in buffers if not (b.live_out or b.kind == "kv_cache")]
        # Same tie-breaks as the SRAM peak: by first cycle, larger buffers first, then schedule order.
        order = sorted(range(len(rest)), key=lambda k: (rest[k][1][0], -rest[k][0].bytes, k))
        for k in order:
            buffer, (first, last) = rest[k]
            end = max(last, first + 1)
            offset = _first_fit(buffer.bytes, first, end, placed, floor)
            placed.append(Region(buffer.name, buffer.kind, offset, buffer.bytes, first, end))
        peak = max((r.offset + r.bytes for r in placed), default=0)
        chips.append({
            "chip": chip,
            "capacity_bytes": problem.machine.sram_bytes,
            "schedule_peak_bytes": peaks[chip].bytes if chip < len(peaks) else 0,
            "peak_bytes": peak,
            "fits": peak <= problem.machine.sram_bytes,
            "regions": [r.as_json() for r in sorted(placed, key=lambda r: (r.offset, r.first_cycle, r.name))],
        })
    return chips
