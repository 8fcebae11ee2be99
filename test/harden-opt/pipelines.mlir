// A textual pipeline mixing a harden pass with upstream passes:
// RUN: harden-opt %inputs/qkv_gqa.mlir --pass-pipeline='builtin.module(harden-fuse-qkv,canonicalize,cse)' | filecheck %s
// The same pass as a flag:
// RUN: harden-opt %inputs/qkv_gqa.mlir --harden-fuse-qkv | filecheck %s
// Nested upstream pipelines are handed to MLIR as written:
// RUN: harden-opt %inputs/qkv_gqa.mlir --pass-pipeline='builtin.module(harden-fuse-qkv, func.func(canonicalize, cse))' | filecheck %s

// CHECK-LABEL: func.func @attention_projections
// CHECK: "harden.fused_qkv"
// CHECK-NOT: torch.aten.linear

// Harden passes run on the module; nesting them is an error:
// RUN: not harden-opt %inputs/qkv_gqa.mlir --pass-pipeline='builtin.module(func.func(harden-fuse-qkv))' 2>&1 | filecheck %s --check-prefix=NESTED
// NESTED: harden-opt: error: harden passes run on builtin.module; 'harden-fuse-qkv' cannot be nested in 'func.func'

// The pipeline must be anchored on the module:
// RUN: not harden-opt %inputs/qkv_gqa.mlir --pass-pipeline='harden-fuse-qkv' 2>&1 | filecheck %s --check-prefix=ANCHOR
// ANCHOR: harden-opt: error: pass pipeline must be anchored on builtin.module

// --pass-pipeline and pass flags do not mix:
// RUN: not harden-opt %inputs/qkv_gqa.mlir --harden-fuse-qkv --pass-pipeline='builtin.module(cse)' 2>&1 | filecheck %s --check-prefix=MIX
// MIX: harden-opt: error: --pass-pipeline cannot be combined with pass flags like --harden-fuse-qkv
