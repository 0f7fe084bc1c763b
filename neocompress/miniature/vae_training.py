"""Stage 1 of the miniature: train the causal video VAE on the procedural world.

Loss: pixel L1 + MSE for sharp, correctly coloured reconstructions, plus a small KL term that keeps the latent
space smooth and well scaled for the diffusion model trained on it next (the real VAE's objective adds LPIPS
and a GAN term, which have no offline equivalent here at this scale). Objects cover ~8% of a frame, so an
unweighted pixel loss learns the backgrounds first and the objects very late (seen: after 150 steps only
backgrounds were reconstructed); pixels that differ from the clip's background colour weigh OBJECT_WEIGHT times
more.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from neocompress.miniature.configs import WORLD, vae_config
from neocompress.models.pyramid_flow.vae import CausalVAEDecoder, CausalVAEEncoder
from neocompress.train import TrainConfig, TrainResult, train
from neocompress.world import World, WorldDataset

KL_WEIGHT = 1e-4
OBJECT_WEIGHT = 8.0


def object_weights(video: torch.Tensor) -> torch.Tensor:
    """[B, 1, F, H, W]: OBJECT_WEIGHT where a pixel is far from its clip's median (background) colour, else 1.

    Textured backgrounds vary by < 0.4 in [-1, 1] units around the median; object colours differ by far more.
    """
    median = video.flatten(2).median(dim=2).values[:, :, None, None, None]
    far = (video - median).abs().amax(dim=1, keepdim=True) > 0.45
    return 1.0 + (OBJECT_WEIGHT - 1.0) * far.float()


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
    return l1 + mse + KL_WEIGHT * kl, {"l1": l1.detach(), "mse": mse.detach(), "kl": kl.detach()}


def train_vae(
    work_dir: Path, *, steps: int, batch_size: int = 4, lr: float = 1e-3, seed: int = 0, progress: bool = True
) -> TrainedVAE:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder, decoder = CausalVAEEncoder(vae_config()), CausalVAEDecoder(vae_config())
    data = WorldDataset(World(WORLD), "train", length=max(steps * batch_size, 1))
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
    result = train(config, modules, loss_fn, data, work_dir, progress=progress)
    return TrainedVAE(encoder.eval(), decoder.eval(), result)
