"""MLIR contexts with every dialect harden reads or writes loaded."""

from __future__ import annotations

from torch_mlir import ir, passmanager
from torch_mlir.dialects import torch as torch_dialect

from harden.dialects.harden import Harden


def make_context() -> ir.Context:
    """A torch-mlir context with the torch, torch_c, tm_tensor, upstream and `harden`
    dialects loaded, so every stage of harden's IR parses in it."""
    ctx = ir.Context()
    torch_dialect.register_dialect(ctx)
    with ctx, ir.Location.unknown():
        # torch_c and tm_tensor have no Python registration hook; running the pipelines
        # that produce them on an empty module loads them.
        passmanager.PassManager.parse(
            "builtin.module(torch-func-backend-type-conversion,torch-backend-to-linalg-on-tensors-backend-pipeline)"
        ).run(ir.Module.create().operation)
        Harden.load()
    return ctx
