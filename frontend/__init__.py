"""The frontend: the reference Llama, checkpoint formats (one file each), random weights and
the importer from PyTorch to torch-dialect MLIR with its provenance."""
