// The policy measures each layer group's KL on the PyTorch model of the module's provenance
// (here the seeded `tiny` shape, 2 layers: 4 groups), keeps the most sensitive groups until
// the budget is met and records them in `harden.keep`, which harden-ternarize then honours.
// RUN: harden-import --model tiny --seq-len 8 --max-seq-len 16 --quiet -o %t.mlir
// RUN: harden-opt %t.mlir --pass-pipeline='builtin.module(harden-fuse-qkv,harden-ternary-policy{max-kl=0.2 samples=2 report=%t.json},harden-ternarize)' --harden-remarks -o %t.out.mlir 2>&1 | filecheck %s --check-prefix=REMARK
// RUN: filecheck %s --check-prefix=KEEP < %t.out.mlir
// RUN: filecheck %s --check-prefix=REPORT < %t.json
// A looser budget keeps nothing.
// RUN: harden-opt %t.mlir --pass-pipeline='builtin.module(harden-fuse-qkv,harden-ternary-policy{max-kl=5 samples=2})' --harden-remarks 2>&1 | filecheck %s --check-prefix=NONE
// Without a provenance there is nothing to measure: an error at the module.
// RUN: harden-opt %s --harden-ternary-policy --verify-diagnostics

// REMARK: remark: keeping 2 of 4 layer groups in f32 ({{[0-9]+}} more bytes): KL {{0\.[01][0-9]*}} nats
// REMARK: remark: not ternarized: 'layers.0.attention.wq+wk+wv.weight' matches keep pattern 'layers.0.attention' (kept in f32)

// KEEP: harden.keep = ["layers.0.attention", "layers.0.feed_forward"]
// KEEP: "harden.ternary_linear"
// KEEP-NOT: harden.ternary_linear{{.*}}layers.0.
// KEEP: torch.aten.linear

// REPORT: "max_kl": 0.2,
// REPORT-NEXT: "keep": [
// REPORT-NEXT: "layers.0.attention",
// REPORT-NEXT: "layers.0.feed_forward"
// REPORT: "group": "layers.1.feed_forward",

// NONE: remark: keeping 0 of 4 layer groups in f32 (0 more bytes)

// expected-error@below {{'harden-ternary-policy': needs the module's provenance (harden.provenance, written by harden-import)}}
module {
  func.func @f() {
    return
  }
}
