"""PipelineIR contracts: verify() names every broken edge; replace() refuses a component that breaks one."""

from __future__ import annotations

import pytest
from torch import nn

from neocompress.core.errors import VerificationError
from neocompress.ir import Component, PipelineIR
from neocompress.ir.pipeline_ir import PIPELINE_INPUT, spec


def _toy() -> PipelineIR:
    ir = PipelineIR("toy")
    ir.add(
        Component(
            "enc",
            "text_encoder",
            nn.Linear(2, 2),
            {},
            inputs={"ids": spec("B", 8, dtype="int64")},
            outputs={"tokens": spec("B", 8, 16)},
        )
    )
    ir.add(
        Component(
            "den", "denoiser", nn.Linear(2, 2), {}, inputs={"tokens": spec("B", 8, 16)}, outputs={"v": spec("B", 4)}
        )
    )
    ir.add(
        Component(
            "dec",
            "vae_decoder",
            nn.Linear(2, 2),
            {},
            inputs={"z": spec("B", 4)},
            outputs={"video": spec("B", 3, value_range=(-1.0, 1.0))},
        )
    )
    ir.connect(PIPELINE_INPUT, "ids", "enc", "ids")
    ir.connect("enc", "tokens", "den", "tokens")
    ir.connect("den", "v", "dec", "z")
    return ir


def test_consistent_ir_verifies_and_orders_topologically():
    ir = _toy()
    ir.verify()
    assert ir.topological_order() == ["enc", "den", "dec"]


def test_verify_reports_every_broken_contract_at_once():
    ir = _toy()
    ir["enc"].outputs["tokens"] = spec("B", 8, 32, dtype="float16")  # width and dtype both wrong
    ir.connect("ghost", "x", "dec", "z")  # missing producer, and a second producer for dec.z
    with pytest.raises(VerificationError) as e:
        ir.verify()
    msg = str(e.value)
    assert "dim 2 is 32, expected 16" in msg
    assert "dtype float16 != float32" in msg
    assert "missing producer 'ghost'" in msg


def test_unfed_input_and_cycle_are_reported():
    ir = _toy()
    ir["den"].inputs["mask"] = spec("B", 8)
    ir.connect("dec", "video", "enc", "ids")
    problems = ir.problems()
    assert any("den.mask: no producer" in p for p in problems)
    assert any("cycle" in p for p in problems)


def test_value_range_contract():
    ir = _toy()
    ir["den"].outputs["v"] = spec("B", 4)
    ir["dec"].inputs["z"] = spec("B", 4, value_range=(-3.0, 3.0))
    assert any("value range unbounded" in p for p in ir.problems())


def test_replace_keeps_edges_and_records_provenance():
    ir = _toy()
    new = Component(
        "enc_small",
        "text_encoder",
        nn.Linear(1, 1),
        {},
        inputs={"ids": spec("B", 8, dtype="int64")},
        outputs={"tokens": spec("B", 8, 16)},
    )
    old = ir.replace("enc", new, by_pass="encoder_substitution")
    assert old.name == "enc" and "enc" not in ir and "enc_small" in ir
    ir.verify()
    assert new.provenance[-1].pass_name == "encoder_substitution"


def test_replace_refuses_a_component_that_breaks_the_interface():
    ir = _toy()
    bad = Component("enc_bad", "text_encoder", nn.Linear(1, 1), {}, inputs={}, outputs={"tokens": spec("B", 8, 12)})
    with pytest.raises(VerificationError) as e:
        ir.replace("enc", bad, by_pass="p")
    assert "dim 2 is 12, expected 16" in str(e.value)
    assert "input 'ids'" in str(e.value)
    assert "enc" in ir  # nothing changed
