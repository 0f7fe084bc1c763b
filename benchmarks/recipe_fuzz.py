"""The recipe fuzz campaign (issue 17): `python benchmarks/recipe_fuzz.py [--count 10000]`.

Mutates every shipped recipe (tests/recipe/fuzz.py) and validates each mutant as `neocompress validate` does:
every outcome must be a RecipeError naming the file, line and path, or an accepted recipe with every number in
range. Writes the counts, the slowest validation and the peak traced memory (every 10th mutant) under
`recipe_fuzz` in benchmarks/results.json, and exits 1 if anything else escaped or a validation took a second.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results.json")
    args = parser.parse_args(argv)
    from neocompress.recipe import load_recipe
    from tests.recipe.fuzz import RECIPES, Tally, judge, mutants

    load_recipe(RECIPES[0])  # imports are not a validation's cost
    tally = Tally()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        for i, (origin, text) in enumerate(mutants(args.count, args.seed)):
            tally.add(judge(text, Path(work), origin, memory=i % 10 == 0))
    record = {"mutants": args.count, "seed": args.seed, "recipes": [p.name for p in RECIPES], **tally.counts,
              "slowest_validation_s": round(tally.slowest_s, 3), "peak_traced_mb": round(tally.peak_mb, 1),
              "wall_s": round(time.perf_counter() - start, 1), "unexpected_examples": tally.unexpected}  # fmt: skip
    results = json.loads(args.output.read_text()) if args.output.is_file() else {}
    results["recipe_fuzz"] = record
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "recipes"}, indent=2))
    return 0 if tally.counts["unexpected"] == 0 and tally.slowest_s < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
