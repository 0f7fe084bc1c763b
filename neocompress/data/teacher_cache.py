"""Teacher outputs for prompt batches, computed once and kept on disk, for distillation on prompts only.

Why: encoder substitution distils a small text path towards a big frozen one (T5-XXL, 4.7B parameters) over many
epochs of the same prompts; running the teacher again every epoch would cost more than the whole student. Each
batch of prompts is keyed by the teacher's identity and the prompts themselves, computed by `compute` on a miss,
and written atomically as safetensors, so an interrupted run keeps what it finished and a second epoch (or a
resumed run) reads instead of recomputing. `hits` and `misses` count what happened. The most recently read
chunks are also kept in memory up to `memory_bytes` (least recently used out first): a small teacher's targets then
come from RAM after the first epoch instead of being re-read from disk every step (seen: 49k reads, 9 s of the
demo), while a big one's stay bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import Tensor

from neocompress.core.atomic import atomic_write
from neocompress.core.hashing import hash_json

Compute = Callable[[list[str]], dict[str, Tensor]]
MEMORY_BYTES = 512 * 2**20


class TeacherCache:
    """`get(prompts)` -> the teacher's named outputs for `prompts`, from disk when this teacher saw them before."""

    def __init__(self, folder: Path, teacher_key: str, compute: Compute, memory_bytes: int = MEMORY_BYTES):
        self.folder = Path(folder)
        self.teacher_key = teacher_key
        self.compute = compute
        self.hits = 0
        self.misses = 0
        self.memory_bytes = memory_bytes
        self._memory: OrderedDict[Path, dict[str, Tensor]] = OrderedDict()

    def path_for(self, prompts: Sequence[str]) -> Path:
        return self.folder / f"{hash_json({'teacher': self.teacher_key, 'prompts': list(prompts)})[:32]}.safetensors"

    def get(self, prompts: Sequence[str]) -> dict[str, Tensor]:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.path_for(prompts)
        if path in self._memory:
            self._memory.move_to_end(path)
            self.hits += 1
            return self._memory[path]
        if path.is_file():
            try:
                out = load_file(str(path))
                self.hits += 1
                return self._remember(path, out)
            except (SafetensorError, OSError):  # a torn or foreign file: recompute and replace it
                path.unlink(missing_ok=True)
        out = self.compute(list(prompts))
        self._write(path, out)
        self.misses += 1
        return self._remember(path, out)

    def _remember(self, path: Path, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        self._memory[path] = tensors
        while self._memory and sum(_nbytes(t) for t in self._memory.values()) > self.memory_bytes:
            self._memory.popitem(last=False)
        return tensors

    @staticmethod
    def _write(path: Path, tensors: dict[str, Tensor]) -> None:
        from safetensors.torch import save_file

        cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        atomic_write(path, lambda tmp: save_file(cpu, str(tmp)))


def _nbytes(tensors: dict[str, Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())
