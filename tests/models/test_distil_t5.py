"""DistilT5 and the ContextAdapter as Neodragon built them: full-size parameter counts on the meta device, the
checkpoint layout, the T5-compatible call, and the adapter's skip connections."""

from __future__ import annotations

import pytest
import torch

from neocompress.models.pyramid_flow.distil_t5 import ContextAdapter, DistilT5, distil_t5_base_config


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_full_size_parameter_counts() -> None:
    with torch.device("meta"):
        distil = DistilT5(distil_t5_base_config(), 4096)
        adapter = ContextAdapter(4096, 1536)
    assert _count(distil.encoder) == 109_628_544  # T5-v1.1-base encoder, 32128 tokens
    assert _count(distil.final_projection) == 768 * 4096 + 4096 * 4096
    # 4096 -> 4096, then three 8192 -> 4096, output 8192 -> 1536, with biases
    assert _count(adapter) == (4096 * 4096 + 4096) + 3 * (8192 * 4096 + 4096) + (8192 * 1536 + 1536)
    keys = list(distil.state_dict())
    assert "encoder.encoder.block.11.layer.1.DenseReluDense.wi_1.weight" in keys
    assert keys[-2:] == ["final_projection.0.weight", "final_projection.3.weight"]


def test_distil_t5_answers_like_a_t5_encoder_at_the_projected_width() -> None:
    config = {**distil_t5_base_config(vocab_size=100), "d_model": 16, "d_ff": 32, "num_layers": 2, "num_heads": 2,
              "d_kv": 8}  # fmt: skip
    model = DistilT5(config, out_dim=24).eval()
    ids = torch.randint(0, 100, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert out.shape == (3, 7, 24)


def test_the_adapter_reads_its_input_at_every_layer_after_the_first() -> None:
    adapter = ContextAdapter(8, 5, hidden=12, layers=3)
    assert [layer.in_features for layer in adapter.hidden] == [8, 20, 20] and adapter.out.in_features == 20
    x = torch.randn(2, 4, 8)
    assert adapter(x).shape == (2, 4, 5)
    with torch.no_grad():  # zero the hidden path: the output still depends on x through the skip connection
        for layer in adapter.hidden:
            layer.weight.zero_()
    y = adapter(x)
    assert not torch.allclose(y, adapter(torch.zeros_like(x)))
    with pytest.raises(ValueError, match="at least one hidden layer"):
        ContextAdapter(8, 5, layers=0)
