"""Splitting a model over chips when its weights do not fit in one chip's SRAM.

Policy (the `tsp` machine, after how Groq deploys large models): weights never leave
SRAM, so a model too large for one chip is split over several, in contiguous layer groups
(a pipeline of chips), with activations crossing chip-to-chip links. `chips = "auto"`
takes the fewest chips whose SRAM, minus the `activation_reserve` fraction kept for
activations and the KV cache, holds the weights of their layers; the layers are then
balanced so each chip holds about the same weight bytes.

One weight matrix larger than a chip's weight budget (the token embedding and classifier
of a large vocabulary: 1 GB at Llama-3.1-8B) is split over chips of its own (tensor
parallelism, as Groq splits such tables): `shard_layout` cuts it along its output axis
(a matrix's rows, a table's columns) into one slice per chip, each what
`units_per_chip` consecutive stream tiles of its reader compute, so each chip's units
compute with the slice that chip holds. Its readers run on those chips' units; the rest of the model is split by
layer groups as above. A layer group larger than a chip's budget without any single
oversized matrix is still an error.
"""

from __future__ import annotations

import math


class PlacementError(ValueError):
    """Weights that cannot be placed; the message says which layer and how many bytes."""


def chips_needed(layer_bytes: dict[int, int], budget: int) -> int:
    """Fewest contiguous groups of layers (in layer order) each within `budget` bytes."""
    groups, used = 1, 0
    for layer in sorted(layer_bytes):
        size = layer_bytes[layer]
        if size > budget:
            raise PlacementError(f"layer {layer} holds {size} bytes of weights, more than the {budget} bytes one chip can give to weights")
        if used + size > budget:
            groups, used = groups + 1, 0
        used += size
    return groups


def balanced_partition(layer_bytes: dict[int, int], chips: int) -> dict[int, int]:
    """Chip of each layer: `chips` contiguous groups minimizing the largest group's bytes."""
    layers = sorted(layer_bytes)
    chips = max(1, min(chips, len(layers)))
    low, high = max(layer_bytes.values(), default=0), sum(layer_bytes.values())
    while low < high:  # binary search on the largest group a greedy split must respect
        mid = (low + high) // 2
        if _groups_within(layers, layer_bytes, mid) <= chips:
            high = mid
        else:
            low = mid + 1
    assignment, chip, used = {}, 0, 0
    for k, layer in enumerate(layers):
        size = layer_bytes[layer]
        remaining_layers = len(layers) - k
        remaining_chips = chips - chip
        # Open a new chip when this one is full, or when each remaining chip needs a layer.
        if used and (used + size > low or remaining_layers < remaining_chips):
            chip, used = chip + 1, 0
        assignment[layer] = chip
        used += size
    return assignment


def _groups_within(layers, layer_bytes, limit) -> int:
    groups, used = 1, 0
    for layer in layers:
        if used + layer_bytes[layer] > limit:
            groups, used = groups + 1, 0
        used += layer_bytes[layer]
    return groups


def shard_layout(weight_bytes: int, budget: int, length: int, units_per_chip: int) -> list[tuple[int, int]]:
    """The output-axis range [lo, hi) each chip holds: the fewest chips whose slices (the
    rows of `units_per_chip` stream tiles each, see `shard_ranges`) all fit in `budget`.

    `length` is the output axis the stream tiles split (a matrix's rows, a table's
    columns), over which the weight's `weight_bytes` are spread evenly."""
    for chips in range(max(1, math.ceil(weight_bytes / budget)), length + 1):
        ranges = shard_ranges(length, chips, units_per_chip)
        if all(hi > lo and shard_bytes(weight_bytes, length, (lo, hi)) <= budget for lo, hi in ranges):
            return ranges
    raise PlacementError(f"a weight of {weight_bytes} bytes cannot be split into slices of at most {budget} bytes "
                         f"along its {length} rows")


def shard_ranges(length: int, chips: int, units_per_chip: int) -> list[tuple[int, int]]:
    """[lo, hi) of each of `chips` slices: chip j holds the rows of stream tiles
    j * units_per_chip .. (j + 1) * units_per_chip - 1 (the last slices may be shorter or empty)."""
    per_chip = units_per_chip * shard_tile_length(length, chips * units_per_chip)
    return [(min(length, j * per_chip), min(length, (j + 1) * per_chip)) for j in range(chips)]


def shard_tile_length(length: int, tiles: int) -> int:
    """The stream tile length of `length` split into at most `tiles` tiles (as build.py tiles)."""
    return math.ceil(length / max(1, min(tiles, length)))


def shard_bytes(weight_bytes: int, length: int, span: tuple[int, int]) -> int:
    """Bytes of the slice `span` of a weight of `weight_bytes` over `length` rows (rounded up,
    in integers: exact at any size)."""
    return -(-weight_bytes * (span[1] - span[0]) // length)
