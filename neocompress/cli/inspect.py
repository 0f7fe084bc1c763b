"""`neocompress inspect SOURCE`: components, parameter and buffer counts, and the sampling schedule."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from neocompress.models.family import family_for_source


def inspect_source(source: str, family_name: str | None = None) -> dict:
    family = family_for_source(source, family_name)
    ir = family.skeleton(source)
    family.check_weights(source)  # a truncated, zero-byte or mismatched weight file fails here, from its header
    comps = {
        c.name: {"class": c.class_name, "params": c.num_params(), "buffers": c.num_buffers()}
        for c in ir
        if c.module is not None
    }
    return {
        "family": family.name,
        "source": source,
        "components": comps,
        "total_params": sum(c["params"] for c in comps.values()),
        "scheduler": family.scheduler_summary(ir),
    }


@click.command("inspect")
@click.argument("source")
@click.option("--family", "family_name", default=None, help="Model family (default: from the source).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(source: str, family_name: str | None, as_json: bool) -> None:
    """Describe SOURCE (a builtin name or a checkpoint directory) without loading its weights (their headers are
    checked against the model)."""
    info = inspect_source(source, family_name)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    table = Table("component", "class", "params", "buffers", title=escape(f"{info['source']} ({info['family']})"))
    for name, c in info["components"].items():
        table.add_row(name, c["class"], f"{c['params']:,}", f"{c['buffers']:,}")
    table.add_row("[bold]total[/]", "", f"[bold]{info['total_params']:,}[/]", "")
    console = Console()
    console.print(table)
    s = info["scheduler"]
    if "sigma_start" not in s:  # a family without a pyramidal schedule: print what it reports
        console.print("scheduler: " + ", ".join(f"{k} {v}" for k, v in s.items()))
        return
    console.print(
        f"scheduler: sigma_start {[round(x, 4) for x in s['sigma_start']]}, sigma_end "
        f"{[round(x, 4) for x in s['sigma_end']]}, steps {s['steps']}, NFE {s['nfe']} "
        f"for {s['num_units']} latent frames"
    )
