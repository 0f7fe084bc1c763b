"""No unpickling while neocompress works: a source whose weights are pickle files is refused with the files
named and the command that converts them; a planted pickle that would run code is never opened; the conversion,
run knowingly, gives safetensors that load and the same tensors."""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

import pytest
import torch

from neocompress.cli.main import main
from neocompress.core.errors import CheckpointError
from neocompress.models.checkpoint import read_state_dict, weight_files
from neocompress.models.pickle_weights import convert_folder, safetensors_name
from tests.conftest import hostile_pickle

TINY = Path(str(files("neocompress.assets") / "miniature"))


def _source_with_pickled_t5(tmp: Path) -> Path:
    source = tmp / "tiny"
    shutil.copytree(TINY, source)
    folder = source / "text_encoder_3"
    state = read_state_dict(folder, "t5")
    (folder / "model.safetensors").unlink()
    torch.save({k: v.clone() for k, v in state.items()}, folder / "pytorch_model.bin")
    return source


def test_a_pickle_only_folder_is_refused_naming_the_files_and_the_conversion(tmp_path: Path) -> None:
    folder = tmp_path / "enc"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin.*safetensors only.*convert-weights"):
        weight_files(folder, "t5")


def test_a_planted_pickle_is_never_opened(tmp_path: Path, capsys) -> None:
    source = _source_with_pickled_t5(tmp_path)
    marker = tmp_path / "marker"
    (source / "text_encoder_3" / "pytorch_model.bin").write_bytes(hostile_pickle(marker))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {{source: {source}}}\npasses: []\noutput: {tmp_path / 'out'}\n")
    for argv in (["inspect", str(source)], ["validate", str(recipe)], ["apply", str(recipe)]):
        code = main(argv)
        err = capsys.readouterr().err
        assert not marker.exists(), argv
        assert code == 2 and "convert-weights" in err, (argv, code, err)  # validate reads the headers too


def test_convert_weights_writes_safetensors_that_load_the_same_tensors(tmp_path: Path, capsys) -> None:
    source = _source_with_pickled_t5(tmp_path)
    folder = source / "text_encoder_3"
    expected = torch.load(folder / "pytorch_model.bin", weights_only=True)
    assert main(["convert-weights", str(folder)]) == 0
    assert (folder / "model.safetensors").is_file()
    (folder / "pytorch_model.bin").unlink()
    got = read_state_dict(folder, "t5")
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)
    assert main(["convert-weights", str(folder)]) == 2  # nothing left to convert: said, not a crash
    assert main(["inspect", str(source)]) == 0
    capsys.readouterr()


def test_conversion_refuses_to_overwrite_and_converts_an_index(tmp_path: Path) -> None:
    folder = tmp_path / "sharded"
    folder.mkdir()
    torch.save({"a": torch.ones(2)}, folder / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": torch.zeros(3)}, folder / "pytorch_model-00002-of-00002.bin")
    (folder / "pytorch_model.bin.index.json").write_text(
        '{"weight_map": {"a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}}')
    convert_folder(folder)
    assert sorted(p.name for p in weight_files(folder, "x")) == ["model-00001-of-00002.safetensors",
                                                                  "model-00002-of-00002.safetensors"]
    assert set(read_state_dict(folder, "x")) == {"a", "b"}
    with pytest.raises(CheckpointError, match="exists; pass --force"):
        convert_folder(folder)
    assert safetensors_name("diffusion_pytorch_model.bin") == "diffusion_pytorch_model.safetensors"
