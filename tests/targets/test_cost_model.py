"""The roofline latency model: calibrated on Neodragon's published rows, it reproduces the DiT stages within 10 %
in sample and 30 % left out, says which rows it cannot count or cannot check, and estimates a lowered graph."""

from __future__ import annotations

import pytest
import torch

from neocompress.targets.hexagon.cost_model import (
    PUBLISHED_MS,
    calibrate,
    estimate_on,
    neodragon_workloads,
    published_comparison,
    workload_of,
)
from neocompress.targets.hexagon.devices import device_profile


@pytest.fixture(scope="module")
def rows():
    return published_comparison()


def test_every_published_row_is_reported_with_its_error(rows) -> None:
    assert {(r["component"], r["device"]) for r in rows} == {
        (name, d) for name in PUBLISHED_MS for d in ("snapdragon-x-elite", "snapdragon-8-elite")}  # fmt: skip
    uncounted = {r["component"] for r in rows if r["estimated_ms"] is None}
    assert uncounted == {"DistilT5", "TAEHV decoder"}  # issue 6 builds them


def test_the_dit_stages_are_reproduced_in_sample_and_left_out(rows) -> None:
    dit = [r for r in rows if r["component"].startswith("DiT")]
    assert len(dit) == 6
    for r in dit:
        assert abs(r["error"]) < 0.10, r
        assert abs(r["leave_one_out_error"]) < 0.30, r
        assert r["bound"] == "compute"


def test_a_row_whose_kind_no_other_row_has_cannot_be_checked_left_out(rows) -> None:
    vae = [r for r in rows if r["component"] == "VAE encoder"]
    assert all(r["leave_one_out_error"] is None for r in vae)  # the only convolution-heavy row


def test_the_dit_workload_counts_attention_growing_faster_than_the_linear_layers() -> None:
    w = {x.name: x for x in neodragon_workloads()}
    low, high = w["DiT+CA low"].flops_by_kind, w["DiT+CA high"].flops_by_kind
    assert high["attention"] / low["attention"] > high["linear"] / low["linear"] > 1  # S^2 against S


def test_a_lowered_graph_gets_an_estimate_per_device() -> None:
    layer = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 64))
    w = workload_of("mlp", layer, (torch.randn(8, 64),), "w8a16")
    assert w.flops == 2 * 8 * (64 * 256 + 256 * 64) and w.weight_bytes == sum(p.numel() for p in layer.parameters())
    fitted = calibrate()
    fast, slow = (estimate_on(w, device_profile(d), fitted) for d in ("snapdragon-8-elite", "snapdragon-8-gen-1"))
    assert 0 < fast["latency_ms"] < slow["latency_ms"]  # an older HTP generation is slower
