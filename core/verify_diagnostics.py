"""`--verify-diagnostics`: match produced diagnostics with `expected-*` comments.

Follows mlir-opt's syntax: `// expected-error {{text}}` expects an error on the same line,
`@+N` / `@-N` on a line N below or above, `@above` / `@below` on the previous or next
line. The expected text must occur in the produced message. Every produced error,
warning or remark must be expected, and every expectation must be produced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harden.core.diagnostics import Diagnostic

_EXPECTED = re.compile(
    r"//\s*expected-(error|warning|remark|note)\s*(?:@(above|below|[+-]\d+))?\s*\{\{(.*?)\}\}"
)


@dataclass
class Expectation:
    severity: str
    line: int
    text: str
    comment_line: int
    col: int
    matched: bool = False


def parse_expectations(text: str) -> list[Expectation]:
    """Expectations in a source (line numbers as in the original file)."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for m in _EXPECTED.finditer(line):
            offset = m.group(2)
            if offset is None:
                target = number
            elif offset == "above":
                target = number - 1
            elif offset == "below":
                target = number + 1
            else:
                target = number + int(offset)
            found.append(Expectation(m.group(1), target, m.group(3), number, m.start() + 1))
    return found


def check_diagnostics(
    source_name: str, text: str, produced: list[Diagnostic]
) -> list[Diagnostic]:
    """Errors describing each mismatch; empty when produced and expected agree."""
    expectations = parse_expectations(text)
    problems = []
    for diag in produced:
        if diag.severity == "note":
            continue
        match = next(
            (
                e
                for e in expectations
                if not e.matched
                and e.severity == diag.severity
                and e.line == diag.line
                and e.text in diag.message
            ),
            None,
        )
        if match:
            match.matched = True
        else:
            problems.append(
                Diagnostic(
                    "error",
                    f"unexpected {diag.severity}: {diag.message}",
                    diag.file if diag.file is not None else source_name,
                    diag.line or 0,
                    diag.col or 0,
                )
            )
    for e in expectations:
        if not e.matched and e.severity != "note":
            problems.append(
                Diagnostic(
                    "error",
                    f'expected {e.severity} "{e.text}" was not produced',
                    source_name,
                    e.comment_line,
                    e.col,
                )
            )
    return problems
