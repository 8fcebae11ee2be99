// RUN: harden-opt %s --split-input-file --harden-lower-harden-ops=kernel=reference | filecheck %s
// RUN: harden-opt %s --split-input-file --harden-lower-harden-ops=kernel=exact | filecheck %s --check-prefix=EXACT
// RUN: harden-opt %s --split-input-file --harden-lower-to-linalg=kernel=exact | filecheck %s --check-prefix=FULL

// The exact kernel (the default kernel=auto uses it where the C kernels cannot run): the
// codes re-laid out as i32 words of 16 codes (still 2 bits per weight; 2 rows padded to
// 64, 10 columns in 4 groups of 3 padded to 12), passed to a
// private kernel function whose main generic carries its CPU tiling.
// EXACT-LABEL: func.func @ternary
// EXACT: %[[WORDS:.*]] = torch.vtensor.literal(dense<{{.*}}> : tensor<1x1x12x4xsi32>)
// EXACT: %[[Y:.*]] = call @harden_ternary_kernel_0(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}) : (tensor<3x10xf32>, tensor<1x1x12x4xi32>, tensor<64x1x4xf32>, tensor<64x1x4xf32>) -> tensor<3x2xf32>
// EXACT-NOT: harden.ternary_linear
// EXACT: func.func private @harden_ternary_kernel_0
// EXACT: linalg.generic {{.*}} attrs =  {harden.cpu_tiling = {distribution = [1, 0, 1, 4, 16, 0], vector_common_parallel = [1, 1, 1, 4, 16, 0], vector_reduction = [0, 0, 0, 0, 0, 4]}

// The reference kernel: one generic unpacks code k of byte k floordiv 4. Group scales are
// first repeated over their 3 columns (4 groups, 12 columns cut to 10): a `k floordiv 3`
// map in the main generic fails IREE's CPU tiling on AVX2 (vector tile 8 against step 3).
// CHECK-DAG: #[[X:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d3)>
// CHECK-DAG: #[[CODES:.*]] = affine_map<(d0, d1, d2, d3) -> (d2, d1, d3 floordiv 4)>
// CHECK-DAG: #[[SCALES:.*]] = affine_map<(d0, d1, d2, d3) -> (d2, d1, d3)>
// CHECK-LABEL: func.func @ternary
// CHECK: %[[XB:.*]] = torch_c.to_builtin_tensor %arg0 : !torch.vtensor<[1,3,10],f32> -> tensor<1x3x10xf32>
// CHECK: %[[X2:.*]] = tensor.collapse_shape %[[XB]] {{\[\[}}0, 1], [2]] : tensor<1x3x10xf32> into tensor<3x10xf32>
// CHECK: %[[REPEATED:.*]] = linalg.generic {{.*}} ins(%{{.*}} : tensor<1x2x4xf32>) outs(%{{.*}} : tensor<1x2x4x3xf32>)
// CHECK: %[[FLAT:.*]] = tensor.collapse_shape %[[REPEATED]] {{\[\[}}0], [1], [2, 3]] : tensor<1x2x4x3xf32> into tensor<1x2x12xf32>
// CHECK: %[[COLUMNS:.*]] = tensor.extract_slice %[[FLAT]][0, 0, 0] [1, 2, 10] [1, 1, 1]
// CHECK: %[[W:.*]] = torch_c.to_builtin_tensor %{{.*}} : !torch.vtensor<[1,2,3],si8> -> tensor<1x2x3xi8>
// CHECK: linalg.generic {indexing_maps = [#[[X]], #[[CODES]], #[[SCALES]], #{{.*}}], iterator_types = ["parallel", "parallel", "reduction", "reduction"]} ins(%[[X2]], %[[W]], %[[COLUMNS]] : tensor<3x10xf32>, tensor<1x2x3xi8>, tensor<1x2x10xf32>)
// CHECK: linalg.index 3
// CHECK: arith.shrui
// CHECK: arith.sitofp
// CHECK: tensor.expand_shape
// CHECK: torch_c.from_builtin_tensor {{.*}} -> !torch.vtensor<[1,3,2],f32>
// CHECK-NOT: harden.ternary_linear

// After the whole lowering (the kernel inlined) nothing of torch or harden is left but the
// tiling of the kernel's generic; the codes are 2-bit words.
// FULL-LABEL: func.func @ternary
// FULL-SAME: (%arg0: tensor<1x3x10xf32>) -> tensor<1x3x2xf32>
// FULL: arith.constant dense<{{.*}}> : tensor<1x4x3x4xi32>
// FULL: linalg.generic {{.*}} attrs =  {harden.cpu_tiling
// FULL-NOT: torch.
// FULL-NOT: torch_c.
// FULL-NOT: harden.
// FULL: return
func.func @ternary(%x: !torch.vtensor<[1,3,10],f32>) -> !torch.vtensor<[1,3,2],f32> {
  %w = torch.vtensor.literal(dense<[[[-110, 85, 5], [74, 85, 6]]]> : tensor<1x2x3xsi8>) : !torch.vtensor<[1,2,3],si8>
  %s = torch.vtensor.literal(dense<[[[1.0, 0.5, 0.25, 2.0], [1.0, 1.0, 1.0, 1.0]]]> : tensor<1x2x4xf32>) : !torch.vtensor<[1,2,4],f32>
  %y = "harden.ternary_linear"(%x, %w, %s) {in_features = 10 : i64, out_features = 2 : i64, group_size = 3 : i64, planes = 1 : i64, scale_kind = "group", operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,3,10],f32>, !torch.vtensor<[1,2,3],si8>, !torch.vtensor<[1,2,4],f32>) -> !torch.vtensor<[1,3,2],f32>
  return %y : !torch.vtensor<[1,3,2],f32>
}

// -----

// fused_qkv: one matmul in nn.Linear layout, a bias add, and three column slices.
// CHECK-LABEL: func.func @fused
// CHECK: %[[Y:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction"]
// CHECK: %[[YB:.*]] = linalg.generic {{.*}} ins(%[[Y]], %{{.*}} : tensor<3x16xf32>, tensor<16xf32>)
// CHECK: tensor.extract_slice %[[YB]][0, 0] [3, 8] [1, 1]
// CHECK: tensor.extract_slice %[[YB]][0, 8] [3, 4] [1, 1]
// CHECK: tensor.extract_slice %[[YB]][0, 12] [3, 4] [1, 1]
// CHECK-NOT: harden.fused_qkv
// FULL-LABEL: func.func @fused
// FULL-NOT: torch.
// FULL-NOT: harden.
// FULL: return
func.func @fused(%x: !torch.vtensor<[1,3,4],f32>) -> (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>) {
  %w = torch.vtensor.literal(dense<1.0> : tensor<16x4xf32>) : !torch.vtensor<[16,4],f32>
  %b = torch.vtensor.literal(dense<1.0> : tensor<16xf32>) : !torch.vtensor<[16],f32>
  %q, %k, %v = "harden.fused_qkv"(%x, %w, %b) {q_size = 8 : i64, k_size = 4 : i64, v_size = 4 : i64, operandSegmentSizes = array<i32: 1, 1, 1>} : (!torch.vtensor<[1,3,4],f32>, !torch.vtensor<[16,4],f32>, !torch.vtensor<[16],f32>) -> (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>)
  return %q, %k, %v : !torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>
}

// -----

// Dynamic shapes are refused with an error at the op.
// RUN: not harden-opt %inputs/dynamic_ternary.mlir --harden-lower-harden-ops 2>&1 | filecheck %s --check-prefix=DYNAMIC
// DYNAMIC: dynamic_ternary.mlir:2:8: error: 'harden.ternary_linear' op with a dynamic input shape cannot be lowered
