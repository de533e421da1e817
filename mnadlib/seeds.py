"""``python -m mnadlib seeds``: the main model's numbers over several synthped seeds, with their spread.

One synthped ``small`` test split holds five anomalous videos, so a single seed's frame AUC moves
by several points with where the anomalies happen to walk (near the camera or far). For each seed
this generates synthped, trains pred + memory with the ``cpu`` preset (data and weights seeded
alike), and measures the paper's protocol, the ablation rows on that model, the frame AUC per
anomaly kind and per visible anomaly size, and the default localization mode; then prints every
row's mean and standard deviation over the seeds. A benchmark, not a test: about 8 minutes per
seed on one thread of a 2-core machine (24 epochs), so two seeds run side by side.

``--footage VIDEO`` does the same on real footage: per seed, ``mnadlib.inject`` pastes another
set of anomalies into the video's test part, and the model is trained on its normal first part.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import ablation, pipeline
from .checkpoint import atomic_write_json
from .config import ConfigError, preset
from .data import split_dir
from .breakdown import areas_from_masks, auc_by_kind, auc_by_size
from .evaluate import evaluate
from .inject import InjectConfig
from .localize_eval import OURS, OURS_NAME, localization_metrics
from .synth import SynthPreset
from .train import train

LOCALIZATION_KEYS = ("pixel_auroc", "ucsd_auc", "rbdc", "tbdc", "peak_in_mask_auc")


def run_seed(seed: int, work: Path, synth_preset: str | SynthPreset = "small", epochs: int = 0,
             progress: bool = False, footage: Path | None = None, inject_cfg: InjectConfig | None = None,
             width: float = 0.0) -> dict[str, Any]:
    """Generate, train (``epochs``, ``width``; 0: the preset's) and measure one seed under ``work/seed<seed>``; rows in percent.

    With ``footage`` (a video of a normal scene) the data are that footage with anomalies injected
    by ``mnadlib.inject`` under this seed, instead of synthped.
    """
    t0 = time.time()
    root = work / f"seed{seed}"
    if footage is None:  # the work folder is this benchmark's own: its data follow the settings asked for
        ds = pipeline.prepare_dataset(root / "data", "synthped", synth_preset, seed=seed, overwrite=True)
    else:
        ds = pipeline.prepare_dataset(root / "data", "injected", seed=seed, footage=footage, inject_cfg=inject_cfg,
                                      overwrite=True)
    p = preset("cpu", "pred")
    model_cfg = dataclasses.replace(p.model, width=width or p.model.width)
    train_cfg = dataclasses.replace(p.train, seed=seed, device="cpu", epochs=epochs or p.train.epochs)
    ckpt = train(split_dir(ds.path, "training"), model_cfg, train_cfg, root / "pred_mem", resume=False, progress=progress)
    loaded = pipeline.load_model(ckpt, "pred")
    videos = ds.videos("testing")
    labels = ds.test_labels(videos)
    result = evaluate(loaded.model, loaded.items, videos, pipeline.eval_config(p.eval.alpha, loaded.size, device="cpu"), labels)
    baseline = ablation.copy_baseline(loaded, videos, labels)
    rows = ablation.ablation_rows(loaded, "pred_mem", ds, p.eval.alpha, result, videos, labels, device="cpu", baseline=baseline)
    quality = ablation.prediction_quality("model", result, baseline)
    objects = pipeline.annotated_objects(ds) or {}
    loc = localization_metrics(loaded.model, loaded.items, ds.path, loaded.size, modes={OURS_NAME: OURS})[OURS_NAME]
    return {
        "seed": seed,
        "epochs": train_cfg.epochs,
        "width": model_cfg.width,
        "frame_auc": {r["setting"]: r["frame_auc"] for r in rows},
        "macro_auc": {r["setting"]: r["macro_auc"] for r in rows},
        "by_kind": {r["kind"]: r["frame_auc"] for r in auc_by_kind(result, objects)},
        "by_size": {f"{r['visible_area']}, {score}": r[key] for r in auc_by_size(result, areas_from_masks(ds.path, videos))
                    for score, key in (("protocol", "frame_auc"), ("running-max", "frame_auc_running"))},
        "psnr": {f"{q['predictor']}, {k}": q[key] for q in quality
                 for k, key in (("normal frames", "normal_psnr"), ("anomalous frames", "anomalous_psnr"),
                                ("sd of normal frames within a video", "normal_sd_db"))},
        "localization": {k: None if loc[k] is None else round(100 * float(loc[k]), 2) for k in LOCALIZATION_KEYS},
        "wall_s": round(time.time() - t0, 1),
    }


def spread(runs: Sequence[dict[str, Any]], group: str) -> dict[str, tuple[float, float, int]]:
    """Per key of ``group``: (mean, sample standard deviation, seeds counted), over runs where it was measured."""
    keys = dict.fromkeys(k for r in runs for k in r.get(group, {}))
    out = {}
    for key in keys:
        vals = [r[group][key] for r in runs if r.get(group, {}).get(key) is not None]
        if vals:
            out[key] = (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, len(vals))
    return out


def report(runs: Sequence[dict[str, Any]]) -> str:
    """Markdown tables: each row's value per seed, then mean ± standard deviation."""
    seeds = [r["seed"] for r in runs]
    lines = []
    for group, title in (("frame_auc", "frame AUC %"), ("macro_auc", "macro AUC %"),
                         ("by_kind", "frame AUC % per anomaly kind"),
                         ("by_size", "frame AUC % by the anomaly's visible area (% of the frame)"), ("psnr", "mean PSNR dB"),
                         ("localization", "localization %, " + OURS_NAME)):
        rows = spread(runs, group)
        if not rows:
            continue
        lines += ["", f"| {title} | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± sd |",
                  "|---|" + "---|" * (len(seeds) + 1)]
        for key, (mean, sd, n) in rows.items():
            cells = ["-" if r.get(group, {}).get(key) is None else f"{r[group][key]:.1f}" for r in runs]
            note = "" if n == len(runs) else f" (n={n})"
            lines.append(f"| {key} | " + " | ".join(cells) + f" | {mean:.1f} ± {sd:.1f}{note} |")
    return "\n".join(lines).strip()


def add_parser(sub: Any) -> None:
    """Register the ``seeds`` sub-command."""
    s = sub.add_parser("seeds", help="the main model's numbers over several synthped seeds (a benchmark, not a test)")
    s.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    s.add_argument("--work", required=True, help="folder for the data, checkpoints and seeds.json (reused per seed; "
                                                 "seeds.json is rewritten after every seed)")
    s.add_argument("--footage", help="a video of a normal scene: measure on it with anomalies injected per seed "
                                     "(python -m mnadlib inject, default settings) instead of on synthped")
    s.add_argument("--epochs", type=int, default=0, help="training epochs per seed; 0: the cpu preset's")
    s.add_argument("--width", type=float, default=0.0, help="channel multiplier; 0: the cpu preset's")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_seeds)


def cmd_seeds(args: argparse.Namespace) -> int:
    """Run every seed, write ``WORK/seeds.json`` and print the tables."""
    if len(set(args.seeds)) != len(args.seeds):
        raise ConfigError(f"--seeds repeats a seed: {args.seeds}")
    if args.epochs < 0:
        raise ConfigError(f"--epochs must be >= 0 (0: the cpu preset's), got {args.epochs}")
    if args.width < 0:
        raise ConfigError(f"--width must be >= 0 (0: the cpu preset's), got {args.width}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in args.seeds:
        runs.append(run_seed(seed, work, epochs=args.epochs, width=args.width, progress=not args.quiet,
                             footage=Path(args.footage) if args.footage else None))
        atomic_write_json(runs, work / "seeds.json")  # after every seed: an interrupted run keeps what it finished
        if not args.quiet:
            print(f"seed {seed}: paper protocol frame AUC {next(iter(runs[-1]['frame_auc'].values())):.2f}% "
                  f"({runs[-1]['wall_s']} s)", flush=True)
    print(report(runs))
    return 0
