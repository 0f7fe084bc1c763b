"""Teacher vs substitute, side by side in one process on the same inputs: text encoding (T5 vs DistilT5 +
ContextAdapter) and decoding (the causal VAE decoder vs the TAEHV decoder).

`python benchmarks/substitution_speed.py --output benchmarks/substitution_speed.json`. Two sizes:
- tiny: builtin:tiny's T5 and VAE decoder against the students of recipes/tiny-substitution.yaml;
- full: the released architectures (random weights: speed does not depend on them). T5-XXL does not fit this
  machine's time budget at 24 layers on 2 CPU cores, so it runs with 4 of its 24 blocks and its time is scaled by
  the measured per-block cost (embedding + 4 blocks, and embedding + 2 blocks, give the per-block slope); the
  decoders decode a 9-frame 128x128 clip (2 latent frames of 16x16).
Timings are medians of repeated runs; compare the ratios, not seconds across machines.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch
from _timing import median_seconds  # benchmarks/ is on sys.path when a script in it runs
from transformers import T5Config, T5EncoderModel


@torch.no_grad()
def _text(teacher, student, tokens: int, repeats: int) -> dict[str, float]:
    ids = torch.randint(0, 100, (1, tokens))
    mask = torch.ones_like(ids)
    t = median_seconds(lambda: teacher(input_ids=ids, attention_mask=mask), repeats)
    s = median_seconds(lambda: student(input_ids=ids, attention_mask=mask), repeats)
    return {"teacher_s": t, "substitute_s": s, "speedup": t / s}


@torch.no_grad()
def _decode(teacher, student, latents: torch.Tensor, repeats: int) -> dict[str, float]:
    t = median_seconds(lambda: teacher.decode(latents), repeats)
    s = median_seconds(lambda: student.decode(latents), repeats)
    return {"teacher_s": t, "substitute_s": s, "speedup": t / s}


def tiny(repeats: int) -> dict:
    from neocompress.models.pyramid_flow.distil_t5 import DistilT5, distil_t5_base_config
    from neocompress.models.pyramid_flow.family import PyramidFlowFamily
    from neocompress.models.taehv_decoder import TAEHVDecoder

    ir = PyramidFlowFamily().load("builtin:tiny")
    t5 = ir["t5"].module.eval()
    cfg = distil_t5_base_config(t5.config.vocab_size)
    cfg.update(d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2)
    inner = ir["denoiser"].module.config.inner_dim
    student = DistilT5(cfg, t5.config.d_model, adapter={"out_dim": inner}).eval()
    taehv = TAEHVDecoder(16, (64, 48, 32, 16)).eval()
    return {
        "text": _text(t5, student, ir.meta["spec"].text.t5_max_length, repeats),
        "decode": _decode(ir["vae_decoder"].module.eval(), taehv, torch.randn(1, 16, 2, 8, 8), repeats),
        "params": {"t5": ir["t5"].num_params(), "distil_t5": sum(p.numel() for p in student.parameters()),
                   "vae_decoder": ir["vae_decoder"].num_params(),
                   "taehv": sum(p.numel() for p in taehv.parameters())},
    }


def full(repeats: int) -> dict:
    from neocompress.models.pyramid_flow.distil_t5 import DistilT5, distil_t5_base_config
    from neocompress.models.pyramid_flow.text_config import _t5_xxl_sd3
    from neocompress.models.pyramid_flow.vae import CausalVAEConfig, CausalVAEDecoder
    from neocompress.models.taehv_decoder import TAEHVDecoder

    tokens = 128
    ids = torch.randint(0, 32128, (1, tokens))
    mask = torch.ones_like(ids)
    per_depth = {}
    for layers in (2, 4):
        cfg = copy.deepcopy(_t5_xxl_sd3())
        cfg["num_layers"] = layers
        model = T5EncoderModel(T5Config.from_dict(cfg)).eval()
        with torch.no_grad():
            per_depth[layers] = median_seconds(lambda m=model: m(input_ids=ids, attention_mask=mask), repeats)
        del model
    per_block = (per_depth[4] - per_depth[2]) / 2
    teacher_s = per_depth[4] + 20 * per_block  # the 20 blocks not built
    student = DistilT5(distil_t5_base_config(), 4096, adapter={"out_dim": 1536}).eval()
    with torch.no_grad():
        student_s = median_seconds(lambda: student(input_ids=ids, attention_mask=mask), repeats)
    vae = CausalVAEDecoder(CausalVAEConfig.pyramid_flow_sd3()).eval()
    taehv = TAEHVDecoder().eval()
    return {
        "text": {"teacher_s": teacher_s, "teacher_measured_blocks": 4, "teacher_per_block_s": per_block,
                 "substitute_s": student_s, "speedup": teacher_s / student_s, "tokens": tokens},
        "decode": {**_decode(vae, taehv, torch.randn(1, 16, 2, 16, 16), max(1, repeats // 2)),
                   "clip": "9 frames at 128x128"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="benchmarks/substitution_speed.json")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny-only", action="store_true")
    args = parser.parse_args()
    record = {"tiny": tiny(args.repeats), "threads": torch.get_num_threads()}
    if not args.tiny_only:
        record["full"] = full(max(1, args.repeats // 2))
    Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
