"""Convert a training checkpoint that neocompress wrote in Accelerate's pickle format (optimizer.bin,
scheduler.bin, random_states_<rank>.pkl, custom_checkpoint_0.pkl for the EMA) into the safetensors + JSON form
the engine now reads (`neocompress.train.state_io`), so a run started with an older neocompress resumes.

Only for checkpoints you wrote yourself: it unpickles them (with `weights_only=True` and NumPy's array types
allowed, nothing else). The pickle files are removed once the new files are written.

    .venv/bin/python tools/convert_training_checkpoint.py WORK/checkpoints/step-N [...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _load(path: Path):
    allowed = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype("uint32"))]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


def convert(folder: Path) -> list[str]:
    from neocompress.core.atomic import atomic_write_text
    from neocompress.train import state_io

    written = []
    tensors, plain = state_io._split_optimizer(_load(folder / "optimizer.bin"))
    state_io._save_tensors_and_json(folder / state_io.OPTIMIZER, tensors, plain)
    scheduler = _load(folder / "scheduler.bin")
    atomic_write_text(folder / state_io.SCHEDULER, json.dumps(scheduler))
    written += ["optimizer.safetensors", "optimizer.json", state_io.SCHEDULER]
    for f in sorted(folder.glob("random_states_*.pkl")):
        rank = int(f.stem.rsplit("_", 1)[1])
        rng = _load(f)
        kind, keys, pos, has_gauss, cached = rng["numpy_random_seed"]
        version, internal, gauss_next = rng["random_state"]
        tensors = {"torch": rng["torch_manual_seed"],
                   "numpy": torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64))}  # fmt: skip
        if "torch_cuda_manual_seed" in rng:
            tensors.update({f"cuda.{i}": s for i, s in enumerate(rng["torch_cuda_manual_seed"])})
        state_io._save_tensors_and_json(folder / f"rng-{rank}", tensors, {
            "numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [version, list(internal), gauss_next]})
        written += [f"rng-{rank}.safetensors", f"rng-{rank}.json"]
    ema = folder / "custom_checkpoint_0.pkl"
    if ema.is_file():
        state = _load(ema)
        shadow = state.pop("shadow")
        state_io._save_tensors_and_json(folder / state_io.EMA_FILE, shadow, state)
        written += ["ema.safetensors", "ema.json"]
    scaler = folder / "scaler.pt"
    if scaler.is_file():
        atomic_write_text(folder / state_io.SCALER, json.dumps(_load(scaler)))
        written.append(state_io.SCALER)
    for old in [*folder.glob("*.pkl"), folder / "optimizer.bin", folder / "scheduler.bin", *folder.glob("scaler*.pt")]:
        old.unlink(missing_ok=True)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    for folder in args.folders:
        print(f"{folder}: wrote {', '.join(convert(folder))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
