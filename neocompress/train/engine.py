"""The training loop every neocompress training pass uses, on Hugging Face Accelerate.

Why one loop: block-pruning recovery, distillation, encoder/decoder substitution and step distillation all need
the same things done right once: gradient accumulation, mixed precision where the device has it, DDP/FSDP through
`accelerate launch`, a seeded data order, loss logging, and checkpoints that resume *exactly* (same final weights
as an uninterrupted run). A pass supplies only its modules, a `loss_fn(batch, step) -> (loss, parts)` and its
data; everything else lives here.

How the pieces fit:

- The modules are held by one `nn.Module` whose `forward(batch, step)` calls the loss function, and *that* module
  is what `accelerator.prepare` wraps. Under DDP, gradients are only all-reduced when the forward runs through the
  DDP wrapper (it arms the reducer); a loss function calling the raw modules would silently train each process
  alone. Wrapping the loss keeps the `loss_fn(batch, step)` contract and makes the sync automatic.
- The data order is a seeded stream independent of the process layout (`neocompress.train.data`), so one process
  with batch 2B, two with batch B, and one with batch B and accumulation 2 train on the same samples per step.
- Accelerate's scheduler wrapper steps the LR schedule once *per process* per optimizer step (it assumes each
  process saw 1/N of the epoch); our schedule is in optimizer steps, so the scheduler is stepped by hand
  (`step_scheduler_with_optimizer=False`) once per optimizer step, whatever the number of processes.
- `set_seed(seed, device_specific=True)` gives each rank its own global RNG stream (loss noise, dropout) and
  the checkpoint stores each rank's RNG state (`state_io`), so a resumed run draws the same noise.
- Accelerate on CPU ignores `mixed_precision="fp16"` without a word (no autocast, no scaler); we fall back to
  "no" ourselves and say so in the result's notes. bf16 autocast does run on CPU and is kept.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from neocompress.core.atomic import atomic_write_text
from neocompress.core.errors import UserInputError
from neocompress.train import checkpoint as ckpt
from neocompress.train import state_io
from neocompress.train.data import dataset_batches, is_map_dataset, iterable_batches

log = logging.getLogger(__name__)

MixedPrecision = Literal["no", "fp16", "bf16"]
LossParts = Mapping[str, float | torch.Tensor]
LossFn = Callable[[Any, int], "tuple[torch.Tensor, LossParts] | torch.Tensor"]

LOG_FILE = "log.jsonl"
# Keys of a history record that are not loss parts.
RECORD_KEYS = ("step", "loss", "lr", "grad_norm", "time_s")
# Config fields that do not change the trajectory: a resumed run may change them.
_COSMETIC_FIELDS = frozenset({"log_every", "checkpoint_every", "keep_checkpoints", "num_workers"})


class TrainConfig(BaseModel):
    """Hyper-parameters of one training run. Frozen and strict: a typo in a recipe is an error, not a default."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    steps: int = Field(100, ge=1, description="Optimizer steps to train; a resumed run continues up to this count.")
    batch_size: int = Field(
        8,
        ge=1,
        description="Samples per micro-batch per process. One optimizer step sees batch_size x processes x "
        "grad_accum samples (the global batch).",
    )
    grad_accum: int = Field(1, ge=1, description="Micro-batches accumulated per optimizer step (per process).")
    lr: float = Field(1e-4, gt=0, description="Peak learning rate of AdamW.")
    weight_decay: float = Field(
        0.0, ge=0, description="AdamW decoupled weight decay, for tensors of 2+ dimensions (not biases, norm scales)."
    )
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW (beta1, beta2).")
    warmup_steps: int = Field(0, ge=0, description="Steps of linear LR warm-up from lr/warmup_steps to lr.")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="LR after warm-up: constant, or cosine decay to min_lr_ratio x lr at the last step."
    )
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Floor of the cosine schedule as a fraction of lr.")
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="Clip the global gradient norm to this; None disables clipping (the norm is logged)."
    )
    mixed_precision: MixedPrecision = Field(
        "no",
        description="Autocast dtype: 'no', 'fp16' (CUDA only; falls back to 'no' with a note elsewhere) or 'bf16'.",
    )
    seed: int = Field(0, description="Seeds the data order and every process's RNG (offset by its rank).")
    log_every: int = Field(10, ge=1, description="Steps between console log lines (the JSONL log gets every step).")
    checkpoint_every: int = Field(
        0, ge=0, description="Steps between checkpoints; 0 keeps only the final one. Resuming restarts from the last."
    )
    keep_checkpoints: int = Field(2, ge=1, description="Most recent checkpoints kept on disk.")
    ema_decay: float | None = Field(
        None, gt=0, lt=1, description="Keep an EMA of the trained parameters with this decay; it becomes the result."
    )
    ema_warmup: bool = Field(
        True, description="EMA decay ramps as min(decay, (1+n)/(10+n)) so short runs average trained weights."
    )
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes for a map-style dataset.")

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainConfig:
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) exceeds steps ({self.steps})")
        return self


@dataclass
class TrainResult:
    """What a run produced. The modules passed to `train` also hold the final weights (the EMA when configured)."""

    history: list[dict[str, float]]  # one record per optimizer step since step 0 (resumed runs included)
    steps: int  # optimizer steps completed in total
    start_step: int  # where this call started (0, or the checkpoint it resumed from)
    wall_time_s: float  # this call
    total_time_s: float  # all segments of the run, resumed ones included
    state: dict[str, torch.Tensor]  # final trainable weights (EMA when configured), CPU copies
    raw_state: dict[str, torch.Tensor] | None  # the raw (non-EMA) weights when an EMA was used
    mixed_precision: str  # what actually ran
    world_size: int
    global_batch: int
    log_path: Path
    checkpoint: Path | None
    notes: list[str] = field(default_factory=list)

    def losses(self, name: str = "loss") -> list[float]:
        """One named loss part (or the total) per step."""
        return [r[name] for r in self.history if name in r]

    def summary(self) -> dict[str, Any]:
        """A JSON-able digest for reports."""
        first, last = (self.history[0], self.history[-1]) if self.history else ({}, {})
        parts = [k for k in last if k not in RECORD_KEYS]
        return {
            "steps": self.steps,
            "start_step": self.start_step,
            "wall_time_s": round(self.wall_time_s, 3),
            "total_time_s": round(self.total_time_s, 3),
            "mixed_precision": self.mixed_precision,
            "world_size": self.world_size,
            "global_batch": self.global_batch,
            "loss_first": first.get("loss"),
            "loss_last": last.get("loss"),
            "parts_last": {k: last[k] for k in parts},
            "notes": list(self.notes),
        }


class _LossModule(nn.Module):
    """Holds the modules so `accelerator.prepare` wraps them together, and runs the loss as its forward."""

    def __init__(self, modules: Mapping[str, nn.Module], loss_fn: LossFn):
        super().__init__()
        self.mods = nn.ModuleDict(dict(modules))
        object.__setattr__(self, "_loss_fn", loss_fn)  # never registered as a submodule, even if it is one

    def forward(self, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        out = self._loss_fn(batch, step)
        loss, parts = (out, {}) if isinstance(out, torch.Tensor) else out
        return loss, dict(parts)


def resolve_mixed_precision(requested: str, cpu: bool) -> tuple[str, str | None]:
    """The autocast mode this device can run, and a note when it differs from the request."""
    if requested == "fp16" and cpu:
        return "no", "mixed_precision fp16 needs a CUDA device (Accelerate on CPU would silently ignore it): ran fp32"
    if requested == "bf16" and not cpu and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return "no", "mixed_precision bf16 is not supported by this GPU: ran fp32"
    return requested, None


def lr_factor(config: TrainConfig, step: int) -> float:
    """LR multiplier for optimizer step `step` (0-based): linear warm-up, then constant or cosine."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return 1.0
    span = max(1, config.steps - config.warmup_steps - 1)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _fresh_accelerator(**kwargs: Any) -> Any:
    """An Accelerator for this run. Accelerate keeps its state in a process-wide singleton and refuses a second
    Accelerator with another mixed precision in the same process; passes run one after another, so the shared
    AcceleratorState (not the process group, which lives in PartialState) is reset first."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state:
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(**kwargs)


def _check_world(accelerator: Any, expected: int | None) -> None:
    """Refuse a run whose processes would not synchronise (each would train alone, without any error)."""
    launched = os.environ.get("WORLD_SIZE")
    if launched is not None and int(launched) != accelerator.num_processes:
        raise UserInputError(
            f"the launcher started {launched} processes (WORLD_SIZE) but Accelerate runs {accelerator.num_processes}: "
            "the processes would each train alone. On a machine without GPUs use Accelerator(cpu=True) (train(..., "
            "cpu=None) does) with `accelerate launch --multi_gpu --num_processes N` or `torchrun --nproc_per_node N`"
        )
    if expected is not None and expected != accelerator.num_processes:
        raise UserInputError(
            f"expected {expected} training processes, Accelerate runs {accelerator.num_processes}. Note that "
            "`accelerate launch --cpu --num_processes N` starts ONE process; use `--multi_gpu` (gloo on CPU) or "
            "torchrun"
        )


def _select_trainable(wrapper: _LossModule, trainable: Iterable[nn.Parameter] | None) -> dict[nn.Parameter, bool]:
    """Apply the trainable subset to requires_grad; return the previous flags so they can be restored."""
    before = {p: p.requires_grad for p in wrapper.parameters()}
    if trainable is not None:
        chosen = {id(p) for p in trainable}
        inside = {id(p) for p in before}
        if not chosen <= inside:
            raise UserInputError("`trainable` lists parameters that are not inside the modules given to train()")
        for p in before:
            p.requires_grad_(id(p) in chosen)
    return before


def _set_modes(wrapper: _LossModule) -> dict[nn.Module, bool]:
    """Train mode for modules that train, eval mode (no dropout, frozen norm statistics) for wholly frozen ones."""
    before = {m: m.training for m in wrapper.modules()}
    wrapper.train()
    for m in wrapper.modules():
        params = list(m.parameters())
        if params and not any(p.requires_grad for p in params):
            m.eval()
    return before


def _public_name(name: str, single: bool) -> str:
    prefix = "mods.model." if single else "mods."
    return name[len(prefix) :] if name.startswith(prefix) else name


def _check_resumable(saved: dict[str, Any], config: TrainConfig, world: int, where: Path) -> None:
    old, new = saved["config"], config.model_dump(mode="json")
    diffs = [k for k in new if k not in _COSMETIC_FIELDS | {"steps"} and old.get(k) != new[k]]
    if config.lr_schedule == "cosine" and old.get("steps") != config.steps:
        diffs.append("steps (the cosine schedule depends on it)")
    if diffs:
        raise UserInputError(
            f"{where} belongs to a run with other settings ({', '.join(diffs)}); pass resume=False to start over "
            "or use another work directory"
        )
    if saved["world_size"] != world:
        raise UserInputError(
            f"{where} was written by {saved['world_size']} process(es), this run has {world}: resuming needs the same "
            "number (RNG states are per process)"
        )
    if saved["step"] > config.steps:
        raise UserInputError(f"{where} is at step {saved['step']}, past the configured {config.steps} steps")


class _Progress:
    """Rich progress on the main process only; a no-op elsewhere or when disabled (tests, pipes)."""

    def __init__(self, enabled: bool, total: int, start: int):
        self._p: Any = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._p = Progress(
                TextColumn("train"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
            )
            self._task = self._p.add_task("train", total=total, completed=start, info="")
            self._p.start()

    def update(self, step: int, info: str | None) -> None:
        if self._p is not None:
            kw = {"info": info} if info is not None else {}
            self._p.update(self._task, completed=step, **kw)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


def train(
    config: TrainConfig,
    modules: nn.Module | Mapping[str, nn.Module],
    loss_fn: LossFn,
    data: Any,
    work_dir: str | Path,
    *,
    trainable: Iterable[nn.Parameter] | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    resume: bool = True,
    progress: bool = False,
    cpu: bool | None = None,
    world_size: int | None = None,
    find_unused_parameters: bool = False,
) -> TrainResult:
    """Train `modules` with AdamW on `loss_fn` over `data`; resume from `work_dir` if it holds a checkpoint.

    Args:
        config: the hyper-parameters.
        modules: one module or named modules. Trained are their parameters with `requires_grad` (or exactly
            `trainable` when given); the rest stay frozen, and wholly frozen submodules run in eval mode. Modules
            the loss only reads (a teacher) may be passed too (they are then moved to the device) or closed over.
        loss_fn: `loss_fn(batch, step) -> (loss, {name: scalar})` (or just the loss) for one micro-batch on the
            device; `step` is the 0-based optimizer step. Randomness should come from the global torch RNG (seeded
            per rank, checkpointed) or from generators derived from `step`, so resuming draws the same numbers.
        data: a map-style `Dataset` (seeded stream order, batched here with `collate_fn`) or an iterable of ready
            micro-batches (dealt round-robin to the processes; re-iterable sources start over when exhausted).
        work_dir: holds `log.jsonl` and `checkpoints/step-N`.
        resume: continue from the latest checkpoint in `work_dir` (False deletes them and starts over).
        progress: show a rich progress bar on the main process.
        cpu: force Accelerate onto the CPU; None means "when no CUDA device exists" (which is what makes gloo DDP
            work under `accelerate launch --multi_gpu` on a machine without GPUs).
        world_size: the number of processes the caller launched; a mismatch is an error (guards against
            launchers that silently start fewer).
        find_unused_parameters: for losses that leave some trainable parameters without gradient (DDP only).
    """
    from accelerate.utils import DistributedDataParallelKwargs, DistributedType, send_to_device, set_seed

    t0 = time.perf_counter()
    work_dir = Path(work_dir)
    use_cpu = (not torch.cuda.is_available()) if cpu is None else cpu
    precision, note = resolve_mixed_precision(config.mixed_precision, use_cpu)
    notes = [note] if note else []
    acc = _fresh_accelerator(
        cpu=use_cpu,
        mixed_precision=precision,
        gradient_accumulation_steps=config.grad_accum,
        step_scheduler_with_optimizer=False,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)],
    )
    _check_world(acc, world_size)
    world, rank = acc.num_processes, acc.process_index
    global_batch = config.batch_size * world * config.grad_accum
    if precision == "bf16" and use_cpu:
        notes.append("bf16 autocast on CPU")

    single = isinstance(modules, nn.Module)
    wrapper = _LossModule({"model": modules} if single else modules, loss_fn)  # type: ignore[dict-item]
    grad_flags = _select_trainable(wrapper, trainable)
    modes = _set_modes(wrapper)
    log_file = None
    bar = _Progress(False, 0, 0)
    try:
        named = [(n, p) for n, p in wrapper.named_parameters() if p.requires_grad]
        if not named:
            raise UserInputError("nothing to train: no parameter of the given modules requires grad")
        trainable_names = [n for n, _ in named]
        params = [p for _, p in named]
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        # foreach: one fused update over all tensors instead of a Python loop per tensor (torch picks it only on
        # GPUs by default); with the miniature's many small tensors the loop cost 17 s of the demo.
        optimizer = torch.optim.AdamW(
            [g for g in groups if g["params"]], lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay,
            foreach=True,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(config, s))
        model, optimizer, scheduler = acc.prepare(wrapper, optimizer, scheduler)
        # FSDP / DeepSpeed shard the parameters: Accelerate's own model saving and gradient clipping must be
        # used, and the per-rank EMA / trainable-only checkpoint below would only see shards. Not testable on
        # this CPU machine; the DDP and single-process paths are the tested ones.
        sharded = acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM)
        if sharded:
            notes.append(f"{acc.distributed_type}: checkpoints hold the full model (Accelerate's own format)")
            if config.ema_decay:
                raise UserInputError("ema_decay is not supported with FSDP/DeepSpeed yet (the EMA would hold shards)")
        clip_params = list(model.parameters()) if sharded else params

        ema = ckpt.EMA(dict(named), config.ema_decay, config.ema_warmup) if config.ema_decay else None
        if ema is not None and sharded:
            acc.register_for_checkpointing(ema)
        held = {"optimizer": optimizer, "scheduler": scheduler, "scaler": acc.scaler, "ema": ema, "rank": rank}

        def write_state(folder: Path) -> None:  # safetensors + JSON: nothing a resume reads is a pickle
            folder.mkdir(parents=True, exist_ok=True)
            if acc.is_main_process:
                ckpt.save_trained_weights(wrapper, trainable_names, folder / ckpt.TRAINED_WEIGHTS)
            state_io.save_state(folder, main=acc.is_main_process, **held)

        set_seed(config.seed, device_specific=True)  # rank-specific global RNG; a resume overwrites it below
        start, history, prior_time, resumed_from = 0, [], 0.0, None
        if acc.is_main_process:
            work_dir.mkdir(parents=True, exist_ok=True)
            if resume:
                ckpt.remove_stale_temporaries(work_dir)
            else:
                shutil.rmtree(work_dir / ckpt.CHECKPOINTS, ignore_errors=True)
        acc.wait_for_everyone()
        latest = ckpt.latest_checkpoint(work_dir) if resume else None
        if latest is not None:
            saved = ckpt.read_trainer_state(latest)
            _check_resumable(saved, config, world, latest)
            if sharded:
                acc.load_state(str(latest))
            else:
                ckpt.load_trained_weights(wrapper, trainable_names, latest / ckpt.TRAINED_WEIGHTS)
                # A finished run trains nothing more: without an EMA, its weights are all it needs, so a finished
                # stage can be kept (or shipped between machines) as trained.safetensors + trainer_state.json.
                if not (saved["step"] >= config.steps and ema is None and state_io.is_weights_only(latest)):
                    state_io.load_state(latest, **held)
            start, history, prior_time, resumed_from = saved["step"], saved["history"], saved["time_s"], latest
            acc.step = start * config.grad_accum

        log_path = work_dir / LOG_FILE
        if acc.is_main_process:  # the log always equals the history of the checkpoint we continue from
            atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in history))
            log_file = log_path.open("a")

        if is_map_dataset(data):
            batches: Iterator[Any] = dataset_batches(
                data,
                batch_size=config.batch_size,
                world_size=world,
                rank=rank,
                seed=config.seed,
                start_micro=start * config.grad_accum,
                num_workers=config.num_workers,
                collate_fn=collate_fn,
            )
        else:
            batches = iterable_batches(data, world_size=world, rank=rank, start_micro=start * config.grad_accum)

        bar = _Progress(progress and acc.is_main_process, config.steps, start)
        part_names: list[str] | None = None
        max_norm = config.max_grad_norm if config.max_grad_norm is not None else math.inf
        t_loop = time.perf_counter()
        last_ckpt = resumed_from
        for step in range(start, config.steps):
            sums: dict[str, float] = {}
            lr = float(scheduler.get_last_lr()[0])
            grad_norm = math.nan
            for _ in range(config.grad_accum):
                batch = send_to_device(next(batches), acc.device)
                with acc.accumulate(model):
                    loss, parts = model(batch, step)
                    if loss.ndim != 0:
                        raise ValueError(f"loss_fn must return a scalar loss, got shape {tuple(loss.shape)}")
                    if not torch.isfinite(loss.detach()):
                        raise FloatingPointError(f"non-finite loss {loss.item()} at step {step} on rank {rank}")
                    acc.backward(loss)
                    if acc.sync_gradients:
                        grad_norm = float(acc.clip_grad_norm_(clip_params, max_norm))
                        optimizer.step()
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                if part_names is None:
                    part_names = sorted(parts)
                    clash = set(part_names) & set(RECORD_KEYS)
                    if clash:
                        raise ValueError(f"loss part names {sorted(clash)} are reserved by the training log")
                elif sorted(parts) != part_names:
                    raise ValueError(f"loss_fn returned parts {sorted(parts)} at step {step}, {part_names} before")
                sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
                for k in part_names:
                    sums[k] = sums.get(k, 0.0) + float(parts[k])
            if not acc.sync_gradients:  # cannot happen unless Accelerate's accumulation counter drifted
                raise RuntimeError(f"optimizer step {step} ended without a gradient sync")
            if ema is not None:
                ema.update()
            names = ["loss", *(part_names or [])]
            vec = torch.tensor([sums[k] / config.grad_accum for k in names], dtype=torch.float64, device=acc.device)
            vec = acc.reduce(vec, reduction="mean") if world > 1 else vec
            record: dict[str, float] = {"step": step + 1}
            record.update({k: float(v) for k, v in zip(names, vec.tolist(), strict=True)})
            record.update(lr=lr, grad_norm=grad_norm, time_s=prior_time + time.perf_counter() - t0)
            history.append(record)
            if log_file is not None:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
            due = (step + 1) % config.log_every == 0 or step + 1 == config.steps
            info = f"loss {record['loss']:.4g}" if due else None
            bar.update(step + 1, info)
            if due and acc.is_main_process:
                extra = " ".join(f"{k} {record[k]:.4g}" for k in part_names or [])
                log.info("step %d/%d loss %.4g %s lr %.3g", step + 1, config.steps, record["loss"], extra, lr)
            if (config.checkpoint_every and (step + 1) % config.checkpoint_every == 0) or step + 1 == config.steps:
                state = {
                    "step": step + 1,
                    "samples_seen": (step + 1) * global_batch,
                    "micro_batches_per_process": (step + 1) * config.grad_accum,
                    "world_size": world,
                    "global_batch": global_batch,
                    "mixed_precision": precision,
                    "config": config.model_dump(mode="json"),
                    "time_s": record["time_s"],
                    "history": history,
                }
                last_ckpt = ckpt.save_checkpoint(acc, work_dir, step + 1, state, config.keep_checkpoints,
                                                 None if sharded else write_state)  # fmt: skip
        log.debug("training loop took %.2f s", time.perf_counter() - t_loop)

        raw_state = None
        if ema is not None:
            raw_state = {_public_name(n, single): p.detach().to("cpu", copy=True) for n, p in named}
            ema.copy_to_params()
        if sharded:  # gathered on the main process from the shards
            full = acc.get_state_dict(model)
            keep = set(trainable_names)
            final = {_public_name(k, single): v.to("cpu", copy=True) for k, v in full.items() if k in keep}
        else:
            final = {_public_name(n, single): p.detach().to("cpu", copy=True) for n, p in named}
        acc.wait_for_everyone()
        wall = time.perf_counter() - t0
        return TrainResult(
            history=history,
            steps=config.steps,
            start_step=start,
            wall_time_s=wall,
            total_time_s=prior_time + wall,
            state=final,
            raw_state=raw_state,
            mixed_precision=precision,
            world_size=world,
            global_batch=global_batch,
            log_path=log_path,
            checkpoint=last_ckpt,
            notes=notes,
        )
    finally:
        bar.close()
        if log_file is not None:
            log_file.close()
        for p, flag in grad_flags.items():
            p.requires_grad_(flag)
        for m, mode in modes.items():
            m.train(mode)
        acc.free_memory()


def _smooth(values: list[float], weight: float) -> list[float]:
    """Debiased exponential smoothing (TensorBoard's), so the curve starts at the first value, not at zero."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


def plot_losses(history: list[dict[str, float]], path: str | Path, title: str = "training loss") -> Path:
    """A PNG of every named loss part per step: smoothed lines over the faint raw values (log scale if positive).

    Uses a bare Agg `Figure` (no pyplot), so it neither changes nor depends on the process's matplotlib backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from neocompress.core.distributed import is_main

    path = Path(path)
    if not is_main():  # a launched run: rank 0 draws it
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    names = ["loss"] + sorted({k for r in history for k in r if k not in RECORD_KEYS})
    fig = Figure(figsize=(7, 3.6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    weight = min(0.98, max(0.0, 1 - 8 / max(len(history), 1)))
    positive = True
    for i, name in enumerate(names):
        pts = [(r["step"], r[name]) for r in history if name in r and math.isfinite(r[name])]
        if not pts:
            continue
        steps, values = zip(*pts, strict=True)
        positive &= min(values) > 0
        color = f"C{i % 10}"
        ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(steps, _smooth(list(values), weight), color=color, linewidth=1.6, label=name)
    if history and positive:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    if history:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, path)
    return path
