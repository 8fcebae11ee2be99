// RUN: harden-opt %s --split-input-file --harden-ternarize | filecheck %s --check-prefix=CHANNEL
// RUN: harden-opt %s --split-input-file --harden-ternarize="method=twn scale=tensor planes=2" | filecheck %s --check-prefix=TWN2
// RUN: harden-opt %s --split-input-file --harden-ternarize="scale=group group-size=3" | filecheck %s --check-prefix=GROUP
// RUN: harden-opt %s --split-input-file --harden-ternarize="classifier=true" | filecheck %s --check-prefix=CLASSIFIER

// absmean per channel (the default). Row 0: scale mean|w| = 0.625, codes
// clamp(round(w / 0.625)) = 1, -1, 0, 1 -> 2-bit codes 2, 0, 1, 2 -> byte 0b10_01_00_10 = -110.
// Row 1 is already ternary ({-2, 0, 2}): scale 2 exactly, codes 2, 2, 0, 1 -> byte 74.
// CHANNEL-LABEL: func.func @linear
// CHANNEL-DAG: %[[CODES:.*]] = torch.vtensor.literal(dense<{{\[\[\[}}-110], [74]]]> : tensor<1x2x1xsi8>) {harden.name = "l0.mlp.w2.weight.codes"}
// CHANNEL-DAG: %[[SCALES:.*]] = torch.vtensor.literal(dense<{{\[\[\[}}6.250000e-01], [2.000000e+00]]]> : tensor<1x2x1xf32>) {harden.name = "l0.mlp.w2.weight.scales"}
// CHANNEL: "harden.ternary_linear"(%arg0, %[[CODES]], %[[SCALES]]) {group_size = 4 : i64, in_features = 4 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0>, out_features = 2 : i64, planes = 1 : i64, scale_kind = "channel"}
// CHANNEL-NOT: torch.aten.linear

// twn per tensor, two planes: threshold 0.7 * 1.0625 keeps |w| in {1, 2}: scale 1.6;
// the second plane fits the residual with scale 0.4833.
// TWN2-LABEL: func.func @linear
// TWN2-DAG: torch.vtensor.literal(dense<{{\[\[\[}}82], [74]], {{\[\[}}-104], [74]]]> : tensor<2x2x1xsi8>)
// TWN2-DAG: torch.vtensor.literal(dense<{{\[\[\[}}1.600000e+00]], {{\[\[}}0.483333349]]]> : tensor<2x1x1xf32>)
// TWN2: "harden.ternary_linear"{{.*}}planes = 2 : i64, scale_kind = "tensor"

// Groups of 3 columns (the last group has 1 column): every group here is already
// ternary, so the scales are the groups' magnitudes.
// GROUP-LABEL: func.func @linear
// GROUP-DAG: torch.vtensor.literal(dense<{{\[\[\[}}1.000000e+00, 5.000000e-01], [2.000000e+00, 0.000000e+00]]]> : tensor<1x2x2xf32>)
// GROUP: "harden.ternary_linear"{{.*}}group_size = 3 : i64{{.*}}scale_kind = "group"

func.func @linear(%x: !torch.vtensor<[1,3,4],f32>) -> !torch.vtensor<[1,3,2],f32> {
  %none = torch.constant.none
  %w = torch.vtensor.literal(dense<[[1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0]]> : tensor<2x4xf32>) {harden.name = "l0.mlp.w2.weight"} : !torch.vtensor<[2,4],f32>
  %y = torch.aten.linear %x, %w, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[2,4],f32>, !torch.none -> !torch.vtensor<[1,3,2],f32>
  return %y : !torch.vtensor<[1,3,2],f32>
}

// -----

// A fused qkv becomes one ternary linear (bias kept in f32) and three slices.
// CHANNEL-LABEL: func.func @fused_qkv
// CHANNEL: %[[Y:.*]] = "harden.ternary_linear"(%arg0, %{{.*}}, %{{.*}}, %{{.*}}) {group_size = 4 : i64, in_features = 4 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 1>, out_features = 16 : i64{{.*}}} : ({{.*}}) -> !torch.vtensor<[1,3,16],f32>
// CHANNEL: torch.aten.slice.Tensor %[[Y]], %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : {{.*}} -> !torch.vtensor<[1,3,8],f32>
// CHANNEL: torch.aten.slice.Tensor %[[Y]], {{.*}} -> !torch.vtensor<[1,3,4],f32>
// CHANNEL: torch.aten.slice.Tensor %[[Y]], {{.*}} -> !torch.vtensor<[1,3,4],f32>
// CHANNEL-NOT: harden.fused_qkv
func.func @fused_qkv(%x: !torch.vtensor<[1,3,4],f32>) -> (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>) {
  %w = torch.vtensor.literal(dense<[[1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0], [1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0], [1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0], [1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0], [1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0], [1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0], [1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0], [1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0]]> : tensor<16x4xf32>) : !torch.vtensor<[16,4],f32>
  %b = torch.vtensor.literal(dense<1.0> : tensor<16xf32>) : !torch.vtensor<[16],f32>
  %q, %k, %v = "harden.fused_qkv"(%x, %w, %b) {q_size = 8 : i64, k_size = 4 : i64, v_size = 4 : i64, operandSegmentSizes = array<i32: 1, 1, 1>} : (!torch.vtensor<[1,3,4],f32>, !torch.vtensor<[16,4],f32>, !torch.vtensor<[16],f32>) -> (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>)
  return %q, %k, %v : !torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[1,3,4],f32>
}

// -----

// The classifier tied to the embedding stays in f32 unless classifier=true; the
// embedding keeps its weight either way.
// CHANNEL-LABEL: func.func @tied_classifier
// CHANNEL: torch.aten.embedding
// CHANNEL: torch.aten.linear
// CHANNEL-NOT: harden.ternary_linear
// CLASSIFIER-LABEL: func.func @tied_classifier
// CLASSIFIER: %[[EMB:.*]] = torch.vtensor.literal({{.*}}tensor<8x4xf32>)
// CLASSIFIER: torch.aten.embedding %[[EMB]]
// CLASSIFIER: "harden.ternary_linear"
// CLASSIFIER-NOT: torch.aten.linear
// CLASSIFIER: // -----
func.func @tied_classifier(%tokens: !torch.vtensor<[1,3],si64>) -> !torch.vtensor<[1,3,8],f32> {
  %none = torch.constant.none
  %false = torch.constant.bool false
  %int-1 = torch.constant.int -1
  %emb = torch.vtensor.literal(dense<[[1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0], [1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0], [1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0], [1.0, -1.0, 0.0, 0.5], [2.0, 2.0, -2.0, 0.0]]> : tensor<8x4xf32>) : !torch.vtensor<[8,4],f32>
  %h = torch.aten.embedding %emb, %tokens, %int-1, %false, %false : !torch.vtensor<[8,4],f32>, !torch.vtensor<[1,3],si64>, !torch.int, !torch.bool, !torch.bool -> !torch.vtensor<[1,3,4],f32>
  %logits = torch.aten.linear %h, %emb, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[8,4],f32>, !torch.none -> !torch.vtensor<[1,3,8],f32>
  return %logits : !torch.vtensor<[1,3,8],f32>
}

// -----

// A weight that is not a constant stays as it is.
// CHANNEL-LABEL: func.func @argument_weight
// CHANNEL: torch.aten.linear
func.func @argument_weight(%x: !torch.vtensor<[1,3,4],f32>, %w: !torch.vtensor<[2,4],f32>) -> !torch.vtensor<[1,3,2],f32> {
  %none = torch.constant.none
  %y = torch.aten.linear %x, %w, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[2,4],f32>, !torch.none -> !torch.vtensor<[1,3,2],f32>
  return %y : !torch.vtensor<[1,3,2],f32>
}
