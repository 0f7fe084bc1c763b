"""Generate a video from a lowered bundle alone: ONNX graphs in onnxruntime, plus the sampler's arithmetic.

No torch model is built: the text encoders, every denoiser stage and the VAE decoder run as the bundle's ONNX
files; torch is only the tensor library of the sampler loop (noise, Euler steps, up/down-sampling, the same code
the torch pipeline uses, so a seed gives the same noise). Graphs have static batches; `run_static` splits a
larger batch into the graph's and pads the last chunk by repeating its last row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from neocompress.core.errors import UserInputError
from neocompress.lowering.stage_packing import StagePacker
from neocompress.models.pyramid_flow.sampling import pyramidal_sample
from neocompress.models.pyramid_flow.scheduler import PyramidFlowScheduler, SchedulerConfig, StepSchedule
from neocompress.models.pyramid_flow.text_encoders import TextEmbeddings, tokenize_prompts
from neocompress.models.pyramid_flow.tokenizers import load_tokenizers
from neocompress.targets.bundle import TOKENIZERS, read_manifest

SessionFactory = Callable[[Path, str, dict[str, Any]], Any]  # (bundle folder, component, its manifest entry)


def cpu_session(folder: Path, name: str, entry: dict[str, Any], *, fused: bool = False) -> Any:
    """onnxruntime on the CPU. QDQ graphs run unoptimised by default, so they compute what the AIMET simulation
    computed (and slowly: every quantizer is float arithmetic); `fused` lets onnxruntime fuse them into integer
    kernels (faster, ~1e-2 from the simulation)."""
    from neocompress.lowering.onnx_export import session

    if not entry.get("file"):
        raise UserInputError(f"{folder}: component {name} has no ONNX file to run on the CPU")
    return session(folder / entry["file"], exact=entry["precision"] != "fp32" and not fused)


def fused_cpu_session(folder: Path, name: str, entry: dict[str, Any]) -> Any:
    return cpu_session(folder, name, entry, fused=True)


def run_static(sess: Any, entry: dict[str, Any], inputs: Sequence[Tensor]) -> Tensor:
    """Run a static-batch graph on inputs whose batched ones may hold any number of rows."""
    specs = entry["inputs"]
    graph_batch = entry["batch"]
    rows = next(t.shape[0] for t, s in zip(inputs, specs, strict=True) if s["batched"])
    outs = []
    for start in range(0, rows, graph_batch):
        feed = {}
        for t, s in zip(inputs, specs, strict=True):
            x = t[start : start + graph_batch] if s["batched"] else t
            if s["batched"] and x.shape[0] < graph_batch:
                x = torch.cat([x, x[-1:].expand(graph_batch - x.shape[0], *x.shape[1:])])
            if list(x.shape) != s["shape"]:
                raise UserInputError(f"{entry['file']}: input {s['name']} has shape {list(x.shape)}, the graph "
                                     f"takes {s['shape']}")  # fmt: skip
            feed[s["name"]] = np.ascontiguousarray(x.detach().cpu().numpy())
        out = torch.from_numpy(np.asarray(sess.run(None, feed)[0]))
        outs.append(out[: min(graph_batch, rows - start)])
    return torch.cat(outs)


class BundleRuntime:
    def __init__(self, folder: str | Path, session_factory: SessionFactory = cpu_session,
                 expected_target: str | None = None):  # fmt: skip
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder, expected_target)
        p = self.manifest["pipeline"]
        self.scheduler = PyramidFlowScheduler(SchedulerConfig.from_dict(p["scheduler"]))
        self.schedule = StepSchedule.from_dict(p["schedule"])
        self.video = p["video"]
        self.tokenizers = load_tokenizers(self.folder / TOKENIZERS)
        self.components = self.manifest["components"]
        missing = {"clip_l", "clip_g", "t5", "vae_decoder"} - set(self.components)
        if missing or not any(e["kind"] == "denoiser" for e in self.components.values()):
            raise UserInputError(f"{self.folder} lacks components to generate with: {sorted(missing) or 'denoiser'} "
                                 "(lower every component to run the bundle)")  # fmt: skip
        self.sessions = {name: session_factory(self.folder, name, e) for name, e in self.components.items()}
        packers = {n: StagePacker.from_dict(e["packer"]) for n, e in self.components.items() if e["kind"] == "denoiser"}
        self.stages = {tuple(p.slots[-1]): (name, p) for name, p in packers.items()}  # current clip -> stage graph
        self.calls: dict[str, int] = dict.fromkeys(self.components, 0)

    def _run(self, name: str, *inputs: Tensor) -> Tensor:
        self.calls[name] += 1
        return run_static(self.sessions[name], self.components[name], inputs)

    def encode(self, prompts: Sequence[str]) -> TextEmbeddings:
        lengths = self.manifest["pipeline"]["text"]
        t = tokenize_prompts(self.tokenizers, prompts, lengths["clip_max_length"], lengths["t5_max_length"])
        pooled = torch.cat([self._run("clip_l", t.clip_l_ids), self._run("clip_g", t.clip_g_ids)], dim=-1)
        return TextEmbeddings(pooled=pooled, tokens=self._run("t5", t.t5_ids, t.t5_mask), mask=t.t5_mask)

    def denoise(self, sample: list[Tensor], tokens: Tensor, mask: Tensor, pooled: Tensor, t: Tensor) -> Tensor:
        key = tuple(int(s) for s in sample[-1].shape[1:])
        if key not in self.stages:
            raise UserInputError(f"the bundle has no denoiser graph for a current clip of {key}; it has "
                                 f"{sorted(self.stages)}")  # fmt: skip
        name, packer = self.stages[key]
        return self._run(name, *packer.pack(sample, tokens, mask, pooled, t))

    @torch.no_grad()
    def sample_latents(self, prompts: Sequence[str], seed: int = 0, negative_prompt: str = "") -> Tensor:
        if not prompts:
            raise UserInputError("run-bundle needs at least one prompt")
        v, schedule = self.video, self.schedule
        cond = self.encode(prompts)
        cfg = any(schedule.uses_cfg(schedule.guidance_for(u)) for u in range(v["units"]))
        both = TextEmbeddings.cat([self.encode([negative_prompt] * len(prompts)), cond]) if cfg else None

        def velocity(sample: list[Tensor], timestep: Tensor, guidance: float) -> Tensor:
            if StepSchedule.uses_cfg(guidance):
                assert both is not None
                doubled = [torch.cat([x, x]) for x in sample]
                v_u, v_c = self.denoise(doubled, both.tokens, both.mask, both.pooled,
                                        torch.cat([timestep, timestep])).chunk(2)  # fmt: skip
                return v_u + guidance * (v_c - v_u)
            return self.denoise(sample, cond.tokens, cond.mask, cond.pooled, timestep)

        return pyramidal_sample(
            velocity, batch=len(prompts), channels=self.manifest["pipeline"]["latent_channels"],
            height=v["height"] // 8, width=v["width"] // 8, num_units=v["units"], schedule=schedule,
            scheduler=self.scheduler, generator=torch.Generator("cpu").manual_seed(seed),
        )  # fmt: skip

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], seed: int = 0, negative_prompt: str = "") -> Tensor:
        """Videos [B, 3, frames, H, W] in [-1, 1]."""
        return self._run("vae_decoder", self.sample_latents(prompts, seed, negative_prompt))
