// RUN: harden-opt %s --harden-ternarize="keep=*.w2.*,output.weight keep-as=int8 report=%t.json" | filecheck %s --check-prefix=INT8
// RUN: filecheck %s --check-prefix=REPORT < %t.json
// RUN: harden-opt %s --harden-ternarize="keep=*.w2.*" --harden-remarks 2>&1 | filecheck %s --check-prefix=F32
// RUN: harden-opt %s --harden-ternarize="keep=*.w2.*,output.weight keep-as=int8" | harden-opt --harden-lower-harden-ops | filecheck %s --check-prefix=LOWER

// keep-as=int8: per output channel, scale = max|w| / 127. Row 0 (max 1): codes 127, -127,
// 0, round(63.5) = 64; row 1 (max 2): 127, 127, -127, 0.
// INT8-LABEL: func.func @linear
// INT8-DAG: %[[CODES:.*]] = torch.vtensor.literal(dense<{{\[\[}}127, -127, 0, 64], [127, 127, -127, 0]]> : tensor<2x4xsi8>) {harden.name = "l0.mlp.w2.weight.int8"}
// INT8-DAG: %[[SCALES:.*]] = torch.vtensor.literal(dense<{{\[\[}}0.00787401571], [0.0157480314]]> : tensor<2x1xf32>) {harden.name = "l0.mlp.w2.weight.int8_scales"}
// INT8: "harden.int8_linear"(%arg0, %[[CODES]], %[[SCALES]]) {in_features = 4 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0>, out_features = 2 : i64} : (!torch.vtensor<[1,3,4],f32>, !torch.vtensor<[2,4],si8>, !torch.vtensor<[2,1],f32>) -> !torch.vtensor<[1,3,2],f32>
// INT8-NOT: torch.aten.linear
// INT8-NOT: tensor<2x4xf32>

// keep-as=f32 (the default) leaves the linear alone, with a remark.
// F32: remark: not ternarized: 'l0.mlp.w2.weight' matches keep pattern '*.w2.*' (kept in f32)
// F32-LABEL: func.func @linear
// F32: torch.aten.linear

// The lowering: the codes laid out [K, N] (still i8). Three rows (a prompt) dequantize them
// with the channel scales once per call and run an f32 matmul; one row (decode) multiplies
// the i8 codes and scales the result (test_int8_linear.py checks both against numpy).
// LOWER-LABEL: func.func @linear
// LOWER: %[[KN:.*]] = torch.vtensor.literal(dense<{{\[\[}}127, 127], [-127, 127], [0, -127], [64, 0]]> : tensor<4x2xsi8>) {harden.name = "l0.mlp.w2.weight.int8.kn"}
// LOWER: %[[KNB:.*]] = torch_c.to_builtin_tensor %[[KN]] : !torch.vtensor<[4,2],si8> -> tensor<4x2xi8>
// LOWER: %[[W:.*]] = linalg.generic {{.*}} ins(%[[KNB]], %{{.*}} : tensor<4x2xi8>, tensor<2x1xf32>)
// LOWER: arith.sitofp
// LOWER: arith.mulf
// LOWER: linalg.matmul ins(%{{.*}}, %[[W]] : tensor<3x4xf32>, tensor<4x2xf32>) outs(%{{.*}} : tensor<3x2xf32>)
// LOWER-NOT: harden.int8_linear
// LOWER-NOT: tensor<2x4xsi8>

// The layer groups harden-ternary-policy chose (module attribute harden.keep) are kept the
// same way; a kept fused qkv becomes one int8_linear (bias in f32) and three slices. The
// classifier, kept by name, is int8 too (without classifier=true); tied to the embedding,
// it becomes an int_linear (8-bit codes, an f16 scale per row) whose codes the lookup
// reads too (harden.int_embedding): the table is stored once, the f32 one is gone.
// INT8-LABEL: func.func @fused_qkv
// INT8: %[[Y:.*]] = "harden.int8_linear"(%arg0, %{{.*}}, %{{.*}}, %{{.*}}) {in_features = 4 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 1>, out_features = 16 : i64} : ({{.*}}) -> !torch.vtensor<[1,3,16],f32>
// INT8: torch.aten.slice.Tensor %[[Y]], {{.*}} -> !torch.vtensor<[1,3,8],f32>
// INT8: torch.aten.slice.Tensor %[[Y]], {{.*}} -> !torch.vtensor<[1,3,4],f32>
// INT8: torch.aten.slice.Tensor %[[Y]], {{.*}} -> !torch.vtensor<[1,3,4],f32>
// INT8-LABEL: func.func @tied_classifier
// INT8-NOT: tensor<8x4xf32>
// INT8: %[[CODES:.*]] = torch.vtensor.literal({{.*}}tensor<8x4xsi8>) {harden.name = "output.weight.codes"}
// INT8: %[[SCALES:.*]] = torch.vtensor.literal({{.*}}tensor<8x1xf16>) {harden.name = "output.weight.scales"}
// INT8: "harden.int_embedding"(%arg0, %[[CODES]], %[[SCALES]]) {bits = 8 : i64, group_size = 4 : i64
// INT8: "harden.int_linear"(%{{.*}}, %[[CODES]], %[[SCALES]]) {bits = 8 : i64, group_size = 4 : i64
// INT8-NOT: torch.aten.linear
// INT8-NOT: torch.aten.embedding
// F32-LABEL: func.func @fused_qkv
// F32: "harden.fused_qkv"
// F32-NOT: harden.ternary_linear
// F32-LABEL: func.func @tied_classifier
// F32: torch.aten.linear
// LOWER-LABEL: func.func @fused_qkv
// LOWER: linalg.generic {{.*}} tensor<4x16xi8>
// LOWER: linalg.matmul {{.*}} tensor<4x16xf32>
// LOWER-LABEL: func.func @tied_classifier
// LOWER: %[[W:.*]] = linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<1x4x8xi8>, tensor<1x8xf16>) outs(%{{.*}} : tensor<1x4x8xf32>)
// LOWER: %[[K:.*]] = tensor.collapse_shape %[[W]] {{.*}} into tensor<4x8xf32>
// LOWER: linalg.matmul ins(%{{.*}}, %[[K]] : tensor<3x4xf32>, tensor<4x8xf32>)
// LOWER-NOT: linalg.batch_matmul
module attributes {harden.keep = ["layers.0.attention"]} {
func.func @linear(%x: !torch.vtensor<[1,3,4],f32>) -> !torch.vtensor<[1,3,2],f32> {
  %none = torch.constant.none
  %w = torch.vtensor.literal(dense<[[1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0]]> : tensor<2x4xf32>) {harden.name = "l0.mlp.w2.weight"} : !torch.vtensor<[2,4],f32>
  %y = torch.aten.linear %x, %w, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[2,4],f32>, !torch.none -> !torch.vtensor<[1,3,2],f32>
  return %y : !torch.vtensor<[1,3,2],f32>
}
func.func @fused_qkv(%x: !torch.vtensor<[1,3,4],f32>) -> (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>) {
  %w = torch.vtensor.literal(dense<0.5> : tensor<16x4xf32>) {harden.name = "layers.0.attention.wq+wk+wv.weight"} : !torch.vtensor<[16,4],f32>
  %b = torch.vtensor.literal(dense<1.0> : tensor<16xf32>) : !torch.vtensor<[16],f32>
  %q, %k, %v = "harden.fused_qkv"(%x, %w, %b) {q_size = 8 : i64, k_size = 4 : i64, v_size = 4 : i64, operandSegmentSizes = array<i32: 1, 1, 1>} : (!torch.vtensor<[1,3,4],f32>, !torch.vtensor<[16,4],f32>, !torch.vtensor<[16],f32>) -> (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>)
  return %q, %k, %v : !torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>
}
func.func @tied_classifier(%tokens: !torch.vtensor<[1,3],si64>) -> !torch.vtensor<[1,3,8],f32> {
  %none = torch.constant.none
  %false = torch.constant.bool false
  %int-1 = torch.constant.int -1
  %emb = torch.vtensor.literal(dense<[[1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0], [1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0], [1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0], [1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0]]> : tensor<8x4xf32>) {harden.name = "output.weight"} : !torch.vtensor<[8,4],f32>
  %h = torch.aten.embedding %emb, %tokens, %int-1, %false, %false : !torch.vtensor<[8,4],f32>, !torch.vtensor<[1,3],si64>, !torch.int, !torch.bool, !torch.bool -> !torch.vtensor<[1,3,4],f32>
  %logits = torch.aten.linear %h, %emb, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[8,4],f32>, !torch.none -> !torch.vtensor<[1,3,8],f32>
  return %logits : !torch.vtensor<[1,3,8],f32>
}
}

// The report names each kept
// layer's precision, error and bytes (codes plus f32 scales): 16 x 4 weights of 0.5 are
// exact in int8, 64 codes + 16 scales x 4 bytes = 128 of 256 bytes.
// REPORT: "keep_as": "int8"
// REPORT: "layer": "layers.0.attention.wq+wk+wv.weight"
// REPORT: "precision": "int8"
// REPORT: "exact": true,
// REPORT-NEXT: "bytes_before": 256,
// REPORT-NEXT: "bytes_after": 128
// REPORT: "layer": "output.weight"
// REPORT: "precision": "int8g4"

// An int8_linear whose weight is not a constant cannot be re-laid out: an error at the op.
// RUN: not harden-opt %inputs/int8_argument_weight.mlir --harden-lower-harden-ops 2>&1 | filecheck %s --check-prefix=ARGUMENT
// ARGUMENT: int8_argument_weight.mlir:3:8: error: 'harden.int8_linear' op with a non-constant weight cannot be lowered
