"""Splitting a model over chips when its weights do not fit in one chip's SRAM.

Policy (the `tsp` machine, after how Groq deploys large models): weights never leave
SRAM, so a model too large for one chip is split over several, in contiguous layer groups
(a pipeline of chips), with activations crossing chip-to-chip links. `chips = "auto"`
takes the fewest chips whose SRAM, minus the `activation_reserve` fraction kept for
activations and the KV cache, holds the weights of their layers; the layers are then
balanced so each chip holds about the same weight bytes. A single layer group larger than
a chip's weight budget is an error: the scheduler does not split one layer's weights.
"""

from __future__ import annotations


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
