"""Shared fixtures, each built once per session: the seeded tiny pipeline, a synthetic checkpoint in the public
Pyramid-Flow layout (no neocompress manifest), and a saved `neocompress apply recipes/tiny.yaml` output."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest
import torch
from safetensors.torch import save_file

from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.models.pyramid_flow.denoiser_config import DenoiserConfig
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.models.pyramid_flow.tokenizers import SUBFOLDERS, tiny_tokenizer_root
from neocompress.models.pyramid_flow.vae import CausalVAEConfig

REPO = Path(__file__).resolve().parents[1]


def load_script(relative: str) -> ModuleType:
    """A repository script (tools/, benchmarks/) imported by path, as the tests that check a script need it."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
TINY_RECIPE = REPO / "tests" / "data" / "tiny-random.yaml"  # a fast remove_blocks recipe on the untrained tiny
TINY_SEED = 0

# The public folder of each component, and the weight file name the released checkpoint uses there.
PUBLIC_TEXT = {"clip_l": "text_encoder", "clip_g": "text_encoder_2", "t5": "text_encoder_3"}
PUBLIC_DENOISER = "diffusion_transformer_384p"
PUBLIC_VAE = "causal_video_vae"
PUBLIC_WEIGHTS = {"text": "model.safetensors", "denoiser": "diffusion_pytorch_model.safetensors"}


def public_denoiser_config(cfg: DenoiserConfig) -> dict:
    """`diffusion_transformer_384p/config.json` as the release writes it (diffusers keys, pipeline flags)."""
    hidden = ("qk_norm_eps", "norm_eps", "rope_theta", "ff_mult", "timestep_proj_channels")
    hidden += ("use_context_embedder", "context_pre_only_last")
    defaults = DenoiserConfig()
    # The public file cannot express these: the synthetic model must use the released values.
    assert all(getattr(cfg, k) == getattr(defaults, k) for k in hidden) and cfg.out_channels == cfg.in_channels
    return {
        "_class_name": "PyramidDiffusionMMDiT",
        "_diffusers_version": "0.30.3",
        **{
            k: getattr(cfg, k)
            for k in (
                "sample_size",
                "patch_size",
                "in_channels",
                "num_layers",
                "attention_head_dim",
                "num_attention_heads",
                "caption_projection_dim",
                "pooled_projection_dim",
                "pos_embed_max_size",
                "max_num_frames",
                "qk_norm",
                "joint_attention_dim",
            )
        },
        "pos_embed_type": "sincos",
        "temp_pos_embed_type": "rope",
        "use_gradient_checkpointing": False,
        "use_flash_attn": False,
        "use_temporal_causal": True,
        "use_t5_mask": True,
        "add_temp_pos_embed": True,
        "interp_condition_pos": True,
        "gradient_checkpointing_ratio": 0.6,
    }


def public_vae_config(c: CausalVAEConfig) -> dict:
    """`causal_video_vae/config.json` in the release's encoder_*/decoder_* form."""
    n = len(c.block_out_channels)
    return {
        "_class_name": "CausalVideoVAE",
        "_diffusers_version": "0.29.2",
        "add_post_quant_conv": True,
        "decoder_act_fn": "silu",
        "decoder_block_dropout": [0.0] * n,
        "decoder_block_out_channels": list(c.decoder_widths),
        "decoder_in_channels": c.latent_channels,
        "decoder_layers_per_block": list(c.decoder_layers_per_block),
        "decoder_norm_num_groups": c.norm_num_groups,
        "decoder_out_channels": c.out_channels,
        "decoder_spatial_up_sample": list(c.spatial_upsample),
        "decoder_temporal_up_sample": list(c.temporal_upsample),
        "decoder_type": "causal_vae_conv",
        "decoder_up_block_types": ["UpDecoderBlockCausal3D"] * n,
        "downsample_scale": c.spatial_compression,
        "encoder_act_fn": "silu",
        "encoder_block_dropout": [0.0] * n,
        "encoder_block_out_channels": list(c.block_out_channels),
        "encoder_double_z": True,
        "encoder_down_block_types": ["DownEncoderBlockCausal3D"] * n,
        "encoder_in_channels": c.in_channels,
        "encoder_layers_per_block": list(c.encoder_layers_per_block),
        "encoder_norm_num_groups": c.norm_num_groups,
        "encoder_out_channels": c.latent_channels,
        "encoder_spatial_down_sample": list(c.spatial_downsample),
        "encoder_temporal_down_sample": list(c.temporal_downsample),
        "encoder_type": "causal_vae_conv",
        "interpolate": False,
        "sample_size": 256,
        "scaling_factor": 0.13025,
    }


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}


def write_public_checkpoint(ir: PipelineIR, root: Path) -> Path:
    """Write `ir`'s weights the way the public release lays them out, with `safetensors.torch.save_file`:
    no neocompress.json, no scheduler/, T5 with `shared.weight` only (as transformers saves tied weights)."""
    root = Path(root)
    for name, folder in PUBLIC_TEXT.items():
        module = ir[name].module
        tensors = _tensors(module)
        if name == "t5":
            assert torch.equal(tensors.pop("encoder.embed_tokens.weight"), tensors["shared.weight"])
        (root / folder).mkdir(parents=True)
        save_file(tensors, str(root / folder / PUBLIC_WEIGHTS["text"]), metadata={"format": "pt"})
        (root / folder / "config.json").write_text(module.config.to_json_string())
    for sub in SUBFOLDERS:
        shutil.copytree(tiny_tokenizer_root() / sub, root / sub)
    den = ir["denoiser"].module
    (root / PUBLIC_DENOISER).mkdir()
    (root / PUBLIC_DENOISER / "config.json").write_text(json.dumps(public_denoiser_config(den.config), indent=2))
    save_file(_tensors(den), str(root / PUBLIC_DENOISER / PUBLIC_WEIGHTS["denoiser"]))
    (root / PUBLIC_VAE).mkdir()
    (root / PUBLIC_VAE / "config.json").write_text(json.dumps(public_vae_config(ir["vae_decoder"].module.config)))
    vae = {**_tensors(ir["vae_encoder"].module), **_tensors(ir["vae_decoder"].module)}
    save_file(vae, str(root / PUBLIC_VAE / PUBLIC_WEIGHTS["denoiser"]))
    return root


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Run the tests on one intra-op thread, then restore the setting. The models here are tiny: on a small
    machine shared with other jobs, two OpenMP threads wait on each other at every op (seconds per tiny video
    instead of 0.3 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_ir() -> PipelineIR:
    """`builtin:tiny-random` at the tiny recipe's seed. Shared: do not modify it."""
    return PyramidFlowFamily().load("builtin:tiny-random", seed=TINY_SEED)


@pytest.fixture(scope="session")
def public_checkpoint(tiny_ir: PipelineIR, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine public-layout checkpoint of `tiny_ir` (copy it before changing anything)."""
    return write_public_checkpoint(tiny_ir, tmp_path_factory.mktemp("public") / "pyramid-flow-tiny")


@pytest.fixture(scope="session")
def applied_tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`neocompress apply recipes/tiny.yaml` into a temporary output (blocks 2 and 5 of 6 removed)."""
    from neocompress.cli.main import main

    base = tmp_path_factory.mktemp("applied")
    out, cache = base / "tiny", base / "cache"
    rc = main(["apply", str(TINY_RECIPE), "-o", str(out), "--cache-dir", str(cache), "--no-progress"])
    assert rc == 0 and (out / "neocompress.json").is_file()
    return {"output": out, "cache": cache}


def hostile_pickle(marker: Path) -> bytes:
    """A pickle that writes `marker` when unpickled: what a hostile weight or checkpoint file could do instead.
    A test plants it and asserts the marker never appears."""
    import pickle

    class RunsCode:
        def __reduce__(self):
            return (Path.write_text, (marker, "pwned"))

    return pickle.dumps(RunsCode())

