func.func @dynamic(%x: !torch.vtensor<[?,4],f32>, %w: !torch.vtensor<[1,2,1],si8>, %s: !torch.vtensor<[1,2,1],f32>) -> !torch.vtensor<[?,2],f32> {
  %y = "harden.ternary_linear"(%x, %w, %s) {in_features = 4 : i64, out_features = 2 : i64, group_size = 4 : i64, planes = 1 : i64, scale_kind = "channel", operandSegmentSizes = array<i32: 1, 1, 1, 0>}
       : (!torch.vtensor<[?,4],f32>, !torch.vtensor<[1,2,1],si8>, !torch.vtensor<[1,2,1],f32>) -> !torch.vtensor<[?,2],f32>
  return %y : !torch.vtensor<[?,2],f32>
}
