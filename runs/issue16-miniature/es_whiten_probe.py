"""Probe: encoder_substitution with the MSE term measured in the teacher's whitened token space, so low-variance
directions (a colour contrast is small beside a caption's whole embedding) weigh as much as the big ones.
`python runs/issue16-miniature/es_whiten_probe.py RECIPE [EPS]`: applies RECIPE (an encoder_substitution recipe,
e.g. es-I.yaml) with the loss patched; compare its report with the same recipe unpatched."""
import sys

import torch

import neocompress.distill.text_run as text_run
from neocompress.core.apply_run import apply_recipe
from neocompress.distill.text_loss import masked_cosine
from neocompress.recipe import load_recipe

EPS = float(sys.argv[2]) if len(sys.argv) > 2 else 1e-2
HELDOUT = 16  # the recipes' `heldout:` (held-out prompts come last in the targets)
_metric: dict[str, torch.Tensor] = {}
_original_targets = text_run.TextTargets


class WhitenedTargets(_original_targets):
    def precompute(self, progress=None):
        out = super().precompute(progress)
        rows, masks = self.rows(range(len(self.prompts) - HELDOUT))  # the training prompts' statistics only
        tokens = rows[masks.bool()]  # [real tokens, D]
        cov = torch.cov(tokens.T.double())
        cov = cov + EPS * cov.diagonal().mean() * torch.eye(len(cov), dtype=cov.dtype)
        values, vectors = torch.linalg.eigh(cov)
        w = vectors @ torch.diag(values.rsqrt()) @ vectors.T
        _metric["w"] = (w * values.mean().sqrt()).float()  # scaled so an isotropic error keeps its MSE
        print(f"whitening: eigenvalues {values.min():.3g} .. {values.max():.3g}, eps {EPS}", flush=True)
        return out


def whitened_loss(pred, target, mask, w_mse, w_cos):
    m = mask.to(pred.dtype).unsqueeze(-1)
    diff = (pred - target) @ _metric["w"]
    mse = (diff**2 * m).sum() / (m.sum() * pred.shape[-1]).clamp_min(1.0)
    cos = 1.0 - masked_cosine(pred, target, mask)
    return w_mse * mse + w_cos * cos, {"mse": mse.detach(), "cos_distance": cos.detach()}


text_run.TextTargets = WhitenedTargets
text_run.distill_loss = whitened_loss
recipe = load_recipe(sys.argv[1])
outcome = apply_recipe(recipe, force=True, output=f"{recipe.model.output}-whiten-{EPS:g}")
print("wrote", outcome.output)
