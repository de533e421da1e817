"""Rendering and files of a whole-video localization: boxes, heat maps, side-by-side panels, outputs.

Draws what :mod:`mnadlib.localize_video` found: every region's box with its score on the input
frame (ground truth in green when known), the model's prediction, and the anomaly map as a heat
map, side by side; the regularity curve (MNAD Eq. 12) with the frame threshold, the flagged frames
and the ground truth shaded; and writes the annotated MP4, the plot, per-frame boxes (JSON, CSV)
and the anomalous segments (JSON). Every file is written beside and renamed into place, so a failed
run leaves an earlier file whole, and no output is written over an input or into an input folder.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from .checkpoint import atomic_write, atomic_write_json, within
from .config import json_safe
from .data import DataError, FrameSource
from .frames import atomic_path
from .localize import LocalizeError, find_regions
from .localize_video import LocalizeResult, as_source


def draw_boxes(frame: np.ndarray, boxes: list[dict], color: tuple[int, int, int] = (0, 0, 255),
               label: bool = True, thickness: int = 0) -> np.ndarray:
    """Copy of a BGR frame with boxes (regions_to_records rows, or dicts with x0..y1) drawn on it."""
    img = frame.copy()
    t = thickness or max(1, round(max(img.shape[:2]) / 300))
    for b in boxes:
        cv2.rectangle(img, (b["x0"], b["y0"]), (b["x1"] - 1, b["y1"] - 1), color, t)
        if label and "score" in b:
            cv2.putText(img, f"{b['score']:.2f}", (b["x0"], max(8 * t, b["y0"] - t)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.2 * t + 0.1, color, max(1, t // 3), cv2.LINE_AA)
    return img


def heat_overlay(frame: np.ndarray, amap: np.ndarray, vmax: float, weight: float = 0.5) -> np.ndarray:
    """Jet-coloured map (0..vmax) blended over a BGR frame of the same size."""
    scaled = np.clip(amap / max(vmax, 1e-12), 0, 1)
    heat = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(frame, 1 - weight, heat, weight, 0)


def mask_boxes(mask: np.ndarray) -> list[dict]:
    """Boxes {"x0", "y0", "x1", "y1"} of the connected regions of a ground-truth mask."""
    m = np.asarray(mask) > 0
    regions = find_regions(m.astype(np.float32), 0.5, open_close=0) if m.any() else []
    return [dict(zip(("x0", "y0", "x1", "y1"), r.box)) for r in regions]


def check_masks(masks: np.ndarray, source: FrameSource) -> np.ndarray:
    """Masks as bool (T, H, W) aligned one to one with the source's frames, else LocalizeError."""
    m = np.asarray(masks)
    if m.ndim != 3 or len(m) != len(source) or m.shape[1:] != source.frame_size:
        raise LocalizeError(f"masks of shape {m.shape} are not aligned with {source.path}: expected "
                            f"({len(source)}, {source.frame_size[0]}, {source.frame_size[1]}), one mask per frame "
                            "at the original frame size")
    return m > 0


def panels(res: LocalizeResult, k: int, frame: np.ndarray, gt_boxes: list[dict] | None = None,
           height: int | None = None) -> np.ndarray:
    """Side-by-side BGR image: frame with all boxes (GT in green) | prediction | heat map."""
    h, w = res.frame_size
    t = max(1, round(max(h, w) / 300), -(-2 * h // height) if height else 0)  # >= 2 px once resized to height
    boxed = draw_boxes(draw_boxes(frame, gt_boxes or [], (0, 200, 0), False, t), res.boxes[k], thickness=t)
    if res.flags[k]:
        cv2.rectangle(boxed, (0, 0), (w - 1, h - 1), (0, 0, 255), max(2, h // 60))
    text = f"{int(res.frames[k])}  r={res.regularity[k]:.2f}" + ("  ANOMALY" if res.flags[k] else "")
    scale = max(0.3, h / 500)
    for color, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(boxed, text, (4, h - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, color, width, cv2.LINE_AA)
    pred = cv2.resize(res.preds[k], (w, h), interpolation=cv2.INTER_LINEAR)
    amap, thr = res.map(k), float(res.pixel_thresholds[k])
    heat = heat_overlay(frame, amap, 2 * thr if thr > 0 else float(amap.max()))
    row = np.concatenate([boxed, pred, heat], axis=1)
    if height and height != h:
        row = cv2.resize(row, (round(row.shape[1] * height / h), height), interpolation=cv2.INTER_AREA)
    return row


def regularity_figure(res: LocalizeResult, current: int | None = None, gt: np.ndarray | None = None) -> Any:
    """Matplotlib figure of regularity per frame, the frame threshold, flagged frames, current frame, GT shaded."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.4))
    x = res.frames
    if gt is not None:
        gt = np.asarray(gt, dtype=bool)
        gt = gt[x] if gt.size > x[-1] else gt
        ax.fill_between(x, 0, 1, where=gt, transform=ax.get_xaxis_transform(), color="tab:red", alpha=0.15,
                        step="mid", label="ground truth")
    ax.plot(x, res.regularity, color="tab:blue", lw=1.2, label="regularity")
    ax.axhline(res.frame_threshold, color="tab:orange", ls="--", lw=1, label="threshold")
    ax.plot(x[res.flags], res.regularity[res.flags], "r.", ms=3, label="anomalous")
    if current is not None:
        ax.axvline(current, color="k", lw=1)
    _ = ax.set(xlabel="frame", ylabel="regularity", xlim=(0, max(x[-1], 1)))
    ax.legend(loc="lower left", fontsize=7, ncol=4)
    fig.tight_layout()
    return fig


def summary(res: LocalizeResult) -> dict:
    """JSON summary: source, configuration, thresholds and anomalous segments."""
    cal = None if res.normal is None or res.cfg.threshold != "calibrated" else float(res.pixel_thresholds[0])
    return {"source": res.source, "frame_size": list(res.frame_size), "fps": res.fps,
            "config": json_safe(dataclasses.asdict(res.cfg)), "scored_frames": len(res.frames),
            "normal_frames": None if res.normal is None else res.normal.source,
            "frame_threshold": res.frame_threshold, "calibrated_pixel_threshold": cal,
            "anomalous_frames": int(res.flags.sum()), "segments": res.segments()}


def write_video(res: LocalizeResult, source: str | Path | FrameSource, path: str | Path,
                masks: np.ndarray | None = None, height: int = 360, every: int = 1, progress: bool = False,
                frames: tuple[int, int] | None = None) -> Path:
    """Write the panels of every ``every``-th scored frame (in [start, end) of ``frames``) as .mp4 or .gif."""
    src, path = as_source(source), Path(path)
    if path.suffix.lower() not in (".mp4", ".gif"):
        raise LocalizeError(f"cannot write {path}: use a .mp4 or .gif file name")
    if within(src.path, path):
        raise LocalizeError(f"{path} is the video being read ({src.path}): it would be destroyed; write the "
                            "annotated video to another file")
    gt = None if masks is None else check_masks(masks, src)
    lo, hi = frames or (0, int(res.frames[-1]) + 1)
    keep = [k for k, f in enumerate(res.frames) if lo <= f < hi][:: max(1, every)]
    if not keep:
        raise LocalizeError(f"no scored frame in {lo}:{hi} (scored: {res.frames[0]}..{res.frames[-1]})")
    rows = (panels(res, k, src.read(int(res.frames[k])), None if gt is None else mask_boxes(gt[res.frames[k]]),
                   min(height, res.frame_size[0])) for k in keep)
    rows = tqdm(rows, total=len(keep), desc="write video", disable=not progress, leave=False)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".gif":
            import imageio.v2 as imageio

            imageio.mimsave(tmp, [r[..., ::-1] for r in rows], duration=1000 * max(1, every) / res.fps, loop=0)
        else:
            _write_mp4(rows, tmp, res.fps, path)
    return path


def _write_mp4(rows: Iterable[np.ndarray], tmp: Path, fps: float, path: Path) -> None:
    """BGR rows as an mp4v video at ``tmp`` (the file that becomes ``path``)."""
    writer = None
    try:
        for row in rows:
            row = row[: row.shape[0] // 2 * 2, : row.shape[1] // 2 * 2]  # even sizes for the codec
            if writer is None:
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps, row.shape[1::-1])
                if not writer.isOpened():
                    raise DataError(f"OpenCV cannot write {path}")
            writer.write(row)
    finally:
        if writer is not None:
            writer.release()


def write_boxes(res: LocalizeResult, json_path: str | Path | None = None, csv_path: str | Path | None = None) -> None:
    """Per-frame regularity, decision and boxes with scores as JSON, and one row per box as CSV."""
    if json_path is not None:
        per_frame = [{"frame": int(f), "regularity": float(r), "anomalous": bool(a), "boxes": b}
                     for f, r, a, b in zip(res.frames, res.regularity, res.flags, res.boxes)]
        atomic_write_json({"source": res.source, "frame_threshold": res.frame_threshold, "frames": per_frame},
                          json_path)
    if csv_path is not None:
        text = io.StringIO(newline="")
        w = csv.DictWriter(text, fieldnames=["frame", "x0", "y0", "x1", "y1", "area", "score", "mean",
                                             "regularity", "anomalous"])
        w.writeheader()
        w.writerows(res.records())
        atomic_write(csv_path, lambda f: f.write(text.getvalue().encode()))


OUTPUT_FILES = {"video": "annotated.mp4", "plot": "regularity.png", "json": "boxes.json", "csv": "boxes.csv",
                "segments": "segments.json"}
GIF_FILE = "annotated.gif"


def output_paths(out_dir: str | Path, gif: bool = False) -> dict[str, Path]:
    """The files write_outputs writes under out_dir (and annotated.gif), so a caller can check them beforehand."""
    out = Path(out_dir)
    return {k: out / n for k, n in OUTPUT_FILES.items()} | ({"gif": out / GIF_FILE} if gif else {})


def check_apart(out_dir: str | Path, inputs: dict[str, str | Path | None], outputs: Iterable[Path]) -> None:
    """LocalizeError when an output would replace an input, or out_dir is an input folder, inside one or holds one.

    ``inputs`` maps a name for the message (a flag) to a path, None for an input not given. Checked
    before any frame is read: an output over the input video would destroy it, and files written into
    a frame folder would be read as its frames by every later run.
    """
    out, outputs = Path(out_dir), list(outputs)
    for name, given in inputs.items():
        if given is None:
            continue
        inp = Path(given)
        if inp.is_dir() and within(out, inp):
            raise LocalizeError(f"output folder {out} (--out) is the {name} folder {inp} or inside it: the outputs "
                                f"would become part of that input; give an --out folder outside {inp}")
        if inp.is_dir() and out.resolve() == inp.resolve().parent:
            raise LocalizeError(f"output folder {out} (--out) holds the {name} folder {inp}: annotated.mp4 written "
                                f"beside it would be read as one more video of {out} (a dataset split); give an "
                                "--out folder of its own")
        clash = next((o for o in outputs if within(inp, o)), None)
        if clash is not None:
            raise LocalizeError(f"output {clash} would be written over the {name} input {inp}; give another --out "
                                "folder (or move the input out of it)")


def write_outputs(res: LocalizeResult, source: str | Path | FrameSource, out_dir: str | Path,
                  masks: np.ndarray | None = None, panel_height: int = 360, gif_every: int = 0,
                  gif_height: int = 160, gif_frames: tuple[int, int] | None = None,
                  progress: bool = False) -> dict[str, Path]:
    """Write annotated.mp4, regularity.png, boxes.json/.csv, segments.json (and annotated.gif) under out_dir."""
    import matplotlib.pyplot as plt

    src, out = as_source(source), Path(out_dir)
    masks = None if masks is None else check_masks(masks, src)  # misaligned masks are refused before anything is written
    paths = output_paths(out, gif_every > 0)
    check_apart(out, {"video": src.path}, paths.values())
    out.mkdir(parents=True, exist_ok=True)
    write_boxes(res, paths["json"], paths["csv"])  # the results first: a failing video leaves them written
    atomic_write_json(summary(res), paths["segments"])
    gt = None if masks is None else np.any(np.asarray(masks).reshape(len(masks), -1), axis=1)
    fig = regularity_figure(res, gt=gt)
    try:
        atomic_write(paths["plot"], lambda f: fig.savefig(f, dpi=120, format="png"))
    finally:
        plt.close(fig)
    write_video(res, src, paths["video"], masks, panel_height, progress=progress)
    if gif_every > 0:
        write_video(res, src, paths["gif"], masks, gif_height, gif_every, progress, gif_frames)
    return paths
