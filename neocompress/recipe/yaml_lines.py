"""Load YAML and remember the line of every value, so errors can point at the line to fix.

Why not a YAML library with round-trip support: PyYAML's composer already gives every node its start mark; we
walk the node tree once and map each path (("passes", 0, "indices") ...) to its 1-based line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from neocompress.core.errors import Problem, RecipeError
from neocompress.recipe.yaml_bounds import check_graph, check_text

PathKey = tuple[str | int, ...]


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate mapping keys instead of keeping the last one silently."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first on line {seen[key]})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.2's floats without a dot (`1e-4`, `2E+3`), which YAML 1.1 (PyYAML) would read as text: a recipe's
# learning rate written the common way is the number it looks like.
_UniqueKeyLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"),
                                       list("-+0123456789"))  # fmt: skip


def _walk(root: yaml.Node, lines: dict[PathKey, int]) -> None:
    """Every path's line (a key's own line, not its value's). Iterative: the graph is bounded by `check_graph`."""
    stack: list[tuple[yaml.Node, PathKey]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in reversed(node.value):
                lines[path + (k.value,)] = k.start_mark.line + 1
                stack.append((v, path + (k.value,)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, path + (i,)) for i, item in reversed(list(enumerate(node.value))))


def _invalid(message: str, filename: str, mark: Any) -> RecipeError:
    return RecipeError([Problem(f"invalid YAML: {message}", file=filename,
                                line=mark.line + 1 if mark is not None else None)])  # fmt: skip


def _construct(loader: _UniqueKeyLoader, node: yaml.Node, filename: str) -> Any:
    """The Python value of the composed document; a scalar its tag cannot hold (`!!float abc`, a date with month
    13) is an error naming that scalar's line."""
    try:
        return loader.construct_document(node)
    except (ValueError, TypeError, OverflowError) as e:
        stack = [node]
        while stack:  # find the scalar that fails, for its line
            n = stack.pop()
            if isinstance(n, yaml.ScalarNode):
                try:
                    _UniqueKeyLoader("").construct_object(n)
                except (ValueError, TypeError, OverflowError, yaml.YAMLError):
                    raise _invalid(f"{n.value!r} is not a valid {n.tag.rsplit(':', 1)[-1]} ({e})", filename,
                                   n.start_mark) from None  # fmt: skip
            elif isinstance(n, yaml.MappingNode):
                stack.extend(x for pair in n.value for x in pair)
            elif isinstance(n, yaml.SequenceNode):
                stack.extend(n.value)
        raise _invalid(str(e), filename, None) from None


def load_yaml_with_lines(text: str, filename: str) -> tuple[Any, dict[PathKey, int]]:
    """The recipe's data and the line of every path in it, within `yaml_bounds`' limits."""
    check_text(text, filename)
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            check_graph(node, filename)
        data = _construct(loader, node, filename) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise _invalid(getattr(e, "problem", None) or str(e), filename, mark) from None
    finally:
        loader.dispose()
    lines: dict[PathKey, int] = {}
    if node is not None:
        _walk(node, lines)
    return data, lines


def line_of(lines: dict[PathKey, int], path: PathKey) -> int | None:
    """The line of `path`, or of its nearest ancestor that exists in the file."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def format_path(path: PathKey) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def read_recipe_file(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError([Problem("recipe file not found", file=str(path))]) from None
    except UnicodeDecodeError as e:
        raise RecipeError([Problem(f"recipe is not UTF-8 text (byte {e.start})", file=str(path))]) from None
    except OSError as e:
        raise RecipeError([Problem(f"cannot read recipe: {e.strerror}", file=str(path))]) from None
