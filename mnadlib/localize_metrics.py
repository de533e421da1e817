"""Localization metrics: pixel AUROC, the UCSD Ped pixel-level criterion, RBDC and TBDC.

* pixel AUROC, pooled over all pixels of all frames;
* the peak-in-mask frame AUC, an oracle: how well the map's peak at the anomaly ranks against
  normal frames' peaks anywhere (whether any frame score read off the map's peak could work);
* the UCSD Ped pixel-level criterion (Mahadevan et al., CVPR 2010; Li et al., TPAMI 2014): an
  anomalous frame is detected only when >= 40% of its true anomalous pixels are found;
* RBDC / TBDC, the region- and track-based detection criteria of Ramachandra & Jones (Street
  Scene, WACV 2020).

Maps and masks are (H, W) per frame, higher map values = more anomalous; boxes are (x0, y0, x1, y1)
with x1, y1 exclusive, as in :mod:`mnadlib.localize`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any, Literal

import numpy as np
from sklearn.metrics import auc, roc_auc_score

from .localize import Box, LocalizeError, _as_map, _in_range

MAX_AUROC_PIXELS = 5_000_000  # pixel_auroc draws this many pixels (seed 0) when there are more


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


def _two_class_auc(labels: np.ndarray, scores: np.ndarray, message: str) -> float:
    """ROC AUC of scores against bool labels; LocalizeError(message) when the labels hold one class."""
    if labels.all() or not labels.any():
        raise LocalizeError(message)
    return float(roc_auc_score(labels, scores))


class PixelSummary:
    """What the pixel AUROC, the peak-in-mask frame AUC and the UCSD criterion need of each frame, one frame at a time.

    :func:`mnadlib.localize_eval.localization_metrics` adds each test frame's map, mask and
    detection map as it is made, so that no frame-resolution map is kept: CUHK Avenue's 15,324 test
    frames at 360x640 would hold 14 GB of maps, and as much again of detection maps. The pixel
    sample is drawn frame by frame as :func:`pixel_auroc` draws it, so the numbers are the same.
    ``total_pixels`` (every frame's pixels, counted before the first is added) sets the sample's rate.
    """

    def __init__(self, total_pixels: int, coverage: float = 0.4) -> None:
        if total_pixels < 1:
            raise LocalizeError(f"total_pixels must be at least 1, got {total_pixels}")
        self.total_pixels = total_pixels
        self.rate = min(1.0, MAX_AUROC_PIXELS / total_pixels)
        self.coverage = _in_range(coverage, 0.0, 1.0, "coverage", lo_open=True)
        self._rng = np.random.default_rng(0)
        self._scores: list[np.ndarray] = []  # sampled map values
        self._labels: list[np.ndarray] = []  # their mask values
        self.pixels = 0  # pixels added so far
        self.truth: list[bool] = []  # per frame: the mask has an anomalous pixel
        self.peaks: list[float] = []  # per frame: the map's peak inside the mask, or anywhere on a normal frame
        self.crit: list[float] = []  # per frame: the UCSD criterion's value of its detection map (see ucsd_pixel_criterion)

    def add(self, amap: np.ndarray, mask: np.ndarray, detection: np.ndarray | None = None) -> None:
        """One frame: its continuous map, its ground-truth mask and, for the UCSD criterion, its detection map."""
        i = len(self.truth)
        m, g = _as_map(amap, f"maps[{i}]"), np.asarray(mask) > 0
        if m.shape != g.shape:
            raise LocalizeError(f"frame {i}: map shape {m.shape} differs from mask shape {g.shape}")
        t = bool(g.any())
        self.truth.append(t)
        self.peaks.append(float(m[g].max()) if t else float(m.max()))
        flat_m, flat_g = m.ravel(), g.ravel()
        if self.rate < 1.0:
            idx = self._rng.integers(0, flat_m.size, max(1, round(flat_m.size * self.rate)))
            flat_m, flat_g = flat_m[idx], flat_g[idx]
        self._scores.append(flat_m)
        self._labels.append(flat_g)
        self.pixels += m.size
        if detection is not None:
            d = _as_map(detection, f"pixel_maps[{i}]")
            if d.shape != g.shape:
                raise LocalizeError(f"frame {i}: detection map shape {d.shape} differs from mask shape {g.shape}")
            self.crit.append(_criterion(d, g, t, self.coverage))

    def _check_complete(self) -> None:
        if not self.truth:
            raise LocalizeError("need at least one map and mask")
        if self.pixels != self.total_pixels:
            raise LocalizeError(f"{self.pixels} pixels were added but total_pixels is {self.total_pixels}: "
                                "the sample's rate was set for another count")

    def pixel_auroc(self) -> float:
        """Pixel-level AUROC pooled over all frames added (anomalous = positive)."""
        self._check_complete()
        return _two_class_auc(np.concatenate(self._labels), np.concatenate(self._scores),
                              "pixel AUROC needs both anomalous and normal pixels in gt_masks")

    def peak_frame_auc(self) -> float:
        """See :func:`peak_frame_auc`."""
        self._check_complete()
        return _two_class_auc(np.array(self.truth), np.array(self.peaks), "the peak-in-mask frame AUC needs both "
                              "anomalous frames (non-empty mask) and normal ones")

    def ucsd_pixel_criterion(self, thresholds: np.ndarray | None = None) -> dict:
        """See :func:`ucsd_pixel_criterion` (no frame-level gate), over the detection maps added."""
        self._check_complete()
        if len(self.crit) != len(self.truth):
            raise LocalizeError(f"{len(self.crit)} of the {len(self.truth)} frames came with a detection map")
        return _ucsd_sweep(np.array(self.crit), np.array(self.truth), thresholds, self.coverage)


def pixel_auroc(maps: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray]) -> float:
    """Pixel-level AUROC pooled over all frames (anomalous = positive); over 5e6 pixels, a seeded sample."""
    return _summary(maps, gt_masks).pixel_auroc()


def _summary(maps: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray]) -> PixelSummary:
    """A PixelSummary of whole lists of maps and masks."""
    pairs = _map_mask_pairs(maps, gt_masks)
    summary = PixelSummary(sum(m.size for m, _ in pairs))
    for m, g in pairs:
        summary.add(m, g)
    return summary


def peak_frame_auc(maps: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray]) -> float:
    """Frame AUC of the map's peak, told where the anomaly is: inside the mask on anomalous frames, anywhere on normal ones.

    An oracle, not a detector: it bounds every frame score that thresholds the map's peak with one
    threshold for all frames. When it is low, the map is no higher at the anomaly than at the
    brightest spot of a normal frame (a crowd near the camera), so the peak cannot tell the frames
    apart however it is read; a score that compares frames within their own video can still do so.
    """
    return _summary(maps, gt_masks).peak_frame_auc()


def _count_above(sorted_values: np.ndarray, thresholds: np.ndarray, inclusive: bool) -> np.ndarray:
    """For each threshold, how many sorted values are > it (>= with inclusive)."""
    side: Literal["left", "right"] = "left" if inclusive else "right"
    return sorted_values.size - np.searchsorted(sorted_values, thresholds, side=side)


def _criterion(m: np.ndarray, g: np.ndarray, anomalous: bool, coverage: float) -> float:
    """The threshold below which frame (m, g) counts for the UCSD criterion: a TP or FP iff this value > t."""
    vals = m[g] if anomalous else m.ravel()
    k = math.ceil(coverage * vals.size - 1e-9) if anomalous else 1  # k-th largest value must exceed t
    return float(np.partition(vals, vals.size - k)[vals.size - k])


def _ucsd_sweep(crit: np.ndarray, truth: np.ndarray, thresholds: np.ndarray | None, coverage: float) -> dict:
    """TPR, FPR and AUC of the UCSD criterion from each frame's criterion value (-inf: never counts)."""
    if truth.all() or not truth.any():
        raise LocalizeError("the UCSD criterion needs both anomalous frames (non-empty mask) and normal ones")
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
    return {"tpr": tpr, "fpr": fpr, "thresholds": thr, "auc": float(area), "coverage": coverage}


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
    crit = np.array([_criterion(m, g, t, cov) if on else -np.inf for (m, g), t, on in zip(pairs, truth, gate)])
    return _ucsd_sweep(crit, truth, thresholds, cov)


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
    det_scores, det_true, gt_best = [], [], []
    track_of: list[int] = []  # per GT region: its track's index
    track_ids: dict[Hashable, int] = {}  # track id -> index
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
