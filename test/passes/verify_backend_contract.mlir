// RUN: harden-opt %s --split-input-file --harden-verify-backend-contract | filecheck %s
// RUN: not harden-opt %inputs/backend_contract_violations.mlir --split-input-file --harden-verify-backend-contract 2>&1 | filecheck %s --check-prefix=ERR

// linalg on builtin tensors passes unchanged.
// CHECK-LABEL: func.func @linalg_only
// CHECK: linalg.generic
func.func @linalg_only(%x: tensor<4xf32>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]} ins(%x : tensor<4xf32>) outs(%e : tensor<4xf32>) {
  ^bb0(%a: f32, %o: f32):
    %n = arith.negf %a : f32
    linalg.yield %n : f32
  } -> tensor<4xf32>
  return %y : tensor<4xf32>
}

// -----

// Calls of the C kernels' declarations are let through: the IREE backend defines them.
// CHECK-LABEL: func.func @calls_a_kernel
// CHECK: call @kernel
func.func private @kernel(tensor<1x4xf32>) -> tensor<1x2xf32> attributes {harden.ternary_vnni = {numerics = "fixed32"}}
func.func @calls_a_kernel(%x: tensor<1x4xf32>) -> tensor<1x2xf32> {
  %y = func.call @kernel(%x) : (tensor<1x4xf32>) -> tensor<1x2xf32>
  return %y : tensor<1x2xf32>
}

// torch-mlir's own messages, at the ops: a torch op left over, and any other call.
// ERR: backend_contract_violations.mlir:1:1: error: failed to legalize operation 'func.func'
// ERR: error: Module does not conform to the linalg-on-tensors backend contract.
// ERR: backend_contract_violations.mlir:10:8: error: failed to legalize operation 'func.call'
