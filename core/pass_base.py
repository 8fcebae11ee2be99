"""What a harden pass is: a dataclass whose fields are its typed options.

In the spirit of xDSL's `ModulePass`: the class attribute `name` is the pass's pipeline
name, each dataclass field (with a default and a `help` string) is an option, and option
parsing (`harden-ternarize{scale=group group-size=64}`), validation and `--help` text are
derived from the fields, so adding an option is one line. Passes are frozen: a pass object
is checked once when it is built (`validate`) and never changes after, so the same object
can run on any number of modules. `run` gets the `builtin.module` operation and a
`PassContext` for diagnostics, weights and injected measurements.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from torch_mlir import ir

from harden.core.diagnostics import DiagnosticSink
from harden.core.weights import WeightStore


class PassOptionError(ValueError):
    """An unknown, malformed or inconsistent pass option; the message names it."""


class PassFailure(Exception):
    """Raised by a pass after it has emitted an error diagnostic at the offending op."""


def option(default: Any, help: str, shown_default: str | None = None) -> Any:
    """Declares a pass option: a dataclass field with a default and a one-line help.
    `shown_default` is what --help says when the default is a stand-in (None for "the
    usual value unless given")."""
    metadata = {"help": help, "shown_default": shown_default}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class PassContext:
    """What a pass may use besides the IR: diagnostics, the module's weight values, and
    measurements of the PyTorch model the module came from, which the tools inject (passes
    never import the layers that run models): `measurements` has
    `calibration(module, samples, seq_len, seed, text)` (Hessians of every linear's input)
    and `sensitivity(module, options, samples, seq_len, seed)` (KL of replaced weights), and
    may keep a pass's results for the next run (`recall(kind, key)`, `remember(kind, key,
    value)`); harden-opt supplies `harden.eval.measurements.ModelMeasurements`. None: the
    driver has none, and a pass that needs them fails at the module.
    """

    diagnostics: DiagnosticSink
    weights: WeightStore = field(default_factory=WeightStore)
    measurements: Any = None

    def remark(self, op, message: str) -> None:
        self.diagnostics.report("remark", _location(op), message)

    def warning(self, op, message: str) -> None:
        self.diagnostics.report("warning", _location(op), message)

    def fail(self, op, message: str) -> PassFailure:
        """Emits an error at `op` through MLIR's engine; `raise ctx.fail(op, ...)` stops the pass."""
        _location(op).emit_error(message)
        return PassFailure(message)


def _location(op) -> ir.Location:
    return op.location if isinstance(op, (ir.Operation, ir.OpView)) else op


def _option_name(field_name: str) -> str:
    return field_name.replace("_", "-")


def _parse_bool(text: str) -> bool:
    if text in ("true", "1", "on"):
        return True
    if text in ("false", "0", "off"):
        return False
    raise ValueError("expected true or false")


def _optional_of(tp):
    """T of `T | None`."""
    return next(a for a in typing.get_args(tp) if a is not type(None))


def _describe_type(tp) -> str:
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        return _describe_type(_optional_of(tp))
    if typing.get_origin(tp) is Literal:
        return "|".join(str(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return "list"
    return {int: "int", float: "number", bool: "bool", str: "string"}.get(tp, str(tp))


def _convert(tp, text: str):
    """Converts an option's text to its declared type (raises ValueError)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        for choice in choices:
            if str(choice) == text:
                return choice
        raise ValueError(f"expected one of {', '.join(str(c) for c in choices)}")
    if origin is tuple:
        return tuple(item for item in (part.strip() for part in text.split(",")) if item)
    if origin in (types.UnionType, typing.Union):
        return _convert(_optional_of(tp), text)
    if tp is bool:
        return _parse_bool(text)
    if tp is int:
        try:
            return int(text, 0)
        except ValueError:
            raise ValueError("expected an integer")
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError("expected a number")
    return text


def split_options(text: str) -> list[tuple[str, str | None]]:
    """Splits `a=1 b='x y' c={...} d` into pairs, honouring quotes and braces like MLIR."""
    pairs, i, n = [], 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\n":
            i += 1
        if i >= n:
            break
        start, depth, quote = i, 0, None
        while i < n and (quote or depth or text[i] not in " \t\n"):
            ch = text[i]
            if quote:
                quote = None if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            i += 1
        if quote or depth:
            raise PassOptionError(f"unbalanced quotes or braces in options '{text}'")
        key, eq, value = text[start:i].partition("=")
        if eq and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"{":
            value = value[1:-1]
        elif eq and value.startswith("{") and value.endswith("}"):
            value = value[1:-1]
        pairs.append((key, value if eq else None))
    return pairs


@dataclass(frozen=True)
class Configurable:
    """Typed options from dataclass fields: parsing, validation and help text. Frozen, and
    validated on construction."""

    name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Checks options that make no sense together; raises PassOptionError."""

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0]

    @classmethod
    def option_fields(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))

    @classmethod
    def option_types(cls) -> dict[str, Any]:
        return typing.get_type_hints(cls)

    @classmethod
    def option_help(cls) -> list[str]:
        """One line per option: `name=<type> (default ...) help`."""
        hints = cls.option_types()
        lines = []
        for f in cls.option_fields():
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            shown = ",".join(default) if isinstance(default, tuple) else default
            shown = str(shown).lower() if isinstance(shown, (bool, type(None))) else shown
            shown = f.metadata.get("shown_default") or shown
            lines.append(
                f"{_option_name(f.name)}=<{_describe_type(hints[f.name])}> "
                f"(default: {shown!s}) {f.metadata.get('help', '')}".rstrip()
            )
        return lines

    @classmethod
    def from_options(cls, text: str) -> "Configurable":
        """Builds the pass from MLIR-style option text; raises PassOptionError."""
        hints = cls.option_types()
        by_option = {_option_name(f.name): f for f in cls.option_fields()}
        values: dict[str, Any] = {}
        for key, value in split_options(text):
            f = by_option.get(key)
            if f is None:
                known = ", ".join(by_option) or "none"
                raise PassOptionError(f"'{cls.name}' has no option '{key}' (options: {known})")
            if value is None:
                if hints[f.name] is not bool:
                    raise PassOptionError(f"option '{key}' of '{cls.name}' needs a value")
                value = "true"
            try:
                values[f.name] = _convert(hints[f.name], value)
            except ValueError as e:
                raise PassOptionError(
                    f"invalid value '{value}' for option '{key}' of '{cls.name}': {e}"
                ) from None
        return cls(**values)


@dataclass(frozen=True)
class Pass(Configurable):
    """Base of harden's Python passes (see the module docstring)."""

    def run(self, module: ir.Operation, ctx: PassContext) -> None:
        raise NotImplementedError
