"""The linear kernels: the contract between the lowering and the IREE backend (attribute
names, the kernel object, the CPU features it needs), the weight layouts and MLIR templates of
the exact linalg ternary kernel and of the C (AVX-512 VNNI or AVX2) integer-code kernels, and linalg
builders. The C source (vnni_linear.c) sits beside them."""
