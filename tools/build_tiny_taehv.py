"""Build `builtin:tiny-taehv`: apply recipes/tiny-taehv-pretrain.yaml and copy its trained TAEHV decoder (config.json
+ weights) into neocompress/assets/miniature-taehv/, with what it measured in training.json.

    .venv/bin/python tools/build_tiny_taehv.py [--force]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "tiny-taehv-pretrain.yaml"
ASSET = ROOT / "neocompress" / "assets" / "miniature-taehv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="replace an existing asset")
    args = parser.parse_args()
    if ASSET.exists() and not args.force:
        print(f"{ASSET} exists; pass --force to rebuild it", file=sys.stderr)
        return 1
    from neocompress.core.apply_run import apply_recipe
    from neocompress.models.pyramid_flow.family import TAEHV_FOLDER
    from neocompress.recipe import load_recipe

    outcome = apply_recipe(load_recipe(RECIPE), force=True, cache_dir=ROOT / ".neocompress-cache")  # resumable
    report = json.loads((outcome.output / "report.json").read_text())["passes"][0]["report"]
    tmp = ASSET.with_name(ASSET.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(outcome.output / TAEHV_FOLDER, tmp)
    record = {"recipe": str(RECIPE.relative_to(ROOT)), "command": "python tools/build_tiny_taehv.py",
              "params": report["params_after"]["vae_decoder"], "psnr_db": report["psnr_db"],
              "train": report["train"], "minibench": {k: v["total"] for k, v in report.get("minibench", {}).items()}}
    (tmp / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(ASSET, ignore_errors=True)
    tmp.rename(ASSET)
    print(f"wrote {ASSET}: {record['params']} parameters, held-out PSNR {report['psnr_db']['after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
