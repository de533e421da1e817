"""Interactive anomaly localization in Jupyter (ipywidgets): pick or upload a video, scrub, tune, export.

The callbacks are plain functions that take values and return arrays, PNG bytes, results or
messages (tests call them across the slider ranges); :class:`LocalizationApp` only wires them to
widgets. The model runs once per video (``localize_video.localize``); map kind, threshold, minimum
area, largest-only and ``alpha`` (MNAD Eq. 12) re-threshold the kept predictions
(``relocalize``) without running it again. Bad input (an unreadable upload, a video shorter than
the model's clip, a checkpoint trained at another size, a threshold out of range) becomes a
message in the app's status line, never an exception in the kernel.
"""

from __future__ import annotations

import dataclasses
import html
import io
import math
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .checkpoint import CheckpointError
from .config import ConfigError, scratch_dir
from .data import DataError, FrameSource, list_videos, load_masks, open_source, split_dir
from .frames import VideoFile
from .localize import VALID_RANGE, LocalizeError, MapKind
from .localize_eval import FORK
from .localize_output import mask_boxes, panels, regularity_figure, write_boxes, write_video
from .localize_video import (FEW_CALIBRATION_FRAMES, LocalizeConfig, LocalizeResult, NormalReference, check_fps,
                             fit_normal, leading_frames, load_model, localize, relocalize)
from .model import MNAD
from .scoring import ScoreError

INPUT_ERRORS = (LocalizeError, DataError, CheckpointError, ConfigError, ScoreError, OSError)
THRESHOLD_CHOICES = ("calibrated", "otsu", "fork", "fixed")
FORK_FIELDS = ("map_kind", "threshold", "min_area", "largest_only", "smooth_sigma", "open_close")  # what 'fork' sets
GIF_MAX_FRAMES = 300  # the app's GIF export keeps every k-th frame beyond this (~125 KB and 0.25 s a frame at 240 px)
SLIDER_RANGE = {"error": (1e-4, 1.0), "ssim": (1e-3, 1.0), "memory": (1e-5, 4.0)}  # log-slider bounds per map kind


@dataclass
class Session:
    """One loaded video: its source, the model's result, and ground truth when the dataset has it."""

    source: FrameSource
    base: LocalizeResult  # as computed by localize()
    result: LocalizeResult  # under the current settings
    masks: np.ndarray | None = None  # (T, H, W) bool ground truth


def list_test_videos(dataset_root: str | Path) -> list[str]:
    """Names of a dataset's test videos, naturally sorted."""
    return [v.name for v in list_videos(split_dir(dataset_root, "testing"))]


def open_session(video: str | Path | FrameSource, model: MNAD, items: torch.Tensor | None,
                 cfg: LocalizeConfig, normal: NormalReference | None = None, masks_root: str | Path | None = None,
                 normal_fraction: float = 0.25, fps: float | None = None) -> Session:
    """Localize a video; without ``normal``, its first ``normal_fraction`` of frames calibrate the thresholds.

    ``fps`` is the footage's frame rate for the exports and times (None: the file's, else 25).
    """
    src = video if isinstance(video, FrameSource) else open_source(video)
    t = model.cfg.t_length
    need = t + (normal is None)  # calibrating on the video's own frames takes two scored frames
    if len(src) < need:
        raise LocalizeError(f"{src.path} has {len(src)} frame(s); this model needs at least {need}: a clip of "
                            f"t_length={t} frames scores one" + ("" if normal else ", and calibrating on the video's "
                                                                  "own frames takes two scored frames"))
    masks = load_masks(masks_root, src) if masks_root is not None else None  # before the model runs: masks fail fast
    if normal is None:
        normal = fit_normal(model, items, leading_frames(src, t, normal_fraction), cfg)
    res = localize(src, model, items, cfg, normal=normal, progress=False, fps=fps)
    return Session(src, res, res, masks)


def save_upload(name: str, content: bytes | memoryview, folder: str | Path) -> Path:
    """Write an uploaded file under folder (name reduced to its base name) and return its path."""
    safe = Path(str(name)).name or "upload.mp4"
    data = bytes(content)
    if not data:
        raise DataError(f"the uploaded file {safe!r} is empty")
    path = Path(folder) / safe
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def settings(session: Session, map_kind: MapKind = "ssim", threshold: str = "calibrated", value: float = 0.1,
             min_area: int | None = None, alpha: float = 0.6, largest_only: bool = False) -> LocalizeResult:
    """Re-threshold the session's result: threshold is a mode, or 'fixed' to use ``value``.

    'fork' is the fork's whole mode, as in the metrics table (``localize_eval.FORK``): the unsmoothed
    1 - SSIM map, SSIM * 255 < 230, no opening or closing, the largest region only, of any area.
    """
    if map_kind not in VALID_RANGE:
        raise LocalizeError(f"map_kind must be one of {sorted(VALID_RANGE)}, got {map_kind!r}")
    if threshold == "fixed":
        lo, hi = VALID_RANGE[map_kind]
        if not lo <= value <= hi:
            raise LocalizeError(f"threshold {value} is outside the {map_kind} map's range [{lo}, {hi}]")
    thr: float | str = float(value) if threshold == "fixed" else threshold
    base = session.base.cfg
    if thr == "fork":
        cfg = dataclasses.replace(base, alpha=float(alpha), **{k: getattr(FORK, k) for k in FORK_FIELDS})
    else:
        cfg = dataclasses.replace(base, map_kind=map_kind, threshold=thr, min_area=min_area,
                                  alpha=float(alpha), largest_only=bool(largest_only))
    session.result = relocalize(session.base, cfg)
    return session.result


def frame_view(session: Session, frame: int, height: int = 240) -> dict[str, np.ndarray]:
    """RGB panels of one video frame: 'frame' (boxes; GT green), 'prediction', 'heat'."""
    res = session.result
    frame = int(np.clip(frame, res.frames[0], res.frames[-1]))
    k = res.index(frame)
    gt = None if session.masks is None else mask_boxes(session.masks[frame])
    row = panels(res, k, session.source.read(frame), gt, height)
    w = row.shape[1] // 3
    return {name: np.ascontiguousarray(row[:, i * w:(i + 1) * w, ::-1]) for i, name in
            enumerate(("frame", "prediction", "heat"))}


def gt_flags(session: Session) -> np.ndarray | None:
    """Per video frame: True where the ground-truth mask has an anomalous pixel."""
    return None if session.masks is None else np.any(session.masks.reshape(len(session.masks), -1), axis=1)


def curve_png(session: Session, frame: int | None = None, dpi: int = 90) -> bytes:
    """PNG of the regularity curve with the current frame marked and the ground truth shaded."""
    import matplotlib.pyplot as plt

    fig = regularity_figure(session.result, frame, gt_flags(session))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def to_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 image."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise LocalizeError("could not encode the image as PNG")
    return buf.tobytes()


def export(session: Session, out_dir: str | Path, what: str, every: int = 1) -> Path:
    """Write 'mp4' or 'gif' (annotated panels), 'csv' or 'json' (boxes with scores); return the path."""
    out, stem = Path(out_dir), Path(session.result.source).stem or "video"
    out.mkdir(parents=True, exist_ok=True)
    if what in ("mp4", "gif"):
        return write_video(session.result, session.source, out / f"{stem}_annotated.{what}", session.masks,
                           height=240, every=every)
    if what in ("csv", "json"):
        path = out / f"{stem}_boxes.{what}"
        write_boxes(session.result, path if what == "json" else None, path if what == "csv" else None)
        return path
    raise LocalizeError(f"export kind must be mp4, gif, csv or json, got {what!r}")


def message(exc: BaseException | str, ok: bool = False) -> str:
    """HTML for the status line: an error in red, or a note."""
    text = html.escape(str(exc) if ok or isinstance(exc, str) else f"{type(exc).__name__}: {exc}")
    return f"<span style='color:{'#1a7f37' if ok else '#c62828'}'>{text}</span>"


class LocalizationApp:
    """The ipywidgets app; ``app.widget`` is the box to display. Exports and uploads go to ``out_dir``.

    Each upload is copied into a folder of its own under ``out_dir/uploads``, removed when it fails to
    load, when another video replaces it, or when Python exits, so a second upload of the same name
    never overwrites the video on show and uploads do not pile up.

    The controls start from ``cfg`` (map kind, threshold, minimum area, alpha, largest-only); ``video``
    names the test video shown first (default: the first); ``fps`` is the test videos' frame rate for
    the exported MP4/GIF and times (None: a video file's own, else 25; frame folders record none).
    """

    def __init__(self, checkpoint: str | Path, dataset_root: str | Path | None = None, out_dir: str | Path | None = None,
                 cfg: LocalizeConfig | None = None, size: tuple[int, int] | None = None, video: str = "",
                 fps: float | None = None) -> None:
        import ipywidgets as w

        self.out_dir = Path(out_dir) if out_dir else scratch_dir("localization")
        self.root, self._busy, self.fps = dataset_root, False, check_fps(fps)
        self._before_fork: tuple[Any, ...] | None = None  # the controls' values before 'fork' mode locked them
        self.cfg = cfg or LocalizeConfig()
        self.session: Session | None = None
        self.model: MNAD | None = None
        self.items: torch.Tensor | None = None
        self.normal: NormalReference | None = None
        self._upload: weakref.finalize | None = None  # removes the shown upload's folder
        names = list_test_videos(dataset_root) if dataset_root else []
        if video and video not in names:
            raise ConfigError(f"no test video {video!r} in {dataset_root}; its test videos are {names}")
        fixed = not isinstance(self.cfg.threshold, str)
        self.video = w.Dropdown(options=names, value=video or (names[0] if names else None), description="test video")
        self.upload = w.FileUpload(accept="video/*,.avi,.mp4,.mov,.mkv", multiple=False, description="upload")
        self.frame = w.IntSlider(0, 0, 1, description="frame", continuous_update=True)
        self.play = w.Play(interval=120, min=0, max=1)
        w.jslink((self.play, "value"), (self.frame, "value"))
        self.kind = w.ToggleButtons(options=["ssim", "error", "memory"], value=self.cfg.map_kind, description="map",
                                    style={"button_width": "80px"})
        self.mode = w.Dropdown(options=THRESHOLD_CHOICES, value="fixed" if fixed else self.cfg.threshold,
                               description="threshold")
        lo, hi = SLIDER_RANGE[self.cfg.map_kind]
        if fixed and not lo <= float(self.cfg.threshold) <= hi:
            raise ConfigError(f"threshold {self.cfg.threshold} is outside the app's range for the {self.cfg.map_kind} "
                              f"map, [{lo}, {hi}]")
        self.value = w.FloatLogSlider(float(self.cfg.threshold) if fixed else 0.1, base=10, min=np.log10(lo),
                                      max=np.log10(hi), step=0.05, description="value", disabled=not fixed,
                                      continuous_update=False)
        self.area = w.IntSlider(0, 0, 2000, step=1, description="min area", continuous_update=False)
        self.alpha = w.FloatSlider(self.cfg.alpha, min=0, max=1, step=0.05, description="alpha", continuous_update=False)
        self.largest = w.Checkbox(self.cfg.largest_only, description="largest region only")
        self.images = {k: w.Image(format="png", layout=w.Layout(width="32%")) for k in ("frame", "prediction", "heat")}
        self.curve = w.Image(format="png", layout=w.Layout(width="96%"))
        self.status = w.HTML()
        buttons = [w.Button(description=f"export {k.upper()}") for k in ("mp4", "gif", "csv", "json")]
        for b, k in zip(buttons, ("mp4", "gif", "csv", "json")):
            b.on_click(lambda _, k=k: self._guard(self._export, k))
        self.video.observe(lambda c: self._guard(self._load_video, c["new"]), "value")
        self.upload.observe(lambda c: self._guard(self._load_upload, c["new"]), "value")
        self.frame.observe(lambda c: self._guard(self._draw), "value")
        for ctl in (self.kind, self.mode, self.value, self.area, self.alpha, self.largest):
            ctl.observe(lambda c: self._guard(self._apply), "value")
        titles = [w.HTML(f"<b>{t}</b>", layout=w.Layout(width="32%")) for t in
                  ("frame, boxes (ground truth green)", "prediction", "heat map")]
        self.widget = w.VBox([
            w.HBox([self.video, self.upload]), w.HBox([self.play, self.frame]),
            w.HBox([self.kind, self.mode, self.value]), w.HBox([self.area, self.alpha, self.largest]),
            w.HBox(titles), w.HBox(list(self.images.values())), self.curve, w.HBox(buttons), self.status])
        self._guard(self._load_model, checkpoint, size)
        if self.model is not None and names:
            self._guard(self._load_video, self.video.value)

    def _guard(self, fn: Any, *args: Any) -> None:
        """Run a callback (not while the app updates its own controls); bad input becomes a red message.

        Any other exception is a bug: it is shown in the status line too, then raised again, because
        ipywidgets logs a slider's or upload's callback error to the kernel log only, out of the user's sight.
        """
        if self._busy:
            return
        self._busy = True
        try:
            fn(*args)
        except INPUT_ERRORS as exc:
            self.status.value = message(exc)
        except Exception as exc:
            self.status.value = message(f"unexpected {type(exc).__name__}: {exc} (a bug in mnadlib, please report it; "
                                        "the traceback is in the kernel's log)")
            raise
        finally:
            self._busy = False

    def _load_model(self, checkpoint: str | Path, size: tuple[int, int] | None) -> None:
        """Load the checkpoint (refusing another size) and calibrate on the dataset's training split."""
        model, items, s = load_model(checkpoint, size, self.cfg.device)  # the app's own model: on cfg's device
        if items is None:  # no memory, no memory map to offer
            if self.cfg.map_kind == "memory":
                raise LocalizeError(f"map kind 'memory' needs a model with memory; {checkpoint} has none")
            self.kind.options = [k for k in self.kind.options if k != "memory"]
        self.model, self.items, self.cfg = model, items, dataclasses.replace(self.cfg, size=s)
        if self.root:
            self.normal = fit_normal(self.model, self.items, list_videos(split_dir(self.root, "training")), self.cfg)

    def _start(self, session: Session, note: str, upload: Path | None = None) -> None:
        """Show a new session from its first scored frame; the one it replaces lets go of its upload's folder."""
        if self.session is not None and isinstance(self.session.source, VideoFile):
            self.session.source.close()
        if self._upload is not None:
            self._upload()
        self.session = session
        self._upload = None if upload is None else weakref.finalize(self, shutil.rmtree, upload, True)
        lo, hi = int(session.base.frames[0]), int(session.base.frames[-1])
        for ctl in (self.frame, self.play):
            ctl.min, ctl.max = 0, max(hi, 1)
            ctl.value, ctl.min = lo, lo
        h, w = session.base.frame_size
        area = self.cfg.min_area if self.cfg.min_area is not None else round(1e-3 * h * w)
        self.area.max, self.area.value = max(10, h * w // 50, area), area
        self._apply()
        self.status.value = message(note, ok=True)

    def _load_video(self, name: str) -> None:
        """Localize a test video of the dataset."""
        if self.model is None or not name:
            return
        assert self.root is not None, "the list names test videos only of a dataset root"
        src = next((v for v in list_videos(split_dir(self.root, "testing")) if v.name == name), None)
        if src is None:
            raise DataError(f"test video {name} is no longer in {self.root}; choose another from the list")
        try:
            session = open_session(src, self.model, self.items, self.cfg, self.normal, self.root, fps=self.fps)
        except BaseException:  # the list names the video on show again, so that choosing this one retries it
            self.video.value = None if self.session is None or self._upload is not None else self.session.source.name
            raise
        self._start(session, f"loaded {name}")

    def _load_upload(self, value: Any) -> None:
        """Localize an uploaded video, calibrated on its own first quarter."""
        if self.model is None or not value:
            return
        item = value[0] if isinstance(value, (list, tuple)) else next(iter(value.values()))
        (self.out_dir / "uploads").mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="upload-", dir=self.out_dir / "uploads"))
        try:
            path = save_upload(item["name"], item["content"], folder)
            session = open_session(path, self.model, self.items, self.cfg)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        assert session.base.normal is not None, "open_session calibrates on the video's first frames"
        scored = len(session.base.normal.psnr)
        few = (f"; only {scored} scored frames, so the thresholds are rough: upload a longer video"
               if scored < FEW_CALIBRATION_FRAMES else "")
        self._start(session, f"loaded upload {path.name}; thresholds calibrated on its first "
                             f"{scored + self.model.cfg.t_length - 1} frames, assumed normal{few}", folder)
        self.video.value = None  # so that choosing the test video shown before loads it again

    def _apply(self) -> None:
        """Settings changed: re-threshold and redraw."""
        if self.session is None:
            return
        self._fork_controls(self.mode.value == "fork")
        lo, hi = SLIDER_RANGE[self.kind.value]
        self.value.min, self.value.max = np.log10(lo), np.log10(hi)
        self.value.disabled = self.mode.value != "fixed"
        settings(self.session, self.kind.value, self.mode.value, self.value.value, self.area.value,
                 self.alpha.value, self.largest.value)
        self.status.value = ""
        self._draw()

    def _fork_controls(self, fork: bool) -> None:
        """Show the fork's settings while its mode is on (controls locked), and give the earlier ones back after."""
        controls = (self.kind, self.area, self.largest)
        if fork:
            if self._before_fork is None:
                self._before_fork = tuple(c.value for c in controls)
            for c, v in zip(controls, (FORK.map_kind, FORK.min_area, FORK.largest_only)):
                c.value = v
        elif self._before_fork is not None:
            for c, v in zip(controls, self._before_fork):
                c.value = v
            self._before_fork = None
        for c in controls:
            c.disabled = fork

    def _draw(self) -> None:
        """Render the panels and the curve at the slider's frame."""
        if self.session is None:
            return
        view = frame_view(self.session, self.frame.value)
        for k, img in view.items():
            self.images[k].value = to_png(img)
        self.curve.value = curve_png(self.session, self.frame.value)

    def _export(self, what: str) -> None:
        """Export the current result and say where it went; a GIF of a long video holds every k-th frame only."""
        if self.session is None:
            raise LocalizeError("load a video first")
        every = math.ceil(len(self.session.result.frames) / GIF_MAX_FRAMES) if what == "gif" else 1
        path = export(self.session, self.out_dir, what, every)
        self.status.value = message(f"wrote {path}" + (f" (one scored frame in {every})" if every > 1 else ""), ok=True)
