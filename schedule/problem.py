"""The scheduling problem and its solution, as plain data (no IR, no solver).

In CIRCT's terms: operations have an operator type (here an operator class executed by a
unit pool) and a latency per stream tile; dependences connect tiles of a producer to
tiles of a consumer, with an extra delay for results that travel (chip-to-chip links);
unit pools limit how many tiles run at once. Buffers describe what occupies SRAM while it
is live. `build.py` makes a Problem from the IR, solvers fill a Solution, `check.py`
tells whether a Solution is valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harden.schedule.machine import MachineModel


@dataclass
class Operation:
    """One scheduled op (or a chip-to-chip transfer of a result), split into stream tiles."""

    name: str  # IR op name, e.g. "aten.linear", or "transfer"
    label: str  # what reports call it, e.g. "%12 aten.linear"
    operator_class: str | None  # None: free (a view: no unit, no time)
    layer: int
    chip: int
    pool: int | None  # index into Problem.pools; None for free ops
    durations: list[int]  # cycles of each tile on its unit
    tile_axis: int | None = None  # iteration dimension the tiles split
    transfer: tuple[int, int, int] | None = None  # (producer op, its result, destination chip)
    streamed_bytes: float = 0.0  # bytes its tiles stream through the unit's ports (SRAM traffic)
    shards: tuple[int, ...] = ()  # chips holding slices of its weight: tile t runs on shards[t // units per chip]
    shard_slices: tuple[tuple[int, int, int, int], ...] = ()  # (chip, weight axis, first, end) of each slice

    @property
    def tiles(self) -> int:
        return len(self.durations)


@dataclass
class Dependence:
    """Consumer tile t reads producer tiles ranges[t] = (first, last), or nothing if None."""

    producer: int
    consumer: int
    ranges: list[tuple[int, int] | None]
    delay: int = 0


@dataclass
class UnitPool:
    """Interchangeable unit instances (e.g. the 4 MXM planes of chip 0): a tile runs on one."""

    name: str
    kind: str
    units: list[str]
    chip: int = 0
    layer: int | None = None  # per-layer and per-weight pools


@dataclass
class Buffer:
    """A tensor in SRAM: from its producer's first tile to its last reader's end."""

    name: str
    bytes: int
    chip: int
    producer: int | None  # None: present from cycle 0 (arguments, folded constants)
    readers: list[int] = field(default_factory=list)
    live_out: bool = False  # returned by the function: live until the makespan
    kind: str = "activation"  # activation, argument, constant, transfer, result or kv_cache (see build.py)


@dataclass
class Problem:
    """Everything a solver or checker needs for one function."""

    function: str
    machine: MachineModel
    tile: int
    max_tiles: int
    chips: int
    layer_count: int
    operations: list[Operation]
    dependences: list[Dependence]
    pools: list[UnitPool]
    buffers: list[Buffer]
    weight_bytes: list[int]  # per chip: weights resident in SRAM for the whole run
    tokens: int | None = None  # tokens one run processes (decode: 1), for tokens/s
    notes: list[str] = field(default_factory=list)


@dataclass
class Solution:
    """Start cycle and unit (index into the op's pool; -1 for free ops) of every tile."""

    starts: list[list[int]]
    units: list[list[int]]

    def end(self, problem: Problem, op: int, tile: int) -> int:
        return self.starts[op][tile] + problem.operations[op].durations[tile]

    def op_start(self, op: int) -> int:
        return min(self.starts[op])

    def op_end(self, problem: Problem, op: int) -> int:
        return max(s + d for s, d in zip(self.starts[op], problem.operations[op].durations))

    def makespan(self, problem: Problem) -> int:
        return max((self.op_end(problem, i) for i in range(len(problem.operations))), default=0)
