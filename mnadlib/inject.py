"""Real footage with injected anomalies: a labelled benchmark made from a video of a normal scene.

Real data sets are the user's to download, and a user's own camera comes without labels. A video
of a normal scene (OpenCV's ``vtest.avi``, or your own) is enough to see how a score behaves on
real footage: its first part becomes the training split, the rest is cut into test videos, and
into all but ``normal_test_videos`` of them synthped actors (cyclist, skateboarder, cart, runner)
are pasted, crossing the frame at a multiple of the footage's own typical motion (median optical
flow of its moving pixels), with exact pixel masks, frame labels and ``annotations.json`` in
synthped's format. The output is the UCSD layout every command here reads.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from . import actors, synth
from .checkpoint import check_out_folder
from .config import ConfigError
from .data import DataError, FrameSource, list_videos

INJECT_KINDS = ("cyclist", "skateboarder", "cart", "runner")


@dataclass
class InjectConfig:
    """How the footage is cut and what is pasted into it."""

    width: int = 360  # frames are resized to this width (aspect kept); 0 keeps the source size
    clip_length: int = 80  # frames per training and test video
    train_fraction: float = 0.5  # leading share of the footage that becomes the (normal) training split
    normal_test_videos: int = 1  # test videos left as they are (the last ones)
    max_events: int = 2  # injected actors per anomalous test video, at most
    height_fraction: float = 0.18  # injected actor's height as a share of the frame height (a person's, roughly)
    speed_factor: tuple[float, float] = (2.5, 4.0)  # injected speed, in multiples of the footage's typical motion
    seed: int = 0
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        self.speed_factor = (float(self.speed_factor[0]), float(self.speed_factor[1]))
        low, high = self.speed_factor
        checks = [
            (self.width == 0 or self.width >= 32, f"width must be 0 (the source's) or at least 32 pixels, got {self.width}"),
            (self.clip_length >= 10, f"clip_length must be at least 10 frames, got {self.clip_length}"),
            (0 < self.train_fraction < 1, f"train_fraction must be in (0, 1), got {self.train_fraction}"),
            (self.normal_test_videos >= 0, f"normal_test_videos must be >= 0, got {self.normal_test_videos}"),
            (self.max_events >= 1, f"max_events must be >= 1, got {self.max_events}"),
            (0 < self.height_fraction <= 1, f"height_fraction (the injected actor's height / the frame's) must be "
                                            f"in (0, 1], got {self.height_fraction}"),
            (0 < low <= high, f"speed_factor must be (low, high) with 0 < low <= high, got ({low}, {high})"),
            (1 <= self.jpeg_quality <= 100, f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
        ]
        wrong = [message for ok, message in checks if not ok]
        if wrong:
            raise ConfigError("; ".join(wrong))


def _resized(img: np.ndarray, width: int) -> np.ndarray:
    """A frame resized to ``width`` (aspect kept, area-averaged) when width > 0 and it is another width."""
    if width and img.shape[1] != width:
        h = max(8, round(img.shape[0] * width / img.shape[1]))
        img = cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA)
    return img


def _clip(source: FrameSource, start: int, length: int, width: int) -> np.ndarray:
    """Frames start..start+length-1 of the footage as (T, H, W, 3) uint8 BGR at the working width."""
    return np.stack([_resized(source.read(i), width) for i in range(start, start + length)])


UNCHANGED_MAD = 0.5  # mean absolute grey-level difference under which two frames count as the same picture
MOTION_WIDTH = 360  # frames are measured at this width, so that the flow window and cut-off mean the same at any size


def _to_width(img: np.ndarray, width: int) -> np.ndarray:
    """``img`` resized to ``width`` (aspect kept as ``_resized`` keeps it): area-averaged when shrunk, bilinear when enlarged."""
    if img.shape[1] == width:
        return img
    h = max(8, round(img.shape[0] * width / img.shape[1]))
    interpolation = cv2.INTER_AREA if width < img.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(img, (width, h), interpolation=interpolation)


def _resample_rows(weights: np.ndarray, n: int) -> np.ndarray:
    """Row weights resampled to ``n`` rows, each new row taking the share of the old rows it covers."""
    if len(weights) == n:
        return weights
    cdf = np.concatenate([[0.0], np.cumsum(weights)])
    return np.diff(np.interp(np.arange(n + 1) * len(weights) / n, np.arange(len(weights) + 1), cdf))


class _MotionMeter:
    """``typical_motion`` fed one frame at a time, so that footage is measured without being held in memory."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.shape: tuple[int, ...] | None = None  # (H, W) of the frames, from the first
        self.window: list[tuple[np.ndarray, np.ndarray]] = []  # (grey at the frames' size, at MOTION_WIDTH)
        self.mags: list[np.ndarray] = []
        self.rows = np.zeros(0)  # moving pixels per row at MOTION_WIDTH

    def add(self, frame: np.ndarray) -> None:
        """Take the next frame; every ``step`` frames, measure the first pair among them that changes."""
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        small = _to_width(grey, MOTION_WIDTH)
        if self.shape is None:
            self.shape, self.rows = frame.shape[:2], np.zeros(small.shape[0])
        self.window.append((grey, small))
        if len(self.window) == self.step + 1:
            self._measure()
            self.window = self.window[-1:]

    def _measure(self) -> None:
        """Flow of the window's first pair that shows two different pictures (none when all repeat)."""
        pair = next((k for k in range(len(self.window) - 1) if float(np.abs(
            self.window[k][0].astype(np.int16) - self.window[k + 1][0]).mean()) >= UNCHANGED_MAD), None)
        if pair is None:
            return
        flow = cv2.calcOpticalFlowFarneback(self.window[pair][1], self.window[pair + 1][1], None,
                                            0.5, 3, 15, 3, 5, 1.2, 0)
        mag = np.linalg.norm(flow, axis=-1)
        moving = mag > 0.5
        self.mags.append(mag[moving])
        self.rows += moving.sum(axis=1)

    def result(self) -> tuple[float, np.ndarray]:
        """(speed in px/frame, row weights) of the frames taken so far; DataError when they hardly move."""
        if len(self.window) > 1:
            self._measure()
        moved = np.concatenate(self.mags) if self.mags else np.zeros(0)
        if moved.size < 100 or self.shape is None or self.rows.sum() == 0:
            raise DataError("the footage hardly moves (under 100 moving pixels): pick a video of a scene with "
                            "people or traffic, or a longer stretch of it")
        rows = _resample_rows(self.rows, self.shape[0])
        return float(np.median(moved)) * (self.shape[1] / MOTION_WIDTH), rows / rows.sum()


def typical_motion(frames: Iterable[np.ndarray], step: int = 2) -> tuple[float, np.ndarray]:
    """(median flow magnitude of moving pixels in px/frame, rows weighted by how much moves there).

    Farneback optical flow between frame pairs ``step`` apart, on the frames resized to
    ``MOTION_WIDTH`` pixels, so that its 15 px window and the 0.5 px per frame over which a pixel
    moves cover the same share of the scene at any frame size; the speed and the row weights are
    then given in the pixels and rows of ``frames``. The row weights say where in the picture people
    walk. A pair that shows the same picture twice (a frozen camera, a frame-rate conversion that
    repeats frames; judged at the frames' own size) is replaced by the next pair that changes, so
    such footage is measured by the frames in which it moves. ``frames`` may be any iterable of
    (H, W, 3) BGR frames; they are read once, and at most ``step + 1`` are held.
    """
    meter = _MotionMeter(step)
    for frame in frames:
        meter.add(frame)
    return meter.result()


@dataclass
class _Event:
    kind: str
    start: int
    y: float  # row of the actor's lowest pixel
    facing: float  # +1 enters at the left edge, -1 at the right
    speed: float  # px/frame
    cols: np.ndarray
    phase: float


def _plan(cfg: InjectConfig, n_videos: int, length: int, frame_hw: tuple[int, int], speed: float,
          rows: np.ndarray, rng: np.random.Generator) -> list[list[_Event]]:
    """The events of each test video: none in the last ``normal_test_videos``."""
    h = cfg.height_fraction * frame_hw[0]
    plans = []
    for v in range(n_videos):
        events = []
        if v < n_videos - cfg.normal_test_videos:
            for _ in range(int(rng.integers(1, cfg.max_events + 1))):
                body = float(rng.choice(frame_hw[0], p=rows))  # a row where things move: a body's middle
                events.append(_Event(
                    kind=str(rng.choice(INJECT_KINDS)), start=int(rng.integers(0, max(1, length // 2))),
                    y=min(frame_hw[0] - 1.0, max(h, body + h / 2)), facing=float(rng.choice((-1.0, 1.0))),
                    speed=speed * float(rng.uniform(*cfg.speed_factor)), cols=actors.palette(rng),
                    phase=float(rng.uniform(0, 2 * math.pi))))
        plans.append(events)
    return plans


def _paste(frame: np.ndarray, sprite: np.ndarray, mask: np.ndarray, cx: float, bottom: float) -> np.ndarray:
    """Paste a sprite (its mask's box centred on ``cx``, its lowest pixel on row ``bottom``); return the visible mask."""
    ys, xs = np.nonzero(mask)
    y0 = int(round(bottom)) - int(ys.max())
    x0 = int(round(cx - (xs.min() + xs.max()) / 2))
    H, W = frame.shape[:2]
    fy0, fx0 = max(0, y0), max(0, x0)
    fy1, fx1 = min(H, y0 + mask.shape[0]), min(W, x0 + mask.shape[1])
    visible = np.zeros((H, W), bool)
    if fy0 >= fy1 or fx0 >= fx1:
        return visible
    crop = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
    m = mask[crop]
    alpha = cv2.GaussianBlur(m.astype(np.float32), (3, 3), 0.6)[..., None]  # the optics' soft edge
    region = frame[fy0:fy1, fx0:fx1].astype(np.float32)
    frame[fy0:fy1, fx0:fx1] = np.clip(region * (1 - alpha) + sprite[crop].astype(np.float32) * alpha + 0.5, 0, 255)
    visible[fy0:fy1, fx0:fx1] = m
    return visible


def _inject(frames: np.ndarray, events: list[_Event], h: float) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Frames with the events pasted in, their (T, H, W) masks and synthped-style objects."""
    out, masks = frames.copy(), np.zeros(frames.shape[:3], bool)
    W = frames.shape[2]
    objects = []
    for uid, ev in enumerate(events, 1):
        obj: dict[str, Any] = {"id": uid, "kind": ev.kind, "frames": [], "boxes": []}
        x = -0.8 * h if ev.facing > 0 else W + 0.8 * h  # just outside the frame
        phase = ev.phase
        for t in range(ev.start, len(frames)):
            sprite, mask = actors.render_actor(ev.kind, h, phase=phase, facing=ev.facing, cols=ev.cols)
            vis = _paste(out[t], sprite, mask, x, ev.y)
            if vis.any():
                ys, xs = np.nonzero(vis)
                obj["frames"].append(t)
                obj["boxes"].append([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1])
                masks[t] |= vis
            elif obj["frames"]:  # it has crossed the frame
                break
            x += ev.facing * ev.speed
            phase += actors.gait_step(ev.kind, h, ev.speed)
        if obj["frames"]:
            objects.append(obj)
    return out, masks, objects


def _split(n: int, cfg: InjectConfig) -> tuple[int, int]:
    """(training videos, test videos) that ``n`` frames of footage give."""
    n_train = int(n * cfg.train_fraction) // cfg.clip_length
    return n_train, (n - n_train * cfg.clip_length) // cfg.clip_length


def _enough(n: int, cfg: InjectConfig) -> bool:
    """Whether ``n`` frames give a training video and one anomalous test video besides the normal ones."""
    n_train, n_test = _split(n, cfg)
    return n_train >= 1 and n_test > cfg.normal_test_videos


def min_frames(cfg: InjectConfig) -> int:
    """The fewest frames of footage that ``cfg`` can cut into a benchmark."""
    return next(n for n in itertools.count(cfg.clip_length) if _enough(n, cfg))


def check_length(video: str | Path, n: int, cfg: InjectConfig) -> None:
    """Refuse footage of ``n`` frames that is too short for ``cfg``, saying how long it must be."""
    if not _enough(n, cfg):
        raise DataError(f"{video} has {n} frames: too few for a training video and {cfg.normal_test_videos + 1} "
                        f"test videos of clip_length={cfg.clip_length} frames with train_fraction={cfg.train_fraction}; "
                        f"these settings need at least {min_frames(cfg)} frames. Lower clip_length (-p clip_length "
                        "with reproduce) or give a longer video")


def _check_name(name: str) -> None:
    """Refuse a dataset name that is no plain folder name: it would land outside ``out_root``, or be ``out_root`` itself."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ConfigError(f"--name must be a plain folder name (not empty, not . or .., no / or \\), got {name!r}")


def inject(video: str | Path, out_root: str | Path, name: str = "injected", cfg: InjectConfig | None = None,
           overwrite: bool = False) -> Path:
    """Write ``out_root/name`` (UCSD layout, masks, ``annotations.json``) and its frame labels atomically."""
    cfg = cfg or InjectConfig()
    _check_name(name)
    check_out_folder(out_root)
    sources = list_videos(video)
    if len(sources) != 1:
        raise DataError(f"{video} holds {len(sources)} videos; give one video file or one folder of frames")
    source, L = sources[0], cfg.clip_length
    check_length(video, len(source), cfg)  # refused before the footage is read
    n_train, n_test = _split(len(source), cfg)
    hw = _resized(source.read(0), cfg.width).shape[:2]
    h = cfg.height_fraction * hw[0]

    def write(ds: Path) -> list[int]:
        meter = _MotionMeter(step=2)  # the training split is measured as it is written, one clip in memory
        for v in range(n_train):
            clip = _clip(source, v * L, L, cfg.width)
            _write(ds / "training" / "frames" / f"{v + 1:02d}", clip, cfg.jpeg_quality)
            for frame in clip:
                meter.add(frame)
        speed, rows = meter.result()
        plans = _plan(cfg, n_test, L, hw, speed, rows, np.random.default_rng(cfg.seed))
        labels, videos = [], {}
        for v, events in enumerate(plans):
            start = (n_train + v) * L
            clip, masks, objects = _inject(_clip(source, start, L, cfg.width), events, h)
            vname = f"{v + 1:02d}"
            _write(ds / "testing" / "frames" / vname, clip, cfg.jpeg_quality)
            _write(ds / "testing" / "masks" / vname, masks.astype(np.uint8) * 255)
            labels += [int(m.any()) for m in masks]
            videos[vname] = {"length": L, "source_first_frame": start, "objects": objects}
        meta = {"videos": videos, "source": str(video), "config": asdict(cfg), "typical_motion_px": speed,
                "frame_size": list(hw), "box_format": synth.BOX_FORMAT}
        (ds / "testing" / "annotations.json").write_text(json.dumps(meta, indent=1))
        return labels

    return synth.write_dataset(out_root, name, write, overwrite)


def _write(folder: Path, images: np.ndarray, quality: int = 0) -> None:
    """Frames as JPEG (quality > 0) or masks as PNG, named 000, 001, ..."""
    folder.mkdir(parents=True)
    for t, img in enumerate(images):
        path = folder / (f"{t:03d}.jpg" if quality else f"{t:03d}.png")
        params = [cv2.IMWRITE_JPEG_QUALITY, quality] if quality else []
        if not cv2.imwrite(str(path), img, params):
            raise OSError(f"could not write {path}")


def add_parser(sub: Any) -> None:
    """Register the ``inject`` sub-command."""
    s = sub.add_parser("inject", help="a labelled benchmark from a video of a normal scene, with pasted anomalies")
    s.add_argument("--video", required=True, help="a video file (or folder of frames) of a normal scene")
    s.add_argument("--out", required=True, help="folder to write <name>/ and frame_labels_<name>.npy into")
    s.add_argument("--name", default="injected", help="the dataset's folder name under OUT (a plain name, no path)")
    d = InjectConfig()
    s.add_argument("--width", type=int, default=d.width, help="resize frames to this width (0: keep)")
    s.add_argument("--clip-length", type=int, default=d.clip_length, help="frames per training and test video (>= 10)")
    s.add_argument("--train-fraction", type=float, default=d.train_fraction,
                   help="leading share of the footage that becomes the normal training split, in (0, 1)")
    s.add_argument("--normal-test-videos", type=int, default=d.normal_test_videos,
                   help="test videos left without injected anomalies (the last ones)")
    s.add_argument("--height-fraction", type=float, default=d.height_fraction,
                   help="injected actor height / frame height; set it to a person's height in your footage")
    s.add_argument("--speed-factor", type=float, nargs=2, default=d.speed_factor,
                   help="injected speed range in multiples of the footage's typical motion")
    s.add_argument("--seed", type=int, default=d.seed, help="seed of the injected actors' kinds, paths and speeds")
    s.add_argument("--overwrite", action="store_true", help="replace an OUT/NAME that inject or synth wrote (never data of your own)")
    s.set_defaults(func=cmd_inject)


def cmd_inject(args: argparse.Namespace) -> int:
    """Write the benchmark and say where it went."""
    cfg = InjectConfig(width=args.width, clip_length=args.clip_length, train_fraction=args.train_fraction,
                       normal_test_videos=args.normal_test_videos, height_fraction=args.height_fraction,
                       speed_factor=tuple(args.speed_factor), seed=args.seed)
    path = inject(args.video, args.out, args.name, cfg, overwrite=args.overwrite)
    meta = json.loads((path / "testing" / "annotations.json").read_text())
    n = sum(len(v["objects"]) for v in meta["videos"].values())
    print(f"wrote {path} ({len(meta['videos'])} test videos, {n} injected actors, typical motion "
          f"{meta['typical_motion_px']:.2f} px/frame) and {Path(args.out) / f'frame_labels_{args.name}.npy'}")
    return 0
