"""The Neodragon chain's quality table: `python benchmarks/quality_chain.py` (issue 16, items 4 and 5).

Applies `recipes/tiny-neodragon-quality.yaml` (resuming from its cache) or reads an applied output
(`--from-output out/tiny-quality`), and writes per pass: MiniBench total and parts with 95 % intervals, the paired
difference from the pass before, NFE, denoiser blocks, block evaluations per video (NFE x blocks), parameters
and seconds. Then it checks the issue's bars and says which hold:

- every pass: total within 3 % of the pass before (the paired interval's upper end reaches -3 % or better) and
  no part down by more than 0.05;
- the chain: at least 90 % of the base total, every part above chance by at least half the base's margin, and
  25x or fewer block evaluations per video.

Writes `--output` (JSON), and the Markdown table between the `quality-chain` markers of benchmarks/results.md
and of the README.
The recipe needs `evaluate: {per_pass: true}`; on a resumed run only the last pass restored from the cache is
scored (its IR is the one restored); for the cached passes before it the table takes the score each pass
gave its own output on the same prompts, when it has one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARTS = ("colour", "shape", "direction", "speed", "background", "temporal_consistency", "distribution")
START, END = "<!-- quality-chain:start -->", "<!-- quality-chain:end -->"


def rows_of(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per step of the chain, the base first, from an applied output's manifest."""
    quality = manifest.get("quality") or {}
    per_pass = manifest.get("instruments", {}).get("minibench_per_pass")
    if not quality or per_pass is None:
        raise SystemExit("the recipe needs an evaluate section with per_pass: true")
    records = {r["index"]: r for r in manifest["pass_log"]}
    rows = [{"step": "base", "minibench": quality["before"], "cost": quality["cost"]["before"], "seconds": 0.0}]
    for entry in per_pass:
        record = records[entry["index"]]
        scored = "total" in entry  # a cached pass is scored only when its own IR was restored
        score = entry if scored else own_after(record["report"], quality["before"].get("prompts"))
        rows.append({"step": entry["pass"], "minibench": score, "cost": entry.get("cost"),
                     "seconds": record["seconds"], "cached": record["cached"]})  # fmt: skip
    return rows


def own_after(report: dict[str, Any], prompts: int | None) -> dict[str, Any] | None:
    """The score a pass gave its own output, when it scored it on the chain's prompt count: `minibench.after`,
    or the last recovery stage's score (block_prune scores each stage of its recovery)."""
    recovery = (report.get("recovery") or {}).get("minibench") or [None]
    score = (report.get("minibench") or {}).get("after") or recovery[-1]
    return score if score and score.get("prompts") == prompts else None


def checks(rows: list[dict[str, Any]], differences: list[dict[str, Any] | None]) -> dict[str, Any]:
    """The issue's bars, each with the numbers that decide it."""
    base, final = rows[0]["minibench"], rows[-1]["minibench"]
    per_pass = []
    for row, prev, diff in zip(rows[1:], rows[:-1], differences[1:], strict=True):
        now, before = row["minibench"], prev["minibench"]
        if not now or not before:
            per_pass.append({"pass": row["step"], "ok": None, "why": "no score"})
            continue
        worst = min(now["parts"][p] - before["parts"][p] for p in PARTS)
        upper = diff["total"]["interval"][1] if diff and "total" in diff else now["total"] - before["total"]
        ok = upper >= -0.03 * before["total"] and worst >= -0.05
        per_pass.append({"pass": row["step"], "ok": ok, "total_difference_upper": upper, "worst_part_drop": worst})
    chance = base["chance"]
    # The share of the base's margin over chance each part keeps; a part the base itself does not lift above
    # chance has no margin to keep (None) and fails the bar.
    margins = {p: (final["parts"][p] - chance[p]) / (base["parts"][p] - chance[p])
               if base["parts"][p] > chance[p] else None for p in PARTS}  # fmt: skip
    cost0, cost1 = rows[0]["cost"], rows[-1]["cost"]
    reduction = (cost0["block_evaluations"] / cost1["block_evaluations"]
                 if cost0 and cost1 and cost1.get("block_evaluations") else None)  # fmt: skip
    return {
        "per_pass": per_pass,
        "retention": final["total"] / base["total"],
        "retention_ok": final["total"] >= 0.9 * base["total"],
        "margin_kept": margins,
        "margins_ok": all(m is not None and m >= 0.5 for m in margins.values()),
        "block_evaluation_reduction": reduction,
        "reduction_ok": reduction is not None and reduction >= 25,
    }


def _interval(result: dict[str, Any], part: str | None = None) -> str:
    value = result["total"] if part is None else result["parts"][part]
    lo, hi = result["interval"][part or "total"]
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def markdown(rows: list[dict[str, Any]], differences: list[dict[str, Any] | None], verdict: dict[str, Any],
             recipe: str) -> str:  # fmt: skip
    head = ["step", "MiniBench total [95 %]", "vs previous [95 %]", *PARTS, "NFE", "blocks", "NFE x blocks",
            "params", "s"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for row, diff in zip(rows, differences, strict=True):
        mb, cost = row["minibench"], row["cost"] or {}
        nfe = str(cost.get("nfe", "from cache" if row.get("cached") else ""))  # a replayed pass's cost is unmeasured
        delta = ""
        if diff and "total" in diff:
            lo, hi = diff["total"]["interval"]
            delta = f"{diff['total']['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        parts = [f"{mb['parts'][p]:.3f}" for p in PARTS] if mb else ["-"] * len(PARTS)
        lines.append("| " + " | ".join([row["step"], _interval(mb) if mb else "-", delta, *parts,
                     nfe, str(cost.get("blocks", "")), str(cost.get("block_evaluations", "")),
                     f"{cost['params'] / 1e6:.2f}M" if cost.get("params") else "", f"{row['seconds']:.0f}"]) + " |")
    ok = {True: "yes", False: "**no**", None: "n/a"}
    lines += ["", f"`{recipe}`; chance per part: "
              + ", ".join(f"{p} {rows[0]['minibench']['chance'][p]:.3f}" for p in PARTS) + ".", "",
              "- every pass within 3 % and no part down > 0.05: "
              + ", ".join(f"{c['pass']} {ok[c['ok']]}" for c in verdict["per_pass"]),
              f"- retention {verdict['retention']:.1%} (>= 90 %: {ok[verdict['retention_ok']]})",
              "- margin over chance kept per part: " + ", ".join(
                  f"{p} {'base at chance' if m is None else f'{m:.0%}'}" for p, m in verdict["margin_kept"].items())
              + f" (all >= 50 %: {ok[verdict['margins_ok']]})",
              f"- block evaluations per video {verdict['block_evaluation_reduction'] or 0:.1f}x fewer "
              f"(>= 25x: {ok[verdict['reduction_ok']]})"]  # fmt: skip
    return "\n".join(lines)


def replace_between_markers(path: Path, body: str, title: str) -> None:
    text = path.read_text() if path.is_file() else ""
    block = f"{START}\n{body}\n{END}"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + f"\n\n## {title}\n\n{block}\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/tiny-neodragon-quality.yaml")
    parser.add_argument("--from-output", type=Path, default=None, help="read this applied output, do not apply")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "quality_chain.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "benchmarks" / "results.md")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md",
                        help="also replace the table between the quality-chain markers here (if it has them)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".neocompress-cache",
                        help="the run's cache: passes resume from it, paired differences read its evidence")
    args = parser.parse_args(argv)
    out = args.from_output
    if out is None:
        from neocompress.core.apply_run import apply_recipe
        from neocompress.recipe import load_recipe

        out = apply_recipe(load_recipe(Path(args.recipe)), force=True, cache_dir=args.cache).output
    manifest = json.loads((Path(out) / "neocompress.json").read_text())
    rows = rows_of(manifest)
    from neocompress.analysis.score_cache import ScoreCache

    scores = ScoreCache(args.cache / "minibench")
    differences: list[dict[str, Any] | None] = [None]
    for prev, row in zip(rows[:-1], rows[1:], strict=True):
        both = prev["minibench"] and row["minibench"]
        differences.append(scores.difference(prev["minibench"], row["minibench"]) if both else None)
    verdict = checks(rows, differences)
    args.output.write_text(json.dumps({"recipe": args.recipe, "output": str(out), "rows": rows,
                                       "differences": differences, "checks": verdict}, indent=2, default=str) + "\n")
    table = markdown(rows, differences, verdict, args.recipe if args.from_output is None else str(out))
    replace_between_markers(args.markdown, table, "The Neodragon chain on the miniature, pass by pass")
    if args.readme.is_file() and START in args.readme.read_text():
        replace_between_markers(args.readme, table, "")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
