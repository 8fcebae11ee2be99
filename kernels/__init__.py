"""The ternary kernels: the contract between the lowering and the IREE backend (attribute
names, the kernel object, the CPU features it needs), the weight layouts and MLIR templates of
the exact linalg kernel and of the C (AVX-512 VNNI) kernel, and linalg builders. The C source
(ternary_vnni.c) sits beside them."""
