"""`neocompress plan RECIPE`: the structural effect of every pass on the weightless model, in seconds."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from neocompress.core.errors import RecipeError
from neocompress.models.family import get_family
from neocompress.quant.precision import simulated_precision
from neocompress.recipe import load_recipe
from neocompress.recipe.load import check_against_model


def plan_recipe(recipe_path: str) -> dict:
    r = load_recipe(recipe_path, check_model=False)

    def step(name: str | None, ir) -> dict:  # called by validation right after each pass is planned
        family = get_family(ir.family)
        here = family.video_setting(ir, r.model.generate)  # a pass may change the schedule (step_distill)
        comps = {}
        for c in ir:
            if c.module is None:
                continue
            comps[c.name] = {"params": c.num_params(), "flops": family.component_flops(ir, c.name, here),
                             "precision": simulated_precision(c) or "float"}  # fmt: skip
        return {"pass": name, "components": comps, "total_params": sum(v["params"] for v in comps.values()),
                "total_flops": sum(v["flops"] for v in comps.values()),
                "flops_per_video": float(sum(v["flops"] for v in comps.values())), "nfe": int(here["nfe"]),
                "schedule": here["schedule"], "video": here}  # fmt: skip

    problems = check_against_model(r, observe=step)  # validation plans every pass on the weightless skeleton
    if problems:
        raise RecipeError(problems)
    steps = [s for _, s in r.planned]
    video = steps[0].pop("video")
    for s in steps[1:]:
        s.pop("video")
    return {"recipe": recipe_path, "video": video, "steps": steps}


@click.command("plan")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(recipe: str, as_json: bool) -> None:
    """Show parameters and FLOPs per component after each pass of RECIPE, and the precision a quantize pass gives
    it (no weights are loaded)."""
    plan = plan_recipe(recipe)
    if as_json:
        click.echo(json.dumps(plan, indent=2))
        return
    console = Console()
    v = plan["video"]
    console.print(f"FLOPs per video: {v['frames']} frames at {v['height']}x{v['width']}, schedule {v['schedule']}")
    names = list(dict.fromkeys(n for s in plan["steps"] for n in s["components"]))
    steps = [s["pass"] or "(base)" for s in plan["steps"]]
    table = Table(
        "component",
        *[f"{i}: {name}" for i, name in enumerate(steps)],
        caption="cells: parameters / FLOPs per video (/ precision, once quantized)",
    )
    for n in names:
        cells = []
        for s in plan["steps"]:
            c = s["components"].get(n)
            precision = "" if c is None or c["precision"] == "float" else f" / {c['precision']}"
            cells.append("-" if c is None else f"{_si(c['params'], params=True)} / {_si(c['flops'])}{precision}")
        table.add_row(n, *cells)
    table.add_row(
        "[bold]total[/]",
        *[f"[bold]{_si(s['total_params'], params=True)} / {_si(s['total_flops'])}[/]" for s in plan["steps"]],
    )
    table.add_row("NFE per video", *[str(s["nfe"]) for s in plan["steps"]])
    console.print(table)


def _si(x: float, params: bool = False) -> str:
    """1.35B parameters, 349T FLOPs."""
    for unit, scale in (("P", 1e15), ("T", 1e12), ("B" if params else "G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"
