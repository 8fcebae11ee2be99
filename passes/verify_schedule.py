"""harden-verify-schedule: re-checks the static schedule a module carries."""

from __future__ import annotations

from dataclasses import dataclass

from torch_mlir import ir

from harden.core.graph import body_ops, functions
from harden.core.pass_base import Pass, PassContext, PassFailure, PassOptionError, option
from harden.schedule.attributes import (
    END_ATTR,
    START_ATTR,
    VERIFIED_KEY,
    is_scheduled,
    mark_verified,
    read_summary,
    recorded_end,
    summary_problems,
)
from harden.schedule.check import check_solution
from harden.schedule.machine import MachineError, load_machine
from harden.schedule.ops import ScheduleError
from harden.schedule.schedules import load_schedule

# Summary fields checked against the numbers recomputed from the op attributes.
_SUMMARY_FIELDS = {
    "makespan_cycles": lambda s: s.makespan_cycles,
    "lower_bound_cycles": lambda s: s.lower_bound_cycles,
    "critical_path_cycles": lambda s: s.bounds.critical_path,
    "sram_peak_bytes": lambda s: s.sram_peak_bytes,
    "chips": lambda s: s.chips,
}


@dataclass(frozen=True)
class VerifySchedule(Pass):
    """Check a module's static schedule: dependences, unit capacity, SRAM and its summary.

    Rebuilds each scheduled function's problem from the IR and the machine model (the one
    recorded in `harden.schedule`, or the `machine` option), reads the schedule from the op
    attributes (written by harden-stream-schedule or by hand) and reports every violation
    as an error at its op: a tile starting before an operand it reads is ready, two tiles
    on one unit at once, a unit that cannot run the op, SRAM over capacity, a `harden.end`
    that disagrees with the tiles, a summary that disagrees with the attributes. Needs no
    solver. Fails if anything is wrong or no function is scheduled.

    A function that passes gets `verified = true` in its summary. Lowering to linalg keeps
    the summary but drops the per-op attributes (the ops they sat on are gone), so on a
    lowered function only the summary can be checked: it must say `verified` (checked
    here before lowering, as --harden-pipeline does) and agree with itself and with the
    machine model (lower bound = max of its bounds, ratio, SRAM within capacity, tokens/s
    at the clock); a remark says that this is all that was checked.
    """

    name = "harden-verify-schedule"

    machine: str = option("", "machine model to check against (default: the one the schedule records)")
    tile: int = option(-1, "stream tile the schedule was made with (default: the recorded one, else 0)")
    max_tiles: int = option(0, "most tiles per op the schedule was made with (default: the recorded one, else 16)")

    def validate(self) -> None:
        if self.machine:
            try:
                load_machine(self.machine)
            except MachineError as e:
                raise PassOptionError(f"option 'machine' of '{self.name}': {e}") from None

    def run(self, module: ir.Operation, ctx: PassContext) -> None:
        scheduled = [f for f in functions(module) if is_scheduled(f)]
        if not scheduled:
            raise ctx.fail(module, "no scheduled function to verify (run harden-stream-schedule first)")
        errors, passed = 0, []
        for func in scheduled:
            if not any(START_ATTR in op.operation.attributes for op in body_ops(func)):
                errors += self._verify_lowered(func, ctx)
                continue
            found = self._verify(func, ctx)
            errors += found
            if not found:
                passed.append(func)
        if errors:
            raise PassFailure(f"{errors} schedule violation(s)")
        for func in passed:
            mark_verified(func)

    def _verify_lowered(self, func, ctx: PassContext) -> int:
        """A function whose ops no longer carry the schedule: check what its summary says."""
        summary = read_summary(func)
        if not summary.get(VERIFIED_KEY):
            ctx.fail(func, "has a schedule summary but no op carries 'harden.start', and the schedule was not "
                     "verified before the ops lost it (run harden-verify-schedule before lowering)")
            return 1
        try:
            machine = load_machine(self.machine or summary.get("machine", ""))
        except MachineError as e:
            ctx.fail(func, str(e))
            return 1
        problems = summary_problems(summary, machine)
        for problem in problems:
            ctx.fail(func, f"harden.schedule: {problem}")
        if not problems:
            ctx.remark(func, "lowered after scheduling: checked the summary; the tile-level schedule was "
                       "verified before lowering")
        return len(problems)

    def _verify(self, func, ctx: PassContext) -> int:
        try:
            result, issues = load_schedule(
                func,
                machine=self.machine or None,
                tile=self.tile if self.tile >= 0 else None,
                max_tiles=self.max_tiles or None,
            )
        except (ScheduleError, MachineError) as e:
            ctx.fail(getattr(e, "op", func), getattr(e, "message", str(e)))
            return 1
        if issues:
            for issue in issues:
                ctx.fail(issue.op, issue.message)
            return len(issues)
        problem, solution, binding = result.problem, result.solution, result.binding
        errors = 0
        for v in check_solution(problem, solution):
            ctx.fail(self._where(result, func, v.op), v.message)
            errors += 1
        for index, op in enumerate(problem.operations):
            recorded = recorded_end(binding, problem, index)
            actual = solution.op_end(problem, index)
            if recorded is not None and recorded != actual:
                what = f"'{END_ATTR}'" if op.transfer is None else f"the transfer to chip {op.transfer[2]}'s end"
                ctx.fail(binding.ir_ops[index], f"{what} is {recorded} but its tiles end at cycle {actual}")
                errors += 1
        summary = read_summary(func)
        for key, compute in _SUMMARY_FIELDS.items():
            if key in summary and summary[key] != compute(result.summary):
                ctx.fail(func, f"harden.schedule {key} = {summary[key]} but the schedule gives {compute(result.summary)}")
                errors += 1
        return errors

    @staticmethod
    def _where(result, func, op_index):
        return func if op_index is None else result.binding.ir_ops[op_index]
