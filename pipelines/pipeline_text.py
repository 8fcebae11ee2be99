"""Textual pass pipelines (`builtin.module(harden-fuse-qkv,canonicalize,func.func(cse))`).

MLIR's own pipeline parser only knows passes registered in C++, and harden's passes are
Python callables, so this module splits the text into elements, turns harden's names into
pass objects and hands every other element back to MLIR as text (so upstream passes keep
MLIR's own option parsing and error messages).
"""

from __future__ import annotations

from dataclasses import dataclass

from harden.core.pass_base import Pass, PassOptionError
from harden.passes import PASSES
from harden.pipelines.registry import PIPELINES

MODULE_ANCHOR = "builtin.module"


class PipelineError(ValueError):
    """A pipeline that cannot be built; the message names the offending element."""


@dataclass(frozen=True)
class Element:
    """One pipeline element: `name`, `name{options}` or `anchor(nested, ...)`."""

    name: str
    options: str
    nested: tuple["Element", ...] | None
    text: str


def _scan_balanced(text: str, i: int, open_ch: str, close_ch: str) -> int:
    """Index just past the bracket matching text[i] == open_ch (quotes respected)."""
    depth, quote = 0, None
    while i < len(text):
        ch = text[i]
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == open_ch:
            depth += 1
        elif ch == close_ch:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise PipelineError(f"unbalanced '{open_ch}' in pass pipeline '{text}'")


def _parse_elements(text: str) -> tuple[Element, ...]:
    elements, i, n = [], 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\n,":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] not in "{(, \t\n":
            i += 1
        name = text[start:i]
        if not name:
            raise PipelineError(f"expected a pass name at '{text[start:]}' in pass pipeline")
        options, nested = "", None
        if i < n and text[i] == "{":
            end = _scan_balanced(text, i, "{", "}")
            options, i = text[i + 1 : end - 1], end
        elif i < n and text[i] == "(":
            end = _scan_balanced(text, i, "(", ")")
            nested, i = _parse_elements(text[i + 1 : end - 1]), end
        elements.append(Element(name, options.strip(), nested, text[start:i].strip()))
        while i < n and text[i] in " \t\n":
            i += 1
        if i < n and text[i] != ",":
            raise PipelineError(f"expected ',' after '{text[start:i].strip()}' in pass pipeline")
    return tuple(elements)


def parse_pass_pipeline(text: str) -> tuple[Element, ...]:
    """Parses `builtin.module(...)` into its elements."""
    top = _parse_elements(text.strip())
    if len(top) != 1 or top[0].name != MODULE_ANCHOR or top[0].nested is None:
        raise PipelineError(
            f"pass pipeline must be anchored on {MODULE_ANCHOR}, e.g. "
            f"'{MODULE_ANCHOR}(harden-fuse-qkv,canonicalize)'; got '{text}'"
        )
    return top[0].nested


def _harden_names_in(elements) -> list[str]:
    names = []
    for e in elements:
        if e.nested is not None:
            names += _harden_names_in(e.nested)
        elif e.name in PASSES or e.name in PIPELINES:
            names.append(e.name)
    return names


Step = Pass | str
"""A pipeline step: a harden pass object, or upstream pipeline text run by MLIR."""


def make_step(name: str, options: str) -> list[Step]:
    """The steps of one registered harden pass or named pipeline with its option text."""
    try:
        if name in PASSES:
            return [PASSES[name].from_options(options)]
        if name in PIPELINES:
            return PIPELINES[name].from_options(options).steps()
    except PassOptionError as e:
        raise PipelineError(str(e)) from None
    raise PipelineError(f"unknown pass or pipeline '{name}'")


def steps_from_text(text: str) -> list[Step]:
    """Resolves a textual pipeline into steps (harden names become pass objects)."""
    steps: list[Step] = []
    for element in parse_pass_pipeline(text):
        if element.nested is not None:
            nested = _harden_names_in(element.nested)
            if nested:
                raise PipelineError(
                    f"harden passes run on {MODULE_ANCHOR}; '{nested[0]}' cannot be nested in '{element.name}'"
                )
            steps.append(element.text)
        elif element.name in PASSES or element.name in PIPELINES:
            steps += make_step(element.name, element.options)
        else:
            steps.append(element.text)
    return steps
