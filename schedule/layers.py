"""Which decoder layer each op belongs to, from the graph's structure.

Layers colour the Gantt chart, place per-layer units (the `hardwired` machine), split a
model over chips and let tests see layers overlap. The importer's graphs carry no layer
marks on most ops, so they are inferred; an op that already has a `harden.layer`
attribute keeps it (a rescheduled module keeps its layers).

Numbering: decoder layers are 0 .. L-1 where L is the number of attention cores (softmax
or fused attention ops); -1 is the prologue (the embedding), L the epilogue (the final
norm and classifier).

* A weight whose name says `layers.<n>.` (harden-import's names, `harden.param` names)
  puts its op in layer n.
* Otherwise, for an op with a weight (a matmul, the embedding, a RoPE table lookup):
  - no weighted op before it (the embedding, the RoPE table lookups every layer shares):
    prologue;
  - it feeds an attention core with no other weighted op in between (the q/k/v
    projection of layer l): layer l;
  - none after it and no attention after it (the classifier): epilogue;
  - else (o, gate, up, down): the layer of the last attention core before it.
* An attention core belongs to the layer it ends, counting cores along the graph.
* Every other op takes the layer of the first weighted op or attention core that uses its
  result (so a layer's RMSNorm joins the projections it feeds); an op nothing weighted
  uses takes the latest layer among its producers.
"""

from __future__ import annotations

import re

_LAYER_NAME = re.compile(r"(?:^|[._])(?:layers|layer|h|blocks|block)[._](\d+)(?:[._]|$)")
PROLOGUE = -1


def layer_from_name(name: str | None) -> int | None:
    """The layer number in a weight name like `layers.3.wq.weight`, if any."""
    if not name:
        return None
    match = _LAYER_NAME.search(name)
    return int(match.group(1)) if match else None


def infer_layers(
    producers: list[list[int]],
    weighted: list[bool],
    cores: list[bool],
    named: list[int | None],
) -> tuple[list[int], int]:
    """Layer of each op (ops in topological order) and the number of decoder layers L.

    `producers[i]`: ops whose results op i reads; `weighted[i]`: it has a weight;
    `cores[i]`: it is an attention core; `named[i]`: a layer number from weight names.
    """
    n = len(producers)
    users: list[list[int]] = [[] for _ in range(n)]
    for i, ps in enumerate(producers):
        for p in ps:
            users[p].append(i)

    # Attention cores on the way to each op (itself included), and whether weights precede it.
    cores_seen = [0] * n
    weighted_before = [False] * n
    for i in range(n):
        seen = max((cores_seen[p] for p in producers[i]), default=0)
        cores_seen[i] = seen + (1 if cores[i] else 0)
        weighted_before[i] = any(weighted[p] or weighted_before[p] for p in producers[i])
    layer_count = max(cores_seen, default=0)
    if layer_count == 0:
        return [named[i] if named[i] is not None else 0 for i in range(n)], 0

    infinity = 1 << 30
    # The attention core an op feeds before any other weighted op, and what follows it.
    direct_core = [infinity] * n
    weighted_after = [False] * n
    core_after = [False] * n
    for i in reversed(range(n)):
        for u in users[i]:
            if cores[u]:
                direct_core[i] = min(direct_core[i], cores_seen[u] - 1)
            elif not weighted[u]:
                direct_core[i] = min(direct_core[i], direct_core[u])
            weighted_after[i] |= weighted[u] or weighted_after[u]
            core_after[i] |= cores[u] or core_after[u]

    layer: list[int | None] = [None] * n
    for i in range(n):
        if cores[i]:
            layer[i] = cores_seen[i] - 1
        elif weighted[i]:
            if named[i] is not None:
                layer[i] = named[i]
            elif not weighted_before[i]:
                layer[i] = PROLOGUE
            elif direct_core[i] < infinity:
                layer[i] = direct_core[i]
            elif not weighted_after[i] and not core_after[i]:
                layer[i] = layer_count
            else:
                layer[i] = max(cores_seen[i] - 1, 0)

    # Other ops: the layer of the first weighted op or core using them...
    next_layer = [infinity] * n
    for i in reversed(range(n)):
        if layer[i] is not None:
            continue
        for u in users[i]:
            next_layer[i] = min(next_layer[i], layer[u] if layer[u] is not None else next_layer[u])
    # ... or, when nothing weighted uses them, the latest layer among their producers.
    for i in range(n):
        if layer[i] is None:
            if next_layer[i] < infinity:
                layer[i] = next_layer[i]
            else:
                layer[i] = max((layer[p] for p in producers[i]), default=PROLOGUE)
        if named[i] is not None:
            layer[i] = named[i]
    return [int(x) for x in layer], layer_count


def layer_label(layer: int, layer_count: int) -> str:
    """`pre`, `L0` ... `L<L-1>`, `post` (unit names of per-layer units)."""
    if layer < 0:
        return "pre"
    if layer_count and layer >= layer_count:
        return "post"
    return f"L{layer}"
