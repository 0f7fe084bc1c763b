"""Rebuild (or check) the tiny tokenizers shipped in neocompress/assets/tokenizers/tiny.

The tiny text encoders need tokenizers that exist offline; they are trained deterministically on the shipped
prompt file, so this script regenerates byte-identical assets. `--check` rebuilds in memory and fails if the
shipped files differ (use it in CI after touching the prompt file or the training code).

    python tools/build_tiny_tokenizers.py            # write the assets
    python tools/build_tiny_tokenizers.py --check    # verify them
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from neocompress.models.pyramid_flow.tokenizers import (
    SUBFOLDERS,
    read_prompts,
    tiny_prompts_path,
    tiny_tokenizer_root,
    train_tiny_tokenizers,
)


def _differences(built: Path, shipped: Path) -> list[str]:
    diffs = []
    for name in SUBFOLDERS:
        for file in sorted((built / name).iterdir()):
            target = shipped / name / file.name
            if not target.is_file() or target.read_bytes() != file.read_bytes():
                diffs.append(f"{name}/{file.name}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=Path, default=tiny_prompts_path(), help="prompt file, one per line")
    parser.add_argument("--out", type=Path, default=tiny_tokenizer_root(), help="output root directory")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args(argv)

    tokenizers = train_tiny_tokenizers(read_prompts(args.prompts))
    if not args.check:
        tokenizers.save(args.out)
        sizes = ", ".join(f"{n}: {len(t)}" for n, t in zip(SUBFOLDERS, tokenizers.as_tuple(), strict=True))
        print(f"wrote {args.out} ({sizes})")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        diffs = _differences(tokenizers.save(tmp), args.out)
    if diffs:
        print(f"tiny tokenizers in {args.out} are stale: {diffs}", file=sys.stderr)
        return 1
    print(f"{args.out} matches a fresh build")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
