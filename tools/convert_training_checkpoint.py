"""Convert a training checkpoint that neocompress wrote in Accelerate's pickle format (optimizer.bin,
scheduler.bin, random_states_<rank>.pkl, custom_checkpoint_0.pkl for the EMA) into the safetensors + JSON form
the engine now reads (`neocompress.train.state_io`), so a run started with an older neocompress resumes.

Only for checkpoints you wrote yourself: it unpickles them (with `weights_only=True` and NumPy's array types
allowed, nothing else). The pickle files are removed once the new files are written.

    .venv/bin/python tools/convert_training_checkpoint.py WORK/checkpoints/step-N [...]
"""

from __future__ import annotations

import argparse
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
    from neocompress.train import state_io

    scaler = folder / "scaler.pt"
    ema = folder / "custom_checkpoint_0.pkl"
    state_io.save_states(folder, _load(folder / "optimizer.bin"), _load(folder / "scheduler.bin"),
                         _load(scaler) if scaler.is_file() else None, _load(ema) if ema.is_file() else None)
    written = ["optimizer.safetensors", "optimizer.json", state_io.SCHEDULER]
    written += [state_io.SCALER] if scaler.is_file() else []
    written += ["ema.safetensors", "ema.json"] if ema.is_file() else []
    for f in sorted(folder.glob("random_states_*.pkl")):
        rank = int(f.stem.rsplit("_", 1)[1])
        rng = _load(f)
        state_io.save_rng(folder, rank, rng["torch_manual_seed"], list(rng.get("torch_cuda_manual_seed", [])),
                          rng["numpy_random_seed"], rng["random_state"])
        written += [f"rng-{rank}.safetensors", f"rng-{rank}.json"]
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
