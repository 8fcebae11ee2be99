"""MLIR contexts with every dialect harden reads or writes loaded."""

from __future__ import annotations

from torch_mlir import ir, passmanager
from torch_mlir.dialects import torch as torch_dialect

from harden.dialects.harden import Harden


def make_context() -> ir.Context:
    """A torch-mlir context with the torch, torch_c, upstream and `harden` dialects loaded."""
    ctx = ir.Context()
    torch_dialect.register_dialect(ctx)
    with ctx, ir.Location.unknown():
        # torch_c has no Python registration hook; a pass that depends on it loads it.
        passmanager.PassManager.parse("builtin.module(torch-func-backend-type-conversion)").run(
            ir.Module.create().operation
        )
        Harden.load()
    return ctx
