"""The `neocompress` command line: one module per command."""
