// Expectations that are met pass:
// RUN: harden-opt %s --split-input-file --verify-diagnostics
// Mismatches are reported, with a failing exit code:
// RUN: not harden-opt %inputs/wrong_expectations.mlir --split-input-file --verify-diagnostics 2>&1 | filecheck %s
// CHECK-DAG: wrong_expectations.mlir:5:16: error: unexpected error: 'harden.fused_qkv' op weight has shape [60, 32], expected [64, 32]
// CHECK-DAG: wrong_expectations.mlir:3:3: error: expected error "no such message" was not produced
// CHECK-DAG: wrong_expectations.mlir:12:3: error: expected remark "never emitted" was not produced

func.func @same_line(%x: !torch.vtensor<[1,5,32],f32>, %w: !torch.vtensor<[60,32],f32>) {
  %q, %k, %v = "harden.fused_qkv"(%x, %w) {q_size = 32 : i64, k_size = 16 : i64, v_size = 16 : i64, operandSegmentSizes = array<i32: 1, 1, 0>} : (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[60,32],f32>) -> (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[1,5,16],f32>, !torch.vtensor<[1,5,16],f32>) // expected-error {{weight has shape [60, 32]}}
  return
}

// -----

func.func @above(%x: !torch.vtensor<[1,5,32],f32>, %w: !torch.vtensor<[60,32],f32>) {
  %q, %k, %v = "harden.fused_qkv"(%x, %w) {q_size = 32 : i64, k_size = 16 : i64, v_size = 16 : i64, operandSegmentSizes = array<i32: 1, 1, 0>} : (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[60,32],f32>) -> (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[1,5,16],f32>, !torch.vtensor<[1,5,16],f32>)
  // expected-error@above {{weight has shape [60, 32]}}
  return
}

// -----

func.func @below(%x: !torch.vtensor<[1,5,32],f32>, %w: !torch.vtensor<[60,32],f32>) {
  // expected-error@below {{weight has shape [60, 32]}}
  %q, %k, %v = "harden.fused_qkv"(%x, %w) {q_size = 32 : i64, k_size = 16 : i64, v_size = 16 : i64, operandSegmentSizes = array<i32: 1, 1, 0>} : (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[60,32],f32>) -> (!torch.vtensor<[1,5,32],f32>, !torch.vtensor<[1,5,16],f32>, !torch.vtensor<[1,5,16],f32>)
  return
}

// -----

// Parse errors are diagnostics too.
func.func @parse_error() {
  // expected-error@+1 {{custom op 'retur' is unknown}}
  retur
}
