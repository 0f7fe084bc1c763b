"""One Pyramid-Flow denoiser call at fixed shapes, as a module that torch.fx (AIMET's `prepare_model`) and the
ONNX exporter take.

Why a wrapper: the denoiser's forward derives everything shape-dependent at run time from the clip list (token
counts, the cropped/interpolated position table per clip, RoPE angles, the causal mask), which is Python
control flow on shapes. An NPU graph has one static shape per pyramid stage anyway, so here those shape
computations run once, in `__init__`, and become buffers; what varies per call (the clips, the text tokens, the
text mask as an additive float mask with a finite masked value, the pooled vector, the timestep) are the
graph's inputs. Attention runs on the explicit matmul -> add mask -> softmax -> matmul path, because AIMET's
model preparer drops the `attn_mask` of `scaled_dot_product_attention`. The wrapped denoiser's weights are
shared, not copied; its attention backend is switched (and `restore_backend` puts it back).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from neocompress.models.pyramid_flow.attention import additive_mask, build_attention_mask, token_times
from neocompress.models.pyramid_flow.embeddings import crop_positions, rope_angles

_SUBCLASSES: dict[int, type] = {}
NPU_MASKED_VALUE = -100.0  # finite: -inf breaks quantized softmax (toolchain notes: 30.6 dB at -100, 8.7 at -inf)


class StaticStageDenoiser(nn.Module):
    """`denoiser([*history, current], tokens, mask, pooled, t)` for clips of the shapes `clip_shapes`
    ([B, C, T, H, W] each, history oldest first, current last) and `text_len` text tokens. Only the batch stays
    free (it follows the inputs; an exporter may still fix it), so a CFG call (2B) and a plain one share a graph."""

    def __init__(
        self,
        denoiser: nn.Module,
        clip_shapes: Sequence[Sequence[int]],
        text_len: int,
        masked_value: float = NPU_MASKED_VALUE,
    ) -> None:
        super().__init__()
        cfg = denoiser.config
        self.denoiser = denoiser
        self.previous_backend = (denoiser.transformer_blocks[0].attn.backend, denoiser.masked_value)
        denoiser.set_attention_backend("matmul", masked_value)
        self.masked_value = masked_value
        self.clip_shapes = [tuple(int(s) for s in shape) for shape in clip_shapes]
        self.text_len = int(text_len)
        p = cfg.patch_size
        batch, _, t_cur, h_cur, w_cur = self.clip_shapes[-1]
        self.batch, self.patch = batch, p
        self.grid = (t_cur, h_cur // p, w_cur // p)
        table = denoiser.pos_embed.pos_embed
        for i, (_, _, _, h, w) in enumerate(self.clip_shapes):
            pos = crop_positions(table, denoiser.pos_embed.pos_embed_max_size, h_cur // p, w_cur // p, h // p, w // p)
            self.register_buffer(f"pos_{i}", pos.detach().clone(), persistent=False)
        counts = denoiser.token_counts(self.clip_shapes, self.text_len, p)
        self.per_frame = list(counts.per_frame)
        self.history_tokens = counts.history
        times = token_times(self.text_len, self.per_frame, list(range(len(self.per_frame))))
        cos, sin = rope_angles(times, cfg.attention_head_dim, cfg.rope_theta)
        self.register_buffer("rope_cos", cos[None, None].detach().clone(), persistent=False)
        self.register_buffer("rope_sin", sin[None, None].detach().clone(), persistent=False)

    @property
    def sequence_length(self) -> int:
        return self.text_len + sum(self.per_frame)

    def attention_mask(self, text_mask: Tensor) -> Tensor:
        """The graph's mask input from a [B, L] text mask (1 real, 0 padding): additive, [B, 1, N, N]."""
        frames = list(range(len(self.per_frame)))
        return additive_mask(build_attention_mask(text_mask, self.per_frame, frames), self.masked_value)

    def example_inputs(self, text_mask: Tensor | None = None, seed: int = 0) -> tuple[Tensor, ...]:
        """Random inputs of the graph's shapes (for tracing, export and calibration smoke tests)."""
        cfg = self.denoiser.config
        gen = torch.Generator().manual_seed(seed)
        clips = [torch.randn(shape, generator=gen) for shape in self.clip_shapes]
        tokens = torch.randn(self.batch, self.text_len, cfg.joint_attention_dim, generator=gen)
        text_mask = torch.ones(self.batch, self.text_len, dtype=torch.long) if text_mask is None else text_mask
        pooled = torch.randn(self.batch, cfg.pooled_projection_dim, generator=gen)
        timestep = torch.full((self.batch,), 500.0)
        return (*clips, tokens, self.attention_mask(text_mask), pooled, timestep)

    def input_names(self) -> list[str]:
        return [f"clip_{i}" for i in range(len(self.clip_shapes))] + [
            "text_tokens",
            "attention_mask",
            "pooled",
            "timestep",
        ]

    def run(self, clips: Sequence[Tensor], tokens: Tensor, mask: Tensor, pooled: Tensor, timestep: Tensor) -> Tensor:
        """The clips (as in `clip_shapes`), text tokens [B, L, joint_dim], the additive mask [B, 1, N, N],
        pooled [B, pooled_dim] and the timestep [B] -> the current clip's velocity."""
        d = self.denoiser
        embedded = []
        for i, clip in enumerate(clips):
            _, _, t, h, w = self.clip_shapes[i]
            frames = clip.transpose(1, 2).flatten(0, 1)  # [B*T, C, H, W]: the batch is not baked in
            x = d.pos_embed.proj(frames).flatten(2).transpose(1, 2) + getattr(self, f"pos_{i}")
            embedded.append(x.reshape(-1, t * (h // self.patch) * (w // self.patch), x.shape[-1]))
        hidden = torch.cat(embedded, dim=1)
        temb = d.time_text_embed(timestep, pooled)
        context = d.context_embedder(tokens) if d.config.use_context_embedder else tokens
        rope = (self.rope_cos, self.rope_sin)
        for block in d.transformer_blocks:
            new_context, hidden = block(hidden, context, temb, mask, rope)
            if new_context is not None:
                context = new_context
        hidden = hidden[:, self.history_tokens :]
        hidden = d.proj_out(d.norm_out(hidden, temb))
        t, h, w = self.grid
        return d.unpatchify(hidden, t, h, w)

    def __new__(cls, denoiser: nn.Module, clip_shapes: Sequence[Sequence[int]], *args, **kwargs):
        """An instance of a subclass whose `forward` names one argument per input: torch.fx traces a forward
        of named tensors, not `*inputs` (a Proxy cannot be unpacked), and the names become the ONNX inputs."""
        n = len(clip_shapes)
        sub = _SUBCLASSES.get(n)
        if sub is None:
            names = [f"clip_{i}" for i in range(n)]
            rest = ["text_tokens", "attention_mask", "pooled", "timestep"]
            source = (
                f"def forward(self, {', '.join(names + rest)}):\n"
                f"    return self.run(({', '.join(names)},), {', '.join(rest)})\n"
            )
            namespace: dict = {}
            exec(source, namespace)  # noqa: S102 - a fixed template of identifiers, for a real signature
            sub = _SUBCLASSES[n] = type(f"StaticStageDenoiser{n}Clips", (cls,), {"forward": namespace["forward"]})
        return super().__new__(sub)

    def restore_backend(self) -> None:
        backend, masked = self.previous_backend
        self.denoiser.set_attention_backend(backend, masked)
