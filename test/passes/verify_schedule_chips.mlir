// A hand-written two-chip schedule (Inputs/schedule/toy_two_chips.json): the second linear
// may start only when the first one's result has crossed the link (ends at cycle 32) and
// its 10 cycles of latency have passed.
// RUN: harden-opt %s --split-input-file --verify-diagnostics --pass-pipeline='builtin.module(harden-verify-schedule{machine=%inputs/schedule/toy_two_chips.json tile=0})'

func.func @valid(%x: !torch.vtensor<[1,4,64],f32>) -> !torch.vtensor<[1,4,64],f32> {
  %w1 = torch.vtensor.literal(dense<1.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %w2 = torch.vtensor.literal(dense<2.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %none = torch.constant.none
  %a = torch.aten.linear %x, %w1, %none {harden.chip = 0, harden.layer = 0, harden.start = 0, harden.unit = "c0.mm0", harden.transfers = [{chip = 1, result = 0, start = 16, unit = "c0.link0"}]} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,4,64],f32>
  %b = torch.aten.linear %a, %w2, %none {harden.chip = 1, harden.layer = 1, harden.start = 42, harden.unit = "c1.mm0"} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,4,64],f32>
  return %b : !torch.vtensor<[1,4,64],f32>
}

// -----

func.func @too_early(%x: !torch.vtensor<[1,4,64],f32>) -> !torch.vtensor<[1,4,64],f32> {
  %w1 = torch.vtensor.literal(dense<1.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %w2 = torch.vtensor.literal(dense<2.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %none = torch.constant.none
  %a = torch.aten.linear %x, %w1, %none {harden.chip = 0, harden.layer = 0, harden.start = 0, harden.unit = "c0.mm0", harden.transfers = [{chip = 1, result = 0, start = 16, unit = "c0.link0"}]} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,4,64],f32>
  // expected-error @+1 {{starts at cycle 32 before its operand from '%2 aten.linear -> chip 1' is ready at cycle 42}}
  %b = torch.aten.linear %a, %w2, %none {harden.chip = 1, harden.layer = 1, harden.start = 32, harden.unit = "c1.mm0"} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,4,64],f32>
  return %b : !torch.vtensor<[1,4,64],f32>
}

// -----

func.func @transfer_missing(%x: !torch.vtensor<[1,4,64],f32>) -> !torch.vtensor<[1,4,64],f32> {
  %w1 = torch.vtensor.literal(dense<1.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %w2 = torch.vtensor.literal(dense<2.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %none = torch.constant.none
  // expected-error @+1 {{transfer to chip 1: has no schedule: its transfer of result 0 to chip 1 in 'harden.transfers' is missing}}
  %a = torch.aten.linear %x, %w1, %none {harden.chip = 0, harden.layer = 0, harden.start = 0, harden.unit = "c0.mm0"} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,4,64],f32>
  %b = torch.aten.linear %a, %w2, %none {harden.chip = 1, harden.layer = 1, harden.start = 42, harden.unit = "c1.mm0"} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,4,64],f32>
  return %b : !torch.vtensor<[1,4,64],f32>
}
