// REQUIRES: vnni-kernels
// kernel=vnni needs the C kernel object (built by `make install`) and an AVX-512 VNNI CPU;
// lit.cfg.py sets the vnni-kernels feature when both are there.
// RUN: harden-opt %s --split-input-file --harden-lower-harden-ops=kernel=vnni --harden-remarks 2>&1 | filecheck %s --check-prefix=VNNI
// RUN: harden-opt %s --split-input-file --harden-lower-to-linalg=kernel=vnni | filecheck %s --check-prefix=VNNI-FULL
// kernel=auto (the default) is kernel=vnni on such a host for one token (a prompt on AVX2
// runs on IREE's f32 matmul instead: test_ternary_kernel.py).
// RUN: harden-opt %s --split-input-file --harden-lower-harden-ops | filecheck %s --check-prefix=AUTO
// AUTO-LABEL: func.func @vnni
// AUTO: call @harden_ternary_kernel_0(%{{.*}}, %{{.*}}, %{{.*}}) : (tensor<1x20xf32>, tensor<128xi8>, tensor<16xf32>) -> tensor<1x2xf32>

// Groups of 3 do not fit the C kernels: the exact kernel, with a remark.
func.func @ternary(%x: !torch.vtensor<[1,3,10],f32>) -> !torch.vtensor<[1,3,2],f32> {
  %w = torch.vtensor.literal(dense<[[[-110, 85, 5], [74, 85, 6]]]> : tensor<1x2x3xsi8>) : !torch.vtensor<[1,2,3],si8>
  %s = torch.vtensor.literal(dense<[[[1.0, 0.5, 0.25, 2.0], [1.0, 1.0, 1.0, 1.0]]]> : tensor<1x2x4xf32>) : !torch.vtensor<[1,2,4],f32>
  %y = "harden.ternary_linear"(%x, %w, %s) {in_features = 10 : i64, out_features = 2 : i64, group_size = 3 : i64, planes = 1 : i64, scale_kind = "group", operandSegmentSizes = array<i32: 1, 1, 1, 0>}
      : (!torch.vtensor<[1,3,10],f32>, !torch.vtensor<[1,2,3],si8>, !torch.vtensor<[1,2,4],f32>) -> !torch.vtensor<[1,3,2],f32>
  return %y : !torch.vtensor<[1,3,2],f32>
}

// -----

// kernel=vnni: the codes re-laid out for the C kernels (2 rows padded to 16, 20 columns to
// 32: 2 blocks of 64 bytes) and a call of a bodiless private declaration whose attribute
// tells the IREE step which kernel to dispatch; the bias is added after the call.
// VNNI: remark: kernel=vnni falls back to the exact kernel: group size 3 is not a multiple of 16
// VNNI-LABEL: func.func @ternary
// VNNI: call @harden_ternary_kernel_0
// VNNI: linalg.generic {{.*}} attrs =  {harden.cpu_tiling
// VNNI-LABEL: func.func @vnni
// VNNI: %[[CODES:.*]] = torch.vtensor.literal(dense<"0x{{[0-9A-F]*}}"> : tensor<128xsi8>) {harden.name = "ternary.vnni_codes"}
// VNNI: %[[SCALES:.*]] = torch.vtensor.literal(dense<[5.000000e-01, 2.500000e-01, {{.*}}]> : tensor<16xf32>) {harden.name = "ternary.vnni_scales"}
// VNNI: %[[Y:.*]] = call @harden_ternary_kernel_0(%{{.*}}, %{{.*}}, %{{.*}}) : (tensor<1x20xf32>, tensor<128xi8>, tensor<16xf32>) -> tensor<1x2xf32>
// VNNI: linalg.generic {{.*}} ins(%[[Y]], %{{.*}} : tensor<1x2xf32>, tensor<2xf32>)
// VNNI-NOT: harden.ternary_linear
// VNNI: func.func private @harden_ternary_kernel_0(tensor<1x20xf32>, tensor<128xi8>, tensor<16xf32>) -> tensor<1x2xf32>
// VNNI-SAME: attributes {harden.ternary_vnni = {code_bits = 2 : i64, group_size = 0 : i64, groups = 1 : i64, numerics = "fixed32", padded_in = 32 : i64, padded_out = 16 : i64, planes = 1 : i64, rows_per_workgroup = 256 : i64, symmetric = 0 : i64}}
// VNNI-NOT: linalg.generic
// After torch-mlir's lowering (its backend-contract check skipped: it rejects the call)
// the declaration and its call are all that is left of the kernel for the IREE step.
// VNNI-FULL-LABEL: func.func @vnni
// VNNI-FULL-SAME: (%arg0: tensor<1x1x20xf32>) -> tensor<1x1x2xf32>
// VNNI-FULL: call @harden_ternary_kernel_0(%{{.*}}, %{{.*}}, %{{.*}}) : (tensor<1x20xf32>, tensor<128xi8>, tensor<16xf32>) -> tensor<1x2xf32>
// VNNI-FULL-NOT: torch
// VNNI-FULL: func.func private @harden_ternary_kernel_0({{.*}}attributes {harden.ternary_vnni = {{.*}}numerics = "fixed32"
func.func @vnni(%x: !torch.vtensor<[1,1,20],f32>) -> !torch.vtensor<[1,1,2],f32> {
  %w = torch.vtensor.literal(dense<[[[-110, 85, 5, 86, 85], [74, 85, 6, 90, 101]]]> : tensor<1x2x5xsi8>) : !torch.vtensor<[1,2,5],si8>
  %s = torch.vtensor.literal(dense<[[[0.5], [0.25]]]> : tensor<1x2x1xf32>) : !torch.vtensor<[1,2,1],f32>
  %b = torch.vtensor.literal(dense<[1.0, 2.0]> : tensor<2xf32>) : !torch.vtensor<[2],f32>
  %y = "harden.ternary_linear"(%x, %w, %s, %b) {in_features = 20 : i64, out_features = 2 : i64, group_size = 20 : i64, planes = 1 : i64, scale_kind = "channel", operandSegmentSizes = array<i32: 1, 1, 1, 1>}
      : (!torch.vtensor<[1,1,20],f32>, !torch.vtensor<[1,2,5],si8>, !torch.vtensor<[1,2,1],f32>, !torch.vtensor<[2],f32>) -> !torch.vtensor<[1,1,2],f32>
  return %y : !torch.vtensor<[1,1,2],f32>
}

// -----

// A layer kept in int8 runs on the C kernels with its codes stored in 8 bits (one byte per
// weight: 16 rows x 16 columns = 256 bytes) in decode; the bias is added after the call.
// VNNI-LABEL: func.func @int8_decode
// VNNI: call @harden_ternary_kernel_0({{.*}}) : (tensor<1x5xf32>, tensor<256xi8>, tensor<16xf32>) -> tensor<1x2xf32>
// VNNI: func.func private @harden_ternary_kernel_0({{.*}}code_bits = 8 : i64
// VNNI-NOT: harden.int8_linear
func.func @int8_decode(%x: !torch.vtensor<[1,1,5],f32>) -> !torch.vtensor<[1,1,2],f32> {
  %w = torch.vtensor.literal(dense<[[-127, 5, 0, 64, 127], [3, -3, 100, -100, 1]]> : tensor<2x5xsi8>) : !torch.vtensor<[2,5],si8>
  %s = torch.vtensor.literal(dense<[[0.5], [0.25]]> : tensor<2x1xf32>) : !torch.vtensor<[2,1],f32>
  %b = torch.vtensor.literal(dense<[1.0, 2.0]> : tensor<2xf32>) : !torch.vtensor<[2],f32>
  %y = "harden.int8_linear"(%x, %w, %s, %b) {in_features = 5 : i64, out_features = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 1>}
      : (!torch.vtensor<[1,1,5],f32>, !torch.vtensor<[2,5],si8>, !torch.vtensor<[2,1],f32>, !torch.vtensor<[2],f32>) -> !torch.vtensor<[1,1,2],f32>
  return %y : !torch.vtensor<[1,1,2],f32>
}
