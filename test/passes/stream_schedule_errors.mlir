// What harden-stream-schedule refuses, with an error at the op.
// RUN: harden-opt %s --split-input-file --verify-diagnostics --pass-pipeline='builtin.module(harden-stream-schedule{machine=%inputs/schedule/toy_small_sram.json tile=0})'

// The schedule is static: every shape must be known.
func.func @dynamic_shape(%x: !torch.vtensor<[?,64],f32>) -> !torch.vtensor<[?,64],f32> {
  // expected-error @+1 {{has a dynamic shape; the static scheduler needs static shapes}}
  %a = torch.aten.neg %x : !torch.vtensor<[?,64],f32> -> !torch.vtensor<[?,64],f32>
  return %a : !torch.vtensor<[?,64],f32>
}

// -----

// 40000 bytes of SRAM: the weight and the input (16 KiB each) fit, but not with the
// neg's 16 KiB result; the error is at the op whose result reaches the peak.
func.func @sram_overflow(%x: !torch.vtensor<[1,64,64],f32>) -> !torch.vtensor<[1,64,64],f32> {
  %w = torch.vtensor.literal(dense<1.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %none = torch.constant.none
  // expected-error @+1 {{SRAM overflow: 49152 bytes live at cycle 0 (weights 16384, activations 32768; largest: %1 aten.neg, %arg0) exceed the capacity of 40000 bytes}}
  %a = torch.aten.neg %x : !torch.vtensor<[1,64,64],f32> -> !torch.vtensor<[1,64,64],f32>
  %b = torch.aten.linear %a, %w, %none : !torch.vtensor<[1,64,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,64,64],f32>
  return %b : !torch.vtensor<[1,64,64],f32>
}

// -----

// Bad machine files: one clear line naming the file and the field, nothing scheduled.
// RUN: not harden-opt %s --pass-pipeline='builtin.module(harden-stream-schedule{machine=%inputs/schedule/bad_count.json})' 2>&1 | filecheck %s --check-prefix=COUNT
// COUNT: harden-opt: error: option 'machine' of 'harden-stream-schedule': {{.*}}bad_count.json: field 'units.mm.count' must be a positive integer, got 0
// RUN: not harden-opt %s --pass-pipeline='builtin.module(harden-stream-schedule{machine=%inputs/schedule/bad_class.json})' 2>&1 | filecheck %s --check-prefix=CLASS
// CLASS: harden-opt: error: option 'machine' of 'harden-stream-schedule': {{.*}}bad_class.json: field 'units' names no unit that executes operator class 'attention'
// RUN: not harden-opt %s --pass-pipeline='builtin.module(harden-stream-schedule{machine=%inputs/schedule/bad_json.json})' 2>&1 | filecheck %s --check-prefix=JSON
// JSON: harden-opt: error: option 'machine' of 'harden-stream-schedule': {{.*}}bad_json.json: not valid JSON: Expecting property name enclosed in double quotes at line 3 column 1
// RUN: not harden-opt %s --pass-pipeline='builtin.module(harden-stream-schedule{machine=groq})' 2>&1 | filecheck %s --check-prefix=PRESET
// PRESET: harden-opt: error: option 'machine' of 'harden-stream-schedule': unknown machine 'groq' (presets: hardwired, tsp; or a path to a JSON file)
// RUN: not harden-opt %s --pass-pipeline='builtin.module(harden-stream-schedule{tile=-1})' 2>&1 | filecheck %s --check-prefix=TILE
// TILE: harden-opt: error: option 'tile' of 'harden-stream-schedule' must be 0 or positive, got -1
// RUN: not harden-opt %s --pass-pipeline='builtin.module(harden-stream-schedule{functions=present,missing})' 2>&1 | filecheck %s --check-prefix=MISSING
// RUN: not harden-opt %s --pass-pipeline='builtin.module(harden-stream-schedule{solver=exact functions=sram_overflow})' 2>&1 | filecheck %s --check-prefix=EXACT
// EXACT: error: solver=exact handles up to 16 tiles; @sram_overflow has {{[0-9]+}}
// MISSING: error: no function named missing to schedule
func.func @present() {
  return
}
