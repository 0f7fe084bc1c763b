"""Neodragon's replacement components for a Pyramid-Flow pipeline, registered by name for the substitution passes.

- `distil_t5` stands in for `t5`: a T5-v1.1-base-shaped encoder (the options override its config; the tiny
  default shrinks it) with a projection to `width` (default: T5's own width, what the denoiser's context embedder
  takes), sharing T5's tokenizer and token count.
- `taehv` stands in for `vae_decoder`: the TAEHV-style 2-D causal decoder, widths configurable (Neodragon's
  256, 128, 64, 64 by default), 8x in time and space; it reads the same normalised-latent contract.

Each builder declares the component's interface from the pipeline's spec, so a replacement of the wrong width,
token count or latent size is refused by the substitution check before anything trains.
"""

from __future__ import annotations

from typing import Any

from neocompress.ir import Component, PipelineIR
from neocompress.ir.pipeline_ir import spec
from neocompress.ir.substitution import register_replacement


def _distil_t5_options(options: dict[str, Any]) -> dict[str, str]:
    from neocompress.models.pyramid_flow.distil_t5 import encoder_override_problems

    return encoder_override_problems(options)


@register_replacement("distil_t5", "t5", "DistilT5: a T5-v1.1-base encoder + projection head, T5's tokenizer",
                      check=_distil_t5_options)
def build_distil_t5(ir: PipelineIR, options: dict[str, Any]) -> Component:
    """Options: `encoder` (T5 config overrides of the v1.1-base default), `width` (the projection's output, default
    T5's own width), `adapter` ({out_dim, hidden, layers}: a ContextAdapter after the projection), `max_length`
    (tokens; default the pipeline's), `checkpoint` (a DistilT5 folder: config.json + model.safetensors, whose
    config replaces the options' and whose weights load strictly; a plan on a weightless skeleton whose checkpoint
    folder is not there yet uses the v1.1-base shape, as the public DistilT5 has)."""
    from neocompress.models.pyramid_flow.distil_t5 import (
        DistilT5,
        distil_t5_base_config,
        distil_t5_folder,
        load_distil_t5,
    )

    s = ir.meta["spec"]
    teacher = ir["t5"]
    tokens = int(options.get("max_length") or s.text.t5_max_length)
    planning = teacher.module is not None and any(p.is_meta for p in teacher.module.parameters())
    checkpoint = options.get("checkpoint")
    if checkpoint and not (planning and not distil_t5_folder(checkpoint).is_dir()):
        module = load_distil_t5(checkpoint)
        if options.get("adapter") and module.context_adapter is None:
            a = options["adapter"]
            module.add_adapter(int(a["out_dim"]), a.get("hidden"), int(a.get("layers", 4)))
    else:
        config = distil_t5_base_config(int(teacher.config["vocab_size"]), int(teacher.config.get("pad_token_id", 0)),
                                       int(teacher.config.get("eos_token_id", 1)))  # fmt: skip
        config.update(options.get("encoder") or {})
        module = DistilT5(config, int(options.get("width") or s.text.t5_dim), adapter=options.get("adapter"))
    return distil_t5_component(module, tokens, teacher.extras.get("tokenizer"))


def distil_t5_component(module: Any, tokens: int, tokenizer: Any) -> Component:
    """The `t5` node holding a DistilT5: T5's interface at the DistilT5's output width, T5's tokenizer."""
    return Component(
        "t5",
        "text_encoder",
        module,
        module.checkpoint_config(),
        inputs={"prompt": spec("B", dtype="str")},
        outputs={"tokens": spec("B", tokens, module.width),
                 "mask": spec("B", tokens, dtype="int64", value_range=(0, 1))},  # fmt: skip
        extras={"tokenizer": tokenizer},
    )


@register_replacement("taehv", "vae_decoder", "TAEHV-style causal 2-D decoder (MemBlock / TGrow), 8x8x8")
def build_taehv(ir: PipelineIR, options: dict[str, Any]) -> Component:
    from neocompress.models.taehv_decoder import TAEHVDecoder

    s = ir.meta["spec"]
    if options.get("checkpoint"):  # a pretrained TAEHV: its own config decides the shape
        from neocompress.models.taehv_decoder import load_taehv

        module = load_taehv(str(options["checkpoint"]))
        c = module.checkpoint_config()
        latent, widths = int(c["latent_channels"]), tuple(c["widths"])  # type: ignore[arg-type]
        time_upscale, blocks = tuple(c["time_upscale"]), int(c["blocks_per_stage"])  # type: ignore[arg-type]
        clamp = float(c["latent_clamp"])  # type: ignore[arg-type]
    else:
        latent = int(options.get("latent_channels") or s.vae.latent_channels)
        widths = tuple(int(w) for w in options.get("widths") or (256, 128, 64, 64))
        time_upscale = tuple(bool(t) for t in options.get("time_upscale") or (True, True, True))
        blocks = int(options.get("blocks_per_stage") or 3)
        clamp = float(options.get("latent_clamp") or 3.0)
        module = TAEHVDecoder(latent_channels=latent, widths=widths, time_upscale=time_upscale,
                              blocks_per_stage=blocks, latent_clamp=clamp)  # fmt: skip
    teacher = ir["vae_decoder"]
    return Component(
        "vae_decoder",
        "vae_decoder",
        module,
        {"latent_channels": latent, "widths": list(widths), "time_upscale": list(time_upscale),
         "blocks_per_stage": blocks, "latent_clamp": clamp},
        inputs={"latents": spec("B", latent, "F", "H8", "W8")},
        outputs={"video": spec("B", 3, "frames", "H", "W", value_range=(-1.0, 1.0))},
        extras={"latent_norm": teacher.extras["latent_norm"]},
    )
