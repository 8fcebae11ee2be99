"""What every part of harden shares: diagnostics, source files, atomic file writes, progress
display, tensor types, graph walking, weights as numpy, and the pass framework."""
