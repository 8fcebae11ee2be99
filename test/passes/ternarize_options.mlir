// Options that make no sense together are errors, before any input is read.
// RUN: not harden-opt %s --harden-ternarize="scale=channel group-size=32" 2>&1 | filecheck %s --check-prefix=CHANNEL
// CHANNEL: harden-opt: error: option 'group-size' of 'harden-ternarize' needs scale=group (got scale=channel)
// RUN: not harden-opt %s --harden-ternarize="scale=group group-size=0" 2>&1 | filecheck %s --check-prefix=ZERO
// ZERO: harden-opt: error: option 'group-size' of 'harden-ternarize' must be positive, got 0
// RUN: not harden-opt %s --harden-ternarize="planes=3" 2>&1 | filecheck %s --check-prefix=PLANES
// PLANES: harden-opt: error: option 'planes' of 'harden-ternarize' must be 1 or 2, got 3
// RUN: not harden-opt %s --harden-ternarize="method=int4" 2>&1 | filecheck %s --check-prefix=METHOD
// METHOD: harden-opt: error: invalid value 'int4' for option 'method' of 'harden-ternarize': expected one of absmean, twn
// The same checks hold through the named pipeline:
// RUN: not harden-opt %s --harden-pipeline="group-size=64" 2>&1 | filecheck %s --check-prefix=PIPELINE
// PIPELINE: harden-opt: error: option 'group-size' of 'harden-ternarize' needs scale=group (got scale=channel)

// The report lists each layer with its error, zeros and bytes.
// RUN: harden-opt %s --harden-ternarize="scale=group group-size=2 report=%t.json" -o %t.mlir
// RUN: filecheck %s --check-prefix=REPORT < %t.json
// REPORT: "method": "absmean"
// REPORT: "layer": "l0.mlp.w1.weight"
// REPORT: "shape": [
// REPORT: "scale_kind": "group"
// REPORT: "group_size": 2
// REPORT: "relative_error": 0.0
// REPORT: "zero_fraction": 0.25
// REPORT: "exact": true
// REPORT: "bytes_before": 32
// REPORT: "bytes_after": 18

func.func @linear(%x: !torch.vtensor<[1,3,4],f32>) -> !torch.vtensor<[1,3,2],f32> {
  %none = torch.constant.none
  %w = torch.vtensor.literal(dense<[[1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0]]> : tensor<2x4xf32>) {harden.name = "l0.mlp.w1.weight"} : !torch.vtensor<[2,4],f32>
  %y = torch.aten.linear %x, %w, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[2,4],f32>, !torch.none -> !torch.vtensor<[1,3,2],f32>
  return %y : !torch.vtensor<[1,3,2],f32>
}
