"""Frame AUC broken down: by annotated anomaly kind, and by how much of the frame the anomaly covers.

Diagnostics beside the paper's single frame AUC (Park et al., CVPR 2020, Sec. 4.2), not part of
its protocol. Each group's anomalous frames are scored against every normal frame of the test
set, with the same regularity scores the frame AUC uses, so a row says whether the score misses
one kind, or misses anomalies while they are small (far from the camera, or entering the frame),
rather than mixing videos badly, which lowers every row. Each row gives the paper's protocol and
the online running-max PSNR extension (:func:`mnadlib.evaluate.rescore`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from . import scoring
from .data import load_masks
from .evaluate import EvalResult, rescore
from .frames import FrameSource

# Upper edges of the visible-area bins, as fractions of the frame; fixed, so tables of different
# datasets and frame sizes line up.
AREA_EDGES = (0.0025, 0.005, 0.01, 0.02)
AREA_BINS = ("< 0.25 %", "0.25-0.5 %", "0.5-1 %", "1-2 %", ">= 2 %")

FrameGroups = Mapping[str, Mapping[int, Iterable[str]]]  # video -> frame index -> the groups it shows


def auc_by_kind(result: EvalResult, objects: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Frame AUC (%) of each annotated anomaly kind: the scored frames showing it against every normal frame.

    ``objects`` maps a video to its annotated objects (``{"kind": str, "frames": [int, ...]}``, as in
    synthped's ``annotations.json``). Rows are sorted by kind.
    """
    groups: dict[str, dict[int, set[str]]] = {}
    for name, objs in objects.items():
        for obj in objs:
            for f in obj["frames"]:
                groups.setdefault(name, {}).setdefault(int(f), set()).add(str(obj["kind"]))
    rows = _auc_by_group(result, groups)
    return [{"kind": kind, **rows[kind]} for kind in sorted(rows)]


def visible_area(masks: np.ndarray) -> np.ndarray:
    """Fraction of each frame covered by anomalous pixels: (T,) from bool (T, H, W) masks."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be (T, H, W), got shape {masks.shape}")
    return masks.reshape(len(masks), -1).mean(axis=1)


def areas_from_masks(dataset_root: str | os.PathLike, videos: Sequence[FrameSource]) -> dict[str, np.ndarray]:
    """Visible anomalous area per frame of each test video that has pixel masks (videos without are left out)."""
    areas = {}
    for video in videos:
        masks = load_masks(dataset_root, video)
        if masks is not None:
            areas[video.name] = visible_area(masks)
    return areas


def area_bin(fraction: float) -> str:
    """The :data:`AREA_BINS` label of a visible-area fraction."""
    return AREA_BINS[int(np.searchsorted(AREA_EDGES, fraction, side="right"))]


def auc_by_size(result: EvalResult, areas: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Frame AUC (%) of the anomalous frames in each visible-area bin, against every normal frame.

    ``areas`` maps a video to the fraction of each of its frames covered by the anomaly (from its
    pixel masks, :func:`visible_area`), indexed like the video's frames. Anomalous frames of
    videos without an entry are left out; their normal frames still count. Rows follow
    :data:`AREA_BINS`, skipping empty bins.
    """
    groups: dict[str, dict[int, list[str]]] = {}
    for name, s in result.videos.items():
        if name not in areas or s.label is None:
            continue
        area = np.asarray(areas[name], dtype=np.float64)
        if s.frames and len(area) <= max(s.frames):
            raise ValueError(f"video '{name}' has {len(area)} visible-area values but frame {max(s.frames)} "
                             "was scored; give one value per frame of the video (areas_from_masks does)")
        groups[name] = {f: [area_bin(area[f])] for f, lab in zip(s.frames, s.label) if lab}
    rows = _auc_by_group(result, groups)
    return [{"visible_area": b, **rows[b]} for b in AREA_BINS if b in rows]


def _auc_by_group(result: EvalResult, groups: FrameGroups) -> dict[str, dict[str, Any]]:
    """Frames, protocol frame AUC (%) and running-max frame AUC (%) of each group, against all normal frames."""
    if any(s.label is None for s in result.videos.values()):
        raise ValueError("a frame AUC breakdown needs an EvalResult computed with labels")
    if any(len(s.psnr) != len(s.frames) for s in result.videos.values()):
        raise ValueError("a frame AUC breakdown needs each scored frame's PSNR (for the running-max column)")
    running = rescore(result, 1.0, norm="running")[0]
    normal: list[tuple[float, float]] = []
    shown: dict[str, list[tuple[float, float]]] = {}
    for name, s in result.videos.items():
        of_frame = groups.get(name, {})
        assert s.label is not None, "checked above"
        for frame, score, run, label in zip(s.frames, s.score, running[name], s.label):
            if not label:
                normal.append((score, run))
            for group in of_frame.get(frame, ()):
                shown.setdefault(group, []).append((score, run))
    rows = {}
    for group, scores in shown.items():
        y = np.r_[np.zeros(len(normal)), np.ones(len(scores))]
        both = np.asarray(normal + scores, dtype=np.float64).reshape(-1, 2)
        rows[group] = {"frames": len(scores),
                       "frame_auc": _pct(scoring.frame_auc(both[:, 0], y)) if normal else None,
                       "frame_auc_running": _pct(scoring.frame_auc(both[:, 1], y)) if normal else None}
    return rows


def _pct(auc: float) -> float:
    """An AUC in percent, two decimals."""
    return round(100 * auc, 2)
