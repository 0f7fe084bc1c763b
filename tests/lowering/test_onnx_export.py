"""Every static denoiser stage graph exports to ONNX and runs in onnxruntime as torch does, with and without
history padding, and so does the VAE decoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neocompress.lowering.onnx_export import export_onnx, verify_onnx
from neocompress.lowering.static_denoiser import StaticStageDenoiser, stage_slot_shapes
from neocompress.models.pyramid_flow.family import PyramidFlowFamily


@pytest.fixture(scope="module")
def tiny():
    family = PyramidFlowFamily()
    ir = family.load("builtin:tiny-random")
    return family.pipeline(ir).scheduler, ir["denoiser"].module.eval()


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_each_stage_graph_exports_and_matches_torch(tiny, stage: int, tmp_path: Path) -> None:
    scheduler, denoiser = tiny
    graph = StaticStageDenoiser(denoiser, stage_slot_shapes(scheduler, stage, 3, 16, 8, 8, 2), text_len=12).eval()
    text_mask = torch.ones(2, 12, dtype=torch.long)
    text_mask[1, 7:] = 0  # one padded prompt: the mask input is exercised
    path = export_onnx(graph, graph.example_inputs(text_mask, seed=1), graph.input_names(), tmp_path / "stage.onnx")
    for history in (0, 1, 2):  # the same graph serves every history length
        inputs = graph.example_inputs(text_mask, seed=history, history=history)
        check = verify_onnx(graph, path, inputs, graph.input_names())
        assert check.max_abs_error < 1e-4 * max(1.0, check.reference_max), check.to_dict()  # ~1e-6 measured
    graph.restore_backend()
    assert "Softmax" in check.ops and "Attention" not in check.ops  # explicit attention, no fused contrib op


class _Decode(torch.nn.Module):
    """The VAE decoder as the pipeline calls it (normalised latents -> video in [-1, 1])."""

    def __init__(self, decoder: torch.nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder.decode(latents)


def test_the_causal_vae_decoder_exports_and_matches_torch_on_other_latents(tmp_path: Path) -> None:
    decoder = _Decode(PyramidFlowFamily().load("builtin:tiny-random")["vae_decoder"].module).eval()
    gen = torch.Generator().manual_seed(0)
    traced_on = torch.randn(1, 16, 2, 8, 8, generator=gen)  # 9 frames: the first latent frame, then 8 more
    path = export_onnx(decoder, (traced_on,), ["latents"], tmp_path / "decoder.onnx")
    for latents in (traced_on, torch.randn(1, 16, 2, 8, 8, generator=gen)):  # the trace is not input-specific
        check = verify_onnx(decoder, path, (latents,), ["latents"])
        assert check.max_abs_error < 1e-4, check.to_dict()  # ~2e-6 measured
