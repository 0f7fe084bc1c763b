"""A resumed `apply` writes the same bytes as an uninterrupted one (issue 17): the recipe is run once through,
then killed with SIGKILL at three points (inside the first training stage, between passes, inside the second
training stage) and re-run to the end each time. Every file of the output is hashed: all are identical except
the run's own record, which differs only in its named timing and cache fields (`neocompress.core.run_record`),
and no record holds the path of the scratch folder that the run deletes. Slow (several minutes): `make bench`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neocompress.core.run_record import RUN_RECORD_COLUMNS, without_run_record

RECIPE = """model: {{source: builtin:tiny}}
data:
  prompts:
    distillation: {{source: builtin:world, count: 40}}
passes:
  - name: encoder_substitution
    mode: trainable
    student: {{encoder: {{d_model: 32, d_kv: 16, d_ff: 64, num_layers: 2, num_heads: 2}}}}
    heldout: 4
    probe_steps: [1, 1, 1]
    train: {{steps: 240, batch_size: 8, lr: 2.0e-3, warmup_steps: 5}}
  - name: remove_blocks
    indices: [3]
  - name: decoder_swap
    checkpoint: builtin:tiny-taehv
    videos: builtin:world
    count: 16
    heldout: 4
    train: {{steps: 120, batch_size: 2, lr: 1.0e-4, warmup_steps: 5}}
output: {output}
"""
RECORD_FILES = ("neocompress.json", "report.json", "report.md")


def _apply(folder: Path, *, kill_when=None) -> None:
    recipe = folder / "r.yaml"
    recipe.write_text(RECIPE.format(output=folder / "out"))
    cmd = [sys.executable, "-m", "neocompress.cli.main", "apply", str(recipe), "--cache-dir", str(folder / "cache"),
           "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_when is not None:
        deadline = time.time() + 600
        while proc.poll() is None and not kill_when(folder) and time.time() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before the kill point"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (folder / "out").exists()  # nothing half-written where the output goes
        return
    _, err = proc.communicate(timeout=1200)
    assert proc.returncode == 0, err


def _checkpoint_of(pass_dir: str):
    return lambda folder: any((folder / ".out.work").glob(f"{pass_dir}/*/checkpoints/step-*"))


def _cached_passes(count: int):
    return lambda folder: len([p for p in (folder / "cache").glob("*") if (p / "neocompress.json").is_file()]) >= count


KILL_POINTS = {
    "inside the first training stage": _checkpoint_of("00-encoder_substitution"),
    "between passes": _cached_passes(2),
    "inside the second training stage": _checkpoint_of("02-decoder_swap"),
}


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def _record(path: Path):
    if path.suffix == ".json":
        return without_run_record(json.loads(path.read_text()))
    lines = path.read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| # | pass |"))
    drop = [lines[header].split("|").index(f" {c} ") for c in RUN_RECORD_COLUMNS]
    out = []
    for i, line in enumerate(lines):
        if i > header and re.match(r"^\| \d+ \|", line):
            cells = line.split("|")
            line = "|".join(c for j, c in enumerate(cells) if j not in drop)
        out.append(line)
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("uninterrupted")
    _apply(folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_run_killed_and_resumed_writes_the_same_output(tmp_path: Path, uninterrupted: Path, point: str) -> None:
    _apply(tmp_path, kill_when=KILL_POINTS[point])
    _apply(tmp_path)
    ours, theirs = _tree(tmp_path / "out"), _tree(uninterrupted / "out")
    assert ours.keys() == theirs.keys()
    differ = sorted(k for k in ours if ours[k] != theirs[k])
    assert set(differ) <= {*RECORD_FILES, "recipe.resolved.yaml"}, differ  # the recipe names its own output
    resolved = [(f / "out" / "recipe.resolved.yaml").read_text().replace(str(f), "ROOT")
                for f in (tmp_path, uninterrupted)]  # fmt: skip
    assert resolved[0] == resolved[1]
    for name in RECORD_FILES:
        a, b = _record(tmp_path / "out" / name), _record(uninterrupted / "out" / name)
        a, b = json.loads(json.dumps(a).replace(str(tmp_path), "ROOT")), json.loads(
            json.dumps(b).replace(str(uninterrupted), "ROOT"))
        assert a == b, name
    for name in RECORD_FILES:
        assert ".out.work" not in (tmp_path / "out" / name).read_text(), name
