"""Configs say their ranges (issue 17): every numeric field of the recipe schema and of every pass has a lower
bound, floats are finite, strings and booleans are not coerced into numbers (while `1e-4` is the number it looks
like), numbers too large to run are refused with their line, DistilT5's T5 overrides are checked key by key, and
an input file or folder that does not exist is refused at validation (unless the model can only be planned)."""

from __future__ import annotations

import types
import typing
from pathlib import Path

import annotated_types as at
import pytest
from pydantic import BaseModel

from neocompress.core.errors import RecipeError
from neocompress.core.registry import get_pass, known_pass_names
from neocompress.recipe import load_recipe
from neocompress.recipe.schema import RecipeModel


def _bounds(meta: list) -> tuple[object, object]:
    flat = []
    for c in meta:
        flat += list(c.metadata) if hasattr(c, "metadata") else [c]
    low = next((c for c in flat if isinstance(c, at.Ge | at.Gt)), None)
    high = next((c for c in flat if isinstance(c, at.Le | at.Lt)), None)
    return low, high


def _numeric_leaves(model: type[BaseModel], seen: set, out: list) -> None:
    if model in seen:
        return
    seen.add(model)
    for name, f in model.model_fields.items():
        _leaves(f.annotation, list(f.metadata), f"{model.__name__}.{name}", seen, out)


def _leaves(ann, meta, where, seen, out) -> None:
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        base, *more = typing.get_args(ann)
        return _leaves(base, meta + more, where, seen, out)
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(ann):
            _leaves(a, meta, where, seen, out)
    elif origin in (list, tuple):
        for a in typing.get_args(ann):
            if a is not Ellipsis:
                _leaves(a, [], where + "[]", seen, out)
    elif origin is dict:
        _leaves(typing.get_args(ann)[1], [], where + "{}", seen, out)
    elif isinstance(ann, type) and issubclass(ann, BaseModel):
        _numeric_leaves(ann, seen, out)
    elif ann in (int, float):
        out.append((where, _bounds(meta)))


def _configs() -> list[type[BaseModel]]:
    return [RecipeModel] + [get_pass(n).Config for n in known_pass_names()]


def test_every_numeric_field_has_a_lower_bound_and_floats_are_finite() -> None:
    out: list = []
    seen: set = set()
    for config in _configs():
        _numeric_leaves(config, seen, out)
    assert len(out) > 80
    assert [w for w, (low, _) in out if low is None] == []
    assert all(m.model_config.get("allow_inf_nan") is False for m in seen), [
        m.__name__ for m in seen if m.model_config.get("allow_inf_nan") is not False]


def _validate(tmp: Path, train: str, extra: str = "") -> None:
    f = tmp / "r.yaml"
    f.write_text("model: {source: builtin:tiny}\ndata:\n  prompts:\n    distillation: {source: builtin:world}\n"
                 f"passes:\n  - name: encoder_substitution\n    mode: trainable\n    train: {{{train}}}\n{extra}"
                 f"output: {tmp / 'out'}\n")  # fmt: skip
    load_recipe(f)


@pytest.mark.parametrize(("value", "message"), [
    ('steps: "100"', "valid integer"), ("steps: true", "valid integer"), ("steps: 3.0", "valid integer"),
    ("lr: .inf", "not a finite number"), ("lr: .nan", "not a finite number"), ("lr: 2", "less than or equal"),
    ("steps: 9223372036854775808", "out of range"), ("lr: 1e300", "out of range"), ("steps: 2001-01-01", "date"),
    ("steps: 0", "greater than or equal"),
])  # fmt: skip
def test_a_bad_number_is_refused_at_its_line(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(RecipeError) as err:
        _validate(tmp_path, value)
    problem = err.value.problems[0]
    assert message in problem.message and problem.line == 8 and problem.path.startswith("passes[0].train"), problem


def test_a_float_without_a_dot_is_a_number(tmp_path: Path) -> None:
    _validate(tmp_path, "steps: 10, lr: 1e-4")


@pytest.mark.parametrize(("override", "message"), [
    ("num_heads: -0.0", "must be an integer"), ("d_model: 1e30", "out of range"), ("num_layer: 2", "num_layers"),
    ("d_ff: 0", "must be in"), ("feed_forward_proj: swish", "must be one of"), ("vocab_size: 10", "not a T5"),
])  # fmt: skip
def test_distil_t5_overrides_are_checked_key_by_key(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(RecipeError) as err:
        _validate(tmp_path, "steps: 10", f"    student: {{encoder: {{{override}}}}}\n")
    problem = err.value.problems[0]
    assert message in problem.message and "student.encoder" in problem.path, problem


def test_an_input_path_that_does_not_exist_is_refused_unless_the_model_can_only_be_planned(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as err:
        _validate(tmp_path, "steps: 10", f"    student: {{checkpoint: {tmp_path / 'missing'}}}\n")
    assert err.value.problems[0].path == "passes[0].student.checkpoint"
    assert "does not exist" in err.value.problems[0].message
    load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "neodragon.yaml")  # weightless: plan only


def test_a_prompt_source_too_long_for_the_file_system_is_a_recipe_error(tmp_path: Path) -> None:
    """Found by the 10,000-mutant campaign: `data.prompts.*.source` of 5,000 characters raised OSError."""
    f = tmp_path / "r.yaml"
    f.write_text(f"model: {{source: builtin:tiny}}\ndata:\n  prompts:\n    p: {{source: {'x' * 5000}}}\npasses: []\n"
                 f"output: {tmp_path / 'out'}\n")  # fmt: skip
    with pytest.raises(RecipeError) as err:
        load_recipe(f)
    assert "not a usable path" in err.value.problems[0].message and err.value.problems[0].line == 4
