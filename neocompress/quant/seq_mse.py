"""Sequential MSE (AIMET's) for the denoiser's stage graphs, pooled over the stages, for 4-bit weights.

Why pooled: the three pyramid-stage graphs run the same weights, and on the device they are one set (the
stage graphs' parts are linked into weight-sharing context binaries). Per-stage activation encodings are right
(each stage sees its own ranges); per-stage weight encodings would quantize one tensor three ways. So each layer's
weight encoding is chosen once, by AIMET's own candidate search (`SequentialMse.optimize_module`), with the loss
summed over the layer's inputs from every stage's calls, and the result is frozen into every stage's sim.

Sequential, as AIMET does it ("symqt"): a layer's inputs come from the sims with every activation quantizer off and
the earlier layers' weights already quantized with their chosen encodings, so each choice corrects the error
the earlier ones left. AIMET searches 4-bit (and narrower) weights only; wider ones keep their min/max ranges.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from neocompress.quant.aimet_sim import weight_layers


def _forward(model: Any, *args: Any) -> Any:
    return model(*args)


def pooled_seq_mse(sims: Sequence[Any], inputs: Sequence[Sequence[tuple]], prefix: str = "",
                   candidates: int = 20) -> list[str]:  # fmt: skip
    """Choose and freeze the weight encodings of `sims` (one per stage, same layers) on each stage's `inputs`
    (lists of graph-input tuples). Returns the layers searched, in graph order."""
    from aimet_torch._base.seq_mse import SUPPORTED_PARAM_BW, SeqMseParams
    from aimet_torch.seq_mse import SequentialMse

    params = SeqMseParams(num_batches=None, num_candidates=candidates, inp_symmetry="symqt", loss_fn="mse")
    layers = [weight_layers(s, prefix) for s in sims]
    searched = [name for name, m in layers[0].items() if m.param_quantizers["weight"] is not None
                and m.param_quantizers["weight"].bitwidth <= SUPPORTED_PARAM_BW]  # fmt: skip
    datasets = [[(tuple(x), {}) for x in stage] for stage in inputs]
    with contextlib.ExitStack() as stack:
        for s in sims:
            stack.enter_context(SequentialMse.temporarily_disable_quantizers(s.model, s, []))
            SequentialMse.compute_all_param_encodings(s)  # the starting point, as AIMET's own flow sets it
        for name in searched:
            acts = []  # one tensor per call, of every stage (their token counts differ: a list, not a stack)
            for s, by_name, data in zip(sims, layers, datasets, strict=True):
                acts += list(SequentialMse.get_module_inp_acts(by_name[name], s.model, _forward, data))
            chosen = layers[0][name]
            SequentialMse.optimize_module(chosen, acts, acts, params)
            q = chosen.param_quantizers["weight"]
            for by_name in layers[1:]:
                other = by_name[name].param_quantizers["weight"]
                other.set_range(q.min.detach().clone(), q.max.detach().clone())
                SequentialMse._freeze_quantizer_encoding(other)  # noqa: SLF001 - AIMET's own freeze
    return searched
