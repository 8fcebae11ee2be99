// harden-verify-schedule checks schedules written by hand: no solver involved. On the toy
// machine (Inputs/schedule/toy.json) each linear takes 16 cycles on mm0 and each vector op
// 4 cycles on vec0 or vec1; the optimal schedule of this graph ends at cycle 40.
// RUN: harden-opt %s --split-input-file --verify-diagnostics --pass-pipeline='builtin.module(harden-verify-schedule{machine=%inputs/schedule/toy.json tile=0})'

// A valid schedule, with its summary: no diagnostics.
func.func @valid(%x: !torch.vtensor<[1,4,64],f32>) -> !torch.vtensor<[1,4,64],f32> attributes {harden.schedule = {makespan_cycles = 40 : i64, lower_bound_cycles = 40 : i64}} {
  %w1 = torch.vtensor.literal(dense<1.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %w2 = torch.vtensor.literal(dense<2.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %none = torch.constant.none
  %int1 = torch.constant.int 1
  %a = torch.aten.linear %x, %w1, %none {harden.start = 0, harden.end = 16, harden.unit = "mm0"} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,4,64],f32>
  %c = torch.aten.neg %x {harden.start = 0, harden.unit = "vec1"} : !torch.vtensor<[1,4,64],f32> -> !torch.vtensor<[1,4,64],f32>
  %b = torch.aten.linear %x, %w2, %none {harden.start = 16, harden.unit = "mm0"} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,4,64],f32>
  %d = torch.aten.add.Tensor %a, %b, %int1 {harden.start = 32, harden.unit = "vec0"} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[1,4,64],f32>, !torch.int -> !torch.vtensor<[1,4,64],f32>
  %e = torch.aten.mul.Tensor %d, %c {harden.start = 36, harden.end = 40, harden.unit = "vec1"} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[1,4,64],f32> -> !torch.vtensor<[1,4,64],f32>
  return %e : !torch.vtensor<[1,4,64],f32>
}

// -----

// The add starts before the second linear has produced its operand.
func.func @dependence_violated(%x: !torch.vtensor<[1,4,64],f32>) -> !torch.vtensor<[1,4,64],f32> {
  %w1 = torch.vtensor.literal(dense<1.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %w2 = torch.vtensor.literal(dense<2.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %none = torch.constant.none
  %int1 = torch.constant.int 1
  %a = torch.aten.linear %x, %w1, %none {harden.start = 0, harden.unit = "mm0"} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,4,64],f32>
  %b = torch.aten.linear %x, %w2, %none {harden.start = 16, harden.unit = "mm0"} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,4,64],f32>
  // expected-error @+1 {{starts at cycle 20 before its operand from '%3 aten.linear' is ready at cycle 32}}
  %d = torch.aten.add.Tensor %a, %b, %int1 {harden.start = 20, harden.unit = "vec0"} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[1,4,64],f32>, !torch.int -> !torch.vtensor<[1,4,64],f32>
  return %d : !torch.vtensor<[1,4,64],f32>
}

// -----

// Both linears on mm0 at once.
func.func @unit_overlap(%x: !torch.vtensor<[1,4,64],f32>) -> !torch.vtensor<[1,4,64],f32> {
  %w1 = torch.vtensor.literal(dense<1.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %w2 = torch.vtensor.literal(dense<2.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %none = torch.constant.none
  %int1 = torch.constant.int 1
  %a = torch.aten.linear %x, %w1, %none {harden.start = 0, harden.unit = "mm0"} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,4,64],f32>
  // expected-error @+1 {{overlaps '%2 aten.linear' on unit mm0 during cycles [8, 16)}}
  %b = torch.aten.linear %x, %w2, %none {harden.start = 8, harden.unit = "mm0"} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,4,64],f32>
  %d = torch.aten.add.Tensor %a, %b, %int1 {harden.start = 24, harden.unit = "vec0"} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[1,4,64],f32>, !torch.int -> !torch.vtensor<[1,4,64],f32>
  return %d : !torch.vtensor<[1,4,64],f32>
}

// -----

// Three 512 KiB tensors live at once (the input, the neg's and the add's results) exceed
// the toy machine's 1 MiB of SRAM.
func.func @sram_overflow(%x: !torch.vtensor<[1,256,512],f32>) -> !torch.vtensor<[1,256,512],f32> {
  %int1 = torch.constant.int 1
  %a = torch.aten.neg %x {harden.start = 0, harden.unit = "vec0"} : !torch.vtensor<[1,256,512],f32> -> !torch.vtensor<[1,256,512],f32>
  // expected-error @+1 {{SRAM overflow: 1572864 bytes live at cycle 2048 (weights 0, activations 1572864; largest: %0 aten.neg, %1 aten.add.Tensor, %arg0) exceed the capacity of 1048576 bytes}}
  %b = torch.aten.add.Tensor %x, %a, %int1 {harden.start = 2048, harden.unit = "vec0"} : !torch.vtensor<[1,256,512],f32>, !torch.vtensor<[1,256,512],f32>, !torch.int -> !torch.vtensor<[1,256,512],f32>
  return %b : !torch.vtensor<[1,256,512],f32>
}

// -----

// A linear on a vector unit; an op with no schedule; an end that disagrees with the tiles.
func.func @malformed(%x: !torch.vtensor<[1,4,64],f32>) -> !torch.vtensor<[1,4,64],f32> {
  %w1 = torch.vtensor.literal(dense<1.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %none = torch.constant.none
  // expected-error @+1 {{runs on unit 'vec0', which cannot run it (expected one of mm0)}}
  %a = torch.aten.linear %x, %w1, %none {harden.start = 0, harden.unit = "vec0"} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,4,64],f32>
  // expected-error @+1 {{has no schedule: 'harden.start' is missing}}
  %c = torch.aten.neg %a {harden.unit = "vec1"} : !torch.vtensor<[1,4,64],f32> -> !torch.vtensor<[1,4,64],f32>
  return %c : !torch.vtensor<[1,4,64],f32>
}

// -----

func.func @end_disagrees(%x: !torch.vtensor<[1,4,64],f32>) -> !torch.vtensor<[1,4,64],f32> {
  // expected-error @+1 {{'harden.end' is 5 but its tiles end at cycle 4}}
  %c = torch.aten.neg %x {harden.start = 0, harden.end = 5, harden.unit = "vec1"} : !torch.vtensor<[1,4,64],f32> -> !torch.vtensor<[1,4,64],f32>
  return %c : !torch.vtensor<[1,4,64],f32>
}

// -----

// expected-error @+1 {{harden.schedule makespan_cycles = 39 but the schedule gives 40}}
func.func @summary_disagrees(%x: !torch.vtensor<[1,4,64],f32>) -> !torch.vtensor<[1,4,64],f32> attributes {harden.schedule = {makespan_cycles = 39 : i64}} {
  %c = torch.aten.neg %x {harden.start = 36, harden.unit = "vec1"} : !torch.vtensor<[1,4,64],f32> -> !torch.vtensor<[1,4,64],f32>
  return %c : !torch.vtensor<[1,4,64],f32>
}

// -----

// expected-error @+1 {{no scheduled function to verify (run harden-stream-schedule first)}}
module {
  func.func @unscheduled(%x: !torch.vtensor<[1,4,64],f32>) -> !torch.vtensor<[1,4,64],f32> {
    %c = torch.aten.neg %x : !torch.vtensor<[1,4,64],f32> -> !torch.vtensor<[1,4,64],f32>
    return %c : !torch.vtensor<[1,4,64],f32>
  }
}

// -----

// The summary outlived the op attributes (a lowering drops them) and was never verified
// while they were there (verify_schedule_lowered.mlir has the verified cases).
// expected-error @+1 {{has a schedule summary but no op carries 'harden.start', and the schedule was not verified before the ops lost it}}
func.func @summary_only(%x: !torch.vtensor<[1,4,64],f32>) -> !torch.vtensor<[1,4,64],f32> attributes {harden.schedule = {makespan_cycles = 4 : i64}} {
  %c = torch.aten.neg %x : !torch.vtensor<[1,4,64],f32> -> !torch.vtensor<[1,4,64],f32>
  return %c : !torch.vtensor<[1,4,64],f32>
}
