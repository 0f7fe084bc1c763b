"""One Pyramid-Flow denoiser graph per pyramid stage at fixed shapes, as a module that torch.fx (AIMET's
`prepare_model`) and the ONNX exporter take.

Why a wrapper: the denoiser's forward derives everything shape-dependent at run time from the clip list (token
counts, the cropped/interpolated position table per clip, RoPE angles, the causal mask), which is Python control
flow on shapes. An NPU takes one static graph per shape, so, as Neodragon did (reference section 7), each stage
gets ONE graph sized for the largest history the sampler will give it (the last latent frame's): a call with a
shorter history (or none, for the first frame) fills the missing history slots at the FRONT with zeros, and the
mask and the RoPE angles (both graph inputs, computed on the host by `pack`) make the padding contribute
nothing: padded tokens are keys to no real token, and the real tokens keep the times they have without padding.
The timestep enters as its sinusoidal embedding (a graph input), so the graph holds no Sin/Cos of a scalar.
Attention runs on the explicit matmul -> add mask -> softmax -> matmul path, because AIMET's model preparer
drops the `attn_mask` of `scaled_dot_product_attention`; the mask's masked value is finite (-100). The wrapped
denoiser's weights are shared, not copied; its attention backend is switched (`restore_backend` puts it back).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from neocompress.lowering.stage_packing import StagePacker
from neocompress.models.pyramid_flow.embeddings import crop_positions
from neocompress.models.pyramid_flow.history import history_stages

_SUBCLASSES: dict[int, type] = {}
NPU_MASKED_VALUE = -100.0  # finite: -inf breaks quantized softmax (toolchain notes: 30.6 dB at -100, 8.7 at -inf)
TAIL_INPUTS = ["text_tokens", "attention_mask", "pooled", "timestep_proj", "rope_cos", "rope_sin"]
BROADCAST_INPUTS = ("rope_cos", "rope_sin")  # one table for the whole batch: dim 0 does not follow it


def stage_slot_shapes(scheduler, stage: int, units: int, channels: int, height: int, width: int, batch: int):  # noqa: ANN001
    """The clip shapes of `stage`'s graph: the history of the last of `units` latent frames (oldest first, each at
    its pyramid resolution), then the current clip; `height` x `width` is the full latent size."""
    shapes = []
    for s in [*history_stages(units - 1, stage), stage]:
        h, w = scheduler.stage_size(height, width, s)
        shapes.append((batch, channels, 1, h, w))
    return shapes


class StaticStageDenoiser(nn.Module):
    """`graph(*clips, text_tokens, attention_mask, pooled, timestep_proj, rope_cos, rope_sin)` for clips of the
    slot shapes ([B, C, T, H, W] each, history oldest first, current last) and `text_len` text tokens. Only the
    batch stays free in torch (an exporter fixes it), so a CFG call (2B) and a plain one share a module."""

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
        _, _, t_cur, h_cur, w_cur = self.clip_shapes[-1]
        self.patch = p
        self.grid = (t_cur, h_cur // p, w_cur // p)
        table = denoiser.pos_embed.pos_embed
        for i, (_, _, _, h, w) in enumerate(self.clip_shapes):
            pos = crop_positions(table, denoiser.pos_embed.pos_embed_max_size, h_cur // p, w_cur // p, h // p, w // p)
            self.register_buffer(f"pos_{i}", pos.detach().clone(), persistent=False)
        counts = denoiser.token_counts(self.clip_shapes, self.text_len, p)
        self.per_frame = list(counts.per_frame)
        self.history_tokens = counts.history
        self.frames_per_clip = [shape[2] for shape in self.clip_shapes]
        if t_cur != 1:
            raise ValueError(f"a stage graph generates one latent frame at a time, got a current clip of {t_cur}")
        # unpatchify at rank 4 (the HTP takes no rank-7 reshape, and the QNN HTP backend computed a channel Gather
        # wrongly here): tokens [B, h*w, (p1, p2, C)] -> [B, C, (p1, p2), h*w] by a transpose, then a pixel shuffle
        # (ONNX DepthToSpace, channels ordered (C, p1, p2)) puts each patch in place
        self.shuffle = nn.PixelShuffle(p)

    @property
    def history_slots(self) -> int:
        return len(self.clip_shapes) - 1

    @property
    def sequence_length(self) -> int:
        return self.text_len + sum(self.per_frame)

    @property
    def stage_key(self) -> tuple[int, ...]:
        """(C, T, H, W) of the current clip: it names the stage (every stage has its own resolution)."""
        return self.clip_shapes[-1][1:]

    def input_names(self) -> list[str]:
        return [f"clip_{i}" for i in range(len(self.clip_shapes))] + TAIL_INPUTS

    @property
    def packer(self) -> StagePacker:
        """The host side of this graph: a sampler call -> its inputs (the bundle runtime uses it without torch
        modules)."""
        cfg = self.denoiser.config
        return StagePacker(
            [s[1:] for s in self.clip_shapes], self.text_len, self.per_frame, self.frames_per_clip,
            cfg.attention_head_dim, cfg.rope_theta, self.denoiser.time_text_embed.timestep_channels, self.masked_value,
        )  # fmt: skip

    def fits(self, sample: Sequence[Tensor]) -> str | None:
        return self.packer.fits(sample)

    def pack(self, *call: Tensor) -> tuple[Tensor, ...]:
        return self.packer.pack(*call)

    def example_inputs(self, text_mask: Tensor | None = None, seed: int = 0, history: int | None = None,
                       batch: int | None = None) -> tuple[Tensor, ...]:  # fmt: skip
        """Random graph inputs for a call with `history` real history clips (default: all slots)."""
        cfg = self.denoiser.config
        gen = torch.Generator().manual_seed(seed)
        batch = batch or (text_mask.shape[0] if text_mask is not None else self.clip_shapes[-1][0])
        history = self.history_slots if history is None else history
        shapes = self.clip_shapes[self.history_slots - history :]
        clips = [torch.randn((batch, *s[1:]), generator=gen) for s in shapes]
        tokens = torch.randn(batch, self.text_len, cfg.text_token_dim, generator=gen)
        text_mask = torch.ones(batch, self.text_len, dtype=torch.long) if text_mask is None else text_mask
        pooled = torch.randn(batch, cfg.pooled_projection_dim, generator=gen)
        return self.pack(clips, tokens, text_mask, pooled, torch.full((batch,), 500.0))

    # ---- the graph ----------------------------------------------------------------------------------------

    def run(self, clips: Sequence[Tensor], tokens: Tensor, mask: Tensor, pooled: Tensor, t_proj: Tensor,
            rope_cos: Tensor, rope_sin: Tensor) -> Tensor:  # fmt: skip
        """The packed inputs -> the current clip's velocity."""
        d = self.denoiser
        embedded = []
        for i, clip in enumerate(clips):
            _, _, t, h, w = self.clip_shapes[i]
            frames = clip.transpose(1, 2).flatten(0, 1)  # [B*T, C, H, W]: the batch is not baked in
            x = d.pos_embed.proj(frames).flatten(2).transpose(1, 2) + getattr(self, f"pos_{i}")
            embedded.append(x.reshape(-1, t * (h // self.patch) * (w // self.patch), x.shape[-1]))
        hidden = torch.cat(embedded, dim=1)
        embed = d.time_text_embed
        temb = embed.timestep_embedder(t_proj) + embed.text_embedder(pooled)
        context = d.context_embedder(tokens) if d.config.use_context_embedder else tokens
        for block in d.transformer_blocks:
            new_context, hidden = block(hidden, context, temb, mask, (rope_cos, rope_sin))
            if new_context is not None:
                context = new_context
        hidden = hidden[:, self.history_tokens :]
        hidden = d.proj_out(d.norm_out(hidden, temb))
        _, h, w = self.grid
        p, c = self.patch, d.config.out_channels
        patches = hidden.unflatten(2, (p * p, c)).permute(0, 3, 2, 1).reshape(-1, c * p * p, h, w)
        return self.shuffle(patches).unsqueeze(2)  # [B, C, 1, h*p, w*p]

    def __new__(cls, denoiser: nn.Module, clip_shapes: Sequence[Sequence[int]], *args, **kwargs):
        """An instance of a subclass whose `forward` names one argument per input: torch.fx traces a forward
        of named tensors, not `*inputs` (a Proxy cannot be unpacked), and the names become the ONNX inputs."""
        n = len(clip_shapes)
        sub = _SUBCLASSES.get(n)
        if sub is None:
            names = [f"clip_{i}" for i in range(n)]
            source = (
                f"def forward(self, {', '.join(names + TAIL_INPUTS)}):\n"
                f"    return self.run(({', '.join(names)},), {', '.join(TAIL_INPUTS)})\n"
            )
            namespace: dict = {}
            exec(source, namespace)  # noqa: S102 - a fixed template of identifiers, for a real signature
            sub = _SUBCLASSES[n] = type(f"StaticStageDenoiser{n}Clips", (cls,), {"forward": namespace["forward"]})
        return super().__new__(sub)

    def restore_backend(self) -> None:
        backend, masked = self.previous_backend
        self.denoiser.set_attention_backend(backend, masked)
