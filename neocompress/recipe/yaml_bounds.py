"""Bounds on what a recipe's YAML may cost, checked before anything recurses over it or expands it.

Why: a recipe is untrusted input, and PyYAML will happily build what the text describes. Ten-fold aliases six
levels deep turn 4 KB into millions of nodes (seconds and gigabytes to validate); a few hundred levels of nesting
exhaust Python's stack inside PyYAML's recursive composer; an alias that contains itself makes every walk of the
tree loop; a list or mapping used as a key cannot be named in an error. So: the text's size and its nesting
depth are bounded from the token stream (which PyYAML scans without recursion) before the composer runs, and
the composed node graph is walked once, iteratively, to bound its size and depth after alias expansion, refuse
recursive aliases and non-scalar keys. Each refusal is a `RecipeError` with the line and the bound it hit.
"""

from __future__ import annotations

import yaml

from neocompress.core.errors import Problem, RecipeError

MAX_BYTES = 256 * 1024  # the shipped recipes are a few KB
MAX_DEPTH = 32  # nested mappings and lists, aliases expanded (a recipe needs about 6)
MAX_NODES = 20_000  # values after alias expansion (the largest shipped recipe has a few hundred)

_OPEN = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
         yaml.FlowSequenceStartToken)  # fmt: skip
_CLOSE = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def _refuse(message: str, filename: str, mark: yaml.Mark | None) -> RecipeError:
    return RecipeError([Problem(message, file=filename, line=mark.line + 1 if mark is not None else None)])


def check_text(text: str, filename: str) -> None:
    """Size and nesting of the text, from the token stream (no recursion, nothing built)."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_BYTES:
        raise _refuse(f"recipe is {size:,} bytes; a recipe may be at most {MAX_BYTES:,}", filename, None)
    _check_flow_depth(text, filename)
    depth = 0
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, _OPEN):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _refuse(f"nesting deeper than {MAX_DEPTH} levels", filename, token.start_mark)
            elif isinstance(token, _CLOSE):
                depth -= 1
    except yaml.YAMLError:
        return  # the composer reports a malformed text with its own message and line


def _check_flow_depth(text: str, filename: str) -> None:
    """Unclosed `[` / `{` outside quotes and comments, in one pass over the characters. Needed before the token
    scan: PyYAML keeps scanning ahead while a flow collection could still turn out to be a mapping key, so
    `[[[[...` thousands deep costs it quadratic time before the first token comes back."""
    depth, quote, line = 0, "", 1
    previous = "\n"
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\n":
            line += 1
        if quote:
            if c == "\\" and quote == '"':
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"" and previous in " \t\n[{,:-":
            quote = c
        elif c == "#" and previous in " \t\n":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise RecipeError([Problem(f"nesting deeper than {MAX_DEPTH} levels", file=filename, line=line)])
        elif c in "]}":
            depth = max(depth - 1, 0)
        previous = c
        i += 1


def check_graph(root: yaml.Node, filename: str) -> None:
    """The composed node graph, aliases expanded: at most MAX_NODES values, MAX_DEPTH levels, no alias inside
    itself, only plain values as keys. One iterative depth-first walk; shared (aliased) nodes are sized once."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, expanded depth)
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        children = _children(node, filename)
        if finished:
            size = 1 + sum(sizes[id(c)][0] for c in children)
            depth = 1 + max((sizes[id(c)][1] for c in children), default=0)
            if size > MAX_NODES:
                raise _refuse(f"the recipe expands to more than {MAX_NODES:,} values (aliases expanded)", filename,
                              node.start_mark)  # fmt: skip
            if depth > MAX_DEPTH:
                raise _refuse(f"nesting deeper than {MAX_DEPTH} levels (aliases expanded)", filename, node.start_mark)
            sizes[id(node)] = (size, depth)
            on_path.discard(id(node))
            continue
        if id(node) in sizes:
            continue
        if id(node) in on_path:
            raise _refuse("an alias refers to a value that contains it (a recursive alias)", filename,
                          node.start_mark)  # fmt: skip
        on_path.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def _children(node: yaml.Node, filename: str) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        out = []
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise _refuse("a key must be a plain value (a name or a number), not a list or a mapping", filename,
                              key.start_mark)  # fmt: skip
            out += [key, value]
        return out
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []
