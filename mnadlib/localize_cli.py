"""The ``python -m mnadlib localize`` sub-command: flags mapped onto ``LocalizeConfig`` and the run.

Two uses. ``--video FILE_OR_FRAME_FOLDER --out DIR`` localizes one video with a checkpoint
(``--checkpoint``) or with a model trained on a normal stretch of the same footage
(``--fit-frames START:END``) and writes the files of ``localize_output.write_outputs``.
Thresholds are calibrated on normal frames: ``--normal`` footage, ``--normal-frames`` of the video,
the held-out end of ``--fit-frames``, or else the video's first quarter, assumed normal.
``--data ROOT/DATASET --metrics`` prints the localization metrics table of ``localize_eval``
(the fork's mode beside ours). Bad input exits with status 2 and one line, as every sub-command;
it is looked for before the long run (training, scoring), including an ``--out`` that would
overwrite an input, and a failure after ``--fit-frames`` training says how to reuse the trained model.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CheckpointError, atomic_write_json, check_writable
from .config import ConfigError, preset
from .data import DataError, list_videos, load_masks, open_source, validate_video
from .frames import FrameSource
from .localize import LocalizeError
from .localize_video import (DEFAULT_FPS, FEW_CALIBRATION_FRAMES, FIT_PRESET, FrameRange, LocalizeConfig, check_fps,
                             fit_on_frames, header_fps, leading_frames, load_model, localize, parse_range,
                             parse_threshold)
from .model import MNAD


def config_from_args(args: argparse.Namespace, size: tuple[int, int] | None) -> LocalizeConfig:
    """LocalizeConfig from the parsed flags."""
    return LocalizeConfig(map_kind=args.map, threshold=parse_threshold(args.threshold), percentile=args.percentile,
                          min_area=args.min_area, largest_only=args.largest_only, alpha=args.alpha,
                          streaming=not args.offline, frame_threshold=args.frame_threshold, size=size,
                          device=args.device)


def run(args: argparse.Namespace) -> int:
    """Localize one video, or print the metrics table of a dataset."""
    from .localize_eval import format_table, localization_metrics

    size = (args.size[0], args.size[1]) if args.size else None  # checked by load_model and LocalizeConfig
    if args.metrics:
        if not (args.data and args.checkpoint):
            raise LocalizeError("--metrics needs --data ROOT/DATASET and --checkpoint CKPT")
        if args.out:
            _check_out_folder(args.out)
            check_writable(args.out, "--out")
        model, items, size = load_model(args.checkpoint, size, args.device)
        table = localization_metrics(model, items, args.data, size, progress=not args.quiet)
        print(format_table(table))
        if args.out:
            atomic_write_json(table, Path(args.out) / "localization_metrics.json")
        return 0
    if not args.video or not args.out or bool(args.checkpoint) == bool(args.fit_frames):
        raise LocalizeError("give --video FILE_OR_FOLDER --out DIR and exactly one of --checkpoint CKPT "
                            "or --fit-frames START:END")
    if args.normal and args.normal_frames:
        raise LocalizeError("give --normal FOOTAGE or --normal-frames START:END, not both: the thresholds are "
                            "calibrated on one set of normal frames")
    gif_frames = _check_outputs(args)  # everything that can be checked is, before the long run
    cfg = config_from_args(args, size)
    check_fps(args.fps)
    source = open_source(args.video)
    validate_video(source, headers=True)  # frame files: none empty, all of one size (headers only)
    masks = load_masks(args.masks, source) if args.masks else None
    if args.masks and masks is None:
        raise LocalizeError(f"--masks {args.masks} holds no masks for {source.name}: give a folder of one PNG per "
                            f"frame, a .npy of shape (frames, H, W), or the dataset root holding testing/masks/{source.name}")
    normal = (list_videos(args.normal) if args.normal else
              FrameRange(source, *parse_range(args.normal_frames)) if args.normal_frames else None)
    if not args.fit_frames:
        model, items, size = load_model(args.checkpoint, size, args.device)
        _check_gif_frames(gif_frames, source, model.cfg.t_length)
        return _localize(args, source, model, items, dataclasses.replace(cfg, size=size), normal, masks, gif_frames)
    start, end = parse_range(args.fit_frames)
    _check_gif_frames(gif_frames, source, preset(FIT_PRESET).model.t_length)
    ckpt, held_out = fit_on_frames(source, start, end, Path(args.out) / "fit", args.fit_epochs, size,
                                   progress=not args.quiet)
    try:
        model, items, size = load_model(ckpt, device=args.device)
        return _localize(args, source, model, items, dataclasses.replace(cfg, size=size),
                         held_out if normal is None else normal, masks, gif_frames)
    except (LocalizeError, ConfigError, DataError, CheckpointError, OSError) as exc:
        reuse = f"--checkpoint {ckpt}" + ("" if normal is not None else
                                          f" --normal-frames {held_out.start}:{held_out.end}")
        raise LocalizeError(f"{exc}; the model trained on --fit-frames is saved: rerun with {reuse} in place of "
                            "--fit-frames and --fit-epochs to skip the training") from exc


def _localize(args: argparse.Namespace, source: FrameSource, model: MNAD, items: torch.Tensor | None,
              cfg: LocalizeConfig, normal: FrameSource | list[FrameSource] | None, masks: np.ndarray | None,
              gif_frames: tuple[int, int] | None) -> int:
    """Score and localize the video with a loaded model, write the outputs and print what was found."""
    from .localize_output import write_outputs

    assumed: FrameRange | None = None  # the video's leading frames, taken as normal
    if normal is None and (not args.offline or cfg.threshold == "calibrated"):  # offline scores need none
        normal = assumed = leading_frames(source, model.cfg.t_length)
    fps = args.fps or header_fps(source)  # the header read once, here
    res = localize(source, model, items, cfg, normal=normal, progress=not args.quiet, fps=fps)
    if fps is None:
        print(f"note: {source.path} records no frame rate, so the segments' times, annotated.mp4 and the GIF assume "
              f"{DEFAULT_FPS:g} fps; give the footage's rate with --fps", file=sys.stderr)
    if assumed is not None:
        print(f"note: calibrated on frames 0:{len(assumed)} of the video, assumed normal; choose normal footage with "
              "--normal or --normal-frames", file=sys.stderr)
    if res.normal is not None and len(res.normal.psnr) < FEW_CALIBRATION_FRAMES:
        print(f"warning: the thresholds come from {len(res.normal.psnr)} scored normal frames only, so they are rough "
              "(a 1st-percentile threshold flags the lowest of them): give --normal footage or a longer normal "
              "stretch, hundreds of frames if you have them", file=sys.stderr)
    paths = write_outputs(res, source, args.out, masks=masks, gif_every=args.gif_every, gif_height=args.gif_height,
                          gif_frames=gif_frames, progress=not args.quiet)
    segs = res.segments()
    print(f"{len(res.frames)} frames scored, {int(res.flags.sum())} anomalous in {len(segs)} segments, "
          f"{sum(map(len, res.boxes))} boxes; wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _check_out_folder(out: str) -> None:
    """LocalizeError when ``--out`` names an existing file: the outputs go into a folder."""
    if Path(out).exists() and not Path(out).is_dir():
        raise LocalizeError(f"--out {out} is a file; give a folder for the outputs")


def _check_outputs(args: argparse.Namespace) -> tuple[int, int] | None:
    """The GIF's frame range; LocalizeError for output flags that cannot work or would overwrite an input."""
    from .localize_output import check_apart, output_paths

    gif_frames = parse_range(args.gif_frames) if args.gif_frames else None
    _check_out_folder(args.out)
    if args.gif_every < 0 or args.gif_height < 1:
        raise LocalizeError(f"--gif-every must be >= 0 (0: no GIF) and --gif-height >= 1, got {args.gif_every} "
                            f"and {args.gif_height}")
    if args.gif_frames and not args.gif_every:
        raise LocalizeError("--gif-frames chooses the frames of annotated.gif: give --gif-every N too")
    outputs = list(output_paths(args.out, gif=args.gif_every > 0).values())
    outputs += [Path(args.out) / "fit"] if args.fit_frames else []  # fit_on_frames rewrites OUT/fit/fit_frames
    check_apart(args.out, {"--video": args.video, "--normal": args.normal, "--masks": args.masks,
                           "--checkpoint": args.checkpoint}, outputs)
    check_writable(args.out, "--out")
    return gif_frames


def _check_gif_frames(gif_frames: tuple[int, int] | None, source: FrameSource, t_length: int) -> None:
    """LocalizeError when --gif-frames holds no frame that will be scored (the first t_length - 1 are only inputs)."""
    first = t_length - 1
    if gif_frames and (gif_frames[1] <= first or gif_frames[0] >= len(source)):
        raise LocalizeError(f"--gif-frames {gif_frames[0]}:{gif_frames[1]} holds no scored frame of {source.path} "
                            f"({len(source)} frames; scored: {first}..{len(source) - 1})")


def cmd_localize(args: argparse.Namespace) -> int:
    """run() with LocalizeError reported like the other input errors (one line, status 2)."""
    try:
        return run(args)
    except LocalizeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``localize`` sub-command to the CLI's sub-parsers."""
    p = sub.add_parser("localize", help="localize anomalies in a video (boxes, heat maps, annotated video)")
    p.add_argument("--video", help="video file or folder of frames")
    p.add_argument("--checkpoint", help="our checkpoint (model.pt)")
    p.add_argument("--fit-frames", metavar="START:END", help="train on these normal frames of --video instead "
                   "(the last 20%% calibrate the thresholds)")
    p.add_argument("--fit-epochs", type=int, help="epochs for --fit-frames (default: the cpu preset's 24)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--map", choices=["ssim", "error", "memory"], default="ssim", help="anomaly map kind")
    p.add_argument("--threshold", default="calibrated", help="a number in the map's range, calibrated, otsu or fork")
    p.add_argument("--percentile", type=float, default=99.9, help="calibrated: percentile of normal map values")
    p.add_argument("--min-area", type=int, help="smallest region in original-frame pixels (default 0.1%% of the frame)")
    p.add_argument("--largest-only", action="store_true", help="keep only the largest region per frame (the fork)")
    p.add_argument("--alpha", type=float, default=0.6, help="weight of PSNR in the regularity score")
    p.add_argument("--size", nargs=2, type=int, metavar=("H", "W"), help="model input size (default: the checkpoint's)")
    p.add_argument("--normal", help="normal footage (video, frame folder or folder of videos) for calibration")
    p.add_argument("--normal-frames", metavar="START:END", help="normal frames of --video for calibration")
    p.add_argument("--fps", type=float, help="the footage's frame rate, for the segments' times, annotated.mp4 and "
                   f"the GIF (default: the video file's, else {DEFAULT_FPS:g}: a frame folder records none)")
    p.add_argument("--offline", action="store_true", help="normalise scores over the whole video (the authors)")
    p.add_argument("--frame-threshold", type=float, help="regularity below this flags a frame")
    p.add_argument("--masks", help="ground-truth masks (folder, .npy or Avenue's .mat) to draw in green")
    p.add_argument("--gif-every", type=int, default=0, help="also write annotated.gif with every N-th frame")
    p.add_argument("--gif-height", type=int, default=160, help="panel height of annotated.gif in pixels")
    p.add_argument("--gif-frames", metavar="START:END", help="only these frames in annotated.gif")
    p.add_argument("--data", help="with --metrics: ROOT/DATASET with testing masks")
    p.add_argument("--metrics", action="store_true", help="print the localization metrics table for --data")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_localize)
    return p
