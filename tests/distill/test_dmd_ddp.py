"""Pyramidal DMD under DDP: two CPU processes train the student (every second step) and the fake model (every
step) on different halves of each batch and end with identical weights on both ranks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_two_processes_train_student_and_fake_in_sync(tmp_path: Path) -> None:
    from tests.train.test_engine import free_port

    out = tmp_path / "ddp"
    cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           str(REPO / "tests" / "distill" / "ddp_dmd_script.py"), "--out", str(out)]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HOME": str(out / "hf"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt") for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert all(torch.equal(ranks[0]["state"][k], ranks[1]["state"][k]) for k in ranks[0]["state"])
    steps_with_student = [h["step"] for h in ranks[0]["history"] if h["dmd"] == h["dmd"]]  # not NaN
    assert steps_with_student == [2, 4, 6]
    from neocompress.models.family import get_family

    untrained = get_family("pyramid-flow").load("builtin:tiny-random")["denoiser"].module.state_dict()
    for part in ("student", "fake"):  # both trained
        assert any(not torch.equal(ranks[0]["state"][f"{part}.{k}"], v) for k, v in untrained.items())
