"""MiniBench in Markdown: scores with their 95 % intervals, and paired differences that say whether a step cost
quality, for the recipe's report and every pass that scores before and after itself.

Why a shared module: a recipe, block_prune's recovery stages, the substitutions, step_distill and quantize all
report MiniBench; one way of writing a score (`0.612 [0.590, 0.634]`), a difference (`-0.021 [-0.035, -0.008]`
with a verdict) and an invalid run keeps them comparable at a glance.
"""

from __future__ import annotations

from typing import Any

PARTS_ORDER = ("colour", "shape", "direction", "speed", "background", "temporal_consistency", "distribution")


def fmt_score(result: dict[str, Any], part: str | None = None) -> str:
    """`0.612 [0.590, 0.634]` (the total when `part` is None), or why there is no score."""
    if not result.get("valid", True):
        return f"invalid ({result.get('nonfinite_videos', '?')} NaN/inf videos)"
    value = result["total"] if part is None else result["parts"][part]
    bounds = (result.get("interval") or {}).get(part or "total")
    return f"{value:.3f}" if not bounds else f"{value:.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}]"


def verdict(difference: dict[str, Any]) -> str:
    """Worse or better where the paired interval excludes zero, else no change shown."""
    lo, hi = difference["interval"]
    return "worse" if hi < 0 else "better" if lo > 0 else "no change shown"


def fmt_delta(differences: dict[str, Any] | None, part: str) -> str:
    """`-0.021 [-0.035, -0.008] worse`, or empty when the difference is unknown."""
    if not differences or "unavailable" in differences or part not in differences:
        return (differences or {}).get("unavailable", "") if part == "total" else ""
    d = differences[part]
    lo, hi = d["interval"]
    return f"{d['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}] {verdict(d)}"


def comparison_lines(columns: list[tuple[str, dict[str, Any]]], difference: dict[str, Any] | None = None,
                     difference_label: str = "difference") -> list[str]:  # fmt: skip
    """A Markdown table: one column per (label, result), chance, and the paired difference of the last two."""
    first = columns[0][1]
    header = ["part", *(label for label, _ in columns), "chance"] + ([difference_label] if difference else [])
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for part in PARTS_ORDER:
        row = [part, *(fmt_score(r, part) for _, r in columns), f"{first['chance'][part]:.3f}"]
        lines.append("| " + " | ".join(row + ([fmt_delta(difference, part)] if difference else [])) + " |")
    total = ["**total**", *(f"**{fmt_score(r)}**" for _, r in columns), ""]
    lines.append("| " + " | ".join(total + ([f"**{fmt_delta(difference, 'total')}**"] if difference else [])) + " |")
    prompts = first.get("prompts")
    if prompts:
        lines.append(f"\n{prompts} prompts; 95 % bootstrap intervals over prompts; differences paired on the same "
                     "prompts and seeds.")  # fmt: skip
    return lines


def pass_quality_lines(report: dict[str, Any]) -> list[str]:
    """A pass's own MiniBench (`report["minibench"]` with before / after, or a distiller's three runs)."""
    bench = report.get("minibench")
    if not isinstance(bench, dict):
        return []
    if "before" in bench and "after" in bench:
        return ["", "MiniBench before and after this pass:", "",
                *comparison_lines([("before", bench["before"]), ("after", bench["after"])], bench.get("difference"),
                                  "after - before")]  # fmt: skip
    if "teacher" in bench and "student" in bench:
        columns = [("teacher", bench["teacher"]), ("undistilled at the target schedule",
                   bench["undistilled_at_target"]), ("student", bench["student"])]  # fmt: skip
        lines = ["", "MiniBench of the teacher, the undistilled model at the student's schedule, and the student:",
                 "", *comparison_lines(columns, bench.get("student_minus_teacher"), "student - teacher")]
        beside = bench.get("student_minus_undistilled")
        if beside and "total" in beside:
            lines.append(f"\nStudent minus undistilled, same steps: {fmt_delta(beside, 'total')} (total).")
        return lines
    return []


def baseline_lines(report: dict[str, Any]) -> list[str]:
    """A pass's technique beside its naive baselines on the same budget (`report["baselines"]`: label ->
    {"minibench": result, optional "removed"}; the technique's own entry first)."""
    baselines = report.get("baselines")
    if not isinstance(baselines, dict) or not baselines:
        return []
    columns = [(label + (f" {entry['removed']}" if "removed" in entry else ""), entry["minibench"])
               for label, entry in baselines.items()]  # fmt: skip
    note = report.get("baselines_note", "the same budget")
    return ["", f"MiniBench of the technique beside its naive baselines ({note}):", "", *comparison_lines(columns)]
