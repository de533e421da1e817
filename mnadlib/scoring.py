"""Frame scores of MNAD (Park et al., CVPR 2020, Sec. 3.4) as the authors' ``utils.py`` computes them.

* PSNR on images mapped from [-1, 1] to [0, 1]: ``10 log10(1 / mse)`` (Eq. 11);
* the point score that gates the test-time memory update: ``sum(w e) / sum(w)`` with ``e`` the
  squared error and ``w = 1 - exp(-e)`` (Eq. 13), on batch element 0 only, as the authors do;
* per-video min-max normalisation (the authors recompute min and max for every element, O(n^2);
  this is the same result in O(n));
* the regularity score ``alpha * norm(PSNR) + (1 - alpha) * (1 - norm(feature distance))`` (Eq. 12);
* frame AUC as the authors compute it: regularity against ``1 - label`` (normal is positive),
  over all videos concatenated; plus a macro AUC (mean of per-video AUCs), an extra metric.
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
    """Element-wise squared error on [0, 1]-scaled images, same shape as the inputs."""
    return (_unit(output) - _unit(target)) ** 2


def mse_per_frame(output: Tensor, target: Tensor) -> Tensor:
    """Mean squared error of each (C, H, W) frame of a batch on [0, 1]-scaled images: (B,)."""
    return squared_error(output, target).flatten(1).mean(dim=1)


def psnr(mse: float) -> float:
    """PSNR in dB of an image pair with the given MSE (peak 1), computed with Python's math as the authors do."""
    if mse <= 0:
        return math.inf
    return 10 * math.log10(1 / mse)


def point_score(output: Tensor, target: Tensor) -> float:
    """The authors' weighted error of batch element 0, compared with ``th`` for the test-time update."""
    err = squared_error(output[0], target[0])
    weight = 1 - torch.exp(-err)
    return (torch.sum(weight * err) / torch.sum(weight)).item()


def minmax(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1] in float64; a constant sequence maps to zeros (the authors divide by zero)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return x
    lo, hi = x.min(), x.max()
    span = hi - lo
    return (x - lo) / span if span > 0 else np.zeros_like(x)


def regularity(psnr_values: Sequence[float], feature_distance: Sequence[float], alpha: float) -> np.ndarray:
    """Per-video regularity score: high means normal (Eq. 12)."""
    return alpha * minmax(psnr_values) + (1 - alpha) * (1 - minmax(feature_distance))


def frame_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Frame AUC as the authors compute it: regularity scores against ``1 - label`` (normal positive)."""
    y = 1 - np.asarray(labels).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(np.unique(y)) < 2:
        raise ValueError("frame AUC needs both normal and anomalous frames in the labels")
    return float(roc_auc_score(y_true=y, y_score=s))


def macro_auc(scores: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> float:
    """Mean of per-video frame AUCs over videos that hold both classes (an extra, not the paper's metric)."""
    aucs = [frame_auc(scores[v], labels[v]) for v in scores if len(np.unique(labels[v])) == 2]
    return float(np.mean(aucs)) if aucs else float("nan")


def roc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) for detecting anomalies from regularity scores."""
    fpr, tpr, _ = roc_curve(np.asarray(labels).ravel(), -np.asarray(scores, dtype=np.float64).ravel())
    return fpr, tpr
