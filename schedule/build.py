"""Builds the scheduling Problem of one function from its IR.

Steps: model every op (ops.py), trace what each op reads (through lists, scalars and other
unscheduled ops), find layers (layers.py) and chips (placement.py), add chip-to-chip
transfers, split ops into stream tiles and connect tiles by the access maps, cost each
tile (cost_model.py), group units into pools and collect the buffers that occupy SRAM.

Tiling. An op's iteration space is split along its *stream axis*, its outermost dimension
longer than 1 (the tokens of a prefill, the features of a decode step, the heads of
attention), into `ceil(elements / tile)` tiles, at most `max_tiles` and at most the axis
length, rounded up to a multiple of the units that can run them; `tile = 0` keeps every
op whole. A view (a free op) streaming an axis as long as its producer's takes the
producer's tiles. A consumer tile depends on exactly the producer
tiles that wrote the box its access map reads, so a consumer starts on its producer's
first tiles and consecutive layers overlap where the data allows.

Attributes that are already on the ops are honoured: `harden.layer`, `harden.chip` and
`harden.shards` (written by an earlier run, or by hand) fix an op's layer and chips.

Sharded ops. An op reading a weight too large for one chip (placement.py) runs on the
chips holding its slices: its pool is those chips' units of its kind, chip by chip, and
it streams along its output axis (the last one) in one tile per unit, so tile t runs on
chip `shards[t // units_per_chip]`, the chip holding its rows (check.py verifies it).
Its inputs and results travel as any op's do between its first chip and the others'
(one transfer each way: the slices move over parallel links in the same time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch_mlir import ir

from harden.core.graph import body_ops
from harden.schedule import cost_model
from harden.schedule.layers import infer_layers, layer_from_name, layer_label
from harden.schedule.machine import MachineModel
from harden.schedule.ops import (
    OpModel,
    ScheduleError,
    Unscheduled,
    box_numel,
    dtype_bytes,
    full_box,
    model_op,
    numel,
    tensor_info,
)
from harden.schedule.placement import (
    PlacementError,
    balanced_partition,
    chips_needed,
    shard_bytes,
    shard_layout,
    shard_ranges,
    shard_tile_length,
)
from harden.schedule.problem import Buffer, Dependence, Operation, Problem, UnitPool

LAYER_ATTR = "harden.layer"
CHIP_ATTR = "harden.chip"
SHARDS_ATTR = "harden.shards"
_FLOAT_DTYPES = {"f32", "f16", "bf16", "f64"}


@dataclass
class Binding:
    """Ties the Problem to the IR: the IR op of each problem op (a transfer: its producer)."""

    func: ir.OpView
    ir_ops: list  # per problem operation


@dataclass
class _Read:
    """One tensor an op reads: produced by a scheduled op, or a root present from cycle 0."""

    producer: int | None  # index of the scheduled op (base numbering)
    result: int
    access: object  # Box -> Box | None
    value: ir.Value
    counts_bytes: bool
    weight: bool = False


def build_problem(func, machine: MachineModel, tile: int, max_tiles: int, chips: int | None = None) -> tuple[Problem, Binding]:
    """The Problem of `func` on `machine`; raises ScheduleError at the op that cannot be handled."""
    return _Builder(func, machine, tile, max_tiles, chips).build()


class _Builder:
    def __init__(self, func, machine: MachineModel, tile: int, max_tiles: int, chips: int | None):
        self.func = func
        self.machine = machine
        self.tile = tile
        self.max_tiles = max(1, max_tiles)
        self.requested_chips = chips if chips else machine.chips
        self.name = ir.StringAttr(func.attributes["sym_name"]).value

    # -- IR side ------------------------------------------------------------------------

    def build(self) -> tuple[Problem, Binding]:
        ops = body_ops(self.func)
        self.terminator = ops[-1]
        # One numbering of the function's values for labels (a fresh one per value is quadratic).
        self.asm = ir.AsmState(self.func.operation)
        self.models: list[OpModel] = []
        self.ir_ops: list = []
        self.producer_of: dict[ir.Value, tuple[int, int]] = {}
        self.roots: dict[ir.Value, ir.Value] = {}  # value -> the value owning its buffer
        self.kind_of: dict[ir.Value, str] = {}  # unscheduled values: weight / folded / transparent
        for op in ops[:-1]:
            model = model_op(op)
            if isinstance(model, Unscheduled):
                for r in op.operation.results:
                    self.kind_of[r] = model.kind
                continue
            index = len(self.models)
            self.models.append(model)
            self.ir_ops.append(op)
            for k, r in enumerate(model.results):
                self.producer_of[r.value] = (index, k)
        self.reads = [self._reads_of(m) for m in self.models]
        # n-bit codes carried in i8 take their stored bits of memory (weights read by a tied
        # embedding and classifier count once, like any weight value).
        self.code_bits = {m.operands[1].value: m.code_bits for m in self.models if m.code_bits and m.operands[1] is not None}
        self._fold_transposes()
        self.replication = {}
        self.slots: dict[ir.Value, tuple] = {}  # value -> (root, dimension, index) it updates in place
        self.stacked_roots: dict[ir.Value, int] = {}  # root -> stacks living in it
        for i, m in enumerate(self.models):
            self._resolve_alias(i, m)
        self.layers, self.layer_count = self._layers()
        self.chips, self.chip_of_layer = self._chips()
        self.op_chip = [self._chip_of(i) for i in range(len(self.models))]
        return self._assemble()

    def _reads_of(self, model: OpModel) -> list[_Read]:
        reads = []
        for use in model.operands:
            if use is None:
                continue
            reads.extend(self._trace(use.value, use.access, use.counts_bytes))
        return reads

    def _trace(self, value, access, counts_bytes, seen=None) -> list[_Read]:
        """What reading `value` depends on: a scheduled producer, or roots through unscheduled ops."""
        if value in self.producer_of:
            p, r = self.producer_of[value]
            return [_Read(p, r, access, value, counts_bytes)]
        owner = value.owner
        if isinstance(owner, ir.Block):
            return [_Read(None, 0, access, value, counts_bytes)]
        kind = self.kind_of.get(value)
        if kind == "weight":
            return [_Read(None, 0, access, value, counts_bytes, weight=True)]
        if kind == "folded":
            return [_Read(None, 0, access, value, counts_bytes)]
        # Transparent ops (scalars, lists, tensor-list unpacking) pass on whole operands.
        seen = seen if seen is not None else set()
        op = owner  # operands only: no need for the op's Python view class
        reads = []
        for operand in op.operands:
            if operand in seen:
                continue
            seen.add(operand)
            info = tensor_info(operand.type)
            whole = (lambda s: lambda box: full_box(s))(info.shape) if info and None not in info.shape else (lambda box: None)
            for read in self._trace(operand, whole, counts_bytes and info is not None, seen):
                if read.producer is not None or read.weight or info is not None:
                    reads.append(read)
        return reads

    def _fold_transposes(self) -> None:
        """A transpose read only by matmuls (through views) is folded into their operand stream.

        Compilers fold such transposes into the matmul (it reads its operand in transposed
        order, as `q @ k^T` does), so no data moves: the transpose becomes a view.
        """
        consumers: list[list[int]] = [[] for _ in self.models]
        for c, reads in enumerate(self.reads):
            for r in reads:
                if r.producer is not None:
                    consumers[r.producer].append(c)
        memo: dict[int, bool] = {}

        def feeds_only_matmuls(i: int) -> bool:
            if i not in memo:
                memo[i] = bool(consumers[i]) and all(
                    self.models[c].operator_class in ("matmul", "ternary_matmul", "attention")
                    or (self.models[c].operator_class is None and feeds_only_matmuls(c))
                    for c in consumers[i]
                )
            return memo[i]

        for i in reversed(range(len(self.models))):
            model = self.models[i]
            if model.operator_class == "move" and model.op_name.split(".")[1] in ("transpose", "permute", "t"):
                if feeds_only_matmuls(i):
                    model.operator_class, model.alias = None, 0

    def _resolve_alias(self, index: int, model: OpModel) -> None:
        """Roots of results (views share their operand's buffer) and replication factors."""
        for r in model.results:
            self.roots[r.value] = r.value
            self.replication[r.value] = 1.0
        if model.stack_dim is not None:
            self._stack_in_place(model)
        if model.alias is None:
            return
        source = model.operands[model.alias]
        root = self._root(source.value)
        result = model.results[0].value
        self.roots[result] = root
        self.replication[result] = model.replication * self.replication.get(source.value, 1.0)
        k = model.free_if_aliased_source
        if k is not None and model.operator_class is not None and self._root(model.operands[k].value) == root:
            # The update's source was computed in place: nothing left to move.
            model.operator_class = None
        if model.view_slot is not None and root == source.value:
            self.slots[result] = (root, *model.view_slot)
        elif model.in_place and source.value in self.slots:
            self.slots[result] = self.slots[source.value]

    def _stack_in_place(self, model: OpModel) -> None:
        """A stack of in-place updates of the slots of one buffer, each at its own index, is
        that buffer: the KV cache written layer by layer and stacked at the end costs nothing."""
        items = [use.value for use in model.operands]
        slots = [self.slots.get(v) for v in items]
        if not items or any(slot is None for slot in slots):
            return
        root = slots[0][0]
        info = tensor_info(root.type)
        if info is None or info.shape != model.results[0].shape:
            return
        if all(slot == (root, model.stack_dim, k) for k, slot in enumerate(slots)):
            model.operator_class, model.alias = None, 0
            self.stacked_roots[root] = self.stacked_roots.get(root, 0) + 1

    def _root(self, value):
        return self.roots.get(value, value)

    # -- layers and chips ----------------------------------------------------------------

    def _layers(self) -> tuple[list[int], int]:
        n = len(self.models)
        producers = [sorted({r.producer for r in reads if r.producer is not None}) for reads in self.reads]
        weighted = [
            (m.operator_class in ("matmul", "ternary_matmul") and m.weight_elements > 0) or _reads_table(m, self.reads[i])
            for i, m in enumerate(self.models)
        ]
        cores = [m.attention_core for m in self.models]
        named = []
        for i, m in enumerate(self.models):
            explicit = _int_attr(self.ir_ops[i], LAYER_ATTR)
            if explicit is not None:
                named.append(explicit)
                continue
            names = [layer_from_name(n) for n in m.weight_names]
            named.append(next((x for x in names if x is not None), None))
        layers, count = infer_layers(producers, weighted, cores, named)
        for i in range(n):
            explicit = _int_attr(self.ir_ops[i], LAYER_ATTR)
            if explicit is not None:
                layers[i] = explicit
        if not count and layers:
            count = max(0, max(layers))
        return layers, count

    def _chips(self) -> tuple[int, dict[int, int]]:
        """Chip count and the chip of each layer; fills `op_shards` and `shard_weights`."""
        self.op_shards: dict[int, tuple[int, ...]] = {}  # op -> chips of its slices, in tile order
        self.op_slices: dict[int, tuple] = {}  # op -> (chip, weight axis, first, end) of each slice
        self.shard_weights: dict[ir.Value, list[tuple[int, int]]] = {}  # weight -> (chip, bytes) of its slices
        weights: dict[ir.Value, list[int]] = {}  # weight -> the ops reading it
        for i, reads in enumerate(self.reads):
            for r in reads:
                if r.weight and i not in weights.setdefault(r.value, []):
                    weights[r.value].append(i)
        explicit = [_int_attr(op, CHIP_ATTR) for op in self.ir_ops]
        if any(c is not None for c in explicit):
            for i, op in enumerate(self.ir_ops):
                chips = _int_array_attr(op, SHARDS_ATTR)
                if chips:
                    self.op_shards[i] = chips
            for value, readers in weights.items():
                chips = next((self.op_shards[i] for i in readers if i in self.op_shards), None)
                if chips:
                    self._shard(value, readers, self._weight_bytes(value), None, chips)
            return max(c or 0 for c in explicit + [max(s) for s in self.op_shards.values()]) + 1, {}
        if self.requested_chips == 1:
            return 1, {}
        layer_bytes: dict[int, int] = {layer: 0 for layer in set(self.layers)}
        if not layer_bytes:
            return 1, {}
        budget = int(self.machine.sram_bytes * (1 - self.machine.activation_reserve))
        sizes = {value: self._weight_bytes(value) for value in weights}
        oversized = [value for value, size in sizes.items() if size > budget]
        sharded = {i for value in oversized for i in weights[value]}
        # What else a sharded op reads (its scales, bias) is split with it, row by row.
        companions = [value for value in weights if value not in oversized and sharded & set(weights[value])]
        for value, readers in weights.items():
            if value not in oversized and value not in companions:
                layer_bytes[self.layers[readers[0]]] += sizes[value]
        try:
            chips = self.requested_chips or chips_needed(layer_bytes, budget)
            assignment = balanced_partition(layer_bytes, chips)
            # Fewer layer groups than chips asked for use fewer chips.
            count = max(assignment.values()) + 1
            for value in oversized:  # chips of their own, after the layer groups
                count += self._shard(value, weights[value], sizes[value], budget, first_chip=count)
            for value in companions:
                chips = next(self.op_shards[i] for i in weights[value] if i in sharded)
                self._shard(value, weights[value], sizes[value], None, chips)
        except PlacementError as e:
            raise ScheduleError(self.func, f"cannot place the model on '{self.machine.name}': {e}") from None
        return count, assignment

    def _shard(self, value, readers: list[int], size: int, budget: int | None, chips: tuple[int, ...] = (),
               first_chip: int = 0) -> int:
        """Splits weight `value` over chips (given, or as few as fit `budget` from `first_chip`):
        its readers run there, each chip holding the slice its units compute. The slices follow
        the reader that defines the weight's layout (a matmul's rows; a table only gathered
        from: its columns). Returns the chip count."""
        matrix = [i for i in readers if self.models[i].operator_class in ("matmul", "ternary_matmul")]
        layout = (matrix or readers)[0]
        length = self.models[layout].iteration[-1]
        per_chip = self._units_per_chip(self._unit(self.models[layout]))
        if chips:
            ranges = shard_ranges(length, len(chips), per_chip)
        else:
            ranges = shard_layout(size, budget, length, per_chip)
            chips = tuple(range(first_chip, first_chip + len(ranges)))
        self.shard_weights[value] = [(chip, shard_bytes(size, length, r)) for chip, r in zip(chips, ranges)]
        # A matmul's output axis is its weight's rows; a gather's, its table's columns.
        axis = 0 if matrix else 1
        for i in readers:
            self.op_shards[i] = chips
            self.op_slices[i] = tuple((chip, axis, lo, hi) for chip, (lo, hi) in zip(chips, ranges))
        return len(chips)

    @staticmethod
    def _units_per_chip(unit) -> int:
        return unit.count if unit is not None and unit.placement != "per_weight" else 1

    def _chip_of(self, i: int) -> int:
        if i in self.op_shards:
            return self.op_shards[i][0]
        explicit = _int_attr(self.ir_ops[i], CHIP_ATTR)
        if explicit is not None:
            return explicit
        return self.chip_of_layer.get(self.layers[i], 0)

    def _weight_bytes(self, value) -> int:
        if not self.machine.weights_in_sram:
            return 0
        info = tensor_info(value.type)
        if value in self.code_bits:
            return -(-numel(info.shape) * self.code_bits[value] // 8)
        size = self.machine.float_weight_bytes if info.dtype in _FLOAT_DTYPES and self.machine.float_weight_bytes else dtype_bytes(info.dtype)
        return numel(info.shape) * size

    def _element_bytes(self, read: _Read) -> float:
        """Bytes streamed per element read of a value (weights per the machine's policy)."""
        info = tensor_info(read.value.type)
        if info is None:
            return 0.0
        if read.weight:
            return self._weight_bytes(read.value) / max(1, numel(info.shape))
        return dtype_bytes(info.dtype) / self.replication.get(read.value, 1.0)

    # -- the problem ---------------------------------------------------------------------

    def _assemble(self) -> tuple[Problem, Binding]:
        base_n = len(self.models)
        # Transfers: one per (producer result, destination chip) of computed data crossing chips.
        transfers: dict[tuple[int, int, int], int] = {}
        order: list[tuple[str, int]] = []
        crossing: dict[int, list[tuple[int, int]]] = {}
        for c, reads in enumerate(self.reads):
            for r in reads:
                if r.producer is None or self.op_chip[r.producer] == self.op_chip[c]:
                    continue
                if self._root(r.value) not in self.producer_of:
                    continue  # a view of an argument: each chip holds its part of the inputs
                key = (r.producer, r.result, self.op_chip[c])
                if key not in transfers:
                    transfers[key] = -1
                    crossing.setdefault(r.producer, []).append((r.result, self.op_chip[c]))
        final_index: dict[int, int] = {}
        for i in range(base_n):
            final_index[i] = len(order)
            order.append(("op", i))
            for result, chip in crossing.get(i, []):
                transfers[(i, result, chip)] = len(order)
                order.append(("transfer", i, result, chip))

        self.pools: list[UnitPool] = []
        self.pool_index: dict[tuple, int] = {}
        self.weight_counter: dict[int, int] = {}
        operations: list[Operation] = []
        iterations: list[tuple[int, ...]] = []
        ir_ops: list = []
        for entry in order:
            if entry[0] == "op":
                i = entry[1]
                operations.append(self._operation(i))
                iterations.append(self.models[i].iteration)
                ir_ops.append(self.ir_ops[i])
            else:
                _, i, result, chip = entry
                operations.append(self._transfer(i, result, chip))
                iterations.append(self.models[i].results[result].shape)
                ir_ops.append(self.ir_ops[i])

        tiling = []
        for k, (shape, op) in enumerate(zip(iterations, operations)):
            tiling.append(self._view_tiling(order[k], shape, tiling, iterations, final_index) if op.pool is None else None)
            tiling[-1] = tiling[-1] or self._tiling(shape, self._units_of(op), bool(op.shards))
        for k, op in enumerate(operations):
            op.tile_axis = tiling[k][0]
        self.boxes = [[self._tile_box(shape, t, i) for i in range(t[1])] for shape, t in zip(iterations, tiling)]

        dependences: dict[tuple[int, int], Dependence] = {}
        tile_bytes: list[list[float]] = [[0.0] * tiling[k][1] for k in range(len(operations))]

        def connect(producer, result_dims, offsets, consumer, access, delay):
            ranges = []
            axis_p, count_p, length_p = tiling[producer]
            for box in self.boxes[consumer]:
                ranges.append(_producer_tiles(access(box), result_dims, offsets, axis_p, count_p, length_p))
            key = (producer, consumer)
            if key in dependences:
                old = dependences[key]
                old.ranges = [_union(a, b) for a, b in zip(old.ranges, ranges)]
            else:
                dependences[key] = Dependence(producer, consumer, ranges, delay)

        c2c = self.machine.unit_for("transfer")
        for c in range(base_n):
            fc = final_index[c]
            for r in self.reads[c]:
                self._add_bytes(tile_bytes[fc], r, self.boxes[fc])
                if r.producer is None:
                    continue
                model_p = self.models[r.producer]
                result = model_p.results[r.result]
                key = (r.producer, r.result, self.op_chip[c])
                if key in transfers and transfers[key] >= 0:
                    fx = transfers[key]
                    identity = tuple(range(len(result.shape)))
                    connect(fx, identity, (0,) * len(identity), fc, r.access, c2c.result_latency_cycles)
                else:
                    unit = self._unit(model_p)
                    delay = unit.result_latency_cycles if unit else 0
                    connect(final_index[r.producer], result.dims, result.offsets, fc, r.access, delay)
        for (i, result, chip), fx in transfers.items():
            res = self.models[i].results[result]
            unit = self._unit(self.models[i])
            connect(final_index[i], res.dims, res.offsets, fx, lambda box: box, unit.result_latency_cycles if unit else 0)
            per_tile = numel(res.shape) * dtype_bytes(res.dtype) / tiling[fx][1]
            tile_bytes[fx] = [per_tile] * tiling[fx][1]

        for k, op in enumerate(operations):
            op.durations = self._durations(op, order[k], self.boxes[k], tile_bytes[k], iterations[k])

        buffers = self._buffers(order, final_index, transfers)
        weight_bytes = [0] * self.chips
        seen: set = set()
        for c, reads in enumerate(self.reads):
            for r in reads:
                key = (r.value, self.op_chip[c])
                if r.weight and key not in seen:
                    seen.add(key)
                    for chip, size in self.shard_weights.get(r.value, [(self.op_chip[c], self._weight_bytes(r.value))]):
                        weight_bytes[chip] += size
        problem = Problem(
            function=self.name,
            machine=self.machine,
            tile=self.tile,
            max_tiles=self.max_tiles,
            chips=self.chips,
            layer_count=self.layer_count,
            operations=operations,
            dependences=sorted(dependences.values(), key=lambda d: (d.consumer, d.producer)),
            pools=self.pools,
            buffers=buffers,
            weight_bytes=weight_bytes,
            tokens=self._tokens(),
            notes=sorted({m.note for m in self.models if m.note}),
        )
        return problem, Binding(self.func, ir_ops)

    def _operation(self, i: int) -> Operation:
        model = self.models[i]
        op = self.ir_ops[i]
        label = self._label(i)
        pool = None
        if model.operator_class is not None:
            unit = self._unit(model)
            if unit is None:
                raise ScheduleError(op, f"machine '{self.machine.name}' has no unit for operator class '{model.operator_class}'")
            pool = self._pool(unit, i)
        return Operation(model.op_name, label, model.operator_class, self.layers[i], self.op_chip[i], pool, [],
                         shards=self.op_shards.get(i, ()), shard_slices=self.op_slices.get(i, ()))

    def _transfer(self, i: int, result: int, chip: int) -> Operation:
        unit = self.machine.unit_for("transfer")
        if unit is None:
            raise ScheduleError(self.ir_ops[i], f"machine '{self.machine.name}' has no unit for chip-to-chip transfers")
        source = self.op_chip[i]
        pool = self._shared_pool(unit, source)
        label = f"{self._label(i)} -> chip {chip}"
        return Operation("transfer", label, "transfer", self.layers[i], source, pool, [], transfer=(i, result, chip))

    def _unit(self, model: OpModel):
        return self.machine.unit_for(model.operator_class) if model.operator_class else None

    def _pool(self, unit, i: int) -> int:
        if i in self.op_shards:  # the units of the chips holding its slices, chip by chip
            chips = self.op_shards[i]
            key = ("shards", unit.name, chips)
            if key not in self.pool_index:
                units = [f"c{chip}.{unit.name}{k}" for chip in chips for k in range(self._units_per_chip(unit))]
                self._add_pool(key, UnitPool(f"c{chips[0]}-{chips[-1]}.{unit.name}", unit.name, units, chips[0]))
            return self.pool_index[key]
        if unit.placement == "shared":
            return self._shared_pool(unit, self.op_chip[i])
        label = layer_label(self.layers[i], self.layer_count)
        if unit.placement == "per_layer":
            key = ("layer", unit.name, self.layers[i])
            if key not in self.pool_index:
                name = f"{label}.{unit.name}"
                self._add_pool(key, UnitPool(name, unit.name, [f"{name}{k}" for k in range(unit.count)],
                                             self.op_chip[i], self.layers[i]))
            return self.pool_index[key]
        layer = self.layers[i]
        j = self.weight_counter.get(layer, 0)
        self.weight_counter[layer] = j + 1
        name = f"{label}.{unit.name}{j}"
        self._add_pool(("weight", i), UnitPool(name, unit.name, [name], self.op_chip[i], layer))
        return self.pool_index[("weight", i)]

    def _shared_pool(self, unit, chip: int) -> int:
        key = ("shared", unit.name, chip)
        if key not in self.pool_index:
            prefix = f"c{chip}." if self.chips > 1 else ""
            units = [f"{prefix}{unit.name}{k}" for k in range(unit.count)]
            self._add_pool(key, UnitPool(f"{prefix}{unit.name}", unit.name, units, chip))
        return self.pool_index[key]

    def _add_pool(self, key, pool: UnitPool) -> None:
        self.pool_index[key] = len(self.pools)
        self.pools.append(pool)

    def _units_of(self, op: Operation) -> int:
        return len(self.pools[op.pool].units) if op.pool is not None else 1

    def _tiling(self, shape, units: int, sharded: bool = False) -> tuple[int | None, int, int]:
        """(stream axis, tile count, tile length along the axis).

        More tiles than the units that run them are rounded up to a multiple of the units
        (within max_tiles), so no unit idles in the last round. A sharded op streams along
        its output axis in one tile per unit (see the module docstring).
        """
        if sharded:
            axis = len(shape) - 1
            length = shard_tile_length(shape[axis], units)
            return axis, math.ceil(shape[axis] / length), length
        axis = next((d for d, size in enumerate(shape) if size > 1), None)
        if axis is None or self.tile <= 0:
            return axis, 1, shape[axis] if axis is not None else 1
        length = shape[axis]
        count = min(self.max_tiles, length, max(1, math.ceil(numel(shape) / self.tile)))
        if units > 1 and count > units:
            rounded = -(-count // units) * units
            count = rounded if rounded <= min(self.max_tiles, length) else count
        tile_length = math.ceil(length / count)
        return axis, math.ceil(length / tile_length), tile_length

    def _view_tiling(self, entry, shape, tiling, iterations, final_index) -> tuple[int | None, int, int] | None:
        """A view (free op) takes its producer's tiling when both stream an axis of the same
        length: a view takes no time, and tiles of its own that straddle its producer's
        would only make consumers wait for more of the producer (a cast cut in 3 tiles
        between a residual add's 4 and a norm's 4 delayed each norm of SmolLM2 by a tile)."""
        if entry[0] != "op":
            return None
        producers = {r.producer for r in self.reads[entry[1]] if r.producer is not None}
        if len(producers) != 1:
            return None
        producer = final_index[producers.pop()]
        axis, count, length = tiling[producer]
        mine = next((d for d, size in enumerate(shape) if size > 1), None)
        if axis is None or mine is None or shape[mine] != iterations[producer][axis]:
            return None
        return mine, count, length

    @staticmethod
    def _tile_box(shape, tiling, t) -> tuple:
        axis, count, length = tiling
        box = full_box(shape)
        if axis is None or count == 1:
            return box
        lo = t * length
        return box[:axis] + ((lo, min(shape[axis], lo + length)),) + box[axis + 1:]

    def _add_bytes(self, per_tile: list[float], read: _Read, boxes) -> None:
        if not read.counts_bytes:
            return
        size = self._element_bytes(read)
        if not size:
            return
        for t, box in enumerate(boxes):
            per_tile[t] += box_numel(read.access(box)) * size

    def _durations(self, op: Operation, entry, boxes, read_bytes, shape) -> list[int]:
        if op.operator_class is None:
            return [0] * len(boxes)
        unit = self.machine.unit_for(op.operator_class)
        fractions = [box_numel(box) / max(1, numel(shape)) for box in boxes]
        if entry[0] == "transfer":
            op.streamed_bytes = sum(read_bytes)
            return [cost_model.tile_cycles(unit, "transfer", f, bytes_streamed=b) for f, b in zip(fractions, read_bytes)]
        model = self.models[entry[1]]
        written = sum(numel(r.shape) * dtype_bytes(r.dtype) for r in model.results)
        durations = []
        for f, b in zip(fractions, read_bytes):
            streamed = model.moved_bytes * f if model.moved_bytes is not None else b + written * f
            op.streamed_bytes += streamed
            durations.append(cost_model.tile_cycles(
                unit, op.operator_class, f, macs=model.macs, weight_elements=model.weight_elements,
                elements=numel(model.iteration), vector_passes=model.vector_passes,
                transcendentals=model.transcendentals, bytes_streamed=streamed,
            ))
        return durations

    def _buffers(self, order, final_index, transfers) -> list[Buffer]:
        """SRAM buffers: results of ops that are not views, arguments and folded constants."""
        returned = {self._root(v) for v in self.terminator.operands}
        readers: dict[tuple, list[int]] = {}
        chips_reading: dict[ir.Value, list[int]] = {}
        for c, reads in enumerate(self.reads):
            for r in reads:
                if r.weight:
                    continue
                root = self._root(r.value)
                chip = self.op_chip[c]
                owner_chip = self.op_chip[self.producer_of[root][0]] if root in self.producer_of else chip
                transfer = transfers.get((r.producer, r.result, chip)) if r.producer is not None else None
                if transfer is not None and transfer >= 0:
                    readers.setdefault(("transfer", transfer), []).append(final_index[c])
                    readers.setdefault(("root", root, owner_chip), []).append(transfer)
                    continue
                readers.setdefault(("root", root, owner_chip), []).append(final_index[c])
                if root not in self.producer_of:
                    chips_reading.setdefault(root, [])
                    if chip not in chips_reading[root]:
                        chips_reading[root].append(chip)
        buffers = []
        # Results of scheduled ops that own their buffer.
        for i, model in enumerate(self.models):
            for r in model.results:
                if self._root(r.value) != r.value:
                    continue
                fi = final_index[i]
                chip = self.op_chip[i]
                size = numel(r.shape) * dtype_bytes(r.dtype)
                live_out = r.value in returned
                buffers.append(Buffer(self._label(i), size, chip, fi, sorted(set(readers.get(("root", r.value, chip), []))),
                                      live_out, _buffer_kind(len(r.shape), live_out, "activation")))
        for (i, result, chip), fx in transfers.items():
            r = self.models[i].results[result]
            buffers.append(Buffer(f"{self._label(i)} on chip {chip}",
                                  numel(r.shape) * dtype_bytes(r.dtype), chip, fx,
                                  sorted(set(readers.get(("transfer", fx), []))), False, "transfer"))
        # Arguments and folded constants: present from cycle 0, split among the chips reading them.
        # A buffer two stacks live in (a prefill's k and v caches made from one zero tensor)
        # is counted once per stack.
        for root, chips in chips_reading.items():
            info = tensor_info(root.type)
            size = numel(info.shape) * dtype_bytes(info.dtype) * max(1, self.stacked_roots.get(root, 0))
            kind = _buffer_kind(len(info.shape), root in returned, "argument" if isinstance(root, ir.BlockArgument) else "constant")
            for chip in chips:
                buffers.append(Buffer(root.get_name(self.asm), math.ceil(size / len(chips)), chip, None,
                                      sorted(set(readers.get(("root", root, chip), []))), root in returned, kind))
        return buffers

    def _label(self, i: int) -> str:
        """`%12 aten.linear`: the op's first result and its name."""
        results = self.ir_ops[i].operation.results
        name = self.models[i].op_name
        return f"{results[0].get_name(self.asm)} {name}" if len(results) else name

    def _tokens(self) -> int | None:
        """Tokens one run processes: the size of the first integer tensor argument."""
        for arg in self.func.regions[0].blocks[0].arguments:
            info = tensor_info(arg.type)
            if info is not None and info.dtype in ("si64", "i64", "si32", "i32") and info.num_elements():
                return info.num_elements()
        return None


def _reads_table(model: OpModel, reads: list[_Read]) -> bool:
    """A gather from a constant table (the embedding) counts as a weighted op."""
    return model.op_name.startswith(("aten.embedding", "aten.index_select")) and any(r.weight for r in reads)


def _producer_tiles(box, result_dims, offsets, axis, count, length) -> tuple[int, int] | None:
    """The producer tiles (first, last) that wrote `box` of one of its results."""
    if box is None or box_numel(box) == 0:
        return None
    if count == 1 or axis is None:
        return (0, 0)
    for rd, dim in enumerate(result_dims):
        if dim == axis:
            lo, hi = box[rd]
            lo, hi = lo + offsets[rd], hi + offsets[rd]
            return (lo // length, min(count - 1, (hi - 1) // length))
    return (0, count - 1)


def _union(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), max(a[1], b[1]))


def _int_attr(op, name: str) -> int | None:
    attrs = op.operation.attributes
    if name not in attrs:
        return None
    try:
        attr = attrs[name]
        is_integer = isinstance(attr.maybe_downcast(), ir.IntegerAttr)
    except TypeError:  # an attribute kind the bindings cannot downcast (an array of si8)
        is_integer = False
    if not is_integer:
        raise ScheduleError(op, f"attribute '{name}' must be an integer")
    return ir.IntegerAttr(attr).value


def _int_array_attr(op, name: str) -> tuple[int, ...]:
    """An attribute holding a dense array of i64 (or nothing): empty when absent."""
    attrs = op.operation.attributes
    if name not in attrs:
        return ()
    try:
        return tuple(ir.DenseI64ArrayAttr(attrs[name]))
    except (TypeError, ValueError):
        raise ScheduleError(op, f"attribute '{name}' must be an array<i64: ...> of chips") from None


def _buffer_kind(rank: int, live_out: bool, otherwise: str) -> str:
    """A returned tensor of rank 4 or more is a KV cache (the stacked per-layer caches a
    prefill fills and a decode step updates in place); logits and hidden states have rank 3."""
    if live_out:
        return "kv_cache" if rank >= 4 else "result"
    return otherwise
