"""FLOPs per generated video for every Pyramid-Flow component.

The denoiser uses the analytic formula of `neocompress.analysis.flops` (any stage, history and schedule). The
text encoders and the VAE decoder are counted by `torch.utils.flop_counter.FlopCounterMode` on meta tensors:
exact for their matrix products, free of memory, and right for whatever structure a pass left behind. Text
encoders run once per prompt, twice when classifier-free guidance adds the empty prompt; the VAE encoder is not
used by text-to-video generation, so it counts 0 here.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from neocompress.analysis.flops import DenoiserShape, video_flops
from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.models.pyramid_flow.scheduler import StepSchedule


def _meta_copy(module: torch.nn.Module) -> torch.nn.Module:
    if all(p.is_meta for p in module.parameters()):
        return module
    return copy.deepcopy(module).to("meta")


def _count(fn) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return int(counter.get_total_flops())


def denoiser_video_flops(ir: PipelineIR, shape: DenoiserShape, video: dict[str, Any]) -> int:
    """Denoiser FLOPs of one video (a `video_setting` dict) for a denoiser of this shape."""
    return video_flops(
        shape,
        StepSchedule.from_dict(video["schedule"]),
        num_units=video["units"],
        latent_h=video["height"] // 8,
        latent_w=video["width"] // 8,
        text_tokens=ir.meta["spec"].text.t5_max_length,
    ).total


def component_flops(ir: PipelineIR, name: str, video: dict[str, Any]) -> int:
    spec = ir.meta["spec"]
    comp = ir[name]
    schedule = StepSchedule.from_dict(video["schedule"])  # the video setting's schedule, overrides included
    units = video["units"]
    prompts = 2 if any(schedule.uses_cfg(schedule.guidance_for(u)) for u in range(units)) else 1
    lat_h, lat_w = video["height"] // 8, video["width"] // 8
    if comp.kind == "denoiser":
        return denoiser_video_flops(ir, DenoiserShape.of(comp.module), video)
    if comp.kind == "text_encoder":
        length = spec.text.t5_max_length if name == "t5" else spec.text.clip_max_length
        m = _meta_copy(comp.module)
        ids = torch.zeros(prompts, length, dtype=torch.long, device="meta")
        return _count(lambda: m(input_ids=ids))
    if comp.kind == "vae_decoder":
        m = _meta_copy(comp.module)
        z = torch.zeros(1, spec.vae.latent_channels, units, lat_h, lat_w, device="meta")
        return _count(lambda: m.decode(z))
    return 0
