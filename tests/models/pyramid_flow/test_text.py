"""Text stack: full-size shapes on meta, tiny bundle behaviour, offline tokenizers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from neocompress.models.pyramid_flow.text_config import TextBundleConfig
from neocompress.models.pyramid_flow.text_encoders import (
    TextBundle,
    TextEmbeddings,
    build_clip_g,
    build_clip_l,
    build_t5,
)
from neocompress.models.pyramid_flow.tokenizers import (
    CLIP_BOS,
    CLIP_EOS,
    TextTokenizers,
    load_tokenizers,
    read_prompts,
    tiny_prompts_path,
    tiny_tokenizer_root,
)
from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[3]
PROMPTS = ["a cat", "A quokka riding a skateboard, in a still frame", ""]


def _clip_params(c: dict) -> int:
    """CLIPTextModelWithProjection parameter count from its config, written out from the architecture."""
    v, p, h, i, n, proj = (
        c["vocab_size"],
        c["max_position_embeddings"],
        c["hidden_size"],
        c["intermediate_size"],
        c["num_hidden_layers"],
        c["projection_dim"],
    )
    attn = 4 * (h * h + h)  # q, k, v, out with bias
    mlp = h * i + i + i * h + h  # fc1, fc2 with bias
    norms = 2 * 2 * h  # layer_norm1, layer_norm2
    return v * h + p * h + n * (attn + mlp + norms) + 2 * h + h * proj  # + final LN, projection (no bias)


def _t5_encoder_params(c: dict) -> int:
    """T5EncoderModel (gated FF, no biases, relative bias only in block 0) parameter count from its config."""
    d, inner, f, n = c["d_model"], c["num_heads"] * c["d_kv"], c["d_ff"], c["num_layers"]
    block = 4 * d * inner + 3 * d * f + 2 * d  # q, k, v, o; wi_0, wi_1, wo; two RMSNorm weights
    return c["vocab_size"] * d + n * block + c["relative_attention_num_buckets"] * c["num_heads"] + d


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def tiny() -> TextBundle:
    return TextBundle.tiny(seed=0)


@pytest.fixture(scope="module")
def toks() -> TextTokenizers:
    return load_tokenizers()


# --- full size, meta device -------------------------------------------------------------------------------


def test_full_size_config_matches_sd3_checkpoint() -> None:
    cfg = TextBundleConfig.pyramid_flow_sd3()
    want_l = {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "projection_dim": 768,
        "hidden_act": "quick_gelu",
        "vocab_size": 49408,
        "max_position_embeddings": 77,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
    }
    want_g = {
        **want_l,
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_hidden_layers": 32,
        "num_attention_heads": 20,
        "projection_dim": 1280,
        "hidden_act": "gelu",
    }
    assert {k: cfg.clip_l[k] for k in want_l} == want_l
    assert {k: cfg.clip_g[k] for k in want_g} == want_g
    want_t5 = {
        "d_model": 4096,
        "d_ff": 10240,
        "num_layers": 24,
        "num_heads": 64,
        "d_kv": 64,
        "vocab_size": 32128,
        "feed_forward_proj": "gated-gelu",
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "pad_token_id": 0,
        "eos_token_id": 1,
    }
    assert {k: cfg.t5[k] for k in want_t5} == want_t5
    assert (cfg.clip_max_length, cfg.t5_max_length, cfg.pooled_dim, cfg.t5_dim) == (77, 128, 2048, 4096)


def test_full_size_encoders_on_meta_have_expected_parameter_counts() -> None:
    cfg = TextBundleConfig.pyramid_flow_sd3()
    start = time.perf_counter()
    with torch.device("meta"):
        clip_l, clip_g, t5 = build_clip_l(cfg), build_clip_g(cfg), build_t5(cfg)
    assert time.perf_counter() - start < 10.0
    for model in (clip_l, clip_g, t5):
        assert {p.device.type for p in model.parameters()} == {"meta"}

    n_l, n_g, n_t5 = _count(clip_l), _count(clip_g), _count(t5)
    assert n_l == _clip_params(cfg.clip_l) == 123_650_304
    assert n_g == _clip_params(cfg.clip_g) == 694_659_840
    assert n_t5 == _t5_encoder_params(cfg.t5) == 4_762_310_656
    # Published sizes: CLIP-L text ~123.7M, CLIP-G text ~694.7M, T5-XXL encoder ~4.76B.
    assert abs(n_l - 123.65e6) < 0.1e6
    assert abs(n_g - 694.66e6) < 0.1e6
    assert abs(n_t5 - 4.762e9) < 1e6
    # The T5 input embedding is the shared table, counted once.
    assert t5.encoder.embed_tokens.weight is t5.shared.weight
    assert clip_l.text_projection.weight.shape == (768, 768)
    assert clip_g.text_projection.weight.shape == (1280, 1280)


# --- config -------------------------------------------------------------------------------------------------


def test_config_round_trips_and_tiny_matches_tokenizers(toks: TextTokenizers) -> None:
    for cfg in (TextBundleConfig.pyramid_flow_sd3(), TextBundleConfig.tiny()):
        assert TextBundleConfig.from_dict(cfg.to_dict()) == cfg
    tiny = TextBundleConfig.tiny()
    assert (tiny.pooled_dim, tiny.t5_dim, tiny.clip_max_length, tiny.t5_max_length) == (64, 64, 77, 32)
    assert tiny.clip_l["vocab_size"] == tiny.clip_g["vocab_size"] == len(toks.clip_l) == 1026
    assert tiny.t5["vocab_size"] == len(toks.t5) == 1024
    assert tiny.clip_l["eos_token_id"] == toks.clip_l.eos_token_id == 1025
    assert (tiny.clip_g["hidden_size"], tiny.t5["d_ff"], tiny.t5["d_kv"]) == (48, 128, 32)
    with pytest.raises(ValueError, match="unknown"):
        TextBundleConfig.from_dict({**tiny.to_dict(), "extra": 1})
    with pytest.raises(ValueError, match="positions"):
        TextBundleConfig(clip_l=tiny.clip_l, clip_g=tiny.clip_g, t5=tiny.t5, clip_max_length=78)


# --- tokenizers ---------------------------------------------------------------------------------------------


def test_tokenizer_special_ids_follow_clip_and_t5(toks: TextTokenizers) -> None:
    v = len(toks.clip_l)
    assert (toks.clip_l.bos_token_id, toks.clip_l.eos_token_id) == (v - 2, v - 1)  # top ids, as in CLIP
    assert toks.clip_l.pad_token_id == toks.clip_l.eos_token_id  # SD3 tokenizer/ pads with end-of-text
    assert toks.clip_g.pad_token == "!" and toks.clip_g.pad_token_id == toks.clip_g.convert_tokens_to_ids("!")
    assert (toks.t5.pad_token_id, toks.t5.eos_token_id, toks.t5.unk_token_id) == (0, 1, 2)

    ids = toks.clip_l("a cat", padding="max_length", max_length=77)["input_ids"]
    assert len(ids) == 77 and ids[0] == v - 2 and ids[3:] == [v - 1] * 74  # bos, 2 words, eos, pads
    ids = toks.clip_g("a cat", padding="max_length", max_length=77)["input_ids"]
    assert ids[3] == v - 1 and set(ids[4:]) == {toks.clip_g.pad_token_id}
    t5 = toks.t5("a cat", padding="max_length", max_length=32)
    assert t5["input_ids"][2:4] == [1, 0] and sum(t5["attention_mask"]) == 3  # 2 pieces + </s>


def test_tokenizers_round_trip_every_shipped_prompt(toks: TextTokenizers) -> None:
    prompts = read_prompts(tiny_prompts_path())
    assert len(prompts) == 946
    for tok, expect in ((toks.clip_l, [p.lower() for p in prompts]), (toks.t5, prompts)):
        ids = tok(prompts)["input_ids"]
        assert tok.batch_decode(ids, skip_special_tokens=True) == expect
    t5_ids = toks.t5(prompts)["input_ids"]
    assert all(2 not in row for row in t5_ids)  # nothing in the training prompts is unknown
    # Frequent prompt words are whole tokens (the vocabulary is learned, not characters).
    for word in ("skateboard", "tranquil", "person", "ocean"):
        assert len(toks.clip_l.tokenize(word)) == 1
        assert len(toks.t5.tokenize(word)) == 1


def test_unknown_words_tokenize_without_crashing(toks: TextTokenizers, tiny: TextBundle) -> None:
    text = "zxqvj 東京 🙂 42!"
    clip_ids = toks.clip_l(text)["input_ids"]
    assert clip_ids[-1] == toks.clip_l.eos_token_id and len(clip_ids) > 10
    assert toks.clip_l.decode(clip_ids, skip_special_tokens=True) == text  # byte-level: lossless
    t5_ids = toks.t5(text)["input_ids"]
    assert t5_ids[-1] == 1 and 2 in t5_ids  # CJK / emoji never seen -> <unk>, like T5
    out = tiny.encode([text])
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()


def test_tokenizer_dirs_save_and_load_back(toks: TextTokenizers, tmp_path: Path) -> None:
    assert {p.name for p in tiny_tokenizer_root().iterdir()} == {"tokenizer", "tokenizer_2", "tokenizer_3"}
    toks.save(tmp_path)
    again = load_tokenizers(tmp_path)
    for a, b in zip(toks.as_tuple(), again.as_tuple(), strict=True):
        enc = [x(PROMPTS, padding="max_length", max_length=40)["input_ids"] for x in (a, b)]
        assert enc[0] == enc[1]
        assert (a.pad_token_id, a.eos_token_id, len(a)) == (b.pad_token_id, b.eos_token_id, len(b))
    with pytest.raises(FileNotFoundError):
        load_tokenizers(tmp_path / "nope")


def test_shipped_tokenizers_are_reproducible_by_build_script() -> None:
    assert load_script("tools/build_tiny_tokenizers.py").main(["--check"]) == 0


# --- tiny bundle --------------------------------------------------------------------------------------------


def test_tiny_encode_shapes_and_mask(tiny: TextBundle, toks: TextTokenizers) -> None:
    long_prompt = " ".join(["a tranquil frame"] * 40)
    prompts = [*PROMPTS, long_prompt]
    out = tiny.encode(prompts)
    assert out.pooled.shape == (4, 64) and out.tokens.shape == (4, 32, 64) and out.mask.shape == (4, 32)
    assert out.mask.dtype == torch.long and out.pooled.dtype == torch.float32
    n_tokens = [min(len(toks.t5(p)["input_ids"]), 32) for p in prompts]
    assert out.mask.sum(1).tolist() == n_tokens
    assert n_tokens[0] == 3 and n_tokens[2] == 1 and n_tokens[3] == 32  # "" is just </s>; long one truncated
    for row, n in zip(out.mask, n_tokens, strict=True):
        assert row[:n].eq(1).all() and row[n:].eq(0).all()
    ids = tiny.tokenize([long_prompt])
    assert ids.t5_ids[0, -1] == 1 and ids.clip_l_ids.shape == (1, 77)
    assert ids.clip_l_ids[0, -1] == toks.clip_l.eos_token_id  # truncation keeps end-of-text


def test_pooled_is_concat_of_clip_projections(tiny: TextBundle) -> None:
    ids = tiny.tokenize(PROMPTS)
    out = tiny.encode(PROMPTS)
    with torch.no_grad():
        pooled_l = tiny.clip_l(input_ids=ids.clip_l_ids).text_embeds
        pooled_g = tiny.clip_g(input_ids=ids.clip_g_ids).text_embeds
    assert pooled_l.shape == (3, 32) and pooled_g.shape == (3, 32)
    torch.testing.assert_close(out.pooled, torch.cat([pooled_l, pooled_g], dim=1), rtol=0, atol=0)
    # Pooled rows differ across prompts (the pooled vector reads each prompt's own end-of-text state).
    assert (out.pooled[0] - out.pooled[1]).abs().max() > 1e-3


def test_pad_content_does_not_change_valid_outputs(tiny: TextBundle) -> None:
    ids = tiny.tokenize(PROMPTS)
    ref = tiny(ids)
    gen = torch.Generator().manual_seed(7)
    pad = ids.t5_mask == 0
    t5_ids = ids.t5_ids.clone()
    t5_ids[pad] = torch.randint(3, 1024, (int(pad.sum()),), generator=gen)
    clip_l_ids, clip_g_ids = ids.clip_l_ids.clone(), ids.clip_g_ids.clone()
    eos = tiny.tokenizers.clip_l.eos_token_id
    for row in range(len(PROMPTS)):
        first_eos = int((clip_l_ids[row] == eos).nonzero()[0])
        tail = 77 - first_eos - 1
        clip_l_ids[row, first_eos + 1 :] = torch.randint(0, 1024, (tail,), generator=gen)
        clip_g_ids[row, first_eos + 1 :] = torch.randint(0, 1024, (tail,), generator=gen)
    changed = type(ids)(clip_l_ids, clip_g_ids, t5_ids, ids.t5_mask)
    with torch.no_grad():
        ref, out = tiny(ids), tiny(changed)
    valid = ids.t5_mask.bool()
    torch.testing.assert_close(out.pooled, ref.pooled, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.tokens[valid], ref.tokens[valid], rtol=0, atol=1e-6)
    # Control: the edit did change the (unused) pad states, and a valid-token edit changes valid outputs.
    assert (out.tokens[~valid] - ref.tokens[~valid]).abs().max() > 1e-4
    t5_ids2 = ids.t5_ids.clone()
    t5_ids2[1, 0] = 5 if int(t5_ids2[1, 0]) != 5 else 6
    with torch.no_grad():
        edited = tiny(type(ids)(ids.clip_l_ids, ids.clip_g_ids, t5_ids2, ids.t5_mask))
    assert (edited.tokens[1, 1] - ref.tokens[1, 1]).abs().max() > 1e-4


def test_fixed_seed_is_deterministic(tiny: TextBundle) -> None:
    rng_before = torch.random.get_rng_state()
    again = TextBundle.tiny(seed=0)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # seeding does not touch global RNG
    sd_a, sd_b = tiny.state_dict(), again.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    a, b = tiny.encode(PROMPTS), again.encode(PROMPTS)
    assert torch.equal(a.pooled, b.pooled) and torch.equal(a.tokens, b.tokens)
    other = TextBundle.tiny(seed=1).encode(PROMPTS)
    assert (other.pooled - a.pooled).abs().max() > 1e-3
    assert sum(p.numel() for p in tiny.parameters()) == 320_752
    assert not any(p.requires_grad for p in tiny.parameters()) and not tiny.training


def test_text_embeddings_cat_and_to(tiny: TextBundle) -> None:
    uncond, cond = tiny.encode(["", ""]), tiny.encode(PROMPTS[:2])
    both = TextEmbeddings.cat([uncond, cond])
    assert both.batch_size == 4 and both.tokens.shape == (4, 32, 64)
    assert torch.equal(both.pooled[:2], uncond.pooled) and torch.equal(both.mask[2:], cond.mask)
    half = both.to(dtype=torch.float16)
    assert half.pooled.dtype == half.tokens.dtype == torch.float16 and half.mask.dtype == torch.long
    assert half.to(device="cpu", dtype=torch.float32).tokens.device.type == "cpu"
    with pytest.raises(ValueError):
        TextEmbeddings(pooled=both.pooled, tokens=both.tokens[:3], mask=both.mask[:3])


def test_bundle_save_and_from_pretrained_round_trip(tiny: TextBundle, tmp_path: Path) -> None:
    tiny.save_pretrained(tmp_path)
    folders = {"text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer", "tokenizer_2", "tokenizer_3"}
    assert {p.name for p in tmp_path.iterdir()} >= folders
    loaded = TextBundle.from_pretrained(tmp_path)
    assert (loaded.config.clip_max_length, loaded.config.t5_max_length) == (77, 32)
    assert loaded.config.pooled_dim == 64
    a, b = tiny.encode(PROMPTS), loaded.encode(PROMPTS)
    assert torch.equal(a.pooled, b.pooled) and torch.equal(a.tokens, b.tokens) and torch.equal(a.mask, b.mask)
    assert TextBundle.from_pretrained(tmp_path, t5_max_length=16).encode(PROMPTS).tokens.shape == (3, 16, 64)


def test_special_token_strings_are_clip_s() -> None:
    assert (CLIP_BOS, CLIP_EOS) == ("<|startoftext|>", "<|endoftext|>")
