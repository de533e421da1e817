"""``python -m mnadlib seeds``: the main model's numbers over several synthped seeds, with their spread.

One synthped ``small`` test split holds five anomalous videos, so a single seed's frame AUC moves
by several points with where the anomalies happen to walk (near the camera or far). For each seed
this generates synthped, trains pred + memory with the ``cpu`` preset (data and weights seeded
alike), and measures the paper's protocol, the ablation rows on that model, the frame AUC per
anomaly kind and per visible anomaly size, and the default localization mode; then prints every
row's mean and standard deviation over the seeds. A benchmark, not a test: about 8 minutes per
seed on one thread of a 2-core machine (24 epochs), so two seeds run side by side.

Every seed's row goes into ``WORK/seeds.json`` with the settings it was made with; a later run on
the same ``--work`` adds its seeds to the rows there (replacing those of the seeds it reruns) and
prints the tables over all of them, and it refuses to start when those rows were made with other
settings.

``--footage VIDEO`` does the same on real footage: per seed, ``mnadlib.inject`` pastes another
set of anomalies into the video's test part, and the model is trained on its normal first part.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import ablation, pipeline
from .checkpoint import atomic_write_json
from .config import ConfigError, preset, to_dict
from .data import DataError, split_dir
from .breakdown import areas_from_masks, auc_by_kind, auc_by_size
from .evaluate import evaluate
from .inject import InjectConfig
from .localize_eval import OURS, OURS_NAME, localization_metrics
from .synth import SynthPreset, get_preset
from .train import train

LOCALIZATION_KEYS = ("pixel_auroc", "ucsd_auc", "rbdc", "tbdc", "peak_in_mask_auc")
SETTINGS_KEYS = ("epochs", "width", "data")  # what a row records of how it was made: rows merge only when these agree


def run_settings(synth_preset: str | SynthPreset = "small", epochs: int = 0, footage: Path | None = None,
                 inject_cfg: InjectConfig | None = None, width: float = 0.0) -> dict[str, Any]:
    """The settings a seed's row records (0: the cpu preset's, resolved), as JSON reads them back, so runs can be compared."""
    p = preset("cpu", "pred")
    if footage is None:
        data: dict[str, Any] = {"dataset": "synthped", "preset": to_dict(get_preset(synth_preset))}
    else:  # the seed is the row's own
        cut = {k: v for k, v in to_dict(inject_cfg or InjectConfig()).items() if k != "seed"}
        data = {"dataset": "injected", "footage": str(Path(footage).resolve()), "inject": cut}
    return json.loads(json.dumps({"epochs": epochs or p.train.epochs, "width": width or p.model.width, "data": data}))


def run_seed(seed: int, work: Path, synth_preset: str | SynthPreset = "small", epochs: int = 0,
             progress: bool = False, footage: Path | None = None, inject_cfg: InjectConfig | None = None,
             width: float = 0.0) -> dict[str, Any]:
    """Generate, train (``epochs``, ``width``; 0: the preset's) and measure one seed under ``work/seed<seed>``; rows in percent.

    With ``footage`` (a video of a normal scene) the data are that footage with anomalies injected
    by ``mnadlib.inject`` under this seed, instead of synthped.
    """
    t0 = time.time()
    settings = run_settings(synth_preset, epochs, footage, inject_cfg, width)
    root = work / f"seed{seed}"
    if footage is None:  # the work folder is this benchmark's own: its data follow the settings asked for
        ds = pipeline.prepare_dataset(root / "data", "synthped", synth_preset, seed=seed, overwrite=True)
    else:
        ds = pipeline.prepare_dataset(root / "data", "injected", seed=seed, footage=footage, inject_cfg=inject_cfg,
                                      overwrite=True)
    p = preset("cpu", "pred")
    model_cfg = dataclasses.replace(p.model, width=settings["width"])
    train_cfg = dataclasses.replace(p.train, seed=seed, device="cpu", epochs=settings["epochs"])
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
        **settings,
        "frame_auc": {r["setting"]: r["frame_auc"] for r in rows},
        "macro_auc": {r["setting"]: r["macro_auc"] for r in rows},
        "by_kind": {r["kind"]: r["frame_auc"] for r in auc_by_kind(result, objects)},
        "by_size": {f"{r['visible_area']}, {score}": r[key] for r in auc_by_size(result, areas_from_masks(ds.path, videos))
                    for score, key in (("protocol", "frame_auc"), ("running-max", "frame_auc_running"))},
        "psnr": {f"{q['predictor']}, {k}": q[key] for q in quality
                 for k, key in (("normal frames", "normal_psnr"), ("anomalous frames", "anomalous_psnr"),
                                ("sd of normal frames within a video", "normal_sd_db"))},
        "localization": {k: None if (v := loc[k]) is None else round(100 * float(v), 2) for k in LOCALIZATION_KEYS},
        "wall_s": round(time.time() - t0, 1),
    }


def spread(runs: Sequence[dict[str, Any]], group: str) -> dict[str, tuple[float, float | None, int]]:
    """Per key of ``group``: (mean, sample standard deviation or None for one seed, seeds counted), over runs where it was measured."""
    keys = dict.fromkeys(k for r in runs for k in r.get(group, {}))
    out = {}
    for key in keys:
        vals = [r[group][key] for r in runs if r.get(group, {}).get(key) is not None]
        if vals:
            out[key] = (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else None, len(vals))
    return out


def report(runs: Sequence[dict[str, Any]]) -> str:
    """Markdown tables: each row's value per seed, then mean ± standard deviation (just the mean, "n=1", for one seed)."""
    seeds = [r["seed"] for r in runs]
    lines = []
    for group, title in (("frame_auc", "frame AUC %"), ("macro_auc", "macro AUC %"),
                         ("by_kind", "frame AUC % per anomaly kind"),
                         ("by_size", "frame AUC % by the anomaly's visible area (% of the frame)"), ("psnr", "mean PSNR dB"),
                         ("localization", "localization %, " + OURS_NAME)):
        rows = spread(runs, group)
        if not rows:
            continue
        lines += ["", f"| {title} | " + " | ".join(f"seed {s}" for s in seeds) + (" | mean ± sd |" if len(runs) > 1 else " | mean |"),
                  "|---|" + "---|" * (len(seeds) + 1)]
        for key, (mean, sd, n) in rows.items():
            cells = ["-" if r.get(group, {}).get(key) is None else f"{r[group][key]:.1f}" for r in runs]
            if sd is None:
                summary = f"{mean:.1f} (n=1)"
            else:
                summary = f"{mean:.1f} ± {sd:.1f}" + ("" if n == len(runs) else f" (n={n})")
            lines.append(f"| {key} | " + " | ".join(cells) + f" | {summary} |")
    return "\n".join(lines).strip()


def add_parser(sub: Any) -> None:
    """Register the ``seeds`` sub-command."""
    s = sub.add_parser("seeds", help="the main model's numbers over several synthped seeds (a benchmark, not a test)")
    s.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds to run (non-negative integers)")
    s.add_argument("--work", required=True, help="folder for the data, checkpoints and seeds.json (reused per seed; "
                                                 "seeds.json is rewritten after every seed and keeps the rows of "
                                                 "other seeds run there with the same settings)")
    s.add_argument("--footage", help="a video of a normal scene: measure on it with anomalies injected per seed "
                                     "(python -m mnadlib inject, default settings) instead of on synthped")
    s.add_argument("--epochs", type=int, default=0, help="training epochs per seed; 0: the cpu preset's")
    s.add_argument("--width", type=float, default=0.0, help="channel multiplier; 0: the cpu preset's")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_seeds)


def earlier_rows(path: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of an existing ``seeds.json`` (none without one), refused unless all were made with ``settings``."""
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not JSON ({exc}): use another --work, or delete {path}") from exc
    if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("seed"), int) for r in rows):
        raise DataError(f"{path} is not a list of seed rows as `seeds` writes it: use another --work, or delete {path}")
    for key in SETTINGS_KEYS:
        other = [r["seed"] for r in rows if r.get(key) != settings[key]]
        if other:
            row = next(r for r in rows if r["seed"] == other[0])
            held = f"with {key} {json.dumps(row[key])}" if key in row else f"without recording their {key} (an older mnadlib)"
            raise ConfigError(f"{path} holds seeds {other} measured {held}, and this run uses {key} "
                              f"{json.dumps(settings[key])}; their rows would not compare: use another --work, or "
                              f"delete {path} to start over")
    return rows


def cmd_seeds(args: argparse.Namespace) -> int:
    """Run every seed, merge its row into ``WORK/seeds.json`` and print the tables over every row kept there."""
    if len(set(args.seeds)) != len(args.seeds):
        raise ConfigError(f"--seeds repeats a seed: {args.seeds}")
    if any(seed < 0 for seed in args.seeds):
        raise ConfigError(f"--seeds must be non-negative integers, got {args.seeds}")
    if args.epochs < 0:
        raise ConfigError(f"--epochs must be >= 0 (0: the cpu preset's), got {args.epochs}")
    if not math.isfinite(args.width) or args.width < 0:
        raise ConfigError(f"--width must be a finite channel multiplier > 0, or 0 for the cpu preset's; got {args.width}")
    work = Path(args.work)
    footage = Path(args.footage) if args.footage else None
    rows = {r["seed"]: r for r in earlier_rows(work / "seeds.json", run_settings(epochs=args.epochs, footage=footage,
                                                                                  width=args.width))}
    work.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        rows[seed] = run_seed(seed, work, epochs=args.epochs, width=args.width, progress=not args.quiet, footage=footage)
        runs = [rows[s] for s in sorted(rows)]
        atomic_write_json(runs, work / "seeds.json")  # after every seed: an interrupted run keeps what it finished
        if not args.quiet:
            print(f"seed {seed}: paper protocol frame AUC {next(iter(rows[seed]['frame_auc'].values())):.2f}% "
                  f"({rows[seed]['wall_s']} s)", flush=True)
    print(report([rows[s] for s in sorted(rows)]))
    return 0
