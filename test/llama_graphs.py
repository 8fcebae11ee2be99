"""Harden-level Llama graphs for the scheduler tests.

`stories260k` goes through the real path: harden-import's `import_model` (the embedded
checkpoint, inline weights), then harden-fuse-qkv and harden-ternarize. The TinyLlama
1.1B shape is imported with random-init external weights (`harden.param` ops, shapes
only: the scheduler needs no weight values, and writing 4.4 GB of weights would dominate
the test); `harden_level` then stands in for fuse-qkv and ternarize, which need the
values: each layer's q/k/v linears become one `harden.fused_qkv`, and every linear but
the classifier a `harden.ternary_linear` whose packed codes and scales are parameters of
the shapes the dialect prescribes.
"""

from __future__ import annotations

from torch_mlir import ir

from harden.core.diagnostics import DiagnosticSink
from harden.core.graph import body_ops, functions, users
from harden.core.tensor_types import tensor_info, vtensor_type
from harden.dialects.harden import build_fused_qkv, build_param, build_ternary_linear
from harden.dialects.ternary_pack import packed_columns
from harden.frontend.checkpoints import open_model
from harden.frontend.importer import import_model
from harden.frontend.random_init import RandomInit
from harden.pipelines.pass_manager import run_steps
from harden.pipelines.pipeline_text import steps_from_text


# prefill and decode only: the scheduler's tests are about those shapes, not the buckets or
# prefill_last (a prefill with a one-row classifier)
ENTRIES = ("prefill", "decode")


def stories260k(seq_len: int = 32, max_seq_len: int = 256, ternarize: str = "") -> ir.Module:
    """stories260k imported, fused and ternarized by harden's own passes (`ternarize`: the
    options of harden-ternarize)."""
    module = import_model(open_model("stories260k"), entries=ENTRIES, seq_len=seq_len, max_seq_len=max_seq_len,
                          external_weights=False).module
    sink = DiagnosticSink()
    steps = f"builtin.module(harden-fuse-qkv,harden-ternarize{{{ternarize}}})" if ternarize else "builtin.module(harden-fuse-qkv,harden-ternarize)"
    if not run_steps(module.operation, steps_from_text(steps), sink):
        raise AssertionError("hardening stories260k failed: " + "; ".join(d.format() for d in sink.items))
    return module


def random_init(shape: str, seq_len: int, max_seq_len: int) -> ir.Module:
    """A named shape (`tinyllama-1.1b`) with `harden.param` weights, at the harden level."""
    module = import_model(RandomInit(shape), entries=ENTRIES, seq_len=seq_len, max_seq_len=max_seq_len, decode_buckets=(),
                          external_weights=True, params_file="unused.safetensors").module
    return harden_level(module)


def harden_level(module: ir.Module) -> ir.Module:
    """Fuses each layer's q/k/v linears and ternarizes every linear but the classifier.

    Stands in for harden-fuse-qkv and harden-ternarize on `harden.param` weights whose
    values are not at hand; only shapes matter to the scheduler.
    """
    with module.context, ir.Location.unknown():
        for func in functions(module.operation):
            _fuse_qkv(func)
            _ternarize(func)
    if not module.operation.verify():
        raise AssertionError("the hardened module does not verify")
    return module


def _param_name(value: ir.Value) -> str | None:
    owner = value.owner
    if isinstance(owner, ir.Block):
        return None
    op = owner.operation if hasattr(owner, "operation") else owner
    if op.name != "harden.param":
        return None
    return ir.StringAttr(op.attributes["param_name"]).value


def _param(name: str, shape, dtype: str) -> ir.Value:
    return build_param(name, vtensor_type(shape, dtype)).result


def _projection(name: str | None) -> str | None:
    """`wq`, `wk`, `wv`, ... from `layers.0.attention.wq.weight`."""
    return name.split(".")[-2] if name and name.endswith(".weight") else None


def _fuse_qkv(func) -> None:
    # Collected first: fusing erases the k and v linears that come later in the block.
    queries = [op for op in body_ops(func)
               if op.operation.name == "torch.aten.linear" and _projection(_param_name(op.operands[1])) == "wq"]
    for op in queries:
        x = op.operands[0]
        group = [u for u in users(x) if u.operation.name == "torch.aten.linear"]
        group.sort(key=lambda u: ("wq", "wk", "wv").index(_projection(_param_name(u.operands[1]))))
        sizes = [tensor_info(u.operands[1].type).shape[0] for u in group]
        prefix = _param_name(op.operands[1]).removesuffix("wq.weight")
        with ir.InsertionPoint(group[0]):
            weight = _param(prefix + "wqkv.weight", (sum(sizes), tensor_info(x.type).shape[-1]), "f32")
            fused = build_fused_qkv(x, weight, sizes, [u.result.type for u in group])
        for u, result in zip(group, fused.results):
            u.result.replace_all_uses_with(result)
        for u in group:
            weight_op = u.operands[1].owner
            u.operation.erase()
            weight_op.erase()


def _ternarize(func) -> None:
    for op in body_ops(func):
        kind = op.operation.name
        if kind not in ("torch.aten.linear", "harden.fused_qkv"):
            continue
        name = _param_name(op.operands[1])
        if name is None or name == "output.weight":
            continue
        out_f, in_f = tensor_info(op.operands[1].type).shape
        x = op.operands[0]
        with ir.InsertionPoint(op):
            codes = _param(name + ".codes", (1, out_f, packed_columns(in_f)), "si8")
            scales = _param(name + ".scales", (1, out_f, 1), "f32")
            shape = tensor_info(x.type).shape[:-1] + (out_f,)
            ternary = build_ternary_linear(x, codes, scales, in_features=in_f, out_features=out_f, group_size=in_f,
                                           planes=1, scale_kind="channel", result_type=vtensor_type(shape, "f32"))
        if kind == "torch.aten.linear":
            op.result.replace_all_uses_with(ternary.result)
        else:
            _split_fused_result(op, ternary.result)
        weight_op = op.operands[1].owner
        op.operation.erase()
        weight_op.erase()


def _int(value: int) -> ir.Value:
    return ir.Operation.create("torch.constant.int", results=[ir.Type.parse("!torch.int")],
                               attributes={"value": ir.IntegerAttr.get(ir.IntegerType.get_signless(64), value)}).result


def _split_fused_result(fused, y: ir.Value) -> None:
    """Replaces q, k, v of a fused_qkv by slices of one ternary linear's output."""
    start = 0
    for result, size in zip(fused.results, (fused.attributes[n].value for n in ("q_size", "k_size", "v_size"))):
        with ir.InsertionPoint(fused):
            piece = ir.Operation.create("torch.aten.slice.Tensor", results=[result.type],
                                        operands=[y, _int(-1), _int(start), _int(start + size), _int(1)]).result
        result.replace_all_uses_with(piece)
        start += size
