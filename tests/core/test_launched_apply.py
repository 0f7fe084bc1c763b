"""`neocompress apply` under `accelerate launch` with two CPU processes (gloo): the recipe runs in both, importance
is measured on half the prompts each and summed, recovery trains with DDP, and rank 0 alone writes the cache
entry and the output, which equal a single-process run's importance and load as a normal output."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

RECIPE = """model: {{family: diffusers-sd3, source: builtin:sd3-tiny}}
data:
  prompts:
    calibration: {{source: builtin:world, count: 8}}
passes:
  - name: block_prune
    calibration: {{prompts: calibration, batch: 2, first: [2]}}
    remove: 2
    recovery:
      data: {{samples: 8, heldout: 2}}
      stage1: {{steps: 4, batch_size: 2, warmup_steps: 1}}
      stage2: {{steps: 4, batch_size: 2, warmup_steps: 1}}
output: {out}
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _apply(tmp_path: Path, name: str, processes: int) -> Path:
    out = tmp_path / name
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(RECIPE.format(out=out))
    cli = ["-m", "neocompress.cli.main", "apply", str(recipe), "--cache-dir", str(tmp_path / f"cache-{name}")]
    if processes == 1:
        cmd = [sys.executable, *cli]
    else:
        cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", str(processes)]
        cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        cmd += ["--main_process_port", str(_port()), *cli]
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.mark.slow  # minutes on 2 cores: runs in `make bench`
def test_two_processes_write_one_output_equal_in_importance_to_one(tmp_path: Path) -> None:
    two = _apply(tmp_path, "two", 2)
    one = _apply(tmp_path, "one", 1)
    reports = [json.loads((d / "report.json").read_text())["passes"][0]["report"] for d in (two, one)]
    scores = [r["importance"]["scores"] for r in reports]
    for stream in ("visual", "text"):  # null: the context_pre_only last block has no text output
        a, b = ([math.nan if v is None else v for v in s[stream]] for s in scores)
        assert a == pytest.approx(b, rel=1e-9, nan_ok=True)
    assert reports[0]["removed"] == reports[1]["removed"]
    assert reports[0]["recovery"]["stages"]["stage2"]["train"]["world_size"] == 2
    # one output, one cache entry, no leftovers of a second writer
    assert not list(tmp_path.glob(".two.tmp-*")) and (two / "neocompress.json").is_file()
    entries = [p for p in (tmp_path / "cache-two").iterdir() if p.name != "importance"]
    assert len(entries) == 1 and not list((tmp_path / "cache-two").glob(".*tmp*"))
    from diffusers import SD3Transformer2DModel

    assert SD3Transformer2DModel.from_pretrained(str(two)).config.num_layers == 4
