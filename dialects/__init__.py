"""The harden dialect: op definitions, verifiers, builders and ternary packing."""
