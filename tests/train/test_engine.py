"""The training engine: learning, accumulation and DDP equivalence, exact resume, frozen params, EMA, logs.

All on a seeded 8 -> 32 -> 1 MLP regression (tests/train/ddp_script.py), so every run takes well under a second
in process; the two-process tests launch real CPU processes (gloo) through `accelerate launch` / `torchrun`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from neocompress.core.errors import UserInputError
from neocompress.train import StreamBatchSampler, TrainConfig, epoch_permutation, lr_factor, plot_losses, train
from neocompress.train.data import iterable_batches
from tests.train.ddp_script import IndexedRegression, make_loss, make_model

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "train" / "ddp_script.py"
BIN = Path(sys.executable).parent


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def run(work: Path, *, model: nn.Module | None = None, loss=None, data=None, **cfg):
    """One in-process training run of the toy problem; returns (result, model)."""
    defaults = {"steps": 10, "batch_size": 8, "lr": 1e-2, "seed": 0}
    model = model if model is not None else make_model()
    result = train(
        TrainConfig(**{**defaults, **cfg}),
        model,
        loss if loss is not None else make_loss(model),
        data if data is not None else IndexedRegression(),
        work,
    )
    return result, model


def test_loss_falls_on_a_learnable_problem(tmp_path):
    result, _ = run(tmp_path, steps=80, batch_size=16, lr=2e-2, lr_schedule="cosine", warmup_steps=5)
    losses = result.losses()
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert len(losses) == 80 and last < 0.25 * first, (first, last)
    assert result.losses("mse") == pytest.approx(losses) and len(result.losses("mae")) == 80
    assert result.history[0]["lr"] == pytest.approx(2e-2 / 5) and result.history[-1]["lr"] < 1e-3
    assert result.mixed_precision == "no" and result.world_size == 1 and result.global_batch == 16


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    full, _ = run(tmp_path / "full", batch_size=8)
    accum, _ = run(tmp_path / "accum", batch_size=4, grad_accum=2)
    assert max_diff(full.state, accum.state) < 1e-6
    assert accum.losses() == pytest.approx(full.losses(), abs=1e-6)
    assert accum.global_batch == full.global_batch == 8


def interrupting(loss_fn, at_step: int):
    def wrapped(batch, step):
        if step == at_step:
            raise KeyboardInterrupt("simulated interruption")
        return loss_fn(batch, step)

    return wrapped


def test_resume_after_interruption_gives_identical_weights(tmp_path):
    # Stochastic loss (input noise + dropout from the global RNG), warm-up + cosine LR, EMA, accumulation:
    # everything a resume must restore exactly.
    cfg = dict(steps=10, batch_size=4, grad_accum=2, warmup_steps=2, lr_schedule="cosine", ema_decay=0.8)
    cfg |= dict(checkpoint_every=3)
    ref_model = make_model(dropout=0.1)
    ref, _ = run(tmp_path / "ref", model=ref_model, loss=make_loss(ref_model, input_noise=0.1), **cfg)

    work = tmp_path / "interrupted"
    m1 = make_model(dropout=0.1)
    with pytest.raises(KeyboardInterrupt):
        run(work, model=m1, loss=interrupting(make_loss(m1, input_noise=0.1), at_step=7), **cfg)
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["step-3", "step-6"]
    assert len((work / "log.jsonl").read_text().splitlines()) == 7  # steps 1-7 were logged before the stop

    m2 = make_model(dropout=0.1, seed=123)  # the weights come from the checkpoint, not from this init
    resumed, _ = run(work, model=m2, loss=make_loss(m2, input_noise=0.1), **cfg)
    assert resumed.start_step == 6 and not any("resumed" in n for n in resumed.notes)  # start_step says it
    assert all(torch.equal(ref.state[k], resumed.state[k]) for k in ref.state)  # bit-identical
    assert all(torch.equal(ref.raw_state[k], resumed.raw_state[k]) for k in ref.raw_state)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in ref.history]
    lines = [json.loads(s) for s in (work / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 11))  # the log continues the checkpoint, no duplicates
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["step-10", "step-9"]  # keep_checkpoints=2

    # A finished run re-run resumes at its end and trains nothing; a changed trajectory setting is refused.
    again, _ = run(work, **cfg)
    assert again.start_step == 10 and all(torch.equal(ref.state[k], again.state[k]) for k in ref.state)
    with pytest.raises(UserInputError, match="other settings"):
        run(work, **(cfg | {"lr": 1e-3}))


def test_frozen_parameters_and_modules_stay_frozen(tmp_path):
    model = make_model()
    model[0].requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    teacher = make_model(seed=5, dropout=0.5)
    teacher.requires_grad_(False)
    modes = []

    def loss_fn(batch, step):
        modes.append((model.training, teacher.training))
        x, y, _ = batch
        return torch.nn.functional.mse_loss(model(x), teacher(x).detach() + y)

    result = train(TrainConfig(steps=3, batch_size=8, lr=1e-2), {"student": model, "teacher": teacher}, loss_fn,
                   IndexedRegression(), tmp_path / "a")  # fmt: skip
    assert set(result.state) == {"student.3.weight", "student.3.bias"}
    assert torch.equal(model[0].weight, before["0.weight"]) and torch.equal(model[0].bias, before["0.bias"])
    assert not torch.equal(model[3].weight, before["3.weight"])
    assert set(modes) == {(True, False)}  # the wholly frozen teacher ran in eval mode (no dropout)
    assert teacher.training  # and got its own mode back afterwards

    # An explicit `trainable` subset: only it changes, and requires_grad flags are restored afterwards.
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(TrainConfig(steps=3, batch_size=8, lr=1e-2), model, make_loss(model), IndexedRegression(),
                   tmp_path / "b", trainable=[model[0].bias])  # fmt: skip
    assert set(result.state) == {"0.bias"}
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"0.bias"} and all(p.requires_grad for p in model.parameters())


def test_ema_is_the_average_of_the_trained_weights_and_becomes_the_result(tmp_path):
    model = make_model()
    snapshots = []
    inner = make_loss(model)

    def loss_fn(batch, step):  # grad_accum 1: the weights here are those after step - 1
        snapshots.append({k: v.detach().clone() for k, v in model.named_parameters()})
        return inner(batch, step)

    decay = 0.7
    result, _ = run(tmp_path, model=model, loss=loss_fn, steps=8, ema_decay=decay)
    steps_after = snapshots[1:] + [result.raw_state]  # weights after each optimizer step
    shadow = {k: v.clone() for k, v in snapshots[0].items()}
    for n, params in enumerate(steps_after):
        d = min(decay, (1 + n) / (10 + n))
        shadow = {k: d * shadow[k] + (1 - d) * params[k] for k in shadow}
    assert max_diff(result.state, shadow) < 1e-6
    assert max_diff(result.state, result.raw_state) > 1e-3  # the EMA really differs from the raw weights
    assert max_diff(result.state, {k: v.detach() for k, v in model.named_parameters()}) == 0  # and is applied


def test_jsonl_log_and_loss_plot(tmp_path):
    result, _ = run(tmp_path, steps=6)
    records = [json.loads(s) for s in result.log_path.read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 7))
    assert set(records[0]) == {"step", "loss", "mse", "mae", "lr", "grad_norm", "time_s"}
    assert records == json.loads(json.dumps(result.history))
    png = plot_losses(result.history, tmp_path / "plots" / "loss.png", title="toy")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert json.loads(json.dumps(result.summary()))["loss_last"] == result.history[-1]["loss"]


def test_mixed_precision_on_cpu(tmp_path):
    fp16, _ = run(tmp_path / "fp16", steps=2, mixed_precision="fp16")
    assert fp16.mixed_precision == "no" and any("fp16 needs a CUDA device" in n for n in fp16.notes)
    bf16, _ = run(tmp_path / "bf16", steps=2, mixed_precision="bf16")
    assert bf16.mixed_precision == "bf16" and all(torch.isfinite(torch.tensor(bf16.losses())))


def test_config_is_strict_and_checked():
    with pytest.raises(ValidationError):
        TrainConfig(step=3)
    with pytest.raises(ValidationError):
        TrainConfig(steps=3, warmup_steps=4)
    with pytest.raises(ValidationError):
        TrainConfig(mixed_precision="fp8")
    cfg = TrainConfig()
    with pytest.raises(ValidationError):
        cfg.lr = 1.0  # type: ignore[misc]
    assert all(f.description for f in TrainConfig.model_fields.values())
    cos = TrainConfig(steps=11, lr_schedule="cosine", warmup_steps=1, min_lr_ratio=0.1)
    assert lr_factor(cos, 0) == 1.0 and lr_factor(cos, 1) == 1.0 and lr_factor(cos, 10) == pytest.approx(0.1)


def test_data_order_is_seeded_layout_independent_and_resumable():
    n = 20
    perm0, perm1 = epoch_permutation(n, 0, 0), epoch_permutation(n, 0, 1)
    assert sorted(perm0.tolist()) == list(range(n)) and not torch.equal(perm0, perm1)
    assert torch.equal(perm0, epoch_permutation(n, 0, 0)) and not torch.equal(perm0, epoch_permutation(n, 1, 0))
    # One optimizer step of global batch 8, in three layouts (steps straddle the epoch boundary at 20).
    for step in range(6):
        full = StreamBatchSampler(n, 8, 1, 0, seed=3).indices(step)
        ranks = [StreamBatchSampler(n, 4, 2, r, seed=3).indices(step) for r in (0, 1)]
        accum = [StreamBatchSampler(n, 4, 1, 0, seed=3).indices(2 * step + m) for m in (0, 1)]
        assert full == ranks[0] + ranks[1] == accum[0] + accum[1]
    fresh = iter(StreamBatchSampler(n, 4, 2, 1, seed=3))
    later = iter(StreamBatchSampler(n, 4, 2, 1, seed=3, start_micro=5))
    assert [next(fresh) for _ in range(9)][5:] == [next(later) for _ in range(4)]
    # An iterable of ready batches is dealt round-robin, and a resume skips what was consumed.
    items = list(range(10))
    r0 = iterable_batches(items, world_size=2, rank=0, start_micro=0)
    r1 = iterable_batches(items, world_size=2, rank=1, start_micro=3)
    assert [next(r0) for _ in range(6)] == [0, 2, 4, 6, 8, 0] and [next(r1) for _ in range(2)] == [7, 9]


def test_an_iterable_of_batches_trains(tmp_path):
    data = IndexedRegression()
    batches = [(data.x[i : i + 8], data.y[i : i + 8], torch.arange(i, i + 8)) for i in range(0, 64, 8)]
    result, _ = run(tmp_path, data=batches, steps=12)
    assert len(result.history) == 12 and result.losses()[-1] < result.losses()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(launcher: str, out: Path, *script_args: str) -> subprocess.CompletedProcess:
    """Two CPU processes of ddp_script.py, isolated from any user Accelerate config and from other jobs' ports."""
    if launcher == "accelerate":
        cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
        cmd += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]
    else:
        cmd = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port())]
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HOME": str(out / "hf"), "PYTHONPATH": str(REPO)}
    cmd += [str(SCRIPT), "--out", str(out), *script_args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def check_two_process_run(tmp_path: Path, launcher: str) -> None:
    out = tmp_path / launcher
    proc = launch(launcher, out, "--steps", "12", "--batch-size", "4")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt") for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # The processes trained on different halves of every global batch ...
    seen = [{s[0]: s[1:] for s in r["seen"]} for r in ranks]
    assert all(not set(seen[0][s]) & set(seen[1][s]) for s in range(12))
    # ... and synchronised: identical weights on both ...
    assert max_diff(ranks[0]["state"], ranks[1]["state"]) == 0
    # ... equal to one process with the same global batch (2 x 4 = 1 x 8) ...
    model, single_seen = make_model(), []
    single = train(TrainConfig(steps=12, batch_size=8, lr=1e-2, seed=0), model, make_loss(model, single_seen),
                   IndexedRegression(), tmp_path / "single")  # fmt: skip
    assert [s[1:] for s in single_seen] == [seen[0][s] + seen[1][s] for s in range(12)]
    assert max_diff(ranks[0]["state"], single.state) < 1e-6
    assert [r["loss"] for r in ranks[0]["history"]] == pytest.approx(single.losses(), abs=1e-6)
    # ... whereas rank 0 training alone on its own half (what an unsynchronised process does) ends elsewhere.
    data = IndexedRegression()
    alone_batches = [(data.x[seen[0][s]], data.y[seen[0][s]], torch.tensor(seen[0][s])) for s in range(12)]
    alone = make_model()
    alone_result = train(TrainConfig(steps=12, batch_size=4, lr=1e-2, seed=0), alone, make_loss(alone),
                         alone_batches, tmp_path / "alone")  # fmt: skip
    assert max_diff(ranks[0]["state"], alone_result.state) > 1e-3


def test_two_cpu_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    check_two_process_run(tmp_path, "accelerate")


@pytest.mark.slow
def test_two_cpu_processes_under_torchrun(tmp_path):
    check_two_process_run(tmp_path, "torchrun")


@pytest.mark.slow
def test_processes_that_would_not_synchronise_are_refused(tmp_path):
    # Without cpu=True on a machine without GPUs, Accelerate under `--multi_gpu` runs each process alone.
    proc = launch("accelerate", tmp_path / "nosync", "--steps", "2", "--cpu", "false")
    assert proc.returncode != 0 and "would each train alone" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_two_process_resume_is_exact(tmp_path):
    # Per-rank loss noise makes the per-rank RNG checkpoints matter.
    args = ("--steps", "8", "--input-noise", "0.1", "--checkpoint-every", "3")
    assert launch("accelerate", tmp_path / "ref", *args).returncode == 0
    out = tmp_path / "resumed"
    stopped = launch("accelerate", out, *args, "--interrupt-at", "5")
    assert stopped.returncode != 0 and not (out / "rank0.pt").exists()
    assert sorted(p.name for p in (out / "work" / "checkpoints").iterdir()) == ["step-3"]
    assert launch("accelerate", out, *args).returncode == 0
    for r in (0, 1):
        ref, res = (torch.load(d / f"rank{r}.pt") for d in (tmp_path / "ref", out))
        assert all(torch.equal(ref["state"][k], res["state"][k]) for k in ref["state"])
        assert [h["loss"] for h in res["history"]] == [h["loss"] for h in ref["history"]]
