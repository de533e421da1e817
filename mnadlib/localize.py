"""Anomaly maps, thresholds, connected regions and localization metrics.

The authors' MNAD code scores whole frames only; the fork this project improves localizes by
thresholding the SSIM map of predicted vs. actual frame at SSIM * 255 < 230 and keeping the largest
contour (:func:`fork_threshold_mask`, then ``find_regions(largest_only=True)``). Generalised here:
three map kinds (squared prediction error, 1 - SSIM, distance of each query to its nearest memory
item, MNAD Sec. 3.2), thresholds (fixed, Otsu, calibrated on normal frames), every connected
region with its box, and the standard localization metrics:

* pixel AUROC, pooled over all pixels of all frames;
* the UCSD Ped pixel-level criterion (Mahadevan et al., CVPR 2010; Li et al., TPAMI 2014): an
  anomalous frame is detected only when >= 40% of its true anomalous pixels are found;
* RBDC / TBDC, the region- and track-based detection criteria of Ramachandra & Jones (Street
  Scene, WACV 2020).

Maps are (H, W) float arrays, higher = more anomalous. Boxes are (x0, y0, x1, y1) in pixels with
x1, y1 exclusive. Model-space images are (H, W, C) (or (H, W)) floats in [-1, 1], BGR channels.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.metrics import structural_similarity
from sklearn.metrics import auc, roc_auc_score

MapKind = Literal["error", "ssim", "memory"]
Box = tuple[int, int, int, int]

VALID_RANGE: dict[str, tuple[float, float]] = {
    "error": (0.0, 1.0),  # ((p - t) / 2) ** 2 with p, t in [-1, 1]
    "ssim": (0.0, 1.0),  # 1 - SSIM, clipped to [0, 1]
    "memory": (0.0, 4.0),  # squared L2 distance between a unit-norm query and a unit-norm item
}
FORK_LEVEL = 230  # the fork: a pixel is anomalous where uint8(SSIM * 255) < 230
MAX_AUROC_PIXELS = 5_000_000  # pixel_auroc draws this many pixels (seed 0) when there are more
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
    """1 - SSIM per pixel (skimage, 7x7 window, per channel then averaged), clipped to [0, 1]."""
    p, t = _image_pair(pred, target, min_side=7)
    _, s = structural_similarity((p + 1) / 2, (t + 1) / 2, data_range=1.0, channel_axis=-1, full=True)
    return np.clip(1.0 - s.mean(axis=-1), 0.0, 1.0).astype(np.float32)  # (H, W)


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
    binary = (m > thr).astype(np.uint8)
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
        """Store the percentile ranges of PSNR and distance over normal frames."""
        ranges = []
        for name, v in (("psnr_normal", psnr_normal), ("dist_normal", dist_normal)):
            v = np.asarray(v, dtype=np.float64).ravel()
            if v.size < 2 or not np.isfinite(v).all():
                raise LocalizeError(f"{name} needs at least 2 finite values, got {v.size} values")
            lo, hi = np.percentile(v, self.q)
            if hi <= lo:
                raise LocalizeError(f"{name} has no spread between percentiles {self.q}; cannot normalise")
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


def _map_mask_pairs(maps: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray]) -> list[tuple[Any, Any]]:
    """Validate equal counts and shapes; masks become bool (non-zero = anomalous)."""
    if len(maps) != len(gt_masks):
        raise LocalizeError(f"got {len(maps)} maps but {len(gt_masks)} masks")
    if len(maps) == 0:
        raise LocalizeError("need at least one map and mask")
    pairs = []
    for i, (m, g) in enumerate(zip(maps, gt_masks)):
        m, g = _as_map(m, f"maps[{i}]"), np.asarray(g) > 0
        if m.shape != g.shape:
            raise LocalizeError(f"frame {i}: map shape {m.shape} differs from mask shape {g.shape}")
        pairs.append((m, g))
    return pairs


def pixel_auroc(maps: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray]) -> float:
    """Pixel-level AUROC pooled over all frames (anomalous = positive); over 5e6 pixels, a seeded sample."""
    pairs = _map_mask_pairs(maps, gt_masks)
    rate = min(1.0, MAX_AUROC_PIXELS / sum(m.size for m, _ in pairs))
    rng = np.random.default_rng(0)
    scores, labels = [], []
    for m, g in pairs:
        m, g = m.ravel(), g.ravel()
        if rate < 1.0:
            idx = rng.integers(0, m.size, max(1, round(m.size * rate)))
            m, g = m[idx], g[idx]
        scores.append(m)
        labels.append(g)
    y = np.concatenate(labels)
    if y.all() or not y.any():
        raise LocalizeError("pixel AUROC needs both anomalous and normal pixels in gt_masks")
    return float(roc_auc_score(y, np.concatenate(scores)))


def _count_above(sorted_values: np.ndarray, thresholds: np.ndarray, inclusive: bool) -> np.ndarray:
    """For each threshold, how many sorted values are > it (>= with inclusive)."""
    side = "left" if inclusive else "right"
    return sorted_values.size - np.searchsorted(sorted_values, thresholds, side=side)


def ucsd_pixel_criterion(
    frame_scores_anomalous: np.ndarray | None, pixel_maps: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray],
    thresholds: np.ndarray | None = None, coverage: float = 0.4,
) -> dict:
    """UCSD Ped pixel-level ROC (Mahadevan et al. 2010; Li et al. 2014), swept over the map threshold.

    A frame is truly anomalous when its mask has a non-zero pixel. At threshold t the predicted
    anomalous pixels are map > t. An anomalous frame is a true positive when >= `coverage` (40%) of
    its true anomalous pixels are predicted; a normal frame is a false positive when any pixel is.
    TPR = true positives / anomalous frames, FPR = false positives / normal frames.
    frame_scores_anomalous: per-frame bool flags of the frame-level detector (e.g. frame_decisions);
    an unflagged frame predicts no pixel. None: no frame-level gate. thresholds=None sweeps every
    operating point exactly. AUC: trapezoids over FPR from (0, 0) to (1, 1).
    """
    cov = _in_range(coverage, 0.0, 1.0, "coverage", lo_open=True)
    pairs = _map_mask_pairs(pixel_maps, gt_masks)
    n = len(pairs)
    gate = np.ones(n, dtype=bool)
    if frame_scores_anomalous is not None:
        gate = np.asarray(frame_scores_anomalous)
        if gate.shape != (n,) or not np.isin(gate, (0, 1)).all():
            raise LocalizeError(f"frame_scores_anomalous must be {n} bool flags or None, got {gate.shape}")
        gate = gate.astype(bool)
    truth = np.array([g.any() for _, g in pairs])
    if truth.all() or not truth.any():
        raise LocalizeError("the UCSD criterion needs both anomalous frames (non-empty mask) and normal ones")
    crit = np.full(n, -np.inf)  # a frame counts (TP or FP) at threshold t iff crit > t
    for i, (m, g) in enumerate(pairs):
        if gate[i]:
            vals = m[g] if truth[i] else m.ravel()
            k = math.ceil(cov * vals.size - 1e-9) if truth[i] else 1  # k-th largest value must exceed t
            crit[i] = np.partition(vals, vals.size - k)[vals.size - k]
    if thresholds is None:
        finite = np.unique(crit[np.isfinite(crit)])
        thr = np.append(finite[::-1], np.nextafter(finite[0], -np.inf)) if finite.size else np.zeros(1)
    else:
        thr = np.sort(np.asarray(thresholds, dtype=np.float64).ravel())[::-1]
        if thr.size == 0 or not np.isfinite(thr).all():
            raise LocalizeError("thresholds must be a non-empty array of finite numbers")
    tpr = _count_above(np.sort(crit[truth]), thr, inclusive=False) / truth.sum()
    fpr = _count_above(np.sort(crit[~truth]), thr, inclusive=False) / (~truth).sum()
    area = auc(np.concatenate([[0.0], fpr, [1.0]]), np.concatenate([[0.0], tpr, [1.0]]))
    return {"tpr": tpr, "fpr": fpr, "thresholds": thr, "auc": float(area), "coverage": cov}


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P, G) IoU of (P, 4) and (G, 4) boxes (x0, y0, x1, y1), x1 and y1 exclusive."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])  # (P, G, 2)
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(br - tl, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes; 0 when both are empty."""
    return float(_iou_matrix(np.asarray([a], dtype=np.float64), np.asarray([b], dtype=np.float64))[0, 0])


def _normalised_area(fpr: np.ndarray, rate: np.ndarray, fpr_max: float) -> float:
    """Area under rate vs fpr from (0, 0) over [0, fpr_max], held flat past the last point, / fpr_max."""
    x, y = np.concatenate([[0.0], fpr]), np.concatenate([[0.0], rate])
    past = np.flatnonzero(x > fpr_max)
    if past.size == 0:
        x, y = np.append(x, fpr_max), np.append(y, y[-1])
    else:
        j = past[0]  # x[j - 1] <= fpr_max < x[j]
        y_cut = y[j - 1] + (y[j] - y[j - 1]) * (fpr_max - x[j - 1]) / (x[j] - x[j - 1])
        x, y = np.append(x[:j], fpr_max), np.append(y[:j], y_cut)
    return float(auc(x, y) / fpr_max)


def rbdc_tbdc(
    pred_regions: Sequence[Sequence[tuple[Box, float]]], gt_boxes: Sequence[Sequence[tuple[Hashable, Box]]],
    num_frames: int | None = None, iou: float = 0.1, track_fraction: float = 0.1, fpr_max: float = 1.0,
) -> dict:
    """Region- and track-based detection criteria (RBDC, TBDC) of Ramachandra & Jones, WACV 2020.

    Per frame: detections (box, score) and ground-truth regions (track_id, box); track ids must be
    unique over the whole data set. At score threshold t the detections with score >= t are kept:
    a GT region is detected when a kept detection of its frame has IoU >= `iou` (0.1) with it; a kept
    detection is a false positive when its IoU with every GT region of its frame is < `iou`
    (several detections on one region, or one detection on several regions, are all true).
    RBDR(t) = detected GT regions / GT regions; a track is detected when >= `track_fraction` (10%)
    of its regions are, TBDR(t) = detected tracks / tracks; FPR(t) = false positives / num_frames
    (default len(pred_regions)). t sweeps every detection score. RBDC and TBDC are the areas under
    RBDR and TBDR vs FPR from (0, 0) over FPR in [0, fpr_max], the curve held flat past its last
    point, divided by fpr_max so that a perfect detector scores 1.
    """
    if len(pred_regions) != len(gt_boxes):
        raise LocalizeError(f"pred_regions has {len(pred_regions)} frames but gt_boxes has {len(gt_boxes)}")
    frames, given = (len(pred_regions) if num_frames is None else int(num_frames)), max(1, len(pred_regions))
    if frames < given:
        raise LocalizeError(f"num_frames must be >= {given} (the frames given), got {frames}")
    beta = _in_range(iou, 0.0, 1.0, "iou", lo_open=True)
    alpha = _in_range(track_fraction, 0.0, 1.0, "track_fraction", lo_open=True)
    fmax = _in_range(fpr_max, 0.0, math.inf, "fpr_max", lo_open=True)
    det_scores, det_true, gt_best, track_of, track_ids = [], [], [], [], {}
    for preds, gts in zip(pred_regions, gt_boxes):
        pb = np.asarray([b for b, _ in preds], dtype=np.float64).reshape(-1, 4)  # (P, 4)
        ps = np.asarray([s for _, s in preds], dtype=np.float64)  # (P,)
        gb = np.asarray([b for _, b in gts], dtype=np.float64).reshape(-1, 4)  # (G, 4)
        hit = _iou_matrix(pb, gb) >= beta  # (P, G)
        det_scores.append(ps)
        det_true.append(hit.any(axis=1))
        gt_best.append(np.where(hit, ps[:, None], -np.inf).max(axis=0, initial=-np.inf))  # best score per GT
        track_of.extend(track_ids.setdefault(tid, len(track_ids)) for tid, _ in gts)
    scores, true = np.concatenate(det_scores), np.concatenate(det_true)
    best, track = np.concatenate(gt_best), np.asarray(track_of, dtype=np.int64)
    if best.size == 0:
        raise LocalizeError("rbdc_tbdc needs at least one ground-truth region")
    if not np.isfinite(scores).all():
        raise LocalizeError("detection scores must be finite")
    order = np.lexsort((-best, track))  # by track, best score descending within a track
    counts = np.bincount(track)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    need = np.ceil(alpha * counts - 1e-9).astype(np.int64)  # regions a track needs detected
    track_crit = best[order][starts + need - 1]  # a track is detected at t iff track_crit >= t
    thr = np.unique(scores)[::-1]
    fpr = _count_above(np.sort(scores[~true]), thr, inclusive=True) / frames
    rbdr = _count_above(np.sort(best), thr, inclusive=True) / best.size
    tbdr = _count_above(np.sort(track_crit), thr, inclusive=True) / counts.size
    return {"rbdc": _normalised_area(fpr, rbdr, fmax), "tbdc": _normalised_area(fpr, tbdr, fmax),
            "fpr": fpr, "rbdr": rbdr, "tbdr": tbdr, "thresholds": thr}
