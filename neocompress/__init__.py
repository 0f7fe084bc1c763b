"""neocompress: compress text-to-video diffusion transformers for the Qualcomm Hexagon NPU."""

__version__ = "0.1.0"
