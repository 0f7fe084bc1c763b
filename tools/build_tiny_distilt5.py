"""Build `builtin:tiny-distilt5`: a DistilT5 pretrained on `builtin:tiny`'s T5 over general text (the VBench
prompts, never the world's captions), the miniature's stand-in for the public DistilT5 checkpoint Neodragon starts
from. Writes neocompress/assets/miniature-distilt5/ (config.json + model.safetensors) with what it measured in
training.json. Resumes from its work folder.

    .venv/bin/python tools/build_tiny_distilt5.py [--force] [--steps 4000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSET = ROOT / "neocompress" / "assets" / "miniature-distilt5"
WORK = ROOT / ".neocompress-cache" / "tiny-distilt5"
# The demo's student: DistilT5 at the miniature's scale (T5-v1.1 shape, 2 layers of width 32).
STUDENT = {"d_model": 32, "d_kv": 16, "d_ff": 64, "num_layers": 2, "num_heads": 2}
HELDOUT = 32  # general prompts kept out of training
WORLD_PROBE = 256  # world captions it never sees, measured before and after


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="replace an existing asset")
    parser.add_argument("--steps", type=int, default=4000, help="optimizer steps (batch 32)")
    args = parser.parse_args()
    if ASSET.exists() and not args.force:
        print(f"{ASSET} exists; pass --force to rebuild it", file=sys.stderr)
        return 1
    import torch

    from neocompress.core.hashing import hash_module
    from neocompress.data.prompts import read_prompt_source, world_captions
    from neocompress.distill.text_pretrain import PretrainData, pretrain_distil_t5
    from neocompress.models.checkpoint import save_component
    from neocompress.models.pyramid_flow.distil_t5 import DistilT5, distil_t5_base_config
    from neocompress.models.pyramid_flow.family import PyramidFlowFamily
    from neocompress.train.stage import StageConfig

    ir = PyramidFlowFamily().load("builtin:tiny")
    t5 = ir["t5"]
    general = read_prompt_source("builtin:vbench")
    data = PretrainData(general[:-HELDOUT], general[-HELDOUT:], {"world_captions": world_captions()[:WORLD_PROBE]})
    config = {**distil_t5_base_config(int(t5.config["vocab_size"]), int(t5.config.get("pad_token_id", 0)),
                                      int(t5.config.get("eos_token_id", 1))), **STUDENT}  # fmt: skip
    torch.manual_seed(0)
    student = DistilT5(config, int(t5.config["d_model"]))
    stage = StageConfig(steps=args.steps, batch_size=32, lr=2e-3, warmup_steps=50)
    length = int(ir.meta["spec"].text.t5_max_length)
    report = pretrain_distil_t5(t5.module, t5.extras["tokenizer"], length, student, data, stage, WORK)
    tmp = ASSET.with_name(ASSET.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_component(student, tmp, student.checkpoint_config(), "model.safetensors")
    record = {"command": "python tools/build_tiny_distilt5.py", "teacher": "builtin:tiny t5",
              "teacher_hash": hash_module(t5.module), "text": "builtin:vbench (VBench prompts), last 32 held out",
              "params": sum(p.numel() for p in student.parameters()), "teacher_params": t5.num_params(),
              "stage": stage.model_dump(), **report}  # fmt: skip
    (tmp / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(ASSET, ignore_errors=True)
    tmp.rename(ASSET)
    agreement = report["agreement"]
    print(f"wrote {ASSET}: {record['params']} parameters; cosine to T5 before -> after: "
          + ", ".join(f"{k} {v['before']['cosine']:.3f} -> {v['after']['cosine']:.3f}" for k, v in agreement.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
