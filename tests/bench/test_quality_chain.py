"""benchmarks/quality_chain.py on a small chain: a row per pass with MiniBench, the paired difference from the
step before, NFE, blocks and parameters; the issue's bars computed from those numbers; the table written
between its markers (replacing an older one, keeping the rest of the file)."""

from __future__ import annotations

import json
from pathlib import Path

from neocompress.core.apply_run import apply_recipe
from neocompress.recipe import load_recipe
from tests.conftest import load_script


def _chain():
    return load_script("benchmarks/quality_chain.py")


def test_the_chain_table_has_a_row_per_pass_with_costs_and_checks(tmp_path: Path) -> None:
    f = tmp_path / "chain.yaml"
    f.write_text("model:\n  source: builtin:tiny\n"
                 "data:\n  prompts:\n    calibration: {source: builtin:world, count: 2}\n"
                 "passes:\n  - name: block_prune\n    calibration: {count: 2, first: [1, 1, 1], later: [1, 1, 1]}\n"
                 "    remove: 2\n  - name: step_distill\n    prompts: calibration\n    samples: 4\n    heldout: 1\n"
                 "    heldout_seeds: 1\n    teacher: {first: [1, 1, 1], later: [1, 1, 1]}\n"
                 "    train: {steps: 2, batch_size: 2, lr: 1.0e-5, warmup_steps: 0}\n"
                 "evaluate: {prompts: 8, seed: 0, per_pass: true}\n"
                 f"output: {tmp_path / 'out'}\n")  # fmt: skip
    cache = tmp_path / "cache"
    apply_recipe(load_recipe(f), cache_dir=cache)
    results = tmp_path / "results.md"
    results.write_text("# results\n\nkept\n\n<!-- quality-chain:start -->\nold\n<!-- quality-chain:end -->\n\n"
                       "also kept\n")
    readme = tmp_path / "README.md"
    readme.write_text("# tool\n\n<!-- quality-chain:start -->\nstale\n<!-- quality-chain:end -->\n")
    chain = _chain()
    args = ["--from-output", str(tmp_path / "out"), "--cache", str(cache), "--output", str(tmp_path / "c.json"),
            "--markdown", str(results), "--readme", str(readme)]  # fmt: skip
    assert chain.main(args) == 0
    data = json.loads((tmp_path / "c.json").read_text())
    steps = [r["step"] for r in data["rows"]]
    assert steps == ["base", "block_prune", "step_distill"]
    costs = [r["cost"] for r in data["rows"]]
    assert [c["blocks"] for c in costs] == [6, 4, 4] and [c["nfe"] for c in costs] == [180, 180, 6]
    assert costs[1]["params"] < costs[0]["params"]
    assert data["checks"]["block_evaluation_reduction"] == 180 * 6 / (6 * 4) and data["checks"]["reduction_ok"]
    assert data["differences"][0] is None and "interval" in data["differences"][1]["total"]
    first = data["rows"][0]["minibench"]
    assert abs(data["checks"]["retention"] - data["rows"][-1]["minibench"]["total"] / first["total"]) < 1e-9
    assert [c["pass"] for c in data["checks"]["per_pass"]] == ["block_prune", "step_distill"]
    text = results.read_text()
    assert "old" not in text and "kept" in text and "also kept" in text
    assert "| block_prune |" in text and "NFE x blocks" in text and "retention" in text
    front = readme.read_text()  # the README's copy of the table, the same one
    assert "stale" not in front and front.startswith("# tool") and "| block_prune |" in front


def test_a_pass_read_from_the_cache_says_so_where_its_cost_would_be() -> None:
    """A resumed run replays cached passes with the restored IR, so their cost is not measured: the row says why
    the cells are empty instead of leaving them blank."""
    chain = _chain()
    parts = dict.fromkeys(chain.PARTS, 0.5)
    chance = dict.fromkeys(chain.PARTS, 0.1)
    score = {"total": 0.5, "interval": {"total": [0.45, 0.55]}, "parts": parts, "chance": chance}
    cost = {"nfe": 180, "blocks": 6, "block_evaluations": 1080, "params": 6.5e6}
    rows = [{"step": "base", "minibench": score, "cost": cost, "seconds": 0.0},
            {"step": "encoder_substitution", "minibench": score, "cost": None, "seconds": 640.0, "cached": True}]
    verdict = chain.checks(rows, [None, None])
    table = chain.markdown(rows, [None, None], verdict, "r.yaml")
    row = next(line for line in table.splitlines() if line.startswith("| encoder_substitution"))
    assert "| from cache |" in row and row.endswith("| 640 |")
