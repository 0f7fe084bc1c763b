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
from neocompress.quant.aimet_sim import flat_state, load_quantizers, nested_state, new_sim, spread
from neocompress.quant.precision import Precision, sqnr_db

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
    float_layers: list[str] = field(default_factory=list)  # kept float (fp16 on the HTP)
    seq_mse_layers: int = 0  # layers whose weight encodings Sequential MSE chose

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
            "float_layers": self.float_layers,
            "seq_mse_layers": self.seq_mse_layers,
            "seconds": self.seconds,
        }


@dataclass
class _Built:
    """A stage graph's QuantSim before calibration, with the calls it will be calibrated on."""

    key: StageKey
    chosen: list  # the captured calls
    graph: StaticStageDenoiser
    inputs: list[tuple[Tensor, ...]]  # those calls packed as the graph's inputs
    sim: Any
    kept: list[str]  # layers kept float
    seconds: float


PREFIX = "denoiser."  # what the stage graph puts before the denoiser's own module names


def simulate_denoiser(
    denoiser: nn.Module,
    captured: CapturedCalls,
    precision: Precision,
    htp: str,
    *,
    scheme: str = "tf",
    max_calls: int = 32,
    heldout: CapturedCalls | None = None,
    float_layers: Sequence[str] = (),
    seq_mse: bool = False,
) -> list[SimulatedGraph]:
    """A QuantSim per stage, encodings computed on that stage's captured calls (at most `max_calls`, spread over
    the run), and its SQNR against the float denoiser on the same calls and on the `heldout` calls of that stage
    (prompts the calibration never saw; calibration-call SQNR flatters a graph whose ranges are too tight).
    `float_layers` keep float weights; `seq_mse` chooses the (4-bit) weight encodings by Sequential MSE, pooled
    over the stages (see `neocompress.quant.seq_mse`)."""
    built = []
    for key, calls in captured.calls.items():
        t0 = time.perf_counter()
        chosen = spread(calls, max_calls)
        text_len = chosen[0][1].shape[1]
        batch = chosen[0][0][0].shape[0]
        graph = StaticStageDenoiser(denoiser, [(batch, *k) for k in captured.slot_shapes(key)], text_len).eval()
        inputs = [_graph_inputs(graph, c) for c in chosen]
        prepared, sim, kept = new_sim(graph, inputs[0], precision, htp, scheme, float_layers, PREFIX)
        with torch.no_grad():  # the preparer must not change the function (it once dropped an attn_mask)
            drift = float((prepared(*inputs[0]) - chosen[0][-1]).abs().max())
        if drift > 1e-3:
            raise RuntimeError(f"AIMET's prepared denoiser graph {key} differs from the float one by {drift:.3g}")
        built.append(_Built(key, chosen, graph, inputs, sim, kept, time.perf_counter() - t0))
    for b in reversed(built):  # each graph saved the backend the one before it set: undo in reverse
        b.graph.restore_backend()  # (the traced graphs have the matmul attention baked in)
    searched: list[str] = []
    if seq_mse:
        from neocompress.quant.seq_mse import pooled_seq_mse

        t0 = time.perf_counter()
        searched = pooled_seq_mse([b.sim for b in built], [b.inputs for b in built], PREFIX)
        share = (time.perf_counter() - t0) / len(built)
        for b in built:
            b.seconds += share
    out = []
    for b in built:
        t0 = time.perf_counter()

        def forward(model: nn.Module, _: Any, inputs: list = b.inputs) -> None:
            with torch.no_grad():
                for x in inputs:
                    model(*x)

        b.sim.compute_encodings(forward, None)
        with torch.no_grad():
            ref = torch.cat([c[-1] for c in b.chosen])
            got = torch.cat([b.sim.model(*x) for x in b.inputs])
        held = spread((heldout.calls.get(b.key, []) if heldout else []), max_calls)
        held_sqnr = None
        if held:
            with torch.no_grad():
                held_got = torch.cat([b.sim.model(*_graph_inputs(b.graph, c)) for c in held])
            held_sqnr = sqnr_db(torch.cat([c[-1] for c in held]), held_got)
        out.append(
            SimulatedGraph(b.key, captured.stage_of[b.key], b.sim, b.graph, len(b.chosen), sqnr_db(ref, got),
                           b.seconds + time.perf_counter() - t0, held_sqnr, len(held), b.kept, len(searched))
        )  # fmt: skip
    return out


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
        save_file(flat_state(g.sim.quantizer_state_dict()), str(folder / name))
        # no timing in the saved index: the output's files are the same bytes whatever the run took (the pass's
        # report keeps each graph's seconds)
        entries.append({**{k: v for k, v in g.describe().items() if k != "seconds"}, "quantizers": name})
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
        _, sim, kept = new_sim(graph, graph.example_inputs(), precision(settings["precision"]), settings["htp"],
                               settings["scheme"], settings.get("float_layers", ()), PREFIX)  # fmt: skip
        missing = load_quantizers(sim, nested_state(load_file(str(folder / e["quantizers"]))))
        if missing:
            raise UserInputError(f"{folder / e['quantizers']}: no saved state for quantizers {missing[:5]}")
        graph.restore_backend()
        graphs.append(
            SimulatedGraph(tuple(e["clips"][-1]), e["stage"], sim, graph, e["calibration_calls"], e["sqnr_db"],
                           time.perf_counter() - t0, e.get("heldout_sqnr_db"), e.get("heldout_calls", 0), kept,
                           e.get("seq_mse_layers", 0))
        )  # fmt: skip
    return graphs, settings
