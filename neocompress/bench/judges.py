"""The MiniBench judge network: reads a video and says its background, which colours it holds and each colour's shape.

Why a small per-frame CNN with temporal pooling: background, colour and shape are visible in every single frame,
so a 2-D network applied frame by frame and averaged over time reads them as well as a 3-D one at a fraction of
the cost (the judges train in minutes on a 2-core CPU). Motion is not the network's job: `tracking` measures it
from pixels, which needs no training and cannot be fooled by appearance.

Heads (class indices are the world grammar's vocabulary order):

- `background`: 5-way softmax.
- `colour`: 6 independent sigmoids (multi-label: a scene holds one or two objects of distinct colours).
- `shape`: for each of the 6 colours, a 4-way softmax over shapes ("the shape of the red object"). Binding shape
  to colour handles two-object scenes without any ordering of the objects; a colour's shape logits are only
  trained, and only read, when that colour is in the scene.
- `features`: the penultimate layer (after temporal pooling), the embedding of the distribution distance.

Scoring rules (shared by the judges' own accuracy and by MiniBench, so the two always mean the same thing):

- background: argmax == the caption's background;
- colour, per object: the object's colour logit is above every colour logit the caption does not name (for a
  one-object caption this is argmax; by symmetry its chance is 1/6 for one object, 1/5 for each of two);
- shape, per object: argmax of the shape head of the object's colour == its shape (chance 1/4).

Stated accuracy: the shipped judges read background, colour and shape of real held-out videos with at least
`STATED_ACCURACY` (95%); `judges.json` records what they measured on 1024 held-out videos, and the tests
recompute it on a fixed sample.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from neocompress.world import BACKGROUNDS, COLOURS, SHAPES, SceneSpec

# The judges read videos at this frame side (others are resized to it).
JUDGE_SIZE = 64
WEIGHTS_FILE = "judges.safetensors"
INFO_FILE = "judges.json"
# The accuracy the shipped judges are promised (and tested) to reach on real held-out videos, per judged part.
STATED_ACCURACY = 0.95
# Target of an absent colour's shape head: ignored by the loss.
IGNORE = -100


@dataclass(frozen=True)
class JudgeConfig:
    """Architecture of the judge network (stored in the JSON beside the weights)."""

    width: int = 24
    feature_dim: int = 128

    def to_dict(self) -> dict[str, int]:
        return {"width": self.width, "feature_dim": self.feature_dim}


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.GroupNorm(4, cout), nn.SiLU()
    )


class JudgeNet(nn.Module):
    """Per-frame CNN -> spatial mean+max pooling -> mean over frames -> feature layer -> three heads.

    Spatial max pooling keeps a small object's evidence from being diluted by the background (mean pooling alone
    would have to find a 26-px shape in a 64-px frame through averages); mean pooling carries the background.
    """

    def __init__(self, config: JudgeConfig | None = None) -> None:
        super().__init__()
        self.config = config or JudgeConfig()
        w = self.config.width
        self.frame_encoder = nn.Sequential(
            _block(3, w, 2),  # 32
            _block(w, 2 * w, 1),
            _block(2 * w, 2 * w, 2),  # 16
            _block(2 * w, 4 * w, 1),
            _block(4 * w, 4 * w, 2),  # 8
            _block(4 * w, 4 * w, 1),
        )
        self.feature = nn.Sequential(nn.Linear(8 * w, self.config.feature_dim), nn.SiLU())
        self.background = nn.Linear(self.config.feature_dim, len(BACKGROUNDS))
        self.colour = nn.Linear(self.config.feature_dim, len(COLOURS))
        self.shape = nn.Linear(self.config.feature_dim, len(COLOURS) * len(SHAPES))

    def forward(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """video [B, 3, F, H, W] in [-1, 1] -> {background [B, 5], colour [B, 6], shape [B, 6, 4], features [B, D]}."""
        b, c, f, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * f, c, h, w)
        maps = self.frame_encoder(frames)
        pooled = torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1)
        per_video = pooled.reshape(b, f, -1).mean(dim=1)
        features = self.feature(per_video)
        return {
            "background": self.background(features),
            "colour": self.colour(features),
            "shape": self.shape(features).reshape(b, len(COLOURS), len(SHAPES)),
            "features": features,
        }


def prepare(video: torch.Tensor) -> torch.Tensor:
    """A batch [B, 3, F, H, W] as the judges read it: float32, clamped to [-1, 1], frames of JUDGE_SIZE pixels.

    Generated videos may overshoot [-1, 1] or come at another size; the judges were trained on exactly this
    range and size, so everything is brought there first (area-averaged when shrinking, bilinear when growing).
    """
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"expected videos [B, 3, F, H, W], got {tuple(video.shape)}")
    video = video.detach().float().clamp(-1.0, 1.0)
    b, c, f, h, w = video.shape
    if (h, w) != (JUDGE_SIZE, JUDGE_SIZE):
        frames = video.transpose(1, 2).reshape(b * f, c, h, w)
        frames = F.interpolate(frames, size=(JUDGE_SIZE, JUDGE_SIZE), mode="bilinear", antialias=True)
        video = frames.reshape(b, f, c, JUDGE_SIZE, JUDGE_SIZE).transpose(1, 2)
    return video.contiguous()


def scene_targets(scenes: Sequence[SceneSpec]) -> dict[str, torch.Tensor]:
    """Training targets: background index [B], colour multi-hot [B, 6], per-colour shape index [B, 6] (IGNORE
    where the colour is absent)."""
    background = torch.tensor([BACKGROUNDS.index(s.background) for s in scenes], dtype=torch.long)
    colour = torch.zeros(len(scenes), len(COLOURS))
    shape = torch.full((len(scenes), len(COLOURS)), IGNORE, dtype=torch.long)
    for i, scene in enumerate(scenes):
        for obj in scene.objects:
            k = COLOURS.index(obj.colour)
            colour[i, k] = 1.0
            shape[i, k] = SHAPES.index(obj.shape)
    return {"background": background, "colour": colour, "shape": shape}


def judge_loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The three training losses (background CE, colour BCE, shape CE on present colours only)."""
    return {
        "background": F.cross_entropy(outputs["background"], targets["background"]),
        "colour": F.binary_cross_entropy_with_logits(outputs["colour"], targets["colour"]),
        "shape": F.cross_entropy(
            outputs["shape"].reshape(-1, len(SHAPES)), targets["shape"].reshape(-1), ignore_index=IGNORE
        ),
    }


@dataclass(frozen=True)
class SceneVerdict:
    """What the judges make of one video against its caption: one bool per object for colour and shape."""

    background: bool
    colour: tuple[bool, ...]
    shape: tuple[bool, ...]


def verdicts(outputs: dict[str, torch.Tensor], scenes: Sequence[SceneSpec]) -> list[SceneVerdict]:
    """Apply the scoring rules of the module docstring to a batch of judge outputs."""
    out: list[SceneVerdict] = []
    for i, scene in enumerate(scenes):
        colour_logits = outputs["colour"][i]
        named = {COLOURS.index(o.colour) for o in scene.objects}
        absent = [k for k in range(len(COLOURS)) if k not in named]
        rival = colour_logits[absent].max()
        colour_ok = tuple(bool(colour_logits[COLOURS.index(o.colour)] > rival) for o in scene.objects)
        shape_ok = tuple(
            int(outputs["shape"][i, COLOURS.index(o.colour)].argmax()) == SHAPES.index(o.shape) for o in scene.objects
        )
        background_ok = int(outputs["background"][i].argmax()) == BACKGROUNDS.index(scene.background)
        out.append(SceneVerdict(background=background_ok, colour=colour_ok, shape=shape_ok))
    return out


def default_judges_dir() -> Path:
    """Where the shipped judge weights and their record live (inside the package)."""
    return Path(str(resources.files("neocompress.assets").joinpath("judges")))


class Judges:
    """Trained judge weights plus their record; the object MiniBench scores with.

    Runs on CPU in eval mode under `torch.no_grad`, in chunks (a MiniBench batch of generated videos can be large).
    """

    def __init__(self, net: JudgeNet, info: dict[str, Any] | None = None) -> None:
        self.net = net.eval()
        self.info = dict(info or {})

    @classmethod
    def load(cls, directory: str | Path | None = None) -> Judges:
        """Load `judges.safetensors` + `judges.json` from `directory` (default: the weights shipped in the package)."""
        root = Path(directory) if directory is not None else default_judges_dir()
        weights, record = root / WEIGHTS_FILE, root / INFO_FILE
        if not weights.is_file() or not record.is_file():
            raise FileNotFoundError(
                f"no judge weights in {root} (expected {WEIGHTS_FILE} and {INFO_FILE}); "
                "train them with `python -m neocompress.bench.train_judges`"
            )
        info = json.loads(record.read_text())
        net = JudgeNet(JudgeConfig(**info["architecture"]))
        net.load_state_dict(load_file(str(weights)), strict=True)
        return cls(net, info)

    def save(self, directory: str | Path) -> None:
        """Write the weights and the record (the record is written last: a directory with it is complete)."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.net.state_dict().items()}
        save_file(state, str(root / WEIGHTS_FILE), metadata={"format": "pt"})
        info = {**self.info, "architecture": self.net.config.to_dict()}
        (root / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")

    @property
    def judge_accuracy(self) -> dict[str, float]:
        """The accuracy of each part measured on real held-out videos when the judges were trained."""
        return dict(self.info.get("judge_accuracy", {}))

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor, chunk: int = 32) -> dict[str, torch.Tensor]:
        """Judge outputs for videos [B, 3, F, H, W] in [-1, 1] (any size: see `prepare`)."""
        videos = prepare(videos)
        parts: list[dict[str, torch.Tensor]] = [self.net(videos[i : i + chunk]) for i in range(0, len(videos), chunk)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def verdicts(self, videos: torch.Tensor, scenes: Sequence[SceneSpec]) -> list[SceneVerdict]:
        return verdicts(self(videos), scenes)
