// stdin with `-`, stdout by default:
// RUN: echo 'module {}' | harden-opt - | filecheck %s --check-prefix=STDIN
// STDIN: module {

// stdin is also the default input:
// RUN: echo 'module {}' | harden-opt | filecheck %s --check-prefix=STDIN

// -o writes a file:
// RUN: harden-opt %s -o %t.out.mlir
// RUN: filecheck %s --check-prefix=FILE < %t.out.mlir
// FILE-LABEL: func.func @identity
// FILE: return %arg0

// Same input, same output, byte for byte:
// RUN: harden-opt %inputs/qkv_gqa.mlir --harden-fuse-qkv -o %t.a.mlir
// RUN: harden-opt %inputs/qkv_gqa.mlir --harden-fuse-qkv -o %t.b.mlir
// RUN: diff %t.a.mlir %t.b.mlir

func.func @identity(%x: !torch.vtensor<[2],f32>) -> !torch.vtensor<[2],f32> {
  return %x : !torch.vtensor<[2],f32>
}
