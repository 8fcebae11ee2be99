"""harden-stream-schedule: a static tensor-streaming schedule of each function on a machine model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch_mlir import ir

from harden.core.graph import functions
from harden.core.pass_base import Pass, PassContext, PassOptionError, option
from harden.schedule.exact import ProblemTooLarge
from harden.schedule.machine import MachineError, load_machine
from harden.schedule.ops import ScheduleError
from harden.schedule.report import schedule_summary_text, write_schedule_gantt, write_schedule_report
from harden.schedule.schedules import DEFAULT_MAX_TILES, DEFAULT_TILE, record, schedule_function


@dataclass(frozen=True)
class StreamSchedule(Pass):
    """Statically schedule every function's ops as stream tiles on the units of a machine model.

    Works on the harden-level graph (torch ops, `harden.fused_qkv`, `harden.ternary_linear`)
    with static shapes. Each op is costed on its unit (matmuls from their shapes and the
    unit's MACs or ternary additions per cycle, vector ops from element counts, data
    movement from bytes and stream bandwidth; views are free), split into stream tiles
    along its streamed dimension so consumers start on their producers' first tiles, and
    placed by list scheduling with critical-path priority (deterministic; `solver=exact`
    searches for an optimal schedule of graphs of up to 16 tiles). Live tensors are
    tracked in SRAM; a model whose weights exceed one chip is split over chips by layer
    groups, and a weight larger than one chip over chips of its own (see
    schedule/placement.py). The result is written as attributes (`harden.start`,
    `harden.end`, `harden.unit`, per-tile `harden.tile_starts`/`harden.tile_units`,
    `harden.layer`, `harden.chip`, `harden.shards`) and a per-function `harden.schedule` summary, and the ops are put in
    order of their start cycles (results unchanged: only attributes and order change).
    Refuses, with an error at the op, dynamic shapes and ops with regions; fails when the
    schedule overflows SRAM.
    """

    name = "harden-stream-schedule"

    machine: str = option("tsp", "machine model: a preset (tsp, hardwired) or a JSON file")
    tile: int = option(DEFAULT_TILE, "elements per stream tile along an op's streamed dimension; 0 keeps ops whole")
    max_tiles: int = option(DEFAULT_MAX_TILES, "most tiles one op is split into")
    chips: int = option(0, "chips to split the model's layer groups over (a weight larger than one chip gets chips of its own on top); 0 takes the machine's setting")
    solver: Literal["list", "exact"] = option("list", "list scheduling, or branch and bound for graphs of up to 16 tiles")
    functions: tuple[str, ...] = option((), "functions to schedule (default: all)")
    report: str = option("", "write the summary and per-op rows as JSON to this file")
    gantt: str = option("", "draw the schedule as a Gantt chart (PNG) in this file")

    def validate(self) -> None:
        if self.tile < 0:
            raise PassOptionError(f"option 'tile' of '{self.name}' must be 0 or positive, got {self.tile}")
        if self.max_tiles < 1:
            raise PassOptionError(f"option 'max-tiles' of '{self.name}' must be positive, got {self.max_tiles}")
        if self.chips < 0:
            raise PassOptionError(f"option 'chips' of '{self.name}' must be 0 (the machine's setting) or positive, got {self.chips}")
        try:
            load_machine(self.machine)
        except MachineError as e:
            raise PassOptionError(f"option 'machine' of '{self.name}': {e}") from None

    def run(self, module: ir.Operation, ctx: PassContext) -> None:
        with module.context:  # attributes are created in the module's context
            self._schedule(module, ctx)

    def _schedule(self, module: ir.Operation, ctx: PassContext) -> None:
        try:  # validate() checked it; a file may have changed since
            machine = load_machine(self.machine)
        except MachineError as e:
            raise ctx.fail(module, str(e)) from None
        schedules = []
        names = set(self.functions)
        unknown = names - {func.attributes["sym_name"].value for func in functions(module)}
        if unknown:
            raise ctx.fail(module, f"no function named {', '.join(sorted(unknown))} to schedule")
        for func in functions(module):
            if names and func.attributes["sym_name"].value not in names:
                continue
            try:
                scheduled, violations = schedule_function(
                    func, machine, self.tile, self.max_tiles, self.chips, self.solver, bound=False
                )
            except ScheduleError as e:
                raise ctx.fail(e.op, e.message) from None
            except ProblemTooLarge as e:
                raise ctx.fail(func, str(e)) from None
            if violations:
                failure = None
                for v in violations:
                    where = scheduled.binding.ir_ops[v.op] if v.op is not None else func
                    failure = ctx.fail(where, v.message)
                raise failure
            record(scheduled, {"machine": self.machine, "tile": self.tile, "max_tiles": self.max_tiles, "solver": self.solver})
            ctx.remark(func, schedule_summary_text(schedules=[scheduled]))
            schedules.append(scheduled)
        if self.report and schedules:
            write_schedule_report(module, self.report, schedules)
        if self.gantt and schedules:
            write_schedule_gantt(module, self.gantt, schedules)
