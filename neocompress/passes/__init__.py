"""Built-in passes, one technique per module, imported lazily by name (see core.registry)."""

BUILTIN_PASSES: dict[str, str] = {
    "block_prune": "neocompress.passes.block_prune",
    "remove_blocks": "neocompress.passes.remove_blocks",
    "quantize": "neocompress.passes.quantize",
    "encoder_substitution": "neocompress.passes.encoder_substitution",
    "decoder_swap": "neocompress.passes.decoder_swap",
    "step_distill": "neocompress.passes.step_distill",
}
