"""The hexagon target's device profiles at recipe validation: unknown devices are named with the nearest, and a
quantize pass whose precision or Hexagon version the device does not take fails before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from neocompress.core.errors import RecipeError, UserInputError
from neocompress.recipe import load_recipe
from neocompress.targets.hexagon.devices import DEVICES, device_profile

QUANTIZE = "  - name: quantize\n    precision: {precision}\n    htp: {htp}\n"


def _recipe(tmp_path: Path, device: str | None, precision: str = "w8a16", htp: str = "v79") -> Path:
    target = "target: {name: hexagon" + (f", device: {device}" if device else "") + "}\n"
    f = tmp_path / "hexagon.yaml"
    f.write_text(
        "model: {source: builtin:tiny-random}\n"
        "data:\n  prompts:\n    calibration: {source: builtin:world, count: 2}\n"
        "passes:\n" + QUANTIZE.format(precision=precision, htp=htp) + target + f"output: {tmp_path / 'out'}\n"
    )
    return f


def test_the_profiles_carry_the_qnn_numbers() -> None:
    elite = device_profile("snapdragon-8-elite")
    assert (elite.chipset, elite.htp_arch, elite.soc_model) == ("SM8750", 79, 69)
    assert (device_profile("snapdragon-x-elite").htp_arch, device_profile("snapdragon-x-elite").soc_model) == (73, 60)
    assert {"snapdragon-8-elite", "snapdragon-8-gen-3", "snapdragon-8-gen-2", "snapdragon-x-elite"} <= set(DEVICES)
    with pytest.raises(UserInputError, match="Did you mean 'snapdragon-8-elite'"):
        device_profile("snapdragon-8-elit")


def test_a_matching_quantize_pass_validates(tmp_path: Path) -> None:
    recipe = load_recipe(_recipe(tmp_path, "snapdragon-8-gen-2", htp="v73"))
    assert recipe.model.target.device == "snapdragon-8-gen-2"


@pytest.mark.parametrize(
    ("device", "precision", "htp", "message"),
    [
        ("snapdragon-9-ultra", "w8a16", "v79", "unknown Hexagon device 'snapdragon-9-ultra'"),
        (None, "w8a16", "v79", "needs a device"),
        ("snapdragon-8-elite", "w8a16", "v73", "quantize with `htp: v79`"),
        ("snapdragon-8-gen-1", "w4a16", "v69", "does not run w4a16"),
    ],
)
def test_what_the_device_cannot_run_fails_at_validation(
    tmp_path: Path, device: str | None, precision: str, htp: str, message: str
) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe(_recipe(tmp_path, device, precision, htp))
