"""The Pyramid-Flow model family: builtin sources, checkpoint directories, skeletons, saving and reloading.

A checkpoint directory is read in the public release's layout (`text_encoder{,_2,_3}/`, `tokenizer{,_2,_3}/`,
`diffusion_transformer_384p/`, `causal_video_vae/`, each `config.json` + weights), lazily and strictly; a
neocompress output uses the same layout plus `neocompress.json` (manifest) and `scheduler/`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neocompress.core.errors import CheckpointError, SourceError
from neocompress.core.hashing import hash_json, hash_module, hash_tree
from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.models.checkpoint import (
    load_component,
    read_config,
    read_json_object,
    read_state_dict,
    save_component,
    save_modules,
    weight_files,
)
from neocompress.models.family import MANIFEST, ModelFamily, read_manifest
from neocompress.models.pyramid_flow.denoiser import PyramidFlowMMDiT
from neocompress.models.pyramid_flow.denoiser_config import DenoiserConfig
from neocompress.models.pyramid_flow.ir_builder import FAMILY, build_ir
from neocompress.models.pyramid_flow.scheduler import SchedulerConfig, StepSchedule
from neocompress.models.pyramid_flow.spec import (
    BUILTIN_SPECS,
    SHIPPED_DIRS,
    WEIGHTLESS,
    PyramidFlowSpec,
    VideoSetting,
    override_schedule,
)
from neocompress.models.pyramid_flow.text_config import TextBundleConfig
from neocompress.models.pyramid_flow.text_encoders import build_clip_g, build_clip_l, build_t5
from neocompress.models.pyramid_flow.tokenizers import (
    TextTokenizers,
    load_tokenizers,
    save_tokenizer,
    tiny_tokenizer_root,
)
from neocompress.models.pyramid_flow.vae import CausalVAEConfig, CausalVAEDecoder, CausalVAEEncoder, LatentNorm
from neocompress.models.taehv_decoder import TAEHVDecoder

TEXT_FOLDERS = {"clip_l": "text_encoder", "clip_g": "text_encoder_2", "t5": "text_encoder_3"}
DENOISER_FOLDERS = ("diffusion_transformer_384p", "diffusion_transformer_768p", "diffusion_transformer")
VAE_FOLDER = "causal_video_vae"
SCHEDULER_FOLDER = "scheduler"
DENOISER_WEIGHTS = "diffusion_pytorch_model.safetensors"
QUANT_FOLDER = "quantization/denoiser"  # AIMET encodings of a quantized denoiser (neocompress's own addition)
DECODER_QUANT_FOLDER = "quantization/vae_decoder"  # ... of a quantized VAE decoder
TEXT_QUANT_FILE = "quantization/text_encoders.json"  # the precision the text encoders are simulated in
TEXT_WEIGHTS = "model.safetensors"
TAEHV_FOLDER = "taehv_decoder"  # a decoder_swap'd pipeline's decoder (the causal VAE folder then holds the encoder)


def _builders(s: PyramidFlowSpec) -> dict[str, Callable[[], nn.Module]]:
    return {
        "clip_l": lambda: build_clip_l(s.text),
        "clip_g": lambda: build_clip_g(s.text),
        "t5": lambda: build_t5(s.text),
        "denoiser": lambda: PyramidFlowMMDiT(s.denoiser),
        "vae_encoder": lambda: CausalVAEEncoder(s.vae),
        "vae_decoder": lambda: TAEHVDecoder.from_checkpoint_config(s.decoder) if s.decoder else CausalVAEDecoder(s.vae),
    }


@contextlib.contextmanager
def _config_errors(component: str, where: str) -> Iterator[None]:
    """A config.json that parses but does not describe a model we can build is bad input (exit 2), not a crash:
    re-raise as CheckpointError naming the component and the file."""
    try:
        yield
    except CheckpointError as e:
        if where in str(e):
            raise
        raise CheckpointError(f"{component}: invalid config {where}: {e}") from None
    except KeyError as e:
        raise CheckpointError(f"{component}: invalid config {where}: missing key {e}") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{component}: invalid config {where}: {e}") from None


def shipped_dir(source: str) -> Path | None:
    """The package folder holding a builtin's trained pipeline, if it ships one."""
    folder = SHIPPED_DIRS.get(source)
    return folder if folder is not None and (folder / MANIFEST).is_file() else None


def _seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval()


class PyramidFlowFamily(ModelFamily):
    name = FAMILY

    def __init__(self) -> None:
        # source_key() of a builtin builds the pipeline to hash its weights; the load() that follows reuses it.
        self._hashed: tuple[tuple, PipelineIR] | None = None

    def builtin_sources(self) -> list[str]:
        return sorted(BUILTIN_SPECS)

    # ------------------------------------------------------------------ specs
    def spec_of(self, source: str | Path) -> PyramidFlowSpec:
        source = str(source)
        if source.startswith("builtin:"):
            self.check_source(source)
            shipped = shipped_dir(source)
            return self._spec_from_directory(shipped) if shipped else BUILTIN_SPECS[source]()
        return self._spec_from_directory(Path(source))

    def _spec_from_directory(self, root: Path) -> PyramidFlowSpec:
        if not root.is_dir():
            raise SourceError(f"source '{root}' is not a directory")
        manifest = read_manifest(root)
        extras = manifest.get("pyramid_flow", {})
        if not isinstance(extras, dict) or not isinstance(extras.get("text_lengths", {}), dict):
            raise CheckpointError(f"manifest '{root / MANIFEST}': 'pyramid_flow' must hold an object with "
                                  "'text_lengths' an object")  # fmt: skip
        lengths = extras.get("text_lengths", {})
        text_configs = {name: read_config(root / folder, name) for name, folder in TEXT_FOLDERS.items()}
        with _config_errors("text encoders", ", ".join(f"'{root / f / 'config.json'}'" for f in TEXT_FOLDERS.values())):
            text = TextBundleConfig(
                **text_configs,
                clip_max_length=lengths.get("clip_max_length", 77),
                t5_max_length=lengths.get("t5_max_length", 128),
            )
        folder = extras.get("denoiser_folder") or next((f for f in DENOISER_FOLDERS if (root / f).is_dir()), None)
        if folder is None or not (root / folder).is_dir():
            raise CheckpointError(
                f"denoiser: no denoiser folder in '{root}' (looked for {', '.join(DENOISER_FOLDERS)})"
            )
        with _config_errors("denoiser", f"'{root / folder / 'config.json'}'"):
            denoiser = DenoiserConfig.from_dict(read_config(root / folder, "denoiser"))
        with _config_errors("vae", f"'{root / VAE_FOLDER / 'config.json'}'"):
            vae = CausalVAEConfig.from_dict(read_config(root / VAE_FOLDER, "vae"))
        sched_file = root / SCHEDULER_FOLDER / "scheduler_config.json"
        sched = read_json_object(sched_file, "scheduler", default={})
        with _config_errors("scheduler", f"'{sched_file}'"):
            scheduler = SchedulerConfig.from_dict(sched.get("scheduler", {}))
            schedule = StepSchedule.from_dict(sched.get("schedule", {}))
        with _config_errors("manifest", f"'{root / MANIFEST}'"):
            video = VideoSetting(**extras["video"]) if "video" in extras else VideoSetting(49, 320, 512)
            norm = LatentNorm(**extras["latent_norm"]) if "latent_norm" in extras else LatentNorm.pyramid_flow_sd3()
        decoder = read_config(root / TAEHV_FOLDER, "vae_decoder") if (root / TAEHV_FOLDER).is_dir() else None
        if decoder is not None:
            with _config_errors("vae_decoder", f"'{root / TAEHV_FOLDER / 'config.json'}'"):
                TAEHVDecoder.from_checkpoint_config(decoder).to("meta")  # a config that builds, or a clear error
        return PyramidFlowSpec(
            text=text,
            denoiser=denoiser,
            vae=vae,
            scheduler=scheduler,
            schedule=schedule,
            latent_norm=norm,
            video=video,
            denoiser_folder=folder,
            decoder=decoder,
        )

    # ------------------------------------------------------------------ building
    def skeleton(self, source: str) -> PipelineIR:
        s = self.spec_of(source)
        with torch.device("meta"):
            modules = {k: b() for k, b in _builders(s).items()}
        return build_ir(s, modules, None)

    def load(
        self, source: str, *, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0
    ) -> PipelineIR:
        source = str(source)
        if self._hashed is not None and self._hashed[0] == (source, dtype, device, seed):
            ir, self._hashed = self._hashed[1], None
            return ir
        s = self.spec_of(source)
        if source in WEIGHTLESS:
            raise SourceError(
                f"'{source}' has no weights here (structure only, for `inspect` and `plan`); "
                "give the checkpoint directory of the real model as the source to run passes on it"
            )
        folder = shipped_dir(source) if source.startswith("builtin:") else Path(source)
        if folder is None:  # a builtin without shipped weights: its seeded init
            modules = {k: _seeded(b, seed + i) for i, (k, b) in enumerate(_builders(s).items())}
            tokenizers = load_tokenizers()
        else:
            tokenizers = self._load_tokenizers(folder)  # first: a missing folder must not wait for the weights
            modules = self._load_directory(folder, s, dtype)
        modules = {k: m.to(device=device, dtype=dtype) for k, m in modules.items()}
        ir = build_ir(s, modules, tokenizers)
        if folder is not None and (folder / QUANT_FOLDER / "graphs.json").is_file():
            from neocompress.quant.denoiser_sim import load_simulated

            graphs, settings = load_simulated(ir["denoiser"].module.eval(), folder / QUANT_FOLDER)
            ir["denoiser"].extras["quantization"] = {"graphs": graphs, "settings": settings}
        if folder is not None:
            _load_other_quantization(ir, folder)
            from neocompress.models.pyramid_flow.first_frame import load_first_frame

            load_first_frame(ir, folder)  # hybrid mode's image model, when the pipeline has one
        return ir

    @staticmethod
    def _load_tokenizers(root: Path) -> TextTokenizers:
        try:
            return load_tokenizers(root)
        except (OSError, ValueError) as e:  # FileNotFoundError for a missing tokenizer*/ folder, or a broken one
            raise CheckpointError(f"tokenizers: cannot load the tokenizers of '{root}': {e}") from None

    def _load_directory(self, root: Path, s: PyramidFlowSpec, dtype: torch.dtype) -> dict[str, nn.Module]:
        b = _builders(s)
        out = {name: load_component(b[name], root / folder, name, dtype=dtype) for name, folder in TEXT_FOLDERS.items()}
        out["denoiser"] = load_component(b["denoiser"], root / s.denoiser_folder, "denoiser", dtype=dtype)
        vae_sd = read_state_dict(root / VAE_FOLDER, "vae")
        parts = [("vae_encoder", ("encoder.", "quant_conv."))]
        if s.decoder is None:
            parts.append(("vae_decoder", ("decoder.", "post_quant_conv.")))
        else:  # the swapped-in decoder has its own folder; the VAE folder keeps the frozen encoder only
            out["vae_decoder"] = load_component(b["vae_decoder"], root / TAEHV_FOLDER, "vae_decoder", dtype=dtype)
        for name, prefixes in parts:
            part = {k: v for k, v in vae_sd.items() if k.startswith(prefixes)}
            out[name] = load_component(b[name], root / VAE_FOLDER, name, dtype=dtype, state_dict=part)
        known = tuple(p for _, prefixes in parts for p in prefixes)
        unexpected = sorted(k for k in vae_sd if not k.startswith(known))
        if unexpected:
            raise CheckpointError(f"vae: checkpoint '{root / VAE_FOLDER}' has unexpected key(s): {unexpected[:12]}")
        return out

    # ------------------------------------------------------------------ saving
    def save(self, ir: PipelineIR, directory: Path, manifest: dict[str, Any]) -> None:
        directory = Path(directory)
        s: PyramidFlowSpec = ir.meta["spec"]
        for name, folder in TEXT_FOLDERS.items():
            module = ir[name].module
            config = module.checkpoint_config() if hasattr(module, "checkpoint_config") else module.config.to_dict()
            save_component(module, directory / folder, config, TEXT_WEIGHTS)
        tokenizers = [ir[n].extras.get("tokenizer") for n in TEXT_FOLDERS]
        if all(t is not None for t in tokenizers):
            for folder, tok in zip(("tokenizer", "tokenizer_2", "tokenizer_3"), tokenizers, strict=True):
                save_tokenizer(tok, directory / folder)
        den = ir["denoiser"]
        save_component(den.module, directory / s.denoiser_folder, den.module.config.to_dict(), DENOISER_WEIGHTS)
        quantized = den.extras.get("quantization")
        if quantized is not None:  # float weights above, AIMET encodings per graph here
            from neocompress.quant.denoiser_sim import save_encodings

            save_encodings(quantized["graphs"], directory / QUANT_FOLDER, quantized["settings"])
        decoder_sim = ir["vae_decoder"].extras.get("quantization", {}).get("decoder")
        if decoder_sim is not None:
            from neocompress.quant.decoder_sim import save_decoder

            save_decoder(decoder_sim, directory / DECODER_QUANT_FOLDER)
        text = ir["t5"].extras.get("quantization")
        if text is not None:
            (directory / TEXT_QUANT_FILE).parent.mkdir(parents=True, exist_ok=True)
            (directory / TEXT_QUANT_FILE).write_text(json.dumps(text["settings"]))
        decoder = ir["vae_decoder"].module
        vae_parts = {"vae_encoder": ir["vae_encoder"].module}
        if isinstance(decoder, TAEHVDecoder):
            save_component(decoder, directory / TAEHV_FOLDER, decoder.checkpoint_config(), DENOISER_WEIGHTS)
        else:
            vae_parts["vae_decoder"] = decoder
        save_modules(vae_parts, directory / VAE_FOLDER, ir["vae_encoder"].module.config.to_dict(), DENOISER_WEIGHTS)
        from neocompress.models.pyramid_flow.first_frame import save_first_frame

        save_first_frame(ir, directory)
        sched = ir["scheduler"]
        (directory / SCHEDULER_FOLDER).mkdir(parents=True, exist_ok=True)
        (directory / SCHEDULER_FOLDER / "scheduler_config.json").write_text(
            json.dumps(
                {"scheduler": sched.extras["object"].config.to_dict(), "schedule": sched.extras["schedule"].to_dict()},
                indent=2,
            )
        )
        full = {
            **manifest,
            "family": FAMILY,
            "pyramid_flow": s.extras_dict(),
            "components": {
                c.name: {
                    "kind": c.kind,
                    "class": c.class_name,
                    "params": c.num_params(),
                    "provenance": [p.to_dict() for p in c.provenance],
                }
                for c in ir
            },
        }
        full["pyramid_flow"]["schedule"] = sched.extras["schedule"].to_dict()
        (directory / MANIFEST).write_text(json.dumps(full, indent=2, default=str))

    # ------------------------------------------------------------------ identity
    def has_weights(self, source: str) -> bool:
        return str(source) not in WEIGHTLESS

    def source_key(self, source: str, *, dtype: torch.dtype, seed: int) -> str:
        source = str(source)
        if source.startswith("builtin:"):
            if source in WEIGHTLESS:
                return hash_json({"source": source})
            ir = self.load(source, dtype=dtype, seed=seed)
            self._hashed = ((source, dtype, "cpu", seed), ir)  # the next identical load() reuses it
            # Everything a builtin is made of: weights, tokenizers, schedule, latent norm, default video.
            return hash_json(
                {
                    "family": FAMILY,
                    "dtype": str(dtype),
                    "weights": {c.name: hash_module(c.module) for c in ir if c.module is not None},
                    "tokenizers": hash_tree(tiny_tokenizer_root()),
                    "spec": ir.meta["spec"].extras_dict(),
                }
            )
        root = Path(source)
        for folder in [*TEXT_FOLDERS.values(), VAE_FOLDER]:
            weight_files(root / folder, folder)
        return hash_json({"family": FAMILY, "dtype": str(dtype), "tree": hash_tree(root)})

    # ------------------------------------------------------------------ analysis helpers
    def scheduler_summary(self, ir: PipelineIR) -> dict[str, Any]:
        s: PyramidFlowSpec = ir.meta["spec"]
        sched = ir["scheduler"].extras["object"]
        schedule: StepSchedule = ir["scheduler"].extras["schedule"]
        return {
            "sigma_start": list(sched.sigma_start),
            "sigma_end": list(sched.sigma_end),
            "timestep_ranges": [list(r) for r in sched.timestep_ranges],
            "steps": schedule.to_dict(),
            "num_units": s.video.units,
            "video": s.video.to_dict(),
            "nfe": schedule.nfe(s.video.units),
            "denoiser_calls": schedule.calls(s.video.units),
        }

    def video_setting(self, ir: PipelineIR, generate: Any | None = None) -> dict[str, Any]:
        """The video and schedule FLOPs are counted for: the model's defaults, overridden by a `generate:` section."""
        s: PyramidFlowSpec = ir.meta["spec"]
        schedule: StepSchedule = ir["scheduler"].extras["schedule"]
        v = s.video
        if generate is not None:
            v = VideoSetting(generate.frames or v.frames, generate.height or v.height, generate.width or v.width)
            schedule = override_schedule(
                schedule,
                first=generate.first_unit_steps,
                later=generate.later_unit_steps,
                guidance_first=generate.guidance_first,
                guidance_later=generate.guidance_later,
            )
        return {**v.to_dict(), "units": v.units, "schedule": schedule.to_dict(), "nfe": schedule.nfe(v.units)}

    def check_generate(self, ir: PipelineIR, generate: Any) -> dict[str, str]:
        """Problems of a recipe's `generate:` section against this model, by field name."""
        v = self.video_setting(ir, generate)
        return ir.meta["spec"].video_problems(v["frames"], v["height"], v["width"])

    def component_flops(self, ir: PipelineIR, name: str, video: dict[str, Any]) -> int:
        from neocompress.models.pyramid_flow.flops import component_flops

        return component_flops(ir, name, video)

    def block_flops(self, ir: PipelineIR, name: str) -> tuple[list[float], float]:
        """(FLOPs of each block, FLOPs outside the blocks) of one default video, from the analytic formula: the
        cost `block_prune` weighs against a FLOPs budget. A block's cost is what removing it saves (the last
        block, context_pre_only, costs a little less than a full one)."""
        from dataclasses import replace

        from neocompress.analysis.flops import DenoiserShape
        from neocompress.models.pyramid_flow.flops import denoiser_video_flops

        video = self.video_setting(ir, None)
        shape = DenoiserShape.of(ir[name].module)
        total = denoiser_video_flops(ir, shape, video)
        full = total - denoiser_video_flops(ir, replace(shape, full_blocks=shape.full_blocks - 1), video)
        pre = total - denoiser_video_flops(ir, replace(shape, pre_only_blocks=shape.pre_only_blocks - 1), video)
        blocks = list(ir[name].extras["block_adapter"].blocks(ir[name].module))
        costs = [float(pre if getattr(b, "context_pre_only", False) else full) for b in blocks]
        return costs, float(total - sum(costs))

    def pipeline(self, ir: PipelineIR, simulated: bool = True):
        from neocompress.models.pyramid_flow.pipeline import TextToVideoPipeline

        return TextToVideoPipeline(ir, simulated=simulated)


def _load_other_quantization(ir: PipelineIR, folder: Path) -> None:
    """Re-attach a saved VAE decoder simulation and the text encoders' precision (see the quantize pass)."""
    if (folder / DECODER_QUANT_FOLDER).is_dir():
        from neocompress.quant.decoder_sim import load_decoder

        comp = ir["vae_decoder"]
        decoder = load_decoder(comp.module.eval(), comp.extras["latent_norm"], folder / DECODER_QUANT_FOLDER)
        comp.extras["quantization"] = {"decoder": decoder, "settings": decoder.settings}
    if (folder / TEXT_QUANT_FILE).is_file():
        settings = read_json_object(folder / TEXT_QUANT_FILE, "text encoders")
        for name in TEXT_FOLDERS:
            ir[name].extras["quantization"] = {"settings": settings}
