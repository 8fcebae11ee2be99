// RUN: harden-opt %s | harden-opt | filecheck %s
// Printing and parsing again gives identical text.
// RUN: harden-opt %s > %t.1.mlir && harden-opt %t.1.mlir > %t.2.mlir && diff %t.1.mlir %t.2.mlir

// CHECK-LABEL: func.func @fused
// CHECK: %[[QKV:.*]]:3 = "harden.fused_qkv"(%arg0, %arg1, %arg2) {k_size = 16 : i64, operandSegmentSizes = array<i32: 1, 1, 1>, q_size = 32 : i64, v_size = 16 : i64}
// CHECK: return %[[QKV]]#0, %[[QKV]]#1, %[[QKV]]#2
func.func @fused(%x: !torch.vtensor<[1,5,32],f32>, %w: !torch.vtensor<[64,32],f32>, %b: !torch.vtensor<[64],f32>)
    -> (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[1,5,16],f32>, !torch.vtensor<[1,5,16],f32>) {
  %q, %k, %v = "harden.fused_qkv"(%x, %w, %b) {q_size = 32 : i64, k_size = 16 : i64, v_size = 16 : i64, operandSegmentSizes = array<i32: 1, 1, 1>}
      : (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[64,32],f32>, !torch.vtensor<[64],f32>)
      -> (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[1,5,16],f32>, !torch.vtensor<[1,5,16],f32>)
  return %q, %k, %v : !torch.vtensor<[1,5,32],f32>, !torch.vtensor<[1,5,16],f32>, !torch.vtensor<[1,5,16],f32>
}

// CHECK-LABEL: func.func @ternary_group
// CHECK: "harden.ternary_linear"(%arg0, %arg1, %arg2) {group_size = 4 : i64, in_features = 10 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0>, out_features = 3 : i64, planes = 2 : i64, scale_kind = "group"}
func.func @ternary_group(%x: !torch.vtensor<[1,5,10],f32>, %w: !torch.vtensor<[2,3,3],si8>, %s: !torch.vtensor<[2,3,3],f32>) -> !torch.vtensor<[1,5,3],f32> {
  %y = "harden.ternary_linear"(%x, %w, %s) {in_features = 10 : i64, out_features = 3 : i64, group_size = 4 : i64, planes = 2 : i64, scale_kind = "group", operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5,10],f32>, !torch.vtensor<[2,3,3],si8>, !torch.vtensor<[2,3,3],f32>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}

// Builtin tensors are accepted too (the form the lowering consumes).
// CHECK-LABEL: func.func @ternary_channel_builtin
// CHECK: "harden.ternary_linear"(%arg0, %arg1, %arg2, %arg3)
func.func @ternary_channel_builtin(%x: tensor<4x8xf32>, %w: tensor<1x6x2xi8>, %s: tensor<1x6x1xf32>, %b: tensor<6xf32>) -> tensor<4x6xf32> {
  %y = "harden.ternary_linear"(%x, %w, %s, %b) {in_features = 8 : i64, out_features = 6 : i64, group_size = 8 : i64, planes = 1 : i64, scale_kind = "channel", operandSegmentSizes = array<i32: 1, 1, 1, 1>}
      : (tensor<4x8xf32>, tensor<1x6x2xi8>, tensor<1x6x1xf32>, tensor<6xf32>) -> tensor<4x6xf32>
  return %y : tensor<4x6xf32>
}

// CHECK-LABEL: func.func @int8
// CHECK: "harden.int8_linear"(%arg0, %arg1, %arg2, %arg3) {in_features = 10 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 1>, out_features = 3 : i64}
func.func @int8(%x: !torch.vtensor<[1,5,10],f32>, %w: !torch.vtensor<[3,10],si8>, %s: !torch.vtensor<[3,1],f32>, %b: !torch.vtensor<[3],f32>) -> !torch.vtensor<[1,5,3],f32> {
  %y = "harden.int8_linear"(%x, %w, %s, %b) {in_features = 10 : i64, out_features = 3 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 1>}
      : (!torch.vtensor<[1,5,10],f32>, !torch.vtensor<[3,10],si8>, !torch.vtensor<[3,1],f32>, !torch.vtensor<[3],f32>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}

// n-bit codes in groups: symmetric with a bias, affine with mins, and an n-bit table.
// CHECK-LABEL: func.func @int4
// CHECK: "harden.int_linear"(%arg0, %arg1, %arg2, %arg3) {bits = 4 : i64, group_size = 32 : i64, in_features = 64 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0, 1>, out_features = 3 : i64}
func.func @int4(%x: !torch.vtensor<[1,5,64],f32>, %w: !torch.vtensor<[3,64],si8>, %s: !torch.vtensor<[3,2],f16>, %b: !torch.vtensor<[3],f32>) -> !torch.vtensor<[1,5,3],f32> {
  %y = "harden.int_linear"(%x, %w, %s, %b) {in_features = 64 : i64, out_features = 3 : i64, bits = 4 : i64, group_size = 32 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0, 1>}
      : (!torch.vtensor<[1,5,64],f32>, !torch.vtensor<[3,64],si8>, !torch.vtensor<[3,2],f16>, !torch.vtensor<[3],f32>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}

// CHECK-LABEL: func.func @uint4
// CHECK: "harden.int_linear"(%arg0, %arg1, %arg2, %arg3) {bits = 4 : i64, group_size = 32 : i64, in_features = 64 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 1, 0>, out_features = 3 : i64}
func.func @uint4(%x: !torch.vtensor<[2,64],f32>, %w: !torch.vtensor<[3,64],si8>, %s: !torch.vtensor<[3,2],f16>, %m: !torch.vtensor<[3,2],f16>) -> !torch.vtensor<[2,3],f32> {
  %y = "harden.int_linear"(%x, %w, %s, %m) {in_features = 64 : i64, out_features = 3 : i64, bits = 4 : i64, group_size = 32 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 1, 0>}
      : (!torch.vtensor<[2,64],f32>, !torch.vtensor<[3,64],si8>, !torch.vtensor<[3,2],f16>, !torch.vtensor<[3,2],f16>) -> !torch.vtensor<[2,3],f32>
  return %y : !torch.vtensor<[2,3],f32>
}

// CHECK-LABEL: func.func @int_table
// CHECK: "harden.int_embedding"(%arg0, %arg1, %arg2) {bits = 8 : i64, group_size = 64 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0>}
func.func @int_table(%i: !torch.vtensor<[1,5],si64>, %w: !torch.vtensor<[10,64],si8>, %s: !torch.vtensor<[10,1],f16>) -> !torch.vtensor<[1,5,64],f32> {
  %y = "harden.int_embedding"(%i, %w, %s) {bits = 8 : i64, group_size = 64 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5],si64>, !torch.vtensor<[10,64],si8>, !torch.vtensor<[10,1],f16>) -> !torch.vtensor<[1,5,64],f32>
  return %y : !torch.vtensor<[1,5,64],f32>
}
