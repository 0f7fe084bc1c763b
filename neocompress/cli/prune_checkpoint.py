"""`neocompress prune-checkpoint SRC OUT --remove 3,5`: cut blocks out of a denoiser folder by streaming tensors.

For a checkpoint too large to load, or when the blocks to cut are already known (from a `block_prune` report):
no weights are loaded, peak memory is about one output shard (see `neocompress.prune.streaming`).
"""

from __future__ import annotations

import json

import click
from rich.console import Console

from neocompress.prune.streaming import stream_prune_denoiser


def _indices(value: str) -> list[int]:
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"want comma-separated block indices, got '{value}'") from None


@click.command("prune-checkpoint")
@click.argument("source", type=click.Path(file_okay=False, exists=True))
@click.argument("output", type=click.Path(file_okay=False))
@click.option("--remove", required=True, help="Comma-separated 0-based block indices to remove, e.g. 3,5,7.")
@click.option("--shard-mb", type=click.IntRange(min=1), default=1024, show_default=True, help="Output shard size.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(source: str, output: str, remove: str, shard_mb: int, force: bool, as_json: bool) -> None:
    """Remove blocks from the Pyramid-Flow denoiser folder SOURCE into a new folder OUTPUT, streaming tensors."""
    result = stream_prune_denoiser(source, output, _indices(remove), shard_bytes=shard_mb << 20, force=force)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    converted = " (new last block converted to context_pre_only)" if result.last_block_converted else ""
    Console().print(
        f"[green]wrote[/] {result.output}: removed {result.removed}{converted}; params "
        f"{result.params_before:,} -> {result.params_after:,}; {result.bytes_written / 2**20:.0f} MB in "
        f"{result.shards} shard(s)"
    )
