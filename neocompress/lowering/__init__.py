"""Lowering: component graphs rewritten into the static, traceable form that quantization and export need."""
