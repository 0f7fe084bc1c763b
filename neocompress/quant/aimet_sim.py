"""What every AIMET simulation here shares: building a QuantizationSimModel over a static graph, keeping chosen
layers in float, and saving / restoring the quantizer state losslessly.

Why one place: the denoiser's stage graphs and the VAE decoder's graph are simulated the same way (AIMET's
model preparer, the HTP config of the chosen Hexagon version, the recipe's precision), and their quantizer
state is stored the same way beside the float weights.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from neocompress.core.errors import UserInputError
from neocompress.quant.precision import Precision, htp_config


def quiet_aimet() -> None:
    """AIMET logs every prepared node at INFO to stdout, which would bury a command's output (and its --json), and
    warns about its own internals (tensor copies, a deprecated alias) once per graph: none of it is actionable."""
    import logging
    import warnings

    from aimet_torch.common.utils import AimetLogger

    AimetLogger.set_level_for_all_areas(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"aimet_torch\..*")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"aimet_torch\..*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"aimet_torch\..*")


def new_sim(graph: nn.Module, dummy: tuple, precision: Precision, htp: str, scheme: str,
            float_layers: Sequence[str] = (), prefix: str = "") -> tuple[nn.Module, Any, list[str]]:  # fmt: skip
    """(the prepared graph, its QuantSim, the layers kept float). `float_layers` are patterns on the component's
    own module names (`prefix` is what the graph puts in front of them)."""
    quiet_aimet()
    from aimet_torch.common.defs import QuantScheme
    from aimet_torch.model_preparer import prepare_model
    from aimet_torch.quantsim import QuantizationSimModel

    schemes = {"tf": QuantScheme.post_training_tf, "tf_enhanced": QuantScheme.post_training_tf_enhanced}
    if scheme not in schemes:
        raise UserInputError(f"unknown quant scheme '{scheme}'; known: {', '.join(schemes)}")
    prepared = prepare_model(graph)
    sim = QuantizationSimModel(
        prepared,
        dummy_input=dummy,
        quant_scheme=schemes[scheme],
        default_param_bw=precision.param_bw,
        default_output_bw=precision.output_bw,
        config_file=htp_config(htp),
    )
    kept = keep_float(sim, float_layers, prefix)
    return prepared, sim, kept


def weight_layers(sim: Any, prefix: str = "") -> dict[str, nn.Module]:
    """{component-relative name: quantized module} of every layer with a weight quantizer slot."""
    out = {}
    for name, module in sim.model.named_modules():
        quantizers = getattr(module, "param_quantizers", None)
        if quantizers is not None and "weight" in quantizers and name.startswith(prefix):
            out[name[len(prefix) :]] = module
    return out


def matches(name: str, patterns: Sequence[str]) -> bool:
    """A module name matches a pattern that names it or one of its parents (`norm_out` covers `norm_out.linear`),
    literally or as an fnmatch glob (`transformer_blocks.*.ff.net.2`)."""
    parts = name.split(".")
    scopes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatchcase(scope, p) for p in patterns for scope in scopes)


def keep_float(sim: Any, patterns: Sequence[str], prefix: str = "") -> list[str]:
    """Remove the weight quantizer of every layer matching `patterns`: its weights stay float (fp16 on the HTP,
    which runs such a layer in fp16 inside the quantized graph; 16-bit integer weights it refuses) while the
    activations around it stay quantized. Returns the layers kept, in graph order."""
    if not patterns:
        return []
    layers = weight_layers(sim, prefix)
    kept = [n for n in layers if matches(n, patterns)]
    for name in kept:
        layers[name].param_quantizers["weight"] = None
    return kept


def unmatched(patterns: Sequence[str], names: Sequence[str]) -> list[str]:
    """The patterns that match none of `names` (a typo in a recipe must not pass silently)."""
    return [p for p in patterns if not any(matches(n, [p]) for n in names)]


_SEP = "/"  # joins a quantizer's `_extra_state` key to its fields (a '/' never occurs in a module path)


def flat_state(state: dict[str, Any]) -> dict[str, Tensor]:
    """A quantizer state dict as plain tensors: each `_extra_state` dict of tensors becomes one key per field."""
    out = {}
    for k, v in state.items():
        items = v.items() if isinstance(v, dict) else [(None, v)]
        for field_name, t in items:
            out[k if field_name is None else f"{k}{_SEP}{field_name}"] = torch.as_tensor(t).detach().contiguous()
    return out


def nested_state(flat: dict[str, Tensor]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in flat.items():
        if _SEP in k:
            key, field_name = k.split(_SEP, 1)
            out.setdefault(key, {})[field_name] = v
        else:
            out[k] = v
    return out


def load_quantizers(sim: Any, state: dict[str, Any]) -> list[str]:
    """Load a `quantizer_state_dict` into a fresh sim of the same graph; the quantizer keys it lacked."""
    expected = set(sim.quantizer_state_dict())
    sim.model.load_state_dict(state, strict=False)
    return sorted(expected - set(state))


def spread(items: list, n: int) -> list:
    """At most `n` of `items`, evenly spread over them (calls early and late in a run differ)."""
    return items[:: max(1, len(items) // n)][:n]
