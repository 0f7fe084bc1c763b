"""Recipe validation: unknown keys, wrong types, unknown passes with a suggestion, all at once with lines."""

from __future__ import annotations

import pytest

from neocompress.core.errors import RecipeError
from neocompress.recipe.load import parse_recipe

GOOD = """\
model:
  family: pyramid-flow
  source: builtin:pyramid-flow-sd3
passes:
  - name: remove_blocks
    indices: [3, 7, 11, 15, 19, 21]
output: out/pruned
"""


def test_minimal_recipe_parses_with_defaults():
    r = parse_recipe(GOOD, "r.yaml")
    assert [p.name for p in r.passes] == ["remove_blocks"]
    resolved = r.resolved()
    assert resolved["model"]["dtype"] == "float32" and resolved["model"]["seed"] == 0
    assert resolved["passes"][0] == {
        "name": "remove_blocks",
        "indices": [3, 7, 11, 15, 19, 21],
        "component": "denoiser",
    }


def test_several_errors_are_reported_together_with_lines():
    text = """\
model:
  family: pyramid-flow
  source: builtin:tiny
  dtyp: float32
passes:
  - name: remove_blokcs
    indices: [1]
  - name: remove_blocks
    indices: "three"
  - name: remove_blocks
    indices: [1]
    colour: red
output: out/x
"""
    with pytest.raises(RecipeError) as e:
        parse_recipe(text, "bad.yaml")
    probs = {(p.path, p.line): p.message for p in e.value.problems}
    assert probs[("model.dtyp", 4)] == "unknown key 'dtyp'"
    assert "Did you mean 'remove_blocks'" in probs[("passes[0].name", 6)]
    assert ("passes[1].indices", 9) in probs and "valid list" in probs[("passes[1].indices", 9)]
    assert probs[("passes[2].colour", 12)] == "unknown key 'colour'"
    assert len(e.value.problems) == 4
    assert "bad.yaml:4 (model.dtyp)" in str(e.value)


def test_missing_required_sections():
    with pytest.raises(RecipeError) as e:
        parse_recipe("passes: []\n", "r.yaml")
    msgs = sorted(p.message for p in e.value.problems)
    assert msgs == ["missing required key 'model'", "missing required key 'output'"]


def test_invalid_yaml_and_duplicate_keys_point_at_the_line():
    with pytest.raises(RecipeError) as e:
        parse_recipe("model:\n  source: [unclosed\noutput: x\n", "r.yaml")
    assert e.value.problems[0].line is not None
    with pytest.raises(RecipeError) as e:
        parse_recipe("model:\n  source: a\n  source: b\noutput: x\n", "r.yaml")
    assert "duplicate key 'source'" in str(e.value) and e.value.problems[0].line == 3


def test_pass_config_value_checks():
    text = GOOD.replace("[3, 7, 11, 15, 19, 21]", "[3, 3, -1]")
    with pytest.raises(RecipeError) as e:
        parse_recipe(text, "r.yaml")
    msg = str(e.value)
    assert "indices must be >= 0" in msg and "r.yaml:6" in msg


def test_generate_frames_must_fit_the_vae():
    with pytest.raises(RecipeError) as e:
        parse_recipe(GOOD + "generate:\n  frames: 10\n", "r.yaml")
    assert "1 + 8k" in str(e.value) and e.value.problems[0].path == "generate.frames"
