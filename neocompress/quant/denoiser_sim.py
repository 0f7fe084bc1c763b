"""The Pyramid-Flow denoiser under AIMET's QuantizationSimModel, one simulated graph per pyramid stage.

Why per stage: the sampler calls the denoiser at three pyramid stages, and each stage is one static NPU graph
sized for the longest history, shorter histories padded at the front (see `neocompress.lowering.static_denoiser`).
Calibrating each graph on the activations of its own stage's calls is the paper's per-stage calibration: the
stages see different noise levels and token counts, and one shared set of encodings would clip one stage to fit
another. The calls are captured by a forward hook while the pipeline samples the calibration prompts with its
real schedule; a graph's slots are those of the longest history its stage was called with.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from neocompress.core.errors import UserInputError
from neocompress.lowering.static_denoiser import StaticStageDenoiser
from neocompress.quant.precision import Precision, htp_config, sqnr_db

StageKey = tuple[int, ...]  # (C, T, H, W) of the current clip: each pyramid stage has its own resolution


def stage_key(sample: Sequence[Tensor]) -> StageKey:
    return tuple(int(s) for s in sample[-1].shape[1:])


@dataclass
class CapturedCalls:
    """Denoiser inputs (and float outputs) per stage (keyed by the current clip's shape), with the stage index."""

    calls: dict[StageKey, list[tuple[tuple, Tensor]]] = field(default_factory=dict)
    stage_of: dict[StageKey, int] = field(default_factory=dict)
    latents: list[Tensor] = field(default_factory=list)  # what each sampled batch produced, in order

    def slot_shapes(self, key: StageKey) -> list[tuple[int, ...]]:
        """(C, T, H, W) of each clip of the stage's longest-history call: the stage graph's slots."""
        longest = max(self.calls[key], key=lambda c: len(c[0]))[0]
        return [tuple(int(s) for s in c.shape[1:]) for c in longest]


@torch.no_grad()
def capture_calls(
    pipeline: Any,
    prompts: Sequence[str],
    *,
    samples: int,
    seed: int,
    schedule: Any = None,
    batch: int = 4,
    **video: Any,
) -> CapturedCalls:
    """Sample every (prompt, sample) with the pipeline (at the `video` size given, else the model's) and keep
    each denoiser call's inputs and output."""
    den = pipeline.denoiser
    out = CapturedCalls()
    stage = {"now": 0}

    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Tensor) -> None:
        key = stage_key(args[0])
        out.calls.setdefault(key, []).append(([c.detach() for c in args[0]], *[a.detach() for a in args[1:]], output))
        out.stage_of[key] = stage["now"]

    def on_call(unit: int, s: int, step: int) -> None:
        stage["now"] = s

    jobs = [p for _ in range(samples) for p in prompts]
    handle = den.register_forward_hook(hook, with_kwargs=True)
    try:
        for start in range(0, len(jobs), batch):
            out.latents.append(
                pipeline.sample_latents(
                    jobs[start : start + batch], seed=seed + start, schedule=schedule, progress=on_call, **video
                )
            )
    finally:
        handle.remove()
    return out


def _graph_inputs(graph: StaticStageDenoiser, call: tuple) -> tuple[Tensor, ...]:
    return graph.pack(*call[:5])


@dataclass
class SimulatedGraph:
    key: StageKey
    stage: int
    sim: Any  # aimet_torch QuantizationSimModel
    graph: StaticStageDenoiser
    calls: int
    sqnr_db: float  # on the calls it was calibrated on
    seconds: float
    heldout_sqnr_db: float | None = None  # on calls of prompts it never saw: the figure to trust
    heldout_calls: int = 0

    def describe(self) -> dict[str, Any]:
        return {
            "clips": [list(s[1:]) for s in self.graph.clip_shapes],
            "stage": self.stage,
            "batch": self.graph.clip_shapes[-1][0],
            "text_len": self.graph.text_len,
            "calibration_calls": self.calls,
            "sqnr_db": self.sqnr_db,
            "heldout_sqnr_db": self.heldout_sqnr_db,
            "heldout_calls": self.heldout_calls,
            "seconds": self.seconds,
        }


def quiet_aimet() -> None:
    """AIMET logs every prepared node at INFO to stdout, which would bury a command's output (and its --json), and
    warns about its own internals (tensor copies, a deprecated alias) once per graph: none of it is actionable."""
    import logging
    import warnings

    from aimet_torch.common.utils import AimetLogger

    AimetLogger.set_level_for_all_areas(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"aimet_torch\..*")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"aimet_torch\..*")


def _new_sim(graph: StaticStageDenoiser, dummy: tuple, precision: Precision, htp: str, scheme: str) -> Any:
    quiet_aimet()
    from aimet_torch.common.defs import QuantScheme
    from aimet_torch.model_preparer import prepare_model
    from aimet_torch.quantsim import QuantizationSimModel

    schemes = {"tf": QuantScheme.post_training_tf, "tf_enhanced": QuantScheme.post_training_tf_enhanced}
    if scheme not in schemes:
        raise UserInputError(f"unknown quant scheme '{scheme}'; known: {', '.join(schemes)}")
    prepared = prepare_model(graph)
    return prepared, QuantizationSimModel(
        prepared,
        dummy_input=dummy,
        quant_scheme=schemes[scheme],
        default_param_bw=precision.param_bw,
        default_output_bw=precision.output_bw,
        config_file=htp_config(htp),
    )


def simulate_denoiser(
    denoiser: nn.Module,
    captured: CapturedCalls,
    precision: Precision,
    htp: str,
    *,
    scheme: str = "tf",
    max_calls: int = 32,
    heldout: CapturedCalls | None = None,
) -> list[SimulatedGraph]:
    """A QuantSim per stage, encodings computed on that stage's captured calls (at most `max_calls`, spread over
    the run), and its SQNR against the float denoiser on the same calls and on the `heldout` calls of that stage
    (prompts the calibration never saw; calibration-call SQNR flatters a graph whose ranges are too tight)."""
    out = []
    for key, calls in captured.calls.items():
        t0 = time.perf_counter()
        chosen = _spread(calls, max_calls)
        text_len = chosen[0][1].shape[1]
        batch = chosen[0][0][0].shape[0]
        graph = StaticStageDenoiser(denoiser, [(batch, *k) for k in captured.slot_shapes(key)], text_len).eval()
        inputs = [_graph_inputs(graph, c) for c in chosen]
        prepared, sim = _new_sim(graph, inputs[0], precision, htp, scheme)
        with torch.no_grad():  # the preparer must not change the function (it once dropped an attn_mask)
            drift = float((prepared(*inputs[0]) - chosen[0][-1]).abs().max())
        if drift > 1e-3:
            raise RuntimeError(f"AIMET's prepared denoiser graph {key} differs from the float one by {drift:.3g}")

        def forward(model: nn.Module, _: Any, inputs: list = inputs) -> None:
            with torch.no_grad():
                for x in inputs:
                    model(*x)

        sim.compute_encodings(forward, None)
        with torch.no_grad():
            ref = torch.cat([c[-1] for c in chosen])
            got = torch.cat([sim.model(*x) for x in inputs])
        held = _spread((heldout.calls.get(key, []) if heldout else []), max_calls)
        held_sqnr = None
        if held:
            with torch.no_grad():
                held_got = torch.cat([sim.model(*_graph_inputs(graph, c)) for c in held])
            held_sqnr = sqnr_db(torch.cat([c[-1] for c in held]), held_got)
        graph.restore_backend()
        out.append(
            SimulatedGraph(key, captured.stage_of[key], sim, graph, len(chosen), sqnr_db(ref, got),
                           time.perf_counter() - t0, held_sqnr, len(held))
        )  # fmt: skip
    return out


def _spread(calls: list, n: int) -> list:
    return calls[:: max(1, len(calls) // n)][:n]


class SimulatedDenoiser(nn.Module):
    """The denoiser as the pipeline calls it, answered by the simulated graph of the call's stage."""

    def __init__(self, float_denoiser: nn.Module, graphs: Sequence[SimulatedGraph]):
        super().__init__()
        self.float_denoiser = float_denoiser
        self.config = float_denoiser.config
        self.graphs = {g.key: g for g in graphs}

    def forward(self, sample, tokens, text_mask, pooled, timestep):  # noqa: ANN001 - the denoiser's signature
        key = stage_key(sample)
        g = self.graphs.get(key)
        if g is None:
            known = ", ".join(str(k) for k in self.graphs)
            raise UserInputError(f"no quantized graph for a current clip of shape {key}; calibrated: {known}")
        problem = g.graph.fits(sample)
        if problem is not None:
            raise UserInputError(f"the quantized stage graph {key} was calibrated for shorter histories: {problem}")
        # the traced graph has the matmul attention baked in: the float denoiser's backend does not matter
        return g.sim.model(*_graph_inputs(g.graph, (sample, tokens, text_mask, pooled, timestep)))


ENCODINGS_INDEX = "graphs.json"


def save_encodings(graphs: Sequence[SimulatedGraph], folder: Path, settings: dict[str, Any]) -> None:
    """Each graph's quantizer state (AIMET's `quantizer_state_dict`: ranges, bit widths, enabled flags; lossless,
    unlike a JSON round trip) as safetensors, plus an index (slot shapes, stage, settings) that `load_simulated`
    reads."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, g in enumerate(graphs):
        name = f"graph_{i:02d}.safetensors"
        save_file(_flat_state(g.sim.quantizer_state_dict()), str(folder / name))
        entries.append({**g.describe(), "quantizers": name})
    (folder / ENCODINGS_INDEX).write_text(json.dumps({"settings": settings, "graphs": entries}, indent=1))


def load_simulated(denoiser: nn.Module, folder: Path) -> tuple[list[SimulatedGraph], dict[str, Any]]:
    """Rebuild each graph's QuantSim from the float denoiser and its saved quantizer state (no calibration)."""
    from safetensors.torch import load_file

    from neocompress.quant.precision import precision

    index = json.loads((folder / ENCODINGS_INDEX).read_text())
    settings = index["settings"]
    graphs = []
    for e in index["graphs"]:
        t0 = time.perf_counter()
        shapes = [(e["batch"], *k) for k in e["clips"]]
        graph = StaticStageDenoiser(denoiser, shapes, e["text_len"]).eval()
        _, sim = _new_sim(
            graph, graph.example_inputs(), precision(settings["precision"]), settings["htp"], settings["scheme"]
        )
        missing = _load_quantizers(sim, _nested_state(load_file(str(folder / e["quantizers"]))))
        if missing:
            raise UserInputError(f"{folder / e['quantizers']}: no saved state for quantizers {missing[:5]}")
        graph.restore_backend()
        graphs.append(
            SimulatedGraph(tuple(e["clips"][-1]), e["stage"], sim, graph, e["calibration_calls"], e["sqnr_db"],
                           time.perf_counter() - t0, e.get("heldout_sqnr_db"), e.get("heldout_calls", 0))
        )  # fmt: skip
    return graphs, settings


_SEP = "/"  # joins a quantizer's `_extra_state` key to its fields (a '/' never occurs in a module path)


def _flat_state(state: dict[str, Any]) -> dict[str, Tensor]:
    """A quantizer state dict as plain tensors: each `_extra_state` dict of tensors becomes one key per field."""
    out = {}
    for k, v in state.items():
        items = v.items() if isinstance(v, dict) else [(None, v)]
        for field_name, t in items:
            out[k if field_name is None else f"{k}{_SEP}{field_name}"] = torch.as_tensor(t).detach().contiguous()
    return out


def _nested_state(flat: dict[str, Tensor]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in flat.items():
        if _SEP in k:
            key, field_name = k.split(_SEP, 1)
            out.setdefault(key, {})[field_name] = v
        else:
            out[k] = v
    return out


def _load_quantizers(sim: Any, state: dict[str, Tensor]) -> list[str]:
    """Load a `quantizer_state_dict` into a fresh sim of the same graph; the quantizer keys it lacked."""
    expected = set(sim.quantizer_state_dict())
    sim.model.load_state_dict(state, strict=False)
    return sorted(expected - set(state))
