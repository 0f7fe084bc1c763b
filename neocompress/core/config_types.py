"""Number types every config shares, each with the range that runs: a recipe value outside it is refused at
validation, with its line, instead of failing deep inside a pass (a negative step count in the scheduler, a
width of 1e30 in torch).

Why one place: the same kind of number (sampling steps per pyramid stage, a block index, a channel width)
appears in several passes; one definition keeps their ranges the same and lets a test check that every numeric
field of every config has a stated lower bound.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

SamplingSteps = Annotated[int, Field(ge=1, le=1000, description="sampling steps of one pyramid stage")]
BlockIndex = Annotated[int, Field(ge=-4096, lt=4096, description="a block index (negative: from the end)")]
TeacherBlock = Annotated[int, Field(ge=0, lt=4096, description="a block index of the teacher")]
Channels = Annotated[int, Field(ge=1, le=4096, description="a channel width")]
Weight = Annotated[float, Field(ge=0, le=1e6, description="a non-negative weight")]
Guidance = Annotated[float, Field(ge=0, le=100, description="a classifier-free guidance scale (<= 1: off)")]
