"""The compiler core: passes, their registry and context, the pass manager, cache, and instruments."""
