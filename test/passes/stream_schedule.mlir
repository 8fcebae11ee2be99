// The toy machine (Inputs/schedule/toy.json) has one matrix unit of 1024 MACs per cycle,
// two vector units of 64 elements per cycle and no per-tile overhead, so durations are
// easy to check by hand.
// RUN: harden-opt %s --split-input-file --pass-pipeline='builtin.module(harden-stream-schedule{machine=%inputs/schedule/toy.json tile=0})' | filecheck %s
// With stream tiles of 128 elements (two rows of 64):
// RUN: harden-opt %s --split-input-file --pass-pipeline='builtin.module(harden-stream-schedule{machine=%inputs/schedule/toy.json tile=128})' | filecheck %s --check-prefix=TILED
// The exact solver (branch and bound) finds the same optima here.
// RUN: harden-opt %s --split-input-file --pass-pipeline='builtin.module(harden-stream-schedule{machine=%inputs/schedule/toy.json tile=128 solver=exact})' | filecheck %s --check-prefix=TILED
// The result verifies (which adds only `verified = true` to each summary), and scheduling
// is deterministic and idempotent: twice gives the same as once.
// RUN: harden-opt %s --split-input-file --pass-pipeline='builtin.module(harden-stream-schedule{machine=%inputs/schedule/toy.json tile=128})' -o %t.once.mlir
// RUN: harden-opt %t.once.mlir --split-input-file --harden-verify-schedule -o %t.verified.mlir
// RUN: sed -e 's/, verified = true}/}/' %t.verified.mlir | diff %t.once.mlir -
// RUN: grep -c 'verified = true' %t.verified.mlir | grep -x 4
// RUN: harden-opt %s --split-input-file --pass-pipeline='builtin.module(harden-stream-schedule{machine=%inputs/schedule/toy.json tile=128})' -o %t.again.mlir
// RUN: harden-opt %s --split-input-file --pass-pipeline='builtin.module(harden-stream-schedule{machine=%inputs/schedule/toy.json tile=128},harden-stream-schedule{machine=%inputs/schedule/toy.json tile=128})' -o %t.twice.mlir
// RUN: diff %t.once.mlir %t.again.mlir
// RUN: diff %t.once.mlir %t.twice.mlir
// Split over two chips (a layer each, by their `harden.layer` marks): the first linear's
// result crosses the link (1 KiB at 64 bytes per cycle, then 10 cycles of latency).
// RUN: harden-opt %s --split-input-file --pass-pipeline='builtin.module(harden-stream-schedule{machine=%inputs/schedule/toy_two_chips.json tile=0},harden-verify-schedule)' | filecheck %s --check-prefix=CHIPS
// The report (JSON: summary and one row per op) and the Gantt chart (PNG); with
// --split-input-file the last case's files remain.
// RUN: harden-opt %s --split-input-file --pass-pipeline='builtin.module(harden-stream-schedule{machine=%inputs/schedule/toy.json tile=128 report=%t.report.json gantt=%t.gantt.png})' -o %t.report.mlir
// RUN: filecheck %s --check-prefix=REPORT < %t.report.json
// RUN: test -s %t.gantt.png
// REPORT: "pipelined": {
// REPORT: "makespan_cycles": 44,
// REPORT: "lower_bound_cycles": 44,
// REPORT: "op": "%1 aten.neg",
// REPORT: "unit": "vec0",
// REPORT: "tile_starts": [

// Two 16-cycle linears share the one matrix unit; add and mul (4 cycles each) follow.
// Optimal: 16 + 16 + 4 + 4 = 40 cycles, and the lower bound proves it (ratio 1).
// The neg runs on a vector unit while the matrix unit works, and the ops are reordered by
// start cycle (neg before the second linear).
// CHECK-LABEL: func.func @known_optimum
// CHECK-SAME: lower_bound_cycles = 40
// CHECK-SAME: makespan_cycles = 40
// CHECK-SAME: makespan_over_lower_bound = 1.0
// CHECK: torch.aten.linear {{.*}}{harden.end = 16 : i64, harden.layer = 0 : i64, harden.start = 0 : i64, harden.unit = "mm0"}
// CHECK-NEXT: torch.aten.neg {{.*}}{harden.end = 4 : i64, harden.layer = 0 : i64, harden.start = 0 : i64, harden.unit = "vec0"}
// CHECK: torch.aten.linear {{.*}}{harden.end = 32 : i64, harden.layer = 0 : i64, harden.start = 16 : i64, harden.unit = "mm0"}
// CHECK: torch.aten.add.Tensor {{.*}}{harden.end = 36 : i64, harden.layer = 0 : i64, harden.start = 32 : i64, harden.unit = "vec0"}
// CHECK-NEXT: torch.aten.mul.Tensor {{.*}}{harden.end = 40 : i64, harden.layer = 0 : i64, harden.start = 36 : i64, harden.unit = "vec0"}
func.func @known_optimum(%x: !torch.vtensor<[1,4,64],f32>) -> !torch.vtensor<[1,4,64],f32> {
  %w1 = torch.vtensor.literal(dense<1.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %w2 = torch.vtensor.literal(dense<2.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %none = torch.constant.none
  %int1 = torch.constant.int 1
  %a = torch.aten.linear %x, %w1, %none : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,4,64],f32>
  %b = torch.aten.linear %x, %w2, %none : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,4,64],f32>
  %c = torch.aten.neg %x : !torch.vtensor<[1,4,64],f32> -> !torch.vtensor<[1,4,64],f32>
  %d = torch.aten.add.Tensor %a, %b, %int1 : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[1,4,64],f32>, !torch.int -> !torch.vtensor<[1,4,64],f32>
  %e = torch.aten.mul.Tensor %d, %c : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[1,4,64],f32> -> !torch.vtensor<[1,4,64],f32>
  return %e : !torch.vtensor<[1,4,64],f32>
}

// -----

// Views take no unit and no time: the reshape has a start and an end but no unit, and
// a transpose read only by a matmul is folded into the matmul's operand stream.
// CHECK-LABEL: func.func @views_are_free
// CHECK: torch.aten.transpose.int {{.*}}{harden.end = 0 : i64, harden.layer = 0 : i64, harden.start = 0 : i64}
// CHECK: torch.aten.matmul {{.*}}harden.unit = "mm0"
// CHECK: torch.aten.view {{.*}}{harden.end = 4 : i64, harden.layer = 0 : i64, harden.start = 4 : i64}
func.func @views_are_free(%x: !torch.vtensor<[4,64],f32>, %y: !torch.vtensor<[4,64],f32>) -> (!torch.vtensor<[1,256],f32>, !torch.vtensor<[4,4],f32>) {
  %int1 = torch.constant.int 1
  %int0 = torch.constant.int 0
  %int256 = torch.constant.int 256
  %n = torch.aten.neg %x : !torch.vtensor<[4,64],f32> -> !torch.vtensor<[4,64],f32>
  %shape = torch.prim.ListConstruct %int1, %int256 : (!torch.int, !torch.int) -> !torch.list<int>
  %v = torch.aten.view %n, %shape : !torch.vtensor<[4,64],f32>, !torch.list<int> -> !torch.vtensor<[1,256],f32>
  %t = torch.aten.transpose.int %y, %int0, %int1 : !torch.vtensor<[4,64],f32>, !torch.int, !torch.int -> !torch.vtensor<[64,4],f32>
  %m = torch.aten.matmul %x, %t : !torch.vtensor<[4,64],f32>, !torch.vtensor<[64,4],f32> -> !torch.vtensor<[4,4],f32>
  return %v, %m : !torch.vtensor<[1,256],f32>, !torch.vtensor<[4,4],f32>
}

// -----

// CHIPS-LABEL: func.func @two_layers
// CHIPS-SAME: chips = 2
// CHIPS-SAME: makespan_cycles = 58
// CHIPS: torch.aten.linear {{.*}}{harden.chip = 0 : i64, harden.end = 16 : i64, harden.layer = 0 : i64, harden.start = 0 : i64, harden.transfers = [{chip = 1 : i64, end = 32 : i64, result = 0 : i64, start = 16 : i64, unit = "c0.link0"}], harden.unit = "c0.mm0"}
// CHIPS: torch.aten.linear {{.*}}{harden.chip = 1 : i64, harden.end = 58 : i64, harden.layer = 1 : i64, harden.start = 42 : i64, harden.unit = "c1.mm0"}
func.func @two_layers(%x: !torch.vtensor<[1,4,64],f32>) -> !torch.vtensor<[1,4,64],f32> {
  %w1 = torch.vtensor.literal(dense<1.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %w2 = torch.vtensor.literal(dense<2.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %none = torch.constant.none
  %a = torch.aten.linear %x, %w1, %none {harden.layer = 0} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,4,64],f32>
  %b = torch.aten.linear %a, %w2, %none {harden.layer = 1} : !torch.vtensor<[1,4,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,4,64],f32>
  return %b : !torch.vtensor<[1,4,64],f32>
}

// -----

// Stream tiles: each op is split along its streamed dimension (here the 8 rows, 2 per
// tile), and a consumer tile starts as soon as the producer tiles it reads are done: the
// linear's first tile (cycle 12) starts long before the exp's last tile ends (cycle 24).
// The matrix unit's 32 cycles of work cannot start before one neg and one exp tile
// (2 + 10 cycles): 44 is optimal, and the lower bound says so.
// TILED-LABEL: func.func @pipelined
// TILED-SAME: lower_bound_cycles = 44
// TILED-SAME: makespan_cycles = 44
// TILED: torch.aten.neg {{.*}}harden.tile_starts = array<i64: 0, 0, 12, 12>, harden.tile_units = ["vec0", "vec1", "vec0", "vec1"]
// TILED: torch.aten.exp {{.*}}{harden.end = 24 : i64, {{.*}}harden.tile_starts = array<i64: 2, 2, 14, 14>
// TILED: torch.aten.linear {{.*}}{harden.end = 44 : i64, {{.*}}harden.start = 12 : i64, harden.tile_starts = array<i64: 12, 20, 28, 36>, harden.tile_units = ["mm0", "mm0", "mm0", "mm0"], harden.unit = "mm0"}
// Whole ops (tile=0) cannot overlap: 8 + 40 + 32 = 80 cycles instead of 44.
// CHECK-LABEL: func.func @pipelined
// CHECK-SAME: makespan_cycles = 80
// CHECK: torch.aten.linear {{.*}}{harden.end = 80 : i64, harden.layer = 0 : i64, harden.start = 48 : i64, harden.unit = "mm0"}
func.func @pipelined(%x: !torch.vtensor<[1,8,64],f32>) -> !torch.vtensor<[1,8,64],f32> {
  %w = torch.vtensor.literal(dense<1.0> : tensor<64x64xf32>) : !torch.vtensor<[64,64],f32>
  %none = torch.constant.none
  %a = torch.aten.neg %x : !torch.vtensor<[1,8,64],f32> -> !torch.vtensor<[1,8,64],f32>
  %b = torch.aten.exp %a : !torch.vtensor<[1,8,64],f32> -> !torch.vtensor<[1,8,64],f32>
  %c = torch.aten.linear %b, %w, %none : !torch.vtensor<[1,8,64],f32>, !torch.vtensor<[64,64],f32>, !torch.none -> !torch.vtensor<[1,8,64],f32>
  return %c : !torch.vtensor<[1,8,64],f32>
}
