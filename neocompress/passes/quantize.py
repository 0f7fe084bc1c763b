"""`quantize`: W8A16 post-training quantization of the denoiser with AIMET, calibrated per pyramid stage.

Neodragon's last step before compilation (reference section 7). The pipeline samples the calibration prompts with
the schedule it will run; every denoiser call is captured, and each pyramid stage gets its own AIMET
QuantizationSimModel over the stage's static graph (sized for the longest history, shorter ones front-padded),
its encodings computed on that stage's calls (per-stage calibration, as the paper did). The pipeline then
samples through the simulated graphs, so MiniBench and `generate` show the quantized model's quality. The report
gives the SQNR of every graph against its float self on its calibration calls and on held-out prompts' calls,
and of the sampled latents of the held-out prompts. The float weights are kept: AIMET's quantizer state is saved
beside them (`quantization/denoiser/`) and re-attached on load; the targets export from it.

Scope now: the denoiser, on Pyramid-Flow (the text encoders and the VAE decoder compile in fp16 on the HTP).
The VAE decoder's W8A16 (it needs a static, fx-traceable decoder graph), AdaRound and SeqMSE are the issue's next
steps; the precision and the Hexagon version are config values.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from neocompress.core.errors import Problem, VerificationError
from neocompress.core.pass_base import Pass, PassConfig, PassResult
from neocompress.core.registry import register_pass
from neocompress.ir.component import Provenance
from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.passes.calibration import CalibrationConfig

QUANTIZATION = "quantization"  # the component extras key holding {"graphs": [...], "settings": {...}}


class QuantCalibrationConfig(CalibrationConfig):
    max_calls: int = Field(32, ge=1, description="captured calls per graph used to compute its encodings")
    heldout: int = Field(
        2,
        ge=0,
        description="prompts (after the calibration ones) whose sampled latents are compared float vs quantized",
    )


class QuantizeConfig(PassConfig):
    component: Literal["denoiser"] = Field("denoiser", description="the component to quantize")
    precision: Literal["w8a16", "w8a8", "w4a16"] = Field("w8a16", description="weight / activation bit widths")
    htp: Literal["v66", "v68", "v69", "v73", "v75", "v79", "v81", "v85"] = Field(
        "v79", description="Hexagon version whose AIMET config (fusions, quantized tensors) the simulation uses"
    )
    scheme: Literal["tf", "tf_enhanced"] = Field(
        "tf", description="AIMET range estimation: min/max (tf) or SQNR-searched (tf_enhanced, ~15x slower)"
    )
    calibration: QuantCalibrationConfig = Field(
        default_factory=QuantCalibrationConfig, description="the sampling whose denoiser calls calibrate each graph"
    )


@register_pass
class Quantize(Pass):
    name = "quantize"
    version = 1
    Config = QuantizeConfig
    summary = "W8A16 post-training quantization (AIMET), one simulated graph per pyramid stage."
    requires = ("denoiser",)

    config: QuantizeConfig

    def check(self, ir: PipelineIR) -> list[Problem]:
        cfg = self.config
        if ir.family != "pyramid-flow":
            return [Problem(f"quantize supports the pyramid-flow family so far, not '{ir.family}'", path="component")]
        if cfg.component not in ir:
            return [Problem(f"the pipeline has no component '{cfg.component}'", path="component")]
        if QUANTIZATION in ir[cfg.component].extras:
            return [Problem(f"'{cfg.component}' is already quantized", path="component")]
        return []

    def target_problems(self, device: Any) -> list[Problem]:
        from neocompress.targets.hexagon.devices import quantize_problems

        return [
            Problem(m, path=k) for k, m in quantize_problems(device, self.config.precision, self.config.htp).items()
        ]

    def data_needs(self) -> dict[str, str]:
        return {"calibration.prompts": self.config.calibration.prompts}

    def snapshot(self, ir: PipelineIR) -> dict[str, Any]:
        return {"params": ir[self.config.component].num_params()}

    def plan(self, ir: PipelineIR, ctx: Any) -> PassResult:
        """Weights do not change size in simulation (the float weights and their encodings are both kept); the
        component is marked, so a second `quantize` of it is caught at validation."""
        cfg = self.config
        ir[cfg.component].extras[QUANTIZATION] = {"graphs": [], "settings": self._settings(), "planned": True}
        return PassResult(ir, False, {"component": cfg.component, "planned": "no weights to calibrate"})

    def run(self, ir: PipelineIR, ctx: Any) -> PassResult:
        from neocompress.models.family import get_family
        from neocompress.quant.denoiser_sim import SimulatedDenoiser, capture_calls, simulate_denoiser
        from neocompress.quant.precision import precision, sqnr_db

        problems = self.check(ir)
        if problems:
            raise VerificationError("; ".join(p.message for p in problems))
        cfg, cal = self.config, self.config.calibration
        prompts = cal.prompt_set(ctx, self.name)
        calibration = cal.chosen_prompts(ctx, self.name)
        heldout = prompts[len(calibration) : len(calibration) + cal.heldout] or calibration[: cal.heldout]
        pipeline = get_family(ir.family).pipeline(ir)
        schedule = cal.schedule(pipeline)
        captured = capture_calls(pipeline, calibration, samples=cal.samples, seed=ctx.seed, schedule=schedule,
                                 batch=cal.batch)  # fmt: skip
        held_calls = None
        if heldout:  # the same schedule on prompts the calibration never saw
            held_calls = capture_calls(pipeline, list(heldout), samples=1, seed=ctx.seed + 1, schedule=schedule,
                                       batch=cal.batch)  # fmt: skip
        comp = ir[cfg.component]
        graphs = simulate_denoiser(comp.module, captured, precision(cfg.precision), cfg.htp, scheme=cfg.scheme,
                                   max_calls=cal.max_calls, heldout=held_calls)  # fmt: skip
        settings = self._settings()
        pipeline_sqnr = None
        if heldout:
            float_latents = pipeline.sample_latents(list(heldout), seed=ctx.seed + 1, schedule=schedule)
            pipeline.denoiser = SimulatedDenoiser(comp.module, graphs)
            quant_latents = pipeline.sample_latents(list(heldout), seed=ctx.seed + 1, schedule=schedule)
            pipeline_sqnr = sqnr_db(float_latents, quant_latents)
        comp.extras[QUANTIZATION] = {"graphs": graphs, "settings": settings}
        comp.provenance.append(
            Provenance(self.name, "modified", f"{cfg.precision} simulation ({len(graphs)} graphs, htp {cfg.htp})")
        )
        per_stage: dict[int, list[float]] = {}
        for g in graphs:  # held-out calls where there are any: calibration calls flatter the ranges
            per_stage.setdefault(g.stage, []).append(g.heldout_sqnr_db if g.heldout_sqnr_db is not None else g.sqnr_db)
        report = {
            "component": cfg.component,
            **settings,
            "calibration_prompts": len(calibration),
            "graphs": [g.describe() for g in graphs],
            "sqnr_db_per_stage": {str(k): min(v) for k, v in sorted(per_stage.items())},
            "latents_sqnr_db": pipeline_sqnr,
            "heldout_prompts": len(heldout),
        }
        return PassResult(ir, True, report)

    def _settings(self) -> dict[str, str]:
        """What the simulation was built with (saved beside the encodings, needed to rebuild it)."""
        return {"precision": self.config.precision, "htp": self.config.htp, "scheme": self.config.scheme}

    def ensures(self, before: dict[str, Any], result: PassResult) -> None:
        comp = result.ir[self.config.component]
        if QUANTIZATION not in comp.extras or not comp.extras[QUANTIZATION]["graphs"]:
            raise VerificationError("quantize: no simulated graph was attached")
        if comp.num_params() != before["params"]:
            raise VerificationError("quantize: the float parameters changed")
