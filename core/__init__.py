"""Context, diagnostics and source handling shared by the harden tools."""
