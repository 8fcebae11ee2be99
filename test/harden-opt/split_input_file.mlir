// RUN: harden-opt %s --split-input-file | filecheck %s

// Each chunk is processed on its own and printed with the same separator.
// CHECK-LABEL: func.func @first
// CHECK: // -----
// CHECK-LABEL: func.func @second
// CHECK-NOT: // -----

func.func @first() {
  return
}

// -----

func.func @second() {
  return
}

// An error in one chunk is reported with its line in this file, and nothing is printed.
// RUN: not harden-opt %inputs/split_with_error.mlir --split-input-file -o %t.out 2>&1 | filecheck %s --check-prefix=ERR
// ERR: split_with_error.mlir:8:3: error: custom op 'retur' is unknown
// RUN: not test -e %t.out
