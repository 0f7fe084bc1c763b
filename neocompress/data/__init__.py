"""Data a pass may ask for: named prompt sets (calibration, distillation, evaluation)."""
