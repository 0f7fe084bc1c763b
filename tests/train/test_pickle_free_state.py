"""Training checkpoints hold safetensors and JSON only (issue 17): nothing a resume reads is a pickle, so a
planted pickle in a work directory never runs; a checkpoint in the old Accelerate pickle format is refused with
the command that converts it, and once converted it resumes to the same weights as an uninterrupted run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from neocompress.core.errors import UserInputError
from neocompress.train import state_io
from tests.conftest import hostile_pickle, load_script
from tests.train.ddp_script import make_loss, make_model
from tests.train.test_engine import interrupting, run

CFG = dict(steps=10, batch_size=4, grad_accum=2, warmup_steps=2, lr_schedule="cosine", ema_decay=0.8,
           checkpoint_every=3)  # fmt: skip


def _interrupted(work: Path) -> Path:
    m = make_model(dropout=0.1)
    with pytest.raises(KeyboardInterrupt):
        run(work, model=m, loss=interrupting(make_loss(m, input_noise=0.1), at_step=7), **CFG)
    return work / "checkpoints" / "step-6"


def _resumed(work: Path):
    m = make_model(dropout=0.1, seed=123)
    return run(work, model=m, loss=make_loss(m, input_noise=0.1), **CFG)[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    m = make_model(dropout=0.1)
    return run(tmp_path_factory.mktemp("ref"), model=m, loss=make_loss(m, input_noise=0.1), **CFG)[0]


def test_a_checkpoint_is_safetensors_and_json_only(tmp_path: Path) -> None:
    step = _interrupted(tmp_path)
    suffixes = {p.suffix for p in step.iterdir()}
    assert suffixes == {".safetensors", ".json"}, sorted(p.name for p in step.iterdir())
    assert {"optimizer.safetensors", "scheduler.json", "ema.safetensors", "rng-0.safetensors"} <= {
        p.name for p in step.iterdir()}


def test_a_planted_pickle_never_runs_and_the_resume_is_exact(tmp_path: Path, reference) -> None:
    step = _interrupted(tmp_path)
    marker = tmp_path / "marker"
    for name in ("random_states_0.pkl", "custom_checkpoint_0.pkl", "optimizer.bin"):
        (step / name).write_bytes(hostile_pickle(marker))
    resumed = _resumed(tmp_path)
    assert not marker.exists()
    assert resumed.start_step == 6
    assert all(torch.equal(reference.state[k], resumed.state[k]) for k in reference.state)


def _to_old_format(step: Path) -> None:
    """What neocompress wrote before: Accelerate's torch.save / pickle files instead of state_io's."""
    opt_t, opt_plain = state_io._load_tensors_and_json(step / state_io.OPTIMIZER)
    torch.save(state_io._join_optimizer(opt_t, opt_plain), step / "optimizer.bin")
    torch.save(json.loads((step / state_io.SCHEDULER).read_text()), step / "scheduler.bin")
    rng_t, rng_plain = state_io._load_tensors_and_json(step / "rng-0")
    kind, pos, has_gauss, cached = rng_plain["numpy"]
    version, internal, gauss_next = rng_plain["python"]
    torch.save({"step": 0, "random_state": (version, tuple(internal), gauss_next),
                "numpy_random_seed": (kind, rng_t["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached),
                "torch_manual_seed": rng_t["torch"]}, step / "random_states_0.pkl")  # fmt: skip
    ema_t, ema_plain = state_io._load_tensors_and_json(step / state_io.EMA_FILE)
    torch.save({**ema_plain, "shadow": ema_t}, step / "custom_checkpoint_0.pkl")
    for p in step.iterdir():
        if p.name not in ("trained.safetensors", "trainer_state.json") and p.suffix in (".safetensors", ".json"):
            p.unlink()


def test_an_old_pickle_checkpoint_is_refused_then_converted_and_resumes_exactly(tmp_path: Path, reference) -> None:
    step = _interrupted(tmp_path)
    _to_old_format(step)
    with pytest.raises(UserInputError, match="convert_training_checkpoint.py"):
        _resumed(tmp_path)
    random.seed(99)  # the converted state, not this process's, must decide the resumed run
    load_script("tools/convert_training_checkpoint.py").convert(step)
    assert not list(step.glob("*.pkl")) and not (step / "optimizer.bin").exists()
    resumed = _resumed(tmp_path)
    assert resumed.start_step == 6
    assert all(torch.equal(reference.state[k], resumed.state[k]) for k in reference.state)


def test_a_finished_stage_kept_as_weights_only_reruns_to_the_same_result(tmp_path: Path) -> None:
    m = make_model(dropout=0.1)
    run(tmp_path, model=m, loss=make_loss(m, input_noise=0.1), **{**CFG, "ema_decay": None})
    final = tmp_path / "checkpoints" / "step-10"
    for p in final.iterdir():
        if p.name not in ("trained.safetensors", "trainer_state.json"):
            p.unlink()
    again = _resumed_without_ema(tmp_path)
    assert again.start_step == 10
    mf = make_model(dropout=0.1)
    full = run(tmp_path / "full", model=mf, loss=make_loss(mf, input_noise=0.1), **{**CFG, "ema_decay": None})[0]
    assert all(torch.equal(full.state[k], again.state[k]) for k in full.state)


def _resumed_without_ema(work: Path):
    m = make_model(dropout=0.1, seed=123)
    return run(work, model=m, loss=make_loss(m, input_noise=0.1), **{**CFG, "ema_decay": None})[0]
