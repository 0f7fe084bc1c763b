"""Load and validate a recipe completely before anything heavy runs.

Validation happens in three layers, and every problem from every layer is reported together with its YAML path
and line: (1) the recipe schema, (2) each pass entry against its pass's Config (unknown pass names get the
nearest known name), (3) each pass's semantic `check` against the model's weightless skeleton, with the
structural effect of the passes before it applied, so e.g. a block index that an earlier pass removed is caught.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from neocompress.core.errors import NeocompressError, Problem, RecipeError
from neocompress.core.pass_base import Pass
from neocompress.core.paths import shown_path, unusable_reason
from neocompress.core.registry import UnknownPassError, get_pass
from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.recipe.schema import RecipeModel
from neocompress.recipe.values import value_problems
from neocompress.recipe.yaml_lines import PathKey, format_path, line_of, load_yaml_with_lines, read_recipe_file


@dataclass
class Recipe:
    """A validated recipe: the schema model, its pass instances, and where it came from."""

    model: RecipeModel
    passes: list[Pass]
    file: str
    # What validation saw of the weightless IR before and after each pass (`observe`'s answer; by default the
    # IR's summary), so `plan` and `apply` need not redo it.
    planned: list[tuple[str | None, Any]] = field(default_factory=list)
    # The line of every YAML path, so the model check's problems point at the line to fix.
    lines: dict[PathKey, int] = field(default_factory=dict, repr=False)

    def resolved(self) -> dict[str, Any]:
        """The recipe with every default filled in (what the output records)."""
        out = self.model.model_dump(mode="json")
        out["passes"] = [{"name": p.name, **p.config.model_dump(mode="json")} for p in self.passes]
        return out

    def resolved_yaml(self) -> str:
        return yaml.safe_dump(self.resolved(), sort_keys=False)


def _pydantic_problems(err: ValidationError, prefix: PathKey, lines: dict[PathKey, int], file: str) -> list[Problem]:
    problems = []
    for e in err.errors():
        loc: PathKey = prefix + tuple(x for x in e["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        msg = e["msg"].replace("valid array", "valid list").replace("be an object", "be a mapping (key: value)")
        if e["type"] == "extra_forbidden":
            msg = f"unknown key '{loc[-1]}'"
        elif e["type"] == "missing":
            msg = f"missing required key '{loc[-1]}'"
        elif "input" in e and e["type"] not in ("extra_forbidden",):
            msg = f"{msg} (got {e['input']!r})"
        problems.append(Problem(msg, file=file, path=format_path(loc), line=line_of(lines, loc)))
    return problems


def parse_recipe(text: str, file: str = "<recipe>") -> Recipe:
    """Layers (1) and (2): schema and pass configs. Raises RecipeError with every problem found."""
    data, lines = load_yaml_with_lines(text, file)
    if not isinstance(data, dict):
        raise RecipeError(
            [Problem("a recipe must be a YAML mapping with 'model', 'passes' and 'output'", file=file, line=1)]
        )
    problems = value_problems(data, lines, file)
    if problems:  # a date, a set, infinity or a number that cannot run: nothing below can mean it
        raise RecipeError(problems)
    model: RecipeModel | None = None
    try:
        model = RecipeModel.model_validate_json(json.dumps(data), strict=True)
    except ValidationError as e:
        problems += _pydantic_problems(e, (), lines, file)

    passes: list[Pass] = []
    raw_passes = data.get("passes") or []
    if isinstance(raw_passes, list):
        for i, entry in enumerate(raw_passes):
            where: PathKey = ("passes", i)
            if not isinstance(entry, dict) or "name" not in entry:
                problems.append(
                    Problem(
                        "each pass needs a 'name' (e.g. '- name: remove_blocks')",
                        file=file,
                        path=format_path(where),
                        line=line_of(lines, where),
                    )
                )
                continue
            try:
                cls = get_pass(str(entry["name"]))
            except UnknownPassError as e:
                problems.append(
                    Problem(
                        str(e), file=file, path=format_path(where + ("name",)), line=line_of(lines, where + ("name",))
                    )
                )
                continue
            cfg = {k: v for k, v in entry.items() if k != "name"}
            try:
                passes.append(cls(cls.Config.model_validate_json(json.dumps(cfg), strict=True)))
            except ValidationError as e:
                problems += _pydantic_problems(e, where, lines, file)
    if problems or model is None:
        raise RecipeError(problems)
    return Recipe(model=model, passes=passes, file=file, lines=lines)


Observe = Callable[[str | None, PipelineIR], Any]
# What a pass's check or plan raises on a value its config let through (a step count the scheduler refuses, a
# shape torch cannot build): reported at the pass's path like any other problem.
UNPLANNABLE = (ValueError, TypeError, RuntimeError, ArithmeticError)


def _summary(_name: str | None, ir: PipelineIR) -> Any:
    return ir.summary()


def check_against_model(recipe: Recipe, lines: dict[PathKey, int] | None = None,
                        observe: Observe = _summary) -> list[Problem]:  # fmt: skip
    """Layer (3): the model source, the data, the `generate:` section, and every pass on the weightless skeleton
    in recipe order, planned in place (one skeleton, no copies: validating a 2B recipe stays well under a
    second). On success `recipe.planned` holds `observe(pass name, IR)` before and after each pass."""
    from neocompress.core.context import PassContext
    from neocompress.data.prompts import read_prompt_source
    from neocompress.models.family import get_family

    lines = lines if lines is not None else recipe.lines
    m = recipe.model

    def problem(message: str, loc: PathKey) -> Problem:
        return Problem(message, file=recipe.file, path=format_path(loc), line=line_of(lines, loc))

    try:
        family = get_family(m.model.family)
        family.check_source(m.model.source)
        ir = family.skeleton(m.model.source)
        family.check_weights(m.model.source)  # every weight file's header against the model, no tensor read
    except NeocompressError as e:
        return [problem(str(e), ("model", "source"))]
    problems: list[Problem] = []
    for name, prompt_set in m.data.prompts.items():
        try:
            read_prompt_source(prompt_set.source)
        except NeocompressError as e:
            problems.append(problem(str(e), ("data", "prompts", name, "source")))
    refusal = family.minibench_refusal()
    if m.evaluate is not None and refusal:
        problems.append(problem(refusal, ("evaluate",)))
    if m.generate is not None:
        for key, message in family.check_generate(ir, m.generate).items():
            problems.append(problem(message, ("generate", key)))
    profiles, target_problems = _check_targets(m)
    problems += [problem(msg, loc) for msg, loc in target_problems]
    if m.all_targets() and family.name != "pyramid-flow":  # lowering builds the pyramid-flow pipeline's graphs
        where = ("target",) if m.target is not None else ("targets",)
        problems.append(problem(f"lowering supports the pyramid-flow family so far, not '{family.name}'", where))
    ctx = PassContext.for_planning(seed=m.model.seed, target=[t.model_dump() for t in m.all_targets()] or None)
    planned: list[tuple[str | None, Any]] = [(None, observe(None, ir))]
    for i, p in enumerate(recipe.passes):
        for path, name in p.data_needs().items():
            if name not in m.data.prompts:
                defined = ", ".join(sorted(m.data.prompts)) or "none"
                loc = ("passes", i, *path.split("."))
                problems.append(
                    problem(f"{p.name}: needs data.prompts.{name}, which the recipe does not define ({defined})", loc)
                )
        try:
            found = p.check(ir)
        except NeocompressError as e:
            found = [Problem(str(e))]
        except UNPLANNABLE as e:
            found = [Problem(f"these settings cannot be checked against the model: {type(e).__name__}: {e}")]
        for profile in profiles:  # what a target device cannot run fails here, not on upload
            for prob in p.target_problems(profile):
                problems.append(problem(f"{p.name}: {prob.message}", ("passes", i, *(prob.path or "").split("."))))
        if family.has_weights(m.model.source):  # a weightless source can only be planned: paths may come later
            found += _missing_inputs(p)
        for prob in found:
            loc: PathKey = ("passes", i) + tuple(x for x in (prob.path or "").split(".") if x)
            problems.append(problem(f"{p.name}: {prob.message}", loc))
        if found:
            break  # later passes would be checked against a structure this one cannot produce
        try:
            ir = p.plan(ir, ctx).ir
        except NeocompressError as e:
            problems.append(problem(f"{p.name}: {e}", ("passes", i)))
            break
        except UNPLANNABLE as e:
            problems.append(problem(f"{p.name}: these settings cannot be planned on the model: "
                                    f"{type(e).__name__}: {e}", ("passes", i)))  # fmt: skip
            break
        planned.append((p.name, observe(p.name, ir)))
    if not problems:
        recipe.planned = planned
    return problems


def _missing_inputs(p: Pass) -> list[Problem]:
    """The pass's input files and folders that are not there (a builtin: name is the pass's to resolve)."""
    out = []
    for where, value in p.input_paths().items():
        if not value or value.startswith("builtin:"):
            continue
        if unusable_reason(value) or not Path(value).exists():
            out.append(Problem(f"'{shown_path(value)}' does not exist", path=where))
    return out


def _check_targets(m: Any) -> tuple[list[Any], list[tuple[str, PathKey]]]:
    """The device profile of every hexagon target (its `device`), and what is wrong with the target sections."""
    from neocompress.targets.hexagon.devices import device_profile

    problems: list[tuple[str, PathKey]] = []
    profiles = []
    if m.target is not None and m.targets:
        problems.append(("give either `target` or `targets`, not both", ("target",)))
    entries = [(("target",), m.target)] if m.target is not None else []
    entries += [(("targets", i), t) for i, t in enumerate(m.targets)]
    folders: dict[str, PathKey] = {}
    for loc, t in entries:
        if t.folder() in folders:
            problems.append((f"two targets write {t.folder()}: give one an `output`", (*loc, "output")))
        folders[t.folder()] = loc
        if t.name != "hexagon":
            for key in ("device", "also_compile", "components"):
                if getattr(t, key):
                    problems.append((f"`{key}` is a hexagon target option; the {t.name} target has none", (*loc, key)))
            continue
        if t.device is None:
            problems.append(("the hexagon target needs a device, e.g. 'snapdragon-8-elite'", loc))
        else:
            try:
                profiles.append(device_profile(t.device))
            except NeocompressError as e:
                problems.append((str(e), (*loc, "device")))
        for j, name in enumerate(t.also_compile):
            try:
                device_profile(name)
            except NeocompressError as e:
                problems.append((str(e), (*loc, "also_compile", j)))
    return profiles, problems


def load_recipe(path: str | Path, *, check_model: bool = True, observe: Observe = _summary) -> Recipe:
    """Read, parse and fully validate a recipe file; raise RecipeError listing every problem. `observe` says
    what `recipe.planned` keeps of each planned step."""
    file = str(path)
    text = read_recipe_file(Path(path))
    recipe = parse_recipe(text, file)
    if check_model:
        problems = check_against_model(recipe, observe=observe)
        if problems:
            raise RecipeError(problems)
    return recipe
