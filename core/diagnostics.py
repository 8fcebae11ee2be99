"""Diagnostics in MLIR's `file:line:col: severity: message` form.

MLIR reports parse and verifier errors through its diagnostic engine (and the Python
bindings hand them over inside `MLIRError`); the Python bindings cannot emit warnings or
remarks, so harden's passes report those here. Both end up as `Diagnostic` records in
one `DiagnosticSink`, which prints them or checks them against `expected-*` comments.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from torch_mlir import ir

SEVERITIES = ("error", "warning", "remark", "note")

_MLIR_SEVERITY = {
    ir.DiagnosticSeverity.ERROR: "error",
    ir.DiagnosticSeverity.WARNING: "warning",
    ir.DiagnosticSeverity.REMARK: "remark",
    ir.DiagnosticSeverity.NOTE: "note",
}


@dataclass(frozen=True)
class Diagnostic:
    severity: str
    message: str
    file: str | None = None
    line: int | None = None
    col: int | None = None

    def format(self, tool: str = "harden") -> str:
        where = f"{self.file}:{self.line}:{self.col}" if self.file is not None else tool
        return f"{where}: {self.severity}: {self.message}"


def file_line_col(loc: ir.Location) -> tuple[str | None, int | None, int | None]:
    """The source position a location points at (through names, call sites and fusions)."""
    if type(loc) is ir.Location:  # diagnostics carry plain locations: downcast first
        loc = ir.Location.from_attr(loc.attr, loc.context)
    if isinstance(loc, ir.FileLineColLoc):
        return loc.filename, loc.start_line, loc.start_col
    if isinstance(loc, ir.NameLoc):
        return file_line_col(loc.child_loc)
    if hasattr(loc, "callee"):
        return file_line_col(loc.callee)
    if hasattr(loc, "locations") and len(loc.locations):
        return file_line_col(loc.locations[0])
    return None, None, None


def from_mlir(diag) -> Diagnostic:
    """Converts an MLIR diagnostic (`ir.Diagnostic` or `ir.DiagnosticInfo`)."""
    file, line, col = file_line_col(diag.location)
    return Diagnostic(_MLIR_SEVERITY[diag.severity], str(diag.message), file, line, col)


@dataclass
class DiagnosticSink:
    """Collects diagnostics of one run; `remarks` decides whether remarks are kept."""

    remarks: bool = False
    items: list[Diagnostic] = field(default_factory=list)

    def report(self, severity: str, loc: ir.Location, message: str) -> None:
        if severity == "remark" and not self.remarks:
            return
        file, line, col = file_line_col(loc)
        self.items.append(Diagnostic(severity, message, file, line, col))

    def add_mlir_error(self, error: ir.MLIRError) -> None:
        """Keeps the error diagnostics MLIR attached to a failed parse, verify or pass run."""
        self.items.extend(from_mlir(d) for d in error.error_diagnostics)

    def add(self, diag: Diagnostic) -> None:
        self.items.append(diag)

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.items)

    def print(self, tool: str, stream=None, limit: int | None = None) -> None:
        """Prints the diagnostics; a failed run with more than `limit` of them prints the
        first `limit - 1` and a line saying how many more there are."""
        stream = stream or sys.stderr
        items = self.items
        if limit is not None and self.has_errors and len(items) > limit:
            items = items[: limit - 1]
        for d in items:
            print(d.format(tool), file=stream)
        if len(items) < len(self.items):
            print(f"{tool}: note: {len(self.items) - len(items)} more diagnostics not shown (--all-diagnostics prints every one)", file=stream)
        stream.flush()
