"""Synthetic UCSD Ped2-like dataset ("synthped"): a static walkway, pedestrians and anomalies.

Imitates UCSD Ped2 (Mahadevan et al., CVPR 2010) as MNAD (Park et al., CVPR 2020, Sec. 4) uses
it: a fixed camera over a textured walkway with perspective, pedestrians walking along it, and
in test videos only Ped2's anomalies (cyclists, skateboarders, small carts) plus two subtle ones
(a runner, and a pedestrian who leaves the walkway across the flow onto the lawn, as in UCSD
Ped1). Anomalies start mid-video, after a normal stretch. Each video keeps its own crowd size
from start to end (someone enters soon after someone leaves), so no score drifts with a growing
crowd. Every actor takes its colours from one palette, so anomalies differ from pedestrians only
in motion and shape, never in brightness or colour. Actors are articulated figures drawn with
OpenCV (:mod:`mnadlib.actors`), each into its own mask layer.

Layout as Liu et al. (CVPR 2018) ship Ped2 (``training/frames/01/000.jpg``), labels as the MNAD
authors ship ``frame_labels_ped2.npy`` (shape (1, N), 1 = anomalous), plus exact pixel masks
(``testing/masks/NN/NNN.png``) and per-object boxes ``[x0, y0, x1, y1]`` (x1, y1 exclusive) in
``testing/annotations.json``. Speeds are in pixels per frame at Ped2's 240 rows and scale with the
frame height. Output is a deterministic function of (preset, seed), byte for byte.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from .actors import Pen, Point, draw, gait_step, palette
from .checkpoint import check_out_folder
from .config import ConfigError
from .frames import DataError, move_into_place

ANOMALY_KINDS = ("cyclist", "skateboarder", "cart", "runner", "lawn_walker")
BOX_FORMAT = "[x0, y0, x1, y1] in frame pixels, x1 and y1 exclusive"
GENERATOR_VERSION = 2  # bumped whenever the same (preset, seed) renders different data; 2: steady crowds
_TOP = (0.30, 0.36)  # walkway far edge as a fraction of H, at the left and right borders
_BOTTOM = (0.90, 0.96)  # walkway near edge
_SPEED = {  # nominal speed range: px/frame of a person near the camera in a 240-row frame
    "pedestrian": (1.0, 1.8), "lawn_walker": (1.0, 1.8), "runner": (3.0, 4.2),
    "skateboarder": (4.2, 6.4), "cart": (3.6, 5.6), "cyclist": (5.0, 8.0),
}


@dataclass
class SynthPreset:
    """Counts and sizes of a synthped dataset."""

    size: tuple[int, int] = (120, 180)  # (H, W) of every frame; Ped2 is 240x360
    train_lengths: tuple[int, ...] = (60, 70, 80, 60, 70, 80, 60, 70)  # frames per training video
    test_lengths: tuple[int, ...] = (70, 80, 60, 80, 70, 80)  # frames per test video
    normal_test_videos: int = 1  # test videos without any anomaly
    max_events: int = 2  # anomalous actors per anomalous test video, at most
    crowd: tuple[int, int] = (2, 6)  # range of a video's crowd: pedestrians on screen, steady along the video
    jpeg_quality: int = 95  # cv2 JPEG quality (encoding is deterministic)

    def __post_init__(self) -> None:
        self.size = (int(self.size[0]), int(self.size[1]))
        self.train_lengths = tuple(int(n) for n in self.train_lengths)
        self.test_lengths = tuple(int(n) for n in self.test_lengths)
        self.crowd = (int(self.crowd[0]), int(self.crowd[1]))
        if min(self.size) < 32:
            raise ValueError(f"size must be at least 32x32, got {self.size}")
        if not self.train_lengths or not self.test_lengths or min(self.train_lengths + self.test_lengths) < 10:
            raise ValueError("need at least one training and one test video, each of >= 10 frames")
        if not 0 <= self.normal_test_videos <= len(self.test_lengths):
            raise ValueError(f"normal_test_videos must be in [0, {len(self.test_lengths)}]")
        if self.max_events < 1 or not 0 <= self.crowd[0] <= self.crowd[1]:
            raise ValueError("max_events must be >= 1 and crowd must be (low, high) with 0 <= low <= high")


PRESETS: dict[str, SynthPreset] = {
    "small": SynthPreset(),
    "full": SynthPreset(
        size=(240, 360),
        train_lengths=(120, 150, 150, 180, 180, 150, 150, 120, 180, 180, 180, 180, 180, 120, 150, 180),
        test_lengths=(180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180),
        normal_test_videos=2,
        max_events=3,
        crowd=(3, 8),
    ),
}


def get_preset(preset: str | SynthPreset) -> SynthPreset:
    """Return a copy of a named preset, or the given preset itself."""
    if isinstance(preset, SynthPreset):
        return preset
    if preset not in PRESETS:
        raise ConfigError(f"unknown synthped preset {preset!r}; choose one of {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[preset])


class ActorBox(NamedTuple):
    """One actor visible in a frame, boxed around its visible pixels."""

    id: int
    kind: str  # "pedestrian" or one of ANOMALY_KINDS
    anomalous: bool
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)


class RenderedFrame(NamedTuple):
    """A frame with its ground truth, before JPEG encoding."""

    image: np.ndarray  # (H, W, 3) uint8 BGR
    anomaly: np.ndarray  # (H, W) bool, visible pixels of anomalous actors
    pedestrian: np.ndarray  # (H, W) bool, visible pixels of normal pedestrians
    actors: list[ActorBox]


@dataclass
class VideoPlan:
    """What one video holds: its length and the anomalies that enter it."""

    split: str  # "training" or "testing"
    name: str  # "01", "02", ...
    length: int  # frames
    events: tuple[tuple[int, str], ...]  # (first frame, kind) per anomalous actor
    crowd: tuple[int, int]  # range the video's steady crowd size is drawn from
    seed: np.random.SeedSequence  # drives pedestrians, anomalies, flicker and noise


@dataclass
class Scene:
    """The static camera view: background image and walkway geometry."""

    background: np.ndarray  # (H, W, 3) uint8 BGR

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return self.background.shape[0], self.background.shape[1]

    def edge(self, which: tuple[float, float], x: Any) -> Any:
        """Row of a walkway edge (_TOP or _BOTTOM) at column x."""
        h, w = self.size
        return h * (which[0] + (which[1] - which[0]) * x / w)

    def height(self, y: float) -> float:
        """Height in pixels of an average person whose feet are at row y (perspective)."""
        return self.size[0] * (0.10 + 0.22 * y / self.size[0])

    def speed(self, y: float) -> float:
        """Pixels per frame of one unit of nominal speed at row y."""
        return self.height(y) / 240.0 / 0.265


@dataclass
class _Actor:
    id: int
    kind: str
    x: float  # ground point between the feet, pixels
    y: float
    dx: float  # unit direction of motion
    dy: float
    u: float  # nominal speed, see _SPEED
    size: float  # body height relative to the average person at this row
    cols: np.ndarray  # (5, 3) palette colours: head, upper body, legs, vehicle body, wheels
    lane: bool  # kept between the walkway edges
    phase: float = 0.0  # gait or pedal angle



def _draw(a: _Actor, h: float) -> Pen:
    """Render an actor of height h (pixels) into its own colour and mask layers."""
    return draw(a.kind, a.x, a.y, h, 1.0 if a.dx >= 0 else -1.0, a.phase, a.cols)


def _spawn(kind: str, uid: int, scene: Scene, rng: np.random.Generator, inside: bool = False) -> _Actor:
    """A new actor on the walkway, entering at a frame edge (or anywhere along it when inside)."""
    h, w = scene.size
    d = float(rng.choice((-1.0, 1.0)))
    x = rng.uniform(0, w) if inside else (w - w * d) / 2
    top, bottom = scene.edge(_TOP, x) + 0.03 * h, scene.edge(_BOTTOM, x) - 0.03 * h
    y = top + rng.uniform(0, 1) * (bottom - top)
    if not inside:
        x -= d * {"cart": 0.72, "cyclist": 0.48}.get(kind, 0.36) * scene.height(y)  # just outside the frame
    dx, dy = d, d * (_TOP[1] - _TOP[0]) * h / w + rng.normal(0, 0.03)  # along the walkway, a little astray
    norm = math.hypot(dx, dy)
    u, size, phase = rng.uniform(*_SPEED[kind]), rng.uniform(0.9, 1.1), rng.uniform(0, 2 * math.pi)
    a = _Actor(uid, kind, x, y, dx / norm, dy / norm, u, size, palette(rng), True, phase)
    if kind == "lawn_walker":  # enters, already heading off across the flow
        _turn_off(a, scene, rng.uniform(0.4, 0.6))
    return a


def _turn_off(a: _Actor, scene: Scene, theta: float) -> None:
    """Turn a pedestrian into a lawn walker: it leaves the walkway at theta radians to the flow, to a lawn."""
    up = a.y > (scene.edge(_TOP, a.x) + scene.edge(_BOTTOM, a.x)) / 2
    a.kind, a.lane = "lawn_walker", False
    a.dx, a.dy = math.copysign(math.cos(theta), a.dx), (-math.sin(theta) if up else math.sin(theta))


def _step(a: _Actor, scene: Scene) -> None:
    """Advance an actor by one frame along its direction, and its gait or pedal cycle."""
    px = a.u * scene.speed(a.y)
    a.x, a.y = a.x + a.dx * px, a.y + a.dy * px
    if a.lane:
        margin = 0.03 * scene.size[0]
        a.y = min(max(a.y, scene.edge(_TOP, a.x) + margin), scene.edge(_BOTTOM, a.x) - margin)
    a.phase += gait_step(a.kind, scene.height(a.y), px, a.size)


def _leaving(a: _Actor, w: int) -> bool:
    """True once an actor's centre has crossed the frame edge it walks towards."""
    return (a.dx > 0 and a.x > w) or (a.dx < 0 and a.x < 0)


def _gone(a: _Actor, scene: Scene) -> bool:
    """True once an actor has left the frame for good."""
    h, w = scene.size
    r = 0.9 * scene.height(a.y) * a.size
    return (a.dx > 0 and a.x - r > w) or (a.dx < 0 and a.x + r < 0) or a.y - 1.2 * r > h or a.y < 0


def build_scene(size: tuple[int, int], seed: int) -> Scene:
    """The static background: textured pavement band, lawns, kerbs, bushes, a bench and a lamp post."""
    h, w = size
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])  # child 0; plan_videos uses 1 and up
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    scene = Scene(np.zeros((h, w, 3), np.uint8))

    def noise(sx: float, sy: float, amp: float) -> np.ndarray:
        n = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sx, sigmaY=sy)
        return (n * (amp / (n.std() + 1e-6)))[..., None]

    def line(img: np.ndarray, a: Point, b: Point, col: tuple, width: float = 1) -> None:
        p, q = (round(a[0] * 16), round(a[1] * 16)), (round(b[0] * 16), round(b[1] * 16))
        cv2.line(img, p, q, col, max(1, round(width)), cv2.LINE_AA, 4)

    pave = np.full((h, w, 3), (150, 154, 158), np.float32) + noise(0.1 * h, 0.1 * h, 6) + noise(0.6, 0.6, 4)
    for xb in np.arange(rng.uniform(0, 0.16), 1.2, 0.16) * w:  # transverse joints, converging with distance
        xt = w / 2 + (xb - w / 2) * 0.75
        line(pave, (xb, scene.edge(_BOTTOM, xb)), (xt, scene.edge(_TOP, xt)), (125, 128, 131))
    line(pave, (0, h * (_TOP[0] + _BOTTOM[0]) / 2), (w, h * (_TOP[1] + _BOTTOM[1]) / 2), (132, 135, 138))
    grass = np.full((h, w, 3), (88, 112, 100), np.float32) + noise(0.05 * h, 0.05 * h, 9) + noise(0.4, 1.2, 13)
    walk = (yy >= scene.edge(_TOP, xx)) & (yy < scene.edge(_BOTTOM, xx))
    img = np.where(walk[..., None], pave, grass)
    for e in (_TOP, _BOTTOM):  # kerbs
        line(img, (0, h * e[0]), (w, h * e[1]), (182, 184, 186), 0.012 * h)
    for _ in range(3):  # bushes on the far lawn
        cx, cy = rng.uniform(0.05, 0.95) * w, rng.uniform(0.04, 0.2) * h
        for _ in range(7):
            c = (round((cx + rng.normal(0, 0.04 * w)) * 16), round((cy + rng.normal(0, 0.025 * h)) * 16))
            axes = (round(rng.uniform(0.02, 0.05) * h * 16), round(rng.uniform(0.015, 0.035) * h * 16))
            col = tuple(rng.uniform(55, 75) + np.array([0.0, 12, 6]))
            cv2.ellipse(img, c, axes, 0, 0, 360, col, -1, cv2.LINE_AA, 4)
    bx = rng.uniform(0.1, 0.6) * w  # a bench: seat and backrest
    by = scene.edge(_TOP, bx) - 0.04 * h
    for top, bottom, g in ((by - 0.05 * h, by, 105), (by - 0.1 * h, by - 0.07 * h, 95)):
        cv2.rectangle(img, (round(bx), round(top)), (round(bx + 0.12 * w), round(bottom)), (g, g - 4, g - 8), -1)
    lx = rng.uniform(0.65, 0.9) * w  # a lamp post
    line(img, (lx, scene.edge(_TOP, lx) - 0.01 * h), (lx, 0.03 * h), (70, 72, 74), 0.012 * h)
    cv2.ellipse(img, (round(lx), round(0.03 * h)), (max(1, round(0.025 * h)), max(1, round(0.012 * h))),
                0, 0, 360, (200, 200, 196), -1)
    blob = ((xx - rng.uniform(0.2, 0.8) * w) / (0.15 * w)) ** 2 + ((yy - 0.6 * h) / (0.3 * h)) ** 2 < 1
    shade = cv2.GaussianBlur(blob.astype(np.float32), (0, 0), 0.05 * w)  # a soft tree shadow
    vignette = 1 - 0.06 * (((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2)
    img *= ((1 - 0.15 * shade) * vignette)[..., None]
    scene.background = np.clip(img + noise(0.5, 0.5, 2.5), 0, 255).astype(np.uint8)
    return scene


def plan_videos(preset: SynthPreset, seed: int) -> list[VideoPlan]:
    """Lengths and anomaly schedules of every video, training first; training videos are normal only."""
    n_train, n_test = len(preset.train_lengths), len(preset.test_lengths)
    seeds = np.random.SeedSequence(seed).spawn(2 + n_train + n_test)
    rng = np.random.default_rng(seeds[1])
    plans = [VideoPlan("training", f"{i + 1:02d}", n, (), preset.crowd, seeds[2 + i])
             for i, n in enumerate(preset.train_lengths)]
    normal = set(rng.choice(n_test, preset.normal_test_videos, replace=False).tolist())
    kinds = [str(k) for k in rng.permutation(ANOMALY_KINDS)]  # every kind leads a video before any repeats
    led = 0
    for i, n in enumerate(preset.test_lengths):
        events: list[tuple[int, str]] = []
        if i not in normal:
            events.append((int(rng.uniform(0.2, 0.45) * n), kinds[led % len(kinds)]))
            led += 1
            for _ in range(int(rng.integers(0, preset.max_events))):
                low = min(events[-1][0] / n + 0.1, 0.65)
                events.append((int(rng.uniform(low, 0.7) * n), str(rng.choice(ANOMALY_KINDS))))
        plans.append(VideoPlan("testing", f"{i + 1:02d}", n, tuple(events), preset.crowd, seeds[2 + n_train + i]))
    return plans


def render_video(plan: VideoPlan, scene: Scene) -> Iterator[RenderedFrame]:
    """Frames of one video with exact per-pixel ground truth, deterministic in plan.seed."""
    rng = np.random.default_rng(plan.seed)
    h, w = scene.size
    amps, periods, phases = rng.uniform(0.005, 0.015, 2), rng.uniform(30, 120, 2), rng.uniform(0, 2 * math.pi, 2)
    target = int(rng.integers(plan.crowd[0], plan.crowd[1] + 1))  # this video's crowd, held all along
    actors = [_spawn("pedestrian", i + 1, scene, rng, inside=True) for i in range(target)]
    uid = len(actors)
    for t in range(plan.length):
        n_ped = sum(a.kind == "pedestrian" and not _leaving(a, w) for a in actors)
        if n_ped < target and rng.random() < 0.2:  # someone enters soon after someone starts to leave
            uid += 1
            actors.append(_spawn("pedestrian", uid, scene, rng))
        for kind in (kind for start, kind in plan.events if start == t):
            walking = [a for a in actors if a.kind == "pedestrian" and 0.15 * w < a.x < 0.85 * w]
            if kind == "lawn_walker" and walking:  # a pedestrian leaves the flow and heads across the lawn
                _turn_off(walking[int(rng.integers(len(walking)))], scene, rng.uniform(0.8, 1.2))
            else:
                uid += 1
                actors.append(_spawn(kind, uid, scene, rng))
        canvas, ids, placed = scene.background.copy(), np.zeros((h, w), np.int32), []
        for a in sorted(actors, key=lambda a: a.y):  # far actors first, near ones occlude them
            pen = _draw(a, scene.height(a.y) * a.size)
            x0, y0 = max(0, pen.ox), max(0, pen.oy)
            x1, y1 = min(w, pen.ox + pen.mask.shape[1]), min(h, pen.oy + pen.mask.shape[0])
            if x0 < x1 and y0 < y1:
                crop = (slice(y0 - pen.oy, y1 - pen.oy), slice(x0 - pen.ox, x1 - pen.ox))
                m = pen.mask[crop] > 0
                canvas[y0:y1, x0:x1][m] = pen.img[crop][m]
                ids[y0:y1, x0:x1][m] = a.id
                placed.append((a, x0, y0, x1, y1))
        boxes = []
        for a, x0, y0, x1, y1 in placed:
            ys, xs = np.nonzero(ids[y0:y1, x0:x1] == a.id)  # visible pixels, after occlusion
            if len(xs):
                box = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)
                boxes.append(ActorBox(a.id, a.kind, a.kind != "pedestrian", box))
        anomalous = np.zeros(uid + 1, bool)
        anomalous[[a.id for a in actors if a.kind != "pedestrian"]] = True
        gain = 1.0 + float(np.sum(amps * np.sin(2 * math.pi * t / periods + phases)))  # slow flicker, < 3%
        img: np.ndarray = cv2.GaussianBlur(canvas.astype(np.float32) * gain, (3, 3), 0.6)  # optics
        img += rng.standard_normal((h, w, 1), dtype=np.float32) * 2.0  # sensor noise
        image = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        yield RenderedFrame(image, anomalous[ids], (ids > 0) & ~anomalous[ids], boxes)
        for a in actors:
            _step(a, scene)
        actors = [a for a in actors if not _gone(a, scene)]


def _write_video(plan: VideoPlan, scene: Scene, ds: Path, quality: int) -> tuple[list[int], list[dict]]:
    """Write one video's frames (and masks for test videos); return its frame labels and anomalous objects."""
    frames, masks = ds / plan.split / "frames" / plan.name, ds / "testing" / "masks" / plan.name
    frames.mkdir(parents=True)
    if plan.split == "testing":
        masks.mkdir(parents=True)
    pad = max(3, len(str(plan.length - 1)))
    labels: list[int] = []
    objects: dict[int, dict[str, Any]] = {}  # actor id -> its record
    for t, fr in enumerate(render_video(plan, scene)):
        ok = cv2.imwrite(str(frames / f"{t:0{pad}d}.jpg"), fr.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if plan.split == "testing":
            ok &= cv2.imwrite(str(masks / f"{t:0{pad}d}.png"), fr.anomaly.astype(np.uint8) * 255)
            labels.append(int(fr.anomaly.any()))
            for b in (b for b in fr.actors if b.anomalous):
                obj = objects.setdefault(b.id, {"id": b.id, "kind": b.kind, "frames": [], "boxes": []})
                obj["frames"].append(t)
                obj["boxes"].append(list(b.box))
        if not ok:
            raise OSError(f"could not write frame {t} of {plan.split}/{plan.name} under {ds}")
    return labels, sorted(objects.values(), key=lambda o: o["frames"][0])


def generate(out_root: str | Path, preset: str | SynthPreset = "small", seed: int = 0, name: str = "synthped",
             progress: bool = False, overwrite: bool = False) -> Path:
    """Write out_root/name and out_root/frame_labels_<name>.npy atomically; return out_root/name."""
    cfg = get_preset(preset)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"seed must be a whole number >= 0 (numpy's SeedSequence takes no other), got {seed!r}")
    seed = int(seed)  # a NumPy integer too, written to annotations.json as a plain number

    def write(ds: Path) -> list[int]:
        scene, labels, videos = build_scene(cfg.size, seed), [], {}
        for plan in tqdm(plan_videos(cfg, seed), desc=f"synth {name}", unit="video", disable=not progress):
            video_labels, objects = _write_video(plan, scene, ds, cfg.jpeg_quality)
            labels += video_labels
            if plan.split == "testing":
                videos[plan.name] = {"length": plan.length, "objects": objects}
        meta = {"videos": videos, "preset": dataclasses.asdict(cfg), "seed": seed, "generator": GENERATOR_VERSION,
                "box_format": BOX_FORMAT}
        (ds / "testing" / "annotations.json").write_text(json.dumps(meta, indent=1))
        return labels

    return write_dataset(out_root, name, write, overwrite)


def written_meta(folder: str | Path) -> dict[str, Any] | None:
    """``testing/annotations.json`` of a dataset that synth (key ``generator``) or inject (key ``source``) wrote, else None."""
    ann = Path(folder) / "testing" / "annotations.json"
    try:
        meta = json.loads(ann.read_text()) if ann.is_file() else None
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and ("generator" in meta or "source" in meta) else None


def occupied(folder: str | Path) -> bool:
    """Whether ``folder`` holds anything: a file, or a folder that is not empty."""
    folder = Path(folder)
    return folder.exists() and (not folder.is_dir() or any(folder.iterdir()))


def write_dataset(out_root: str | Path, name: str, write: Callable[[Path], list[int]], overwrite: bool = False) -> Path:
    """Build ``out_root/name`` with ``write(folder) -> test frame labels`` beside it, then move it and
    ``out_root/frame_labels_<name>.npy`` into place: a failure leaves an earlier dataset untouched.

    ``overwrite`` replaces only a dataset that synth or inject wrote; anything else there (a
    downloaded dataset, or its label file) is never replaced.
    """
    root = Path(out_root)
    check_out_folder(root)
    target = root / name
    labels_file = root / f"frame_labels_{name}.npy"
    taken = occupied(target)
    if taken and written_meta(target) is None:
        raise FileExistsError(f"{target} exists and was not written by mnadlib, so it is never replaced: write to "
                              "another output folder (--out), or, with inject, give another --name")
    if labels_file.exists() and written_meta(target) is None:
        raise FileExistsError(f"{labels_file} exists without the dataset {target} that would show mnadlib wrote it, "
                              "so it is never replaced: delete it if synth or inject left it, or write to another "
                              "output folder (--out), or, with inject, give another --name")
    if taken and not overwrite:
        raise FileExistsError(f"{target} exists and is not empty; pass overwrite=True (--overwrite on the command line) to replace it")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))  # same filesystem: atomic renames
    try:
        labels = write(tmp / name)
        np.save(tmp / "labels.npy", np.asarray(labels, np.int64)[None, :])  # (1, N) as the authors ship it
        move_into_place([(tmp / name, target), (tmp / "labels.npy", labels_file)], tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def contact_sheet(dataset_dir: str | Path, out_png: str | Path, n: int = 8) -> Path:
    """A grid of test frames: one per anomaly kind (mask outlined in red, box in yellow), the rest normal.

    Works on synthped and on footage written by ``python -m mnadlib inject``.
    """
    from matplotlib.figure import Figure

    ds = Path(dataset_dir)
    meta = json.loads((ds / "testing" / "annotations.json").read_text())
    videos, (h, w) = meta["videos"], meta.get("frame_size") or meta["preset"]["size"]  # injected, or synthped
    picks: list[tuple[str, int, str]] = []
    for v, info in sorted(videos.items()):
        for obj in info["objects"]:
            if obj["kind"] not in {k for _, _, k in picks} and len(picks) < n - max(1, n // 4):
                score = [(x1 - x0) * (y1 - y0) * (1 if x0 > 0 and y0 > 0 and x1 < w and y1 < h else 0.2)
                         for x0, y0, x1, y1 in obj["boxes"]]  # prefer large and wholly inside the frame
                t = obj["frames"][int(np.argmax(score))]
                if (v, t) not in {(pv, pt) for pv, pt, _ in picks}:
                    picks.append((v, t, obj["kind"]))
    calm = [v for v, info in sorted(videos.items()) if not info["objects"]]
    normal = [(v, videos[v]["length"] * q // 4) for q in (2, 1, 3) for v in calm]
    normal += [(v, 0) for v, info in sorted(videos.items()) if info["objects"]]  # anomalies enter mid-video
    picks += [(v, t, "normal") for v, t in normal[: n - len(picks)]]
    cols = min(4, len(picks))
    rows = math.ceil(len(picks) / cols)
    fig = Figure(figsize=(3.6 * cols, 2.6 * rows), dpi=130)
    for k, (v, t, kind) in enumerate(picks):
        frame = sorted((ds / "testing" / "frames" / v).glob("*.jpg"))[t]
        s = max(1, round(360 / w))  # upscale small frames so that outlines stay thin
        up: dict[str, Any] = {"fx": s, "fy": s, "interpolation": cv2.INTER_NEAREST}
        mask_png = ds / "testing" / "masks" / v / f"{frame.stem}.png"
        bgr, grey = cv2.imread(str(frame), cv2.IMREAD_COLOR), cv2.imread(str(mask_png), cv2.IMREAD_GRAYSCALE)
        if bgr is None or grey is None:
            raise DataError(f"cannot read {frame if bgr is None else mask_png}: the file is missing, empty or corrupt")
        img = cv2.resize(bgr, None, **up)
        mask = cv2.resize(grey, None, **up)
        contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(img, contours, -1, (0, 0, 255), 1)
        for obj in (o for o in videos[v]["objects"] if t in o["frames"]):
            x0, y0, x1, y1 = (c * s for c in obj["boxes"][obj["frames"].index(t)])
            cv2.rectangle(img, (x0 - 2, y0 - 2), (x1 + 1, y1 + 1), (0, 220, 255), 1)
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), interpolation="nearest")
        ax.set_title(f"test {v} frame {t:03d}: {kind}", fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
