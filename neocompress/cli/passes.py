"""`neocompress passes list` and `neocompress passes show NAME` (the config schema with defaults and docs)."""

from __future__ import annotations

import json
from typing import get_origin

import click
from pydantic_core import PydanticUndefined
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from neocompress.core.registry import get_pass, known_pass_names


@click.group("passes")
def group() -> None:
    """List passes and show their configuration."""


@group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_passes(as_json: bool) -> None:
    rows = []
    for name in known_pass_names():
        cls = get_pass(name)
        rows.append({"name": name, "version": cls.version, "summary": cls.summary})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("pass", "version", "summary")
    for r in rows:
        table.add_row(escape(r["name"]), str(r["version"]), escape(r["summary"]))
    Console().print(table)


@group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON schema.")
def show(name: str, as_json: bool) -> None:
    """Show the config of pass NAME: every key, its type, default and meaning."""
    cls = get_pass(name)
    if as_json:
        click.echo(json.dumps(cls.Config.model_json_schema(), indent=2))
        return
    console = Console()
    # Cells are escaped: Rich would take "[int]" in "list[int]" for a style tag and drop it.
    console.print(f"[bold]{escape(cls.name)}[/] v{cls.version}: {escape(cls.summary)}")
    if cls.__doc__ or cls.__module__:
        import sys

        doc = (sys.modules[cls.__module__].__doc__ or "").strip()
        if doc:
            console.print(escape(doc))
    table = Table("key", "type", "default", "description")
    for key, field in cls.Config.model_fields.items():
        default = (
            "(required)"
            if field.default is PydanticUndefined and field.default_factory is None
            else (repr(field.default_factory()) if field.default_factory else repr(field.default))
        )
        table.add_row(
            escape(key), escape(type_name(field.annotation)), escape(default), escape(field.description or "")
        )
    console.print(table)
    console.print(f"requires: {', '.join(cls.requires) or '-'}; produces: {', '.join(cls.produces) or '-'}")


def type_name(annotation: object) -> str:
    """How a config field's type reads in `passes show` and the docs: `list[int]`, `int | None`, `Literal[...]`;
    an `Annotated` number type (the shared ranges of `neocompress.core.config_types`) by its base type."""
    import types
    import typing

    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return type_name(typing.get_args(annotation)[0])
    if annotation is type(None):
        return "None"
    if origin is None:
        return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return str(annotation).replace("typing.", "")
    inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
    return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
