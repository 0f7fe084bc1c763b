"""The checks both substitution passes make before anything runs: the family is one they know, the named
replacement is registered and stands in for the component the pass replaces, and MiniBench can score the family
when the recipe asks for it. One place, so both passes word a bad recipe the same way."""

from __future__ import annotations

from neocompress.core.errors import Problem, UserInputError
from neocompress.ir.pipeline_ir import PipelineIR


def replacement_problems(pass_name: str, ir: PipelineIR, replacement: str, replaces: str,
                         path: str) -> list[Problem]:  # fmt: skip
    """Why `replacement` cannot stand in for `replaces` in this pipeline (empty: it can be tried)."""
    from neocompress.ir.substitution import get_replacement

    if ir.family != "pyramid-flow":
        return [Problem(f"{pass_name} supports the pyramid-flow family, not '{ir.family}'", path="name")]
    try:
        found = get_replacement(replacement)
    except UserInputError as e:
        return [Problem(str(e), path=path)]
    if found.replaces != replaces:
        return [Problem(f"'{found.name}' replaces '{found.replaces}', not '{replaces}'", path=path)]
    return []


def minibench_problems(ir: PipelineIR, prompts: int) -> list[Problem]:
    """MiniBench before/after was asked for (`minibench: N`) on a family it cannot score."""
    if not prompts:
        return []
    from neocompress.models.family import get_family

    refusal = get_family(ir.family).minibench_refusal()
    return [Problem(refusal, path="minibench")] if refusal else []
