"""docs/ is what tools/gen_docs.py writes from the code: every pass, family and target has its page, and no page
is stale (a changed config field or docstring without regenerating fails here)."""

from __future__ import annotations

from tests.conftest import REPO, load_script

ROOT = REPO


def _gen():
    return load_script("tools/gen_docs.py")


def test_every_pass_family_and_target_has_a_current_page() -> None:
    from neocompress.models.family import family_names
    from neocompress.passes import BUILTIN_PASSES

    pages = _gen().pages()
    expected = {f"passes/{n}.md" for n in BUILTIN_PASSES} | {f"families/{n}.md" for n in family_names()}
    assert expected | {"targets/onnxruntime.md", "targets/hexagon.md"} <= set(pages)
    stale = [rel for rel, text in pages.items() if not (ROOT / "docs" / rel).is_file()
             or (ROOT / "docs" / rel).read_text() != text]  # fmt: skip
    assert not stale, f"docs/ is stale ({stale}): run .venv/bin/python tools/gen_docs.py"


def test_a_pass_page_lists_every_config_key() -> None:
    from neocompress.core.registry import get_pass

    text = _gen().pass_page("block_prune")
    for key in get_pass("block_prune").Config.model_fields:
        assert f"| `{key}` |" in text
    assert "| `recovery.stage2.mapping` |" in text  # nested configs are flattened
