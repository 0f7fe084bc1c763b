"""The teacher-output cache: a second epoch over the same prompt batches reads them from disk, another teacher or
other prompts miss, and a torn file is recomputed rather than trusted."""

from __future__ import annotations

from pathlib import Path

import torch

from neocompress.data.teacher_cache import TeacherCache


def _teacher(calls: list[list[str]]):
    def compute(prompts: list[str]) -> dict[str, torch.Tensor]:
        calls.append(prompts)
        return {"states": torch.tensor([[float(len(p))] for p in prompts]), "mask": torch.ones(len(prompts), 1)}

    return compute


def test_the_second_epoch_hits_the_cache(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    cache = TeacherCache(tmp_path, "t5-xxl@abc", _teacher(calls))
    batches = [["a red circle", "a blue square"], ["a grey square"]]
    first = [cache.get(b) for b in batches]
    second = [cache.get(b) for b in batches]
    assert (cache.misses, cache.hits) == (2, 2) and calls == batches  # the teacher ran once per batch
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a["states"], b["states"], rtol=0, atol=0)
    again = TeacherCache(tmp_path, "t5-xxl@abc", _teacher(calls))  # a resumed run: a new process, same files
    again.get(batches[0])
    assert again.hits == 1 and len(calls) == 2


def test_another_teacher_or_other_prompts_miss(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    TeacherCache(tmp_path, "t5-xxl@abc", _teacher(calls)).get(["a red circle"])
    other = TeacherCache(tmp_path, "t5-xxl@def", _teacher(calls))
    other.get(["a red circle"])
    other.get(["a red circle moving left"])
    assert other.misses == 2 and len(calls) == 3


def test_a_torn_file_is_recomputed(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    cache = TeacherCache(tmp_path, "k", _teacher(calls))
    cache.path_for(["x"]).parent.mkdir(parents=True, exist_ok=True)
    cache.path_for(["x"]).write_bytes(b"not a safetensors file")
    out = cache.get(["x"])
    assert cache.misses == 1 and out["states"].tolist() == [[1.0]]
    assert cache.get(["x"])["states"].tolist() == [[1.0]] and cache.hits == 1
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_recent_chunks_come_from_memory_within_its_bound(tmp_path: Path) -> None:
    calls: list[list[str]] = []
    one_chunk = 2 * 4 * 2  # two prompts: "states" [2, 1] and "mask" [2, 1], float32
    cache = TeacherCache(tmp_path, "k", _teacher(calls), memory_bytes=one_chunk)
    first, second = ["a", "b"], ["c", "d"]
    cache.get(first)
    for path in tmp_path.glob("*.safetensors"):
        path.unlink()  # what is in memory no longer needs the disk
    assert cache.get(first)["states"].tolist() == [[1.0], [1.0]] and cache.hits == 1 and len(calls) == 1
    cache.get(second)  # pushes the first chunk out of memory: only one fits
    for path in tmp_path.glob("*.safetensors"):
        path.unlink()
    cache.get(first)
    assert len(calls) == 3 and cache.misses == 3  # recomputed: neither in memory nor on disk
