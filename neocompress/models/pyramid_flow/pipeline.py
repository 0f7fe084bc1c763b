"""Text-to-video generation with a Pyramid-Flow PipelineIR: prompt -> text embeddings -> autoregressive
pyramidal denoising -> VAE decoding -> frames.

The pipeline reads its components from the IR, so whatever passes did to them (fewer blocks, a new schedule) is
what runs. Classifier-free guidance batches [uncond, cond] into one denoiser call, as Pyramid-Flow does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from neocompress.core.errors import UserInputError
from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.models.pyramid_flow.objective import PyramidFlowObjective
from neocompress.models.pyramid_flow.sampling import pyramidal_sample
from neocompress.models.pyramid_flow.scheduler import StepSchedule
from neocompress.models.pyramid_flow.spec import PyramidFlowSpec, override_schedule
from neocompress.models.pyramid_flow.text_encoders import TextBundle, TextEmbeddings
from neocompress.models.pyramid_flow.tokenizers import TextTokenizers
from neocompress.models.pyramid_flow.vae import decode_normalised, normalize_latents
from neocompress.quant.precision import simulated_precision

DEFAULT_PROMPT = "a red circle moving left slowly on a grey background"  # a caption of the world grammar


class TextToVideoPipeline:
    def __init__(self, ir: PipelineIR, simulated: bool = True):
        """`simulated`: run quantized components through their simulations (see the quantize pass); False runs
        every component's float weights."""
        self.ir = ir
        self.spec: PyramidFlowSpec = ir.meta["spec"]
        toks = [ir[n].extras.get("tokenizer") for n in ("clip_l", "clip_g", "t5")]
        if any(t is None for t in toks):
            raise UserInputError("this pipeline has no tokenizers (a weightless skeleton cannot generate)")
        encoders = [ir[n].module for n in ("clip_l", "clip_g", "t5")]
        if simulated and all(simulated_precision(ir[n]) == "fp16" for n in ("clip_l", "clip_g", "t5")):
            from neocompress.quant.fp16 import half_copy

            encoders = [half_copy(ir[n]) for n in ("clip_l", "clip_g", "t5")]
        self.text = TextBundle(self.spec.text, *encoders, TextTokenizers(*toks))
        self.denoiser = ir["denoiser"].module.eval()
        quantized = ir["denoiser"].extras.get("quantization")
        if simulated and quantized is not None and quantized.get("graphs"):
            from neocompress.quant.denoiser_sim import SimulatedDenoiser

            self.denoiser = SimulatedDenoiser(self.denoiser, quantized["graphs"])
        self.decoder = ir["vae_decoder"].module.eval()
        decoder_sim = ir["vae_decoder"].extras.get("quantization", {}).get("decoder")
        self.simulated_decoder = None
        if simulated and decoder_sim is not None:
            from neocompress.quant.decoder_sim import SimulatedVAEDecoder

            self.simulated_decoder = SimulatedVAEDecoder(self.decoder, decoder_sim)
        # Hybrid mode (Neodragon): an image model makes frame 0, VAE-encoded as unit 0 (see first_frame.py)
        self.first_frame = ir["first_frame"].module.eval() if "first_frame" in ir else None
        self.vae_encoder = ir["vae_encoder"].module.eval() if "vae_encoder" in ir else None
        self.scheduler = ir["scheduler"].extras["object"]
        self.schedule: StepSchedule = ir["scheduler"].extras["schedule"]
        self.latent_norm = ir["vae_decoder"].extras["latent_norm"]
        self.stages = self.scheduler.stages
        self.objective = PyramidFlowObjective(self.scheduler)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (what the sampler returns) -> videos [B, 3, frames, H, W] in [-1, 1]."""
        if self.simulated_decoder is not None:
            return self.simulated_decoder(latents)
        return decode_normalised(self.decoder, latents, self.latent_norm)

    @torch.no_grad()
    def encode(self, videos: torch.Tensor) -> torch.Tensor:
        """Videos [B, 3, frames, H, W] in [-1, 1] -> normalised latents (the posterior mean), as `decode` reads
        them: how real clips become training data for the denoiser's techniques."""
        if self.vae_encoder is None:
            raise UserInputError("this pipeline has no VAE encoder to turn real videos into latents")
        return normalize_latents(self.vae_encoder.encode(videos), self.latent_norm)

    latent_dims = 5  # [B, C, units, h, w]

    def default_prompt(self) -> str:
        return DEFAULT_PROMPT

    def schedule_with(
        self,
        *,
        first: tuple[int, ...] | None = None,
        later: tuple[int, ...] | None = None,
        guidance_first: float | None = None,
        guidance_later: float | None = None,
        grid: str | None = None,
    ) -> StepSchedule:
        return override_schedule(self.schedule, first=first, later=later, guidance_first=guidance_first,
                                 guidance_later=guidance_later, grid=grid)  # fmt: skip

    def resolve_video(self, frames: int | None, height: int | None, width: int | None) -> dict[str, int]:
        v = self.spec.video
        # `is None`, not `or`: an explicit 0 is a mistake to report, not a request for the default
        frames = v.frames if frames is None else frames
        height = v.height if height is None else height
        width = v.width if width is None else width
        problems = self.spec.video_problems(frames, height, width)
        if problems:
            raise UserInputError("; ".join(problems.values()))
        return {"frames": frames, "height": height, "width": width, "units": 1 + (frames - 1) // 8}

    def _velocity_fn(self, cond: TextEmbeddings, uncond: TextEmbeddings | None) -> Callable:
        """The denoiser as the sampler calls it; CFG batches [uncond, cond] into one call."""
        both = TextEmbeddings.cat([uncond, cond]) if uncond is not None else None

        def velocity(sample: list[torch.Tensor], timestep: torch.Tensor, guidance: float) -> torch.Tensor:
            if StepSchedule.uses_cfg(guidance):
                assert both is not None, "CFG step without unconditional embeddings"
                v_u, v_c = self.denoiser(
                    [torch.cat([x, x]) for x in sample],
                    both.tokens,
                    both.mask,
                    both.pooled,
                    torch.cat([timestep, timestep]),
                ).chunk(2)
                return v_u + guidance * (v_c - v_u)
            return self.denoiser(sample, cond.tokens, cond.mask, cond.pooled, timestep)

        return velocity

    @torch.no_grad()
    def generate(
        self,
        prompts: list[str],
        *,
        frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        schedule: StepSchedule | None = None,
        seed: int = 0,
        negative_prompt: str = "",
        progress: Callable | None = None,
    ) -> torch.Tensor:
        """Videos [B, 3, frames, H, W] in [-1, 1]."""
        latents = self.sample_latents(
            prompts,
            frames=frames,
            height=height,
            width=width,
            schedule=schedule,
            seed=seed,
            negative_prompt=negative_prompt,
            progress=progress,
        )
        return self.decode(latents)

    @torch.no_grad()
    def sample_latents(
        self,
        prompts: list[str],
        *,
        frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        schedule: StepSchedule | None = None,
        seed: int = 0,
        negative_prompt: str = "",
        progress: Callable | None = None,
    ) -> torch.Tensor:
        """Normalised latents [B, C, units, H/8, W/8] (the denoiser's space), before VAE decoding: what a
        training pass that learns from the model's own samples needs."""
        if not prompts:
            raise UserInputError("generate needs at least one prompt, got an empty list")
        v = self.resolve_video(frames, height, width)
        schedule = schedule or self.schedule
        dtype = next(self.denoiser.parameters()).dtype
        cond = self.text.encode(prompts).to(dtype=dtype)
        cfg = any(schedule.uses_cfg(schedule.guidance_for(u)) for u in schedule.denoised_units(v["units"]))
        # Without CFG the negative prompt is never used: do not spend a text-encoder pass on it.
        uncond = self.text.encode([negative_prompt] * len(prompts)).to(dtype=dtype) if cfg else None
        first_unit = self._first_unit(prompts, seed, v) if schedule.hybrid else None
        latents = pyramidal_sample(
            self._velocity_fn(cond, uncond),
            batch=len(prompts),
            channels=self.spec.vae.latent_channels,
            height=v["height"] // 8,
            width=v["width"] // 8,
            num_units=v["units"],
            schedule=schedule,
            scheduler=self.scheduler,
            generator=torch.Generator("cpu").manual_seed(seed),
            progress=progress,
            dtype=dtype,
            first_unit=first_unit,
        )
        return latents

    def _first_unit(self, prompts: list[str], seed: int, video: dict[str, int]) -> torch.Tensor:
        """Unit 0 of a hybrid schedule: the first-frame component's images, VAE-encoded and normalised."""
        from neocompress.models.pyramid_flow.vae import normalize_latents

        if self.first_frame is None or self.vae_encoder is None:
            raise UserInputError("this schedule is hybrid (frame 0 from an image model) but the pipeline has no "
                                 "first_frame component (and VAE encoder) to make it")  # fmt: skip
        images = self.first_frame(prompts, seed, video["height"], video["width"])
        z = self.vae_encoder.encode(images[:, :, None].to(next(self.vae_encoder.parameters()).dtype))
        return normalize_latents(z, self.latent_norm).float()
