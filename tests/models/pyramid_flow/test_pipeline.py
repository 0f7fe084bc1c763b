"""TextToVideoPipeline on builtin:tiny-random: shapes, range, seeding, the denoiser calls CFG makes, input checks."""

from __future__ import annotations

import pytest
import torch

from neocompress.core.errors import UserInputError
from neocompress.models.family import get_family
from neocompress.models.pyramid_flow.pipeline import TextToVideoPipeline
from neocompress.models.pyramid_flow.scheduler import StepSchedule

FAMILY = get_family("pyramid-flow")
FAST = StepSchedule((1, 1, 1), (1, 1, 1), 1.0, 1.0)
PROMPTS = ["a red circle moving left on a grey background", "a blue square"]


@pytest.fixture(scope="module")
def pipe() -> TextToVideoPipeline:
    return FAMILY.pipeline(FAMILY.load("builtin:tiny-random"))


class CallRecorder:
    """A forward hook on the denoiser: the batch and the current clip's shape of every call."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls: list[tuple[int, tuple[int, ...]]] = []
        self.handle = module.register_forward_hook(self)

    def __call__(self, module, args, output) -> None:
        sample = args[0]
        assert output.shape == sample[-1].shape  # velocity of the current clip
        self.calls.append((sample[-1].shape[0], tuple(sample[-1].shape[2:])))

    def __enter__(self) -> CallRecorder:
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


@pytest.mark.parametrize(("frames", "units"), [(1, 1), (9, 2), (17, 3)])
def test_shapes_and_range(pipe: TextToVideoPipeline, frames: int, units: int) -> None:
    assert pipe.resolve_video(frames, None, None) == {"frames": frames, "height": 64, "width": 64, "units": units}
    video = pipe.generate(PROMPTS, frames=frames, schedule=FAST, seed=0)
    assert video.shape == (2, 3, frames, 64, 64) and video.dtype == torch.float32
    assert torch.isfinite(video).all()
    assert video.min() >= -1.0 and video.max() <= 1.0
    assert video.std() > 1e-3  # not a constant image
    assert not torch.equal(video[0], video[1])  # two prompts, two videos


def test_non_square_size_and_default_video(pipe: TextToVideoPipeline) -> None:
    video = pipe.generate(PROMPTS[:1], height=64, width=128, schedule=FAST)
    assert video.shape == (1, 3, 9, 64, 128)  # height and width are not swapped
    assert pipe.generate(PROMPTS[:1], schedule=FAST).shape == (1, 3, 9, 64, 64)  # spec default: 9 frames, 64x64


def test_seeded(pipe: TextToVideoPipeline) -> None:
    a = pipe.generate(PROMPTS, schedule=FAST, seed=3)
    b = pipe.generate(PROMPTS, schedule=FAST, seed=3)
    c = pipe.generate(PROMPTS, schedule=FAST, seed=4)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3
    assert (a[0] - c[0]).abs().max() > 1e-3 and (a[1] - c[1]).abs().max() > 1e-3


@pytest.mark.parametrize("batch", [1, 2])
def test_cfg_off_makes_one_call_per_step_with_batch_b(pipe: TextToVideoPipeline, batch: int) -> None:
    schedule = StepSchedule((2, 1, 3), (1, 2, 1), 1.0, 1.0)
    with CallRecorder(pipe.denoiser) as rec:
        pipe.generate(PROMPTS[:batch], frames=17, schedule=schedule)
    assert len(rec.calls) == schedule.calls(3) == 6 + 4 + 4
    assert {b for b, _ in rec.calls} == {batch}
    # stage resolutions of the current clip: 2x2, 4x4, 8x8 latents, with the schedule's step counts per unit
    expected = [(1, 2, 2)] * 2 + [(1, 4, 4)] + [(1, 8, 8)] * 3 + ([(1, 2, 2)] + [(1, 4, 4)] * 2 + [(1, 8, 8)]) * 2
    assert [shape for _, shape in rec.calls] == expected


@pytest.mark.parametrize("batch", [1, 2])
def test_cfg_on_doubles_the_batch_not_the_calls(pipe: TextToVideoPipeline, batch: int) -> None:
    schedule = StepSchedule((2, 1, 1), (1, 1, 2), 3.0, 2.0)
    with CallRecorder(pipe.denoiser) as rec:
        pipe.generate(PROMPTS[:batch], frames=9, schedule=schedule)
    assert len(rec.calls) == schedule.calls(2) == 8
    assert [b for b, _ in rec.calls] == [2 * batch] * 8


def test_cfg_follows_each_units_guidance(pipe: TextToVideoPipeline) -> None:
    schedule = StepSchedule((1, 1, 1), (1, 1, 1), 5.0, 1.0)  # CFG for the first frame only
    with CallRecorder(pipe.denoiser) as rec:
        pipe.generate(PROMPTS, frames=17, schedule=schedule)
    assert [b for b, _ in rec.calls] == [4] * 3 + [2] * 6
    assert schedule.nfe(3) == 12 and schedule.calls(3) == 9


def test_guidance_changes_the_video(pipe: TextToVideoPipeline) -> None:
    off = pipe.generate(PROMPTS[:1], schedule=FAST, seed=1)
    on = pipe.generate(PROMPTS[:1], schedule=StepSchedule((1, 1, 1), (1, 1, 1), 4.0, 4.0), seed=1)
    assert (on - off).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("kwargs", "messages"),
    [
        (dict(frames=10), ["frames must be 1 + 8k (e.g. 9, 17, 49), got 10"]),
        (dict(frames=0), ["frames must be 1 + 8k (e.g. 9, 17, 49), got 0"]),
        (dict(frames=-7), ["frames must be 1 + 8k (e.g. 9, 17, 49), got -7"]),
        (dict(height=48), ["height must be a positive multiple of 64, got 48"]),
        (dict(width=0), ["width must be a positive multiple of 64, got 0"]),
        (dict(height=96, width=32), ["height must be a positive multiple of 64, got 96", "width must be"]),
        (dict(frames=8, height=100), ["frames must be 1 + 8k", "height must be a positive multiple of 64, got 100"]),
    ],
)
def test_bad_video_settings_are_user_errors(pipe: TextToVideoPipeline, kwargs, messages) -> None:
    with CallRecorder(pipe.denoiser) as rec:
        with pytest.raises(UserInputError) as e:
            pipe.generate(PROMPTS[:1], schedule=FAST, **kwargs)
        assert rec.calls == []  # refused before any work
    for m in messages:
        assert m in str(e.value)
    assert e.value.exit_code == 2


def test_no_prompts_is_a_user_error(pipe: TextToVideoPipeline) -> None:
    with pytest.raises(UserInputError, match="at least one prompt"):
        pipe.generate([], schedule=FAST)


def test_a_skeleton_cannot_generate() -> None:
    with pytest.raises(UserInputError, match="no tokenizers"):
        FAMILY.pipeline(FAMILY.skeleton("builtin:tiny-random"))
