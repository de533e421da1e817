"""The ablation table: the main model under each scoring option, the zero-motion baseline, the other variants.

Follows the paper's Sec. 4.3 (memory, test-time update, prediction vs reconstruction) and adds the
labelled extensions of :mod:`mnadlib.evaluate` (patch-level error, normalisation with statistics of
normal frames, online running-max PSNR and SSIM), each beside the faithful protocol. ``prediction_quality``
compares the model's PSNR with copying the previous frame, the check that it learned normal motion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .evaluate import EvalResult, NormalStats, evaluate, mean_psnr, rescore, within_video_sd, zero_motion_baseline
from .frames import FrameSource
from .pipeline import VARIANTS, Dataset, Loaded, eval_config, load_model


def _row(model: str, setting: str, auc: float | None, macro: float | None, source: str) -> dict[str, Any]:
    """One ablation row, AUCs in percent."""
    def pct(x: float | None) -> float | None:
        return None if x is None or np.isnan(x) else round(100 * x, 2)
    return {"model": model, "setting": setting, "frame_auc": pct(auc), "macro_auc": pct(macro), "checkpoint": source}


def copy_baseline(main: Loaded, videos: Sequence[FrameSource], labels: Mapping[str, np.ndarray]) -> EvalResult | None:
    """The zero-motion baseline on the frames ``main`` scores, or None for reconstruction (nothing to copy)."""
    if main.model.cfg.t_length < 2:
        return None
    return zero_motion_baseline(list(videos), main.model.cfg.t_length, main.size, dict(labels))


def prediction_quality(name: str, result: EvalResult, baseline: EvalResult | None) -> list[dict[str, Any]]:
    """Mean PSNR (dB) on normal and on anomalous test frames, of the model and of copying the previous frame.

    A predictor whose normal-frame PSNR is below the copy's has not learned normal motion yet
    (under-trained, or too coarse a preset). The gap between the means separates the classes only
    as far as it is large against ``normal_sd_db``, how much normal frames' PSNR swings within a video.
    """
    def rnd(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    def row(predictor: str, res: EvalResult) -> dict[str, Any]:
        normal, anomalous = mean_psnr(res, 0), mean_psnr(res, 1)
        gap = None if normal is None or anomalous is None else normal - anomalous
        return {"predictor": predictor, "normal_psnr": rnd(normal), "anomalous_psnr": rnd(anomalous),
                "gap_db": rnd(gap), "normal_sd_db": rnd(within_video_sd(res))}
    rows = [row(name, result)]
    if baseline is not None:
        rows.append(row("zero_motion (the previous frame)", baseline))
    return rows


def ablation_rows(main: Loaded, name: str, dataset: Dataset, alpha: float, result: EvalResult,
                  videos: Sequence[FrameSource], labels: Mapping[str, np.ndarray], device: str = "auto",
                  baseline: EvalResult | None = None) -> list[dict[str, Any]]:
    """Rows on the main model: the paper's protocol (``result``), update off, PSNR only, the extensions,
    and, for prediction, the zero-motion baseline (the previous frame as the prediction) it must beat.

    The normal-frame statistics come from the training videos scored without update; the rows
    that use them score the test videos without update too, so every score is computable online.
    ``baseline`` is :func:`copy_baseline` when the caller already has it (computed here otherwise).
    """
    src = main.source
    rows = [_row(name, "paper protocol: test-time update, per-video min-max", result.auc, result.macro_auc, src)]
    no_update = eval_config(alpha, main.size, False, device)
    plain = result
    if main.items is not None:
        plain = evaluate(main.model, main.items, list(videos), no_update, dict(labels))
        rows.append(_row(name, "no test-time update", plain.auc, plain.macro_auc, src))
    rows.append(_row(name, "PSNR only (alpha = 1)", *rescore(result, 1.0)[1:], src))
    rows.append(_row(name, "extension: patch-level error", *rescore(result, alpha, error="patch")[1:], src))
    rows.append(_row(name, "extension: online running-max PSNR (dB below the video's best frame so far)",
                     *rescore(result, 1.0, norm="running")[1:], src))
    rows.append(_row(name, "extension: online running-max SSIM (its dB below the video's best frame so far)",
                     *rescore(result, 1.0, error="ssim", norm="running")[1:], src))
    stats = NormalStats.fit(evaluate(main.model, main.items, dataset.videos("training"), no_update))
    rows.append(_row(name, "extension: normal-frame normalisation (no update)",
                     *rescore(plain, alpha, norm="normal", stats=stats)[1:], src))
    rows.append(_row(name, "extensions: patch error + normal-frame normalisation (no update)",
                     *rescore(plain, alpha, error="patch", norm="normal", stats=stats)[1:], src))
    base = baseline if baseline is not None else copy_baseline(main, videos, labels)
    if base is not None:
        rows.append(_row("zero_motion", "baseline: the previous frame as the prediction (PSNR, per-video min-max)",
                         base.auc, base.macro_auc, "no model"))
        rows.append(_row("zero_motion", "baseline: the previous frame as the prediction (online running-max PSNR)",
                         *rescore(base, 1.0, norm="running")[1:], "no model"))
        rows.append(_row("zero_motion", "baseline: the previous frame as the prediction (online running-max SSIM)",
                         *rescore(base, 1.0, error="ssim", norm="running")[1:], "no model"))
    return rows


def variant_rows(train_dir: Path, exclude: str, videos: Sequence[FrameSource],
                 labels: Mapping[str, np.ndarray], results_dir: Path, device: str = "auto", th: float = 0.01) -> list[dict[str, Any]]:
    """Rows of the other trained variants in ``train_dir`` (paper protocol, and without update when they have memory).

    Each variant's evaluation is written to ``results_dir/eval_<variant>.json``; missing variants get a row saying so.
    """
    from .train import resolve_device

    rows = []
    for name, (method, memory) in VARIANTS.items():
        if name == exclude:
            continue
        path = train_dir / name / "model.pt"
        if not path.is_file():
            rows.append(_row(name, f"not trained: run 02_train with method={method}, use_memory={memory}", None, None, "-"))
            continue
        loaded = load_model(path, method, device=resolve_device(device))
        alpha = 0.6 if method == "pred" else 0.7
        res = evaluate(loaded.model, loaded.items, list(videos), eval_config(alpha, loaded.size, memory, device, th), dict(labels))
        res.write_json(results_dir / f"eval_{name}.json")
        rows.append(_row(name, "paper protocol" if memory else "no memory (PSNR only)", res.auc, res.macro_auc, str(path)))
        if memory:
            plain = evaluate(loaded.model, loaded.items, list(videos), eval_config(alpha, loaded.size, False, device), dict(labels))
            rows.append(_row(name, "no test-time update", plain.auc, plain.macro_auc, str(path)))
    return rows
