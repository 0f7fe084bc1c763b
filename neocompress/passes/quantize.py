"""`quantize`: post-training quantization with AIMET, per component: the denoiser calibrated per pyramid stage,
the VAE decoder on the latents the pipeline samples, the text encoders in FP16.

Neodragon's last step before compilation (reference section 7): DiT + adapter and the VAE decoder W8A16, CLIP and
T5 in FP16. The pipeline samples the calibration prompts (with the calibration's steps per stage); every
denoiser call is captured, and each pyramid stage gets its own QuantizationSimModel over its static graph (sized
for the longest history, shorter ones front-padded), encodings computed on that stage's calls. The decoder's
graph is calibrated on latents the float pipeline samples for the calibration prompts with its own schedule
(what it will decode).
Precisions are config values (`components: {denoiser: w8a16, vae_decoder: w8a16, text_encoders: fp16}`); so are
the layers kept float (declared by the model's adapter, overridable), Sequential MSE for 4-bit weights (pooled
over the stages, whose weights are shared) and AdaRound for the decoder.

The report gives each graph's SQNR against its float self on its calibration calls and on held-out prompts' calls,
the SQNR of the held-out prompts' latents and decoded videos sampled with the pipeline's own schedule (the whole
pipeline, float vs simulated), and optionally MiniBench float vs simulated. The float weights are kept: AIMET's
quantizer state is saved beside them (`quantization/`) and re-attached on load; the pipeline then samples through
the simulations and the targets export from them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from neocompress.core.errors import Problem, VerificationError
from neocompress.core.pass_base import Pass, PassConfig, PassResult
from neocompress.core.registry import register_pass
from neocompress.ir.component import Provenance
from neocompress.ir.pipeline_ir import PipelineIR
from neocompress.passes.calibration import CalibrationConfig

QUANTIZATION = "quantization"  # the component extras key holding the simulation and its settings
Component = Literal["denoiser", "vae_decoder", "text_encoders"]
IntegerPrecision = Literal["w8a16", "w8a8", "w4a16"]
PrecisionName = Literal["w8a16", "w8a8", "w4a16", "fp16"]
TEXT_ENCODERS = ("clip_l", "clip_g", "t5")


class QuantCalibrationConfig(CalibrationConfig):
    max_calls: int = Field(32, ge=1, description="captured calls (or decoded latents) per graph to calibrate it on")
    heldout: int = Field(
        2,
        ge=0,
        description="prompts (after the calibration ones) whose outputs are compared float vs quantized",
    )


class QuantizeConfig(PassConfig):
    components: list[Component] | dict[Component, PrecisionName] = Field(
        default_factory=lambda: ["denoiser"],
        description="what to quantize: a list (each at `precision`; text_encoders at fp16) or {component: precision}",
    )
    precision: IntegerPrecision = Field("w8a16", description="weight / activation bit widths of listed components")
    htp: Literal["v66", "v68", "v69", "v73", "v75", "v79", "v81", "v85"] = Field(
        "v79", description="Hexagon version whose AIMET config (fusions, quantized tensors) the simulation uses"
    )
    scheme: Literal["tf", "tf_enhanced"] = Field(
        "tf", description="AIMET range estimation: min/max (tf) or SQNR-searched (tf_enhanced, ~15x slower)"
    )
    float_layers: dict[Literal["denoiser", "vae_decoder"], list[str]] | None = Field(
        None,
        description="per component, layers whose weights stay float (names, parents or globs); "
        "unset: what the model adapter declares; [] for none",
    )
    seq_mse: bool | None = Field(
        None, description="choose 4-bit weight encodings by AIMET's Sequential MSE (unset: on for 4-bit weights)"
    )
    adaround: int = Field(0, ge=0, description="AdaRound iterations per layer for the VAE decoder (0: off)")
    minibench: int = Field(0, ge=0, description="prompts of a MiniBench run float vs simulated in the report (0: off)")
    calibration: QuantCalibrationConfig = Field(
        default_factory=QuantCalibrationConfig, description="the sampling whose calls calibrate each graph"
    )

    @model_validator(mode="after")
    def _consistent(self) -> QuantizeConfig:
        chosen = self.chosen()
        if not chosen:
            raise ValueError("components is empty: name at least one of denoiser, vae_decoder, text_encoders")
        for name, p in chosen.items():
            if name == "text_encoders" and p != "fp16":
                raise ValueError(f"text_encoders: only fp16 (as Neodragon ran them), not {p}")
            if name != "text_encoders" and p == "fp16":
                raise ValueError(f"{name}: fp16 is what the Hexagon target compiles an unquantized {name} in; "
                                 "leave it out of `components`")  # fmt: skip
        if self.seq_mse and not any(p == "w4a16" for n, p in chosen.items() if n == "denoiser"):
            raise ValueError("seq_mse: AIMET's Sequential MSE searches 4-bit weights only; quantize the denoiser "
                             "to w4a16 or drop seq_mse")  # fmt: skip
        if self.adaround and "vae_decoder" not in chosen:
            raise ValueError("adaround: applies to the VAE decoder (the denoiser's stage graphs share weights, "
                             "and AdaRound rewrites them per graph); add vae_decoder to components")  # fmt: skip
        for name in self.float_layers or {}:
            if name not in chosen:
                raise ValueError(f"float_layers.{name}: {name} is not quantized by this pass")
        return self

    def chosen(self) -> dict[str, str]:
        """{component: precision}."""
        if isinstance(self.components, dict):
            return dict(self.components)
        return {c: ("fp16" if c == "text_encoders" else self.precision) for c in self.components}


@register_pass
class Quantize(Pass):
    name = "quantize"
    version = 2
    Config = QuantizeConfig
    summary = "Post-training quantization (AIMET): denoiser per pyramid stage, VAE decoder, text encoders in fp16."
    requires = ("denoiser",)

    config: QuantizeConfig

    def _members(self, component: str) -> tuple[str, ...]:
        return TEXT_ENCODERS if component == "text_encoders" else (component,)

    def check(self, ir: PipelineIR) -> list[Problem]:
        from neocompress.quant.aimet_sim import unmatched

        if ir.family != "pyramid-flow":
            return [Problem(f"quantize supports the pyramid-flow family so far, not '{ir.family}'", path="components")]
        problems = []
        for component in self.config.chosen():
            for member in self._members(component):
                if member not in ir:
                    problems.append(Problem(f"the pipeline has no component '{member}'", path="components"))
                elif QUANTIZATION in ir[member].extras:
                    problems.append(Problem(f"'{member}' is already quantized", path="components"))
        if problems:
            return problems
        for component, patterns in self.float_layers(ir).items():
            names = [n for n, _ in ir[component].module.named_modules() if n]
            for p in unmatched(patterns, names):
                problems.append(Problem(f"float layer '{p}' matches no layer of the {component}",
                                        path=f"float_layers.{component}"))  # fmt: skip
        return problems

    def float_layers(self, ir: PipelineIR) -> dict[str, list[str]]:
        """Per integer-quantized component, the layers kept float: the recipe's, else the adapter's declaration."""
        out = {}
        for component in self.config.chosen():
            if component == "text_encoders":
                continue
            given = (self.config.float_layers or {}).get(component)  # type: ignore[call-overload]
            if given is None:
                adapter = ir[component].extras.get("block_adapter")
                given = adapter.never_quantize(ir[component].module) if adapter is not None else []
            out[component] = list(given)
        return out

    def target_problems(self, device: Any) -> list[Problem]:
        from neocompress.targets.hexagon.devices import quantize_problems

        out = []
        for component, p in self.config.chosen().items():
            for key, message in quantize_problems(device, p, self.config.htp).items():
                path = f"components.{component}" if key == "precision" else key
                if all(o.message != message for o in out):
                    out.append(Problem(message, path=path))
        return out

    def data_needs(self) -> dict[str, str]:
        return {"calibration.prompts": self.config.calibration.prompts}

    def snapshot(self, ir: PipelineIR) -> dict[str, Any]:
        return {m: ir[m].num_params() for c in self.config.chosen() for m in self._members(c)}

    def plan(self, ir: PipelineIR, ctx: Any) -> PassResult:
        """Weights do not change size in simulation (the float weights and their encodings are both kept); the
        components are marked, so a second `quantize` of one is caught at validation."""
        for component, p in self.config.chosen().items():
            for member in self._members(component):
                ir[member].extras[QUANTIZATION] = {"settings": {"precision": p}, "planned": True}
        return PassResult(ir, False, {"components": self.config.chosen(), "planned": "no weights to calibrate"})

    def run(self, ir: PipelineIR, ctx: Any) -> PassResult:
        from neocompress.models.family import get_family
        from neocompress.quant.denoiser_sim import capture_calls
        from neocompress.quant.precision import sqnr_db

        problems = self.check(ir)
        if problems:
            raise VerificationError("; ".join(p.message for p in problems))
        cfg, cal = self.config, self.config.calibration
        chosen = cfg.chosen()
        prompts = cal.prompt_set(ctx, self.name)
        calibration = cal.chosen_prompts(ctx, self.name)
        heldout = prompts[len(calibration) : len(calibration) + cal.heldout] or calibration[: cal.heldout]
        family = get_family(ir.family)
        pipeline = family.pipeline(ir)
        # What the pipeline outputs as it runs (its own schedule, float weights): the decoder's calibration and
        # held-out latents (a few-step calibration schedule makes latents the decoder never sees: calibrated on
        # those, it measured 24 dB on real ones against 33 dB) and the reference for the whole pipeline's output.
        deployed = pipeline.schedule
        floating = family.pipeline(ir, simulated=False)
        held_latents = floating.sample_latents(list(heldout), seed=ctx.seed + 1, schedule=deployed) if heldout else None
        float_layers = self.float_layers(ir)
        report: dict[str, Any] = {"components": chosen, "htp": cfg.htp, "scheme": cfg.scheme,
                                  "calibration_prompts": len(calibration), "heldout_prompts": len(heldout)}  # fmt: skip
        if "denoiser" in chosen:  # its calls at the calibration's steps per stage, and on held-out prompts
            schedule = cal.schedule(pipeline)
            captured = capture_calls(pipeline, calibration, samples=cal.samples, seed=ctx.seed, schedule=schedule,
                                     batch=cal.batch)  # fmt: skip
            held_calls = None
            if heldout:
                held_calls = capture_calls(pipeline, list(heldout), samples=1, seed=ctx.seed + 1,
                                           schedule=schedule, batch=cal.batch)  # fmt: skip
            report.update(self._denoiser(ir, captured, held_calls, chosen["denoiser"], float_layers["denoiser"]))
        if "vae_decoder" in chosen:
            latents = [floating.sample_latents(calibration[i : i + cal.batch], seed=ctx.seed + i, schedule=deployed)
                       for i in range(0, len(calibration), cal.batch)]  # fmt: skip
            report["vae_decoder"] = self._decoder(ir, pipeline, latents, [held_latents] if heldout else [],
                                                  chosen["vae_decoder"], float_layers["vae_decoder"])  # fmt: skip
        if "text_encoders" in chosen:
            report["text_encoders"] = self._text(ir, pipeline, calibration)
        if heldout:
            simulated = family.pipeline(ir)
            quant_latents = simulated.sample_latents(list(heldout), seed=ctx.seed + 1, schedule=deployed)
            report["latents_sqnr_db"] = sqnr_db(held_latents, quant_latents)
            report["video_sqnr_db"] = sqnr_db(floating.decode(held_latents), simulated.decode(quant_latents))
        if cfg.minibench:
            report["minibench"] = _minibench_float_vs_simulated(family, ir, cfg.minibench, ctx.seed, ctx.scores)
        return PassResult(ir, True, report)

    def _denoiser(self, ir: PipelineIR, captured: Any, held: Any, precision_name: str,
                  float_layers: list[str]) -> dict[str, Any]:  # fmt: skip
        from neocompress.quant.denoiser_sim import simulate_denoiser
        from neocompress.quant.precision import precision

        cfg = self.config
        seq_mse = cfg.seq_mse if cfg.seq_mse is not None else precision(precision_name).param_bw <= 4
        comp = ir["denoiser"]
        graphs = simulate_denoiser(comp.module, captured, precision(precision_name), cfg.htp, scheme=cfg.scheme,
                                   max_calls=cfg.calibration.max_calls, heldout=held, float_layers=float_layers,
                                   seq_mse=seq_mse)  # fmt: skip
        settings = {"precision": precision_name, "htp": cfg.htp, "scheme": cfg.scheme,
                    "float_layers": float_layers, "seq_mse": seq_mse}  # fmt: skip
        comp.extras[QUANTIZATION] = {"graphs": graphs, "settings": settings}
        comp.provenance.append(Provenance(self.name, "modified", f"{precision_name} simulation ({len(graphs)} graphs, "
                                          f"htp {cfg.htp}, {len(graphs[0].float_layers)} float layers)"))  # fmt: skip
        per_stage: dict[int, list[float]] = {}
        for g in graphs:  # held-out calls where there are any: calibration calls flatter the ranges
            per_stage.setdefault(g.stage, []).append(g.heldout_sqnr_db if g.heldout_sqnr_db is not None else g.sqnr_db)
        return {
            "precision": precision_name,
            "float_layers": graphs[0].float_layers,
            "seq_mse": seq_mse,
            "graphs": [g.describe() for g in graphs],
            "sqnr_db_per_stage": {str(k): min(v) for k, v in sorted(per_stage.items())},
        }

    def _decoder(self, ir: PipelineIR, pipeline: Any, latents: list[Any], held: list[Any], precision_name: str,
                 float_layers: list[str]) -> dict[str, Any]:  # fmt: skip
        from neocompress.quant.decoder_sim import simulate_decoder
        from neocompress.quant.precision import precision

        cfg = self.config
        comp = ir["vae_decoder"]
        simulated = simulate_decoder(comp.module, pipeline.latent_norm, latents, precision(precision_name), cfg.htp,
                                     scheme=cfg.scheme, max_calls=cfg.calibration.max_calls, heldout=held,
                                     float_layers=float_layers, adaround_iterations=cfg.adaround)  # fmt: skip
        comp.extras[QUANTIZATION] = {"decoder": simulated, "settings": simulated.settings}
        comp.provenance.append(Provenance(self.name, "modified", f"{precision_name} simulation (htp {cfg.htp}"
                                          + (f", AdaRound {cfg.adaround} it/layer" if cfg.adaround else "") + ")"))
        return {"precision": precision_name, "adaround_iterations": cfg.adaround, **simulated.describe()}

    def _text(self, ir: PipelineIR, pipeline: Any, prompts: list[str]) -> dict[str, Any]:
        from neocompress.quant.fp16 import fp16_text_report, half_copy

        for member in TEXT_ENCODERS:
            ir[member].extras[QUANTIZATION] = {"settings": {"precision": "fp16"}}
            ir[member].provenance.append(Provenance(self.name, "modified", "fp16 simulation"))
        sqnr = fp16_text_report(pipeline.text, prompts, {m: half_copy(ir[m]) for m in TEXT_ENCODERS})
        return {"precision": "fp16", "sqnr_db": sqnr, "prompts": len(prompts)}

    def ensures(self, before: dict[str, Any], result: PassResult) -> None:
        for component in self.config.chosen():
            for member in self._members(component):
                comp = result.ir[member]
                if QUANTIZATION not in comp.extras:
                    raise VerificationError(f"quantize: no simulation was attached to {member}")
                if comp.num_params() != before[member]:
                    raise VerificationError(f"quantize: the parameter count of {member} changed")
        den = result.ir["denoiser"].extras.get(QUANTIZATION)
        if den is not None and "denoiser" in self.config.chosen() and not den.get("graphs"):
            raise VerificationError("quantize: no simulated denoiser graph was attached")


def _minibench_float_vs_simulated(family: Any, ir: PipelineIR, prompts: int, seed: int,
                                  cache: Any) -> dict[str, Any]:  # fmt: skip
    """MiniBench of the float pipeline and of the simulated one, on the same prompts and seed."""
    from neocompress.analysis.quality import minibench

    float_score = minibench(family, ir, prompts=prompts, seed=seed, simulated=False, cache=cache)
    simulated = minibench(family, ir, prompts=prompts, seed=seed, cache=cache)
    return {"float": float_score, "simulated": simulated, "difference": cache.difference(float_score, simulated)}
