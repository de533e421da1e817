"""Throughput benchmark: evaluation frames/s and training seconds/step at given sizes (not a test).

Evaluation follows the authors' protocol (batch 1, test-time update check on every frame);
training times the full step of :func:`mnadlib.train.train_step` with the given batch size.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import torch

from .config import ModelConfig, TrainConfig
from .memory import init_items, update_from_features
from .model import MNAD
from .scoring import mse_per_frame, point_score
from .train import make_optimizer, resolve_device, train_step


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work so timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(sizes: list[int], method: str = "pred", threads: int = 2, width: float = 1.0, batch: int = 4,
        device: str = "cpu", repeats: int = 5) -> dict[str, Any]:
    """Time evaluation and training for square inputs of each size; return a JSON-friendly report."""
    torch.set_num_threads(threads)
    dev = resolve_device(device)
    cfg = ModelConfig(method=method, t_length=5 if method == "pred" else 1, width=width)  # type: ignore[arg-type]
    report: dict[str, Any] = {"method": method, "threads": threads, "width": width, "device": str(dev),
                              "torch": torch.__version__, "results": []}
    for size in sizes:
        torch.manual_seed(0)
        model = MNAD(cfg).to(dev)
        items = init_items(cfg.msize, cfg.fdim).to(dev)
        clip = torch.rand(1, cfg.n_channel * cfg.t_length, size, size, device=dev) * 2 - 1
        model.eval()
        with torch.no_grad():
            x, target = model.split_clip(clip)
            for i in range(repeats + 1):
                if i == 1:
                    _sync(dev)
                    start = time.perf_counter()
                out = model(x, items, train=False)
                mse_per_frame(out.output, target)
                if point_score(out.output, target) < 1.0:
                    update_from_features(out.fea, items)
            _sync(dev)
        eval_fps = repeats / (time.perf_counter() - start)
        model.train()
        tcfg = TrainConfig(epochs=1, batch_size=batch, size=(size, size))
        optimizer, _ = make_optimizer(model, tcfg)
        batch_clip = torch.rand(batch, cfg.n_channel * cfg.t_length, size, size, device=dev) * 2 - 1
        for i in range(repeats + 1):
            if i == 1:
                _sync(dev)
                start = time.perf_counter()
            res = train_step(model, items, batch_clip, optimizer, tcfg)
            items = res.memory
        _sync(dev)
        step_s = (time.perf_counter() - start) / repeats
        row = {"size": size, "eval_frames_per_s": round(eval_fps, 2), "train_s_per_step": round(step_s, 4),
               "train_batch": batch, "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
        if dev.type == "cuda":
            row["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        report["results"].append(row)
    return report
