"""Assemble a Pyramid-Flow PipelineIR from built modules, with the interface of every edge.

The interfaces state what Pyramid-Flow's dataflow really is: CLIP-L and CLIP-G give pooled vectors that the
denoiser concatenates (so each encoder's width is part of the contract), T5 gives padded token states and a
mask, the scheduler drives the denoiser and hands normalised latents to the VAE decoder, which gives video in
[-1, 1]. A substituted component must keep these.
"""

from __future__ import annotations

from torch import nn

from neocompress.ir import Component, PipelineIR
from neocompress.ir.pipeline_ir import PIPELINE_INPUT, spec
from neocompress.models.pyramid_flow.adapter import PyramidFlowBlockAdapter
from neocompress.models.pyramid_flow.scheduler import PyramidFlowScheduler
from neocompress.models.pyramid_flow.spec import PyramidFlowSpec
from neocompress.models.pyramid_flow.tokenizers import TextTokenizers

FAMILY = "pyramid-flow"


def build_ir(s: PyramidFlowSpec, modules: dict[str, nn.Module], tokenizers: TextTokenizers | None) -> PipelineIR:
    ir = PipelineIR(FAMILY, meta={"spec": s})
    lt = s.text.t5_max_length
    d = s.denoiser
    lat = s.vae.latent_channels
    toks = tokenizers.as_tuple() if tokenizers is not None else (None, None, None)
    for name, cfg, tok in (("clip_l", s.text.clip_l, toks[0]), ("clip_g", s.text.clip_g, toks[1])):
        ir.add(
            Component(
                name,
                "text_encoder",
                modules[name],
                dict(cfg),
                inputs={"prompt": spec("B", dtype="str")},
                outputs={"pooled": spec("B", int(cfg["projection_dim"]))},
                extras={"tokenizer": tok},
            )
        )
    ir.add(
        Component(
            "t5",
            "text_encoder",
            modules["t5"],
            dict(s.text.t5),
            inputs={"prompt": spec("B", dtype="str")},
            outputs={"tokens": spec("B", lt, s.text.t5_dim), "mask": spec("B", lt, dtype="int64", value_range=(0, 1))},
            extras={"tokenizer": toks[2]},
        )
    )
    pooled_l = s.clip_l_pooled
    ir.add(
        Component(
            "denoiser",
            "denoiser",
            modules["denoiser"],
            d.to_dict(),
            inputs={
                "pooled_clip_l": spec("B", pooled_l),
                "pooled_clip_g": spec("B", d.pooled_projection_dim - pooled_l),
                "text_tokens": spec("B", lt, d.text_token_dim),
                "text_mask": spec("B", lt, dtype="int64", value_range=(0, 1)),
                "noisy_latents": spec("B", lat, "T", "h", "w"),
            },
            outputs={"velocity": spec("B", d.out_channels, "T", "h", "w")},
            extras={"block_adapter": PyramidFlowBlockAdapter()},
        )
    )
    ir.add(
        Component(
            "scheduler",
            "scheduler",
            None,
            {"scheduler": s.scheduler.to_dict(), "schedule": s.schedule.to_dict()},
            inputs={"velocity": spec("B", lat, "T", "h", "w"), "condition_latents": spec("B", lat, "F", "H8", "W8")},
            outputs={"latents": spec("B", lat, "F", "H8", "W8")},
            extras={"object": PyramidFlowScheduler(s.scheduler), "schedule": s.schedule, "drives": "denoiser"},
        )
    )
    video = spec("B", 3, "frames", "H", "W", value_range=(-1.0, 1.0))
    ir.add(
        Component(
            "vae_encoder",
            "vae_encoder",
            modules["vae_encoder"],
            s.vae.to_dict(),
            inputs={"video": video},
            outputs={"latents": spec("B", lat, "F", "H8", "W8")},
            extras={"latent_norm": s.latent_norm},
        )
    )
    ir.add(
        Component(
            "vae_decoder",
            "vae_decoder",
            modules["vae_decoder"],
            dict(s.decoder) if s.decoder else s.vae.to_dict(),
            inputs={"latents": spec("B", lat, "F", "H8", "W8")},
            outputs={"video": video},
            extras={"latent_norm": s.latent_norm},
        )
    )
    for enc in ("clip_l", "clip_g", "t5"):
        ir.connect(PIPELINE_INPUT, "prompt", enc, "prompt")
    ir.connect("clip_l", "pooled", "denoiser", "pooled_clip_l")
    ir.connect("clip_g", "pooled", "denoiser", "pooled_clip_g")
    ir.connect("t5", "tokens", "denoiser", "text_tokens")
    ir.connect("t5", "mask", "denoiser", "text_mask")
    # The sampling loop: the scheduler drives the denoiser (extras["drives"]); as data, the noisy latents it
    # feeds in come from the pipeline input side and its velocity flows back into the scheduler.
    ir.connect(PIPELINE_INPUT, "noisy_latents", "denoiser", "noisy_latents")
    ir.connect("denoiser", "velocity", "scheduler", "velocity")
    ir.connect("vae_encoder", "latents", "scheduler", "condition_latents")
    ir.connect(PIPELINE_INPUT, "video", "vae_encoder", "video")
    ir.connect("scheduler", "latents", "vae_decoder", "latents")
    return ir
