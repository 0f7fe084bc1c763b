"""Analysis: parameter counts, FLOPs, fidelity metrics and the pictures in reports."""
