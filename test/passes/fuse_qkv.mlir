// RUN: harden-opt %s --split-input-file --harden-fuse-qkv | filecheck %s
// RUN: harden-opt %s --split-input-file --harden-fuse-qkv --harden-remarks --verify-diagnostics -o %t.mlir

// GQA with biases: q has 4 heads, k and v 2 heads of size 2. Weights and biases are
// concatenated in q, k, v order.
// CHECK-LABEL: func.func @gqa_with_bias
// CHECK-DAG: %[[W:.*]] = torch.vtensor.literal(dense<{{\[}}[1.000000e+00, 0.000000e+00, 0.000000e+00, 0.000000e+00], [0.000000e+00, 1.000000e+00, {{.*}}[3.000000e+00, 0.000000e+00, 0.000000e+00, 0.000000e+00], {{.*}}, [0.000000e+00, 0.000000e+00, 0.000000e+00, 3.000000e+00]]> : tensor<16x4xf32>) {harden.name = "l0.attn.wq+wk+wv.weight"}
// CHECK-DAG: %[[B:.*]] = torch.vtensor.literal(dense<[5.000000e-01, 5.000000e-01, 5.000000e-01, 5.000000e-01, 5.000000e-01, 5.000000e-01, 5.000000e-01, 5.000000e-01, 1.000000e+00, 2.000000e+00, 3.000000e+00, 4.000000e+00, -1.000000e+00, -2.000000e+00, -3.000000e+00, -4.000000e+00]> : tensor<16xf32>) {harden.name = "l0.attn.wq+wk+wv.bias"}
// CHECK: %[[QKV:.*]]:3 = "harden.fused_qkv"(%arg0, %[[W]], %[[B]]) {k_size = 4 : i64, operandSegmentSizes = array<i32: 1, 1, 1>, q_size = 8 : i64, v_size = 4 : i64}
// CHECK-NOT: torch.aten.linear
// CHECK: return %[[QKV]]#0, %[[QKV]]#1, %[[QKV]]#2
func.func @gqa_with_bias(%x: !torch.vtensor<[1,3,4],f32>) -> (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>) {
  %wq = torch.vtensor.literal(dense<[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]]> : tensor<8x4xf32>) {harden.name = "l0.attn.wq.weight"} : !torch.vtensor<[8,4],f32>
  %bq = torch.vtensor.literal(dense<0.5> : tensor<8xf32>) : !torch.vtensor<[8],f32>
  %wk = torch.vtensor.literal(dense<[[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 2.0]]> : tensor<4x4xf32>) {harden.name = "l0.attn.wk.weight"} : !torch.vtensor<[4,4],f32>
  %bk = torch.vtensor.literal(dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>) : !torch.vtensor<[4],f32>
  %wv = torch.vtensor.literal(dense<[[3.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [0.0, 0.0, 0.0, 3.0]]> : tensor<4x4xf32>) {harden.name = "l0.attn.wv.weight"} : !torch.vtensor<[4,4],f32>
  %bv = torch.vtensor.literal(dense<[-1.0, -2.0, -3.0, -4.0]> : tensor<4xf32>) : !torch.vtensor<[4],f32>
  %q = torch.aten.linear %x, %wq, %bq : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[8,4],f32>, !torch.vtensor<[8],f32> -> !torch.vtensor<[1,3,8],f32>
  %k = torch.aten.linear %x, %wk, %bk : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.vtensor<[4],f32> -> !torch.vtensor<[1,3,4],f32>
  %v = torch.aten.linear %x, %wv, %bv : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.vtensor<[4],f32> -> !torch.vtensor<[1,3,4],f32>
  return %q, %k, %v : !torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>
}

// -----

// Multi-head attention without bias (q, k, v all of size 4); the old weights are erased.
// CHECK-LABEL: func.func @mha_without_bias
// CHECK: %[[W:.*]] = torch.vtensor.literal({{.*}} : tensor<12x4xf32>)
// CHECK-NOT: torch.vtensor.literal
// CHECK: "harden.fused_qkv"(%arg0, %[[W]]) {k_size = 4 : i64, operandSegmentSizes = array<i32: 1, 1, 0>, q_size = 4 : i64, v_size = 4 : i64}
func.func @mha_without_bias(%x: !torch.vtensor<[1,3,4],f32>) -> (!torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>) {
  %none = torch.constant.none
  %wq = torch.vtensor.literal(dense<1.0> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  %wk = torch.vtensor.literal(dense<2.0> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  %wv = torch.vtensor.literal(dense<3.0> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  %q = torch.aten.linear %x, %wq, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.none -> !torch.vtensor<[1,3,4],f32>
  %k = torch.aten.linear %x, %wk, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.none -> !torch.vtensor<[1,3,4],f32>
  %v = torch.aten.linear %x, %wv, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.none -> !torch.vtensor<[1,3,4],f32>
  return %q, %k, %v : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>
}

// -----

// A weight that is a function argument is not a constant: nothing is fused.
// CHECK-LABEL: func.func @non_constant_weight
// CHECK-NOT: harden.fused_qkv
// CHECK-COUNT-3: torch.aten.linear
func.func @non_constant_weight(%x: !torch.vtensor<[1,3,4],f32>, %wk: !torch.vtensor<[4,4],f32>) -> (!torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>) {
  %none = torch.constant.none
  %wq = torch.vtensor.literal(dense<1.0> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  %wv = torch.vtensor.literal(dense<3.0> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  // expected-remark@+1 {{not fused into harden.fused_qkv: a weight is not a constant}}
  %q = torch.aten.linear %x, %wq, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.none -> !torch.vtensor<[1,3,4],f32>
  // expected-remark@+1 {{not fused into harden.fused_qkv: a weight is not a constant}}
  %k = torch.aten.linear %x, %wk, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.none -> !torch.vtensor<[1,3,4],f32>
  // expected-remark@+1 {{not fused into harden.fused_qkv: a weight is not a constant}}
  %v = torch.aten.linear %x, %wv, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.none -> !torch.vtensor<[1,3,4],f32>
  return %q, %k, %v : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>
}

// -----

// q, k and v reading different activations are not fused.
// CHECK-LABEL: func.func @different_inputs
// CHECK-NOT: harden.fused_qkv
func.func @different_inputs(%x: !torch.vtensor<[1,3,4],f32>, %y: !torch.vtensor<[1,3,4],f32>) -> (!torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>) {
  %none = torch.constant.none
  %wq = torch.vtensor.literal(dense<1.0> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  %wk = torch.vtensor.literal(dense<2.0> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  %wv = torch.vtensor.literal(dense<3.0> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  // expected-remark@+1 {{not fused into harden.fused_qkv: 2 linear op(s) read this activation; q, k and v fusion needs exactly 3}}
  %q = torch.aten.linear %x, %wq, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.none -> !torch.vtensor<[1,3,4],f32>
  // expected-remark@+1 {{not fused into harden.fused_qkv: 1 linear op(s) read this activation}}
  %k = torch.aten.linear %y, %wk, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.none -> !torch.vtensor<[1,3,4],f32>
  // expected-remark@+1 {{not fused into harden.fused_qkv: 2 linear op(s) read this activation}}
  %v = torch.aten.linear %x, %wv, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.none -> !torch.vtensor<[1,3,4],f32>
  return %q, %k, %v : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>
}

// -----

// Two of the three (the gate and up projections of an MLP) stay as they are.
// CHECK-LABEL: func.func @two_of_three
// CHECK-NOT: harden.fused_qkv
// CHECK-COUNT-2: torch.aten.linear
func.func @two_of_three(%x: !torch.vtensor<[1,3,4],f32>) -> (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,8],f32>) {
  %none = torch.constant.none
  %wg = torch.vtensor.literal(dense<1.0> : tensor<8x4xf32>) : !torch.vtensor<[8,4],f32>
  %wu = torch.vtensor.literal(dense<2.0> : tensor<8x4xf32>) : !torch.vtensor<[8,4],f32>
  // expected-remark@+1 {{not fused into harden.fused_qkv: 2 linear op(s) read this activation; q, k and v fusion needs exactly 3}}
  %g = torch.aten.linear %x, %wg, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[8,4],f32>, !torch.none -> !torch.vtensor<[1,3,8],f32>
  // expected-remark@+1 {{not fused into harden.fused_qkv: 2 linear op(s) read this activation; q, k and v fusion needs exactly 3}}
  %u = torch.aten.linear %x, %wu, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[8,4],f32>, !torch.none -> !torch.vtensor<[1,3,8],f32>
  return %g, %u : !torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,8],f32>
}

// -----

// Weights of different dtypes are not concatenated.
// CHECK-LABEL: func.func @mismatched_dtypes
// CHECK-NOT: harden.fused_qkv
func.func @mismatched_dtypes(%x: !torch.vtensor<[1,3,4],f32>) -> (!torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>) {
  %none = torch.constant.none
  %wq = torch.vtensor.literal(dense<1.0> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  %wk = torch.vtensor.literal(dense<2.0> : tensor<4x4xf64>) : !torch.vtensor<[4,4],f64>
  %wv = torch.vtensor.literal(dense<3.0> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  // expected-remark@+1 {{not fused into harden.fused_qkv: weight dtypes differ (f32, f64, f32)}}
  %q = torch.aten.linear %x, %wq, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.none -> !torch.vtensor<[1,3,4],f32>
  // expected-remark@+1 {{weight dtypes differ}}
  %k = torch.aten.linear %x, %wk, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f64>, !torch.none -> !torch.vtensor<[1,3,4],f32>
  // expected-remark@+1 {{weight dtypes differ}}
  %v = torch.aten.linear %x, %wv, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.none -> !torch.vtensor<[1,3,4],f32>
  return %q, %k, %v : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>
}

// -----

// k and v of different sizes are not the k and v of attention.
// CHECK-LABEL: func.func @mismatched_shapes
// CHECK-NOT: harden.fused_qkv
func.func @mismatched_shapes(%x: !torch.vtensor<[1,3,4],f32>) -> (!torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,2],f32>) {
  %none = torch.constant.none
  %wq = torch.vtensor.literal(dense<1.0> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  %wk = torch.vtensor.literal(dense<2.0> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  %wv = torch.vtensor.literal(dense<3.0> : tensor<2x4xf32>) : !torch.vtensor<[2,4],f32>
  // expected-remark@+1 {{not fused into harden.fused_qkv: output sizes 4, 4, 2 are not q, k, v of attention (k = v, q a multiple of k)}}
  %q = torch.aten.linear %x, %wq, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.none -> !torch.vtensor<[1,3,4],f32>
  // expected-remark@+1 {{output sizes 4, 4, 2}}
  %k = torch.aten.linear %x, %wk, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.none -> !torch.vtensor<[1,3,4],f32>
  // expected-remark@+1 {{output sizes 4, 4, 2}}
  %v = torch.aten.linear %x, %wv, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[2,4],f32>, !torch.none -> !torch.vtensor<[1,3,2],f32>
  return %q, %k, %v : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,2],f32>
}

// -----

// Only some of the three have a bias.
// CHECK-LABEL: func.func @partial_bias
// CHECK-NOT: harden.fused_qkv
func.func @partial_bias(%x: !torch.vtensor<[1,3,4],f32>) -> (!torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>) {
  %none = torch.constant.none
  %wq = torch.vtensor.literal(dense<1.0> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  %bq = torch.vtensor.literal(dense<1.0> : tensor<4xf32>) : !torch.vtensor<[4],f32>
  %wk = torch.vtensor.literal(dense<2.0> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  %wv = torch.vtensor.literal(dense<3.0> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  // expected-remark@+1 {{only some of the linears have a bias}}
  %q = torch.aten.linear %x, %wq, %bq : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.vtensor<[4],f32> -> !torch.vtensor<[1,3,4],f32>
  // expected-remark@+1 {{only some of the linears have a bias}}
  %k = torch.aten.linear %x, %wk, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.none -> !torch.vtensor<[1,3,4],f32>
  // expected-remark@+1 {{only some of the linears have a bias}}
  %v = torch.aten.linear %x, %wv, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.none -> !torch.vtensor<[1,3,4],f32>
  return %q, %k, %v : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>
}
