"""Command line: ``python -m mnadlib synth | train | evaluate | convert | localize | bench | seeds | inject``.

Flags map onto the configuration dataclasses; the stable interface is documented in the README
and in ``../shared/DESIGN.md``. Errors from bad input print one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError, check_not_inputs, check_writable
from .config import ConfigError, EvalConfig, preset, validate_size


def cmd_synth(args: argparse.Namespace) -> int:
    """Generate the synthetic dataset."""
    from .synth import generate

    out = generate(args.out, preset=args.preset, seed=args.seed, overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {out} and {Path(args.out) / f'frame_labels_{out.name}.npy'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train a model on a dataset's training split."""
    from .data import split_dir
    from .train import train

    p = preset(args.preset, args.method)
    if args.epochs is not None:
        p.train.epochs = args.epochs
    if args.size is not None:
        p.train.size = validate_size(args.size)
    if args.batch_size is not None:
        p.train.batch_size = args.batch_size
    if args.width is not None:
        p.model = dataclasses.replace(p.model, width=args.width)
    p.train.seed = args.seed
    p.train.device = args.device
    p.train.max_steps_per_epoch = args.max_steps
    p.model.use_memory = not args.no_memory
    if args.no_skips:
        p.model.use_skips = False
    p.train = dataclasses.replace(p.train, num_workers=args.workers)
    data = Path(args.data)
    folder = data if args.split_path else split_dir(data, "training")
    try:
        ckpt = train(folder, p.model, p.train, args.out, resume=not args.restart, progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"interrupted: run the same command again to continue after the last finished epoch "
              f"({Path(args.out) / 'checkpoint.pt'})", file=sys.stderr)
        return 130
    print(f"wrote {ckpt}")
    return 0


def _load_model(args: argparse.Namespace):
    """Our checkpoint or the authors' pickles, per the flags: model, items, training (H, W) or None."""
    from .checkpoint import load_original, open_checkpoint

    if args.checkpoint:
        ckpt = open_checkpoint(args.checkpoint, args.method)
        return ckpt.model, ckpt.items, ckpt.train_size
    if args.original_model and args.original_keys:
        return *load_original(args.original_model, args.original_keys, args.method), None
    raise ConfigError("give --checkpoint CKPT, or both --original-model model.pth and --original-keys keys.pt")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate with the authors' protocol and write the JSON result."""
    from .data import DataError, list_videos, load_labels, split_dir
    from .evaluate import evaluate
    from .train import resolve_device

    if args.out and Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out} is a folder; give the result's file name, e.g. {Path(args.out) / 'result.json'}")
    if args.out and Path(args.out).suffix.lower() == ".csv":
        raise ConfigError(f"--out {args.out} names the CSV that is written beside the result's JSON; give the JSON's "
                          f"name, e.g. {Path(args.out).with_suffix('.json')}")
    if args.out:
        check_writable(args.out, "--out")
        check_not_inputs([args.out, Path(args.out).with_suffix(".csv")],
                         {"--data": args.data, "--checkpoint": args.checkpoint, "--labels": args.labels,
                          "--original-model": args.original_model, "--original-keys": args.original_keys})
    model, items, trained = _load_model(args)
    size = validate_size(args.size if args.size is not None else trained or (256, 256))
    if trained and size != trained:
        raise ConfigError(f"{args.checkpoint} was trained at {trained[0]}x{trained[1]} (H x W), not at "
                          f"{size[0]}x{size[1]}: leave --size out, or pass --size {trained[0]} {trained[1]}")
    if args.t_length is not None and model.cfg.method == "pred" and args.t_length != model.cfg.t_length:
        raise ConfigError(f"--t-length {args.t_length} does not match the checkpoint's t_length {model.cfg.t_length}")
    alpha = args.alpha if args.alpha is not None else (0.6 if model.cfg.method == "pred" else 0.7)
    cfg = EvalConfig(alpha=alpha, th=args.th, size=size, test_time_update=not args.no_update,
                     reset_memory_per_video=args.reset_memory, batch_size=args.batch_size, device=args.device)
    device = resolve_device(cfg.device)
    model.to(device)
    data = Path(args.data)
    try:
        folder = split_dir(data, "testing")
    except DataError:  # --data is the folder of test videos itself
        folder = data
    videos = list_videos(folder)
    labels = None
    if args.labels:
        labels = load_labels(args.labels, [(v.name, len(v)) for v in videos])
    result = evaluate(model, items, videos, cfg, labels, progress=not args.quiet)
    if args.out:
        result.write_json(args.out)
        result.write_csv(Path(args.out).with_suffix(".csv"))
    n = sum(len(s.frames) for s in result.videos.values())
    msg = f"scored {n} frames of {len(videos)} videos"
    if result.auc is not None:
        macro = result.macro_auc  # NaN when no test video holds both classes
        macro_text = (f"macro {100 * macro:.2f}%" if macro is not None and math.isfinite(macro)
                      else "no macro AUC: no test video holds both classes")
        msg += f"; frame AUC {100 * result.auc:.2f}% ({macro_text})"
    elif labels is not None:
        msg += "; no frame AUC: the labels hold only one class (every frame normal, or every frame anomalous)"
    print(msg)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert the authors' pickles to our checkpoint format."""
    from .checkpoint import convert

    out = convert(args.original_model, args.original_keys, args.out, args.method, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


BENCH_DEFAULTS: dict[str, Any] = {"sizes": ["64", "128", "256"], "batch": 4, "width": 1.0, "preset": "paper", "epochs": 0,
                                  "method": "pred", "device": "cpu", "repeats": 5, "checkpoint": None}


def cmd_bench(args: argparse.Namespace) -> int:
    """Print evaluation frames/s and training seconds/step for the given sizes, or a dataset's wall-time estimate."""
    from .bench import app, estimate, run

    low = [f"--{k} {getattr(args, k)}" for k in ("threads", "batch", "repeats") if getattr(args, k) < 1]
    if low or args.width <= 0:
        raise ConfigError(f"{', '.join(low) or f'--width {args.width}'} is not usable: --threads, --batch and "
                          "--repeats must be at least 1 and --width above 0")
    if args.app and args.estimate:
        raise ConfigError("--app and --estimate are two benchmarks: give one")
    if args.app:
        other_mode: tuple[str, ...] = ("sizes", "batch", "width", "preset", "epochs", "method", "device", "repeats")
        why = "with --app, which times the committed weights (or --checkpoint) on the CPU"
    elif args.estimate:
        other_mode, why = ("sizes", "batch", "width", "checkpoint"), "with --estimate, which takes size, batch and width from --preset"
    else:
        other_mode, why = ("preset", "epochs", "checkpoint"), "without --estimate or --app"
    ignored = [f"--{k}" for k in other_mode if getattr(args, k) != BENCH_DEFAULTS[k]]
    if ignored:
        raise ConfigError(f"{', '.join(ignored)} {'do' if len(ignored) > 1 else 'does'} nothing {why}; drop it")
    if args.app:
        from .pipeline import WEIGHTS

        report = app(args.app, args.checkpoint or WEIGHTS, threads=args.threads)
    elif args.estimate:
        report = estimate(args.estimate, preset_name=args.preset, method=args.method, epochs=args.epochs,
                          threads=args.threads, device=args.device, repeats=args.repeats)
    else:
        report = run(sizes=[validate_size((s, s))[0] for s in args.sizes], method=args.method, threads=args.threads,
                     width=args.width, batch=args.batch, device=args.device, repeats=args.repeats)
    print(json.dumps(report, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all sub-commands."""
    ap = argparse.ArgumentParser(prog="python -m mnadlib", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="generate the synthped dataset")
    s.add_argument("--out", required=True, help="root folder; writes OUT/synthped and OUT/frame_labels_synthped.npy")
    s.add_argument("--preset", default="small", help="small (CI, demos) or full (Ped2 counts and size)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--overwrite", action="store_true", help="replace an OUT/synthped that synth wrote (never data of your own)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_synth)

    t = sub.add_parser("train", help="train on a dataset's training split")
    t.add_argument("--data", required=True, help="ROOT/DATASET (holding training/frames) or, with --split-path, the split folder")
    t.add_argument("--split-path", action="store_true", help="--data is the folder of training videos itself")
    t.add_argument("--method", choices=["pred", "recon"], default="pred")
    t.add_argument("--preset", choices=["cpu", "paper"], default="cpu")
    t.add_argument("--epochs", type=int, help="training epochs; default: the preset's (cpu 24, paper 60)")
    t.add_argument("--batch-size", type=int, help="clips per step; default: the preset's (cpu 8, paper 4)")
    t.add_argument("--width", type=float, help="channel multiplier (1.0: the paper's encoder); default: the preset's")
    t.add_argument("--size", nargs=2, metavar=("H", "W"), help="frame size; default: the preset's (cpu 64 64, paper 256 256)")
    t.add_argument("--no-memory", action="store_true", help="ablation: decoder without memory read")
    t.add_argument("--no-skips", action="store_true", help="ablation: prediction model without U-Net skips")
    t.add_argument("--seed", type=int, default=0, help="seed of the weights, memory items and data order (default 0)")
    t.add_argument("--device", default="auto", help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    t.add_argument("--max-steps", type=int, default=0, help="cap on steps per epoch (smoke runs); 0 (default): full epochs")
    t.add_argument("--workers", type=int, default=0,
                   help="processes reading frames beside the training loop (a GPU is often waiting on them); "
                        "the weights are the same for any count")
    t.add_argument("--restart", action="store_true",
                   help="train anew in --out, replacing what is there; without it an interrupted run there continues")
    t.add_argument("--out", required=True, help="run folder (checkpoint.pt, model.pt, history.json, manifest.json)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate with the authors' protocol")
    e.add_argument("--data", required=True, help="ROOT/DATASET (holding testing/frames, UCSD's Test/ or Avenue's "
                   "testing_videos/) or a folder of test videos")
    e.add_argument("--labels", help="frame_labels_*.npy, shape (1, N) or (N,)")
    e.add_argument("--method", choices=["pred", "recon"])
    e.add_argument("--checkpoint", help="our checkpoint (model.pt)")
    e.add_argument("--original-model", help="the authors' model.pth (plain or .gz)")
    e.add_argument("--original-keys", help="the authors' keys.pt (plain or .gz)")
    e.add_argument("--t-length", type=int)
    e.add_argument("--alpha", type=float, help="default 0.6 (pred) / 0.7 (recon)")
    e.add_argument("--th", type=float, default=0.01, help="test-time update threshold on the point score")
    e.add_argument("--size", nargs=2, metavar=("H", "W"),
                   help="model input size; default: the size --checkpoint was trained at, else 256 256 (the paper's)")
    e.add_argument("--no-update", action="store_true", help="disable the test-time memory update")
    e.add_argument("--reset-memory", action="store_true", help="deviation: reset memory at each video")
    e.add_argument("--batch-size", type=int, default=1, help=">1 only with --no-update (fast path)")
    e.add_argument("--device", default="auto")
    e.add_argument("--out", help="result JSON (a CSV of per-frame records is written beside it)")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("convert", help="convert the authors' model.pth + keys.pt to an mnadlib checkpoint")
    c.add_argument("--original-model", required=True)
    c.add_argument("--original-keys", required=True)
    c.add_argument("--method", choices=["pred", "recon"])
    c.add_argument("--out", required=True, help="the mnadlib checkpoint to write")
    c.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    c.set_defaults(func=cmd_convert)

    b = sub.add_parser("bench", help="throughput benchmark, or a dataset's wall-time estimate (not a test)")
    b.add_argument("--sizes", nargs="+", default=BENCH_DEFAULTS["sizes"], help="square input sizes (default 64 128 256)")
    b.add_argument("--method", choices=["pred", "recon"], default="pred")
    b.add_argument("--threads", type=int, default=2, help="torch threads (default 2, this project's CI machine's cores)")
    b.add_argument("--width", type=float, default=BENCH_DEFAULTS["width"], help="channel multiplier (default 1.0, the paper's)")
    b.add_argument("--batch", type=int, default=BENCH_DEFAULTS["batch"], help="training batch size (default 4, the paper's)")
    b.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (default 5)")
    b.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    b.add_argument("--estimate", metavar="DATASET",
                   help="instead: estimate one variant's training and one evaluation pass with --preset, from "
                        "measured step, frame and read times: ped2, avenue or shanghai (published counts), or a "
                        "dataset folder with training/ and testing/ splits (counted)")
    b.add_argument("--preset", default=BENCH_DEFAULTS["preset"], help="with --estimate: paper (default) or cpu; its size, width, batch")
    b.add_argument("--epochs", type=int, default=BENCH_DEFAULTS["epochs"], help="with --estimate: training epochs; 0: the preset's")
    b.add_argument("--app", metavar="VIDEO",
                   help="instead: time the localization app (notebook 04) on a video: loading it, each kind of "
                        "control change with the frame shown after it, and finding every frame's regions")
    b.add_argument("--checkpoint", help="with --app: the model (default: the committed synthped weights)")
    b.set_defaults(func=cmd_bench)

    from .localize_cli import add_parser
    add_parser(sub)
    from .seeds import add_parser as add_seeds
    add_seeds(sub)
    from .inject import add_parser as add_inject
    add_inject(sub)
    return ap


def _one_line_warnings() -> None:
    """Show mnadlib's own warnings (a truncated video) as one ``warning:`` line, without Python's source line."""
    default = warnings.showwarning
    if getattr(default, "mnadlib", False):  # installed by an earlier call in this process
        return

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        if category.__module__.startswith("mnadlib"):
            print(f"warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    show.mnadlib = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; bad input exits with status 2 and a one-line message, Ctrl-C with status 130."""
    from .data import DataError
    from .scoring import ScoreError

    args = build_parser().parse_args(argv)
    _one_line_warnings()
    try:
        return int(args.func(args) or 0)
    except (ConfigError, CheckpointError, DataError, ScoreError, OSError) as exc:  # OSError: a path that cannot be read or written
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # train says more itself; every output is replaced only once written whole
        print(f"interrupted: {args.command} wrote nothing half; run the same command again", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
