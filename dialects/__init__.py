"""The harden dialect: op definitions, verifiers, builders, ternary packing, and the MLIR
context that loads it."""
