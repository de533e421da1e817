"""Figures of MNAD results with matplotlib's Agg canvas: no pyplot state, nothing shown, every function returns a Figure.

* regularity score per test video with the ground-truth anomalous frames shaded (the paper's Fig. 5);
* ROC curves of several methods on one axes;
* example frames: input, prediction and squared-error map (the paper's Fig. 4);
* t-SNE of queries coloured by their nearest memory item, the items as stars (the paper's Fig. 6);
* training curves from ``history.json`` and the memory-item usage of the last epoch;
* a dataset's sample frames with their masks, and the label timeline of each test video.

Inputs are plain arrays, ``EvalResult`` objects or their JSON form, so the figures can be redrawn
from files written by earlier runs. Images follow the library's convention: BGR, either uint8
(H, W, 3) or float tensors (3, H, W) in [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import scoring
from .checkpoint import atomic_write


def new_figure(width: float, height: float) -> Figure:
    """A Figure on its own Agg canvas, outside pyplot's registry (so nothing leaks into notebooks)."""
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | Path, svg: bool = False) -> list[Path]:
    """Write ``fig`` as PNG (and SVG beside it) atomically, release the figure and return the written paths."""
    png = Path(path).with_suffix(".png")
    paths = [atomic_write(png, lambda f: fig.savefig(f, format="png"))]
    if svg:
        paths.append(atomic_write(png.with_suffix(".svg"), lambda f: fig.savefig(f, format="svg")))
    fig.clear()
    return paths


def save_and_display(fig: Figure, path: str | Path, svg: bool = False) -> list[Path]:
    """:func:`save`, then display the PNG when running in IPython (a notebook keeps the image as its output)."""
    paths = save(fig, path, svg)
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return paths
    if get_ipython() is not None:
        display(Image(filename=str(paths[0])))
    return paths


def to_rgb(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A BGR image, uint8 (H, W, 3) or float (3, H, W) in [-1, 1], as RGB floats in [0, 1] for imshow."""
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    arr = arr.astype(np.float64) / 255.0 if arr.dtype == np.uint8 else (arr.astype(np.float64) + 1) / 2
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3:
        arr = arr[..., ::-1]  # BGR -> RGB
    return np.clip(arr, 0.0, 1.0)


def _grid(n: int, cols: int) -> tuple[int, int]:
    """(rows, cols) for n panels, at most ``cols`` wide."""
    cols = max(1, min(cols, n))
    return math.ceil(n / cols), cols


def _runs(labels: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index pairs, end exclusive, of each run of ones."""
    padded = np.concatenate([[0], np.asarray(labels, dtype=np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _per_video(result: Any) -> dict[str, dict[str, list]]:
    """``{video: {"frames", "score", "label"}}`` from an EvalResult or its JSON dict."""
    videos = result["videos"] if isinstance(result, Mapping) else result.videos
    out = {}
    for name, s in videos.items():
        rec = s if isinstance(s, Mapping) else vars(s)
        score = rec["score"]
        out[name] = {"frames": rec.get("frames") or list(range(len(score))), "score": score, "label": rec.get("label")}
    return out


def score_curves(result: Any, scores: Mapping[str, Sequence[float]] | None = None, cols: int = 3,
                 max_videos: int = 0, title: str = "regularity score") -> Figure:
    """Regularity score of each test video (the first ``max_videos``; 0 = all), ground-truth anomalous frames shaded.

    The title says when videos are left out, so a figure of 6 of Ped2's 12 videos does not read as all of them.
    """
    every = _per_video(result)
    videos = dict(list(every.items())[:max_videos]) if max_videos > 0 else every
    rows, cols = _grid(len(videos), cols)
    fig = new_figure(3.6 * cols, 2.2 * rows)
    for k, (name, v) in enumerate(videos.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        frames = np.asarray(v["frames"])
        ax.plot(frames, scores[name] if scores is not None else v["score"], color="tab:blue", lw=1.2)
        if v["label"] is not None:
            for a, b in _runs(np.asarray(v["label"])):
                ax.axvspan(frames[a] - 0.5, frames[b - 1] + 0.5, color="tab:red", alpha=0.25, lw=0)
        ax.set_title(f"video {name}", fontsize=9)
        ax.set_xlabel("frame", fontsize=8)
        if k % cols == 0:
            ax.set_ylabel("score (high: normal)", fontsize=8)
        ax.tick_params(labelsize=7)
    shown = f", first {len(videos)} of {len(every)} test videos" if len(videos) < len(every) else ""
    fig.suptitle(f"{title}{shown} (red: ground-truth anomalous frames)", fontsize=10)
    return fig


def roc_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = "frame-level ROC") -> Figure:
    """One ROC line per method from ``{name: (regularity scores, labels)}`` (1 = anomalous), plus chance."""
    fig = new_figure(4.6, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for name, (scores, labels) in curves.items():
        fpr, tpr = scoring.roc(np.asarray(scores), np.asarray(labels))
        auc = scoring.frame_auc(np.asarray(scores), np.asarray(labels))
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUC {100 * auc:.1f}%)")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def result_curve(result: Any, scores: Mapping[str, Sequence[float]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels) over all videos concatenated, as ``roc_curves`` takes them."""
    videos = _per_video(result)
    s = np.concatenate([np.asarray(scores[n] if scores is not None else v["score"], dtype=np.float64) for n, v in videos.items()])
    return s, np.concatenate([np.asarray(v["label"]) for v in videos.values()])


def example_frames(examples: Sequence[Any], titles: Sequence[str] | None = None,
                   masks: Sequence[np.ndarray | None] | None = None) -> Figure:
    """One row per example: the real frame (mask outlined), the model's output and the squared-error map.

    An example is a ``FrameStep`` (``target``, ``output``) or a ``(target, output)`` pair of images.
    The error maps share one colour scale, with a colour bar, so a normal frame's map reads as
    darker than an anomaly's rather than each map stretched to its own maximum.
    """
    pairs = [(to_rgb(t), to_rgb(o)) for t, o in ((ex.target, ex.output) if hasattr(ex, "target") else ex for ex in examples)]
    errs = [((real - pred) ** 2).mean(axis=-1) if real.ndim == 3 else (real - pred) ** 2 for real, pred in pairs]
    vmax = max((float(e.max()) for e in errs), default=0.0) or 1.0
    fig = new_figure(8.2, 2.3 * len(examples))
    for r, (ex, (real, pred), err) in enumerate(zip(examples, pairs, errs)):
        label = titles[r] if titles else (f"video {ex.video} frame {ex.frame}" if hasattr(ex, "video") else f"example {r}")
        for c, (img, name) in enumerate(((real, "frame"), (pred, "prediction"), (err, "squared error"))):
            ax = fig.add_subplot(len(examples), 3, 3 * r + c + 1)
            shown = ax.imshow(img, cmap="inferno" if c == 2 else "gray", interpolation="nearest",
                              vmin=0.0 if c == 2 else None, vmax=vmax if c == 2 else None)
            if c == 0 and masks is not None and masks[r] is not None and np.asarray(masks[r]).any():
                ax.contour(_resize_mask(np.asarray(masks[r]), img.shape[:2]), levels=[0.5], colors="red", linewidths=0.8)
            if c == 2:
                fig.colorbar(shown, ax=ax, shrink=0.85).ax.tick_params(labelsize=6)
            ax.set_title(f"{label}: {name}" if c == 0 else f"{name} (pixels in [0, 1])" if c == 2 else name, fontsize=8)
            ax.set_axis_off()
    return fig


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a (H, W) mask to ``shape`` (the model's input size)."""
    rows = (np.arange(shape[0]) * mask.shape[0] / shape[0]).astype(int)
    cols = (np.arange(shape[1]) * mask.shape[1] / shape[1]).astype(int)
    return mask[rows][:, cols].astype(np.float64)


def tsne_queries(queries: np.ndarray, nearest: np.ndarray, items: np.ndarray | None = None,
                 max_points: int = 1500, seed: int = 0, perplexity: float = 30.0) -> Figure:
    """t-SNE of (N, C) queries coloured by their nearest memory item; the (M, C) items drawn as stars."""
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(queries), size=min(max_points, len(queries)), replace=False))
    q, near = np.asarray(queries)[keep], np.asarray(nearest)[keep]
    points = q if items is None else np.concatenate([q, np.asarray(items)])
    emb = TSNE(n_components=2, perplexity=min(perplexity, (len(points) - 1) / 3), init="pca",
               random_state=seed).fit_transform(points.astype(np.float32))
    m = int(max(near.max() + 1, 0 if items is None else len(items)))
    colors = _colors(m)
    fig = new_figure(5.4, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(emb[: len(q), 0], emb[: len(q), 1], c=colors[near], s=4, alpha=0.6, lw=0)
    if items is not None:
        ax.scatter(emb[len(q):, 0], emb[len(q):, 1], c=colors[: len(items)], marker="*", s=180,
                   edgecolors="black", linewidths=0.8)
    ax.set_title(f"t-SNE of {len(q)} queries, coloured by nearest memory item (stars: items)", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def _colors(n: int) -> np.ndarray:
    """n distinct RGBA colours (tab10, then tab20, then a continuous map)."""
    from matplotlib import colormaps

    if n <= 10:
        return colormaps["tab10"](np.arange(n))
    if n <= 20:
        return colormaps["tab20"](np.arange(n))
    return colormaps["turbo"](np.linspace(0, 1, n))


_LOSSES = (("loss", "total loss"), ("pixel", "pixel MSE"), ("compactness", "compactness"), ("separateness", "separateness"))


_MEMORY_LOSSES = ("compactness", "separateness")


def training_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]] | Sequence[Mapping[str, Any]]) -> Figure:
    """Per-epoch losses (one panel per loss, one line per run) from one or several ``history.json`` lists.

    Each run keeps its colour in every panel (the legend sits in the first). A run without memory
    (compactness 0 at every epoch) has no memory losses, so it is left out of their panels rather
    than drawn as a line at zero.
    """
    runs = histories if isinstance(histories, Mapping) else {"run": histories}
    colours = {name: f"C{i % 10}" for i, name in enumerate(runs)}
    with_memory = {name for name, hist in runs.items() if any(h["compactness"] != 0 for h in hist)}
    fig = new_figure(3.2 * len(_LOSSES), 2.8)
    for k, (key, title) in enumerate(_LOSSES):
        ax = fig.add_subplot(1, len(_LOSSES), k + 1)
        drawn = {name: hist for name, hist in runs.items() if key not in _MEMORY_LOSSES or name in with_memory}
        for name, hist in drawn.items():
            ax.plot([h["epoch"] for h in hist], [h[key] for h in hist], marker="o", ms=3, label=name, color=colours[name])
        if not drawn:
            ax.text(0.5, 0.5, "no run with memory", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        elif all(h[key] > 0 for hist in drawn.values() for h in hist):
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(which="both", labelsize=7)  # a log axis within one decade labels its minor ticks
        if k == 0 and len(runs) > 1:
            ax.legend(fontsize=7)
    return fig


def memory_usage(usage: Sequence[int] | Sequence[Mapping[str, Any]], title: str = "memory item usage") -> Figure:
    """Bar chart: share of queries whose nearest item is each item (a history list: its last epoch)."""
    counts = np.asarray(usage[-1]["memory_usage"] if usage and isinstance(usage[-1], Mapping) else usage, dtype=np.float64)
    share = counts / max(counts.sum(), 1.0)
    fig = new_figure(4.8, 2.8)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(np.arange(len(share)), 100 * share, color=_colors(len(share)))
    ax.set_xticks(np.arange(len(share)))
    ax.set_xlabel("memory item")
    ax.set_ylabel("% of queries (nearest item)")
    ax.set_title(title, fontsize=10)
    return fig


def frames_with_masks(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray | None],
                      titles: Sequence[str], cols: int = 4) -> Figure:
    """A grid of BGR frames with their ground-truth masks outlined in red."""
    rows, cols = _grid(len(frames), cols)
    fig = new_figure(3.0 * cols, 2.2 * rows)
    for k, (frame, mask, title) in enumerate(zip(frames, masks, titles)):
        ax = fig.add_subplot(rows, cols, k + 1)
        img = to_rgb(frame)
        ax.imshow(img, interpolation="nearest")
        if mask is not None and np.asarray(mask).any():
            ax.contour(_resize_mask(np.asarray(mask), img.shape[:2]), levels=[0.5], colors="red", linewidths=0.8)
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    return fig


def label_timeline(labels: Mapping[str, np.ndarray], title: str = "ground-truth labels per test video") -> Figure:
    """One row per test video: anomalous frames in red along the frame axis."""
    fig = new_figure(7.0, 0.9 + 0.32 * len(labels))
    ax = fig.add_subplot(1, 1, 1)
    names = list(labels)
    for row, name in enumerate(names):
        lab = np.asarray(labels[name])
        ax.broken_barh([(0, len(lab))], (row - 0.4, 0.8), color="lightgrey")
        ax.broken_barh([(a, b - a) for a, b in _runs(lab)], (row - 0.4, 0.8), color="tab:red")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("frame")
    ax.set_title(title, fontsize=10)
    return fig
