func.func @torch_left(%x: !torch.vtensor<[4],f32>) -> !torch.vtensor<[4],f32> {
  %0 = torch.aten.neg %x : !torch.vtensor<[4],f32> -> !torch.vtensor<[4],f32>
  return %0 : !torch.vtensor<[4],f32>
}

// -----

func.func private @plain(tensor<4xf32>) -> tensor<4xf32>
func.func @plain_call(%x: tensor<4xf32>) -> tensor<4xf32> {
  %y = func.call @plain(%x) : (tensor<4xf32>) -> tensor<4xf32>
  return %y : tensor<4xf32>
}
