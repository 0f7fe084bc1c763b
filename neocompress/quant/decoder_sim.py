"""The VAE decoder under AIMET's QuantizationSimModel: one static graph, calibrated on the latents the pipeline
samples for the calibration prompts.

Why on sampled latents, not encoded videos: in deployment the decoder only ever sees what the denoiser makes, and
those latents' ranges are what the encodings must cover. Neodragon quantized the VAE decoder to W8A16 (35 dB on
real weights). The graph is static (one latent shape, batch 1, as the NPU runs it); a decode at another shape
gets a sim of its own with the same quantizer state (convolutions' encodings do not depend on the size), and a
batch is decoded one video at a time.

AdaRound (optional) is AIMET's own, on this one graph: it writes the learnt rounding into the weights (AIMET's
contract), so the component's weights are replaced by the rounded ones and its encodings frozen to match. AIMET's
AdaRound takes Conv2d, ConvTranspose2d and Linear layers: in the causal decoder that is the mid-block attention;
its Conv3d layers keep nearest rounding (the count is reported). A 2-D decoder (TAEHV) is covered whole.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from neocompress.core.errors import UserInputError
from neocompress.lowering.static_vae import static_decoder
from neocompress.quant.aimet_sim import flat_state, load_quantizers, nested_state, new_sim, spread
from neocompress.quant.precision import Precision, precision, sqnr_db

INDEX = "decoder.json"
QUANTIZERS = "quantizers.safetensors"


@dataclass
class SimulatedDecoder:
    """The decoder graph's QuantSim, and how close it is to float on calibration and held-out latents."""

    sim: Any
    graph: Any  # StaticVAEDecoder or StaticTAEHVDecoder
    settings: dict[str, Any]
    calls: int
    sqnr_db: float
    heldout_sqnr_db: float | None = None
    heldout_calls: int = 0
    float_layers: list[str] = field(default_factory=list)
    seconds: float = 0.0
    adarounded: list[str] = field(default_factory=list)  # layers whose rounding AdaRound learnt
    _by_shape: dict[tuple[int, ...], Any] = field(default_factory=dict, repr=False)

    def describe(self) -> dict[str, Any]:
        return {
            "latent_shape": list(self.graph.latent_shape),
            "calibration_calls": self.calls,
            "sqnr_db": self.sqnr_db,
            "heldout_sqnr_db": self.heldout_sqnr_db,
            "heldout_calls": self.heldout_calls,
            "float_layers": self.float_layers,
            "adarounded_layers": len(self.adarounded),
            "seconds": self.seconds,
        }

    def sim_for(self, shape: tuple[int, ...], decoder: nn.Module) -> Any:
        """The QuantSim of a graph at `shape` [1, C, t, h, w], sharing this one's quantizer state."""
        shape = tuple(int(s) for s in shape)
        if shape == self.graph.latent_shape:
            return self.sim
        if shape not in self._by_shape:
            _, self._by_shape[shape] = _rebuilt(decoder, self.graph.latent_norm, shape, self.settings,
                                                self.sim.quantizer_state_dict(), "in memory")  # fmt: skip
        return self._by_shape[shape]


def _one_by_one(latents: Sequence[Tensor]) -> list[Tensor]:
    return [x[i : i + 1] for x in latents for i in range(x.shape[0])]


def simulate_decoder(
    decoder: nn.Module,
    latent_norm: Any,
    latents: Sequence[Tensor],
    precision_: Precision,
    htp: str,
    *,
    scheme: str = "tf",
    max_calls: int = 32,
    heldout: Sequence[Tensor] = (),
    float_layers: Sequence[str] = (),
    adaround_iterations: int = 0,
) -> SimulatedDecoder:
    """A QuantSim of the decoder at the latents' shape, encodings computed on (at most `max_calls` of) them."""
    t0 = time.perf_counter()
    calls = spread(_one_by_one(latents), max_calls)
    if not calls:
        raise UserInputError("no sampled latents to calibrate the VAE decoder on")
    shapes = {tuple(x.shape) for x in calls}
    if len(shapes) != 1:
        raise UserInputError(f"the calibration latents have several shapes {sorted(shapes)}: sample one video size")
    graph = static_decoder(decoder, latent_norm, calls[0].shape).eval()
    held = spread(_one_by_one(heldout), max_calls)
    with torch.no_grad():  # before AdaRound, which rounds the decoder's own weights
        reference = torch.cat([graph(x) for x in calls])
        held_reference = torch.cat([graph(x) for x in held]) if held else None
    with tempfile.TemporaryDirectory() as tmp:
        rounded, adarounded = None, []
        if adaround_iterations:
            rounded, adarounded = _adaround(graph, calls, precision_, htp, float_layers, adaround_iterations,
                                            Path(tmp))  # fmt: skip
        _, sim, kept = new_sim(graph, (calls[0],), precision_, htp, scheme, float_layers)
        if rounded is not None:  # the grid the rounding was learnt on, frozen: calibration must not move it
            sim.set_and_freeze_param_encodings(str(rounded))

    def forward(model: nn.Module, _: Any) -> None:
        with torch.no_grad():
            for x in calls:
                model(x)

    sim.compute_encodings(forward, None)
    with torch.no_grad():
        got = torch.cat([sim.model(x) for x in calls])
    held_sqnr = None
    if held_reference is not None:
        with torch.no_grad():
            held_sqnr = sqnr_db(held_reference, torch.cat([sim.model(x) for x in held]))
    settings = {"precision": precision_.name, "htp": htp, "scheme": scheme, "float_layers": list(float_layers),
                "adaround_iterations": adaround_iterations}  # fmt: skip
    return SimulatedDecoder(sim, graph, settings, len(calls), sqnr_db(reference, got), held_sqnr, len(held), kept,
                            time.perf_counter() - t0, adarounded)  # fmt: skip


def _adaround(graph: nn.Module, calls: list[Tensor], precision_: Precision, htp: str,
              float_layers: Sequence[str], iterations: int, folder: Path) -> tuple[Path, list[str]]:  # fmt: skip
    """AIMET's AdaRound on the decoder graph; the rounded weights are written into the decoder's own layers (the
    graph shares them), so the component carries them. Returns AdaRound's parameter encodings file and the layers
    it rounded."""
    from aimet_torch._base.adaround.adaround_weight import AdaroundSupportedModules
    from aimet_torch.adaround.adaround_weight import Adaround, AdaroundParameters
    from aimet_torch.common.defs import QuantScheme
    from aimet_torch.model_preparer import prepare_model

    from neocompress.quant.aimet_sim import matches, quiet_aimet
    from neocompress.quant.precision import htp_config

    quiet_aimet()
    prepared = prepare_model(graph)
    loader = [(x,) for x in calls]
    params = AdaroundParameters(loader, num_batches=len(loader), default_num_iterations=iterations,
                                forward_fn=lambda model, inputs: model(*inputs))  # fmt: skip
    rounded = Adaround.apply_adaround(
        prepared, (calls[0],), params, path=str(folder), filename_prefix="decoder",
        default_param_bw=precision_.param_bw,
        default_quant_scheme=QuantScheme.post_training_tf, default_config_file=htp_config(htp),
    )  # fmt: skip

    def kept_float(tensor: str) -> bool:
        return matches(tensor.rsplit(".", 1)[0], float_layers)

    supported = [n for n, m in prepared.named_modules() if isinstance(m, AdaroundSupportedModules)
                 and not kept_float(f"{n}.weight")]  # fmt: skip
    own = dict(graph.named_parameters())
    with torch.no_grad():  # a layer kept float keeps its float weights
        for name, p in rounded.named_parameters():
            if name in own and not kept_float(name):
                own[name].copy_(p)
    path = folder / "decoder.encodings"
    encodings = json.loads(path.read_text())
    encodings["param_encodings"] = {k: v for k, v in encodings["param_encodings"].items() if not kept_float(k)}
    path.write_text(json.dumps(encodings))
    return path, supported


class SimulatedVAEDecoder(nn.Module):
    """What the pipeline decodes with: normalised latents [B, C, t, h, w] -> video, through the simulation."""

    def __init__(self, float_decoder: nn.Module, simulated: SimulatedDecoder):
        super().__init__()
        self.float_decoder = float_decoder
        self.simulated = simulated

    def forward(self, latents: Tensor) -> Tensor:
        sim = self.simulated.sim_for((1, *latents.shape[1:]), self.float_decoder)
        with torch.no_grad():
            return torch.cat([sim.model(latents[i : i + 1]) for i in range(latents.shape[0])])


def save_decoder(simulated: SimulatedDecoder, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(flat_state(simulated.sim.quantizer_state_dict()), str(folder / QUANTIZERS))
    (folder / INDEX).write_text(json.dumps({"settings": simulated.settings, **simulated.describe()}, indent=1))


def load_decoder(decoder: nn.Module, latent_norm: Any, folder: Path) -> SimulatedDecoder:
    """Rebuild the decoder's QuantSim from the float decoder and its saved quantizer state (no calibration)."""
    from safetensors.torch import load_file

    t0 = time.perf_counter()
    index = json.loads((folder / INDEX).read_text())
    shape = tuple(index["latent_shape"])
    state = nested_state(load_file(str(folder / QUANTIZERS)))
    graph, sim = _rebuilt(decoder, latent_norm, shape, index["settings"], state, str(folder / QUANTIZERS))
    return SimulatedDecoder(sim, graph, index["settings"], index["calibration_calls"], index["sqnr_db"],
                            index.get("heldout_sqnr_db"), index.get("heldout_calls", 0),
                            index.get("float_layers", []), time.perf_counter() - t0)  # fmt: skip


def _rebuilt(decoder: nn.Module, latent_norm: Any, shape: tuple[int, ...], settings: dict[str, Any],
             state: dict[str, Any], where: str) -> tuple[nn.Module, Any]:  # fmt: skip
    """The static graph at `shape` and its QuantSim carrying `state` (no calibration)."""
    graph = static_decoder(decoder, latent_norm, shape).eval()
    _, sim, _ = new_sim(graph, graph.example_inputs(), precision(settings["precision"]), settings["htp"],
                        settings["scheme"], settings.get("float_layers", ()))  # fmt: skip
    missing = load_quantizers(sim, state)
    if missing:
        raise UserInputError(f"{where}: no saved state for the VAE decoder's quantizers {missing[:5]}")
    return graph, sim
