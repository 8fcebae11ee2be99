"""The IREE backend: compiling lowered modules for the CPU (with a content-addressed cache),
the custom dispatches of the C kernels, loading modules for execution and the engines that
run prefill/decode on IREE or PyTorch."""
