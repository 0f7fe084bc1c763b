"""Stage 1 of the miniature: train the causal video VAE on the procedural world.

Loss: pixel L1 + MSE for sharp, correctly coloured reconstructions, plus a small KL term that keeps the latent
space smooth and well scaled for the diffusion model trained on it next (the real VAE's objective adds LPIPS
and a GAN term, which have no offline equivalent here at this scale). Objects cover ~8% of a frame, so an
unweighted pixel loss learns the backgrounds first and the objects very late (seen: after 150 steps only
backgrounds were reconstructed); pixels that differ from the clip's background colour weigh OBJECT_WEIGHT times
more.

Three kinds of phase, because a 2-core CPU is the budget:
1. single frames (the causal VAE encodes frame 0 of every clip as an image, and a one-frame causal conv is a 2-D
   conv, 3x cheaper): colours, shapes and backgrounds, at 16 images a step;
2. 48x48 crops of the 9-frame clips centred near an object (fewer pixels per clip, and every crop holds the
   part that is hard to learn: objects and their motion, which the temporal taps learn here; a 32-px crop no
   longer holds a 26-px object and its travel);
3. full clips, which adapt the group-norm statistics and the latent-level attention to the 64x64 frames the
   pipeline decodes, with a frame-difference term (TEMPORAL_WEIGHT) so the later frames move instead of smear.
   `builtin:tiny` ran 600 + 1400 such steps: the reconstruction's shape and speed read 0.856 / 0.919 after
   600, 0.938 / 0.938 after 2000 (128 held-out prompts).
A fresh encoder starts with a narrow posterior (`narrow_posterior`); see INITIAL_LOGVAR for why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neocompress.miniature.configs import WORLD, vae_config
from neocompress.models.pyramid_flow.vae import CausalVAEDecoder, CausalVAEEncoder
from neocompress.train import TrainConfig, TrainResult, train
from neocompress.world import World, WorldDataset, to_tensor

KL_WEIGHT = 1e-4
OBJECT_WEIGHT = 8.0
# Weight of the frame-difference term: the L1 distance between the reconstruction's and the clip's change from
# one frame to the next, scaled by TEMPORAL_SCALE because a difference is small where a pixel loss is not.
# Frames 1-8 share one latent frame; pixel losses alone let the decoder paint them as one smeared blob along
# the motion (measured: shape 0.38 and temporal consistency 0.52 of a perfect 1.0 on real clips), because a
# blob that covers the whole path costs less than a sharp object in the wrong place. Asking for the right
# change between frames is what makes the object move instead of smear (0.56 and 0.78 after 600 clip steps).
TEMPORAL_WEIGHT = 1.0
TEMPORAL_SCALE = 4.0
# Log-variance the fresh encoder starts from (posterior std e^-5). A default init gives std ~1, which drowns the
# mean in noise: the decoder then learns to ignore its input, and only after hundreds of steps has the tiny KL
# weight let the encoder shrink it (seen: flat grey frames for the first 300 steps, 8.6 dB PSNR). Starting
# narrow keeps the same objective and the same trained VAE, without those wasted steps.
INITIAL_LOGVAR = -10.0


def narrow_posterior(encoder: CausalVAEEncoder, logvar: float = INITIAL_LOGVAR) -> CausalVAEEncoder:
    """Start a fresh encoder with a narrow posterior: the log-variance half of ``quant_conv``'s bias = `logvar`."""
    with torch.no_grad():
        encoder.quant_conv.conv.bias[encoder.config.latent_channels :] = logvar
    return encoder


def object_weights(video: torch.Tensor) -> torch.Tensor:
    """[B, 1, F, H, W]: OBJECT_WEIGHT where a pixel is far from its clip's median (background) colour, else 1.

    Textured backgrounds vary by < 0.4 in [-1, 1] units around the median; object colours differ by far more.
    """
    median = video.flatten(2).median(dim=2).values[:, :, None, None, None]
    far = (video - median).abs().amax(dim=1, keepdim=True) > 0.45
    return 1.0 + (OBJECT_WEIGHT - 1.0) * far.float()


class ObjectCrops(torch.utils.data.Dataset):
    """Item i: a `crop` x `crop` window of world clip i (all frames) that contains the mid-clip centre of one of
    its objects, at a position drawn from an rng seeded by (seed, i), so the data is the same for any order."""

    def __init__(self, world: World, crop: int, length: int, seed: int = 0) -> None:
        if crop % 8 or not 8 <= crop <= world.config.size:
            raise ValueError(f"crop must be a multiple of 8 in [8, {world.config.size}], got {crop}")
        self.world, self.crop, self.length, self.seed = world, crop, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        rendered = self.world.sample(index, "train")
        rng = np.random.default_rng([self.seed, index])
        size, crop = rendered.size, self.crop
        centre = rendered.centres[rng.integers(len(rendered.centres)), rendered.frames // 2]
        lo = np.clip(np.floor(centre - crop + 1), 0, size - crop).astype(int)
        hi = np.clip(np.floor(centre), 0, size - crop).astype(int)
        x, y = (int(rng.integers(a, b + 1)) for a, b in zip(lo, hi, strict=True))
        return to_tensor(rendered.video[:, y : y + crop, x : x + crop]), rendered.caption


class SingleFrames(torch.utils.data.Dataset):
    """Item i: one frame (a 1-frame video [3, 1, H, W]) of world clip i, the frame drawn from an rng seeded by
    (seed, i). The causal VAE encodes frame 0 of every clip as an image, so images teach it colours, shapes and
    backgrounds at a fraction of a clip's cost (a 1-frame causal conv is a 2-D conv)."""

    def __init__(self, world: World, length: int, seed: int = 0) -> None:
        self.world, self.length, self.seed = world, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        rendered = self.world.sample(index, "train")
        frame = int(np.random.default_rng([self.seed, index]).integers(rendered.frames))
        return to_tensor(rendered.video[frame : frame + 1]), rendered.caption


@dataclass
class TrainedVAE:
    encoder: CausalVAEEncoder
    decoder: CausalVAEDecoder
    result: TrainResult


def vae_loss(encoder: CausalVAEEncoder, decoder: CausalVAEDecoder, video: torch.Tensor):
    moments = encoder.encode_moments(video)
    mean, logvar = moments.chunk(2, dim=1)
    logvar = logvar.clamp(-30, 20)
    z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
    recon = decoder.decode(z, clamp=False)
    w = object_weights(video)
    l1 = ((recon - video).abs() * w).mean()
    mse = ((recon - video).pow(2) * w).mean()
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
    loss = l1 + mse + KL_WEIGHT * kl
    parts = {"l1": l1.detach(), "mse": mse.detach(), "kl": kl.detach()}
    if video.shape[2] > 1:
        change = temporal_difference_loss(recon, video, w)
        loss = loss + TEMPORAL_WEIGHT * change
        parts["temporal"] = change.detach()
    return loss, parts


def temporal_difference_loss(recon: torch.Tensor, video: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Object-weighted L1 between the frame-to-frame changes of `recon` and `video` [B, C, F, H, W]."""
    delta = (recon[:, :, 1:] - recon[:, :, :-1]) - (video[:, :, 1:] - video[:, :, :-1])
    w = torch.maximum(weights[:, :, 1:], weights[:, :, :-1])
    return (delta.abs() * w).mean() * TEMPORAL_SCALE


def train_vae(
    work_dir: Path,
    *,
    steps: int,
    batch_size: int = 4,
    lr: float = 1e-3,
    seed: int = 0,
    crop: int | None = None,
    images: bool = False,
    init: TrainedVAE | None = None,
    progress: bool = True,
    decoder_only: bool = False,
) -> TrainedVAE:
    """One VAE phase, from `init`'s weights if given (else a fresh VAE with a narrow posterior): on single
    frames when `images`, on `crop`-pixel object crops of clips when `crop`, else on full clips. With
    `decoder_only` the encoder stays frozen, so the latents the MMDiT is trained on do not move: a decoder phase
    can raise the reconstruction's ceiling after the latents are encoded."""
    if images and crop:
        raise ValueError("a VAE phase trains on images or on crops of clips, not both")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder, decoder = narrow_posterior(CausalVAEEncoder(vae_config())), CausalVAEDecoder(vae_config())
    if init is not None:
        encoder.load_state_dict(init.encoder.state_dict())
        decoder.load_state_dict(init.decoder.state_dict())
    length = max(steps * batch_size, 1)
    world = World(WORLD)
    if images:
        data: torch.utils.data.Dataset = SingleFrames(world, length, seed)
    elif crop:
        data = ObjectCrops(world, crop, length, seed)
    else:
        data = WorldDataset(world, "train", length=length)
    config = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=min(100, steps // 10),
        lr_schedule="cosine",
        max_grad_norm=1.0,
        seed=seed,
        log_every=10,
        checkpoint_every=max(steps // 10, 1),
    )

    def loss_fn(batch, step):
        video, _captions = batch
        return vae_loss(modules["encoder"], modules["decoder"], video)

    modules = {"encoder": encoder, "decoder": decoder}
    trainable = list(decoder.parameters()) if decoder_only else None
    result = train(config, modules, loss_fn, data, work_dir, trainable=trainable, progress=progress)
    return TrainedVAE(encoder.eval(), decoder.eval(), result)
