"""A pipeline after both substitutions (DistilT5 + ContextAdapter in `replace` mode, so the denoiser has no context
embedder; the TAEHV decoder) lowers like the native one: the Hexagon op check takes every graph, each compiles for
the HTP and runs in its simulator close to float, and the onnxruntime bundle generates what torch does. The
weights are untrained: lowering depends on the structure, and the passes' own tests train."""

from __future__ import annotations

from pathlib import Path

import pytest

from neocompress.lowering.pipeline_graphs import lower_pipeline
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.passes.decoder_swap import DecoderSwap, DecoderSwapConfig
from neocompress.passes.encoder_substitution import EncoderSubstitution, EncoderSubstitutionConfig
from neocompress.quant.precision import sqnr_db

FAMILY = PyramidFlowFamily()
STUDENT = {"encoder": {"d_model": 32, "d_kv": 16, "d_ff": 64, "num_layers": 2, "num_heads": 2}}


@pytest.fixture(scope="module")
def substituted():
    ir = FAMILY.load("builtin:tiny-random")
    config = EncoderSubstitutionConfig(mode="replace", student={**STUDENT, "random_init": True})
    EncoderSubstitution(config)._swap(ir)[0].release()
    DecoderSwap(DecoderSwapConfig(widths=[16, 16, 8, 8]))._swap(ir).release()
    assert type(ir["t5"].module).__name__ == "DistilT5" and not hasattr(ir["denoiser"].module, "context_embedder")
    assert type(ir["vae_decoder"].module).__name__ == "TAEHVDecoder"
    ir.verify()
    return ir


def test_substituted_text_encoder_and_decoder_compile_for_the_htp_and_match_float(substituted, tmp_path) -> None:
    from neocompress.targets.hexagon import qnn
    from neocompress.targets.hexagon.devices import device_profile
    from neocompress.targets.hexagon.lower import lower_hexagon

    target = {"name": "hexagon", "max_part_mb": 4.0, "simulate": True, "aihub": False,
              "components": ["text_encoders", "vae_decoder"]}  # fmt: skip
    manifest = lower_hexagon(lower_pipeline(substituted, {}), substituted, tmp_path / "b", target,
                             [device_profile("snapdragon-8-elite")], {})  # fmt: skip
    assert {"t5", "vae_decoder"} <= set(manifest["components"])
    if qnn.available():
        pytest.skip(qnn.available())
    rows = manifest["compiled"]["snapdragon-8-elite"]
    for name in ("t5", "vae_decoder"):
        for r in rows[name]:
            assert r["sqnr_db_simulator_vs_float"] > 30, (name, r)  # fp16 on the HTP against fp32


def test_substituted_denoiser_without_context_embedder_passes_the_op_check(substituted, tmp_path) -> None:
    from neocompress.targets.hexagon.devices import device_profile
    from neocompress.targets.hexagon.lower import lower_hexagon

    target = {"name": "hexagon", "max_part_mb": 64, "simulate": False, "aihub": False, "components": ["denoiser"]}
    manifest = lower_hexagon(lower_pipeline(substituted, {}), substituted, tmp_path / "b", target,
                             [device_profile("snapdragon-8-elite")], {})  # fmt: skip
    assert {f"denoiser_stage{s}" for s in range(3)} <= set(manifest["components"])


def test_substituted_onnxruntime_bundle_generates_what_torch_does(substituted, tmp_path: Path) -> None:
    from neocompress.targets.onnxruntime.lower import lower_onnxruntime
    from neocompress.targets.onnxruntime.runtime import BundleRuntime

    graphs = lower_pipeline(substituted, {})
    lower_onnxruntime(graphs, substituted, tmp_path / "ort", {"name": "onnxruntime"}, {})
    pipe = FAMILY.pipeline(substituted)
    runtime = BundleRuntime(tmp_path / "ort")
    schedule = pipe.schedule_with(first=(1, 1, 1), later=(1, 1, 1))
    runtime.schedule = schedule
    video = runtime.generate(["a red circle"], seed=1)
    assert sqnr_db(pipe.generate(["a red circle"], seed=1, schedule=schedule), video) > 30


def test_static_stage_graph_of_a_denoiser_without_context_embedder_takes_hidden_width_tokens(substituted) -> None:
    """Reloading a quantized pipeline rebuilds each stage graph from its example inputs: without the context
    embedder (replace mode) the text tokens are the hidden width, not T5's (the demo failed on this once)."""
    from neocompress.lowering.static_denoiser import StaticStageDenoiser, stage_slot_shapes

    den = substituted["denoiser"].module
    sched = substituted["scheduler"].extras["object"]
    shapes = stage_slot_shapes(sched, 2, 2, den.config.in_channels, 8, 8, 1)
    graph = StaticStageDenoiser(den, shapes, 16).eval()
    inputs = graph.example_inputs()
    assert den.config.text_token_dim == den.config.inner_dim != den.config.joint_attention_dim
    assert graph(*inputs).shape[1] == den.config.out_channels
