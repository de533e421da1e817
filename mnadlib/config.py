"""Configuration dataclasses with the paper's defaults, and named presets.

The defaults follow MNAD (Park et al., CVPR 2020, Sec. 4.1) and the authors' ``Train.py`` /
``Evaluate.py``: 256x256 inputs, batch 4, Adam lr 2e-4 with cosine annealing, 10 memory items
of 512 channels, t = 5 frames for prediction. ``cpu`` is a small preset that trains in minutes
on two CPU cores; it changes sizes, width (0.25), batch (8) and epochs, never the method. It
trains 24 epochs: after 8, the model still predicted normal frames 4-5 dB worse than copying the
previous frame does (4.9 dB on synthped, 4.2 dB on injected real footage; docs/frame_auc.md).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

Method = Literal["pred", "recon"]
METHODS: tuple[str, ...] = get_args(Method)
SEED_RANGE = (0, 2**32 - 1)  # numpy's seeds, inclusive: what every seed parameter accepts


class ConfigError(ValueError):
    """A configuration value is out of range or inconsistent."""


@dataclass
class ModelConfig:
    """Architecture of the MNAD network."""

    method: Method = "pred"  # "pred": 4 frames in, the 5th predicted; "recon": 1 frame in and out
    t_length: int = 5  # frames per clip (pred: t_length-1 inputs + 1 target; recon uses 1)
    n_channel: int = 3  # image channels (BGR)
    msize: int = 10  # number of memory items M
    width: float = 1.0  # channel multiplier: 1.0 gives the paper's 64-128-256-512 encoder
    use_memory: bool = True  # False: decoder takes the 512-channel query only (MNADrc ablation)
    use_skips: bool = True  # U-Net skips in the prediction model (MNADrc ablation turns them off)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be 'pred' or 'recon', got {self.method!r}")
        if self.method == "pred" and self.t_length < 2:
            raise ConfigError(f"pred needs t_length >= 2 (inputs + target), got {self.t_length}")
        if self.method == "recon":
            self.t_length = 1
            self.use_skips = False
        if self.msize < 2:
            raise ConfigError(f"msize must be >= 2 (the separateness loss needs two items), got {self.msize}")
        if not math.isfinite(self.width) or self.width <= 0:
            raise ConfigError(f"width must be positive and finite, got {self.width}")

    @property
    def channels(self) -> tuple[int, int, int, int]:
        """Encoder widths (paper: 64, 128, 256, 512)."""
        return tuple(max(1, int(round(c * self.width))) for c in (64, 128, 256, 512))  # type: ignore[return-value]

    @property
    def fdim(self) -> int:
        """Feature (query and memory item) dimension C."""
        return self.channels[3]

    @property
    def in_frames(self) -> int:
        """Frames the encoder sees: t_length-1 for pred, 1 for recon."""
        return self.t_length - 1 if self.method == "pred" else 1


@dataclass
class TrainConfig:
    """Optimisation settings of the authors' Train.py."""

    epochs: int = 60  # training epochs (Ped2: 60)
    batch_size: int = 4  # clips per step
    lr: float = 2e-4  # Adam learning rate, cosine-annealed over the epochs
    loss_compact: float = 0.1  # lambda_c, feature compactness weight
    loss_separate: float = 0.1  # lambda_s, feature separateness weight
    size: tuple[int, int] = (256, 256)  # (H, W) the frames are resized to
    num_workers: int = 0  # DataLoader worker processes reading frames (the same weights for any count)
    seed: int = 0  # seed for weights, memory init and shuffling
    checkpoint_every: int = 1  # write a resumable checkpoint every N epochs
    max_steps_per_epoch: int = 0  # 0 = full epochs; >0 caps steps (smoke runs)
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", "mps"

    def __post_init__(self) -> None:
        self.size = validate_size(self.size)
        for name in ("epochs", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0 (0: frames are read in the training loop), got {self.num_workers}")
        if not SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]:
            raise ConfigError(f"seed must be in 0 .. 2**32 - 1 (numpy's range), got {self.seed}")
        if self.max_steps_per_epoch < 0:
            raise ConfigError(f"max_steps_per_epoch (--max-steps) must be >= 0 (0: full epochs), got "
                              f"{self.max_steps_per_epoch}")


@dataclass
class EvalConfig:
    """The authors' evaluation protocol (Evaluate.py), plus clearly named deviations."""

    alpha: float = 0.6  # weight of normalised PSNR in the regularity score (paper: 0.6 pred, 0.7 recon)
    th: float = 0.01  # test-time memory update when the point score is below this
    size: tuple[int, int] = (256, 256)  # (H, W) frames are resized to
    test_time_update: bool = True  # update memory with normal-looking frames during the test
    reset_memory_per_video: bool = False  # deviation: the authors carry memory across videos
    batch_size: int = 1  # >1 only allowed without test-time update (the fast path)
    num_workers: int = 0  # DataLoader workers reading frames
    device: str = "auto"  # "auto" (where the model is), "cpu", "cuda", "mps"; evaluate() refuses a model elsewhere, the CLI moves it

    def __post_init__(self) -> None:
        self.size = validate_size(self.size)
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")
        if not math.isfinite(self.th):
            raise ConfigError(f"th must be a finite number (the paper's is 0.01), got {self.th}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0 (0: frames are read in the scoring loop), got {self.num_workers}")
        if self.batch_size > 1 and self.test_time_update:
            raise ConfigError(
                "batch_size > 1 needs test_time_update=False: the authors' update changes the memory "
                "between consecutive frames, so frames must be scored one by one"
            )


def validate_size(size: Any) -> tuple[int, int]:
    """Return (H, W) as ints; both must be positive multiples of 8 (three 2x poolings)."""
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"size must be two integers (H, W), got {size!r}") from None
    if h <= 0 or w <= 0 or h % 8 or w % 8:
        raise ConfigError(
            f"size {h}x{w} is not usable: H and W must be positive multiples of 8 "
            "(the encoder pools three times by 2 and the decoder must restore the size)"
        )
    return (h, w)


@dataclass
class Preset:
    """A named bundle of model, training and evaluation settings."""

    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig = field(default_factory=EvalConfig)


def preset(name: str, method: Method = "pred") -> Preset:
    """Return the ``paper`` (Ped2 settings) or ``cpu`` (small, minutes on 2 cores) preset."""
    alpha = 0.6 if method == "pred" else 0.7
    t_length = 5 if method == "pred" else 1
    if name == "paper":
        return Preset(
            ModelConfig(method=method, t_length=t_length),
            TrainConfig(epochs=60, batch_size=4, size=(256, 256)),
            EvalConfig(alpha=alpha, size=(256, 256)),
        )
    if name == "cpu":
        return Preset(
            ModelConfig(method=method, t_length=t_length, width=0.25),
            TrainConfig(epochs=24, batch_size=8, size=(64, 64)),
            EvalConfig(alpha=alpha, size=(64, 64)),
        )
    raise ConfigError(f"unknown preset {name!r}; choose 'paper' or 'cpu'")


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass to a JSON-friendly dict (tuples become lists)."""
    return json_safe(dataclasses.asdict(obj))


def json_safe(value: Any) -> Any:
    """Recursively turn tuples into lists so the value round-trips through JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def scratch_dir(*parts: str) -> Path:
    """``<system temp dir>/mnadlib-runs/<parts>``: where outputs go that nobody gave a folder for.

    Not ``<temp dir>/mnadlib``: a folder with the package's name there shadows the package for
    ``python -m mnadlib`` started from the temp dir (an editable install loses to it).
    """
    return Path(tempfile.gettempdir(), "mnadlib-runs", *parts)
