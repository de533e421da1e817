"""The authors' evaluation protocol (``Evaluate.py``; Park et al., CVPR 2020, Sec. 3.4), exactly.

Frames are scored in order with batch 1. The memory items start from the trained ones and are
carried across videos; after a frame is scored, if its point score is below ``th``, the memory is
updated with that frame's queries, which only affects later frames. Prediction drops the first
``t_length - 1`` frames of every video and their labels (the authors hard-code 4, which equals
``t_length - 1`` for their t = 5). Each video's PSNR and feature distance are min-max normalised
and combined with ``alpha``; the frame AUC is computed over all videos concatenated.

Clearly named deviations, off by default: ``reset_memory_per_video`` and a batched fast path
(``batch_size > 1``, allowed only without the test-time update, where it changes nothing but
speed). Extensions beyond the paper, reported beside the faithful score: a patch-level error
(the worst local window, so a small anomaly is not diluted by the frame mean), the frame's SSIM in
dB instead of its PSNR, normalisation with statistics of normal frames instead of the whole
(future) test video, and the online running-max score.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import scoring
from .checkpoint import atomic_write, atomic_write_json
from .config import ConfigError, EvalConfig, to_dict
from .data import ClipDataset, DataError, FrameSource, frames_mib
from .memory import update_from_features
from .model import MNAD


class SizeWarning(UserWarning):
    """Frames are scored at another size than the model was trained at; its scores then differ, without an error."""


FIELDS = ("psnr", "feature_distance", "point_score", "patch_psnr", "ssim_db", "updated")


@dataclass
class FrameStep:
    """One scored frame: its statistics and, for localization, the tensors behind them."""

    video: str
    frame: int  # index of the scored (target) frame within its video
    psnr: float
    feature_distance: float
    point_score: float
    patch_psnr: float
    ssim_db: float  # -10 log10(1 - mean SSIM): an extension, not the paper's
    updated: bool
    output: torch.Tensor  # (n_channel, H, W) predicted or reconstructed frame
    target: torch.Tensor  # (n_channel, H, W) the real frame
    fea: torch.Tensor  # (C, h, w) encoder features
    memory: torch.Tensor | None  # items used to score this frame
    memory_after: torch.Tensor | None  # items after this frame's test-time update


@dataclass
class VideoScores:
    """Per-frame records of one video."""

    frames: list[int] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    feature_distance: list[float] = field(default_factory=list)
    point_score: list[float] = field(default_factory=list)
    patch_psnr: list[float] = field(default_factory=list)
    ssim_db: list[float] = field(default_factory=list)
    updated: list[bool] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    label: list[int] | None = None


@dataclass
class EvalResult:
    """Everything the evaluation produces, as plain lists (JSON/CSV friendly)."""

    videos: dict[str, VideoScores]
    auc: float | None
    macro_auc: float | None
    config: dict[str, Any]
    memory: torch.Tensor | None = None  # items after the last frame

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout of ``python -m mnadlib evaluate``; a NaN macro AUC (no video holds both classes) is null, as JSON has no NaN."""
        return {
            "auc": self.auc,
            "macro_auc": None if self.macro_auc is None or math.isnan(self.macro_auc) else self.macro_auc,
            "videos": {name: {k: v for k, v in vars(s).items()} for name, s in self.videos.items()},
            "config": self.config,
        }

    def records(self) -> list[dict[str, Any]]:
        """One flat record per scored frame."""
        rows = []
        for name, s in self.videos.items():
            for i, frame in enumerate(s.frames):
                row = {"video": name, "frame": frame, **{k: getattr(s, k)[i] for k in (*FIELDS, "score")}}
                row["label"] = None if s.label is None else s.label[i]
                rows.append(row)
        return rows

    def write_json(self, path: str | Path) -> Path:
        """Write the result as JSON, atomically: a full disk or a kill leaves the earlier file, never half of one."""
        return atomic_write_json(self.to_dict(), path)

    def write_csv(self, path: str | Path) -> Path:
        """Write one row per scored frame, atomically like :meth:`write_json`."""
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=["video", "frame", *FIELDS, "score", "label"])
        writer.writeheader()
        writer.writerows(self.records())
        return atomic_write(path, lambda f: f.write(text.getvalue().encode()))


def patch_mse(err: torch.Tensor, window: int) -> torch.Tensor:
    """Largest mean squared error over ``window``-sized local windows (stride window/2) of each (B, C, H, W) error map."""
    emap = err.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    k = max(1, min(window, emap.shape[-2], emap.shape[-1]))
    return F.avg_pool2d(emap, k, stride=max(1, k // 2)).flatten(1).max(dim=1).values


def iter_frames(
    model: MNAD,
    items: torch.Tensor | None,
    videos: list[FrameSource],
    cfg: EvalConfig,
    progress: bool = False,
) -> Iterator[FrameStep]:
    """Score every frame of ``videos`` in order, updating the memory between frames as the authors do.

    Frames are scored where the model is; ``cfg.device`` other than ``auto`` must name that device.
    """
    device = model_device(model, cfg.device)
    if model.train_size is not None and tuple(cfg.size) != tuple(model.train_size):
        warnings.warn(SizeWarning(
            f"scoring at {cfg.size[0]}x{cfg.size[1]} a model trained at {model.train_size[0]}x{model.train_size[1]} "
            f"(H x W): the network runs at any multiple of 8, but its scores differ; pass "
            f"EvalConfig(size={tuple(model.train_size)}) (Checkpoint.train_size)"), stacklevel=3)
    model.eval()
    dataset = ClipDataset(videos, model.cfg.t_length, cfg.size, cache_mib=frames_mib(model.cfg.t_length, cfg.size))
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers)
    initial = None if items is None or model.memory is None else items.to(device)  # a model without memory has none to update
    items = initial
    window = max(cfg.size) // 8
    current = None
    k = 0
    with torch.no_grad():
        for clip in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
            x, target = model.split_clip(clip.to(device))
            if cfg.reset_memory_per_video and dataset.video_of(k)[0] != current:
                items = initial
            current = dataset.video_of(k)[0]
            out = model(x, items, train=False)
            err = scoring.squared_error(out.output, target)
            mse = err.flatten(1).mean(dim=1)
            patch = patch_mse(err, window)
            sdb = scoring.ssim_db(out.output, target).tolist()
            fd = _feature_distance(out, x.shape[0])
            for b in range(x.shape[0]):
                point = scoring.point_score(out.output[b : b + 1], target[b : b + 1])
                used, update = items, False
                if cfg.test_time_update and items is not None and point < cfg.th:
                    items, update = update_from_features(out.fea[b : b + 1], items), True
                name, frame = dataset.video_of(k)
                yield FrameStep(
                    video=name, frame=frame, psnr=scoring.psnr(mse[b].item()), feature_distance=fd[b],
                    point_score=point, patch_psnr=scoring.psnr(patch[b].item()), ssim_db=sdb[b], updated=update,
                    output=out.output[b], target=target[b], fea=out.fea[b], memory=used, memory_after=items,
                )
                k += 1


def model_device(model: MNAD, wanted: str = "auto") -> torch.device:
    """The device the model's weights are on; a ``wanted`` device (not ``auto``) elsewhere is a ConfigError, not ignored."""
    device = next(model.parameters()).device
    if wanted == "auto":
        return device
    try:
        want = torch.device(wanted)
    except RuntimeError:
        raise ConfigError(f"unknown device {wanted!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if want.type != device.type or (want.index is not None and want.index != device.index):
        raise ConfigError(f"EvalConfig.device is {wanted!r} but the model is on {device}: move it first "
                          f"(model.to({wanted!r})), or leave device='auto' to score where the model is")
    return device


def _feature_distance(out: Any, batch: int) -> list[float]:
    """Per-sample compactness loss (the paper's feature distance); the batch-1 value is the authors' scalar."""
    if out.mem is None:
        return [0.0] * batch
    if batch == 1:
        return [out.compactness_loss.item()]
    q = out.mem.query
    per = ((q - out.mem.memory[out.mem.nearest]) ** 2).view(batch, -1).mean(dim=1)
    return per.tolist()


def check_names(videos: list[FrameSource]) -> None:
    """Results are keyed by video name, so two videos of one name would be scored as one."""
    names = [v.name for v in videos]
    twins = sorted({n for n in names if names.count(n) > 1})
    if twins:
        paths = [str(v.path) for v in videos if v.name in twins]
        raise DataError(f"videos {twins} appear more than once ({', '.join(paths)}); results and labels are keyed by "
                        "video name, so give each video once, or rename one (e.g. a folder per dataset prefix)")


def check_labels(videos: list[FrameSource], labels: dict[str, np.ndarray]) -> None:
    """Every video needs a 1-D array of 0/1 labels (1 = anomalous) of its own length."""
    for v in videos:
        if v.name not in labels:
            raise DataError(f"no labels for test video '{v.name}' ({v.path}); labels cover {sorted(labels)}")
        arr = np.asarray(labels[v.name])
        if arr.ndim != 1:
            raise DataError(f"labels of video '{v.name}' have shape {arr.shape}; give one label per frame, shape "
                            f"({len(v)},) (load_labels cuts the authors' (1, N) file into these)")
        try:
            scoring.binary_labels(arr)
        except scoring.ScoreError as exc:
            raise DataError(f"labels of video '{v.name}': {exc}") from None
        if len(labels[v.name]) != len(v):
            raise DataError(
                f"video '{v.name}' has {len(v)} frames but {len(labels[v.name])} labels; "
                "the label file does not match this dataset"
            )


def evaluate(
    model: MNAD,
    items: torch.Tensor | None,
    videos: list[FrameSource],
    cfg: EvalConfig,
    labels: dict[str, np.ndarray] | None = None,
    progress: bool = False,
) -> EvalResult:
    """Run the protocol over ``videos`` and return per-frame records, regularity scores and the AUC."""
    check_names(videos)
    if labels is not None:
        check_labels(videos, labels)
    per: dict[str, VideoScores] = {v.name: VideoScores() for v in videos}
    final = items
    for step in iter_frames(model, items, videos, cfg, progress):
        s = per[step.video]
        s.frames.append(step.frame)
        for key in FIELDS:
            getattr(s, key).append(getattr(step, key))
        final = step.memory_after
    auc, macro = _score(per, cfg.alpha, labels)
    config = {**to_dict(cfg), "device": str(model_device(model)), "method": model.cfg.method, "t_length": model.cfg.t_length}
    return EvalResult(per, auc, macro, config, final)


def zero_motion_baseline(
    videos: list[FrameSource], t_length: int, size: tuple[int, int],
    labels: dict[str, np.ndarray] | None = None, batch_size: int = 16,
) -> EvalResult:
    """The trivial predictor: each frame "predicted" as a copy of the one before, scored like the paper's PSNR.

    A prediction model earns its place only by beating it. It scores the same frames as a
    ``t_length`` prediction model (the first ``t_length - 1`` of each video are dropped), with
    per-video min-max PSNR as the regularity (alpha = 1, no feature distance).
    """
    if t_length < 2:
        raise ValueError(f"the zero-motion baseline needs t_length >= 2 (a frame before the target), got {t_length}")
    check_names(videos)
    if labels is not None:
        check_labels(videos, labels)
    dataset = ClipDataset(videos, t_length, size, cache_mib=frames_mib(t_length, size))
    per: dict[str, VideoScores] = {v.name: VideoScores() for v in videos}
    window = max(size) // 8
    k = 0
    for clip in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        err = scoring.squared_error(clip[:, -6:-3], clip[:, -3:])
        sdb = scoring.ssim_db(clip[:, -6:-3], clip[:, -3:]).tolist()
        for mse, patch, ssim in zip(err.flatten(1).mean(dim=1).tolist(), patch_mse(err, window).tolist(), sdb):
            name, frame = dataset.video_of(k)
            s = per[name]
            s.frames.append(frame)
            s.psnr.append(scoring.psnr(mse))
            s.patch_psnr.append(scoring.psnr(patch))
            s.ssim_db.append(ssim)
            s.feature_distance.append(0.0)
            s.point_score.append(0.0)
            s.updated.append(False)
            k += 1
    auc, macro = _score(per, 1.0, labels)
    config = {"baseline": "zero motion", "t_length": t_length, "size": list(size)}
    return EvalResult(per, auc, macro, config)


def _score(per: dict[str, VideoScores], alpha: float, labels: dict[str, np.ndarray] | None
           ) -> tuple[float | None, float | None]:
    """Fill each video's regularity scores (Eq. 12) and labels; return the micro and macro frame AUC.

    A NaN or infinite PSNR or feature distance is a ScoreError naming the video: min-max scaling
    cannot rank it, and the AUC of the rest would look like a result.
    """
    for name, s in per.items():
        for key in ("psnr", "feature_distance"):
            bad = int((~np.isfinite(np.asarray(getattr(s, key), dtype=np.float64))).sum())
            if bad:
                raise scoring.ScoreError(
                    f"video '{name}': {bad} of {len(s.frames)} scored frames have a NaN or infinite {key}; the model's "
                    "output or its memory items are not finite (diverged training, or damaged weights or items): "
                    "check them with torch.isfinite")
        s.score = scoring.regularity(s.psnr, s.feature_distance, alpha).tolist()
        if labels is not None:
            s.label = [int(v) for v in np.asarray(labels[name])[s.frames]]
    return summarise(per)


def summarise(per: dict[str, VideoScores], key: str = "score") -> tuple[float | None, float | None]:
    """Micro (the paper's) and macro frame AUC of a score field; None without labels or with one class.

    The macro AUC is NaN when no single video holds both classes.
    """
    if any(s.label is None for s in per.values()):
        return None, None
    scores = np.concatenate([np.asarray(getattr(s, key), dtype=np.float64) for s in per.values()])
    labels = np.concatenate([np.asarray(s.label) for s in per.values()])
    if len(np.unique(labels)) < 2:
        return None, None
    macro = scoring.macro_auc({n: np.asarray(getattr(s, key)) for n, s in per.items()},
                              {n: np.asarray(s.label) for n, s in per.items()})
    return scoring.frame_auc(scores, labels), macro


def mean_psnr(result: EvalResult, label: int | None = 0) -> float | None:
    """Mean PSNR (dB) of the frames carrying ``label`` (None: every frame); None when there are none.

    On normal frames it measures how well a predictor learned normality, whatever the score does
    with it afterwards.
    """
    vals = [p for s in result.videos.values() for p in _psnr_with_label(s, label)]
    return float(np.mean(vals)) if vals else None


def within_video_sd(result: EvalResult, label: int = 0) -> float | None:
    """Mean over videos of the standard deviation of PSNR (dB) over the frames carrying ``label``.

    How much the PSNR of normal frames swings within a video: a drop on anomalous frames separates
    them only when it is large against this. Videos with fewer than two such frames are skipped.
    """
    sds = [float(np.std(vals)) for vals in (_psnr_with_label(s, label) for s in result.videos.values())
           if len(vals) > 1]
    return float(np.mean(sds)) if sds else None


def _psnr_with_label(s: VideoScores, label: int | None) -> list[float]:
    """A video's PSNR values on the frames carrying ``label`` (None: all; none when it is unlabelled)."""
    if label is None:
        return list(s.psnr)
    return [] if s.label is None else [p for p, lab in zip(s.psnr, s.label) if lab == label]


@dataclass
class NormalStats:
    """Statistics of normal frames for online normalisation (an extension: the paper normalises per test video)."""

    psnr: tuple[float, float]  # (low, high) of PSNR on normal frames
    feature_distance: tuple[float, float]
    patch_psnr: tuple[float, float]
    ssim_db: tuple[float, float]

    @classmethod
    def fit(cls, result: EvalResult, lo: float = 1.0, hi: float = 99.0) -> "NormalStats":
        """Robust range (percentiles ``lo``/``hi``) of each statistic over all frames of an evaluation of normal videos."""
        def rng(key: str) -> tuple[float, float]:
            vals = np.concatenate([np.asarray(getattr(s, key), dtype=np.float64) for s in result.videos.values()])
            return float(np.percentile(vals, lo)), float(np.percentile(vals, hi))
        return cls(rng("psnr"), rng("feature_distance"), rng("patch_psnr"), rng("ssim_db"))


def rescore(result: EvalResult, alpha: float, error: str = "frame", norm: str = "video",
            stats: NormalStats | None = None) -> tuple[dict[str, np.ndarray], float | None, float | None]:
    """Regularity scores under another error measure and normalisation.

    ``error`` is ``frame`` (the paper's PSNR), ``patch`` (the PSNR of the worst local window) or
    ``ssim`` (the frame's SSIM in dB, :func:`mnadlib.scoring.ssim_db`), each higher for a more
    normal frame.

    ``norm="video"`` is the authors' per-video min-max; ``norm="normal"`` scales with ``stats`` fitted
    on normal frames, so scores are comparable across videos and computable online.
    ``norm="running"`` scores the error measure alone (``alpha`` must be 1) as the dB by which a frame
    falls below the best frame of its video so far: online and free of statistics, but it takes each video's
    first frames as normal, so a video that opens on an anomaly hides it, and its reference only
    rises, so on a long video a crowd that slowly thickens reads as a growing anomaly.
    """
    scoring.check_alpha(alpha)
    keys = {"frame": "psnr", "patch": "patch_psnr", "ssim": "ssim_db"}
    if error not in keys:
        raise ValueError(f"error must be 'frame', 'patch' or 'ssim', got {error!r}")
    key = keys[error]
    if norm not in ("video", "normal", "running"):
        raise ValueError(f"norm must be 'video', 'normal' or 'running', got {norm!r}")
    if norm == "normal" and stats is None:
        raise ValueError("norm='normal' needs NormalStats fitted on normal frames")
    if norm == "running" and alpha != 1:
        raise ValueError(f"norm='running' scores the error measure alone: pass alpha=1, not {alpha}")
    missing = [n for n, s in result.videos.items() if len(getattr(s, key)) != len(s.frames)]
    if missing:
        raise ValueError(f"videos {missing} have no per-frame {key}: evaluate again with this version of mnadlib")
    scores: dict[str, np.ndarray] = {}
    for name, s in result.videos.items():
        p = np.asarray(getattr(s, key), dtype=np.float64)
        d = np.asarray(s.feature_distance, dtype=np.float64)
        if norm == "video":
            scores[name] = alpha * scoring.minmax(p) + (1 - alpha) * (1 - scoring.minmax(d))
        elif norm == "running":
            scores[name] = p - np.maximum.accumulate(p)
        else:
            assert stats is not None
            (plo, phi), (dlo, dhi) = getattr(stats, key), stats.feature_distance
            scores[name] = alpha * (p - plo) / max(phi - plo, 1e-12) + (1 - alpha) * (1 - (d - dlo) / max(dhi - dlo, 1e-12))
    tmp = {n: VideoScores(score=scores[n].tolist(), label=s.label) for n, s in result.videos.items()}
    auc, macro = summarise(tmp)
    return scores, auc, macro

