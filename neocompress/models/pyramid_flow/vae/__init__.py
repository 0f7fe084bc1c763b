"""Pyramid-Flow's causal video VAE, split into the encoder and decoder components the pipeline graph uses.

State-dict keys and shapes match the public checkpoint (``causal_video_vae/``) exactly: ``CausalVAEEncoder``
holds ``encoder.*`` and ``quant_conv.*``, ``CausalVAEDecoder`` holds ``post_quant_conv.*`` and ``decoder.*``.
"""

from neocompress.models.pyramid_flow.vae.config import CausalVAEConfig
from neocompress.models.pyramid_flow.vae.decoder import CausalVAEDecoder
from neocompress.models.pyramid_flow.vae.encoder import CausalVAEEncoder
from neocompress.models.pyramid_flow.vae.latents import (
    NEODRAGON,
    PYRAMID_FLOW_SD3,
    LatentNorm,
    decode_normalised,
    denormalize_latents,
    normalize_latents,
)

__all__ = [
    "CausalVAEConfig",
    "CausalVAEDecoder",
    "CausalVAEEncoder",
    "LatentNorm",
    "NEODRAGON",
    "PYRAMID_FLOW_SD3",
    "decode_normalised",
    "denormalize_latents",
    "normalize_latents",
]
