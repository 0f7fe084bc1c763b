"""Built-in passes, one technique per module, imported lazily by name (see core.registry)."""

BUILTIN_PASSES: dict[str, str] = {
    "remove_blocks": "neocompress.passes.remove_blocks",
}
