"""One naming of a Llama's weights and layer groups, whatever the frontend.

A module imported with harden's reference model names its weights as that model does
(`layers.0.attention.wq.weight`); one imported with Hugging Face's modeling code names them
as transformers does (`model.layers.0.self_attn.q_proj.weight`). Users name layers in one
way for both: the reference names, and these layer groups:

    layers.N.attention      q, k, v (also fused: wq+wk+wv) and o of layer N
    layers.N.feed_forward   gate (w1), down (w2) and up (w3) of layer N
    output                  the classifier (the embedding itself when they are tied)
    tok_embeddings          the token embedding

`canonical_name` maps either naming to the reference one; `layer_group` gives a weight's group.
"""

from __future__ import annotations

import re

# Hugging Face name -> reference name, within a layer and for the model's global weights.
HF_LAYER_NAMES = {
    "input_layernorm.weight": "attention_norm.weight",
    "self_attn.q_proj.weight": "attention.wq.weight",
    "self_attn.k_proj.weight": "attention.wk.weight",
    "self_attn.v_proj.weight": "attention.wv.weight",
    "self_attn.o_proj.weight": "attention.wo.weight",
    "self_attn.q_proj.bias": "attention.wq.bias",
    "self_attn.k_proj.bias": "attention.wk.bias",
    "self_attn.v_proj.bias": "attention.wv.bias",
    "self_attn.o_proj.bias": "attention.wo.bias",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "feed_forward.w1.weight",
    "mlp.down_proj.weight": "feed_forward.w2.weight",
    "mlp.up_proj.weight": "feed_forward.w3.weight",
}
HF_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}

# The same per name part, so fused names (`self_attn.q_proj+k_proj+v_proj.weight`) map too.
_HF_MODULES = {"self_attn": "attention", "mlp": "feed_forward"}
_HF_LEAVES = {"q_proj": "wq", "k_proj": "wk", "v_proj": "wv", "o_proj": "wo", "gate_proj": "w1", "down_proj": "w2", "up_proj": "w3"}
_GROUP_PARTS = ("attention", "feed_forward")
_LAYER = re.compile(r"^(?:model\.)?layers\.(\d+)\.(.+)$")

CLASSIFIER_GROUP = "output"
EMBEDDING_GROUP = "tok_embeddings"


def canonical_name(name: str) -> str:
    """The reference name of a weight named either way (unknown names are returned as they are)."""
    if name in HF_GLOBAL_NAMES:
        return HF_GLOBAL_NAMES[name]
    match = _LAYER.match(name)
    if match is None:
        return name
    layer, rest = match.groups()
    if rest in HF_LAYER_NAMES:
        return f"layers.{layer}.{HF_LAYER_NAMES[rest]}"
    module, _, leaf = rest.partition(".")
    if module in _HF_MODULES:
        parts = leaf.split(".")
        parts[0] = "+".join(_HF_LEAVES.get(p, p) for p in parts[0].split("+"))
        return f"layers.{layer}.{_HF_MODULES[module]}.{'.'.join(parts)}"
    return f"layers.{layer}.{rest}"


def layer_group(name: str) -> str | None:
    """The layer group of a weight named either way, None for weights outside every group (norms)."""
    reference = canonical_name(name)
    if reference.startswith("output."):
        return CLASSIFIER_GROUP
    if reference.startswith("tok_embeddings."):
        return EMBEDDING_GROUP
    match = _LAYER.match(reference)
    if match and match.group(2).split(".")[0] in _GROUP_PARTS:
        return f"layers.{match.group(1)}.{match.group(2).split('.')[0]}"
    return None


def describe_groups(groups: set[str]) -> str:
    """`layers.N.attention and layers.N.feed_forward for N in 0..29, output, tok_embeddings`."""
    layers = sorted({int(g.split(".")[1]) for g in groups if g.startswith("layers.")})
    parts = sorted({g.split(".")[2] for g in groups if g.startswith("layers.")})
    words = []
    if layers:
        span = f"{layers[0]}..{layers[-1]}" if layers == list(range(layers[0], layers[-1] + 1)) else ",".join(map(str, layers))
        words.append(" and ".join(f"layers.N.{p}" for p in parts) + f" for N in {span}")
    words += sorted(g for g in groups if not g.startswith("layers."))
    return ", ".join(words)
