"""Teacher outputs for prompt batches, computed once and kept on disk, for distillation on prompts only.

Why: encoder substitution distils a small text path towards a big frozen one (T5-XXL, 4.7B parameters) over many
epochs of the same prompts; running the teacher again every epoch would cost more than the whole student. Each
batch of prompts is keyed by the teacher's identity and the prompts themselves, computed by `compute` on a miss,
and written atomically as safetensors, so an interrupted run keeps what it finished and a second epoch (or a
resumed run) reads instead of recomputing. `hits` and `misses` count what happened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from torch import Tensor

from neocompress.core.atomic import atomic_write
from neocompress.core.hashing import hash_json

Compute = Callable[[list[str]], dict[str, Tensor]]


class TeacherCache:
    """`get(prompts)` -> the teacher's named outputs for `prompts`, from disk when this teacher saw them before."""

    def __init__(self, folder: Path, teacher_key: str, compute: Compute):
        self.folder = Path(folder)
        self.teacher_key = teacher_key
        self.compute = compute
        self.hits = 0
        self.misses = 0

    def path_for(self, prompts: Sequence[str]) -> Path:
        return self.folder / f"{hash_json({'teacher': self.teacher_key, 'prompts': list(prompts)})[:32]}.safetensors"

    def get(self, prompts: Sequence[str]) -> dict[str, Tensor]:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.path_for(prompts)
        if path.is_file():
            try:
                out = load_file(str(path))
                self.hits += 1
                return out
            except (SafetensorError, OSError):  # a torn or foreign file: recompute and replace it
                path.unlink(missing_ok=True)
        out = self.compute(list(prompts))
        self._write(path, out)
        self.misses += 1
        return out

    @staticmethod
    def _write(path: Path, tensors: dict[str, Tensor]) -> None:
        from safetensors.torch import save_file

        cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        atomic_write(path, lambda tmp: save_file(cpu, str(tmp)))
