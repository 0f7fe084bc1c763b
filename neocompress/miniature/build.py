"""`neocompress train-miniature`: train the miniature Pyramid-Flow end to end and write a shippable pipeline.

Stages: (1) the causal VAE on world videos (single frames, then object crops of clips, then full clips in two
phases);
(2) world videos encoded once into latents, with the latent normalisation fitted on them (kept in
`work/latents.safetensors`, so a run resumed in another sitting does not encode again); (3) the pyramidal
MMDiT (patch size 1, see `configs.denoiser_config`) on those latents through the frozen tiny text encoders, in
a first phase and a motion phase. The pipeline samples with CFG 2 (see
`MiniatureRecipe.guidance_first`). Each stage trains on the shared engine in its
own work directory, so an interrupted run resumes where it stopped. The result is saved in the public
checkpoint layout with fp16 weights (it ships inside the package as `builtin:tiny`), with the seed, wall
times, loss curves and frame grids of held-out captions beside it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from neocompress.analysis.video_io import frame_grid, to_uint8_frames
from neocompress.miniature.configs import WORLD, denoiser_config, vae_config
from neocompress.miniature.dit_training import train_denoiser
from neocompress.miniature.latents_data import cached_latent_set
from neocompress.miniature.vae_training import train_vae
from neocompress.models.pyramid_flow.denoiser import PyramidFlowMMDiT
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.models.pyramid_flow.ir_builder import build_ir
from neocompress.models.pyramid_flow.scheduler import StepSchedule
from neocompress.models.pyramid_flow.spec import SHIPPED_DIRS, PyramidFlowSpec, VideoSetting, override_schedule
from neocompress.models.pyramid_flow.text_config import TextBundleConfig
from neocompress.models.pyramid_flow.text_encoders import TextBundle
from neocompress.models.pyramid_flow.tokenizers import TextTokenizers
from neocompress.train import plot_losses
from neocompress.world import World


@dataclass(frozen=True)
class MiniatureRecipe:
    """Steps and batches of each stage; the defaults are what `builtin:tiny` was trained with."""

    vae_image_steps: int = 3000
    vae_image_batch: int = 16
    vae_crop_steps: int = 1500
    vae_crop_batch: int = 8
    vae_crop: int = 48  # a 32-px crop no longer holds a 26-px object and its motion
    vae_steps: int = 600
    vae_batch: int = 4
    # A second full-clip phase from the first (its own work directory, so the 600-step stage stays valid): 600
    # more steps took the reconstruction's shape from 0.856 to 0.919 and speed from 0.919 to 0.931, still rising.
    vae_long_steps: int = 1400
    # 16384 encoded clips instead of 4096: the MMDiT memorised 4096 (train captions 0.89 colour, held-out 0.78).
    latents: int = 16384
    dit_patch_size: int = 1
    dit_steps: int = 12000
    dit_batch: int = 16
    seed: int = 0
    # A second MMDiT phase that continues from the first and draws the later (motion) latent frames with
    # probability dit_motion_fraction: uniform unit draws leave direction words unused (swapping "left" and
    # "right" in a caption did not change the unit-1 loss of a 12k-step model), and training on motion from the
    # start cost first-frame quality.
    dit_motion_steps: int = 12000
    dit_motion_fraction: float = 0.75
    dit_motion_lr: float = 3e-4
    # The CFG scales the shipped pipeline samples with (Pyramid-Flow's are 7 and 5). Measured on a trained
    # miniature, 48 held-out prompts: 7/5 0.607, 12/8 0.581, 3/3 0.664, 2/2 0.677, 1/1 (no CFG) 0.605; a
    # denoiser this small overshoots colours and textures at the large scales a 2B model wants.
    guidance_first: float = 2.0
    guidance_later: float = 2.0


def build_miniature(output: Path, recipe: MiniatureRecipe, *, progress: bool = True, log=print) -> dict:
    output = Path(output)
    work = output / "work"
    timings: dict[str, float] = {}

    log(
        f"1/3 VAE: {recipe.vae_image_steps} steps of {recipe.vae_image_batch} single frames, "
        f"{recipe.vae_crop_steps} steps of {recipe.vae_crop_batch} {recipe.vae_crop}-pixel crops of clips, "
        f"then {recipe.vae_steps} steps of {recipe.vae_batch} full clips"
    )
    images = train_vae(
        work / "vae-images",
        steps=recipe.vae_image_steps,
        batch_size=recipe.vae_image_batch,
        lr=2e-3,
        images=True,
        seed=recipe.seed,
        progress=progress,
    )
    crops = train_vae(
        work / "vae-crops",
        steps=recipe.vae_crop_steps,
        batch_size=recipe.vae_crop_batch,
        crop=recipe.vae_crop,
        init=images,
        seed=recipe.seed,
        progress=progress,
    )
    clips = [
        train_vae(
            work / "vae",
            steps=recipe.vae_steps,
            batch_size=recipe.vae_batch,
            lr=3e-4,
            init=crops,
            seed=recipe.seed,
            progress=progress,
        )
    ]
    if recipe.vae_long_steps:  # in its own work directory, so the first clip phase's finished stage stays valid
        log(f"    and {recipe.vae_long_steps} more full-clip steps")
        clips.append(
            train_vae(
                work / "vae-long",
                steps=recipe.vae_long_steps,
                batch_size=recipe.vae_batch,
                lr=3e-4,
                init=clips[0],
                seed=recipe.seed + 1,
                progress=progress,
            )
        )
    vae = clips[-1]
    # Training time counts every segment of a resumed phase (the engine's total_time_s), not this call's wall time.
    timings["vae_s"] = sum(r.result.total_time_s for r in (images, crops, *clips))

    log(f"2/3 latents: {recipe.latents} world clips through the trained encoder")
    cache = work / "latents.safetensors"
    data, timings["latents_s"], cached = cached_latent_set(vae.encoder, WORLD, recipe.latents, cache)
    if cached:
        log(f"    reused the encoded set in {cache} (same encoder weights, world and count)")

    base = PyramidFlowFamily().load("builtin:tiny-random", seed=recipe.seed)  # the frozen tiny text encoders
    tokenizers = TextTokenizers(*[base[n].extras["tokenizer"] for n in ("clip_l", "clip_g", "t5")])
    text = TextBundle(
        TextBundleConfig.tiny(), base["clip_l"].module, base["clip_g"].module, base["t5"].module, tokenizers
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        denoiser = PyramidFlowMMDiT(denoiser_config(recipe.dit_patch_size))
    log(f"3/3 MMDiT: {recipe.dit_steps} steps of {recipe.dit_batch} latent clips")
    dit = train_denoiser(
        denoiser,
        text,
        data,
        work / "dit",
        steps=recipe.dit_steps,
        batch_size=recipe.dit_batch,
        seed=recipe.seed,
        progress=progress,
    )
    motion = None
    if recipe.dit_motion_steps:
        log(
            f"3b/3 MMDiT motion phase: {recipe.dit_motion_steps} steps, later latent frames drawn with "
            f"probability {recipe.dit_motion_fraction}"
        )
        motion = train_denoiser(
            dit.denoiser.train(),
            text,
            data,
            work / "dit-motion",
            steps=recipe.dit_motion_steps,
            batch_size=recipe.dit_batch,
            lr=recipe.dit_motion_lr,
            seed=recipe.seed + 1,
            progress=progress,
            motion_fraction=recipe.dit_motion_fraction,
        )
    timings["dit_s"] = dit.result.total_time_s + (motion.result.total_time_s if motion else 0.0)

    spec = PyramidFlowSpec(
        TextBundleConfig.tiny(),
        denoiser_config(recipe.dit_patch_size),
        vae_config(),
        latent_norm=data.norm,
        video=VideoSetting(WORLD.frames, WORLD.size, WORLD.size),
        schedule=override_schedule(
            StepSchedule.pyramid_flow(), guidance_first=recipe.guidance_first, guidance_later=recipe.guidance_later
        ),
    )
    modules = {
        "clip_l": base["clip_l"].module,
        "clip_g": base["clip_g"].module,
        "t5": base["t5"].module,
        "denoiser": (motion or dit).denoiser,
        "vae_encoder": vae.encoder,
        "vae_decoder": vae.decoder,
    }
    ir = build_ir(spec, modules, tokenizers)
    samples = write_samples(ir, output / "samples", seed=recipe.seed)
    summary = {
        "recipe": recipe.__dict__,
        "world": WORLD.to_dict(),
        "timings_s": timings,
        "vae_images": images.result.summary(),
        "vae_crops": crops.result.summary(),
        "vae": clips[0].result.summary(),
        "vae_long": clips[1].result.summary() if len(clips) > 1 else None,
        "dit": dit.result.summary(),
        "dit_motion": motion.result.summary() if motion else None,
        "latent_norm": data.norm.__dict__,
        "samples": samples,
    }
    crops_from, clips_from = recipe.vae_image_steps, recipe.vae_image_steps + recipe.vae_crop_steps
    vae_history = images.result.history + _shifted(crops.result.history, crops_from)
    for phase, start in zip(clips, (clips_from, clips_from + recipe.vae_steps)[: len(clips)], strict=True):
        vae_history += _shifted(phase.result.history, start)
    plot_losses(
        vae_history,
        output / "vae_loss.png",
        title=f"miniature VAE (images; crops of clips from step {crops_from}; full clips from {clips_from})",
    )
    dit_history = dit.result.history + (_shifted(motion.result.history, recipe.dit_steps) if motion else [])
    title = "miniature MMDiT (flow matching" + (f"; motion phase from step {recipe.dit_steps})" if motion else ")")
    plot_losses(dit_history, output / "dit_loss.png", title=title)
    half = build_ir(spec, {k: m.half() for k, m in modules.items()}, tokenizers)
    shutil.rmtree(output / "pipeline", ignore_errors=True)
    PyramidFlowFamily().save(half, output / "pipeline", {"training": summary, "pass_log": []})
    (output / "training.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _shifted(history: list[dict], offset: int) -> list[dict]:
    """A later phase's loss records renumbered to follow the earlier phase's steps on one plot."""
    return [{**record, "step": record["step"] + offset} for record in history]


@torch.no_grad()
def write_samples(ir, folder: Path, *, seed: int, count: int = 4) -> list[dict]:
    """Frame grids of held-out captions with the default 20-20-20 / 10-10-10 CFG schedule."""
    pipe = PyramidFlowFamily().pipeline(ir)
    captions = World(WORLD).captions("heldout")[:: max(1, len(World(WORLD).captions("heldout")) // count)][:count]
    out = []
    for i, caption in enumerate(captions):
        video = pipe.generate([caption], seed=seed + i)[0]
        path = frame_grid(to_uint8_frames(video), folder / f"frames_{i:02d}.png", caption=caption)
        out.append({"caption": caption, "grid": str(path.relative_to(folder.parent)), "seed": seed + i})
    return out


def ship(output: Path) -> Path:
    """Copy a trained pipeline (and its training record) into the package as `builtin:tiny`."""
    target = SHIPPED_DIRS["builtin:tiny"]
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(Path(output) / "pipeline", target)
    for name in ("training.json", "vae_loss.png", "dit_loss.png"):
        shutil.copy(Path(output) / name, target / name)
    shutil.copytree(Path(output) / "samples", target / "samples")
    return target
