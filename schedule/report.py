"""A module's static schedules as JSON, a Gantt chart (PNG) and a short text summary.

`write_schedule_report(module, path)`, `write_schedule_gantt(module, path)` and
`schedule_summary_text(module)` read the schedule back from the IR attributes, so they work
on any scheduled module (after `--harden-pipeline`, or a file scheduled earlier); the
stream-schedule pass hands them the schedules it just made instead.
"""

from __future__ import annotations

import io
import json

from torch_mlir import ir

from harden.core.files import write_atomically
from harden.core.graph import functions
from harden.quant.precision import BITS_ATTR, op_precision
from harden.schedule.attributes import is_scheduled
from harden.schedule.layers import layer_label
from harden.schedule.schedules import ScheduledFunction, load_schedule, schedule_options


class ReportError(Exception):
    """The module holds no schedule to report, or one that cannot be read back."""


def load_module_schedules(module) -> list[ScheduledFunction]:
    """Every scheduled function of a module, rebuilt from its attributes."""
    scheduled = []
    for func in functions(module):
        if not is_scheduled(func):
            continue
        result, issues = load_schedule(func)
        if issues:
            raise ReportError(f"the schedule of @{_name(func)} cannot be read back: {issues[0].message}")
        scheduled.append(result)
    if not scheduled:
        raise ReportError("the module has no schedule (run harden-stream-schedule first)")
    return scheduled


def _name(func) -> str:
    return func.attributes["sym_name"].value


def summary_dict(scheduled: ScheduledFunction) -> dict:
    s, problem = scheduled.summary, scheduled.problem
    return {
        **schedule_options(scheduled.func),
        "machine": problem.machine.source,
        "clock_ghz": problem.machine.clock_ghz,
        "tile": problem.tile,
        "max_tiles": problem.max_tiles,
        "chips": s.chips,
        "makespan_cycles": s.makespan_cycles,
        "lower_bound_cycles": s.lower_bound_cycles,
        "critical_path_cycles": s.bounds.critical_path,
        "resource_bound_cycles": s.bounds.resource,
        "energetic_bound_cycles": s.bounds.energetic,
        "makespan_over_lower_bound": round(s.ratio, 4),
        "seconds": s.seconds,
        "tokens": s.tokens,
        "tokens_per_s": s.tokens_per_s,
        "pipelined_tokens_per_s": s.pipelined_tokens_per_s,
        "sram_peak_bytes": s.sram_peak_bytes,
        "sram_capacity_bytes": s.sram_capacity_bytes,
        "utilization": s.utilization,
        "bits_per_weight": bits_per_weight(scheduled.func),
        "notes": problem.notes,
    }


def bits_per_weight(func) -> float | None:
    """The stored bits per weight harden-ternarize recorded on the module, if it ran."""
    module = func.operation.parent
    while module is not None and module.name != "builtin.module":
        module = module.parent
    attrs = module.attributes if module is not None else None
    return ir.FloatAttr(attrs[BITS_ATTR]).value if attrs is not None and BITS_ATTR in attrs else None


def op_rows(scheduled: ScheduledFunction) -> list[dict]:
    """One row per scheduled op (and chip-to-chip transfer), in start order."""
    problem, solution = scheduled.problem, scheduled.solution
    rows = []
    for index, op in enumerate(problem.operations):
        units = problem.pools[op.pool].units if op.pool is not None else None
        starts = solution.starts[index]
        ends = [s + d for s, d in zip(starts, op.durations)]
        row = {
            "op": op.label,
            "name": op.name,
            "class": op.operator_class or "view",
            "layer": op.layer,
            "chip": op.chip,
            "unit": units[solution.units[index][starts.index(min(starts))]] if units else None,
            "start": min(starts),
            "end": max(ends),
            "tiles": op.tiles,
        }
        if op.transfer is None and (precision := op_precision(scheduled.binding.ir_ops[index])) is not None:
            row["precision"] = precision
        if op.tiles > 1:
            row["tile_starts"] = starts
            row["tile_ends"] = ends
            if units:
                row["tile_units"] = [units[u] for u in solution.units[index]]
        rows.append(row)
    rows.sort(key=lambda r: (r["start"], r["end"], r["op"]))
    return rows


def schedule_report(schedules: list[ScheduledFunction]) -> dict:
    return {
        "functions": {
            s.name: {"summary": summary_dict(s), "ops": op_rows(s)} for s in schedules
        }
    }


def write_schedule_report(module, path: str, schedules: list[ScheduledFunction] | None = None) -> None:
    """Writes the summary and per-op rows of every scheduled function as JSON."""
    schedules = schedules if schedules is not None else load_module_schedules(module)
    write_atomically(path, json.dumps(schedule_report(schedules), indent=1) + "\n")


def schedule_summary_text(module=None, schedules: list[ScheduledFunction] | None = None) -> str:
    """A few lines per function: makespan against the lower bound, SRAM, tokens/s."""
    schedules = schedules if schedules is not None else load_module_schedules(module)
    lines = []
    for s in schedules:
        sm, machine = s.summary, s.problem.machine
        chips = f" on {sm.chips} chips" if sm.chips > 1 else ""
        line = (
            f"@{s.name} on {machine.name}{chips}: {sm.makespan_cycles} cycles ({sm.seconds * 1e6:.1f} us at "
            f"{machine.clock_ghz:g} GHz), lower bound {sm.lower_bound_cycles} (ratio {sm.ratio:.3f}), "
            f"SRAM peak {sm.sram_peak_bytes / 2**20:.1f} of {sm.sram_capacity_bytes / 2**20:.0f} MiB"
        )
        if sm.tokens_per_s:
            line += f", {sm.tokens_per_s:,.0f} tokens/s ({sm.pipelined_tokens_per_s:,.0f} pipelined)"
        bits = bits_per_weight(s.func)
        if bits is not None:
            line += f", weights at {bits:.2f} bits each"
        lines.append(line)
    return "\n".join(lines)


def write_schedule_gantt(module, path: str, schedules: list[ScheduledFunction] | None = None) -> None:
    """Draws units as rows and tiles as bars coloured by layer, one panel per function."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    schedules = schedules if schedules is not None else load_module_schedules(module)
    rows_per_panel = [sum(len(p.units) for p in s.problem.pools) for s in schedules]
    height = min(60.0, 1.5 + sum(max(2.0, 0.14 * r + 1.0) for r in rows_per_panel))
    fig, axes = plt.subplots(len(schedules), 1, figsize=(14, height), squeeze=False,
                             gridspec_kw={"height_ratios": [max(1, r) for r in rows_per_panel]})
    cmap = plt.get_cmap("tab20")
    for ax, scheduled in zip(axes[:, 0], schedules):
        problem, solution, summary = scheduled.problem, scheduled.solution, scheduled.summary
        kinds = [unit.name for unit in problem.machine.units]
        pools = sorted(problem.pools, key=lambda p: (p.chip, -2 if p.layer is None else p.layer, kinds.index(p.kind), p.name))
        unit_names = [u for pool in pools for u in pool.units]
        row_of = {name: i for i, name in enumerate(unit_names)}
        bars: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for index, op in enumerate(problem.operations):
            if op.pool is None:
                continue
            units = problem.pools[op.pool].units
            for tile, (start, unit) in enumerate(zip(solution.starts[index], solution.units[index])):
                bars.setdefault((row_of[units[unit]], op.layer), []).append((start, op.durations[tile]))
        layers = sorted({layer for _, layer in bars})
        for (row, layer), spans in sorted(bars.items()):
            ax.broken_barh(spans, (row - 0.4, 0.8), facecolors=_layer_colour(cmap, layer, problem.layer_count), linewidth=0)
        ax.set_yticks(range(len(unit_names)))
        ax.set_yticklabels(unit_names, fontsize=max(3, min(8, 400 // max(1, len(unit_names)))))
        ax.set_ylim(len(unit_names) - 0.5, -0.5)
        ax.set_xlim(0, max(1, summary.makespan_cycles))
        ax.set_xlabel("cycle")
        ax.set_title(
            f"@{scheduled.name} on {problem.machine.name}: makespan {summary.makespan_cycles} cycles, "
            f"lower bound {summary.lower_bound_cycles} (x{summary.ratio:.3f})", fontsize=10)
        shown = layers if len(layers) <= 26 else layers[:: max(1, len(layers) // 12)]
        handles = [Patch(color=_layer_colour(cmap, layer, problem.layer_count), label=layer_label(layer, problem.layer_count)) for layer in shown]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, title="layer", title_fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    write_atomically(path, png.getvalue())
    plt.close(fig)


def _layer_colour(cmap, layer: int, layer_count: int):
    if layer < 0:
        return (0.35, 0.35, 0.35, 1.0)
    if layer_count and layer >= layer_count:
        return (0.0, 0.0, 0.0, 1.0)
    return cmap(layer % 20)
