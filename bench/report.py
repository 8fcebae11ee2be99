"""Summaries of the measured rounds: medians, ratios against torch eager f32, roofline, table and JSON.

A round's bandwidth is the lower of the probes taken right before and right after it. A
round whose bandwidth fell below DROP_BELOW of the median probe of its shape is dropped
(the memory system was busy with something else). Medians are over the kept rounds. The
roofline fraction of a round is weight bytes per token x decode tokens/s / that round's
bandwidth: the share of the memory system's read rate that decode turns into weight reads.

`python -m bench.report [bench/results.json]` prints the table of a results file again.

Each row also shows the share of the machine's CPU time that other processes took while
that engine ran (median over its kept rounds). Rows above CONTENDED are marked: their
numbers say more about the neighbours than about the engine.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

BASELINE = "torch eager f32"
DROP_BELOW = 0.7
CONTENDED = 0.25


@dataclass
class Round:
    bandwidth_gb_s: float
    load_avg_1m: float
    results: dict  # label -> subjects.RoundResult
    kept: bool = True


@dataclass
class ShapeReport:
    shape: str
    weight_bytes_per_token: dict[str, int]
    rounds: list[Round] = field(default_factory=list)
    stages: dict = field(default_factory=dict)  # stage name -> artifacts.Stage-like dict
    notes: list[str] = field(default_factory=list)

    def mark_dropped_rounds(self) -> None:
        if not self.rounds:
            return
        typical = statistics.median(r.bandwidth_gb_s for r in self.rounds)
        for r in self.rounds:
            r.kept = r.bandwidth_gb_s >= DROP_BELOW * typical

    def kept(self) -> list[Round]:
        return [r for r in self.rounds if r.kept]

    def bandwidth(self) -> float | None:
        return statistics.median(r.bandwidth_gb_s for r in self.kept()) if self.rounds else None

    def summary(self) -> dict[str, dict]:
        """Per engine: medians over kept rounds, ratios against the baseline, roofline fraction."""
        rows = {}
        for label, nbytes in self.weight_bytes_per_token.items():
            rounds = [r for r in self.kept() if label in r.results]
            if not rounds:
                continue
            rows[label] = {
                "weight_bytes_per_token": nbytes,
                "prefill_tokens_per_s": statistics.median(r.results[label].prefill_tokens_per_s for r in rounds),
                "decode_tokens_per_s": statistics.median(r.results[label].decode_tokens_per_s for r in rounds),
                "roofline_fraction": statistics.median(
                    nbytes * r.results[label].decode_tokens_per_s / (r.bandwidth_gb_s * 1e9) for r in rounds
                ),
                "cpu_share": statistics.median(r.results[label].cpu_share for r in rounds),
                "others_cpu_share": statistics.median(r.results[label].others_share for r in rounds),
                "rounds": len(rounds),
            }
        base = rows.get(BASELINE)
        for row in rows.values():
            for kind in ("prefill", "decode"):
                row[f"{kind}_vs_torch_f32"] = row[f"{kind}_tokens_per_s"] / base[f"{kind}_tokens_per_s"] if base else None
        return rows

    def to_json(self) -> dict:
        return {
            "bandwidth_gb_s": self.bandwidth(),
            "engines": self.summary(),
            "stages": self.stages,
            "rounds": [
                {
                    "bandwidth_gb_s": r.bandwidth_gb_s,
                    "load_avg_1m": r.load_avg_1m,
                    "kept": r.kept,
                    "results": {label: vars(res) for label, res in r.results.items()},
                }
                for r in self.rounds
            ],
            "notes": self.notes,
        }


def reports_from_json(result: dict) -> list[ShapeReport]:
    """The ShapeReports of a results.json written by bench/run.py."""
    from bench.subjects import RoundResult

    reports = []
    for shape, data in result["shapes"].items():
        rep = ShapeReport(shape, {label: row["weight_bytes_per_token"] for label, row in data["engines"].items()},
                          stages=data["stages"], notes=data["notes"])
        rep.rounds = [Round(r["bandwidth_gb_s"], r["load_avg_1m"],
                            {label: RoundResult(**res) for label, res in r["results"].items()}, r["kept"])
                      for r in data["rounds"]]
        reports.append(rep)
    return reports


def _ratio(value) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def format_table(reports: list[ShapeReport]) -> str:
    """One table over all shapes: rates, ratios against torch eager f32 and (harden's rows)
    against the fastest other engine (torch or llama.cpp), roofline, CPU share."""
    header = (f"{'shape / engine':<34}{'MB/token':>10}{'prefill tok/s':>15}{'vs f32':>8}{'vs best':>8}"
              f"{'decode tok/s':>14}{'vs f32':>8}{'vs best':>8}{'roofline':>10}{'CPU own/others':>16}")
    lines = [header, "-" * len(header)]
    for rep in reports:
        if rep.rounds:
            loads = [r.load_avg_1m for r in rep.rounds]
            lines.append(f"{rep.shape}: bandwidth {rep.bandwidth():.1f} GB/s (median of {len(rep.kept())} kept rounds "
                         f"of {len(rep.rounds)}), load average {min(loads):.1f}-{max(loads):.1f}")
        else:
            lines.append(f"{rep.shape}: not measured")
        summary = rep.summary()
        # "vs best": a harden (IREE) row against the fastest engine that is not harden's
        others = [row for label, row in summary.items() if not label.startswith("IREE")]
        best = {key: max((row[key] for row in others), default=None) for key in ("prefill_tokens_per_s", "decode_tokens_per_s")}

        def vs_best(label, row, key):
            return row[key] / best[key] if label.startswith("IREE") and best[key] else None

        for label, row in summary.items():
            lines.append(
                f"  {label:<32}{row['weight_bytes_per_token'] / 1e6:>10.1f}{row['prefill_tokens_per_s']:>15.1f}"
                f"{_ratio(row['prefill_vs_torch_f32']):>8}{_ratio(vs_best(label, row, 'prefill_tokens_per_s')):>8}"
                f"{row['decode_tokens_per_s']:>14.2f}{_ratio(row['decode_vs_torch_f32']):>8}"
                f"{_ratio(vs_best(label, row, 'decode_tokens_per_s')):>8}{row['roofline_fraction']:>10.2f}"
                f"{row['cpu_share']:>10.2f}/{row['others_cpu_share']:.2f}"
                + ("  contended" if row["others_cpu_share"] > CONTENDED else "")
            )
        stages = ", ".join(f"{name} {_stage_text(stage)}" for name, stage in rep.stages.items())
        if stages:
            harden = [s for name, s in rep.stages.items() if not name.startswith("GGUF")]
            if all(not s.get("reused") and not s.get("cache_hit") for s in harden):
                stages += f"; import + pipelines + IREE compiles {sum(s['seconds'] for s in harden):.0f} s"
            lines.append(f"  stages: {stages}")
        for note in rep.notes:
            lines.append(f"  note: {note}")
    return "\n".join(lines)


def _stage_text(stage: dict) -> str:
    if stage.get("reused"):
        return "reused"
    if stage.get("cache_hit"):
        return "cached"
    return f"{stage['seconds']:.0f} s"


if __name__ == "__main__":
    import json
    import sys

    print(format_table(reports_from_json(json.loads(open(sys.argv[1] if len(sys.argv) > 1 else "bench/results.json").read()))))
