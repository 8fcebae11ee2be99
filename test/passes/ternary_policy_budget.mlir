// max-bits: each weight matrix's precision, chosen to minimise the predicted KL under a
// budget of stored bits per weight (codes, scales and mins of every matrix, the tied table
// once), recorded as `harden.precision` ({weight name: precision}); harden-ternarize then
// rounds each matrix onto its grid (GPTQ with method=gptq) and reports the bits it stored.
// RUN: harden-import --model tiny --seq-len 8 --max-seq-len 16 --quiet -o %t.mlir
// RUN: harden-opt %t.mlir --pass-pipeline='builtin.module(harden-fuse-qkv,harden-ternary-policy{max-bits=5 method=gptq samples=2 calibration-samples=2 calibration-seq-len=8 report=%t.json},harden-ternarize{method=gptq calibration-samples=2 calibration-seq-len=8})' --harden-remarks -o %t.out.mlir 2>&1 | filecheck %s --check-prefix=REMARK
// RUN: filecheck %s --check-prefix=PLAN < %t.out.mlir
// RUN: filecheck %s --check-prefix=REPORT < %t.json
// A budget under the cheapest grid is missed with a warning, at the fewest bits.
// RUN: harden-opt %t.mlir --pass-pipeline='builtin.module(harden-fuse-qkv,harden-ternary-policy{max-bits=1 method=gptq samples=2 calibration-samples=2 calibration-seq-len=8})' 2>&1 | filecheck %s --check-prefix=OVER
// harden-pipeline's budget needs the policy: max-bits with policy=none is an option error.
// RUN: not harden-opt %t.mlir --harden-pipeline="policy=none max-bits=4" 2>&1 | filecheck %s --check-prefix=NOPOLICY

// REMARK: remark: {{[1-4]\.[0-9]+|5\.000}} bits per weight over 12 matrices ({{.*}}): KL {{[0-9.e-]+}} nats with plain rounding
// REMARK: remark: {{[1-4]\.[0-9]+|5\.0+}} bits per weight over {{[0-9,]+}} weights

// PLAN: harden.bits_per_weight = {{[1-4]\.[0-9]+e\+00|5\.0+e\+00}} : f64
// PLAN-SAME: harden.precision = {
// PLAN-SAME: "layers.0.attention.wq+wk+wv.weight" = "{{(u?int[2-8]g[0-9]+|t[12]g[0-9]+)}}"
// PLAN-SAME: tok_embeddings.weight = "{{u?int[2-8]g[0-9]+}}"
// PLAN: harden.int_embedding
// PLAN-NOT: torch.aten.linear

// REPORT: "max_bits": 5.0,
// REPORT: "bits_per_weight": {{[1-4]\.[0-9]+|5\.0}}
// REPORT: "matrices": {
// REPORT: "output_error":

// OVER: warning: {{[0-9.]+}} bits per weight over 12 matrices {{.*}} over max-bits=1 even at the fewest bits

// NOPOLICY: error: options 'max-kl' and 'max-bits' of 'harden-pipeline' need policy=auto
