"""Localize anomalies over a whole video (file or frame folder) with a trained MNAD model.

Runs the authors' scoring loop (``evaluate.iter_frames``: frames in order, test-time memory
update) over one video and turns every scored frame into an anomaly map at the input frame's own
resolution (``localize.py``: squared error, 1 - SSIM, or distance to the nearest memory item,
MNAD Sec. 3.2), a pixel threshold (a number, the fork's SSIM * 255 < 230 rule, Otsu, or a
percentile of the map on normal frames), all connected regions with box and score (or the fork's
largest region only) and a frame-level decision on the regularity score (Eq. 12). ``streaming``
normalises PSNR and feature distance with statistics of normal frames (``StreamingNormalizer``),
so a score needs no future frames; without it each video is min-max normalised as the authors do.

Model-resolution predictions are kept, so :func:`relocalize` re-thresholds with another map kind,
threshold or minimum area without running the model again (the interactive widget does this);
past a memory budget they go to a temporary file (``framestore.py``), so long footage fits.
:func:`fit_on_frames` trains a model on a normal stretch of the same footage, for a camera that
has no training split. Drawing and output files: ``localize_output.py``; metrics on a labelled
dataset: ``localize_eval.py``; the ``localize`` sub-command: ``localize_cli.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

import cv2
import numpy as np
import torch
from scipy import ndimage
from skimage.filters import threshold_otsu
from tqdm import tqdm

from . import scoring
from .checkpoint import open_checkpoint
from .config import ConfigError, EvalConfig, preset, validate_size
from .frames import DataError, FrameSource, VideoFile, open_source
from .framestore import FrameStore
from .evaluate import iter_frames
from .localize import (FORK_LEVEL, VALID_RANGE, LocalizeError, MapKind, Region, StreamingNormalizer, calibrate_threshold,
                       error_map, find_regions, fork_threshold_mask, memory_map, otsu_threshold,
                       regions_to_records, segments, ssim_map, to_frame_size)
from .memory import nearest_distance
from .model import MNAD
from .train import resolve_device, train

THRESHOLD_MODES = ("calibrated", "otsu", "fork")
FORK_THRESHOLD = 1.0 - FORK_LEVEL / 255.0  # the fork's rule on a 1 - SSIM map (~0.098)


@dataclass
class LocalizeConfig:
    """How maps become regions and frames become decisions."""

    map_kind: MapKind = "ssim"  # "ssim" (1 - SSIM), "error" (squared prediction error) or "memory"
    threshold: float | str = "calibrated"  # a number in the map's range, "calibrated", "otsu" or "fork"
    percentile: float = 99.9  # "calibrated": this percentile of map values on normal frames
    min_area: int | None = None  # smallest region in original-frame pixels; None = 0.1% of the frame
    largest_only: bool = False  # keep only the largest region per frame (the fork's mode)
    smooth_sigma: float = 1.0  # Gaussian smoothing of the map, in model-input pixels, before resizing
    open_close: int = 3  # opening/closing kernel in frame pixels (0 = none)
    alpha: float = 0.6  # weight of PSNR in the regularity score (paper: 0.6 pred, 0.7 recon)
    streaming: bool = True  # normalise with normal-frame statistics (needs normal frames), else per video
    frame_percentile: float = 1.0  # frame threshold: this percentile of normal frames' regularity
    frame_threshold: float | None = None  # explicit regularity threshold (overrides frame_percentile)
    size: tuple[int, int] | None = None  # model input (H, W); None = the checkpoint's training size
    th: float = 0.01  # test-time memory update below this point score (the authors' th)
    test_time_update: bool = True  # update memory with normal-looking frames, as Evaluate.py does
    device: str = "auto"  # "auto": score where the model is; "cpu", "cuda", "mps": the model must be there already

    def __post_init__(self) -> None:
        if self.map_kind not in VALID_RANGE:
            raise LocalizeError(f"map kind must be one of {sorted(VALID_RANGE)}, got {self.map_kind!r}")
        if isinstance(self.threshold, str):
            if self.threshold not in THRESHOLD_MODES:
                raise LocalizeError(f"threshold must be a number, {', '.join(THRESHOLD_MODES)}; got {self.threshold!r}")
            if self.threshold == "fork" and self.map_kind != "ssim":
                raise LocalizeError("threshold 'fork' (SSIM * 255 < 230) needs map kind 'ssim'")
        else:
            lo, hi = VALID_RANGE[self.map_kind]
            if not (isinstance(self.threshold, (int, float)) and not isinstance(self.threshold, bool)
                    and lo <= self.threshold <= hi):
                raise LocalizeError(f"threshold for {self.map_kind!r} maps must be in [{lo}, {hi}], got {self.threshold}")
        for name, v, lo, hi in (("percentile", self.percentile, 0, 100), ("alpha", self.alpha, 0, 1),
                                ("frame_percentile", self.frame_percentile, 0, 100)):
            if not lo <= v <= hi:
                raise LocalizeError(f"{name} must be in [{lo}, {hi}], got {v}")
        if not all(v >= 0 for v in (0 if self.min_area is None else self.min_area, self.open_close, self.smooth_sigma)):
            raise LocalizeError(f"min_area, open_close and smooth_sigma must be >= 0 (not NaN), got {self.min_area}, "
                                f"{self.open_close}, {self.smooth_sigma}")
        if self.frame_threshold is not None and not math.isfinite(self.frame_threshold):
            raise LocalizeError(f"frame_threshold must be a finite regularity score, got {self.frame_threshold}")
        if self.size is not None:
            self.size = _size(self.size)


def _size(size: Any) -> tuple[int, int]:
    """validate_size with LocalizeError."""
    try:
        return validate_size(size)
    except ConfigError as exc:
        raise LocalizeError(str(exc)) from None


class FrameRange(FrameSource):
    """Frames [start, end) of another source, numbered from 0."""

    def __init__(self, base: FrameSource, start: int, end: int) -> None:
        if not 0 <= start < end <= len(base):
            raise LocalizeError(f"frame range {start}:{end} is not inside {base.path} ({len(base)} frames)")
        super().__init__(base.path, f"{base.name}_{start}-{end}")
        self.base, self.start, self.end = base, start, end

    def __len__(self) -> int:
        return self.end - self.start

    def _decode(self, i: int) -> np.ndarray:
        return self.base.read(self.start + i)


def as_source(video: str | Path | FrameSource) -> FrameSource:
    """A FrameSource from a path (video file or frame folder) or as given; checks frame 0 decodes."""
    src = video if isinstance(video, FrameSource) else open_source(video)
    if len(src) == 0:
        raise DataError(f"{src.path} has no frames")
    src.read(0)
    return src


DEFAULT_FPS = 25.0  # frame rate assumed for a frame folder, or a video whose header has none
MAX_FPS = 1000.0


def header_fps(source: FrameSource) -> float | None:
    """Frames per second in a video file's header (OpenCV's value); None for a frame folder or no usable value."""
    base = source.base if isinstance(source, FrameRange) else source
    if isinstance(base, VideoFile):
        cap = cv2.VideoCapture(str(base.path))
        fps = cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        if fps and math.isfinite(fps) and 0 < fps < MAX_FPS:
            return float(fps)
    return None


def check_fps(fps: float | None) -> float | None:
    """``fps`` as given (None: the video's own), or LocalizeError when it is no usable frame rate."""
    if fps is not None and not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise LocalizeError(f"fps must be a frame rate above 0 and at most {MAX_FPS:g}, got {fps}; "
                            "give the rate the footage was recorded at")
    return fps


def parse_range(text: str) -> tuple[int, int]:
    """'START:END' to (start, end) frame indices."""
    try:
        a, b = (int(v) for v in text.split(":"))
    except ValueError:
        raise LocalizeError(f"frame range must be START:END (e.g. 0:300), got {text!r}") from None
    if not 0 <= a < b:
        raise LocalizeError(f"frame range must have 0 <= START < END, got {text!r}")
    return a, b


def parse_threshold(text: str) -> float | str:
    """A threshold flag: a number, or a mode name left as text (LocalizeConfig validates both)."""
    try:
        return float(text)
    except ValueError:
        return text


def load_model(checkpoint: str | Path, size: tuple[int, int] | None = None,
               device: str = "cpu") -> tuple[MNAD, torch.Tensor | None, tuple[int, int]]:
    """Our checkpoint's model on ``device`` ("auto": CUDA, then MPS, then CPU) and the (H, W) it was trained at;
    a different ``size`` is refused."""
    ckpt = open_checkpoint(checkpoint)
    trained = ckpt.train_size
    size = _size(size) if size is not None else None
    if trained and size and size != trained:
        raise LocalizeError(f"{checkpoint} was trained at {trained[0]}x{trained[1]} (H x W) but size "
                            f"{size[0]}x{size[1]} was asked for; pass --size {trained[0]} {trained[1]}")
    chosen = size or trained
    if chosen is None:
        raise LocalizeError(f"{checkpoint} does not record its training size; pass --size H W")
    return ckpt.model.to(resolve_device(device)), ckpt.items, chosen


def _u8(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) tensor in [-1, 1] to (H, W, C) uint8, as the fork quantises."""
    return np.round((x.detach().float().cpu().numpy().transpose(1, 2, 0) + 1) * 127.5).clip(0, 255).astype(np.uint8)


def _model_space(img: np.ndarray) -> np.ndarray:
    """uint8 image back to [-1, 1] float32."""
    return img.astype(np.float32) / 127.5 - 1.0


def model_map(kind: MapKind, pred: np.ndarray, target: np.ndarray, dist: np.ndarray | None, sigma: float) -> np.ndarray:
    """Anomaly map of one kind at model resolution from uint8 pred/target and the (h, w) memory distances."""
    if kind == "memory":
        if dist is None:
            raise LocalizeError("map kind 'memory' needs a model with memory")
        amap = memory_map(dist, pred.shape[:2])
    else:
        fn = error_map if kind == "error" else ssim_map
        amap = fn(_model_space(pred), _model_space(target))
    return ndimage.gaussian_filter(amap, sigma) if sigma > 0 else amap


@dataclass
class NormalReference:
    """PSNR, feature distances and model-resolution maps of normal frames, for calibration."""

    psnr: np.ndarray  # (N,) PSNR of each normal frame
    dist: np.ndarray  # (N,) feature distance of each normal frame
    preds: Sequence[np.ndarray]  # (h, w, C) uint8 predictions (a FrameStore)
    targets: Sequence[np.ndarray]  # (h, w, C) uint8 targets (a FrameStore)
    dists: Sequence[np.ndarray | None]  # (h/8, w/8) memory distances (a FrameStore); None without memory
    source: str = ""  # names of the normal videos or frame ranges
    _cache: dict = field(default_factory=dict, repr=False)

    def pixel_threshold(self, kind: MapKind, percentile: float, sigma: float) -> float:
        """Percentile of map values over the normal frames (memoised)."""
        key = (kind, percentile, sigma)
        if key not in self._cache:
            maps = [model_map(kind, p, t, d, sigma) for p, t, d in zip(self.preds, self.targets, self.dists)]
            self._cache[key] = calibrate_threshold(maps, percentile)
        return self._cache[key]

    def regularity(self, alpha: float) -> np.ndarray:
        """Streaming regularity of the normal frames themselves."""
        return normalizer(self, alpha).score(self.psnr, self.dist)


def normalizer(normal: NormalReference, alpha: float) -> StreamingNormalizer:
    """A StreamingNormalizer fitted on the normal frames; PSNR alone (alpha 1) for a model without memory."""
    if normal.dists and all(d is None for d in normal.dists):  # no memory: the distance term is a constant 0
        alpha = 1.0
    return StreamingNormalizer(alpha).fit(normal.psnr, normal.dist)


def _run(model: MNAD, items: torch.Tensor | None, source: FrameSource, size: tuple[int, int],
         cfg: LocalizeConfig, progress: bool, desc: str, keep: int = 1, first: int = 0) -> dict[str, Any]:
    """Score every frame of one source; keep statistics, and the model-resolution arrays of every keep-th
    frame, counting from ``first`` (the frames scored before this source)."""
    if len(source) < model.cfg.t_length:
        raise LocalizeError(f"{source.path} has {len(source)} frames but the model needs at least "
                            f"t_length={model.cfg.t_length}")
    ecfg = EvalConfig(alpha=cfg.alpha, th=cfg.th, size=size, test_time_update=cfg.test_time_update, device=cfg.device)
    out: dict[str, Any] = {k: [] for k in ("frames", "psnr", "dist")}
    # kept arrays in blocks, then in a temporary file past a memory budget (framestore.py);
    # a model without memory has no distances
    out["preds"], out["targets"] = FrameStore(), FrameStore()
    out["dists"] = [] if items is None or model.memory is None else FrameStore()
    steps = iter_frames(model, items, [source], ecfg)
    n = len(source) - model.cfg.t_length + 1
    for i, step in enumerate(tqdm(steps, total=n, desc=desc, disable=not progress, leave=False)):
        out["frames"].append(step.frame)
        out["psnr"].append(step.psnr)
        out["dist"].append(step.feature_distance)
        if (first + i) % keep:
            continue
        out["preds"].append(_u8(step.output))
        out["targets"].append(_u8(step.target))
        mem = step.memory
        out["dists"].append(None if mem is None else nearest_distance(step.fea[None], mem)[0].cpu().numpy())
    return out


def fit_normal(model: MNAD, items: torch.Tensor | None, videos: FrameSource | list[FrameSource],
               cfg: LocalizeConfig, size: tuple[int, int] | None = None, progress: bool = False) -> NormalReference:
    """Score normal videos (training split or a normal stretch) into a NormalReference.

    Normal footage of more than MAX_CALIBRATION_FRAMES frames (Avenue's or ShanghaiTech's training
    split) is cut to each video's leading stretch, an equal share of that budget, so that loading
    does not take a pass over every training frame. Every scored frame's PSNR and distance are
    kept; of the maps, which the pixel thresholds take a percentile of, every k-th frame's, so that
    at most MAX_CALIBRATION_MAPS stay in memory.
    """
    videos = [videos] if isinstance(videos, FrameSource) else list(videos)
    if not videos:
        raise LocalizeError("fit_normal needs at least one normal video")
    size = size or cfg.size
    if size is None:
        raise LocalizeError("fit_normal needs the model input size (cfg.size or size=)")
    if sum(map(len, videos)) > MAX_CALIBRATION_FRAMES:
        share = max(model.cfg.t_length + 1, MAX_CALIBRATION_FRAMES // len(videos))
        videos = [FrameRange(v, 0, share) if len(v) > share else v for v in videos]
    scored = sum(max(0, len(v) - model.cfg.t_length + 1) for v in videos)
    keep = max(1, math.ceil(scored / MAX_CALIBRATION_MAPS))
    parts, first = [], 0
    for v in videos:  # every keep-th frame counted over all videos, so at most MAX_CALIBRATION_MAPS maps
        parts.append(_run(model, items, v, size, cfg, progress, "normal frames", keep, first))
        first += len(parts[-1]["psnr"])
    psnr, dist = (np.asarray([x for p in parts for x in p[k]]) for k in ("psnr", "dist"))
    preds, targets, dists = (_joined(parts, k) for k in ("preds", "targets", "dists"))
    return NormalReference(psnr, dist, preds, targets, dists, ", ".join(v.name for v in videos))


def _joined(parts: list[dict[str, Any]], key: str) -> Sequence[Any]:
    """One store of the parts' arrays (copied, so that the memory budget counts them), or their Nones."""
    values = [x for p in parts for x in p[key]]
    return values if not values or values[0] is None else FrameStore(values)


MAX_CALIBRATION_FRAMES = 5000  # normal frames scored for calibration, at most (more than Ped2's 2,550 training frames)
MAX_CALIBRATION_MAPS = 1000  # normal frames whose maps are kept for pixel thresholds (0.4 GB at 256x256)
FEW_CALIBRATION_FRAMES = 20  # fewer scored normal frames than this give rough thresholds: the CLI warns


def leading_frames(source: FrameSource, t_length: int, fraction: float = 0.25) -> FrameRange:
    """The first ``fraction`` of a video (at least t_length + 1 frames), to calibrate on when nothing else is normal."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise LocalizeError(f"the normal fraction must be a number in (0, 1], the share of the video's first frames "
                            f"taken as normal, got {fraction!r}")
    return FrameRange(source, 0, min(len(source), max(t_length + 1, round(fraction * len(source)))))


@dataclass
class LocalizeResult:
    """Per-frame regularity, decisions and regions of one video, plus what is needed to redo them."""

    source: str  # path of the video or frame folder
    frame_size: tuple[int, int]  # (H, W) of the original frames
    fps: float
    cfg: LocalizeConfig
    size: tuple[int, int]  # model input (H, W)
    frames: np.ndarray  # (N,) indices of the scored frames in the video
    psnr: np.ndarray  # (N,)
    dist: np.ndarray  # (N,) feature distance
    preds: FrameStore  # (h, w, C) uint8 model-resolution predictions
    targets: FrameStore  # (h, w, C) uint8 model-resolution inputs
    dists: Sequence[np.ndarray | None]  # (h/8, w/8) memory distances (a FrameStore); None without memory
    normal: NormalReference | None = None
    regularity: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,) higher = more normal
    frame_threshold: float = 0.0  # regularity below this is anomalous
    flags: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (N,) anomalous frames
    pixel_thresholds: Sequence[float] = field(default_factory=list)  # (N,) map threshold per frame (PerFrame)
    boxes: Sequence[list[dict]] = field(default_factory=list)  # per frame: regions_to_records rows (PerFrame)

    def index(self, frame: int) -> int:
        """Position of a video frame index among the scored frames."""
        pos = int(np.searchsorted(self.frames, frame))
        if pos >= len(self.frames) or self.frames[pos] != frame:
            raise LocalizeError(f"frame {frame} was not scored (scored: {self.frames[0]}..{self.frames[-1]})")
        return pos

    def map(self, k: int, kind: MapKind | None = None) -> np.ndarray:
        """Anomaly map of scored frame k at the original frame resolution."""
        amap = model_map(kind or self.cfg.map_kind, self.preds[k], self.targets[k], self.dists[k], self.cfg.smooth_sigma)
        return to_frame_size(amap, self.frame_size)

    def regions(self, k: int) -> list[Region]:
        """Regions (with masks) of scored frame k under the result's configuration."""
        return _regions(self, k, float(self.pixel_thresholds[k]))

    def records(self) -> list[dict]:
        """One row per region over all frames, with the frame's regularity and decision."""
        return [{**r, "regularity": float(self.regularity[k]), "anomalous": bool(self.flags[k])}
                for k, rows in enumerate(self.boxes) for r in rows]

    def segments(self, min_length: int = 1) -> list[dict]:
        """Anomalous runs: start/end frame (inclusive), seconds, peak (lowest) regularity and its frame."""
        runs = segments(self.flags, self.regularity, min_length, peak="min")
        for s in runs:
            k = s["start"] + int(np.argmin(self.regularity[s["start"] : s["end"] + 1]))
            s.update(start=int(self.frames[s["start"]]), end=int(self.frames[s["end"]]), peak_frame=int(self.frames[k]),
                     start_s=round(float(self.frames[s["start"]]) / self.fps, 3),
                     end_s=round(float(self.frames[s["end"]]) / self.fps, 3))
        return runs


def _min_area(cfg: LocalizeConfig, frame_size: tuple[int, int]) -> int:
    """cfg.min_area, or 0.1% of the frame's pixels."""
    return cfg.min_area if cfg.min_area is not None else max(1, round(1e-3 * frame_size[0] * frame_size[1]))


def _regions(res: LocalizeResult, k: int, thr: float) -> list[Region]:
    """Connected regions of frame k above thr (the fork's mask when threshold is 'fork')."""
    cfg, amap = res.cfg, res.map(k)
    if cfg.threshold == "fork":
        fork = fork_threshold_mask(_model_space(res.preds[k]), _model_space(res.targets[k])).astype(np.uint8)
        mask = cv2.resize(fork, res.frame_size[::-1], interpolation=cv2.INTER_NEAREST) > 0
        amap, thr = np.where(mask, np.maximum(amap, 1e-6), 0.0), 0.0
    return find_regions(amap, thr, _min_area(cfg, res.frame_size), cfg.open_close, cfg.largest_only)


def _pixel_threshold(res: LocalizeResult, k: int) -> float:
    """The map threshold of frame k under the result's configuration."""
    cfg = res.cfg
    if cfg.threshold == "fork":
        return FORK_THRESHOLD
    if cfg.threshold == "otsu":
        amap = model_map(cfg.map_kind, res.preds[k], res.targets[k], res.dists[k], cfg.smooth_sigma)
        return otsu_threshold(amap) if np.ptp(amap) > 0 else float(amap.max())
    if cfg.threshold != "calibrated":
        return float(cfg.threshold)  # a number, range-checked by LocalizeConfig
    assert res.normal is not None, "relocalize checks that 'calibrated' has normal frames"
    return res.normal.pixel_threshold(cfg.map_kind, cfg.percentile, cfg.smooth_sigma)


def rescore(res: LocalizeResult, alpha: float) -> tuple[np.ndarray, float]:
    """Regularity per frame and the frame threshold under ``alpha`` (streaming or per-video)."""
    cfg = res.cfg
    if cfg.streaming and res.normal is not None:
        reg = normalizer(res.normal, alpha).score(res.psnr, res.dist)
        thr = np.percentile(res.normal.regularity(alpha), cfg.frame_percentile)
    else:
        if cfg.streaming:
            raise LocalizeError("streaming scores need normal frames (--normal / --normal-frames); "
                                "pass streaming=False (--offline) to normalise over the whole video")
        reg = scoring.regularity(res.psnr, res.dist, alpha)
        thr = threshold_otsu(reg) if np.ptp(reg) > 0 else 0.0
    thr = cfg.frame_threshold if cfg.frame_threshold is not None else float(thr)
    return reg, thr


def relocalize(res: LocalizeResult, cfg: LocalizeConfig | None = None, **changes: Any) -> LocalizeResult:
    """Redo regularity, decisions, thresholds and regions under another configuration, without the model."""
    cfg = dataclasses.replace(cfg or res.cfg, **changes)
    if cfg.size is not None and cfg.size != res.size:
        raise LocalizeError(f"this result was computed at size {res.size}; run localize again for {cfg.size}")
    if cfg.threshold == "calibrated" and res.normal is None:
        raise LocalizeError("threshold 'calibrated' needs normal frames (--normal or --normal-frames, "
                            "or normal=fit_normal(...)); or use 'otsu' or a number")
    new = dataclasses.replace(res, cfg=dataclasses.replace(cfg, size=res.size))
    new.regularity, new.frame_threshold = rescore(new, cfg.alpha)
    new.flags = new.regularity < new.frame_threshold
    n = len(new.frames)
    # The per-frame values are computed from a copy without them, not from `new`: a result that its
    # own fields referred to would be a reference cycle, freed (with its frames' RAM budget) only
    # at the next garbage collection. Partials, not lambdas: a result pickles.
    basis = dataclasses.replace(new, pixel_thresholds=[], boxes=[])
    new.pixel_thresholds = PerFrame(n, functools.partial(_pixel_threshold, basis))
    new.boxes = PerFrame(n, functools.partial(_records, basis, new.pixel_thresholds))
    return new


def _records(res: LocalizeResult, thresholds: Sequence[float], k: int) -> list[dict]:
    """regions_to_records rows of scored frame k, its regions found above ``thresholds[k]``."""
    return regions_to_records(int(res.frames[k]), _regions(res, k, float(thresholds[k])))


T = TypeVar("T")


class PerFrame(Sequence[T]):
    """A result's value per scored frame (map threshold, regions), computed when first asked for and kept.

    The app re-thresholds at every change of a control and then shows one frame: finding every
    frame's regions up front took 8-45 s per change on vtest.avi (791 scored frames, 768x576), and
    every frame's Otsu threshold 3.7 s. ``np.asarray`` computes them all.
    """

    def __init__(self, n: int, compute: Callable[[int], T]) -> None:
        self._compute = compute
        self._values: list[T | None] = [None] * n

    def __len__(self) -> int:
        return len(self._values)

    @overload
    def __getitem__(self, k: int) -> T: ...

    @overload
    def __getitem__(self, k: slice) -> list[T]: ...

    def __getitem__(self, k: int | slice) -> T | list[T]:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        k = range(len(self))[k]  # IndexError past either end, as a list's
        value = self._values[k]
        if value is None:
            value = self._values[k] = self._compute(k)
        return value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return np.asarray(list(self), dtype=dtype)


def localize(source: str | Path | FrameSource, model: MNAD, items: torch.Tensor | None, cfg: LocalizeConfig,
             normal: NormalReference | FrameSource | list[FrameSource] | None = None,
             progress: bool = True, fps: float | None = None) -> LocalizeResult:
    """Score and localize every frame of a video; ``normal`` calibrates thresholds and streaming scores.

    ``fps`` sets the frame rate of the segments' times and the written videos; None takes the video
    file's header, else DEFAULT_FPS (a frame folder records none). The model is left where it is and
    scored there (``load_model(..., device)`` places it); a ``cfg.device`` other than "auto" must name that device.
    """
    check_fps(fps)
    if cfg.size is None:
        raise LocalizeError("cfg.size is None: set the model input size (load_model returns the checkpoint's)")
    src = as_source(source)
    if cfg.map_kind == "memory" and items is None:
        raise LocalizeError("map kind 'memory' needs a model with memory")
    if normal is not None and not isinstance(normal, NormalReference):
        normal = fit_normal(model, items, normal, cfg, progress=progress)
    run = _run(model, items, src, cfg.size, cfg, progress, "localize")
    res = LocalizeResult(str(src.path), src.frame_size, fps or header_fps(src) or DEFAULT_FPS, cfg, cfg.size,
                         np.asarray(run["frames"]), np.asarray(run["psnr"]), np.asarray(run["dist"]), run["preds"], run["targets"],
                         run["dists"], normal)
    return relocalize(res)


FIT_PRESET = "cpu"  # the preset fit_on_frames trains with unless told otherwise


def fit_on_frames(source: str | Path | FrameSource, start: int, end: int, out_dir: str | Path,
                  epochs: int | None = None, size: tuple[int, int] | None = None, preset_name: str = FIT_PRESET,
                  holdout: float = 0.2, seed: int = 0, progress: bool = True) -> tuple[Path, FrameRange]:
    """Train on frames [start, end) of a video (minus a held-out tail); return the checkpoint and the tail.

    The frames are written at the model size to ``out_dir/fit_frames/fit`` and trained on with
    ``mnadlib.train`` (``preset_name`` settings, ``cpu`` by default); the last ``holdout`` of the
    stretch is left out of training and returned to calibrate thresholds on unseen normal frames.
    """
    if epochs is not None and epochs < 1:
        raise LocalizeError(f"--fit-epochs must be at least 1, got {epochs}; leave it out for the preset's")
    src, folder = as_source(source), Path(out_dir) / "fit_frames" / "fit"
    if folder.resolve() in (src.path.resolve(), *src.path.resolve().parents):
        raise LocalizeError(f"{src.path} lies in {folder}, which fit_on_frames empties first; give another out_dir")
    if end > len(src):
        raise LocalizeError(f"--fit-frames {start}:{end} goes past the end of {src.path} ({len(src)} frames)")
    if not 0 <= holdout < 1:
        raise LocalizeError(f"holdout must be in [0, 1), got {holdout}")
    p = preset(preset_name)
    try:
        p.train = dataclasses.replace(p.train, size=p.train.size if size is None else size,
                                      epochs=p.train.epochs if epochs is None else epochs, seed=seed)
    except ConfigError as exc:
        raise LocalizeError(str(exc)) from None

    def enough(n: int) -> bool:  # a batch of training clips, and (held out) at least 2 scored calibration frames
        tail = int(round(holdout * n))
        return n - tail >= p.model.t_length + p.train.batch_size and (not holdout or tail >= p.model.t_length + 1)

    if not enough(end - start):
        shortest = next(n for n in itertools.count(end - start + 1) if enough(n))
        raise LocalizeError(f"--fit-frames {start}:{end} is too short to train (and calibrate) on; "
                            f"give at least {shortest} frames (many more calibrate better)")
    cut = end - int(round(holdout * (end - start)))
    shutil.rmtree(folder, ignore_errors=True)  # frames of an earlier, different stretch must not mix in
    folder.mkdir(parents=True)
    h, w = p.train.size
    for i in tqdm(range(start, cut), desc="write fit frames", disable=not progress, leave=False):
        path = folder / f"{i - start:06d}.png"
        if not cv2.imwrite(str(path), cv2.resize(src.read(i), (w, h))):
            raise OSError(f"could not write {path} (a full disk?); free space under {out_dir} and run again")
    ckpt = train(folder.parent, p.model, p.train, Path(out_dir) / "fit_run", resume=False, progress=progress)
    return ckpt, FrameRange(src, cut, end) if holdout else FrameRange(src, start, cut)
