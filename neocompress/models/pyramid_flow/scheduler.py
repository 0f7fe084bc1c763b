"""Pyramidal flow-matching scheduler of Pyramid-Flow, written from the published formulas.

Generation runs in ``stages`` spatial stages per latent frame (stage 0 at 1/2**(stages-1) of full resolution,
the last stage at full resolution). Each stage is a rectified flow from a noisier start point to a cleaner end
point; a local sigma runs 1 -> 0 inside the stage while the DiT sees a global timestep in [0, 1000]. Between
stages the latent is upsampled (nearest) and re-noised with 2x2-block-correlated noise so that the result is
again "signal + i.i.d. noise" with the stage's corrected start sigma.

Two deliberate choices (see also the module tests):

- Sigmas are exact (``1 - stage_range[s]``); upstream quantises them on a 1000-point grid (0.667, 0.334) and
  its stage boundaries to integer timesteps. The difference is below one timestep unit.
- ``timesteps(stage, n)`` maps the local sigma grid ``linspace(1, 0.001, n)`` through the same affine map that
  ``training_sample`` uses, so inference and training agree on which DiT timestep belongs to which local
  sigma. This is ``linspace(t_max, t_min + 0.001 (t_max - t_min), n)``, exactly what upstream runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

# The local sigma grid stops here before the final 0: the last Euler step goes from 0.001 to 0, like upstream,
# whose per-stage grid is linspace(1, 0, 1001)[:-1].
LOCAL_SIGMA_MIN = 0.001
SIGMA_GRIDS = ("upstream", "uniform")  # the per-stage Euler grids `local_sigmas` knows

Scalar = float | torch.Tensor


@dataclass(frozen=True)
class SchedulerConfig:
    """Static description of the pyramid; hashable so it can key caches and recipes."""

    num_train_timesteps: int = 1000
    stages: int = 3
    gamma: float = 1 / 3
    stage_range: tuple[float, ...] = (0.0, 1 / 3, 2 / 3, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stage_range", tuple(float(r) for r in self.stage_range))
        if self.stages < 1:
            raise ValueError(f"stages must be >= 1, got {self.stages}")
        if self.num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be >= 1, got {self.num_train_timesteps}")
        if not self.gamma > 0:
            raise ValueError(f"gamma must be > 0, got {self.gamma}")
        r = self.stage_range
        if len(r) != self.stages + 1:
            raise ValueError(f"stage_range needs stages + 1 = {self.stages + 1} entries, got {len(r)}")
        if r[0] != 0.0 or r[-1] != 1.0 or any(b <= a for a, b in zip(r, r[1:], strict=False)):
            raise ValueError(f"stage_range must rise strictly from 0 to 1, got {r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stage_range"] = list(self.stage_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SchedulerConfig:
        d = dict(d)
        if "stage_range" in d:
            d["stage_range"] = tuple(d["stage_range"])
        return cls(**d)


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Bilinear per-frame downsampling of [B, C, T, H, W] by a power of two, without rescaling.

    Done as repeated halvings because that is what Pyramid-Flow does (``get_pyramid_latent``): a bilinear
    halving is an exact 2x2 mean, while one bilinear 4x step would only average the central 2x2 of each 4x4.
    """
    _check_pow2(factor)
    b, c, t, h, w = x.shape
    y = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    while factor > 1:
        if h % 2 or w % 2:
            raise ValueError(f"cannot halve an odd size {h}x{w}")
        h, w = h // 2, w // 2
        y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        factor //= 2
    return y.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4).contiguous()


def upsample_nearest(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest per-frame upsampling of [B, C, T, H, W]: each pixel becomes a factor x factor block."""
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def _check_pow2(factor: int) -> None:
    if factor < 1 or factor & (factor - 1):
        raise ValueError(f"factor must be a power of two, got {factor}")


def _randn(
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
) -> torch.Tensor:
    """fp32 Gaussian drawn on the generator's device (so CPU generators stay reproducible), then moved."""
    draw_device = generator.device if generator is not None else device
    z = torch.randn(tuple(shape), generator=generator, device=draw_device, dtype=torch.float32)
    return z.to(device=device if device is not None else z.device, dtype=dtype or torch.float32)


def _per_sample(s: Scalar, like: torch.Tensor) -> Scalar:
    """Reshape a per-sample vector [B] to [B, 1, ...] to broadcast against ``like``; scalars pass."""
    if isinstance(s, torch.Tensor) and s.ndim > 0:
        return s.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))
    return float(s)


class PyramidFlowScheduler:
    """Sigma/timestep tables, noise construction, Euler updates and training targets of the pyramid."""

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.config = config or SchedulerConfig()
        cfg = self.config
        self._orig_start = tuple(1.0 - r for r in cfg.stage_range[:-1])
        self._end = tuple(1.0 - r for r in cfg.stage_range[1:])
        starts = [self._orig_start[0]]
        for s in range(1, cfg.stages):
            o = 1.0 - self._orig_start[s]
            starts.append(1.0 - o / (math.sqrt(1 + 1 / cfg.gamma) * (1 - o) + o))
        self._start = tuple(starts)
        lengths = [a - b for a, b in zip(self._start, self._end, strict=True)]
        total, t_axis = sum(lengths), float(cfg.num_train_timesteps)
        bounds = [t_axis]
        for s in range(cfg.stages):
            done = sum(lengths[: s + 1]) / total
            bounds.append(0.0 if s == cfg.stages - 1 else t_axis * (1.0 - done))
        self._ranges = tuple((bounds[s], bounds[s + 1]) for s in range(cfg.stages))

    # ------------------------------------------------------------------ tables
    @property
    def stages(self) -> int:
        return self.config.stages

    @property
    def gamma(self) -> float:
        return self.config.gamma

    @property
    def original_sigma_start(self) -> tuple[float, ...]:
        """Uncorrected start sigma per stage, 1 - stage_range[s]; drives the re-noising coefficients."""
        return self._orig_start

    @property
    def sigma_start(self) -> tuple[float, ...]:
        """Start sigma per stage after the variance correction for upsample + block noise (stages > 0)."""
        return self._start

    @property
    def sigma_end(self) -> tuple[float, ...]:
        return self._end

    @property
    def timestep_ranges(self) -> tuple[tuple[float, float], ...]:
        """(t_max, t_min) per stage: contiguous shares of [num_train_timesteps, 0] proportional to each
        stage's corrected sigma length, so the DiT timestep stays monotone across the whole pyramid."""
        return self._ranges

    def timestep_for(self, stage: int, s_loc: Scalar) -> Scalar:
        """DiT timestep for local sigma ``s_loc`` in ``stage``: t_min + s_loc * (t_max - t_min)."""
        t_max, t_min = self._ranges[self._check_stage(stage)]
        return t_min + s_loc * (t_max - t_min)

    def local_sigma_for(self, stage: int, timestep: Scalar) -> Scalar:
        """Inverse of ``timestep_for``: the local sigma a DiT timestep stands for inside ``stage``."""
        t_max, t_min = self._ranges[self._check_stage(stage)]
        return (timestep - t_min) / (t_max - t_min)

    def global_sigma(self, stage: int, s_loc: Scalar) -> Scalar:
        """Noise level of the stage's flow at local sigma ``s_loc`` (upstream's ``noise_ratios``)."""
        stage = self._check_stage(stage)
        return s_loc * self._start[stage] + (1 - s_loc) * self._end[stage]

    def local_sigmas(self, n: int, grid: str = "upstream") -> torch.Tensor:
        """Euler grid inside a stage, followed by 0 (n + 1 values, fp32).

        `upstream`: linspace(1, 0.001, n), Pyramid-Flow's grid; at two steps it is 1 -> 0.001 -> 0, one real
        step and a negligible one, which is right for a many-step teacher and wrong for a two-step student.
        `uniform`: 1, (n-1)/n, ..., 1/n, the levels a multi-step DMD student is trained at (DMD2's 999, 749, ...)."""
        if n < 1:
            raise ValueError(f"need at least one step, got {n}")
        if grid == "upstream":
            levels = torch.linspace(1.0, LOCAL_SIGMA_MIN, n, dtype=torch.float64)
        elif grid == "uniform":
            levels = 1.0 - torch.arange(n, dtype=torch.float64) / n
        else:
            raise ValueError(f"unknown sigma grid '{grid}'; known: {', '.join(SIGMA_GRIDS)}")
        return torch.cat([levels, levels.new_zeros(1)]).to(torch.float32)

    def timesteps(self, stage: int, n: int, grid: str = "upstream") -> torch.Tensor:
        """DiT timesteps of an n-step stage: the local grid (without its final 0) mapped into the stage range.

        Starts at t_max; on the upstream grid ends 0.1 % of the range above t_min, where upstream ends too."""
        levels = self.local_sigmas(n, grid)[:-1].to(torch.float64)
        return self.timestep_for(stage, levels).to(torch.float32)

    def resolution_divisor(self, stage: int) -> int:
        return 2 ** (self.stages - 1 - self._check_stage(stage))

    def stage_size(self, height: int, width: int, stage: int) -> tuple[int, int]:
        """Latent (h, w) of ``stage`` for a full-resolution latent of height x width."""
        d = self.resolution_divisor(stage)
        if height % d or width % d:
            raise ValueError(f"{height}x{width} is not divisible by {d} (stage {stage})")
        return height // d, width // d

    # ------------------------------------------------------------------ inference
    @staticmethod
    def euler_step(x: torch.Tensor, v: torch.Tensor, sigma: Scalar, sigma_next: Scalar) -> torch.Tensor:
        """x + (sigma_next - sigma) * v in fp32, returned in x's dtype. Sigmas may be scalars or [B]."""
        xf = x.float()
        ds = _per_sample(sigma_next, xf) - _per_sample(sigma, xf)
        return (xf + ds * v.float()).to(x.dtype)

    def block_noise(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Gaussian noise whose 2x2 spatial blocks have covariance (1 + gamma) I - gamma 11^T.

        That matrix has eigenvalue 1 - 3 gamma along the block mean and 1 + gamma on its complement, so with
        iid z and its broadcast block mean m: n = sqrt(1 + gamma) (z - m) + sqrt(1 - 3 gamma) m.
        Unit variance per element, correlation -gamma inside a block, blocks independent. gamma = 1/3 gives
        sqrt(4/3) (z - m) with block sums exactly zero. Needs gamma <= 1/3 (else the matrix is not PSD).
        """
        g = self.gamma
        if g > 1 / 3 + 1e-12:
            raise ValueError(f"block noise needs gamma <= 1/3, got {g}")
        *lead, h, w = shape
        if h % 2 or w % 2:
            raise ValueError(f"block noise needs even spatial size, got {h}x{w}")
        z = _randn(shape, generator, device, torch.float32)
        blocks = z.reshape(*lead, h // 2, 2, w // 2, 2)
        m = blocks.mean(dim=(-3, -1), keepdim=True)
        n = math.sqrt(1 + g) * (blocks - m) + math.sqrt(max(1 - 3 * g, 0.0)) * m
        return n.reshape(*lead, h, w).to(dtype or torch.float32)

    def renoise_coefficients(self, stage: int) -> tuple[float, float]:
        """(alpha, beta) of the transition into ``stage``: o = 1 - original sigma_start[stage],
        alpha = 1 / (sqrt(1 + 1/gamma)(1 - o) + o), beta = alpha (1 - o) / sqrt(gamma)."""
        if not 1 <= stage < self.stages:
            raise ValueError(f"stage transitions go into stages 1..{self.stages - 1}, got {stage}")
        g = self.gamma
        o = 1.0 - self._orig_start[stage]
        alpha = 1.0 / (math.sqrt(1 + 1 / g) * (1 - o) + o)
        return alpha, alpha * (1 - o) / math.sqrt(g)

    def upsample_renoise(self, x: torch.Tensor, stage: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Carry the end of stage - 1 into the start of ``stage``: nearest 2x, alpha*up + beta*block noise.

        The upsampled noise is perfectly correlated within each 2x2 block; the anti-correlated block noise
        cancels that, leaving i.i.d. noise at the corrected sigma_start[stage] (see tests)."""
        alpha, beta = self.renoise_coefficients(stage)
        up = upsample_nearest(x.float(), 2)
        noise = self.block_noise(up.shape, generator, device=x.device)
        return (alpha * up + beta * noise).to(x.dtype)

    def noise_pyramid(self, noise_full: torch.Tensor) -> list[torch.Tensor]:
        """Per-stage noise from full-resolution noise, stage 0 first: each halving is bilinear times 2,
        which keeps unit variance (a 2x2 mean of iid noise has variance 1/4)."""
        out = [noise_full]
        for _ in range(self.stages - 1):
            out.append(downsample(out[-1], 2) * 2)
        return out[::-1]

    def latent_pyramid(self, clean_full: torch.Tensor) -> list[torch.Tensor]:
        """Per-stage clean latents (bilinear halvings, no rescale), stage 0 first; for training."""
        out = [clean_full]
        for _ in range(self.stages - 1):
            out.append(downsample(out[-1], 2))
        return out[::-1]

    def initial_noise(
        self,
        shape_full: Sequence[int],
        generator: torch.Generator | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Stage-0 starting noise: Gaussian drawn at full latent resolution, then ``noise_pyramid``'s stage 0.

        Drawing at full resolution (not at stage-0 size) reproduces upstream's random stream for a seed."""
        z = _randn(shape_full, generator, device, torch.float32)
        return self.noise_pyramid(z)[0].to(dtype or torch.float32)

    # ------------------------------------------------------------------ training
    def training_sample(
        self,
        clean: torch.Tensor,
        lower_res_clean: torch.Tensor | None,
        noise: torch.Tensor,
        stage: int,
        s_loc: Scalar,
    ) -> tuple[torch.Tensor, torch.Tensor, Scalar]:
        """Flow-matching sample and target for ``stage`` at local sigma ``s_loc`` (scalar or [B]).

        start = sigma_start * noise + (1 - sigma_start) * NearestUp2(lower_res_clean)  (noise at stage 0)
        end = sigma_end * noise + (1 - sigma_end) * clean                           (clean at the last stage)
        x_t = s_loc * start + (1 - s_loc) * end; v_target = start - end;
        timestep = timestep_for(stage, s_loc).
        ``clean`` and ``noise`` are at the stage's resolution (see latent_pyramid / noise_pyramid).
        """
        stage = self._check_stage(stage)
        s_start, s_end = self._start[stage], self._end[stage]
        if stage == 0:
            start = noise
        else:
            if lower_res_clean is None:
                raise ValueError(f"stage {stage} needs the lower-resolution clean latent")
            start = s_start * noise + (1 - s_start) * upsample_nearest(lower_res_clean, 2)
        end = clean if stage == self.stages - 1 else s_end * noise + (1 - s_end) * clean
        s = _per_sample(s_loc, start)
        x_t = s * start + (1 - s) * end
        return x_t, start - end, self.timestep_for(stage, s_loc)

    def _check_stage(self, stage: int) -> int:
        if not 0 <= stage < self.stages:
            raise ValueError(f"stage must be in [0, {self.stages}), got {stage}")
        return stage


@dataclass(frozen=True)
class StepSchedule:
    """Steps per stage and CFG scales for the first unit and for later units (guidance <= 1: CFG off).

    `hybrid`: unit 0 comes from the pipeline's first-frame component (an image model), not the denoiser, so it
    costs no denoiser call (Neodragon's hybrid mode); `first_unit` and `guidance_first` are then unused.
    `grid`: the Euler grid inside each stage (`PyramidFlowScheduler.local_sigmas`): upstream's for a many-step
    sampler, `uniform` for a student distilled to a few steps at evenly spaced levels."""

    first_unit: tuple[int, ...] = (20, 20, 20)
    later_units: tuple[int, ...] = (10, 10, 10)
    guidance_first: float = 7.0
    guidance_later: float = 5.0
    hybrid: bool = False
    grid: str = "upstream"

    def __post_init__(self) -> None:
        if self.grid not in SIGMA_GRIDS:
            raise ValueError(f"unknown sigma grid '{self.grid}'; known: {', '.join(SIGMA_GRIDS)}")
        for name in ("first_unit", "later_units"):
            steps = tuple(int(n) for n in getattr(self, name))
            if not steps or any(n < 1 for n in steps):
                raise ValueError(f"{name} needs positive step counts, got {steps}")
            object.__setattr__(self, name, steps)

    @staticmethod
    def uses_cfg(guidance: float) -> bool:
        return guidance > 1.0

    def steps_for(self, unit: int) -> tuple[int, ...]:
        return self.first_unit if unit == 0 else self.later_units

    def guidance_for(self, unit: int) -> float:
        return self.guidance_first if unit == 0 else self.guidance_later

    def denoised_units(self, num_units: int) -> range:
        """The units the denoiser samples (all, or all but unit 0 in hybrid mode)."""
        return range(1 if self.hybrid else 0, num_units)

    def calls(self, num_units: int) -> int:
        """Denoiser calls (a CFG step batches [uncond, cond] into one call)."""
        return sum(sum(self.steps_for(u)) for u in self.denoised_units(num_units))

    def nfe(self, num_units: int) -> int:
        """Function evaluations, a CFG step counting as two (the Pyramid-Flow default for 7 units is 480)."""
        return sum(sum(self.steps_for(u)) * (2 if self.uses_cfg(self.guidance_for(u)) else 1)
                   for u in self.denoised_units(num_units))  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_unit": list(self.first_unit),
            "later_units": list(self.later_units),
            "guidance_first": self.guidance_first,
            "guidance_later": self.guidance_later,
            **({"hybrid": True} if self.hybrid else {}),
            **({"grid": self.grid} if self.grid != "upstream" else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepSchedule:
        return cls(
            first_unit=tuple(d.get("first_unit", (20, 20, 20))),
            later_units=tuple(d.get("later_units", (10, 10, 10))),
            guidance_first=float(d.get("guidance_first", 7.0)),
            guidance_later=float(d.get("guidance_later", 5.0)),
            hybrid=bool(d.get("hybrid", False)),
            grid=str(d.get("grid", "upstream")),
        )

    @classmethod
    def pyramid_flow(cls) -> StepSchedule:
        """Upstream default: 20-20-20 with CFG 7 for the first frame, 10-10-10 with CFG 5 after."""
        return cls()

    @classmethod
    def distilled_1_1_1(cls) -> StepSchedule:
        """Step-distilled student: one step per stage for every unit, CFG off."""
        return cls((1, 1, 1), (1, 1, 1), 1.0, 1.0)
