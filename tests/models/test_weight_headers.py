"""`validate` and `inspect` check a checkpoint directory's weights from their headers: a truncated, zero-byte,
wrong-shape, wrong-dtype or incomplete file is an exit-2 error naming the component, the key and the shapes,
before anything is loaded, and no tensor is read to find out."""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from neocompress.cli.main import main
from neocompress.core.errors import CheckpointError
from neocompress.models.checkpoint import headers_only, read_state_dict
from neocompress.models.family import get_family

TINY = Path(str(files("neocompress.assets") / "miniature"))
T5_FILE = Path("text_encoder_3") / "model.safetensors"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    out = tmp_path / "tiny"
    shutil.copytree(TINY, out)
    return out


def _rewrite(path: Path, edit) -> None:
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


def _first_weight(tensors: dict) -> str:
    return next(k for k, v in tensors.items() if v.ndim == 2)


CASES = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "file not fully covered"),
    "zero bytes": (lambda p: p.write_bytes(b""), "header too small"),
    "wrong shape": (lambda p: _rewrite(p, lambda t: t.__setitem__(k := _first_weight(t), t[k][:, :-1].clone())),
                    "shape mismatch"),
    "missing key": (lambda p: _rewrite(p, lambda t: t.pop(_first_weight(t))), "missing key"),
    "wrong dtype": (lambda p: _rewrite(p, lambda t: t.__setitem__(k := _first_weight(t), t[k].to(torch.int32))),
                    "dtype mismatch"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_weight_file_fails_validate_and_inspect_with_the_key(source: Path, tmp_path: Path, case: str,
                                                                   capsys) -> None:  # fmt: skip
    damage, expected = CASES[case]
    damage(source / T5_FILE)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {{source: {source}}}\npasses: []\noutput: {tmp_path / 'out'}\n")
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "t5" in err and "r.yaml:1 (model.source)" in err, err
    assert main(["inspect", str(source)]) == 2
    assert expected in capsys.readouterr().err


def test_headers_only_reads_no_tensor(source: Path, monkeypatch) -> None:
    import safetensors

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was read")

    calls = []
    original = safetensors.safe_open

    class Guard:
        def __init__(self, *a, **k):
            self.inner = original(*a, **k)
            calls.append(a[0])

        def keys(self):
            return self.inner.keys()

        def get_slice(self, key):
            return self.inner.get_slice(key)

        get_tensor = refuse

    monkeypatch.setattr("neocompress.models.checkpoint.safe_open", Guard)
    with headers_only():
        state = read_state_dict(source / "text_encoder_3", "t5")
    assert state and all(t.is_meta for t in state.values()) and calls
    get_family("pyramid-flow").check_weights(str(source))  # the whole directory, headers only


def test_a_good_directory_passes_and_builtins_need_no_check(source: Path) -> None:
    family = get_family("pyramid-flow")
    family.check_weights(str(source))
    family.check_weights("builtin:tiny")
    with pytest.raises(CheckpointError, match="denoiser"):
        (source / "diffusion_transformer_384p" / "diffusion_pytorch_model.safetensors").unlink()
        family.check_weights(str(source))


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_a_diffusers_folder_is_checked_from_its_headers(tmp_path: Path, kind: str) -> None:
    family = get_family(f"diffusers-{kind}")
    folder = tmp_path / kind
    family.load(f"builtin:{kind}-tiny")["denoiser"].module.save_pretrained(str(folder))
    family.check_weights(str(folder))
    weights = folder / "diffusion_pytorch_model.safetensors"
    _rewrite(weights, lambda t: t.pop(_first_weight(t)))
    with pytest.raises(CheckpointError, match="missing key"):
        family.check_weights(str(folder))
