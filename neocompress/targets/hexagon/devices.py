"""Device profiles of the Hexagon target: which NPU a recipe compiles for, and what that NPU takes.

Sources of the constants:
- Chipsets, HTP architectures and QNN `soc_model` numbers are from the QNN SDK's public `QnnTypes.h` enum
  (SM8450 = 36, SM8550 = 43, SM8650 = 57, SC8380XP = 60, SM8750 = 69). The `htp_arch` / `soc_model` pair is what
  onnxruntime-qnn's HTP backend compiles for.
- AI Hub device names are the service's own names for a reference device with that chipset.
- Precisions are what neocompress's `quantize` pass simulates with AIMET's `htp_*` config for that architecture.
  v73 and newer run int8/int16 activations, int4/int8 weights and fp16; v69 (8 Gen 1) has no int4 weights.
- Memory is the device's RAM as sold. A whole pipeline (weights plus activations) must stay well below it:
  Neodragon's pipeline peaked at 3.5 GB on the 8 Elite. `memory_budget_gb` is the share a recipe may plan for
  by default, and a recipe's target section may lower it.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass

from neocompress.core.errors import UserInputError


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    marketing_name: str
    chipset: str
    htp: str  # Hexagon architecture, e.g. "v79"
    soc_model: int  # QNN SoC id for the HTP backend
    hub_device: str  # AI Hub device name
    precisions: tuple[str, ...]
    ram_gb: float
    memory_budget_gb: float

    @property
    def htp_arch(self) -> int:
        return int(self.htp.lstrip("v"))

    def to_dict(self) -> dict:
        return asdict(self)


_ALL = ("w8a16", "w8a8", "w4a16", "fp16")

DEVICES: dict[str, DeviceProfile] = {
    d.name: d
    for d in (
        DeviceProfile(
            "snapdragon-8-elite", "Snapdragon 8 Elite", "SM8750", "v79", 69, "Snapdragon 8 Elite QRD", _ALL, 12, 4
        ),
        DeviceProfile(
            "snapdragon-8-gen-3", "Snapdragon 8 Gen 3", "SM8650", "v75", 57, "Samsung Galaxy S24 (Family)", _ALL, 8, 3
        ),
        DeviceProfile(
            "snapdragon-8-gen-2", "Snapdragon 8 Gen 2", "SM8550", "v73", 43, "Samsung Galaxy S23 (Family)", _ALL, 8, 3
        ),
        DeviceProfile(  # v69: no int4 weights (they arrived with v73)
            "snapdragon-8-gen-1",
            "Snapdragon 8 Gen 1",
            "SM8450",
            "v69",
            36,
            "Samsung Galaxy S22 Ultra 5G",
            ("w8a16", "w8a8", "fp16"),
            8,
            3,
        ),
        DeviceProfile(
            "snapdragon-x-elite", "Snapdragon X Elite", "SC8380XP", "v73", 60, "Snapdragon X Elite CRD", _ALL, 32, 8
        ),
    )
}


def device_profile(name: str) -> DeviceProfile:
    """The profile of `name`, or an error naming the closest known device and all of them."""
    if name not in DEVICES:
        near = difflib.get_close_matches(name, list(DEVICES), n=1)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        raise UserInputError(f"unknown Hexagon device '{name}'.{hint} Known: {', '.join(DEVICES)}")
    return DEVICES[name]


def quantize_problems(profile: DeviceProfile, precision: str, htp: str) -> dict[str, str]:
    """What a `quantize` pass asks that the device does not take, by config key."""
    out = {}
    if precision not in profile.precisions:
        out["precision"] = (
            f"{profile.marketing_name} ({profile.htp}) does not run {precision}; "
            f"it takes {', '.join(profile.precisions)}"
        )
    if htp != profile.htp:
        out["htp"] = (
            f"the target is {profile.marketing_name}, Hexagon {profile.htp}: quantize with `htp: {profile.htp}`, "
            f"not {htp} (the simulation must use that NPU's AIMET config)"
        )
    return out
