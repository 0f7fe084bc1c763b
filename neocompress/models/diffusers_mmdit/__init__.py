"""diffusers' MMDiT transformers (SD3's `SD3Transformer2DModel`, Flux's `FluxTransformer2DModel`) as families."""
