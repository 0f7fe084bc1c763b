"""The Hexagon bundle: the static op check catches what the HTP does not take, splitting keeps every weight in
exactly one part under the limit and the chained parts compute the whole graph, each `.aimet` folder holds one
ONNX and one encodings file covering every quantized tensor (agreeing with AIMET's own export), and every part
compiled for v79 and v73 with CPU fallback disabled and ran in the simulator close to the AIMET simulation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from neocompress.core.errors import RecipeError
from neocompress.lowering.onnx_export import export_onnx, export_with_encodings, session
from neocompress.lowering.pipeline_graphs import lower_pipeline
from neocompress.models.pyramid_flow.family import PyramidFlowFamily
from neocompress.recipe import load_recipe
from neocompress.targets.hexagon import qnn
from neocompress.targets.hexagon.op_check import check_graph
from neocompress.targets.hexagon.qdq_graph import quantized_tensors, simplify, twin_names


def _hexagon(lowered, folder: str = "bundles/hexagon"):
    out, manifest = lowered
    (hexagon,) = [t for t in manifest["targets"] if t["folder"] == folder]
    return out / hexagon["folder"], hexagon


def test_each_denoiser_stage_is_split_under_the_limit_with_every_weight_in_one_part(lowered) -> None:
    folder, hexagon = _hexagon(lowered)
    limit = hexagon["target"]["max_part_mb"] * 2**20
    for s in range(3):
        parts = hexagon["components"][f"denoiser_stage{s}"]["parts"]
        assert len(parts) >= 2, parts  # the 0.15 MiB limit forces cuts between blocks
        assert all(p["weight_bytes"] <= limit for p in parts)
        owners: dict[str, list[int]] = {}
        for k, p in enumerate(parts):
            model = onnx.load(str(folder / p["file"]))
            weights = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"} & {
                i.name for i in model.graph.initializer}  # fmt: skip
            for w in weights:
                owners.setdefault(w, []).append(k)
        assert owners and all(len(k) == 1 for k in owners.values()), {w: k for w, k in owners.items() if len(k) > 1}
        blocks = [b for p in parts for b in p["blocks"]]
        assert blocks == sorted(set(blocks))  # contiguous runs of blocks, each in one part


def test_the_chained_parts_compute_the_whole_graph(lowered) -> None:
    folder, hexagon = _hexagon(lowered)
    c = hexagon["components"]["denoiser_stage2"]
    whole = session(folder / "graphs" / "denoiser_stage2.onnx", exact=True)
    rng = np.random.default_rng(0)
    feed = {i.name: rng.standard_normal([d for d in i.shape]).astype(np.float32) for i in whole.get_inputs()}
    feed["attention_mask"] = np.zeros_like(feed["attention_mask"])
    expected = whole.run(None, feed)[0]
    values = dict(feed)
    for p in c["parts"]:
        s = session(folder / p["file"], exact=True)
        values.update(zip([o.name for o in s.get_outputs()], s.run(None, {n: values[n] for n in p["inputs"]}),
                          strict=True))  # fmt: skip
    np.testing.assert_array_equal(values["velocity"], expected)  # the re-quantized boundaries lose nothing


@pytest.mark.parametrize("bundle", ["bundles/hexagon", "bundles/hexagon-vae"])
def test_every_aimet_folder_holds_one_graph_and_encodings_for_every_quantized_tensor(lowered, bundle: str) -> None:
    folder, hexagon = _hexagon(lowered, bundle)
    for c in hexagon["components"].values():
        for p in c["parts"]:
            if c["precision"] == "fp32":
                assert "aimet" not in p  # float components compile in fp16 and carry no encodings
                continue
            aimet = folder / p["aimet"]
            files = sorted(f.suffix for f in aimet.iterdir())
            assert files == [".encodings", ".onnx"], (aimet, files)  # exactly what AI Hub takes
            graph = onnx.load(str(next(aimet.glob("*.onnx"))))
            enc = json.loads(next(aimet.glob("*.encodings")).read_text())
            assert enc["version"] == "1.0.0"
            listed = {e["name"] for e in enc["activation_encodings"] + enc["param_encodings"]}
            tensors = {t for n in graph.graph.node for t in [*n.input, *n.output]} | {i.name for i in graph.graph.input}
            assert listed <= tensors, sorted(listed - tensors)[:5]
            qdq = onnx.load(str(folder / p["file"]))
            names = twin_names(qdq)
            covered = {names.get(t, t) for t in quantized_tensors(qdq)}
            assert covered == listed, sorted(covered ^ listed)[:5]
            assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.graph.node)


def test_encodings_read_off_the_qdq_graph_agree_with_aimets_own_export(lowered, tmp_path: Path) -> None:
    from neocompress.targets.hexagon.qdq_graph import encodings_file

    out, _ = lowered
    family = PyramidFlowFamily()
    ir = family.load(str(out))
    g = next(g for g in lower_pipeline(ir, {}) if g.name == "denoiser_stage1")
    _, enc_path = export_with_encodings(g.sim, g.inputs, g.input_names, tmp_path / "d.onnx", g.output_names)
    aimet = {e["name"]: e for e in json.loads(enc_path.read_text())["activation_encodings"]}
    ours = {e["name"]: e for e in encodings_file(onnx.load(str(out / "bundles/hexagon/graphs/denoiser_stage1.onnx")))[
        "activation_encodings"]}  # fmt: skip
    common = set(aimet) & set(ours)
    assert len(common) > 0.8 * len(aimet), (len(common), len(aimet))
    for name in common:
        a, b = aimet[name], ours[name]
        assert (a["bw"], a["offset"]) == (b["bw"], b["offset"]), name
        np.testing.assert_allclose(a["scale"], b["scale"], rtol=1e-6)


@pytest.mark.parametrize(
    ("bundle", "devices"),
    [
        ("bundles/hexagon", {"snapdragon-8-elite", "snapdragon-x-elite"}),
        ("bundles/hexagon-vae", {"snapdragon-8-elite"}),
    ],
)
def test_every_part_compiled_for_its_devices_and_ran_in_the_simulator(lowered, bundle: str, devices: set) -> None:
    folder, hexagon = _hexagon(lowered, bundle)
    assert set(hexagon["compiled"]) == devices
    for device, rows in hexagon["compiled"].items():
        for name, parts in rows.items():
            assert len(parts) == len(hexagon["components"][name]["parts"])
            for r in parts:
                assert (folder / r["context_binary"]).stat().st_size > 0 and (folder / r["context_onnx"]).is_file()
                ctx = onnx.load(str(folder / r["context_onnx"]))
                assert [n.op_type for n in ctx.graph.node] == ["EPContext"]  # the precompiled QNN ONNX form
                # quantized: the HTP computes what AIMET simulated, and is as far from float
                assert r["sqnr_db_simulator_vs_aimet"] > 30, (device, r)
                assert abs(r["sqnr_db_simulator_vs_float"] - r["sqnr_db_aimet_vs_float"]) < 6, (device, r)



def test_the_text_encoders_compile_in_fp16_and_match_float_in_the_simulator(tmp_path: Path) -> None:
    from neocompress.targets.hexagon.devices import device_profile
    from neocompress.targets.hexagon.lower import lower_hexagon

    ir = PyramidFlowFamily().load("builtin:tiny-random")
    target = {"name": "hexagon", "max_part_mb": 1.0, "simulate": True, "components": ["text_encoders"]}
    devices = [device_profile("snapdragon-8-elite"), device_profile("snapdragon-8-gen-2")]
    manifest = lower_hexagon(lower_pipeline(ir, {}), ir, tmp_path / "b", target, devices, {})
    assert set(manifest["components"]) == {"clip_l", "clip_g", "t5"}
    for rows in manifest["compiled"].values():
        for (r,) in rows.values():
            assert r["sqnr_db_simulator_vs_float"] > 35, r  # fp16 on the HTP against fp32: ~48-59 dB measured


class _Rank7(torch.nn.Module):
    """The first stage graph's unpatchify: a rank-7 reshape, which the HTP does not take."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(1, 1, 2, 2, 2, 2, 4).permute(0, 6, 1, 2, 4, 3, 5).reshape(1, 4, 1, 4, 4)


class _Det(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.det(x.reshape(4, 4, 4)).sum() + x


@pytest.mark.parametrize(("module", "found"), [(_Rank7(), "rank 7"), (_Det(), "Det")])
def test_the_static_check_names_a_planted_unsupported_node(module, found: str, tmp_path: Path) -> None:
    x = torch.randn(1, 4, 16)
    path = export_onnx(module, (x,), ["x"], tmp_path / "bad.onnx")
    problems = check_graph(simplify(onnx.load(str(path))))
    assert problems and any(found in str(p) for p in problems), problems
    if found == "Det":  # the compile agrees, and names the node and its op
        with pytest.raises(qnn.HtpCompileError, match=r"does not take these nodes: .*\(Det\)"):
            qnn.compile_graph(path, tmp_path / "ctx" / "bad.onnx", 79, 69, fp16=True)


def test_the_stage_graphs_and_the_vae_decoder_pass_the_static_check(tmp_path: Path) -> None:
    ir = PyramidFlowFamily().load("builtin:tiny-random")
    for g in lower_pipeline(ir, {}):
        if g.kind == "text_encoder":
            continue
        path = export_onnx(g.module, g.inputs, g.input_names, tmp_path / f"{g.name}.onnx", g.output_names)
        assert check_graph(simplify(onnx.load(str(path)))) == [], g.name
    compiled = qnn.compile_graph(tmp_path / "vae_decoder.onnx", tmp_path / "ctx" / "vae.onnx", 79, 69, fp16=True)
    assert compiled.context_binary.stat().st_size > 0  # the decoder compiles whole for the HTP (fp16)


TINY = "model: {source: builtin:tiny-random}\n"


@pytest.mark.parametrize(
    ("head", "targets", "message"),
    [
        (TINY, ["{name: hexagon, device: snapdragon-8-elite, also_compile: [snapdragon-9000]}"],
         "unknown Hexagon device"),
        (TINY, ["{name: onnxruntime, device: snapdragon-8-elite}"], "is a hexagon target option"),
        (TINY, ["{name: hexagon}"], "needs a device"),
        (TINY, ["{name: hexagon, device: snapdragon-8-elite, max_part_mb: 0}"], "max_part_mb"),
        (TINY, ["{name: onnxruntime}", "{name: onnxruntime}"], "two targets write bundles/onnxruntime"),
        ("model: {family: diffusers-sd3, source: builtin:sd3-tiny}\n", ["{name: onnxruntime}"],
         "lowering supports the pyramid-flow family so far"),
    ],
)  # fmt: skip
def test_bad_target_sections_fail_at_validation(tmp_path: Path, head: str, targets: list[str], message: str) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(head + "targets:\n" + "".join(f"  - {t}\n" for t in targets) + f"output: {tmp_path / 'o'}\n")
    with pytest.raises(RecipeError, match=message):
        load_recipe(f)
