"""Quantization precisions and Hexagon HTP versions, as recipe values.

Why a table, not code paths: W8A16 (the paper's choice), W8A8 and W4A16 differ only in AIMET's bit widths, and
the HTP version only selects AIMET's shipped per-target config (`htp_v73`, `htp_v79`, ...), which says which
ops are fused and which tensors are quantized the way that backend runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from neocompress.core.errors import UserInputError


@dataclass(frozen=True)
class Precision:
    name: str
    param_bw: int
    output_bw: int


PRECISIONS = {p.name: p for p in (Precision("w8a16", 8, 16), Precision("w8a8", 8, 8), Precision("w4a16", 4, 16))}
HTP_VERSIONS = ("v66", "v68", "v69", "v73", "v75", "v79", "v81", "v85")  # AIMET 2.42's shipped htp_* configs


def precision(name: str) -> Precision:
    if name not in PRECISIONS:
        raise UserInputError(f"unknown precision '{name}'; known: {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


def htp_config(version: str) -> str:
    """AIMET's config alias for a Hexagon version ('v79' -> 'htp_v79')."""
    if version not in HTP_VERSIONS:
        raise UserInputError(f"unknown Hexagon version '{version}'; AIMET ships configs for {', '.join(HTP_VERSIONS)}")
    return f"htp_{version}"


def simulated_precision(component: object) -> str | None:
    """The precision the quantize pass simulates a pipeline component in (its extras' settings); None if float."""
    quantization = getattr(component, "extras", {}).get("quantization") or {}
    return (quantization.get("settings") or {}).get("precision")


def sqnr_db(reference, approx) -> float:
    """Signal-to-quantization-noise ratio 10 log10(E[ref^2] / E[(ref - approx)^2]) in dB (inf if exact)."""
    import math

    noise = float((reference.double() - approx.double()).pow(2).mean())
    signal = float(reference.double().pow(2).mean())
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)
