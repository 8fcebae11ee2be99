func.func @f(%x: !torch.vtensor<[1,3,4],f32>, %w: !torch.vtensor<[2,4],si8>) -> !torch.vtensor<[1,3,2],f32> {
  %s = torch.vtensor.literal(dense<1.0> : tensor<2x1xf32>) : !torch.vtensor<[2,1],f32>
  %y = "harden.int8_linear"(%x, %w, %s) {in_features = 4 : i64, out_features = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (!torch.vtensor<[1,3,4],f32>, !torch.vtensor<[2,4],si8>, !torch.vtensor<[2,1],f32>) -> !torch.vtensor<[1,3,2],f32>
  return %y : !torch.vtensor<[1,3,2],f32>
}
