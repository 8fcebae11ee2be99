// Attention projections of one layer: 4 q heads and 2 kv heads of size 2 (GQA), with biases.
func.func @attention_projections(%x: !torch.vtensor<[1,3,4],f32>) -> (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>) {
  %wq = torch.vtensor.literal(dense<[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]]> : tensor<8x4xf32>) : !torch.vtensor<[8,4],f32>
  %bq = torch.vtensor.literal(dense<0.5> : tensor<8xf32>) : !torch.vtensor<[8],f32>
  %wk = torch.vtensor.literal(dense<[[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 2.0]]> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  %bk = torch.vtensor.literal(dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>) : !torch.vtensor<[4],f32>
  %wv = torch.vtensor.literal(dense<[[3.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [0.0, 0.0, 0.0, 3.0]]> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  %bv = torch.vtensor.literal(dense<[-1.0, -2.0, -3.0, -4.0]> : tensor<4xf32>) : !torch.vtensor<[4],f32>
  %q = torch.aten.linear %x, %wq, %bq : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[8,4],f32>, !torch.vtensor<[8],f32> -> !torch.vtensor<[1,3,8],f32>
  %k = torch.aten.linear %x, %wk, %bk : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.vtensor<[4],f32> -> !torch.vtensor<[1,3,4],f32>
  %v = torch.aten.linear %x, %wv, %bv : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[4,4],f32>, !torch.vtensor<[4],f32> -> !torch.vtensor<[1,3,4],f32>
  return %q, %k, %v : !torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>
}
