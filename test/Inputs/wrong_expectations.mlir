func.func @unexpected(%x: !torch.vtensor<[1,5,32],f32>, %w: !torch.vtensor<[60,32],f32>) {
  // This expectation names the wrong text; the real error is then unexpected.
  // expected-error@+2 {{no such message}}
  // The fused_qkv below is invalid (60 rows, 64 expected).
  %q, %k, %v = "harden.fused_qkv"(%x, %w) {q_size = 32 : i64, k_size = 16 : i64, v_size = 16 : i64, operandSegmentSizes = array<i32: 1, 1, 0>} : (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[60,32],f32>) -> (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[1,5,16],f32>, !torch.vtensor<[1,5,16],f32>)
  return
}

// -----

func.func @nothing_wrong() {
  // expected-remark@+1 {{never emitted}}
  return
}
