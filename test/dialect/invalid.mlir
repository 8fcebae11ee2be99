// RUN: harden-opt %s --split-input-file --verify-diagnostics

func.func @qkv_weight_rows(%x: !torch.vtensor<[1,5,32],f32>, %w: !torch.vtensor<[60,32],f32>) -> !torch.vtensor<[1,5,32],f32> {
  // expected-error@+1 {{'harden.fused_qkv' op weight has shape [60, 32], expected [64, 32]}}
  %q, %k, %v = "harden.fused_qkv"(%x, %w) {q_size = 32 : i64, k_size = 16 : i64, v_size = 16 : i64, operandSegmentSizes = array<i32: 1, 1, 0>}
      : (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[60,32],f32>) -> (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[1,5,16],f32>, !torch.vtensor<[1,5,16],f32>)
  return %q : !torch.vtensor<[1,5,32],f32>
}

// -----

func.func @qkv_result_size(%x: !torch.vtensor<[1,5,32],f32>, %w: !torch.vtensor<[64,32],f32>) -> !torch.vtensor<[1,5,32],f32> {
  // expected-error@+1 {{result k has last dimension 8, expected 16}}
  %q, %k, %v = "harden.fused_qkv"(%x, %w) {q_size = 32 : i64, k_size = 16 : i64, v_size = 16 : i64, operandSegmentSizes = array<i32: 1, 1, 0>}
      : (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[64,32],f32>) -> (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[1,5,8],f32>, !torch.vtensor<[1,5,16],f32>)
  return %q : !torch.vtensor<[1,5,32],f32>
}

// -----

func.func @qkv_bias(%x: !torch.vtensor<[1,5,32],f32>, %w: !torch.vtensor<[64,32],f32>, %b: !torch.vtensor<[32],f32>) -> !torch.vtensor<[1,5,32],f32> {
  // expected-error@+1 {{bias has shape [32], expected [64]}}
  %q, %k, %v = "harden.fused_qkv"(%x, %w, %b) {q_size = 32 : i64, k_size = 16 : i64, v_size = 16 : i64, operandSegmentSizes = array<i32: 1, 1, 1>}
      : (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[64,32],f32>, !torch.vtensor<[32],f32>) -> (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[1,5,16],f32>, !torch.vtensor<[1,5,16],f32>)
  return %q : !torch.vtensor<[1,5,32],f32>
}

// -----

func.func @qkv_rows(%x: !torch.vtensor<[1,5,32],f32>, %w: !torch.vtensor<[64,32],f32>) -> !torch.vtensor<[1,4,32],f32> {
  // expected-error@+1 {{result q has leading dimensions [1, 4], expected [1, 5] like the input}}
  %q, %k, %v = "harden.fused_qkv"(%x, %w) {q_size = 32 : i64, k_size = 16 : i64, v_size = 16 : i64, operandSegmentSizes = array<i32: 1, 1, 0>}
      : (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[64,32],f32>) -> (!torch.vtensor<[1,4,32],f32>, !torch.vtensor<[1,5,16],f32>, !torch.vtensor<[1,5,16],f32>)
  return %q : !torch.vtensor<[1,4,32],f32>
}

// -----

func.func @qkv_missing_attr(%x: !torch.vtensor<[1,5,32],f32>, %w: !torch.vtensor<[64,32],f32>) -> !torch.vtensor<[1,5,32],f32> {
  // IRDL itself checks that the attributes are there.
  // expected-error@+1 {{attribute 'v_size' is required}}
  %q, %k, %v = "harden.fused_qkv"(%x, %w) {q_size = 32 : i64, k_size = 16 : i64, operandSegmentSizes = array<i32: 1, 1, 0>}
      : (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[64,32],f32>) -> (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[1,5,16],f32>, !torch.vtensor<[1,5,16],f32>)
  return %q : !torch.vtensor<[1,5,32],f32>
}

// -----

func.func @ternary_packed_size(%x: !torch.vtensor<[1,5,10],f32>, %w: !torch.vtensor<[1,3,2],si8>, %s: !torch.vtensor<[1,3,1],f32>) -> !torch.vtensor<[1,5,3],f32> {
  // 10 input features need ceil(10 / 4) = 3 bytes per row.
  // expected-error@+1 {{packed weight has shape [1, 3, 2], expected [1, 3, 3]}}
  %y = "harden.ternary_linear"(%x, %w, %s) {in_features = 10 : i64, out_features = 3 : i64, group_size = 10 : i64, planes = 1 : i64, scale_kind = "channel", operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5,10],f32>, !torch.vtensor<[1,3,2],si8>, !torch.vtensor<[1,3,1],f32>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}

// -----

func.func @ternary_out_features(%x: !torch.vtensor<[1,5,10],f32>, %w: !torch.vtensor<[1,4,3],si8>, %s: !torch.vtensor<[1,4,1],f32>) -> !torch.vtensor<[1,5,3],f32> {
  // expected-error@+1 {{packed weight has shape [1, 4, 3], expected [1, 3, 3]}}
  %y = "harden.ternary_linear"(%x, %w, %s) {in_features = 10 : i64, out_features = 3 : i64, group_size = 10 : i64, planes = 1 : i64, scale_kind = "channel", operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5,10],f32>, !torch.vtensor<[1,4,3],si8>, !torch.vtensor<[1,4,1],f32>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}

// -----

func.func @ternary_group_scales(%x: !torch.vtensor<[1,5,10],f32>, %w: !torch.vtensor<[1,3,3],si8>, %s: !torch.vtensor<[1,3,2],f32>) -> !torch.vtensor<[1,5,3],f32> {
  // 10 columns in groups of 4 make 3 groups (the last one of 2 columns).
  // expected-error@+1 {{scales (group) has shape [1, 3, 2], expected [1, 3, 3]}}
  %y = "harden.ternary_linear"(%x, %w, %s) {in_features = 10 : i64, out_features = 3 : i64, group_size = 4 : i64, planes = 1 : i64, scale_kind = "group", operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5,10],f32>, !torch.vtensor<[1,3,3],si8>, !torch.vtensor<[1,3,2],f32>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}

// -----

func.func @ternary_tensor_scales(%x: !torch.vtensor<[1,5,10],f32>, %w: !torch.vtensor<[1,3,3],si8>, %s: !torch.vtensor<[1,3,1],f32>) -> !torch.vtensor<[1,5,3],f32> {
  // expected-error@+1 {{scales (tensor) has shape [1, 3, 1], expected [1, 1, 1]}}
  %y = "harden.ternary_linear"(%x, %w, %s) {in_features = 10 : i64, out_features = 3 : i64, group_size = 10 : i64, planes = 1 : i64, scale_kind = "tensor", operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5,10],f32>, !torch.vtensor<[1,3,3],si8>, !torch.vtensor<[1,3,1],f32>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}

// -----

func.func @ternary_channel_group_size(%x: !torch.vtensor<[1,5,10],f32>, %w: !torch.vtensor<[1,3,3],si8>, %s: !torch.vtensor<[1,3,1],f32>) -> !torch.vtensor<[1,5,3],f32> {
  // expected-error@+1 {{group_size must equal in_features (10) for scale_kind 'channel', got 4}}
  %y = "harden.ternary_linear"(%x, %w, %s) {in_features = 10 : i64, out_features = 3 : i64, group_size = 4 : i64, planes = 1 : i64, scale_kind = "channel", operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5,10],f32>, !torch.vtensor<[1,3,3],si8>, !torch.vtensor<[1,3,1],f32>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}

// -----

func.func @ternary_planes(%x: !torch.vtensor<[1,5,10],f32>, %w: !torch.vtensor<[3,3,3],si8>, %s: !torch.vtensor<[3,3,1],f32>) -> !torch.vtensor<[1,5,3],f32> {
  // expected-error@+1 {{planes must be 1 or 2, got 3}}
  %y = "harden.ternary_linear"(%x, %w, %s) {in_features = 10 : i64, out_features = 3 : i64, group_size = 10 : i64, planes = 3 : i64, scale_kind = "channel", operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5,10],f32>, !torch.vtensor<[3,3,3],si8>, !torch.vtensor<[3,3,1],f32>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}

// -----

func.func @ternary_scale_kind(%x: !torch.vtensor<[1,5,10],f32>, %w: !torch.vtensor<[1,3,3],si8>, %s: !torch.vtensor<[1,3,1],f32>) -> !torch.vtensor<[1,5,3],f32> {
  // expected-error@+1 {{scale_kind must be one of tensor, channel, group, got 'row'}}
  %y = "harden.ternary_linear"(%x, %w, %s) {in_features = 10 : i64, out_features = 3 : i64, group_size = 10 : i64, planes = 1 : i64, scale_kind = "row", operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5,10],f32>, !torch.vtensor<[1,3,3],si8>, !torch.vtensor<[1,3,1],f32>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}

// -----

func.func @ternary_weight_dtype(%x: !torch.vtensor<[1,5,10],f32>, %w: !torch.vtensor<[1,3,3],f32>, %s: !torch.vtensor<[1,3,1],f32>) -> !torch.vtensor<[1,5,3],f32> {
  // expected-error@+1 {{weight must hold i8 packed codes, got element type f32}}
  %y = "harden.ternary_linear"(%x, %w, %s) {in_features = 10 : i64, out_features = 3 : i64, group_size = 10 : i64, planes = 1 : i64, scale_kind = "channel", operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5,10],f32>, !torch.vtensor<[1,3,3],f32>, !torch.vtensor<[1,3,1],f32>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}

// -----

func.func @ternary_input_features(%x: !torch.vtensor<[1,5,12],f32>, %w: !torch.vtensor<[1,3,3],si8>, %s: !torch.vtensor<[1,3,1],f32>) -> !torch.vtensor<[1,5,3],f32> {
  // expected-error@+1 {{input has last dimension 12, expected 10}}
  %y = "harden.ternary_linear"(%x, %w, %s) {in_features = 10 : i64, out_features = 3 : i64, group_size = 10 : i64, planes = 1 : i64, scale_kind = "channel", operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5,12],f32>, !torch.vtensor<[1,3,3],si8>, !torch.vtensor<[1,3,1],f32>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}

// -----

func.func @ternary_bias(%x: !torch.vtensor<[1,5,10],f32>, %w: !torch.vtensor<[1,3,3],si8>, %s: !torch.vtensor<[1,3,1],f32>, %b: !torch.vtensor<[4],f32>) -> !torch.vtensor<[1,5,3],f32> {
  // expected-error@+1 {{bias has shape [4], expected [3]}}
  %y = "harden.ternary_linear"(%x, %w, %s, %b) {in_features = 10 : i64, out_features = 3 : i64, group_size = 10 : i64, planes = 1 : i64, scale_kind = "channel", operandSegmentSizes = array<i32: 1, 1, 1, 1>}
      : (!torch.vtensor<[1,5,10],f32>, !torch.vtensor<[1,3,3],si8>, !torch.vtensor<[1,3,1],f32>, !torch.vtensor<[4],f32>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}

// -----

func.func @int8_weight_shape(%x: !torch.vtensor<[1,5,10],f32>, %w: !torch.vtensor<[3,8],si8>, %s: !torch.vtensor<[3,1],f32>) -> !torch.vtensor<[1,5,3],f32> {
  // expected-error@+1 {{weight has shape [3, 8], expected [3, 10]}}
  %y = "harden.int8_linear"(%x, %w, %s) {in_features = 10 : i64, out_features = 3 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5,10],f32>, !torch.vtensor<[3,8],si8>, !torch.vtensor<[3,1],f32>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}

// -----

func.func @int8_weight_dtype(%x: !torch.vtensor<[1,5,10],f32>, %w: !torch.vtensor<[3,10],f32>, %s: !torch.vtensor<[3,1],f32>) -> !torch.vtensor<[1,5,3],f32> {
  // expected-error@+1 {{weight must hold i8 codes, got element type f32}}
  %y = "harden.int8_linear"(%x, %w, %s) {in_features = 10 : i64, out_features = 3 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5,10],f32>, !torch.vtensor<[3,10],f32>, !torch.vtensor<[3,1],f32>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}

// -----

func.func @int8_scales(%x: !torch.vtensor<[1,5,10],f32>, %w: !torch.vtensor<[3,10],si8>, %s: !torch.vtensor<[1,3,1],f32>) -> !torch.vtensor<[1,5,3],f32> {
  // expected-error@+1 {{scales has shape [1, 3, 1], expected [3, 1]}}
  %y = "harden.int8_linear"(%x, %w, %s) {in_features = 10 : i64, out_features = 3 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5,10],f32>, !torch.vtensor<[3,10],si8>, !torch.vtensor<[1,3,1],f32>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}

// -----

func.func @int8_result(%x: !torch.vtensor<[1,5,10],f32>, %w: !torch.vtensor<[3,10],si8>, %s: !torch.vtensor<[3,1],f32>) -> !torch.vtensor<[1,5,4],f32> {
  // expected-error@+1 {{result has last dimension 4, expected 3}}
  %y = "harden.int8_linear"(%x, %w, %s) {in_features = 10 : i64, out_features = 3 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5,10],f32>, !torch.vtensor<[3,10],si8>, !torch.vtensor<[3,1],f32>) -> !torch.vtensor<[1,5,4],f32>
  return %y : !torch.vtensor<[1,5,4],f32>
}

// -----

func.func @int_bits(%x: !torch.vtensor<[1,64],f32>, %w: !torch.vtensor<[3,64],si8>, %s: !torch.vtensor<[3,2],f16>) -> !torch.vtensor<[1,3],f32> {
  // expected-error@+1 {{bits must be in [2, 8], got 9}}
  %y = "harden.int_linear"(%x, %w, %s) {in_features = 64 : i64, out_features = 3 : i64, bits = 9 : i64, group_size = 32 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0, 0>}
      : (!torch.vtensor<[1,64],f32>, !torch.vtensor<[3,64],si8>, !torch.vtensor<[3,2],f16>) -> !torch.vtensor<[1,3],f32>
  return %y : !torch.vtensor<[1,3],f32>
}

// -----

func.func @int_group(%x: !torch.vtensor<[1,64],f32>, %w: !torch.vtensor<[3,64],si8>, %s: !torch.vtensor<[3,2],f16>) -> !torch.vtensor<[1,3],f32> {
  // expected-error@+1 {{group_size must divide 64, got 48}}
  %y = "harden.int_linear"(%x, %w, %s) {in_features = 64 : i64, out_features = 3 : i64, bits = 4 : i64, group_size = 48 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0, 0>}
      : (!torch.vtensor<[1,64],f32>, !torch.vtensor<[3,64],si8>, !torch.vtensor<[3,2],f16>) -> !torch.vtensor<[1,3],f32>
  return %y : !torch.vtensor<[1,3],f32>
}

// -----

func.func @int_scales_dtype(%x: !torch.vtensor<[1,64],f32>, %w: !torch.vtensor<[3,64],si8>, %s: !torch.vtensor<[3,2],f32>) -> !torch.vtensor<[1,3],f32> {
  // expected-error@+1 {{scales must hold f16}}
  %y = "harden.int_linear"(%x, %w, %s) {in_features = 64 : i64, out_features = 3 : i64, bits = 4 : i64, group_size = 32 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0, 0>}
      : (!torch.vtensor<[1,64],f32>, !torch.vtensor<[3,64],si8>, !torch.vtensor<[3,2],f32>) -> !torch.vtensor<[1,3],f32>
  return %y : !torch.vtensor<[1,3],f32>
}

// -----

func.func @int_mins_shape(%x: !torch.vtensor<[1,64],f32>, %w: !torch.vtensor<[3,64],si8>, %s: !torch.vtensor<[3,2],f16>, %m: !torch.vtensor<[3,1],f16>) -> !torch.vtensor<[1,3],f32> {
  // expected-error@+1 {{mins has shape [3, 1], expected [3, 2]}}
  %y = "harden.int_linear"(%x, %w, %s, %m) {in_features = 64 : i64, out_features = 3 : i64, bits = 4 : i64, group_size = 32 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 1, 0>}
      : (!torch.vtensor<[1,64],f32>, !torch.vtensor<[3,64],si8>, !torch.vtensor<[3,2],f16>, !torch.vtensor<[3,1],f16>) -> !torch.vtensor<[1,3],f32>
  return %y : !torch.vtensor<[1,3],f32>
}

// -----

func.func @int_table_dim(%i: !torch.vtensor<[1,5],si64>, %w: !torch.vtensor<[10,64],si8>, %s: !torch.vtensor<[10,1],f16>) -> !torch.vtensor<[1,5,32],f32> {
  // expected-error@+1 {{result has shape [1, 5, 32], expected [1, 5, 64]}}
  %y = "harden.int_embedding"(%i, %w, %s) {bits = 8 : i64, group_size = 64 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5],si64>, !torch.vtensor<[10,64],si8>, !torch.vtensor<[10,1],f16>) -> !torch.vtensor<[1,5,32],f32>
  return %y : !torch.vtensor<[1,5,32],f32>
}

// -----

func.func @ternary_missing_scales(%x: !torch.vtensor<[1,5,10],f32>, %w: !torch.vtensor<[1,3,3],si8>) -> !torch.vtensor<[1,5,3],f32> {
  // An operand deleted by hand: one clear error, not a crash in the verifier's accessors.
  // expected-error@+1 {{'harden.ternary_linear' op expects 3 to 4 operands, got 2}}
  %y = "harden.ternary_linear"(%x, %w) {in_features = 10 : i64, out_features = 3 : i64, group_size = 10 : i64, planes = 1 : i64, scale_kind = "channel", operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,5,10],f32>, !torch.vtensor<[1,3,3],si8>) -> !torch.vtensor<[1,5,3],f32>
  return %y : !torch.vtensor<[1,5,3],f32>
}

// -----

func.func @qkv_one_result(%x: !torch.vtensor<[1,5,32],f32>, %w: !torch.vtensor<[64,32],f32>) -> !torch.vtensor<[1,5,32],f32> {
  // expected-error@+1 {{'harden.fused_qkv' op expects 3 results, got 1}}
  %q = "harden.fused_qkv"(%x, %w) {q_size = 32 : i64, k_size = 16 : i64, v_size = 16 : i64, operandSegmentSizes = array<i32: 1, 1, 0>}
      : (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[64,32],f32>) -> !torch.vtensor<[1,5,32],f32>
  return %q : !torch.vtensor<[1,5,32],f32>
}
