"""Install tools/torchvision_cpu_shim.py into this interpreter's site-packages with a `.pth` hook."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

site = Path(sysconfig.get_paths()["purelib"])
shutil.copy(Path(__file__).with_name("torchvision_cpu_shim.py"), site / "_neocompress_torchvision_cpu_shim.py")
(site / "neocompress_torchvision_cpu_shim.pth").write_text(
    "import _neocompress_torchvision_cpu_shim as _s; _s.install()\n"
)
print(f"torchvision CPU shim installed in {site}")
