"""Run-folder layout and crash-safe file writes: the file-system concerns every layer shares."""
