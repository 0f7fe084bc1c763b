"""Loading Pyramid-Flow checkpoint directories: the public layout strictly and memory-mapped, every kind of
mismatch as a CheckpointError that names the component, the file or key and the shapes, and saved outputs."""

from __future__ import annotations

import gc
import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from neocompress.core.errors import CheckpointError, UserInputError
from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.models.pyramid_flow.denoiser import PyramidFlowMMDiT
from neocompress.models.pyramid_flow.denoiser_config import DenoiserConfig
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.models.pyramid_flow.ir_builder import build_ir
from neocompress.models.pyramid_flow.scheduler import StepSchedule
from neocompress.models.pyramid_flow.spec import VideoSetting
from neocompress.models.pyramid_flow.tokenizers import load_tokenizers
from neocompress.passes.remove_blocks import RemoveBlocks, RemoveBlocksConfig
from tests.conftest import PUBLIC_DENOISER, PUBLIC_VAE, TINY_SEED, public_denoiser_config

FAMILY = PyramidFlowFamily()
COMPONENTS = ("clip_l", "clip_g", "t5", "denoiser", "vae_encoder", "vae_decoder")
DEN_FILE = f"{PUBLIC_DENOISER}/diffusion_pytorch_model.safetensors"
VAE_FILE = f"{PUBLIC_VAE}/diffusion_pytorch_model.safetensors"
FAST = StepSchedule((2, 2, 2), (1, 1, 1), 7.0, 5.0)  # CFG on both, so the unconditional branch is exercised


def _states(ir: PipelineIR) -> dict[str, dict[str, torch.Tensor]]:
    return {name: ir[name].module.state_dict() for name in COMPONENTS}


def _assert_same_weights(got: PipelineIR, want: PipelineIR) -> None:
    a, b = _states(got), _states(want)
    for name in COMPONENTS:
        assert a[name].keys() == b[name].keys(), name
        for k, t in b[name].items():
            assert a[name][k].dtype == t.dtype and torch.equal(a[name][k], t), f"{name}.{k}"


def _video(ir: PipelineIR, seed: int = 1) -> torch.Tensor:
    return FAMILY.pipeline(ir).generate(["a red circle"], frames=9, height=64, width=64, schedule=FAST, seed=seed)


@pytest.fixture
def ckpt(public_checkpoint: Path, tmp_path: Path) -> Path:
    """A private copy of the public-layout checkpoint, free to break."""
    return Path(shutil.copytree(public_checkpoint, tmp_path / "ckpt"))


def _edit(path: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> None:
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


# ----------------------------------------------------------------------------------------- the public layout


def test_public_layout_loads_every_tensor_exactly(public_checkpoint: Path, tiny_ir: PipelineIR) -> None:
    assert not (public_checkpoint / "neocompress.json").exists()
    assert "encoder.embed_tokens.weight" not in load_file(str(public_checkpoint / "text_encoder_3/model.safetensors"))
    ir = FAMILY.load(str(public_checkpoint))
    _assert_same_weights(ir, tiny_ir)
    for name in COMPONENTS:
        module = ir[name].module
        assert not any(t.is_meta for t in [*module.parameters(), *module.buffers()]), name
        assert ir[name].num_params() == tiny_ir[name].num_params() > 0
    t5 = ir["t5"].module
    assert t5.shared.weight is t5.encoder.embed_tokens.weight  # tied again after `assign=True`
    spec, want = ir.meta["spec"], tiny_ir.meta["spec"]
    assert (spec.denoiser, spec.vae, spec.denoiser_folder) == (want.denoiser, want.vae, "diffusion_transformer_384p")
    # No manifest: the released model's defaults apply (T5 padded to 128, 49 frames at 320x512).
    assert (spec.text.t5_max_length, spec.text.clip_max_length, spec.video) == (128, 77, VideoSetting(49, 320, 512))
    assert [ir[n].extras["tokenizer"] is not None for n in ("clip_l", "clip_g", "t5")] == [True] * 3


def test_public_layout_generates_like_the_in_memory_pipeline(public_checkpoint: Path, tiny_ir: PipelineIR) -> None:
    loaded = FAMILY.load(str(public_checkpoint))
    same_spec = build_ir(loaded.meta["spec"], {n: tiny_ir[n].module for n in COMPONENTS}, load_tokenizers())
    video = _video(loaded)
    assert video.shape == (1, 3, 9, 64, 64) and torch.isfinite(video).all()
    assert torch.equal(video, _video(same_spec))
    # The builtin pads T5 to 32 tokens instead of 128; the mask keeps the pads out, so the video is the same.
    torch.testing.assert_close(video, _video(tiny_ir), rtol=0, atol=1e-5)
    assert not torch.allclose(video, _video(loaded, seed=2), atol=1e-3)  # the comparison is not vacuous


def test_float16_load_converts_every_floating_tensor(public_checkpoint: Path, tiny_ir: PipelineIR) -> None:
    ir = FAMILY.load(str(public_checkpoint), dtype=torch.float16)
    ref = _states(tiny_ir)
    for name in COMPONENTS:
        module = ir[name].module
        floats = [t for t in [*module.parameters(), *module.buffers()] if t.is_floating_point()]
        assert floats and all(t.dtype == torch.float16 for t in floats), name
        for k, t in module.state_dict().items():
            want = ref[name][k]
            assert torch.equal(t, want.half() if want.is_floating_point() else want), f"{name}.{k}"
    t5 = ir["t5"].module
    assert t5.shared.weight is t5.encoder.embed_tokens.weight and t5.shared.weight.dtype == torch.float16


# ----------------------------------------------------------------------------------------- every mismatch


def _drop(folder_file: str, key: str):
    return lambda root: _edit(root / folder_file, lambda t: t.pop(key))


def _put(folder_file: str, key: str, shape: tuple[int, ...]):
    """Add `key`, or replace it with a tensor of another shape."""
    return lambda root: _edit(root / folder_file, lambda t: t.__setitem__(key, torch.zeros(shape)))


def _write(rel: str, text: str):
    return lambda root: (root / rel).write_text(text)


def _edit_json(rel: str, change: Callable[[dict], None]):
    def apply(root: Path) -> None:
        data = json.loads((root / rel).read_text())
        change(data)
        (root / rel).write_text(json.dumps(data))

    return apply


MISMATCHES = {
    # case: (break the checkpoint, fragments the message must contain; "{root}" is the checkpoint directory)
    "missing weight file": (
        lambda root: (root / "text_encoder_2/model.safetensors").unlink(),
        ["clip_g", "no weight file", "{root}/text_encoder_2"],
    ),
    "missing config.json": (
        lambda root: (root / PUBLIC_DENOISER / "config.json").unlink(),
        ["denoiser", "missing", f"{{root}}/{PUBLIC_DENOISER}/config.json"],
    ),
    "missing key": (
        _drop(DEN_FILE, "transformer_blocks.3.attn.to_k.weight"),
        ["denoiser", f"{{root}}/{PUBLIC_DENOISER}", "1 missing key(s): transformer_blocks.3.attn.to_k.weight"],
    ),
    "missing tied key": (
        _drop("text_encoder_3/model.safetensors", "shared.weight"),
        ["t5", "{root}/text_encoder_3", "1 missing key(s): shared.weight"],
    ),
    "missing vae decoder key": (
        _drop(VAE_FILE, "decoder.conv_in.conv.weight"),
        ["vae_decoder", f"{{root}}/{PUBLIC_VAE}", "missing key(s): decoder.conv_in.conv.weight"],
    ),
    "unexpected key": (
        _put(DEN_FILE, "transformer_blocks.6.attn.to_q.weight", (32, 32)),
        ["denoiser", "1 unexpected key(s): transformer_blocks.6.attn.to_q.weight"],
    ),
    "unexpected text key": (
        _put("text_encoder/model.safetensors", "text_model.pooler.weight", (4,)),
        ["clip_l", "{root}/text_encoder", "unexpected key(s): text_model.pooler.weight"],
    ),
    "shape mismatch": (
        _put(DEN_FILE, "proj_out.weight", (63, 32)),
        ["denoiser", "shape mismatch for 'proj_out.weight': checkpoint [63, 32], model [64, 32]"],
    ),
    "shape mismatch in a text encoder": (
        _put("text_encoder_2/model.safetensors", "text_projection.weight", (32, 47)),
        ["clip_g", "shape mismatch for 'text_projection.weight': checkpoint [32, 47], model [32, 48]"],
    ),
    "vae key with an unknown prefix": (
        _put(VAE_FILE, "loss.discriminator.weight", (3,)),
        ["vae", f"{{root}}/{PUBLIC_VAE}", "unexpected key(s)", "loss.discriminator.weight"],
    ),
    "invalid JSON config": (
        _write(f"{PUBLIC_VAE}/config.json", '{"encoder_in_channels": 3,'),
        ["vae", f"{{root}}/{PUBLIC_VAE}/config.json", "is not valid JSON"],
    ),
    "config that is not an object": (
        _write("text_encoder_3/config.json", "[1, 2]"),
        ["t5", "{root}/text_encoder_3/config.json", "must hold a JSON object"],
    ),
    "unknown vae config key": (
        _edit_json(f"{PUBLIC_VAE}/config.json", lambda d: d.update(encoder_attention=True)),
        ["vae", f"{{root}}/{PUBLIC_VAE}/config.json", "encoder_attention"],
    ),
    "unknown denoiser config key": (
        _edit_json(f"{PUBLIC_DENOISER}/config.json", lambda d: d.update(dual_attention_layers=[0])),
        ["denoiser", f"{{root}}/{PUBLIC_DENOISER}/config.json", "dual_attention_layers"],
    ),
    "text config without a required key": (
        _edit_json("text_encoder/config.json", lambda d: d.pop("max_position_embeddings")),
        ["text encoders", "{root}/text_encoder/config.json", "missing key 'max_position_embeddings'"],
    ),
    "missing tokenizer folder": (
        lambda root: shutil.rmtree(root / "tokenizer_2"),
        ["tokenizers", "{root}", "tokenizer_2"],
    ),
    "the same key in two weight files": (
        lambda root: shutil.copy(root / DEN_FILE, root / PUBLIC_DENOISER / "diffusion_pytorch_model.fp16.safetensors"),
        ["denoiser", "key '", "two weight files", "diffusion_pytorch_model.fp16.safetensors"],
    ),
}


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_each_mismatch_is_a_checkpoint_error_naming_component_and_key(ckpt: Path, case: str) -> None:
    breaks, fragments = MISMATCHES[case]
    breaks(ckpt)
    with pytest.raises(CheckpointError) as info:
        FAMILY.load(str(ckpt))
    message = str(info.value)
    for fragment in fragments:
        assert fragment.format(root=ckpt) in message, (case, message)
    assert isinstance(info.value, UserInputError) and info.value.exit_code == 2


def test_all_problems_of_a_component_are_reported_together(ckpt: Path) -> None:
    def change(t: dict[str, torch.Tensor]) -> None:
        t.pop("norm_out.linear.bias")
        t.pop("context_embedder.weight")
        t["extra.weight"] = torch.zeros(1)
        t["proj_out.bias"] = torch.zeros(65)

    _edit(ckpt / DEN_FILE, change)
    with pytest.raises(CheckpointError) as info:
        FAMILY.load(str(ckpt))
    lines = str(info.value).splitlines()
    assert lines[0] == f"denoiser: checkpoint '{ckpt / PUBLIC_DENOISER}' does not match the model:"
    assert lines[1:] == [
        "  2 missing key(s): context_embedder.weight, norm_out.linear.bias",
        "  1 unexpected key(s): extra.weight",
        "  shape mismatch for 'proj_out.bias': checkpoint [65], model [64]",
    ]


# ----------------------------------------------------------------------------------------- saved outputs


def test_applied_output_reloads_with_identical_weights_and_pruned_blocks(applied_tiny: dict, tmp_path: Path) -> None:
    out = applied_tiny["output"]
    expected = FAMILY.load("builtin:tiny-random", seed=TINY_SEED)  # what the recipe does, done here in memory
    RemoveBlocks(RemoveBlocksConfig(indices=[2, 5])).run(expected, None)
    reloaded = FAMILY.load(str(out))
    _assert_same_weights(reloaded, expected)
    den = reloaded["denoiser"].module
    assert den.num_blocks == den.config.num_layers == 4
    assert [b.context_pre_only for b in den.transformer_blocks] == [False, False, False, True]
    with torch.device("meta"):
        fresh = PyramidFlowMMDiT(DenoiserConfig.tiny().replace(num_layers=4))
    assert reloaded["denoiser"].num_params() == sum(p.numel() for p in fresh.parameters()) < 234_496
    manifest = json.loads((out / "neocompress.json").read_text())
    assert manifest["components"]["denoiser"]["params"] == reloaded["denoiser"].num_params()
    assert json.loads((out / PUBLIC_DENOISER / "config.json").read_text())["num_layers"] == 4
    # family.save of the reloaded pipeline round-trips again, to the bit.
    FAMILY.save(reloaded, tmp_path / "again", {"note": "resaved"})
    again = FAMILY.load(str(tmp_path / "again"))
    _assert_same_weights(again, expected)
    assert again["denoiser"].module.num_blocks == 4
    assert torch.equal(_video(again), _video(expected))


# ----------------------------------------------------------------------------------------- memory mapping


def _memory() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _write_safetensors_streaming(path: Path, shapes: dict[str, tuple[int, ...]]) -> list[float]:
    """A float32 safetensors file written from one small repeated block, so this process never holds the
    tensors (their freed memory could otherwise absorb a copy made while loading). Returns the block."""
    header, offset = {}, 0
    for key, shape in shapes.items():
        n = int(np.prod(shape)) * 4
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    block = (np.random.default_rng(0).standard_normal(1 << 18).astype(np.float32) * 0.02).tobytes()
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        left = offset
        while left:
            f.write(block[: min(left, len(block))])
            left -= min(left, len(block))
    return np.frombuffer(block, dtype=np.float32).tolist()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_loading_memory_maps_the_weights(ckpt: Path, public_checkpoint: Path) -> None:
    wide = DenoiserConfig.tiny().replace(num_attention_heads=11, attention_head_dim=32, caption_projection_dim=352)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in PyramidFlowMMDiT(wide).state_dict().items()}
    (ckpt / PUBLIC_DENOISER / "config.json").write_text(json.dumps(public_denoiser_config(wide)))
    weights = ckpt / DEN_FILE
    block = _write_safetensors_streaming(weights, shapes)
    size = weights.stat().st_size
    assert size > 100e6

    FAMILY.load(str(public_checkpoint))  # warm up lazy imports and caches
    gc.collect()
    before = _memory()
    ir = FAMILY.load(str(ckpt))
    after = _memory()
    grew_anon, grew_rss = after["RssAnon"] - before["RssAnon"], after["VmRSS"] - before["VmRSS"]
    assert grew_anon < 0.1 * size, f"anonymous memory grew by {grew_anon / 1e6:.0f} MB for a {size / 1e6:.0f} MB file"
    assert grew_rss < 0.5 * size, f"RSS grew by {grew_rss / 1e6:.0f} MB for a {size / 1e6:.0f} MB file"

    mapped = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5] == str(weights.resolve()):
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            mapped.append((lo, hi))
    den = ir["denoiser"].module
    assert mapped, "the weight file is not mapped into the process"
    state = den.state_dict()
    assert state.keys() == shapes.keys()
    outside = [k for k, t in state.items() if not any(lo <= t.data_ptr() < hi for lo, hi in mapped)]
    assert outside == [] and den.transformer_blocks[0].attn.to_q.weight.shape == (352, 352)
    first = next(iter(shapes))  # the file's first tensor starts with the block it was written from
    assert state[first].flatten()[:8].tolist() == block[:8]
