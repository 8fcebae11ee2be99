"""The C ternary kernels as IREE custom CPU dispatches: where the object is, whether this host
can run it, and the IREE-side definitions of the kernel declarations the lowering emits.

The torch-mlir side (kernels/vnni.py) leaves, for each kernel shape, a bodiless
private `func.func` carrying a `harden.ternary_vnni` attribute, and calls it. Here, in IREE's
own IR, each declaration becomes a function that (for prefill) quantizes the activations in
linalg and runs a `flow.dispatch` of a `stream.executable` whose inner function calls the C
kernel, declared `hal.import.static` and linked from the object in `hal.executable.objects`.
Decode (one token) is a single dispatch: the C kernel quantizes x itself.

IREE pitfalls this follows (docs/toolchain.md): the objects map is keyed by the exact
executable target iree-compile uses (taken from iree-compile with the same flags; a generic
key is silently skipped, then `iree-lld: undefined symbol`); the workgroup id comes from
`hal.interface.workgroup.id`; each memref reaches C as its full descriptor; export names are
unique per module (several executables are linked into one LLVM module).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harden.kernels.contract import CUSTOM_DISPATCH_ATTR, DECODE_MAX_KP, kernel_build, unavailable_reason


class CustomDispatchError(RuntimeError):
    """A module calls the C kernels, but this host cannot run them; the message says why."""


def has_custom_dispatches(mlir_text: str) -> bool:
    """Whether lowered module text declares C kernels (a cheap test before parsing it)."""
    return CUSTOM_DISPATCH_ATTR in mlir_text


def define_custom_dispatches(module, flags: Sequence[str]) -> None:
    """Replaces every kernel declaration of an `iree.compiler.ir` module by its definition.
    `flags` are the iree-compile flags the module will be compiled with (they decide the
    executable target the object is keyed by)."""
    from iree.compiler import ir as iree_ir

    declarations = [
        op for op in module.body.operations if op.operation.name == "func.func" and CUSTOM_DISPATCH_ATTR in op.attributes
    ]
    if not declarations:
        return
    reason = unavailable_reason()
    if reason is not None:
        raise CustomDispatchError(f"the module calls the C ternary kernels, but {reason}")
    target = host_executable_target(tuple(flags))
    kernel_object, _ = kernel_build()
    for declaration in declarations:
        kernel = KernelCall.from_declaration(declaration)
        definitions = iree_ir.Module.parse(kernel.definition_text(target, kernel_object))
        for op in list(definitions.body.operations):
            module.body.append(op)
        declaration.operation.erase()


@functools.cache
def host_executable_target(flags: tuple[str, ...]) -> str:
    """The `#hal.executable.target<...>` iree-compile uses with these flags (target-cpu=host:
    the host's CPU name and feature list), read from its output on a trivial module."""
    from iree.compiler.tools import compile_str

    probe = "func.func @probe(%x: tensor<4xf32>) -> tensor<4xf32> {\n  return %x : tensor<4xf32>\n}\n"
    text = compile_str(probe, extra_args=[*flags, "--compile-to=preprocessing"]).decode()
    start = text.index("#hal.executable.target<")
    depth, quoted = 0, False
    for end in range(start, len(text)):
        ch = text[end]
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth -= 1
            if depth == 0:
                return text[start : end + 1]
    raise RuntimeError("iree-compile printed no executable target")


def _t(shape: Sequence[int], element: str) -> str:
    return "tensor<" + "x".join(str(s) for s in shape) + f"x{element}>"


@dataclass(frozen=True)
class KernelCall:
    """One kernel declaration: its symbol, shapes and the `harden.ternary_vnni` fields."""

    symbol: str
    rows: int  # M
    in_features: int  # K
    out_features: int  # N
    code_bytes: int
    scale_count: int
    numerics: str
    planes: int
    padded_out: int
    padded_in: int
    group_size: int
    groups: int
    code_bits: int
    rows_per_workgroup: int
    symmetric: bool = False  # 8-bit codes without the code 0 (q in [-127, 127]): the `w8s` entry points

    @classmethod
    def from_declaration(cls, op) -> "KernelCall":
        from iree.compiler import ir as iree_ir

        fields = iree_ir.DictAttr(op.attributes[CUSTOM_DISPATCH_ATTR])
        function_type = iree_ir.FunctionType(iree_ir.TypeAttr(op.attributes["function_type"]).value)
        x, codes, scales = (iree_ir.RankedTensorType(t).shape for t in function_type.inputs)
        (y,) = (iree_ir.RankedTensorType(t).shape for t in function_type.results)
        integer = lambda name: iree_ir.IntegerAttr(fields[name]).value
        return cls(
            symbol=iree_ir.StringAttr(op.attributes["sym_name"]).value,
            rows=x[0],
            in_features=x[1],
            out_features=y[1],
            code_bytes=codes[0],
            scale_count=scales[0],
            numerics=iree_ir.StringAttr(fields["numerics"]).value,
            planes=integer("planes"),
            padded_out=integer("padded_out"),
            padded_in=integer("padded_in"),
            group_size=integer("group_size"),
            groups=integer("groups"),
            code_bits=integer("code_bits"),
            rows_per_workgroup=integer("rows_per_workgroup"),
            symmetric="symmetric" in fields and bool(integer("symmetric")),
        )

    @property
    def decode(self) -> bool:
        """One token whose quantized row fits the C kernel's stack buffer: a single dispatch."""
        return self.rows == 1 and self.padded_in <= DECODE_MAX_KP

    def definition_text(self, target: str, object_path: Path) -> str:
        """The `stream.executable` and the private function defining `@symbol` (IREE dialects)."""
        M, K, N, Kp = self.rows, self.in_features, self.out_features, self.padded_in
        workgroups = -(-self.padded_out // self.rows_per_workgroup)
        sizes = [N, K, Kp] if self.decode else [M, N, Kp]
        sizes += [self.planes, self.group_size, self.groups, self.padded_out]
        codes, scales = f"memref<{self.code_bytes}xi8>", f"memref<{self.scale_count}xf32>"
        width = f"w{self.code_bits}s" if self.symmetric else f"w{self.code_bits}"
        if self.decode:
            c_function = f"linear_{width}_{self.numerics}_decode_wg"
            inputs = [("x", f"memref<{K}xf32>", _t([K], "f32"))]
            prologue = f"    %x1 = tensor.collapse_shape %x [[0, 1]] : {_t([1, K], 'f32')} into {_t([K], 'f32')}\n"
            dispatch_args = ["%x1"]
        else:
            c_function = f"linear_{width}_{self.numerics}_wg"
            digits = 4 if self.numerics == "fixed32" else 1
            inputs = [
                ("xq", f"memref<{M * digits * Kp}xi8>", _t([M * digits * Kp], "i8")),
                ("xs", f"memref<{M}xf32>", _t([M], "f32")),
            ]
            prologue = (_fixed32_prologue if self.numerics == "fixed32" else _int8_prologue)(M, K, Kp)
            dispatch_args = ["%xq1", "%xs"]
        inputs += [("codes", codes, _t([self.code_bytes], "i8")), ("scales", scales, _t([self.scale_count], "f32"))]
        dispatch_args += ["%codes", "%scales"]
        output = ("y", f"memref<{M * N}xf32>", _t([M * N], "f32"))
        buffers = [*inputs, output]
        index_types = ", ".join(["index"] * (len(sizes) + 2))
        c_types = ", ".join(memref for _, memref, _ in buffers) + ", " + index_types
        bindings = ", ".join(f"%b{i}: !stream.binding" for i in range(len(buffers)))
        subspans = "".join(
            f"        %{name} = stream.binding.subspan %b{i}[%c0] : !stream.binding -> {memref}\n"
            for i, (name, memref, _) in enumerate(buffers)
        )
        constants = "".join(f"        %s{i} = arith.constant {v} : index\n" for i, v in enumerate(sizes))
        size_args = ", ".join(f"%s{i}" for i in range(len(sizes)))
        c_args = ", ".join(f"%{name}" for name, _, _ in buffers) + f", {size_args}, %wg, %rows"
        entry, executable = f"{self.symbol}_entry", f"{self.symbol}_executable"
        path = str(object_path).replace("\\", "\\\\").replace('"', '\\"')
        return f"""stream.executable private @{executable} attributes {{hal.executable.objects = #hal.executable.objects<{{{target} = [#hal.executable.object<{{path = "{path}"}}>]}}>}} {{
  stream.executable.export public @{entry} workgroups(%workload: index) -> (index, index, index) {{
    %c1 = arith.constant 1 : index
    stream.return %workload, %c1, %c1 : index, index, index
  }}
  builtin.module {{
    func.func private @{c_function}({c_types}) attributes {{hal.import.static}}
    func.func @{entry}({bindings}) {{
      %c0 = arith.constant 0 : index
{subspans}        %wg = hal.interface.workgroup.id[0] : index
        %rows = arith.constant {self.rows_per_workgroup} : index
{constants}        func.call @{c_function}({c_args}) : ({c_types}) -> ()
      return
    }}
  }}
}}
func.func private @{self.symbol}(%x: {_t([M, K], 'f32')}, %codes: {inputs[-2][2]}, %scales: {inputs[-1][2]}) -> {_t([M, N], 'f32')} {{
{prologue}    %workgroups = arith.constant {workgroups} : index
    %y1 = flow.dispatch @{executable}::@{entry}[%workgroups]({", ".join(dispatch_args)}) : ({", ".join(t for _, _, t in inputs)}) -> {output[2]}
    %y = tensor.expand_shape %y1 [[0, 1]] output_shape [{M}, {N}] : {output[2]} into {_t([M, N], 'f32')}
    return %y : {_t([M, N], 'f32')}
}}
"""


def _padded_activations(M: int, K: int, Kp: int) -> tuple[str, str]:
    """x [M, K] zero-padded to [M, Kp] (zero activations add nothing to any sum): the text
    defining it and its name."""
    if Kp == K:
        return "", "%x"
    text = (
        f"    %xp = tensor.pad %x low[0, 0] high[0, {Kp - K}] {{\n"
        "    ^bb0(%i0: index, %i1: index):\n"
        "      tensor.yield %zero : f32\n"
        f"    }} : {_t([M, K], 'f32')} to {_t([M, Kp], 'f32')}\n"
    )
    return text, "%xp"


def _absmax(M: int, Kp: int, xp: str) -> str:
    """%amax [M]: each token's largest |x| (xp: the padded activations)."""
    return f"""    %amax_init = tensor.empty() : {_t([M], 'f32')}
    %amax_zero = linalg.fill ins(%zero : f32) outs(%amax_init : {_t([M], 'f32')}) -> {_t([M], 'f32')}
    %amax = linalg.generic {{indexing_maps = [affine_map<(m, k) -> (m, k)>, affine_map<(m, k) -> (m)>], iterator_types = ["parallel", "reduction"]}}
        ins({xp} : {_t([M, Kp], 'f32')}) outs(%amax_zero : {_t([M], 'f32')}) {{
    ^bb0(%v: f32, %a: f32):
      %abs = math.absf %v : f32
      %r = arith.maximumf %a, %abs : f32
      linalg.yield %r : f32
    }} -> {_t([M], 'f32')}
"""


def _int8_prologue(M: int, K: int, Kp: int) -> str:
    """%xq1 (i8 [M*Kp]) and %xs (the step [M]): round_even(x / step) clamped to +-127,
    step = max(amax, 1e-30) / 127, as the numpy model and the linalg fake quantization do."""
    pad, xp = _padded_activations(M, K, Kp)
    return f"""    %zero = arith.constant 0.0 : f32
{pad}{_absmax(M, Kp, xp)}    %xs_init = tensor.empty() : {_t([M], 'f32')}
    %xs = linalg.generic {{indexing_maps = [affine_map<(m) -> (m)>, affine_map<(m) -> (m)>], iterator_types = ["parallel"]}}
        ins(%amax : {_t([M], 'f32')}) outs(%xs_init : {_t([M], 'f32')}) {{
    ^bb0(%a: f32, %o: f32):
      %levels = arith.constant 127.0 : f32
      %tiny = arith.constant 1.0e-30 : f32
      %a2 = arith.maximumf %a, %tiny : f32
      %step = arith.divf %a2, %levels : f32
      linalg.yield %step : f32
    }} -> {_t([M], 'f32')}
    %xq_init = tensor.empty() : {_t([M, Kp], 'i8')}
    %xq = linalg.generic {{indexing_maps = [affine_map<(m, k) -> (m, k)>, affine_map<(m, k) -> (m)>, affine_map<(m, k) -> (m, k)>], iterator_types = ["parallel", "parallel"]}}
        ins({xp}, %xs : {_t([M, Kp], 'f32')}, {_t([M], 'f32')}) outs(%xq_init : {_t([M, Kp], 'i8')}) {{
    ^bb0(%v: f32, %step: f32, %o: i8):
      %hi = arith.constant 127.0 : f32
      %lo = arith.constant -127.0 : f32
      %s = arith.divf %v, %step : f32
      %r = math.roundeven %s : f32
      %c1 = arith.minimumf %r, %hi : f32
      %c2 = arith.maximumf %c1, %lo : f32
      %q = arith.fptosi %c2 : f32 to i8
      linalg.yield %q : i8
    }} -> {_t([M, Kp], 'i8')}
    %xq1 = tensor.collapse_shape %xq [[0, 1]] : {_t([M, Kp], 'i8')} into {_t([M * Kp], 'i8')}
"""


def _fixed32_prologue(M: int, K: int, Kp: int) -> str:
    """%xq1 (i8 [M*4*Kp], digit planes) and %xs (2^-e [M], NaN for a non-finite row): x * 2^e
    rounded to an integer below 2^30 (e = 156 - biased exponent of amax), split into four
    balanced signed base-256 digits (add 0x80808080, take the bytes, subtract 128)."""
    pad, xp = _padded_activations(M, K, Kp)
    return f"""    %zero = arith.constant 0.0 : f32
{pad}{_absmax(M, Kp, xp)}    %e_init = tensor.empty() : {_t([M], 'i32')}
    %e = linalg.generic {{indexing_maps = [affine_map<(m) -> (m)>, affine_map<(m) -> (m)>], iterator_types = ["parallel"]}}
        ins(%amax : {_t([M], 'f32')}) outs(%e_init : {_t([M], 'i32')}) {{
    ^bb0(%a: f32, %o: i32):
      %bits = arith.bitcast %a : f32 to i32
      %c23 = arith.constant 23 : i32
      %c255 = arith.constant 255 : i32
      %c156 = arith.constant 156 : i32
      %lo = arith.constant -120 : i32
      %hi = arith.constant 120 : i32
      %sh = arith.shrui %bits, %c23 : i32
      %be = arith.andi %sh, %c255 : i32
      %e0 = arith.subi %c156, %be : i32
      %e1 = arith.maxsi %e0, %lo : i32
      %e2 = arith.minsi %e1, %hi : i32
      linalg.yield %e2 : i32
    }} -> {_t([M], 'i32')}
    %xq_init = tensor.empty() : {_t([M, 4, Kp], 'i8')}
    %xq = linalg.generic {{indexing_maps = [affine_map<(m, d, k) -> (m, k)>, affine_map<(m, d, k) -> (m)>, affine_map<(m, d, k) -> (m, d, k)>], iterator_types = ["parallel", "parallel", "parallel"]}}
        ins({xp}, %e : {_t([M, Kp], 'f32')}, {_t([M], 'i32')}) outs(%xq_init : {_t([M, 4, Kp], 'i8')}) {{
    ^bb0(%v: f32, %ev: i32, %o: i8):
      %c127 = arith.constant 127 : i32
      %c23 = arith.constant 23 : i32
      %c8 = arith.constant 8 : i32
      %c255 = arith.constant 255 : i32
      %c128 = arith.constant 128 : i32
      %bias = arith.constant -2139062144 : i32
      %eb = arith.addi %ev, %c127 : i32
      %pb = arith.shli %eb, %c23 : i32
      %p2 = arith.bitcast %pb : i32 to f32
      %s = arith.mulf %v, %p2 : f32
      %r = math.roundeven %s : f32
      %vi = arith.fptosi %r : f32 to i32
      %u = arith.addi %vi, %bias : i32
      %d = linalg.index 1 : index
      %di = arith.index_cast %d : index to i32
      %shd = arith.muli %di, %c8 : i32
      %b = arith.shrui %u, %shd : i32
      %b2 = arith.andi %b, %c255 : i32
      %dg = arith.subi %b2, %c128 : i32
      %d8 = arith.trunci %dg : i32 to i8
      linalg.yield %d8 : i8
    }} -> {_t([M, 4, Kp], 'i8')}
    %xq1 = tensor.collapse_shape %xq [[0, 1, 2]] : {_t([M, 4, Kp], 'i8')} into {_t([M * 4 * Kp], 'i8')}
    %xs_init = tensor.empty() : {_t([M], 'f32')}
    %xs = linalg.generic {{indexing_maps = [affine_map<(m) -> (m)>, affine_map<(m) -> (m)>, affine_map<(m) -> (m)>], iterator_types = ["parallel"]}}
        ins(%e, %amax : {_t([M], 'i32')}, {_t([M], 'f32')}) outs(%xs_init : {_t([M], 'f32')}) {{
    ^bb0(%ev: i32, %a: f32, %o: f32):
      %c127 = arith.constant 127 : i32
      %c23 = arith.constant 23 : i32
      %inf = arith.constant 0x7F800000 : f32
      %nan = arith.constant 0x7FC00000 : f32
      %nb = arith.subi %c127, %ev : i32
      %pb = arith.shli %nb, %c23 : i32
      %p2 = arith.bitcast %pb : i32 to f32
      %finite = arith.cmpf olt, %a, %inf : f32
      %r = arith.select %finite, %p2, %nan : f32
      linalg.yield %r : f32
    }} -> {_t([M], 'f32')}
"""
