// RUN: harden-opt %s --split-input-file --harden-lower-linear | filecheck %s

// A 3-D linear becomes one matmul reading the weight as [out, in]: no transpose, no
// broadcast of the weight.
// CHECK-DAG: #[[W:.*]] = affine_map<(d0, d1, d2) -> (d1, d2)>
// CHECK-LABEL: func.func @linear_with_bias
// CHECK: %[[X:.*]] = tensor.collapse_shape %{{.*}} {{\[\[}}0, 1], [2]] : tensor<1x3x4xf32> into tensor<3x4xf32>
// CHECK: %[[Y:.*]] = linalg.generic {indexing_maps = [#{{.*}}, #[[W]], #{{.*}}], iterator_types = ["parallel", "parallel", "reduction"]} ins(%[[X]], %{{.*}} : tensor<3x4xf32>, tensor<2x4xf32>)
// CHECK: linalg.generic {{.*}} ins(%[[Y]], %{{.*}} : tensor<3x2xf32>, tensor<2xf32>)
// CHECK: tensor.expand_shape {{.*}} into tensor<1x3x2xf32>
// CHECK-NOT: torch.aten.linear
// CHECK-NOT: linalg.transpose
func.func @linear_with_bias(%x: !torch.vtensor<[1,3,4],f32>) -> !torch.vtensor<[1,3,2],f32> {
  %w = torch.vtensor.literal(dense<1.0> : tensor<2x4xf32>) : !torch.vtensor<[2,4],f32>
  %b = torch.vtensor.literal(dense<0.5> : tensor<2xf32>) : !torch.vtensor<[2],f32>
  %y = torch.aten.linear %x, %w, %b : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[2,4],f32>, !torch.vtensor<[2],f32> -> !torch.vtensor<[1,3,2],f32>
  return %y : !torch.vtensor<[1,3,2],f32>
}

// -----

// Dynamic shapes are left for torch-mlir.
// CHECK-LABEL: func.func @dynamic
// CHECK: torch.aten.linear
func.func @dynamic(%x: !torch.vtensor<[?,4],f32>) -> !torch.vtensor<[?,2],f32> {
  %none = torch.constant.none
  %w = torch.vtensor.literal(dense<1.0> : tensor<2x4xf32>) : !torch.vtensor<[2,4],f32>
  %y = torch.aten.linear %x, %w, %none : !torch.vtensor<[?,4],f32>, !torch.vtensor<[2,4],f32>, !torch.none -> !torch.vtensor<[?,2],f32>
  return %y : !torch.vtensor<[?,2],f32>
}
