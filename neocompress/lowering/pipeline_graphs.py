"""A Pyramid-Flow pipeline as the static graphs a deployment runs: three text encoders, one denoiser graph per
pyramid stage, the VAE decoder; each with example inputs taken from a real sampling run at the bundle's shapes.

Why real inputs: every export is verified on them (max abs error against torch), and the Hexagon parts' SQNR is
measured on them; random inputs would miss the ranges the calibrated encodings were fitted to. Batches are
static, as the NPU needs: one prompt, so the text encoders and the VAE decoder take batch 1 and the denoiser
batch 2 when the schedule uses CFG ([uncond, cond] in one call) or 1 without. The runtime splits and pads
larger batches to these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from neocompress.core.errors import UserInputError
from neocompress.lowering.static_denoiser import BROADCAST_INPUTS, StaticStageDenoiser, stage_slot_shapes
from neocompress.lowering.static_vae import static_decoder
from neocompress.quant.precision import simulated_precision

EXAMPLE_PROMPT = "a red circle moving left slowly on a grey background"


@dataclass
class LoweredGraph:
    name: str
    kind: str  # "text_encoder" | "denoiser" | "vae_decoder"
    module: nn.Module  # the float graph, called as module(*inputs)
    inputs: tuple[Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    batched: list[bool]  # per input: does dim 0 follow the batch (else it broadcasts, e.g. RoPE tables)
    sim: Any = None  # the AIMET QuantizationSimModel of a quantized graph
    precision: str = "fp32"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fp16_on_htp(self) -> bool:
        """Whether the HTP runs some of it in fp16: a float graph, or a quantized one with layers kept float."""
        return self.sim is None or bool(self.extra.get("float_layers"))

    @property
    def batch(self) -> int:
        return int(self.inputs[0].shape[0])

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "precision": self.precision,
            "batch": self.batch,
            "inputs": [
                {"name": n, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."), "batched": b}
                for n, t, b in zip(self.input_names, self.inputs, self.batched, strict=True)
            ],
            "outputs": self.output_names,
            "params": sum(p.numel() for p in self.module.parameters()),
            **self.extra,
        }


class _ClipPooled(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.model(input_ids=input_ids).text_embeds


class _T5States(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


@torch.no_grad()
def lower_pipeline(ir: Any, video: dict[str, int], seed: int = 0, prompt: str = EXAMPLE_PROMPT) -> list[LoweredGraph]:
    """The graphs of `ir`'s pipeline at `video` (frames, height, width); quantized denoiser stages come with
    their simulation (see the quantize pass)."""
    from neocompress.models.family import get_family
    from neocompress.quant.denoiser_sim import capture_calls

    pipeline = get_family(ir.family).pipeline(ir, simulated=False)  # the example calls come from the float model
    v = pipeline.resolve_video(video.get("frames"), video.get("height"), video.get("width"))
    text = pipeline.text
    tokens = text.tokenize([prompt])
    graphs = [
        LoweredGraph("clip_l", "text_encoder", _ClipPooled(text.clip_l).eval(), (tokens.clip_l_ids,), ["input_ids"],
                     ["text_embeds"], [True]),
        LoweredGraph("clip_g", "text_encoder", _ClipPooled(text.clip_g).eval(), (tokens.clip_g_ids,), ["input_ids"],
                     ["text_embeds"], [True]),
        LoweredGraph("t5", "text_encoder", _T5States(text.t5).eval(), (tokens.t5_ids, tokens.t5_mask),
                     ["input_ids", "attention_mask"], ["last_hidden_state"], [True, True]),
    ]  # fmt: skip
    # the pipeline's own schedule: a history sampled in one step per stage is far from what the graphs see in
    # use, and on it a well calibrated stage graph measured 13 dB instead of 25-35 dB
    schedule = pipeline.schedule
    cfg = any(schedule.uses_cfg(schedule.guidance_for(u)) for u in range(v["units"]))  # CFG batches 2 in one call
    quantized = ir["denoiser"].extras.get("quantization") or {}
    simulated = {g.key: g for g in quantized["graphs"]} if quantized.get("graphs") else None
    captured = capture_calls(pipeline, [prompt], samples=1, seed=seed, schedule=schedule, batch=1,
                             frames=v["frames"], height=v["height"], width=v["width"])  # fmt: skip
    den = ir["denoiser"].module.eval()
    c = pipeline.spec.vae.latent_channels
    for stage in range(pipeline.stages):
        shapes = stage_slot_shapes(pipeline.scheduler, stage, v["units"], c, v["height"] // 8, v["width"] // 8,
                                   2 if cfg else 1)  # fmt: skip
        key = tuple(shapes[-1][1:])
        longest = max(captured.calls[key], key=lambda call: len(call[0]))
        sim, graph = None, None
        if simulated is not None:
            chosen = simulated.get(key)
            if chosen is None or [tuple(s[1:]) for s in chosen.graph.clip_shapes] != [s[1:] for s in shapes]:
                raise UserInputError(
                    f"the denoiser was quantized for other shapes than the bundle's {v['frames']} frames at "
                    f"{v['height']}x{v['width']} (stage {stage}): quantize at the video size the bundle runs"
                )
            sim, graph = chosen.sim, chosen.graph
        if graph is None:
            graph = StaticStageDenoiser(den, shapes, longest[1].shape[1]).eval()
        inputs = graph.pack(*longest[:5])  # with the schedule's CFG: batch 2
        graphs.append(
            LoweredGraph(f"denoiser_stage{stage}", "denoiser", graph, inputs, graph.input_names(), ["velocity"],
                         [n not in BROADCAST_INPUTS for n in graph.input_names()],
                         sim=sim, precision="fp32" if sim is None else simulated_precision(ir["denoiser"]),
                         extra={"stage": stage, "packer": graph.packer.to_dict(),
                                **({"float_layers": chosen.float_layers} if sim is not None else {})})
        )  # fmt: skip
    (latents,) = captured.latents  # the one video that run sampled
    decoder = ir["vae_decoder"].module.eval()
    decode = static_decoder(decoder, pipeline.latent_norm, tuple(latents.shape)).eval()
    decoder_sim = ir["vae_decoder"].extras.get("quantization", {}).get("decoder")
    graphs.append(
        LoweredGraph("vae_decoder", "vae_decoder", decode, (latents,), ["latents"], ["video"], [True],
                     sim=None if decoder_sim is None else decoder_sim.sim_for(tuple(latents.shape), decoder),
                     precision="fp32" if decoder_sim is None else decoder_sim.settings["precision"],
                     extra={} if decoder_sim is None else {"float_layers": decoder_sim.float_layers})
    )  # fmt: skip
    text_precision = simulated_precision(ir["t5"])
    for g in graphs:
        if g.kind == "text_encoder" and text_precision is not None:
            g.precision = text_precision  # simulated in fp16: the onnxruntime bundle still exports fp32
    return graphs
