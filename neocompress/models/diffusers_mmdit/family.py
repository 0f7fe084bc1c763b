"""diffusers' SD3 and Flux transformers as model families: load a transformer folder, prune it, write it back.

A source is a diffusers transformer folder (`config.json` + safetensors, as in `<pipeline>/transformer/`), or a
pipeline folder that has one, or a builtin: `builtin:sd3-tiny` / `builtin:flux-tiny` are seeded tiny models
that run here, `builtin:sd3-medium` / `builtin:flux-dev` the public full-size configurations on the meta device
(structure only, for `inspect` and `plan`). Loading is diffusers' `from_pretrained` (strict about missing
weights); saving is `save_pretrained` plus the neocompress manifest, so the result is a folder that
`SD3Transformer2DModel.from_pretrained` / `FluxTransformer2DModel.from_pretrained` load as they are.

FLOPs come from torch's FlopCounterMode over one forward of the meta-device model (no memory, exact for the
matmuls and attention the model runs), times the sampler's steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neocompress.core.errors import CheckpointError, SourceError
from neocompress.core.hashing import hash_json, hash_module, hash_tree
from neocompress.ir import Component, PipelineIR
from neocompress.ir.pipeline_ir import PIPELINE_INPUT, spec
from neocompress.models.adapter import BlockAdapter
from neocompress.models.checkpoint import read_config, weight_files
from neocompress.models.diffusers_mmdit.adapters import FluxBlockAdapter, SD3BlockAdapter
from neocompress.models.diffusers_mmdit.configs import FLUX_BUILTINS, SD3_BUILTINS, Builtin, MMDiTDefaults
from neocompress.models.diffusers_mmdit.pipeline import (
    TEXT_CONDITIONING,
    MMDiTImagePipeline,
    call_transformer,
    latent_channels,
)
from neocompress.models.family import MANIFEST, ModelFamily, read_manifest
from neocompress.models.pyramid_flow.text_encoders import TextEmbeddings


class DiffusersMMDiTFamily(ModelFamily):
    kind: str  # "sd3" or "flux"
    class_name: str
    builtins: dict[str, Builtin]
    supports_minibench = False  # MiniBench judges videos of the procedural world; these models make image latents
    text_conditioning = TEXT_CONDITIONING
    decodes_videos = False  # a transformer folder: no VAE to decode with

    def model_class(self) -> type[nn.Module]:
        import diffusers

        return getattr(diffusers, self.class_name)

    def adapter(self) -> BlockAdapter:
        return SD3BlockAdapter() if self.kind == "sd3" else FluxBlockAdapter()

    def builtin_sources(self) -> list[str]:
        return sorted(self.builtins)

    # ------------------------------------------------------------------ sources
    def _folder(self, source: str) -> Path:
        """The transformer folder of a source directory (itself, or its `transformer/` subfolder)."""
        root = Path(source)
        folder = root / "transformer" if not (root / "config.json").is_file() else root
        if not (folder / "config.json").is_file():
            raise SourceError(f"'{source}' has no config.json (nor transformer/config.json): not a diffusers folder")
        config = read_config(folder, self.class_name)
        found = config.get("_class_name")
        if found is not None and found != self.class_name:
            hint = {"SD3Transformer2DModel": "diffusers-sd3", "FluxTransformer2DModel": "diffusers-flux"}.get(found)
            raise SourceError(
                f"'{folder / 'config.json'}' describes a {found}, not a {self.class_name}"
                + (f"; use `family: {hint}`" if hint else "")
            )
        return folder

    def _config_and_defaults(self, source: str) -> tuple[dict[str, Any], MMDiTDefaults]:
        if source.startswith("builtin:"):
            self.check_source(source)
            b = self.builtins[source]
            return dict(b.config), b.defaults
        folder = self._folder(source)
        config = read_config(folder, self.class_name)
        saved = read_manifest(folder).get("diffusers", {}).get("defaults")
        return config, MMDiTDefaults.from_dict(saved) if saved else self._public_defaults(config)

    def _public_defaults(self, config: dict[str, Any]) -> MMDiTDefaults:
        if self.kind == "sd3":
            return MMDiTDefaults(latent_size=int(config.get("sample_size", 128)), steps=28, text_tokens=333)
        return MMDiTDefaults(latent_size=128, steps=28, guidance=3.5, text_tokens=512)

    # ------------------------------------------------------------------ building
    def _ir(self, model: nn.Module, defaults: MMDiTDefaults, source: str) -> PipelineIR:
        cfg = model.config
        channels = latent_channels(self.kind, cfg)
        ir = PipelineIR(self.name, meta={"defaults": defaults, "source": source})
        ir.add(
            Component(
                "denoiser",
                "denoiser",
                model,
                dict(cfg),
                inputs={
                    "noisy_latents": spec("B", channels, "h", "w"),
                    "text_tokens": spec("B", "L", cfg.joint_attention_dim),
                    "pooled": spec("B", cfg.pooled_projection_dim),
                },
                outputs={"velocity": spec("B", channels, "h", "w")},
                extras={"block_adapter": self.adapter(), "text_conditioning": TEXT_CONDITIONING},
            )
        )
        for port in ("noisy_latents", "text_tokens", "pooled"):
            ir.connect(PIPELINE_INPUT, port, "denoiser", port)
        return ir

    def skeleton(self, source: str) -> PipelineIR:
        config, defaults = self._config_and_defaults(str(source))
        with torch.device("meta"):
            model = self.model_class().from_config(config)
        return self._ir(model, defaults, str(source))

    def load(
        self, source: str, *, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0
    ) -> PipelineIR:
        source = str(source)
        config, defaults = self._config_and_defaults(source)
        if source.startswith("builtin:"):
            if self.builtins[source].weightless:
                raise SourceError(
                    f"'{source}' has no weights here (structure only, for `inspect` and `plan`); give a diffusers "
                    "transformer folder as the source to run passes on it"
                )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = self.model_class().from_config(config)
        else:
            folder = self._folder(source)
            weight_files(folder, "denoiser")  # a clear error for a folder without weights
            try:
                model = self.model_class().from_pretrained(str(folder), torch_dtype=dtype)
            except (OSError, ValueError, RuntimeError) as e:
                raise CheckpointError(f"denoiser: cannot load '{folder}' with {self.class_name}: {e}") from None
        if next(model.parameters()).dtype != dtype:
            model = model.to(dtype=dtype)
        return self._ir(model.to(device=device).eval(), defaults, source)

    def has_weights(self, source: str) -> bool:
        source = str(source)
        return not (source in self.builtins and self.builtins[source].weightless)

    def check_weights(self, source: str) -> None:
        """The transformer folder's safetensors headers against the model its config.json builds (names,
        shapes, dtypes; no tensor read): diffusers' own loader would read every tensor to find a mismatch."""
        from neocompress.models.checkpoint import headers_only, load_component

        if str(source).startswith("builtin:"):
            return
        config, _ = self._config_and_defaults(str(source))
        folder = self._folder(str(source))
        try:
            build = self.model_class().from_config
            with headers_only():
                load_component(lambda: build(config), folder, "denoiser")
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"denoiser: '{folder / 'config.json'}' does not build a {self.class_name}: {e}") \
                from None

    def save(self, ir: PipelineIR, directory: Path, manifest: dict[str, Any]) -> None:
        """`save_pretrained` (config.json + diffusion_pytorch_model.safetensors) and the manifest beside them."""
        directory = Path(directory)
        den = ir["denoiser"]
        den.module.save_pretrained(str(directory), safe_serialization=True)
        full = {
            **manifest,
            "family": self.name,
            "diffusers": {"class": self.class_name, "defaults": ir.meta["defaults"].to_dict()},
            "text_conditioning": TEXT_CONDITIONING,
            "components": {
                "denoiser": {
                    "kind": den.kind,
                    "class": den.class_name,
                    "params": den.num_params(),
                    "provenance": [p.to_dict() for p in den.provenance],
                }
            },
        }
        (directory / MANIFEST).write_text(json.dumps(full, indent=2, default=str))

    def source_key(self, source: str, *, dtype: torch.dtype, seed: int) -> str:
        source = str(source)
        if source.startswith("builtin:"):
            if self.builtins[source].weightless:
                return hash_json({"family": self.name, "source": source})
            ir = self.load(source, dtype=dtype, seed=seed)
            return hash_json({"family": self.name, "dtype": str(dtype), "weights": hash_module(ir["denoiser"].module)})
        return hash_json({"family": self.name, "dtype": str(dtype), "tree": hash_tree(self._folder(source))})

    # ------------------------------------------------------------------ analysis
    def pipeline(self, ir: PipelineIR) -> MMDiTImagePipeline:
        return MMDiTImagePipeline(self.kind, ir["denoiser"].module, ir.meta["defaults"])

    def scheduler_summary(self, ir: PipelineIR) -> dict[str, Any]:
        d: MMDiTDefaults = ir.meta["defaults"]
        return {
            "scheduler": "FlowMatchEulerDiscreteScheduler",
            "shift": d.shift,
            "steps": d.steps,
            "guidance": d.guidance,
            "nfe": d.steps,
            "latent_size": d.latent_size,
        }

    def video_setting(self, ir: PipelineIR, generate: Any | None = None) -> dict[str, Any]:
        """An image: one frame at the default latent size (x8 pixels); a `generate:` section may set the size."""
        d: MMDiTDefaults = ir.meta["defaults"]
        height = (generate.height if generate is not None and generate.height else None) or d.latent_size * 8
        width = (generate.width if generate is not None and generate.width else None) or d.latent_size * 8
        steps = d.steps
        if generate is not None and generate.first_unit_steps:
            steps = sum(generate.first_unit_steps)
        schedule = {"steps": steps, "guidance": d.guidance}
        return {"frames": 1, "height": height, "width": width, "schedule": schedule, "nfe": steps}

    def sampler_problems(self, first: list[int] | None, later: list[int] | None) -> dict[str, str]:
        out = {}
        if first is not None and len(first) != 1:
            out["first"] = f"{self.name} samples in one stage: give [steps], got {first}"
        if later is not None:
            out["later"] = f"{self.name} makes images: there are no later frames to give steps for"
        return out

    def check_generate(self, ir: PipelineIR, generate: Any) -> dict[str, str]:
        problems = {}
        if generate.frames not in (None, 1):
            problems["frames"] = f"{self.name} makes images: frames must be 1 or left out, got {generate.frames}"
        if generate.later_unit_steps:
            problems["later_unit_steps"] = f"{self.name} makes images: there are no later frames"
        multiple = 16 * int(ir["denoiser"].config.get("patch_size", 1))
        for key in ("height", "width"):
            value = getattr(generate, key)
            if value is not None and value % multiple:
                problems[key] = f"{key} must be a multiple of {multiple} pixels for {self.name}, got {value}"
        return problems

    def _counted(self, ir: PipelineIR, name: str, video: dict[str, Any]) -> dict[str, int]:
        """FLOPs per module of one denoiser call, counted on a meta-device copy of the structure."""
        from torch.utils.flop_counter import FlopCounterMode

        comp = ir[name]
        with torch.device("meta"):
            model = self.model_class().from_config(dict(comp.module.config))
        d: MMDiTDefaults = ir.meta["defaults"]
        cfg = model.config
        channels = latent_channels(self.kind, cfg)
        with torch.device("meta"):
            text = TextEmbeddings(
                torch.zeros(1, cfg.pooled_projection_dim),
                torch.zeros(1, d.text_tokens, cfg.joint_attention_dim),
                torch.ones(1, d.text_tokens, dtype=torch.long),
            )
            x = torch.zeros(1, channels, video["height"] // 8, video["width"] // 8)
            sigma = torch.ones(1)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            call_transformer(self.kind, model, x, sigma, text, d.guidance)
        return {k: int(sum(v.values())) for k, v in counter.get_flop_counts().items()}

    def component_flops(self, ir: PipelineIR, name: str, video: dict[str, Any]) -> int:
        return self._counted(ir, name, video)["Global"] * int(video["nfe"])

    def block_flops(self, ir: PipelineIR, name: str) -> tuple[list[float], float]:
        """(FLOPs of each block, FLOPs outside them) per image at the default size and steps."""
        video = self.video_setting(ir, None)
        counts = self._counted(ir, name, video)
        prefix = self.class_name
        lists = ["transformer_blocks"] + (["single_transformer_blocks"] if self.kind == "flux" else [])
        model = ir[name].module
        per_block = [
            float(counts.get(f"{prefix}.{lst}.{i}", 0) * video["nfe"])
            for lst in lists
            for i in range(len(getattr(model, lst)))
        ]
        return per_block, float(counts["Global"] * video["nfe"]) - sum(per_block)


class SD3Family(DiffusersMMDiTFamily):
    name = "diffusers-sd3"
    kind = "sd3"
    class_name = "SD3Transformer2DModel"
    builtins = SD3_BUILTINS


class FluxFamily(DiffusersMMDiTFamily):
    name = "diffusers-flux"
    kind = "flux"
    class_name = "FluxTransformer2DModel"
    builtins = FLUX_BUILTINS
