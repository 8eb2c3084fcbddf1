"""Transform: pure functions from runs to typed rows, column names, types and frames."""
