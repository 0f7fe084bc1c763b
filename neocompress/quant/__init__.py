"""Post-training quantization with AIMET: precisions, calibration capture, simulated components, SQNR."""
