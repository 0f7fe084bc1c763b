"""The report written beside every output: JSON for machines, Markdown and a PNG for people."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from neocompress.analysis.quality_report import (
    PARTS_ORDER,
    baseline_lines,
    comparison_lines,
    fmt_delta,
    fmt_score,
    pass_quality_lines,
)
from neocompress.analysis.target_report import target_lines


def _params(summary: dict[str, Any]) -> dict[str, int]:
    return {name: c["params"] for name, c in summary["components"].items()}


def _short(value: Any) -> str:
    """A summary cell's value: floats to 4 significant digits (a table cell is not the JSON)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_report(directory: Path, before: dict[str, Any], after: dict[str, Any], manifest: dict[str, Any]) -> None:
    pb, pa = _params(before), _params(after)
    names = list(dict.fromkeys(list(pb) + list(pa)))
    report = {
        "params_before": pb,
        "params_after": pa,
        "total_params_before": sum(pb.values()),
        "total_params_after": sum(pa.values()),
        "passes": manifest["pass_log"],
        "resumed_from_pass": manifest.get("resumed_from_pass", -1),
        "instruments": manifest.get("instruments", {}),
        "quality": manifest.get("quality"),
        "components": after["components"],
    }
    (directory / "report.json").write_text(json.dumps(report, indent=2, default=str))
    lines = [
        "# neocompress report",
        "",
        f"Base: `{manifest['base_source']}` ({manifest['family']})",
        "",
        "| component | params before | params after | change |",
        "|---|---:|---:|---:|",
    ]
    for n in names:
        b, a = pb.get(n, 0), pa.get(n, 0)
        change = f"{(a - b) / b * 100:+.1f}%" if b else "new"
        lines.append(f"| {n} | {b:,} | {a:,} | {change} |")
    tb, ta = report["total_params_before"], report["total_params_after"]
    lines.append(f"| **total** | **{tb:,}** | **{ta:,}** | **{(ta - tb) / tb * 100:+.1f}%** |")
    lines += ["", "## Passes", "", "| # | pass | cached | seconds | summary |", "|---|---|---|---:|---|"]
    for r in manifest["pass_log"]:
        short = ", ".join(f"{k}={_short(v)}" for k, v in r["report"].items() if not isinstance(v, dict | list))[:160]
        lines.append(
            f"| {r['index']} | {r['name']} | {'yes' if r['cached'] else 'no'} | {r['seconds']:.2f} | {short} |"
        )
    lines += quality_lines(manifest.get("quality"), manifest.get("instruments", {}).get("minibench_per_pass"))
    for r in manifest["pass_log"]:
        lines += pass_section(r)
    lines += target_lines(manifest.get("targets"))
    lines += ["", "![parameters per component](params.png)", ""]
    (directory / "report.md").write_text("\n".join(lines))
    plot_params(directory / "params.png", names, pb, pa)


def plot_params(path: Path, names: list[str], before: dict[str, int], after: dict[str, int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [before.get(n, 0) for n in names], width=0.4, label="before")
    ax.bar([i + 0.2 for i in x], [after.get(n, 0) for n in names], width=0.4, label="after")
    ax.set_xticks(list(x), names, rotation=20)
    ax.set_ylabel("parameters")
    ax.set_title("Parameters per component")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def quality_lines(quality: dict[str, Any] | None, per_pass: list[dict[str, Any]] | None) -> list[str]:
    """MiniBench before / after the recipe (and after every pass) with intervals, chance and the paired
    difference."""
    if not quality:
        return []
    before, after = quality["before"], quality["after"]
    lines = ["", f"## Quality ({quality['bench']}bench: score in [0, 1] with its 95 % interval, chance beside it)", ""]
    lines += comparison_lines([("before", before), ("after", after)], quality.get("difference"), "after - before")
    for r in per_pass or []:
        if "total" in r or "valid" in r:
            lines.append(f"\nAfter pass {r['index']} ({r['pass']}): total {fmt_score(r)}")
    return lines


def pass_section(record: dict[str, Any]) -> list[str]:
    """A pass's own section: what it chose and why (block_prune), and the pictures it reported."""
    report = record["report"]
    lines: list[str] = []
    selection = report.get("selection")
    if selection:
        lines += [
            "",
            f"## Pass {record['index']}: {record['name']}",
            "",
            f"Selection by `{selection['mode']}`: removed {selection['removed']}, kept {selection['kept']}"
            + (" (importance read from the cache)" if report.get("importance", {}).get("cached") else ""),
            "",
            "| block | score | removed | why |",
            "|---:|---:|:---:|---|",
        ]
        for b in selection["blocks"]:
            score = "n/a" if b["score"] is None else f"{b['score']:.4g}"
            lines.append(f"| {b['index']} | {score} | {'yes' if b['removed'] else ''} | {b['why']} |")
    recovery = report.get("recovery")
    if recovery:
        lines += recovery_lines(recovery)
    own = pass_quality_lines(report) + baseline_lines(report)
    if own:
        if not lines:
            lines += ["", f"## Pass {record['index']}: {record['name']}"]
        lines += own
    if record["name"] == "quantize" and "components" in report:
        lines += quantize_lines(record)
    figures = report.get("figures") or {}
    if figures and not lines:
        lines += ["", f"## Pass {record['index']}: {record['name']}"]
    for name, path in figures.items():
        lines += ["", f"![{record['name']} {name}]({path})"]
    return lines


def quantize_lines(record: dict[str, Any]) -> list[str]:
    """quantize: each simulated graph's SQNR against its float self, per component, and of the pipeline's
    outputs on held-out prompts; MiniBench float vs simulated when it ran."""
    r = record["report"]
    lines = [
        "",
        f"## Pass {record['index']}: {record['name']}",
        "",
        f"HTP {r['htp']} ({r['scheme']}); calibrated on {r['calibration_prompts']} prompts, "
        f"{r['heldout_prompts']} held out. Components: "
        + ", ".join(f"{k} {v.upper()}" for k, v in r["components"].items())
        + ".",
    ]
    if r.get("graphs"):
        extras = []
        if r.get("float_layers"):
            extras.append(f"{len(r['float_layers'])} layers kept float ({', '.join(r['float_layers'][:6])}"
                          + (", ..." if len(r["float_layers"]) > 6 else "") + ")")  # fmt: skip
        if r.get("seq_mse"):
            extras.append(f"weight encodings by Sequential MSE pooled over the stages "
                          f"({r['graphs'][0].get('seq_mse_layers', 0)} layers)")  # fmt: skip
        lines += [
            "",
            f"Denoiser, {r['precision'].upper()}, one graph per pyramid stage"
            + ("; " + "; ".join(extras) if extras else "") + ":",
            "",
            "| stage | clips (C, T, H, W) | calibration calls | SQNR dB on them | held-out calls | SQNR dB held out |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for g in sorted(r["graphs"], key=lambda g: (g["stage"], len(g["clips"]))):
            clips = " + ".join("x".join(str(d) for d in c) for c in g["clips"])
            held = "n/a" if g.get("heldout_sqnr_db") is None else f"{g['heldout_sqnr_db']:.1f}"
            lines.append(f"| {g['stage']} | {clips} | {g['calibration_calls']} | {g['sqnr_db']:.1f} | "
                         f"{g.get('heldout_calls', 0)} | {held} |")  # fmt: skip
    dec = r.get("vae_decoder")
    if dec:
        held = "n/a" if dec.get("heldout_sqnr_db") is None else f"{dec['heldout_sqnr_db']:.1f} dB"
        lines.append(
            f"\nVAE decoder, {dec['precision'].upper()} at latents {'x'.join(map(str, dec['latent_shape']))}: "
            f"{dec['sqnr_db']:.1f} dB on {dec['calibration_calls']} calibration latents, {held} on "
            f"{dec['heldout_calls']} held out"
            + (f"; AdaRound, {dec['adaround_iterations']} iterations per layer" if dec.get("adaround_iterations")
               else "")
            + (f"; {len(dec['float_layers'])} layers kept float" if dec.get("float_layers") else "") + "."
        )  # fmt: skip
    text = r.get("text_encoders")
    if text:
        lines.append(f"\nText encoders in FP16, SQNR against fp32 on {text['prompts']} prompts: "
                     + ", ".join(f"{k} {v:.1f} dB" for k, v in text["sqnr_db"].items()) + ".")  # fmt: skip
    if r.get("latents_sqnr_db") is not None:
        lines.append(
            f"\nSampled latents of {r['heldout_prompts']} held-out prompt(s), quantized vs float: "
            f"{r['latents_sqnr_db']:.1f} dB SQNR"
            + (f"; decoded videos {r['video_sqnr_db']:.1f} dB." if r.get("video_sqnr_db") is not None else ".")
        )
    bench = r.get("minibench")
    if bench:
        lines += ["", "MiniBench, float weights vs the simulated pipeline (same prompts and seed):", ""]
        lines += comparison_lines([("float", bench["float"]), ("simulated", bench["simulated"])],
                                  bench.get("difference"), "simulated - float")  # fmt: skip
    return lines


def recovery_lines(recovery: dict[str, Any]) -> list[str]:
    """Recovery: the data it trained on, fidelity to the teacher and each objective per stage, MiniBench."""
    data = recovery["data"]
    cut = recovery["fidelity_after_cut"]
    lines = [
        "",
        f"Recovery on {data['train_latents']} latents ({data['source']}), {data['heldout_latents']} held out for "
        "fidelity to the unpruned teacher"
        + (f"; text conditioning: {data['text_conditioning']}" if data.get("text_conditioning") else "")
        + ":",
        "",
        "| after | output cosine | relative error | objective (fixed batches) | loss first -> last step |",
        "|---|---:|---:|---:|---:|",
        f"| the cut | {cut['output_cosine']:.4f} | {cut['relative_error']:.4f} | | |",
    ]
    for name, st in recovery["stages"].items():
        f, t = st["fidelity_after"], st["train"]
        lines.append(
            f"| {name} ({t['steps']} steps) | {f['output_cosine']:.4f} | {f['relative_error']:.4f} | "
            f"{st['objective_before']:.4g} -> {st['objective_after']:.4g} | "
            f"{t['loss_first']:.4g} -> {t['loss_last']:.4g} |"
        )
    scores = recovery.get("minibench") or []
    if scores:
        lines += ["", "| MiniBench after | total | total minus the teacher's | " + " | ".join(PARTS_ORDER) + " |"]
        lines.append("|---|---:|---:|" + "---:|" * len(PARTS_ORDER))
        for r in scores:
            parts = " | ".join("" if r.get("parts", {}).get(p) is None else f"{r['parts'][p]:.3f}"
                               for p in PARTS_ORDER)  # fmt: skip
            lines.append(f"| {r['after']} | {fmt_score(r)} | {fmt_delta(r.get('difference'), 'total')} | {parts} |")
    return lines
