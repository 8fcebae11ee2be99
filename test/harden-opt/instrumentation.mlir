// IR printing goes to stderr, before and after each pass, harden passes included.
// RUN: harden-opt %inputs/qkv_gqa.mlir --harden-fuse-qkv --mlir-print-ir-before-all --mlir-print-ir-after-all -o %t.mlir 2> %t.err
// RUN: filecheck %s --check-prefix=PRINT < %t.err
// PRINT: IR Dump Before harden-fuse-qkv
// PRINT: torch.aten.linear
// PRINT: IR Dump After harden-fuse-qkv
// PRINT: "harden.fused_qkv"

// Timing covers harden and upstream passes.
// RUN: harden-opt %inputs/qkv_gqa.mlir --pass-pipeline='builtin.module(harden-fuse-qkv,cse)' --mlir-timing -o %t.mlir 2> %t.timing
// RUN: filecheck %s --check-prefix=TIMING < %t.timing
// TIMING: Execution time report
// TIMING-DAG: harden-fuse-qkv
// TIMING-DAG: CSE
