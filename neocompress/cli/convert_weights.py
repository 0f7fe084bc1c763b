"""`neocompress convert-weights FOLDER`: pickle weight files (`*.bin`, `*.pt`) to safetensors, once, on request.

neocompress never unpickles while it works (see `neocompress.models.pickle_weights`); a folder that has only
pickle weights is refused with a pointer here. This command is the one place a pickle is read, with
`torch.load(weights_only=True)`, and only because the user names the folder and trusts its files.
"""

from __future__ import annotations

import click
from rich.console import Console

from neocompress.models.pickle_weights import convert_folder


@click.command("convert-weights")
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--force", is_flag=True, help="Replace safetensors files that exist already.")
def command(folders: tuple[str, ...], force: bool) -> None:
    """Write the pickle weight files of each FOLDER (a component folder, e.g. text_encoder_3/) as safetensors
    beside them. Only for files you trust: reading a pickle can run code, even with weights_only."""
    console = Console(stderr=True)
    for folder in folders:
        for source, written in convert_folder(folder, force=force):
            console.print(f"[green]wrote[/] {written} (from {source.name})")
    console.print("the pickle files are left in place; remove them once the safetensors load")
