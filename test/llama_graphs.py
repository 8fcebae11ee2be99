"""Llama graphs for the scheduler tests, built here until `harden-import` lands.

A small Llama written for export (RMSNorm, adjacent-pair RoPE computed in forward, grouped-
query attention with separate q/k/v/o linears, SwiGLU, tied-free classifier) with two entry
points, `prefill(tokens[1,S])` and `decode(token[1,1], pos[1], k_cache, v_cache)` with a
stacked static KV cache `[layers, 1, kv_heads, max_seq, head_dim]`, as issue 3 specifies.

The weights never hold data: the model lives on torch's meta device and every parameter is
imported as a `harden.param` (the scheduler needs shapes, not values), so the 1.1B shape
imports in seconds. `harden_level` then stands in for `harden-fuse-qkv` and
`harden-ternarize`: q/k/v linears become one `harden.fused_qkv` and every linear but the
classifier a `harden.ternary_linear` with packed-code and scale parameters of the shapes
the dialect prescribes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch_mlir import ir
from torch_mlir.extras.fx_importer import FxImporter, FxImporterHooks

from harden.core.context import make_context
from harden.core.graph import body_ops, functions, users
from harden.core.tensor_types import tensor_info, vtensor_type
from harden.dialects.harden import build_fused_qkv, build_param, build_ternary_linear
from harden.dialects.ternary_pack import packed_columns


@dataclass(frozen=True)
class LlamaShape:
    vocab: int
    dim: int
    layers: int
    heads: int
    kv_heads: int
    hidden: int

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


SHAPES = {
    "tiny": LlamaShape(vocab=64, dim=32, layers=2, heads=4, kv_heads=2, hidden=48),
    "stories260k": LlamaShape(vocab=512, dim=64, layers=5, heads=8, kv_heads=4, hidden=172),
    "tinyllama-1.1b": LlamaShape(vocab=32000, dim=2048, layers=22, heads=32, kv_heads=4, hidden=5632),
}


class RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, device="meta"))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


def rope_tables(positions, head_dim: int):
    """cos and sin of shape [S, head_dim / 2] for adjacent-pair rotary embeddings."""
    freqs = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    angles = positions.float()[:, None] * freqs[None, :]
    return torch.cos(angles), torch.sin(angles)


def apply_rope(x, cos, sin):
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2)


def linear(i: int, o: int) -> nn.Linear:
    return nn.Linear(i, o, bias=False, device="meta")


class Block(nn.Module):
    def __init__(self, s: LlamaShape):
        super().__init__()
        self.s = s
        hd = s.head_dim
        self.attention_norm = RMSNorm(s.dim)
        self.wq, self.wk, self.wv = linear(s.dim, s.dim), linear(s.dim, s.kv_heads * hd), linear(s.dim, s.kv_heads * hd)
        self.wo = linear(s.dim, s.dim)
        self.ffn_norm = RMSNorm(s.dim)
        self.w1, self.w3, self.w2 = linear(s.dim, s.hidden), linear(s.dim, s.hidden), linear(s.hidden, s.dim)

    def forward(self, x, cos, sin, k_cache, v_cache, pos, mask):
        """x [1,S,D]; caches [1,KV,MAX,HD] of this layer; returns x and the updated caches."""
        s, (b, n, _) = self.s, x.shape
        h = self.attention_norm(x)
        q = apply_rope(self.wq(h).view(b, n, s.heads, s.head_dim).transpose(1, 2), cos, sin)
        k = apply_rope(self.wk(h).view(b, n, s.kv_heads, s.head_dim).transpose(1, 2), cos, sin)
        v = self.wv(h).view(b, n, s.kv_heads, s.head_dim).transpose(1, 2)
        k_cache = k_cache.index_copy(2, pos, k)
        v_cache = v_cache.index_copy(2, pos, v)
        rep = s.heads // s.kv_heads
        keys, values = k_cache.repeat_interleave(rep, 1), v_cache.repeat_interleave(rep, 1)
        scores = torch.matmul(q, keys.transpose(2, 3)) / math.sqrt(s.head_dim) + mask
        attn = torch.matmul(F.softmax(scores, dim=-1), values)
        x = x + self.wo(attn.transpose(1, 2).reshape(b, n, s.dim))
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h)), k_cache, v_cache


class Llama(nn.Module):
    def __init__(self, s: LlamaShape, max_seq_len: int):
        super().__init__()
        self.s, self.max_seq_len = s, max_seq_len
        self.tok_embeddings = nn.Embedding(s.vocab, s.dim, device="meta")
        self.layers = nn.ModuleList(Block(s) for _ in range(s.layers))
        self.norm = RMSNorm(s.dim)
        self.output = linear(s.dim, s.vocab)

    def step(self, tokens, pos, k_cache, v_cache):
        """Runs tokens at positions pos (1-D) against the caches; returns logits and caches."""
        x = self.tok_embeddings(tokens)
        cos, sin = rope_tables(pos, self.s.head_dim)
        key_pos = torch.arange(self.max_seq_len, device=tokens.device)
        mask = torch.where(key_pos[None, :] <= pos[:, None], 0.0, float("-inf"))
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, cos, sin, k_cache[i], v_cache[i], pos, mask)
            new_k.append(k)
            new_v.append(v)
        return self.output(self.norm(x)), torch.stack(new_k), torch.stack(new_v)


class Prefill(nn.Module):
    def __init__(self, model: Llama):
        super().__init__()
        self.model = model

    def forward(self, tokens):
        s, m = self.model.s, self.model
        cache = torch.zeros(s.layers, 1, s.kv_heads, m.max_seq_len, s.head_dim, device=tokens.device)
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        return m.step(tokens, pos, cache, cache)


class Decode(nn.Module):
    def __init__(self, model: Llama):
        super().__init__()
        self.model = model

    def forward(self, token, pos, k_cache, v_cache):
        return self.model.step(token, pos, k_cache, v_cache)


class _ParamHooks(FxImporterHooks):
    """Imports every parameter as a `harden.param` named like the state dict entry."""

    def __init__(self, names: dict[int, str]):
        self.names = names

    def resolve_literal(self, gni, literal, info):
        name = self.names.get(id(literal))
        if name is None or not isinstance(literal, torch.Tensor):
            return None
        return build_param(name, vtensor_type(tuple(literal.shape), "f32")).result


def import_llama(shape: str | LlamaShape, seq_len: int = 16, max_seq_len: int = 64) -> ir.Module:
    """A module with `prefill` and `decode` of a Llama shape, weights as `harden.param`."""
    s = SHAPES[shape] if isinstance(shape, str) else shape
    model = Llama(s, max_seq_len).eval()
    ctx = make_context()
    module = None
    cache = torch.zeros(s.layers, 1, s.kv_heads, max_seq_len, s.head_dim, device="meta")
    entries = [
        ("prefill", Prefill(model), (torch.zeros(1, seq_len, dtype=torch.long, device="meta"),)),
        ("decode", Decode(model), (torch.zeros(1, 1, dtype=torch.long, device="meta"),
                                   torch.zeros(1, dtype=torch.long, device="meta"), cache, cache)),
    ]
    for name, wrapper, args in entries:
        with torch.no_grad():
            exported = torch.export.export(wrapper, args)
        names = {id(v): k.removeprefix("model.") for k, v in exported.state_dict.items()}
        hooks = _ParamHooks(names)
        importer = FxImporter(module=module, hooks=hooks) if module else FxImporter(context=ctx, hooks=hooks)
        importer.import_frozen_program(exported, func_name=name)
        module = importer.module
    return ir.Module.parse(str(module), ctx)


def _param(name: str, shape, dtype: str) -> ir.Value:
    return build_param(name, vtensor_type(shape, dtype)).result


def harden_level(module: ir.Module, ternarize: bool = True) -> ir.Module:
    """Fuses each layer's q/k/v linears and (optionally) ternarizes every linear but the classifier.

    Stands in for harden-fuse-qkv and harden-ternarize on `harden.param` weights, which those
    passes do not read yet; only shapes matter to the scheduler.
    """
    with module.context, ir.Location.unknown():
        for func in functions(module.operation):
            _fuse_qkv(func)
            if ternarize:
                _ternarize(func)
    module.operation.verify()
    return module


def _param_name(value: ir.Value) -> str:
    return ir.StringAttr(value.owner.attributes["param_name"]).value


def _fuse_qkv(func) -> None:
    for op in body_ops(func):
        if op.operation.name != "torch.aten.linear" or not _param_name(op.operands[1]).endswith("wq.weight"):
            continue
        x = op.operands[0]
        group = [u for u in users(x) if u.operation.name == "torch.aten.linear"]
        group.sort(key=lambda u: ("wq", "wk", "wv").index(_param_name(u.operands[1]).split(".")[-2]))
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
        if name == "output.weight":
            continue
        out_f, in_f = tensor_info(op.operands[1].type).shape
        x = op.operands[0]
        with ir.InsertionPoint(op):
            codes = _param(name + ".codes", (1, out_f, packed_columns(in_f)), "si8")
            scales = _param(name + ".scales", (1, out_f, 1), "f32")
            y_info = tensor_info(x.type)
            y_type = vtensor_type(y_info.shape[:-1] + (out_f,), "f32")
            tern = build_ternary_linear(x, codes, scales, in_features=in_f, out_features=out_f,
                                        group_size=in_f, planes=1, scale_kind="channel", result_type=y_type)
        if kind == "torch.aten.linear":
            op.result.replace_all_uses_with(tern.result)
        else:
            _split_fused_result(op, tern.result)
        weight_op = op.operands[1].owner
        op.operation.erase()
        weight_op.erase()


def _split_fused_result(fused, y: ir.Value) -> None:
    """Replaces q, k, v of a fused_qkv by slices of one ternary linear's output."""
    sizes = [fused.attributes[n].value for n in ("q_size", "k_size", "v_size")]
    start = 0
    for result, size in zip(fused.results, sizes):
        i64 = lambda v: ir.Operation.create("torch.constant.int", results=[ir.Type.parse("!torch.int")],
                                            attributes={"value": ir.IntegerAttr.get(ir.IntegerType.get_signless(64), v)}).result
        with ir.InsertionPoint(fused):
            piece = ir.Operation.create(
                "torch.aten.slice.Tensor", results=[result.type],
                operands=[y, i64(-1), i64(start), i64(start + size), i64(1)]).result
        result.replace_all_uses_with(piece)
        start += size
