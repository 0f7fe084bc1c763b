"""Tokenizers for Pyramid-Flow's three text encoders, real or tiny, loaded offline.

Pyramid-Flow (SD3 layout) tokenizes every prompt three times: CLIP-L (`tokenizer/`), CLIP-G (`tokenizer_2/`,
same vocabulary, pads with "!") and T5 (`tokenizer_3/`). The real files are not shipped and nothing may be
downloaded, so tests and tiny models use small tokenizers trained here with the `tokenizers` library on the
prompt file shipped in the package. Both kinds are saved as plain tokenizer directories and loaded through
`AutoTokenizer.from_pretrained(path, local_files_only=True)`, so every caller handles them the same way.

The tiny tokenizers copy the conventions the encoders depend on, not the real vocabularies:
- CLIP-like: byte-level BPE (any text tokenizes, nothing is dropped), lower-cased like CLIP, `<|startoftext|>`
  and `<|endoftext|>` wrapped around every prompt and placed at the two highest ids (as in CLIP, so both of
  transformers' pooling rules pick the first end-of-text token); CLIP-L pads with `<|endoftext|>`, CLIP-G
  with "!".
- T5-like: BPE pieces over the sentencepiece "▁" word marker (see `train_t5_tokenizer`), T5's ids
  `<pad>` = 0, `</s>` = 1, `<unk>` = 2, `</s>` appended to every prompt; characters never seen in training
  map to `<unk>`, as in T5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
CLIP_G_PAD = "!"  # SD3's tokenizer_2 pads with "!" instead of end-of-text.
T5_PAD = "<pad>"
T5_EOS = "</s>"
T5_UNK = "<unk>"

# Folder names of the SD3 / Pyramid-Flow checkpoint; the tiny assets use the same layout.
SUBFOLDERS: tuple[str, str, str] = ("tokenizer", "tokenizer_2", "tokenizer_3")

CLIP_MODEL_MAX_LENGTH = 77
T5_MODEL_MAX_LENGTH = 512  # T5's tokenizer default; Pyramid-Flow passes max_length=128 explicitly.
TINY_CLIP_VOCAB = 1024  # learned byte-level BPE size; the two CLIP specials come on top.
TINY_T5_VOCAB = 1024  # pieces including <pad>, </s>, <unk>.

_ASSETS = Path(__file__).resolve().parents[2] / "assets"
# Printable ASCII seeds the T5 alphabet so digits and punctuation absent from the prompts stay tokens.
_T5_SEED_ALPHABET = ["▁"] + [chr(c) for c in range(0x21, 0x7F)]


def tiny_prompts_path() -> Path:
    """The shipped prompt file the tiny tokenizers are trained on (VBench prompts, see its NOTICE)."""
    return _ASSETS / "prompts" / "tiny_prompts.txt"


def tiny_tokenizer_root() -> Path:
    """Directory holding the shipped tiny `tokenizer/`, `tokenizer_2/`, `tokenizer_3/` folders."""
    return _ASSETS / "tokenizers" / "tiny"


def read_prompts(path: str | Path) -> list[str]:
    """Non-empty, stripped lines of a prompt file."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


@dataclass(frozen=True)
class TextTokenizers:
    """The three tokenizers of one Pyramid-Flow text stack, in checkpoint order."""

    clip_l: PreTrainedTokenizerBase
    clip_g: PreTrainedTokenizerBase
    t5: PreTrainedTokenizerBase

    def as_tuple(self) -> tuple[PreTrainedTokenizerBase, PreTrainedTokenizerBase, PreTrainedTokenizerBase]:
        return (self.clip_l, self.clip_g, self.t5)

    def save(self, root: str | Path) -> Path:
        """Write `root/tokenizer`, `root/tokenizer_2`, `root/tokenizer_3` (the checkpoint layout)."""
        root = Path(root)
        for name, tok in zip(SUBFOLDERS, self.as_tuple(), strict=True):
            save_tokenizer(tok, root / name)
        return root


# Keys transformers writes into tokenizer_config.json about how this process loaded the tokenizer, not about the
# tokenizer: a tokenizer reloaded from a cached step would otherwise save other bytes than the one it came from.
_RUNTIME_KEYS = ("is_local", "local_files_only", "name_or_path", "_commit_hash")


def save_tokenizer(tokenizer: Any, folder: Path) -> None:
    """`save_pretrained`, with the loading-time keys left out of tokenizer_config.json and its keys sorted, so
    the same tokenizer always saves the same bytes however it was loaded."""
    import json

    tokenizer.save_pretrained(folder)
    config = Path(folder) / "tokenizer_config.json"
    if config.is_file():
        data = {k: v for k, v in json.loads(config.read_text()).items() if k not in _RUNTIME_KEYS}
        config.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def load_tokenizers(root: str | Path | None = None) -> TextTokenizers:
    """Load the three tokenizers from a checkpoint-style directory, offline.

    `root` is a Pyramid-Flow / SD3 checkpoint folder (with `tokenizer/`, `tokenizer_2/`, `tokenizer_3/`) or
    a directory written by `TextTokenizers.save`; None loads the shipped tiny tokenizers.
    """
    root = tiny_tokenizer_root() if root is None else Path(root)
    missing = [name for name in SUBFOLDERS if not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root} lacks tokenizer folders {missing}")
    loaded = [AutoTokenizer.from_pretrained(str(root / name), local_files_only=True) for name in SUBFOLDERS]
    return TextTokenizers(*loaded)


def _train_clip_core(prompts: Sequence[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE with CLIP's normalisation and bos/eos template, specials at the top two ids."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.NFC(),
            normalizers.Replace(Regex(r"\s+"), " "),
            normalizers.Strip(),
            normalizers.Lowercase(),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(prompts), trainer)
    # Added after training, so they get the highest ids, as in CLIP (49406, 49407).
    tok.add_special_tokens([CLIP_BOS, CLIP_EOS])
    bos, eos = tok.token_to_id(CLIP_BOS), tok.token_to_id(CLIP_EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLIP_BOS} $A {CLIP_EOS}",
        pair=f"{CLIP_BOS} $A {CLIP_EOS} $B {CLIP_EOS}",
        special_tokens=[(CLIP_BOS, bos), (CLIP_EOS, eos)],
    )
    # ByteLevel restores the bytes; Strip drops the space add_prefix_space put in front.
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Strip(" ", 1, 0)])
    return tok


def _wrap_clip(core: Tokenizer, pad_token: str) -> PreTrainedTokenizerFast:
    if core.token_to_id(pad_token) is None:
        raise ValueError(f"pad token {pad_token!r} is not in the vocabulary")
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(core.to_str()),
        bos_token=CLIP_BOS,
        eos_token=CLIP_EOS,
        unk_token=CLIP_EOS,  # CLIP's convention; byte-level BPE never needs it.
        pad_token=pad_token,
        model_max_length=CLIP_MODEL_MAX_LENGTH,
    )


def train_clip_tokenizers(
    prompts: Sequence[str], vocab_size: int = TINY_CLIP_VOCAB
) -> tuple[PreTrainedTokenizerFast, PreTrainedTokenizerFast]:
    """CLIP-L-like and CLIP-G-like tokenizers sharing one vocabulary (they differ only in the pad token)."""
    core = _train_clip_core(prompts, vocab_size)
    return _wrap_clip(core, CLIP_EOS), _wrap_clip(core, CLIP_G_PAD)


def train_t5_tokenizer(prompts: Sequence[str], vocab_size: int = TINY_T5_VOCAB) -> PreTrainedTokenizerFast:
    """T5-like tokenizer: special ids pad 0, eos 1, unk 2 and the `$A </s>` template.

    Pieces are BPE over sentencepiece-style "▁word" units rather than T5's unigram: the `tokenizers` unigram
    trainer sums scores in hash-map order, so its scores (and the shipped file) differ from run to run, while
    BPE training is exactly reproducible. The encoder only sees ids, so the piece algorithm does not matter.
    """
    tok = Tokenizer(models.BPE(unk_token=T5_UNK))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[T5_PAD, T5_EOS, T5_UNK],
        initial_alphabet=_T5_SEED_ALPHABET,
        show_progress=False,
    )
    tok.train_from_iterator(list(prompts), trainer)
    ids = {name: tok.token_to_id(name) for name in (T5_PAD, T5_EOS, T5_UNK)}
    if ids != {T5_PAD: 0, T5_EOS: 1, T5_UNK: 2}:
        raise RuntimeError(f"trainer placed T5 specials at {ids}")
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {T5_EOS}", pair=f"$A {T5_EOS} $B {T5_EOS}", special_tokens=[(T5_EOS, 1)]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=T5_EOS,
        unk_token=T5_UNK,
        pad_token=T5_PAD,
        model_max_length=T5_MODEL_MAX_LENGTH,
    )


def train_tiny_tokenizers(prompts: Sequence[str] | None = None) -> TextTokenizers:
    """Train the tiny tokenizer set; None trains on the shipped prompt file (what the assets hold)."""
    prompts = read_prompts(tiny_prompts_path()) if prompts is None else list(prompts)
    clip_l, clip_g = train_clip_tokenizers(prompts)
    return TextTokenizers(clip_l=clip_l, clip_g=clip_g, t5=train_t5_tokenizer(prompts))
