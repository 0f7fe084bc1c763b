"""run-bundle on a Hexagon bundle: the compiled parts run, chained, in the HTP simulator and generate what the
torch pipeline does (fp16 on the HTP); a bundle missing components says which."""

from __future__ import annotations

from pathlib import Path

import pytest

from neocompress.core.errors import UserInputError
from neocompress.lowering.pipeline_graphs import lower_pipeline
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.quant.precision import sqnr_db
from neocompress.targets.bundle import read_manifest
from neocompress.targets.hexagon.devices import device_profile
from neocompress.targets.hexagon.lower import lower_hexagon
from neocompress.targets.hexagon.runtime import simulator_factory
from neocompress.targets.onnxruntime.runtime import BundleRuntime


def test_a_bundle_without_every_component_cannot_generate(lowered) -> None:
    out, _ = lowered
    folder = out / "bundles" / "hexagon"
    with pytest.raises(UserInputError, match="lacks components"):
        BundleRuntime(folder, session_factory=simulator_factory(read_manifest(folder), None))


@pytest.mark.slow
def test_the_simulated_hexagon_bundle_generates_what_torch_does(tmp_path: Path) -> None:
    family = PyramidFlowFamily()
    ir = family.load("builtin:tiny-random")
    target = {"name": "hexagon", "max_part_mb": 64, "simulate": False, "aihub": False}
    lower_hexagon(lower_pipeline(ir, {}), ir, tmp_path / "b", target, [device_profile("snapdragon-8-elite")], {})
    manifest = read_manifest(tmp_path / "b")
    runtime = BundleRuntime(tmp_path / "b", session_factory=simulator_factory(manifest, "snapdragon-8-elite"))
    pipe = family.pipeline(ir)
    schedule = pipe.schedule_with(first=(1, 1, 1), later=(1, 1, 1))
    runtime.schedule = schedule
    video = runtime.generate(["a red circle"], seed=2)
    assert sqnr_db(pipe.generate(["a red circle"], seed=2, schedule=schedule), video) > 20
    with pytest.raises(UserInputError, match="compiled for snapdragon-8-elite, not"):
        simulator_factory(manifest, "snapdragon-x-elite")
