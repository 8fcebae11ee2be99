// RUN: harden-opt %s --harden-lower-harden-ops | filecheck %s
// RUN: harden-opt %s --harden-lower-to-linalg | filecheck %s --check-prefix=FULL

// A tied table: the embedding lookup and the classifier read one n-bit table. Both lower
// to the same group-major constant [groups, group_size, rows] (codes of row n, column k at
// [k / 4, k % 4, n]), so the table is stored once; the classifier is a batch_matmul over the
// groups on the i8 codes, and a generic scales each group's partial sum.
// CHECK-LABEL: func.func @tied
// CHECK-NOT: tensor<3x8xsi8>
// CHECK: %[[T:.*]] = torch.vtensor.literal(dense<{{\[\[\[}}1, -2, 3], [0, 1, -1], [-8, 7, 2], [4, 4, -4]], {{\[\[}}5, -5, 1], [2, 3, -3], [1, 0, 0], [-1, 6, 7]]]> : tensor<2x4x3xsi8>) {harden.name = "tok_embeddings.weight.gkn"}
// CHECK: %[[S:.*]] = torch.vtensor.literal(dense<{{\[\[}}5.000000e-01, 1.000000e+00, 2.000000e+00], [2.500000e-01, 1.250000e-01, 5.000000e-01]]> : tensor<2x3xf16>) {harden.name = "tok_embeddings.scales.gn"}
// CHECK: linalg.generic
// CHECK: tensor.extract %{{.*}}[%[[G:.*]], %[[J:.*]], %[[ROW:.*]]] : tensor<2x4x3xi8>
// CHECK: tensor.extract %{{.*}}[%[[G]], %[[ROW]]] : tensor<2x3xf16>
// CHECK: linalg.batch_matmul ins(%{{.*}}, %{{.*}} : tensor<2x1x4xf32>, tensor<2x4x3xi8>) outs(%{{.*}} : tensor<2x1x3xf32>)
// CHECK: linalg.generic {{.*}} iterator_types = ["reduction", "parallel", "parallel"]
// CHECK-NOT: harden.
// After torch-mlir's lowering and CSE, one copy of the codes is left for both.
// FULL-LABEL: func.func @tied
// FULL: arith.constant dense<{{.*}}> : tensor<2x4x3xi8>
// FULL-NOT: tensor<3x8xi8>
// FULL-NOT: arith.constant dense<{{.*}}> : tensor<2x4x3xi8>
// FULL: linalg.batch_matmul
// FULL-NOT: arith.constant dense<{{.*}}> : tensor<2x4x3xi8>
// FULL: return
func.func @tied(%tokens: !torch.vtensor<[1,1],si64>) -> !torch.vtensor<[1,1,3],f32> {
  %codes = torch.vtensor.literal(dense<[[1, 0, -8, 4, 5, 2, 1, -1], [-2, 1, 7, 4, -5, 3, 0, 6], [3, -1, 2, -4, 1, -3, 0, 7]]> : tensor<3x8xsi8>) {harden.name = "tok_embeddings.weight"} : !torch.vtensor<[3,8],si8>
  %scales = torch.vtensor.literal(dense<[[0.5, 0.25], [1.0, 0.125], [2.0, 0.5]]> : tensor<3x2xf16>) {harden.name = "tok_embeddings.scales"} : !torch.vtensor<[3,2],f16>
  %h = "harden.int_embedding"(%tokens, %codes, %scales) {bits = 4 : i64, group_size = 4 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,1],si64>, !torch.vtensor<[3,8],si8>, !torch.vtensor<[3,2],f16>) -> !torch.vtensor<[1,1,8],f32>
  %y = "harden.int_linear"(%h, %codes, %scales) {in_features = 8 : i64, out_features = 3 : i64, bits = 4 : i64, group_size = 4 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0, 0>}
      : (!torch.vtensor<[1,1,8],f32>, !torch.vtensor<[3,8],si8>, !torch.vtensor<[3,2],f16>) -> !torch.vtensor<[1,1,3],f32>
  return %y : !torch.vtensor<[1,1,3],f32>
}

// A weight that is not a constant cannot be re-laid out: one generic widens each code where
// it multiplies (and the mins add min * x per group).
// CHECK-LABEL: func.func @argument
// CHECK-NOT: linalg.batch_matmul
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction", "reduction"]
// CHECK: arith.sitofp
// CHECK: arith.extf
// CHECK: return
func.func @argument(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[3,8],si8>, %s: !torch.vtensor<[3,2],f16>, %m: !torch.vtensor<[3,2],f16>) -> !torch.vtensor<[2,3],f32> {
  %y = "harden.int_linear"(%x, %w, %s, %m) {in_features = 8 : i64, out_features = 3 : i64, bits = 4 : i64, group_size = 4 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 1, 0>}
      : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[3,8],si8>, !torch.vtensor<[3,2],f16>, !torch.vtensor<[3,2],f16>) -> !torch.vtensor<[2,3],f32>
  return %y : !torch.vtensor<[2,3],f32>
}

// A prompt (several rows) with Q4_1-style mins: the weight is dequantized once per call,
// code * scale + min per group in the group-major layout, merged into [K, N] and multiplied
// by one f32 matmul (no batch_matmul over the groups and second pass over M x N partials).
// CHECK-LABEL: func.func @prompt
// CHECK: %[[W:.*]] = linalg.generic {{.*}} ins(%{{.*}}, %{{.*}}, %{{.*}} : tensor<2x4x3xi8>, tensor<2x3xf16>, tensor<2x3xf16>) outs(%{{.*}} : tensor<2x4x3xf32>)
// CHECK: arith.sitofp
// CHECK: arith.mulf
// CHECK: arith.addf
// CHECK: %[[K:.*]] = tensor.collapse_shape %[[W]] {{\[\[}}0, 1], [2]] : tensor<2x4x3xf32> into tensor<8x3xf32>
// CHECK: linalg.matmul ins(%{{.*}}, %[[K]] : tensor<5x8xf32>, tensor<8x3xf32>) outs(%{{.*}} : tensor<5x3xf32>)
// CHECK-NOT: linalg.batch_matmul
// CHECK: return
func.func @prompt(%x: !torch.vtensor<[1,5,8],f32>) -> !torch.vtensor<[1,5,3],f32> {
  %codes = torch.vtensor.literal(dense<[[1, 0, 8, 4, 5, 2, 1, 15], [2, 1, 7, 4, 5, 3, 0, 6], [3, 1, 2, 4, 1, 3, 0, 7]]> : tensor<3x8xsi8>) {harden.name = "w.codes"} : !torch.vtensor<[3,8],si8>
  %scales = torch.vtensor.literal(dense<[[0.5, 0.25], [1.0, 0.125], [2.0, 0.5]]> : tensor<3x2xf16>) {harden.name = "w.scales"} : !torch.vtensor<[3,2],f16>
  %mins = torch.vtensor.literal(dense<[[-1.0, -0.5], [0.0, -2.0], [-4.0, 1.0]]> : tensor<3x2xf16>) {harden.name = "w.mins"} : !torch.vtensor<[3,2],f16>
  %y = "harden.int_linear"(%x, %codes, %scales, %mins) {in_features = 8 : i64, out_features = 3 : i64, bits = 4 : i64, group_size = 4 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5,8],f32>, !torch.vtensor<[3,8],si8>, !torch.vtensor<[3,2],f16>, !torch.vtensor<[3,2],f16>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}
