"""Frame scores of MNAD (Park et al., CVPR 2020, Sec. 3.4) as the authors' ``utils.py`` computes them.

* PSNR on images mapped from [-1, 1] to [0, 1]: ``10 log10(1 / mse)`` (Eq. 11);
* the point score that gates the test-time memory update: ``sum(w e) / sum(w)`` with ``e`` the
  squared error and ``w = 1 - exp(-e)`` (Eq. 13), on batch element 0 only, as the authors do;
* per-video min-max normalisation (the authors recompute min and max for every element, O(n^2);
  this is the same result in O(n));
* the regularity score ``alpha * norm(PSNR) + (1 - alpha) * (1 - norm(feature distance))`` (Eq. 12);
* frame AUC as the authors compute it: regularity against ``1 - label`` (normal is positive),
  over all videos concatenated; plus a macro AUC (mean of per-video AUCs), an extra metric.

Beyond the paper: ``ssim_db``, the structural dissimilarity of a frame pair in dB, for the
running-max SSIM extension of :func:`mnadlib.evaluate.rescore`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from torch import Tensor


def _unit(x: Tensor) -> Tensor:
    """Map an image from [-1, 1] to [0, 1]."""
    return (x + 1) / 2


def squared_error(output: Tensor, target: Tensor) -> Tensor:
    """Element-wise squared error on [0, 1]-scaled images, same shape as the inputs.

    Shapes must match exactly: broadcasting a single frame against a batch would give a number
    for pairs that were never meant.
    """
    if output.shape != target.shape:
        raise ScoreError(f"prediction {tuple(output.shape)} and target {tuple(target.shape)} differ in shape: "
                         "pass frames of one size, both (B, C, H, W) or both (C, H, W)")
    return (_unit(output) - _unit(target)) ** 2


def mse_per_frame(output: Tensor, target: Tensor) -> Tensor:
    """Mean squared error of each (C, H, W) frame of a batch on [0, 1]-scaled images: (B,)."""
    return squared_error(output, target).flatten(1).mean(dim=1)


MSE_FLOOR = 1e-12  # MSE of identical frames, so their PSNR stays finite (120 dB); 8-bit frames up to 1080p that differ are above it


def psnr(mse: float) -> float:
    """PSNR in dB of an image pair with the given MSE (peak 1), computed with Python's math as the authors do.

    Identical frames (a repeated frame of real footage, copied by the zero-motion baseline) score
    120 dB instead of infinity, which would turn every min-max and running-max score of their video
    into NaN; the authors' code raises ZeroDivisionError there. A NaN MSE (a model whose output
    holds NaN) stays NaN, for the scoring to report with its video and frame count.
    """
    if mse < 0:
        raise ScoreError(f"an MSE is never negative, got {mse}: pass the mean squared error, not a difference")
    return 10 * math.log10(1 / max(mse, MSE_FLOOR))


SSIM_WINDOW = 7  # skimage's default window, as the localization's SSIM map uses
SSIM_FLOOR = 1e-10  # 1 - SSIM of identical frames, so their dB stay finite (100 dB)


def _symmetric_pad(v: Tensor, r: int) -> Tensor:
    """Pad the last two dims by ``r`` with edge-inclusive mirroring (scipy's ``reflect``, skimage's SSIM filter)."""
    v = torch.cat([v[..., :r].flip(-1), v, v[..., -r:].flip(-1)], dim=-1)
    return torch.cat([v[..., :r, :].flip(-2), v, v[..., -r:, :].flip(-2)], dim=-2)


def ssim_per_pixel(output: Tensor, target: Tensor) -> Tensor:
    """SSIM at every pixel and channel of a batch of frame pairs on [0, 1]-scaled images: (B, C, H, W) float64.

    skimage's ``structural_similarity(..., full=True)`` map (uniform 7 x 7 window, sample
    covariance, K1 = 0.01, K2 = 0.03, data range 1, edges mirrored) for each channel, computed
    with pooling so it runs batched on the model's device. The frame score and the localization's
    SSIM map both come from it, so they cannot drift apart.
    """
    if min(output.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {tuple(output.shape[-2:])}")
    x, y = _unit(output).double(), _unit(target).double()
    moments = _symmetric_pad(torch.stack([x, y, x * x, y * y, x * y]).flatten(0, 1), SSIM_WINDOW // 2)
    ux, uy, uxx, uyy, uxy = torch.nn.functional.avg_pool2d(moments, SSIM_WINDOW, stride=1).unflatten(0, (5, x.shape[0]))
    n = SSIM_WINDOW ** 2
    vx = (uxx - ux * ux) * n / (n - 1)
    vy = (uyy - uy * uy) * n / (n - 1)
    vxy = (uxy - ux * uy) * n / (n - 1)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def mean_ssim(output: Tensor, target: Tensor) -> Tensor:
    """Mean of :func:`ssim_per_pixel` over each frame pair of a batch: (B,).

    The mean covers every pixel, as PSNR does (skimage's own mean leaves out a 3-pixel border,
    18 % of a 64 x 64 frame, where anomalies enter).
    """
    return ssim_per_pixel(output, target).flatten(1).mean(dim=1)


def ssim_db(output: Tensor, target: Tensor) -> Tensor:
    """Structural dissimilarity in dB, ``-10 log10(1 - mean SSIM)``, of each frame pair of a batch: (B,).

    The SSIM counterpart of PSNR (higher is more similar). SSIM compares local structure relative
    to local contrast, so a high-contrast pedestrian near the camera weighs less against a small
    anomaly than in the squared error.
    """
    return -10 * torch.log10((1 - mean_ssim(output, target)).clamp_min(SSIM_FLOOR))


def point_score(output: Tensor, target: Tensor) -> float:
    """The authors' weighted error of batch element 0, compared with ``th`` for the test-time update."""
    err = squared_error(output[0], target[0])
    weight = 1 - torch.exp(-err)
    return (torch.sum(weight * err) / torch.sum(weight)).item()


class ScoreError(ValueError):
    """Scores or labels cannot be used: non-finite values, labels other than 0/1, or one class only for an AUC."""


def minmax(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1] in float64; a constant sequence maps to zeros (the authors divide by zero).

    NaN or infinite values are a ScoreError: a NaN minimum once turned the whole sequence into zeros.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return x
    if not np.isfinite(x).all():
        raise ScoreError(f"{int((~np.isfinite(x)).sum())} of {x.size} values to normalise are NaN or infinite")
    lo, hi = x.min(), x.max()
    span = hi - lo
    return (x - lo) / span if span > 0 else np.zeros_like(x)


def regularity(psnr_values: Sequence[float] | np.ndarray, feature_distance: Sequence[float] | np.ndarray,
               alpha: float) -> np.ndarray:
    """Per-video regularity score: high means normal (Eq. 12)."""
    check_alpha(alpha)
    if len(psnr_values) != len(feature_distance):
        raise ScoreError(f"{len(psnr_values)} PSNR values but {len(feature_distance)} feature distances: "
                         "give one of each per frame")
    return alpha * minmax(psnr_values) + (1 - alpha) * (1 - minmax(feature_distance))


def check_alpha(alpha: float) -> None:
    """ScoreError unless ``alpha`` (PSNR's weight in the regularity score) lies in [0, 1]; NaN included."""
    if not 0.0 <= alpha <= 1.0:
        raise ScoreError(f"alpha must be in [0, 1] (the paper's: 0.6 pred, 0.7 recon), got {alpha}")


def binary_labels(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """Frame labels flattened to int64 0/1 (1 = anomalous); other values are an error, not a silently inverted AUC.

    ``1 - label`` on uint8 0/255 labels (a mask's maximum) wraps to 1/2 and would make the anomalies the positive class.
    """
    y = np.asarray(labels).ravel()
    if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
        bad = np.setdiff1d(np.unique(y), (0, 1))[:5] if y.dtype.kind in "biuf" else y.dtype
        raise ScoreError(f"labels must be 0 (normal) or 1 (anomalous), found {bad}; "
                         "e.g. (labels > 0).astype(int) for labels taken from masks")
    return y.astype(np.int64)


def frame_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Frame AUC as the authors compute it: regularity scores against ``1 - label`` (normal positive)."""
    y, s = _paired(scores, labels)
    y = 1 - y
    if len(np.unique(y)) < 2:
        raise ScoreError("frame AUC needs both normal and anomalous frames in the labels")
    if not np.isfinite(s).all():
        raise ScoreError(f"{int((~np.isfinite(s)).sum())} of {s.size} scores are NaN or infinite; "
                         "the model's output or memory items are not finite")
    return float(roc_auc_score(y_true=y, y_score=s))


def _paired(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (0/1) and scores (float64), flattened; ScoreError when their counts differ."""
    y, s = binary_labels(labels), np.asarray(scores, dtype=np.float64).ravel()
    if y.size != s.size:
        raise ScoreError(f"{s.size} scores but {y.size} labels: give one label per scored frame")
    return y, s


def macro_auc(scores: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> float:
    """Mean of per-video frame AUCs over videos that hold both classes (an extra, not the paper's metric)."""
    if set(scores) != set(labels):
        raise ScoreError(f"scores and labels name other videos: only scores for {sorted(set(scores) - set(labels))[:5]}, "
                         f"only labels for {sorted(set(labels) - set(scores))[:5]}")
    aucs = [frame_auc(scores[v], labels[v]) for v in scores if len(np.unique(labels[v])) == 2]
    return float(np.mean(aucs)) if aucs else float("nan")


def roc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) for detecting anomalies from regularity scores."""
    y, s = _paired(scores, labels)
    fpr, tpr, _ = roc_curve(y, -s)
    return fpr, tpr
