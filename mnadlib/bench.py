"""Throughput benchmark and wall-time estimate (not a test).

``run`` times evaluation frames/s and training seconds/step at given sizes. Evaluation follows the
authors' protocol (batch 1, test-time update check on every frame); training times the full step
of :func:`mnadlib.train.train_step` with the given batch size, in the layout :func:`mnadlib.train.train` uses.
Both also count their floating-point work (the multiply-adds of convolutions and matrix products,
two operations each, as ``torch.utils.flop_counter`` counts them), which does not depend on the
machine: with it a step time measured here carries over to another device at its sustained rate.

``app`` times what the localization app (notebook 04) does on a video: loading it, then each kind
of control change (a re-threshold) with the frame shown after it, and an export's finding every
frame's regions; it reports the process's peak memory and how many kept frames went to disk.

``estimate`` answers "how long would the paper's run on Ped2, Avenue, ShanghaiTech or my own
dataset take on this machine": it measures one training step, one scored frame and one frame read
at a preset's settings, and multiplies them by the dataset's step and frame counts (published for
the three, counted for a folder). It is an estimate from measured unit times, not a measured run.
"""

from __future__ import annotations

import contextlib
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from . import framestore
from .config import ConfigError, Method, ModelConfig, TrainConfig, preset
from .data import FRAME_CACHE_MIB, KNOWN_DATASETS, frames_mib, known_dataset, list_videos, load_frame, split_dir
from .frames import FrameSource, open_source
from .memory import init_items, update_from_features
from .model import MNAD
from .scoring import mse_per_frame, point_score
from .train import make_optimizer, resolve_device, train_step, training_memory_format


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work so timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize()


class Measured(NamedTuple):
    """Unit times and work of one configuration."""

    eval_fps: float  # frames/s at batch 1 with the update check
    step_s: float  # seconds per training step at the batch asked for
    eval_flop: int  # floating-point operations of one scored frame
    step_flop: int  # of one training step (forward, backward, memory update)


def _measure(cfg: ModelConfig, size: tuple[int, int], batch: int, dev: torch.device, repeats: int) -> Measured:
    """Time scoring a frame and a training step; count their work on the untimed first pass of each."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    h, w = size
    torch.manual_seed(0)
    model = MNAD(cfg).to(dev)
    items = init_items(cfg.msize, cfg.fdim).to(dev)
    clip = torch.rand(1, cfg.n_channel * cfg.t_length, h, w, device=dev) * 2 - 1
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad():
        x, target = model.split_clip(clip)
        for i in range(repeats + 1):
            if i == 1:
                _sync(dev)
                start = time.perf_counter()
            with counter if i == 0 else contextlib.nullcontext():
                out = model(x, items, train=False)
                mse_per_frame(out.output, target)
                if point_score(out.output, target) < 1.0:
                    update_from_features(out.fea, items)
        _sync(dev)
    eval_fps = repeats / (time.perf_counter() - start)
    eval_flop = counter.get_total_flops()
    layout = training_memory_format(dev)  # as train() runs its steps
    model.to(memory_format=layout).train()  # type: ignore[call-overload]  # torch's stub omits to(memory_format=)
    tcfg = TrainConfig(epochs=1, batch_size=batch, size=size)
    optimizer, _ = make_optimizer(model, tcfg)
    batch_clip = (torch.rand(batch, cfg.n_channel * cfg.t_length, h, w, device=dev) * 2 - 1).contiguous(memory_format=layout)
    counter = FlopCounterMode(display=False)
    for i in range(repeats + 1):
        if i == 1:
            _sync(dev)
            start = time.perf_counter()
        with counter if i == 0 else contextlib.nullcontext():
            res = train_step(model, items, batch_clip, optimizer, tcfg)
        assert res.memory is not None, "a model with memory returns its updated items"
        items = res.memory
    _sync(dev)
    return Measured(eval_fps, (time.perf_counter() - start) / repeats, eval_flop, counter.get_total_flops())


def _sig(x: float, digits: int = 4) -> float:
    """``x`` to ``digits`` significant digits: work spans GFLOP for a tiny model to PFLOP for ShanghaiTech."""
    return float(f"{x:.{digits}g}")


def _memory_row(dev: torch.device) -> dict[str, float]:
    """Peak resident memory of this process, and of the GPU when there is one."""
    row = {"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if dev.type == "cuda":
        row["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return row


def run(sizes: list[int], method: str = "pred", threads: int = 2, width: float = 1.0, batch: int = 4,
        device: str = "cpu", repeats: int = 5) -> dict[str, Any]:
    """Time evaluation and training for square inputs of each size; return a JSON-friendly report."""
    torch.set_num_threads(threads)
    dev = resolve_device(device)
    cfg = ModelConfig(method=method, t_length=5 if method == "pred" else 1, width=width)  # type: ignore[arg-type]
    report: dict[str, Any] = {"method": method, "threads": threads, "width": width, "device": str(dev),
                              "torch": torch.__version__, "cpu_cores": os.cpu_count(),
                              "load_average": [round(v, 2) for v in os.getloadavg()],
                              "memory_note": "peak_rss_mib is this process's peak so far: it covers the sizes "
                                             "measured before it too (run one size for its own figure); "
                                             "peak_cuda_mib is each size's own",
                              "results": []}
    for size in sizes:
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        m = _measure(cfg, (size, size), batch, dev, repeats)
        report["results"].append({"size": size, "eval_frames_per_s": round(m.eval_fps, 2), "train_s_per_step": round(m.step_s, 4),
                                  "train_batch": batch, "eval_gflop_per_frame": _sig(m.eval_flop / 1e9),
                                  "train_gflop_per_step": _sig(m.step_flop / 1e9),
                                  "train_tflop_per_s": _sig(m.step_flop / m.step_s / 1e12), **_memory_row(dev)})
    return report


def _counted(path: Path) -> tuple[dict[str, Any], FrameSource]:
    """A dataset folder's counts (as :func:`dataset_counts`) and its first training video."""
    train, test = (list_videos(split_dir(path, split)) for split in ("training", "testing"))
    counts = {"dataset": str(path), "train_videos": len(train), "train_frames": sum(len(v) for v in train),
              "test_videos": len(test), "test_frames": sum(len(v) for v in test), "frame_size": train[0].frame_size}
    return counts, train[0]


def dataset_counts(dataset: str | Path) -> dict[str, Any]:
    """Videos and frames of both splits and the frame size (H, W): counted in a dataset folder, else ped2/avenue/shanghai's published ones."""
    path = Path(dataset)
    if path.is_dir():
        return _counted(path)[0]
    key = known_dataset(str(dataset))
    if key is None:
        raise ConfigError(f"{dataset!r} is neither a dataset folder (with training/ and testing/ splits) "
                          "nor one of ped2, avenue, shanghai (published counts)")
    facts = KNOWN_DATASETS[key]
    return {"dataset": key, **{k: facts[k] for k in ("train_videos", "train_frames", "test_videos", "test_frames")},
            "frame_size": facts["frame_size"]}


def workload(counts: dict[str, Any], method: Method = "pred", epochs: int = 60, batch: int = 4) -> dict[str, int]:
    """Training steps and scored test frames of a run over a dataset's ``counts`` (:func:`dataset_counts`).

    As the authors' loaders do: a clip starts at every frame with ``t_length - 1`` frames after it
    in its video, training drops the last incomplete batch of every epoch, and every clip of the
    test split scores one frame.
    """
    t_length = 5 if method == "pred" else 1
    train_clips = counts["train_frames"] - (t_length - 1) * counts["train_videos"]
    test_clips = counts["test_frames"] - (t_length - 1) * counts["test_videos"]
    return {"train_clips": train_clips, "steps_per_epoch": train_clips // batch, "train_steps": epochs * (train_clips // batch),
            "test_frames_scored": test_clips, "frames_read_per_clip": t_length}


def read_seconds(source: FrameSource, size: tuple[int, int], repeats: int = 20) -> float:
    """Seconds to read one frame of ``source`` and resize it to ``size``, as the clips do (the first frames, cycled)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    n = min(len(source), 4)
    load_frame(source, 0, size)
    start = time.perf_counter()
    for i in range(repeats):
        load_frame(source, i % n, size)
    return (time.perf_counter() - start) / repeats


def _jpeg_frames(folder: Path, frame_size: tuple[int, int]) -> FrameSource:
    """Four JPEG frames of ``frame_size`` (H, W) with camera-like detail (blurred noise), as a stand-in video."""
    h, w = frame_size
    base = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2)
    folder.mkdir()
    for i in range(4):
        if not cv2.imwrite(str(folder / f"{i:03d}.jpg"), np.roll(base, 3 * i, axis=1)):
            raise OSError(f"could not write a frame to {folder} (a full disk?)")
    return open_source(folder)


def estimate(dataset: str | Path, preset_name: str = "paper", method: Method = "pred", epochs: int = 0, threads: int = 2,
             device: str = "cpu", repeats: int = 3) -> dict[str, Any]:
    """Estimated training and evaluation time of one variant on a dataset with a preset, from measured unit times.

    Training: steps x one measured step, plus reading frames in the training loop itself (the
    default ``num_workers=0``): each training frame once when the resized split fits in the frame
    cache (:data:`mnadlib.data.FRAME_CACHE_MIB`), else batch x t_length frames a step, an upper
    bound. Evaluation: scored frames x one measured frame, plus reading each test frame once.
    More workers hide reading behind the steps. A dataset folder's own first training video is
    read; for published counts, JPEG frames of the dataset's size. ``work`` gives the run's
    floating-point operations, which another device divides by its own sustained rate.
    """
    if epochs < 0:
        raise ConfigError(f"epochs must be >= 0 (0: the preset's), got {epochs}")
    torch.set_num_threads(threads)
    dev = resolve_device(device)
    p = preset(preset_name, method)
    epochs = epochs or p.train.epochs
    path = Path(dataset)
    counts, sample = _counted(path) if path.is_dir() else (dataset_counts(dataset), None)
    load = workload(counts, method, epochs, p.train.batch_size)
    m = _measure(p.model, p.train.size, p.train.batch_size, dev, repeats)
    if sample is not None:
        read_s = read_seconds(sample, p.train.size)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            read_s = read_seconds(_jpeg_frames(Path(tmp, "01"), counts["frame_size"]), p.train.size)
    cached = frames_mib(counts["train_frames"], p.train.size) <= FRAME_CACHE_MIB
    train_reads = counts["train_frames"] if cached else load["train_steps"] * p.train.batch_size * load["frames_read_per_clip"]
    train_s = load["train_steps"] * m.step_s + train_reads * read_s
    eval_s = load["test_frames_scored"] / m.eval_fps + counts["test_frames"] * read_s
    return {
        "dataset": counts["dataset"], "preset": preset_name, "method": method, "epochs": epochs, "batch": p.train.batch_size,
        "size": list(p.train.size), "width": p.model.width, "device": str(dev), "threads": threads,
        "torch": torch.__version__, "frame_size": list(counts["frame_size"]), **load,
        "train_split_cached": cached, "train_frames_read": train_reads,
        "measured": {"train_s_per_step": round(m.step_s, 4), "eval_frames_per_s": round(m.eval_fps, 2),
                     "read_s_per_frame": round(read_s, 5), **_memory_row(dev)},
        "estimate": {"train_s": round(train_s, 1), "train_hours": round(train_s / 3600, 2),
                     "eval_pass_s": round(eval_s, 1), "eval_pass_minutes": round(eval_s / 60, 2)},
        "work": {"train_gflop_per_step": _sig(m.step_flop / 1e9), "eval_gflop_per_frame": _sig(m.eval_flop / 1e9),
                 "train_pflop": _sig(load["train_steps"] * m.step_flop / 1e15),
                 "eval_pass_tflop": _sig(load["test_frames_scored"] * m.eval_flop / 1e12),
                 "train_tflop_per_s_here": _sig(m.step_flop / m.step_s / 1e12)},
        "note": "an estimate: measured unit times multiplied by the dataset's step and frame counts, not a measured run; "
                "work counts the convolutions' and matrix products' operations, the same on any device",
    }


APP_CHANGES: tuple[dict[str, Any], ...] = (  # one of each kind of control change, as widgets.settings takes them
    {"threshold": "otsu"}, {"threshold": "fixed", "value": 0.2}, {"min_area": 500},
    {"map_kind": "error", "threshold": "otsu"})


def app(video: str | Path, checkpoint: str | Path, threads: int = 2) -> dict[str, Any]:
    """Seconds the localization app takes on ``video``: open it and show a frame, each change of APP_CHANGES
    and the frame shown after it, all regions; and its peak memory."""
    from .localize_video import LocalizeConfig, load_model
    from .widgets import frame_view, open_session, settings

    torch.set_num_threads(threads)
    model, items, size = load_model(checkpoint)
    t0 = time.perf_counter()
    session = open_session(video, model, items, LocalizeConfig(size=size))
    opened = time.perf_counter() - t0
    shown = int(session.result.frames[len(session.result.frames) // 2])  # a frame from the middle of the video
    t0 = time.perf_counter()
    frame_view(session, shown)  # the app shows a frame as it opens; a calibrated threshold is computed here
    first_view = time.perf_counter() - t0
    changes = []
    for change in APP_CHANGES:
        t0 = time.perf_counter()
        settings(session, **change)
        t1 = time.perf_counter()
        frame_view(session, shown)
        changes.append({"change": change, "settings_s": round(t1 - t0, 3), "frame_view_s": round(time.perf_counter() - t1, 3)})
    t0 = time.perf_counter()
    boxes = sum(map(len, session.result.boxes))
    kept = session.result.preds
    return {"video": str(video), "checkpoint": str(checkpoint), "threads": threads, "torch": torch.__version__,
            "scored_frames": len(session.result.frames), "frame_size": list(session.source.frame_size),
            "size": list(size), "frame_shown": shown, "open_session_s": round(opened, 2),
            "first_frame_view_s": round(first_view, 3), "changes": changes,
            "all_regions_s": round(time.perf_counter() - t0, 2), "all_regions_boxes": boxes,
            "all_regions_note": "under the last change's settings, as an export of every frame finds them",
            "kept_frames_mib": round(2 * len(kept) * kept[0].nbytes / 2**20, 1),  # predictions and inputs
            "kept_frames_on_disk": kept.on_disk + session.result.targets.on_disk,
            "frames_ram_budget_mib": round(framestore.RAM_BYTES / 2**20, 1), **_memory_row(torch.device("cpu"))}
