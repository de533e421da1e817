"""Anomaly maps, thresholds and connected regions; the metrics are in :mod:`mnadlib.localize_metrics`.

The authors' MNAD code scores whole frames only; the fork this project improves localizes by
thresholding the SSIM map of predicted vs. actual frame at SSIM * 255 < 230 and keeping the largest
contour (:func:`fork_threshold_mask`, then ``find_regions(largest_only=True)``). Generalised here:
three map kinds (squared prediction error, 1 - SSIM, distance of each query to its nearest memory
item, MNAD Sec. 3.2), thresholds (fixed, Otsu, calibrated on normal frames), every connected
region with its box.

Maps are (H, W) float arrays, higher = more anomalous. Boxes are (x0, y0, x1, y1) in pixels with
x1, y1 exclusive. Model-space images are (H, W, C) (or (H, W)) floats in [-1, 1], BGR channels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import torch
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.metrics import structural_similarity

from .scoring import ssim_per_pixel

MapKind = Literal["error", "ssim", "memory"]
Box = tuple[int, int, int, int]

VALID_RANGE: dict[str, tuple[float, float]] = {
    "error": (0.0, 1.0),  # ((p - t) / 2) ** 2 with p, t in [-1, 1]
    "ssim": (0.0, 1.0),  # 1 - SSIM, clipped to [0, 1]
    "memory": (0.0, 4.0),  # squared L2 distance between a unit-norm query and a unit-norm item
}
FORK_LEVEL = 230  # the fork: a pixel is anomalous where uint8(SSIM * 255) < 230
CALIBRATION_VALUES_PER_MAP = 16_384  # calibrate_threshold draws this many values from a larger map


class LocalizeError(ValueError):
    """Bad input to a localization function; the message says what was expected."""


def _model_image(x: Any, name: str) -> np.ndarray:
    """Validate a model-space image (H, W) or (H, W, C) in [-1, 1]; return float64 (H, W, C)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise LocalizeError(f"{name} must be an (H, W) or (H, W, C) image, got shape {x.shape}")
    if x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        raise LocalizeError(f"{name} has shape {x.shape}, which looks like (C, H, W); pass (H, W, C)")
    if not np.isfinite(x).all():
        raise LocalizeError(f"{name} contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.001 or hi > 1.001:
        raise LocalizeError(f"{name} must be a model-space image in [-1, 1] (uint8 frames: x / 127.5 - 1), "
                            f"got values in [{lo:.4g}, {hi:.4g}]")
    return np.clip(x, -1.0, 1.0)


def _image_pair(pred: Any, target: Any, min_side: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Validate two model-space images of the same shape, at least min_side pixels high and wide."""
    p, t = _model_image(pred, "pred"), _model_image(target, "target")
    if p.shape != t.shape:
        raise LocalizeError(f"pred and target shapes differ: {p.shape} vs {t.shape}")
    if min(p.shape[:2]) < min_side:
        raise LocalizeError(f"SSIM needs images of at least 7x7 pixels (its window), got {p.shape[:2]}")
    return p, t


def _as_map(amap: Any, name: str = "amap") -> np.ndarray:
    """Validate an (H, W) finite map; return it as float32."""
    m = np.asarray(amap, dtype=np.float32)
    if m.ndim != 2 or m.size == 0:
        raise LocalizeError(f"{name} must be a non-empty (H, W) map, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise LocalizeError(f"{name} contains NaN or infinite values")
    return m


def _in_range(value: Any, lo: float, hi: float, name: str, lo_open: bool = False) -> float:
    """Return value as float if finite and in [lo, hi] ((lo, hi] with lo_open), else LocalizeError."""
    v = float(value)
    ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        raise LocalizeError(f"{name} must be in {'(' if lo_open else '['}{lo}, {hi}], got {value}")
    return v


def error_map(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-pixel squared error on the [0, 1] scale, mean over channels: (H, W) float32 in [0, 1]."""
    p, t = _image_pair(pred, target)
    return (((p - t) / 2.0) ** 2).mean(axis=-1).astype(np.float32)  # (H, W)


def ssim_map(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """1 - SSIM per pixel (:func:`mnadlib.scoring.ssim_per_pixel`, the frame SSIM score's map), mean over channels, clipped to [0, 1]."""
    p, t = _image_pair(pred, target, min_side=7)
    s = ssim_per_pixel(*(torch.from_numpy(x).permute(2, 0, 1)[None] for x in (p, t)))[0].mean(dim=0).numpy()
    return np.clip(1.0 - s, 0.0, 1.0).astype(np.float32)  # (H, W)


def memory_map(distances: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """Per-query distance to the nearest memory item on the (h, w) grid, bilinearly upsampled."""
    d = np.asarray(distances, dtype=np.float32)
    if d.ndim != 2:
        raise LocalizeError(f"distances must be the (h, w) feature grid (reshape (h*w,) ones), got {d.shape}")
    return to_frame_size(d, out_shape)


def to_frame_size(amap: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """Resize a map to a frame's own (H, W) with bilinear interpolation (float32)."""
    m = _as_map(amap)
    try:
        h, w = (int(v) for v in frame_hw)
    except (TypeError, ValueError):
        h = w = 0
    if h <= 0 or w <= 0:
        raise LocalizeError(f"frame_hw must be two positive integers (H, W), got {frame_hw!r}")
    return m if m.shape == (h, w) else cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)


def anomaly_map(
    kind: MapKind, pred: np.ndarray | None = None, target: np.ndarray | None = None,
    distances: np.ndarray | None = None, out_shape: tuple[int, int] | None = None, smooth_sigma: float = 0.0,
) -> np.ndarray:
    """Map of one kind (resized to out_shape when given), Gaussian-smoothed in output pixels."""
    sigma = _in_range(smooth_sigma, 0.0, math.inf, "smooth_sigma")
    if kind in ("error", "ssim"):
        if pred is None or target is None:
            raise LocalizeError(f"kind={kind!r} needs pred and target images")
        amap = error_map(pred, target) if kind == "error" else ssim_map(pred, target)
        if out_shape is not None:
            amap = to_frame_size(amap, out_shape)
    elif kind == "memory":
        if distances is None or out_shape is None:
            raise LocalizeError("kind='memory' needs distances (h, w) and out_shape (H, W)")
        amap = memory_map(distances, out_shape)
    else:
        raise LocalizeError(f"kind must be one of {sorted(VALID_RANGE)}, got {kind!r}")
    return ndimage.gaussian_filter(amap, sigma) if sigma > 0 else amap


def fork_threshold_mask(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The fork's rule: bool (H, W) mask where uint8(SSIM * 255) < 230 on grayscale uint8 images.

    Exactly: both images go from [-1, 1] to uint8 (round((x + 1) * 127.5)), to grayscale with
    cv2.COLOR_BGR2GRAY when they have 3 channels, then skimage's structural_similarity(full=True)
    with its defaults (7x7 uniform window, data_range 255 for uint8). The map S is cast as
    (S * 255).astype(uint8), truncating, and pixels below 230 are anomalous: S < 230 / 255 (~0.902).
    One deviation: negative S is clipped to 0 before the cast (the fork's cast wraps around on most
    platforms, so very dissimilar pixels could read as normal). The fork then keeps the largest
    contour: ``find_regions(mask, 0.5, open_close=0, largest_only=True)`` (largest by pixel count,
    where the fork used cv2.contourArea).
    """
    p, t = _image_pair(pred, target, min_side=7)
    if p.shape[-1] not in (1, 3):
        raise LocalizeError(f"fork_threshold_mask needs 1 or 3 channels, got {p.shape[-1]}")
    gray = []
    for x in (p, t):
        u8 = np.round((x + 1) * 127.5).astype(np.uint8)  # (H, W, C)
        gray.append(cv2.cvtColor(u8, cv2.COLOR_BGR2GRAY) if u8.shape[-1] == 3 else u8[..., 0])
    _, s = structural_similarity(gray[0], gray[1], full=True)
    return np.clip(s * 255, 0, 255).astype(np.uint8) < FORK_LEVEL


def calibrate_threshold(normal_maps: Iterable[np.ndarray] | np.ndarray, percentile: float = 99.0) -> float:
    """Percentile of map values on normal frames; maps over 16384 pixels contribute a seeded sample."""
    q = _in_range(percentile, 0.0, 100.0, "percentile")
    if isinstance(normal_maps, np.ndarray) and normal_maps.ndim == 2:
        normal_maps = [normal_maps]
    rng = np.random.default_rng(0)
    values = []
    for i, m in enumerate(normal_maps):
        flat = _as_map(m, f"normal_maps[{i}]").ravel()
        if flat.size > CALIBRATION_VALUES_PER_MAP:
            flat = flat[rng.integers(0, flat.size, CALIBRATION_VALUES_PER_MAP)]
        values.append(flat)
    if not values:
        raise LocalizeError("calibrate_threshold needs at least one map of a normal frame")
    return float(np.percentile(np.concatenate(values), q))


def otsu_threshold(amap: np.ndarray) -> float:
    """Otsu's threshold of the map's values (skimage.filters.threshold_otsu)."""
    return float(threshold_otsu(_as_map(amap)))


def resolve_threshold(
    amap: np.ndarray, threshold: float | str, calibrated: float | None = None, kind: MapKind = "error"
) -> float:
    """A number (checked against VALID_RANGE[kind]), "otsu" (of amap) or "calibrated" (the given value)."""
    if kind not in VALID_RANGE:
        raise LocalizeError(f"kind must be one of {sorted(VALID_RANGE)}, got {kind!r}")
    lo, hi = VALID_RANGE[kind]
    if isinstance(threshold, str):
        if threshold == "otsu":
            return otsu_threshold(amap)
        if threshold != "calibrated":
            raise LocalizeError(f"threshold must be a number, 'otsu' or 'calibrated', got {threshold!r}")
        if calibrated is None:
            raise LocalizeError("threshold='calibrated' needs calibrated=calibrate_threshold(normal maps)")
        threshold = calibrated
    return _in_range(threshold, lo, hi, f"threshold for {kind!r} maps")


@dataclass
class Region:
    """One connected anomalous region of a map."""

    box: Box  # (x0, y0, x1, y1), x1 and y1 exclusive, in map pixels (frame pixels after to_frame_size)
    mask: np.ndarray  # (H, W) bool, this region only
    area: int  # pixels in the region
    score: float  # max map value inside
    mean: float  # mean map value inside


def find_regions(
    amap: np.ndarray, threshold: float, min_area: int = 0, open_close: int = 3, largest_only: bool = False
) -> list[Region]:
    """Regions of amap > threshold after opening and closing (elliptical kernel), by score descending.

    Components are 8-connected; those under min_area pixels are dropped; largest_only keeps the one
    largest region (ties: higher score), the fork's mode. open_close=0 skips the morphology.
    """
    m = _as_map(amap)
    thr = _in_range(threshold, 0.0, math.inf, "threshold (maps are non-negative)")
    if min_area < 0 or open_close < 0:
        raise LocalizeError(f"min_area and open_close must be >= 0, got {min_area} and {open_close}")
    binary: np.ndarray = (m > thr).astype(np.uint8)
    if open_close > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (open_close, open_close))
        binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel)
        binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    ids = np.arange(1, n)
    areas = stats[ids, cv2.CC_STAT_AREA]
    keep = areas >= max(min_area, 1)
    ids, areas = ids[keep], areas[keep]
    if ids.size == 0:
        return []
    scores = np.asarray(ndimage.maximum(m, labels, ids), dtype=np.float64)
    means = np.asarray(ndimage.mean(m, labels, ids), dtype=np.float64)
    order = [int(np.lexsort((-scores, -areas))[0])] if largest_only else np.argsort(-scores, kind="stable")
    regions = []
    for i in order:
        x, y, w, h = (int(v) for v in stats[ids[i], :4])
        box = (x, y, x + w, y + h)
        regions.append(Region(box, labels == ids[i], int(areas[i]), float(scores[i]), float(means[i])))
    return regions


def regions_to_records(frame_index: int, regions: list[Region]) -> list[dict]:
    """JSON/CSV-friendly rows {"frame", "x0", "y0", "x1", "y1", "area", "score", "mean"}."""
    keys = ("x0", "y0", "x1", "y1")
    return [{"frame": int(frame_index), **{k: int(v) for k, v in zip(keys, r.box)},
             "area": int(r.area), "score": float(r.score), "mean": float(r.mean)} for r in regions]


def frame_decisions(regularity: np.ndarray, threshold: float) -> np.ndarray:
    """Bool per frame: anomalous where the regularity score is below threshold."""
    thr = _in_range(threshold, -math.inf, math.inf, "threshold")
    return np.asarray(regularity, dtype=np.float64) < thr


class StreamingNormalizer:
    """Regularity scores from PSNR and memory distance, normalised with statistics of normal frames.

    The authors min-max normalise each test video by its own extremes (Evaluate.py), which needs
    the whole video before the first score. ``fit`` instead stores the q[0]-th and q[1]-th
    percentiles (default 1st and 99th, robust to a few odd frames; q=(0, 100) is plain min/max) of
    PSNR and feature distance on normal frames; ``score`` then works frame by frame:
    regularity = alpha * norm(psnr) + (1 - alpha) * (1 - norm(dist)), norm(x) = (x - lo) / (hi - lo).
    Not clipped by default: frames beyond the normal range leave [0, 1], which keeps their order
    (AUC, ranking alarms); clip=True clips to [0, 1].
    """

    def __init__(self, alpha: float = 0.6, q: tuple[float, float] = (1.0, 99.0), clip: bool = False) -> None:
        self.alpha = _in_range(alpha, 0.0, 1.0, "alpha")
        lo, hi = (_in_range(v, 0.0, 100.0, "q") for v in q)
        if lo >= hi:
            raise LocalizeError(f"q must be two percentiles lo < hi in [0, 100], got {q}")
        self.q = (lo, hi)
        self.clip = clip
        self.psnr_range: tuple[float, float] | None = None  # (lo, hi) of normal-frame PSNR
        self.dist_range: tuple[float, float] | None = None  # (lo, hi) of normal-frame feature distance

    def fit(self, psnr_normal: np.ndarray, dist_normal: np.ndarray) -> StreamingNormalizer:
        """Store the percentile ranges of PSNR and distance over normal frames.

        A term of weight 0 (distance with alpha = 1, PSNR with alpha = 0) is not fitted: it cannot
        change a score, and a model without memory has no distance to fit.
        """
        ranges = []
        for name, v, weight in (("PSNR", psnr_normal, self.alpha), ("memory distance", dist_normal, 1 - self.alpha)):
            v = np.asarray(v, dtype=np.float64).ravel()
            if weight == 0:
                ranges.append((0.0, 1.0))
                continue
            if v.size < 2 or not np.isfinite(v).all():
                raise LocalizeError(f"calibration needs the {name} of at least 2 scored normal frames, got {v.size}: "
                                    "give a longer normal stretch (a clip of t_length + 1 frames scores 2)")
            lo, hi = np.percentile(v, self.q)
            if hi <= lo:
                raise LocalizeError(f"the normal frames' {name} has no spread between percentiles {self.q} (identical "
                                    "frames, a frozen picture?): calibrate on normal frames with motion, or score without "
                                    "them (--offline --threshold otsu; in Python, LocalizeConfig(streaming=False, "
                                    "threshold='otsu'))")
            ranges.append((float(lo), float(hi)))
        self.psnr_range, self.dist_range = ranges
        return self

    def score(self, psnr: float | np.ndarray, dist: float | np.ndarray) -> np.ndarray:
        """Regularity (higher = more normal) of one frame or many; float64 array."""
        if self.psnr_range is None or self.dist_range is None:
            raise LocalizeError("StreamingNormalizer.score called before fit(psnr_normal, dist_normal)")
        (pl, ph), (dl, dh) = self.psnr_range, self.dist_range
        p = (np.asarray(psnr, dtype=np.float64) - pl) / (ph - pl)
        d = (np.asarray(dist, dtype=np.float64) - dl) / (dh - dl)
        s = self.alpha * p + (1 - self.alpha) * (1 - d)
        return np.clip(s, 0.0, 1.0) if self.clip else s


def segments(
    flags: np.ndarray, scores: np.ndarray | None = None, min_length: int = 1,
    peak: Literal["min", "max"] = "min",
) -> list[dict]:
    """Runs of True: {"start", "end" (inclusive), "length", "peak" (min or max score inside, or None)}."""
    f = np.asarray(flags, dtype=bool)
    if f.ndim != 1:
        raise LocalizeError(f"flags must be 1-D (one per frame), got shape {f.shape}")
    if min_length < 1 or peak not in ("min", "max"):
        raise LocalizeError(f"min_length must be >= 1 and peak 'min' or 'max', got {min_length}, {peak!r}")
    s = None if scores is None else np.asarray(scores, dtype=np.float64)
    if s is not None and s.shape != f.shape:
        raise LocalizeError(f"scores and flags shapes differ: {s.shape} vs {f.shape}")
    edges = np.diff(np.concatenate([[0], f.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1  # ends inclusive
    reduce = np.min if peak == "min" else np.max
    return [
        {"start": int(a), "end": int(b), "length": int(b - a + 1),
         "peak": None if s is None else float(reduce(s[a : b + 1]))}
        for a, b in zip(starts, ends)
        if b - a + 1 >= min_length
    ]
