// Lowering to linalg drops the per-op schedule attributes with the ops that carried them;
// the function keeps its harden.schedule summary. On such a function
// harden-verify-schedule checks the summary alone: it must have been verified before
// lowering (verified = true, which harden-verify-schedule adds) and agree with itself and
// with the machine (toy: 1 GHz, 1 MiB of SRAM).
// RUN: harden-opt %s --split-input-file --verify-diagnostics --harden-remarks --pass-pipeline='builtin.module(harden-verify-schedule{machine=%inputs/schedule/toy.json})'

// expected-remark @+1 {{lowered after scheduling: checked the summary; the tile-level schedule was verified before lowering}}
func.func @verified(%x: tensor<4xf32>) -> tensor<4xf32> attributes {harden.schedule = {verified = true, chips = 1 : i64, makespan_cycles = 50 : i64, lower_bound_cycles = 40 : i64, critical_path_cycles = 40 : i64, resource_bound_cycles = 32 : i64, energetic_bound_cycles = 40 : i64, makespan_over_lower_bound = 1.25 : f64, sram_peak_bytes = 4096 : i64, utilization = {mm0 = 0.64 : f64}, tokens = 1 : i64, tokens_per_s = 2.0e+07 : f64}} {
  return %x : tensor<4xf32>
}

// -----

// expected-error @+1 {{has a schedule summary but no op carries 'harden.start', and the schedule was not verified before the ops lost it (run harden-verify-schedule before lowering)}}
func.func @never_verified(%x: tensor<4xf32>) -> tensor<4xf32> attributes {harden.schedule = {chips = 1 : i64, makespan_cycles = 50 : i64, lower_bound_cycles = 40 : i64, critical_path_cycles = 40 : i64, resource_bound_cycles = 32 : i64, energetic_bound_cycles = 40 : i64, makespan_over_lower_bound = 1.25 : f64, sram_peak_bytes = 4096 : i64}} {
  return %x : tensor<4xf32>
}

// -----

// expected-error @+4 {{harden.schedule: lower_bound_cycles = 30 but the largest of its bounds is 40}}
// expected-error @+3 {{harden.schedule: makespan_over_lower_bound = 1.25 but 50 / 30 = 1.6667}}
// expected-error @+2 {{harden.schedule: sram_peak_bytes = 2000000 exceeds the 1048576 bytes of SRAM of a chip}}
// expected-error @+1 {{harden.schedule: tokens_per_s = 10000000.0 but 1 token(s) in 50 cycles at 1 GHz give 20000000.0}}
func.func @inconsistent(%x: tensor<4xf32>) -> tensor<4xf32> attributes {harden.schedule = {verified = true, chips = 1 : i64, makespan_cycles = 50 : i64, lower_bound_cycles = 30 : i64, critical_path_cycles = 40 : i64, resource_bound_cycles = 32 : i64, energetic_bound_cycles = 40 : i64, makespan_over_lower_bound = 1.25 : f64, sram_peak_bytes = 2000000 : i64, tokens = 1 : i64, tokens_per_s = 1.0e+07 : f64}} {
  return %x : tensor<4xf32>
}
