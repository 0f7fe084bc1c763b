"""The report's lowering section: per target, each component's files, check and, for Hexagon, each part's
compile and simulator SQNR on every device."""

from __future__ import annotations

from typing import Any


def _f(x: Any, fmt: str = ".1f") -> str:
    return "n/a" if x is None else format(x, fmt)


def target_lines(targets: list[dict[str, Any]] | None) -> list[str]:
    lines: list[str] = []
    for t in targets or []:
        cfg = t["target"]
        title = cfg["name"] + (f" ({cfg['device']})" if cfg.get("device") else "")
        lines += ["", f"## Target: {title}", "", f"Bundle: `{t['folder']}/` (lowered in {t['seconds']:.1f} s)."]
        if cfg["name"] == "onnxruntime":
            lines += ["", "| component | precision | batch | check | max abs error | SQNR dB vs float | MiB |",
                      "|---|---|---:|---|---:|---:|---:|"]  # fmt: skip
            for name, c in t["components"].items():
                ch = c["check"]
                lines.append(f"| {name} | {c['precision']} | {c['batch']} | against {ch['against']} | "
                             f"{ch['max_abs_error']:.2e} | {_f(ch.get('sqnr_db_vs_float'))} | "
                             f"{c['bytes'] / 2**20:.2f} |")  # fmt: skip
            lines.append(f"\nGenerate from it: `neocompress run-bundle {t['folder']} --prompt \"...\"`.")
            continue
        lines += ["", "| component | part | precision | weight MiB | encodings (entries / quantized tensors) |",
                  "|---|---|---|---:|---|"]  # fmt: skip
        for name, c in t["components"].items():
            for p in c["parts"]:
                enc = p.get("encodings")
                enc_s = f"{enc['entries']} / {enc['quantized_tensors']}" if enc else "fp16 (no encodings)"
                lines.append(f"| {name} | {p['name']} | {c['precision']} | {p['weight_bytes'] / 2**20:.2f} | "
                             f"{enc_s} |")  # fmt: skip
        est = t.get("estimate") or {}
        if est:
            devices = list(next(iter(est.values())))
            lines += [
                "",
                "Estimated on-device latency (roofline calibrated on Neodragon's published rows, see "
                "`neocompress.targets.hexagon.cost_model`), ms per call / peak MB:",
                "",
                "| component | GFLOPs | " + " | ".join(devices) + " |",
                "|---|---:|" + "---:|" * len(devices),
            ]
            for name, per in est.items():
                cells = [f"{per[d]['latency_ms']:.3f} / {per[d]['peak_memory_mb']:.1f}" for d in devices]
                lines.append(f"| {name} | {next(iter(per.values()))['gflops']:.3f} | " + " | ".join(cells) + " |")
        hub = t.get("aihub")
        if hub:
            lines += ["", f"Qualcomm AI Hub: {hub['status']}" + (f" ({hub['reason']})" if hub.get("reason") else ".")]
            for part, m in (hub.get("measured") or {}).items():
                lines.append(f"- {part}: {m['latency_ms']:.1f} ms, {m['peak_memory_mb']:.0f} MB peak on "
                             f"{hub['device']} (profile job {hub['profile_jobs'][part]})")  # fmt: skip
        compiled = t.get("compiled") or {}
        if "skipped" in compiled:
            lines += ["", f"Not compiled: {compiled['skipped']}"]
            continue
        for device, rows in compiled.items():
            lines += [
                "",
                f"Compiled for {device} (QNN HTP backend, CPU fallback disabled), run in the simulator:",
                "",
                "| part | compile s | context MiB | simulator s | SQNR dB simulator vs float | "
                "SQNR dB AIMET sim vs float | simulator vs AIMET |",
                "|---|---:|---:|---:|---:|---:|---:|",
            ]
            for r in (r for part_rows in rows.values() for r in part_rows):
                cells = [r["part"], f"{r['compile_seconds']:.1f}", f"{r['binary_bytes'] / 2**20:.2f}",
                         _f(r.get("simulator_seconds")), _f(r.get("sqnr_db_simulator_vs_float")),
                         _f(r.get("sqnr_db_aimet_vs_float")), _f(r.get("sqnr_db_simulator_vs_aimet"))]  # fmt: skip
                lines.append("| " + " | ".join(cells) + " |")
    return lines
