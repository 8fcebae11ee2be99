"""Small helpers to walk torch-dialect graphs from Python."""

from __future__ import annotations

from torch_mlir import ir


def functions(module: ir.Operation) -> list[ir.OpView]:
    """The `func.func` ops of a module, in order."""
    return [op for op in module.regions[0].blocks[0].operations if op.operation.name == "func.func"]


def body_ops(func: ir.OpView) -> list[ir.OpView]:
    """The ops of a function's entry block, in program order (none for a declaration)."""
    blocks = func.regions[0].blocks
    return list(blocks[0].operations) if len(blocks) else []


def ops_named(module: ir.Operation, name: str) -> list[ir.OpView]:
    """Every op called `name` in the module's functions, in program order."""
    return [op for f in functions(module) for op in body_ops(f) if op.operation.name == name]


def defining_op(value: ir.Value) -> ir.OpView | None:
    """The op producing `value`, or None for a block argument."""
    owner = value.owner
    if isinstance(owner, ir.Block):
        return None
    return owner.opview if isinstance(owner, ir.Operation) else owner


def is_none(value: ir.Value) -> bool:
    """Whether `value` is torch's `none` (an absent optional operand such as a bias)."""
    op = defining_op(value)
    return op is not None and op.operation.name == "torch.constant.none"


def users(value: ir.Value) -> list[ir.OpView]:
    """Ops that use `value` (each once)."""
    seen, result = set(), []
    for use in value.uses:
        op = use.owner.opview if isinstance(use.owner, ir.Operation) else use.owner
        if op.operation not in seen:
            seen.add(op.operation)
            result.append(op)
    return result
