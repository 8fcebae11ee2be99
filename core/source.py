"""Reading MLIR sources: files or stdin, `// -----` splitting, parsing into a module."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from torch_mlir import ir

SPLIT_MARKER = "// -----"
_SPLIT_LINE = re.compile(r"^// -----\s*$")
_MULTIPLE_TOP_LEVEL = "source must contain a single top-level operation"


class SourceError(Exception):
    """A source that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Chunk:
    """A piece of a source; `text` is padded with newlines so lines keep their numbers."""

    text: str
    first_line: int


def read_source(path: str) -> tuple[str, str]:
    """Returns (text, display name); `-` reads stdin like mlir-opt."""
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    p = Path(path)
    if not p.exists():
        raise SourceError(f"cannot open '{path}': no such file")
    if p.is_dir():
        raise SourceError(f"cannot open '{path}': is a directory")
    try:
        return p.read_text(), path
    except UnicodeDecodeError:
        raise SourceError(f"cannot read '{path}': not a UTF-8 text file (MLIR bytecode is not supported)")
    except OSError as e:
        raise SourceError(f"cannot read '{path}': {e.strerror}")


def split_source(text: str, split: bool) -> list[Chunk]:
    """Splits on lines `// -----` (with --split-input-file) keeping original line numbers."""
    if not split:
        return [Chunk(text, 1)]
    chunks, current, start = [], [], 1
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if _SPLIT_LINE.match(line):
            chunks.append(Chunk("\n" * (start - 1) + "".join(current), start))
            current, start = [], number + 1
        else:
            current.append(line)
    chunks.append(Chunk("\n" * (start - 1) + "".join(current), start))
    return chunks


def _wrap_in_module(text: str) -> str:
    """MLIR's implicit module, for sources with several top-level ops. `module {` goes in
    front of line 1 so no line number moves (line 1 is a comment or blank in practice)."""
    return "module {" + text + "\n}\n"


def parse_module(text: str, source_name: str, context: ir.Context) -> ir.Operation:
    """Parses a source into a `builtin.module` operation (raises ir.MLIRError).

    Like mlir-opt, a single top-level op that is not a module, or several top-level ops,
    are wrapped in a module. Locations name `source_name`.
    """
    try:
        op = ir.Operation.parse(text, source_name=source_name, context=context)
    except ir.MLIRError as e:
        if not any(_MULTIPLE_TOP_LEVEL in str(d.message) for d in e.error_diagnostics):
            raise
        op = ir.Operation.parse(_wrap_in_module(text), source_name=source_name, context=context)
    if op.operation.name == "builtin.module":
        return op.operation
    with context, ir.Location.unknown():
        module = ir.Module.create(loc=op.location)
        module.body.append(op.operation)
        return module.operation
