// RUN: harden-opt %s --harden-ternarize="skip=*.wo.*" --harden-remarks --verify-diagnostics -o %t.mlir
// A pattern that matches no weight is an error naming it and the layer groups there are
// (here only the classifier: the other names are not a Llama's).
// RUN: not harden-opt %s --harden-ternarize="keep=layers.9.attention" 2>&1 | filecheck %s --check-prefix=NOMATCH
// NOMATCH: error: keep pattern 'layers.9.attention' matches no weight of the module; layer groups: output

func.func @left_alone(%x: !torch.vtensor<[1,3,4],f32>, %w: !torch.vtensor<[2,4],f32>) -> (!torch.vtensor<[1,3,2],f32>, !torch.vtensor<[1,3,2],f32>) {
  %none = torch.constant.none
  %wo = torch.vtensor.literal(dense<1.0> : tensor<2x4xf32>) {harden.name = "l3.attention.wo.weight"} : !torch.vtensor<[2,4],f32>
  // expected-remark@+1 {{not ternarized: the weight is not a constant}}
  %y = torch.aten.linear %x, %w, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[2,4],f32>, !torch.none -> !torch.vtensor<[1,3,2],f32>
  // expected-remark@+1 {{not ternarized: 'l3.attention.wo.weight' matches skip pattern '*.wo.*'}}
  %z = torch.aten.linear %x, %wo, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[2,4],f32>, !torch.none -> !torch.vtensor<[1,3,2],f32>
  return %y, %z : !torch.vtensor<[1,3,2],f32>, !torch.vtensor<[1,3,2],f32>
}


func.func @classifier(%h: !torch.vtensor<[1,3,4],f32>) -> !torch.vtensor<[1,3,8],f32> {
  %none = torch.constant.none
  %w = torch.vtensor.literal(dense<1.0> : tensor<8x4xf32>) {harden.name = "output.weight"} : !torch.vtensor<[8,4],f32>
  // expected-remark@+1 {{not ternarized: 'output.weight' is the classifier (use classifier=true to ternarize it)}}
  %logits = torch.aten.linear %h, %w, %none : !torch.vtensor<[1,3,4],f32>, !torch.vtensor<[8,4],f32>, !torch.none -> !torch.vtensor<[1,3,8],f32>
  return %logits : !torch.vtensor<[1,3,8],f32>
}
