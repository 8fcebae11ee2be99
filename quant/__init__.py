"""Quantizers in numpy: ternary (absmean, TWN, one or two planes), int8 per channel, and the
options every part of harden shares for them. No MLIR here."""
