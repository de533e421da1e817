"""Localization metrics of whole-video localization on a dataset with pixel masks (synthped, UCSD Ped).

Runs :func:`localize_video.localize` once per test video and scores several modes from the same
model pass (``relocalize``): pixel AUROC of the mode's continuous map, the UCSD Ped 40% criterion
(Mahadevan et al., CVPR 2010) and RBDC / TBDC (Ramachandra & Jones, WACV 2020) on what the mode
reports, i.e. the map inside the reported regions and the regions' boxes and scores. Thresholds
are calibrated on the training split's normal frames only; the test labels choose nothing.

``FORK`` is the fork's mode (1 - SSIM map, SSIM * 255 < 230, largest region only, no smoothing);
``OURS`` is this package's default (smoothed 1 - SSIM map, 99.9th percentile of its values on
normal frames, every region over 0.1% of the frame).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import FrameSource, list_videos, load_masks, split_dir
from .localize import LocalizeError, Region
from .localize_metrics import PixelSummary, rbdc_tbdc
from .localize_video import LocalizeConfig, LocalizeResult, fit_normal, localize, relocalize
from .model import MNAD
from .scoring import frame_auc

FORK_NAME = "fork: ssim map, SSIM*255<230, largest region"
OURS_NAME = "ours: ssim map, 99.9th pct of normal, all regions"
FORK = LocalizeConfig(map_kind="ssim", threshold="fork", largest_only=True, min_area=0, smooth_sigma=0.0, open_close=0)
OURS = LocalizeConfig()


def default_modes(memory: bool = True) -> dict[str, LocalizeConfig]:
    """The fork's mode, ours, and ours with the other map kinds (for information); the memory map only with memory."""
    modes = {FORK_NAME: FORK, OURS_NAME: OURS, "ours with the error map": dataclasses.replace(OURS, map_kind="error")}
    if memory:
        modes["ours with the memory map"] = dataclasses.replace(OURS, map_kind="memory")
    return modes


def gt_boxes(dataset_root: str | Path, video: str, frames: np.ndarray) -> list[list[tuple[Any, tuple]]] | None:
    """Per scored frame: [(track id, box)] from testing/annotations.json (synthped), or None without it."""
    path = Path(dataset_root) / "testing" / "annotations.json"
    if not path.is_file():
        return None
    objects = json.loads(path.read_text())["videos"].get(video, {}).get("objects", [])
    per: dict[int, list] = {}
    for obj in objects:
        for f, box in zip(obj["frames"], obj["boxes"]):
            per.setdefault(int(f), []).append(((video, obj["id"]), tuple(int(v) for v in box)))
    return [per.get(int(f), []) for f in frames]


def detection_map(amap: np.ndarray, regions: list[Region]) -> np.ndarray:
    """The mode's map inside its reported regions, 0 elsewhere (what a user of the mode sees)."""
    keep = np.zeros(amap.shape, dtype=bool)
    for r in regions:
        keep |= r.mask
    return np.where(keep, np.maximum(amap, 1e-9), 0.0).astype(np.float32)


def _add_video(res: LocalizeResult, masks: np.ndarray, gt: list | None, summary: PixelSummary,
               found: dict[str, list]) -> None:
    """One video under one mode: each frame's map (computed once) into the summary; boxes, flags, scores into found."""
    for k, f in enumerate(res.frames):
        amap, regions = res.map(k), res.regions(k)
        summary.add(amap, masks[f], detection_map(amap, regions))
        found["preds"].append([(tuple(int(v) for v in r.box), float(r.score)) for r in regions])
        found["boxes"].append([] if gt is None else gt[k])
    found["flags"].append(res.flags)
    found["regs"].append(res.regularity)


def localization_metrics(model: MNAD, items: torch.Tensor | None, dataset_root: str | Path, size: tuple[int, int],
                         modes: dict[str, LocalizeConfig] | None = None, videos: list[FrameSource] | None = None,
                         progress: bool = False) -> dict[str, dict[str, float | None]]:
    """Pixel AUROC, UCSD 40% AUC, RBDC, TBDC, frame AUC and the peak-in-mask oracle per mode over a dataset's test videos."""
    modes = modes or default_modes(memory=items is not None)
    root = Path(dataset_root)
    base = dataclasses.replace(OURS, size=size)
    normal = fit_normal(model, items, list_videos(split_dir(root, "training")), base, progress=progress)
    tests = videos or list_videos(split_dir(root, "testing"))
    scored = [max(0, len(v) - model.cfg.t_length + 1) for v in tests]  # the frames localize scores per video
    total = sum(n * v.frame_size[0] * v.frame_size[1] for n, v in zip(scored, tests))
    summaries = {name: PixelSummary(max(1, total)) for name in modes}
    found: dict[str, dict[str, list]] = {name: {"preds": [], "boxes": [], "flags": [], "regs": []} for name in modes}
    for v in tests:  # one video's result and masks at a time; every frame's maps go into the summaries
        masks = load_masks(root, v)
        if masks is None:
            raise LocalizeError(f"no pixel masks for test video {v.name} under {root}")
        res = localize(v, model, items, base, normal=normal, progress=progress)
        gb = gt_boxes(root, v.name, res.frames)
        for name, cfg in modes.items():
            _add_video(relocalize(res, dataclasses.replace(cfg, size=size)), masks, gb, summaries[name], found[name])
        del res  # its kept frames' memory goes back before the next video is scored
    table = {}
    for name, summary in summaries.items():
        acc, truth = found[name], np.array(summary.truth)
        row: dict[str, float | None] = {"pixel_auroc": summary.pixel_auroc(),
                                        "ucsd_auc": summary.ucsd_pixel_criterion()["auc"]}
        if any(acc["boxes"]):
            rt = rbdc_tbdc(acc["preds"], acc["boxes"])
            row.update(rbdc=rt["rbdc"], tbdc=rt["tbdc"])
        else:
            row.update(rbdc=None, tbdc=None)
        row["frame_auc"] = frame_auc(np.concatenate(acc["regs"]), truth.astype(int))
        row["false_alarm_frames"] = float(np.concatenate(acc["flags"])[~truth].mean())
        row["peak_in_mask_auc"] = summary.peak_frame_auc()
        table[name] = row
    return table


def format_table(table: dict[str, dict[str, float | None]]) -> str:
    """Markdown table of localization_metrics, in percent."""
    cols = ["pixel_auroc", "ucsd_auc", "rbdc", "tbdc", "frame_auc", "false_alarm_frames", "peak_in_mask_auc"]
    head = ("| mode | pixel AUROC | UCSD 40% AUC | RBDC | TBDC | frame AUC | normal frames flagged "
            "| peak-in-mask frame AUC (oracle) |")
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for name, row in table.items():
        cells = ["-" if (v := row.get(c)) is None else f"{100 * v:.1f}" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
