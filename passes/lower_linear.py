"""harden-lower-linear: `torch.aten.linear` to one linalg matmul in nn.Linear's weight layout."""

from __future__ import annotations

from dataclasses import dataclass

from torch_mlir import ir

from harden.core.graph import is_none, ops_named
from harden.core.pass_base import Pass, PassContext
from harden.core.tensor_types import tensor_info
from harden.kernels import linalg_builders as lb


@dataclass(frozen=True)
class LowerLinear(Pass):
    """Lower `torch.aten.linear` with static f32 shapes to a linalg matmul reading W as [out, in].

    torch-mlir lowers a linear on a 3-D input to a transpose and a broadcast of the weight
    and a batch matmul; IREE then folds those into a transposed copy of every weight at
    compile time (slow to compile, twice the constant bytes). Reading the weight in its
    own [out, in] layout needs neither. Linears with dynamic shapes or other element
    types are left to torch-mlir.
    """

    name = "harden-lower-linear"

    def run(self, module: ir.Operation, ctx: PassContext) -> None:
        for op in ops_named(module, "torch.aten.linear"):
            infos = [tensor_info(v.type) for v in (op.operands[0], op.operands[1], op.result)]
            if any(i is None or None in i.shape or i.dtype != "f32" for i in infos) or infos[1].rank != 2 or infos[0].rank < 2:
                continue
            with ir.InsertionPoint(op), op.location:
                y = lb.matmul_transposed(lb.collapse_rows(lb.to_builtin(op.operands[0])), lb.to_builtin(op.operands[1]))
                if not is_none(op.operands[2]):
                    y = lb.add_bias(y, lb.to_builtin(op.operands[2]))
                result = lb.from_builtin(lb.expand_rows(y, infos[0].shape[:-1]), op.result.type)
            op.result.replace_all_uses_with(result)
            op.operation.erase()
