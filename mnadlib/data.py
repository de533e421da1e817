"""Video anomaly data: frame folders and video files, clips, frame labels, pixel masks, checks.

Reproduces the authors' ``model/utils.py``: ``np_load_frame`` (``load_frame``: cv2 BGR, bilinear
resize, ``x / 127.5 - 1``) and ``DataLoader`` (``ClipDataset``: every start frame with
``t_length`` frames left, channels frame-major), and reads their ``frame_labels_<ds>.npy``.
Unlike the authors, frames are indexed by natural sort order, never by parsing file names, and
video files are read directly with OpenCV. Layouts understood::

    ROOT/ped2/training/frames/01/000.jpg ...     frames (Liu et al., CVPR 2018 release)
    ROOT/ped2/testing/frames/01/000.jpg ...
    ROOT/ped2/testing/masks/01/000.png ...       optional pixel masks, nonzero = anomalous
    ROOT/frame_labels_ped2.npy                   (1, N) frame labels, 1 = anomalous
    ROOT/shanghai/training/videos/01_001.avi     video files, anywhere frames are accepted
    ROOT/shanghai/testing/test_pixel_mask/01_0014.npy   (T, H, W) pixel masks
    UCSDped2/Train/Train001/001.tif, UCSDped2/Test/Test001/001.tif, Test001_gt/001.bmp
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm")

# Published facts of the real datasets; validate_layout reports departures as warnings.
KNOWN_DATASETS: dict[str, dict] = {
    "ped2": {
        "train_videos": 16, "test_videos": 12, "frame_size": (240, 360),
        "train_frames": 2550, "test_frames": 2010,
        "test_lengths": [180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180],
    },
    "avenue": {
        "train_videos": 16, "test_videos": 21, "frame_size": (360, 640),
        "train_frames": 15328, "test_frames": 15324,
        "test_lengths": [1439, 1211, 923, 947, 1007, 1283, 605, 36, 1175, 841, 472,
                         1271, 549, 507, 1001, 740, 426, 294, 248, 273, 76],
    },
    "shanghai": {  # training ships as .avi; train_frames counts them once extracted
        "train_videos": 330, "test_videos": 107, "frame_size": (480, 856),
        "train_frames": 274515, "test_frames": 40791, "train_format": "avi",
    },
}
KNOWN_DATASETS["shanghaitech"] = KNOWN_DATASETS["shanghai"]
_RELEASE_PREFIXES = ("ucsd", "cuhk")  # UCSDped2, CUHK_Avenue: the names the datasets ship under


def known_dataset(name: str) -> str | None:
    """The paper's key (ped2, avenue, shanghai) of a dataset folder name such as UCSDped2 or ShanghaiTech, else None."""
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    for prefix in _RELEASE_PREFIXES:
        key = key.removeprefix(prefix)
    key = "shanghai" if key == "shanghaitech" else key
    return key if key in KNOWN_DATASETS else None
_ANNOTATION_DIRS = {"masks", "test_pixel_mask", "test_frame_mask"}  # beside videos, never videos


class DataError(ValueError):
    """Input data is missing or malformed; the message names the path and what to do."""


def natural_key(path_or_name: str | os.PathLike) -> tuple:
    """Sort key on the name only, numbers compared as numbers: "2.jpg" before "10.jpg"."""
    name = Path(path_or_name).name
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)) + (name,)


def _files(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    """Visible files in ``folder`` with one of ``exts`` (any case), naturally sorted."""
    found = [p for p in folder.iterdir()
             if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts]
    return sorted(found, key=natural_key)


class FrameSource:
    """One video, read frame by frame as BGR uint8 (H, W, 3), like ``cv2.imread``."""

    name: str
    path: Path

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name
        self._size: tuple[int, int] | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, frames={len(self)})"

    def _decode(self, i: int) -> np.ndarray:
        """Frame i as decoded, before the size check."""
        raise NotImplementedError

    def _where(self, i: int) -> str:
        """Human-readable location of frame i, for error messages."""
        return f"frame {i} of {self.path}"

    def read(self, i: int) -> np.ndarray:
        """Frame i in natural order; every frame must have frame 0's size."""
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} out of range for {self.path} ({len(self)} frames)")
        img = self._decode(i)
        if self._size is None and i == 0:
            self._size = (img.shape[0], img.shape[1])
        if img.shape[:2] != self.frame_size:
            raise DataError(
                f"{self._where(i)} is {img.shape[1]}x{img.shape[0]} but frame 0 is "
                f"{self.frame_size[1]}x{self.frame_size[0]} (WxH): all frames of a video must "
                "have one size; re-extract or resize this video's frames"
            )
        return img

    @property
    def frame_size(self) -> tuple[int, int]:
        """(H, W) of the original frames, taken from frame 0."""
        if self._size is None:
            self.read(0)
        return self._size  # type: ignore[return-value]


class FrameFolder(FrameSource):
    """A folder of image frames (``01/000.jpg``, ``Test001/001.tif``, ...)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, path.name)
        self.files = _files(path, IMAGE_EXTS)
        if not self.files:
            subdirs = sorted(p.name for p in path.iterdir() if p.is_dir())
            hint = (f" It holds folders {subdirs[:3]}: pass a split folder to list_videos, "
                    "or the dataset root to split_dir." if subdirs else "")
            raise DataError(f"video folder {path} holds no frames (expected files ending in "
                            f"{', '.join(IMAGE_EXTS)}); remove it or extract its frames.{hint}")

    def __len__(self) -> int:
        return len(self.files)

    def _where(self, i: int) -> str:
        return f"frame file {self.files[i]}"

    def _decode(self, i: int) -> np.ndarray:
        img = cv2.imread(str(self.files[i]), cv2.IMREAD_COLOR)
        if img is None:
            size = self.files[i].stat().st_size
            raise DataError(f"cannot read image {self.files[i]} ({size} bytes): the file is empty "
                            "or corrupt; re-extract it or remove it from the video folder")
        return img


class VideoFile(FrameSource):
    """A video file read with OpenCV; the capture opens lazily in each process (DataLoader-safe)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, path.stem)
        self._cap: cv2.VideoCapture | None = None
        self._next = 0
        self._len = self._count()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_cap=None, _next=0)
        return state

    def close(self) -> None:
        """Release the capture; the next read reopens it."""
        if self._cap is not None:
            self._cap.release()
        self._cap, self._next = None, 0

    def _open(self) -> cv2.VideoCapture:
        """A fresh capture; DataError when OpenCV cannot open the file."""
        if self.path.stat().st_size == 0:
            raise DataError(f"video file {self.path} is empty (0 bytes); copy or download it again")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise DataError(f"OpenCV cannot open video {self.path}: the file is corrupt or its "
                            "codec is unsupported; re-encode it (e.g. ffmpeg -i IN -c:v mjpeg OUT.avi) "
                            "or extract its frames with extract_frames")
        return cap

    def _count(self) -> int:
        """Frame count: CAP_PROP_FRAME_COUNT if seeking to its last frame confirms it, else decode all."""
        cap = self._open()
        try:
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            if n > 0:
                cap.set(cv2.CAP_PROP_POS_FRAMES, n - 1)
                if cap.grab() and not cap.grab():
                    return n
                cap.release()
                cap = self._open()
            n = 0
            while cap.grab():
                n += 1
        finally:
            cap.release()
        if n == 0:
            raise DataError(f"video {self.path} decodes to 0 frames: the file is empty or corrupt; "
                            "re-encode or replace it")
        return n

    def __len__(self) -> int:
        return self._len

    def _capture(self) -> cv2.VideoCapture:
        """The open capture, opened on first use in each process."""
        if self._cap is None:
            self._cap, self._next = self._open(), 0
            _OPEN_CAPTURES.add(self)
        return self._cap

    def _decode(self, i: int) -> np.ndarray:
        """Read on when i is next or a few frames ahead, else seek (reopen and skip if the seek misses)."""
        cap = self._capture()
        if 0 < i - self._next <= 8:
            for _ in range(i - self._next):
                cap.grab()
        elif i != self._next:
            cap.set(cv2.CAP_PROP_POS_FRAMES, i)
            if int(cap.get(cv2.CAP_PROP_POS_FRAMES)) != i:
                self._cap = cap = self._open()
                for _ in range(i):
                    cap.grab()
        ok, img = cap.read()
        if not ok:
            self.close()
            raise DataError(f"cannot decode frame {i} of video {self.path} ({self._len} frames): "
                            "the file is truncated or corrupt; re-encode it or extract its frames")
        self._next = i + 1
        return img


_OPEN_CAPTURES: weakref.WeakSet[VideoFile] = weakref.WeakSet()


def _close_captures() -> None:
    """Release captures before fork: a child (DataLoader worker) that inherits an FFmpeg capture
    shares its file offset, and destroying it there hangs on decoder threads that were not forked."""
    for video in list(_OPEN_CAPTURES):
        video.close()
    _OPEN_CAPTURES.clear()


os.register_at_fork(before=_close_captures)


def open_source(path: str | os.PathLike) -> FrameSource:
    """A frame folder or a video file as a FrameSource."""
    path = Path(path)
    if path.is_dir():
        return FrameFolder(path)
    if path.is_file() and path.suffix.lower() in VIDEO_EXTS:
        return VideoFile(path)
    if path.is_file():
        raise DataError(f"{path} is neither a frame folder nor a video file "
                        f"(expected one of {', '.join(VIDEO_EXTS)})")
    raise DataError(f"video {path} does not exist; check the path")


def list_videos(path: str | os.PathLike) -> list[FrameSource]:
    """Videos in a split folder (sub-folders of frames and/or video files), naturally sorted.

    Also accepts the UCSD release folder (``Test/Test001``; ``Test001_gt`` masks are skipped),
    a single video file, or a single folder of frames.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"video folder {path} does not exist; check the dataset path")
    if path.is_file():
        return [open_source(path)]
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    dirs = [p for p in entries
            if p.is_dir() and not p.name.endswith("_gt") and p.name not in _ANNOTATION_DIRS]
    files = [p for p in entries if p.is_file() and p.suffix.lower() in VIDEO_EXTS]
    if not dirs and not files:
        if _files(path, IMAGE_EXTS):
            return [FrameFolder(path)]
        raise DataError(f"{path} holds no videos: expected one sub-folder of frames per video "
                        f"or video files ({', '.join(VIDEO_EXTS)})")
    videos = [open_source(p) for p in dirs + files]
    names = [v.name for v in videos]
    twins = sorted({n for n in names if names.count(n) > 1})
    if twins:
        raise DataError(f"{path} holds both a frame folder and a video file named {twins}; "
                        "keep only one of each")
    return sorted(videos, key=lambda v: natural_key(v.name))


def split_dir(dataset_root: str | os.PathLike, split: str) -> Path:
    """The folder holding one split's videos: ``split/frames``, ``split/videos``, ``split``, or UCSD's."""
    root = Path(dataset_root)
    if split not in ("training", "testing"):
        raise DataError(f"split must be 'training' or 'testing', got {split!r}")
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist; pass ROOT/<dataset> (e.g. ROOT/ped2)")
    ucsd = root / ("Train" if split == "training" else "Test")
    tried = [root / split / "frames", root / split / "videos", root / split, ucsd]
    for cand in tried:
        if cand.is_dir() and any(
            (p.is_dir() or p.suffix.lower() in VIDEO_EXTS) and not p.name.startswith(".")
            for p in cand.iterdir()
        ):
            return cand
    raise DataError(f"no {split} videos under {root}; tried " + ", ".join(map(str, tried))
                    + ". Lay the dataset out as ROOT/<dataset>/{training,testing}/frames/<video>/")


def load_frame(source: FrameSource, i: int, size: tuple[int, int]) -> np.ndarray:
    """Frame i as float32 (H, W, 3) in [-1, 1], exactly the authors' ``np_load_frame``."""
    h, w = size
    img = cv2.resize(source.read(i), (w, h))
    img = img.astype(np.float32)
    return (img / 127.5) - 1.0


class ClipDataset(Dataset):
    """Clips of ``t_length`` consecutive frames, as the authors' DataLoader with time_step=t_length-1."""

    def __init__(self, videos: list[FrameSource], t_length: int, size: tuple[int, int]) -> None:
        if t_length < 1:
            raise DataError(f"t_length must be >= 1, got {t_length}")
        if not videos:
            raise DataError("ClipDataset got no videos; check the split folder")
        short = [f"{v.name} ({len(v)} frames, {v.path})" for v in videos if len(v) < t_length]
        if short:
            raise DataError(f"videos shorter than t_length={t_length}: {', '.join(short)}; "
                            "remove them or use a smaller t_length")
        self.videos, self.t_length, self.size = list(videos), t_length, (int(size[0]), int(size[1]))
        self.samples: list[tuple[int, int]] = [
            (v, s) for v, video in enumerate(self.videos) for s in range(len(video) - t_length + 1)
        ]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, k: int) -> torch.Tensor:
        """(t_length*3, H, W) float32; channels 0..2 are the first frame."""
        v, start = self.samples[k]
        frames = [load_frame(self.videos[v], start + j, self.size).transpose(2, 0, 1)  # (3, H, W)
                  for j in range(self.t_length)]
        return torch.from_numpy(np.ascontiguousarray(np.concatenate(frames, axis=0)))

    def video_of(self, k: int) -> tuple[str, int]:
        """(video name, index of the clip's last frame, the one that is scored)."""
        v, start = self.samples[k]
        return self.videos[v].name, start + self.t_length - 1


def _ordered(lengths: dict[str, int] | Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """(name, length) pairs in the natural order of names (the order of the label file)."""
    pairs = list(lengths.items()) if isinstance(lengths, dict) else [tuple(p) for p in lengths]
    return sorted(((str(n), int(c)) for n, c in pairs), key=lambda p: natural_key(p[0]))


def split_labels(flat: np.ndarray, lengths: dict[str, int] | Iterable[tuple[str, int]],
                 source: str = "labels") -> dict[str, np.ndarray]:
    """Cut the authors' flat 0/1 frame labels ((1, N), (N,) or (N, 1)) into one array per video."""
    arr = np.asarray(flat)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise DataError(f"{source}: labels have shape {arr.shape}; expected (1, N), (N,) or (N, 1) "
                        "with N = all test frames in sorted video order")
    if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
        bad = np.setdiff1d(np.unique(arr), (0, 1))[:5] if arr.dtype.kind in "biuf" else arr.dtype
        raise DataError(f"{source}: labels must be 0 (normal) or 1 (anomalous), found {bad}")
    pairs = _ordered(lengths)
    ends = np.cumsum([n for _, n in pairs], dtype=np.int64)
    total = int(ends[-1]) if len(ends) else 0
    if arr.size != total:
        if arr.size < total:
            hit = [name for (name, _), end in zip(pairs, ends) if end > arr.size]
            effect = f"videos {hit} would get truncated or no labels"
        else:
            effect = (f"{arr.size - total} labels would be left over; if a video is missing "
                      "from the folder, every video after it would get another video's labels")
        same = [name for name, n in pairs if n == abs(arr.size - total)]
        hint = f" The difference equals the length of {same}." if same else ""
        raise DataError(f"{source}: {arr.size} labels but the test videos have {total} frames "
                        f"({dict(pairs)}); {effect}.{hint} Use the label file of this dataset and "
                        "make sure every test video is present and complete.")
    labels = arr.astype(np.int64)
    return {name: labels[end - n:end] for (name, n), end in zip(pairs, ends)}


def load_labels(path: str | os.PathLike,
                lengths: dict[str, int] | Iterable[tuple[str, int]]) -> dict[str, np.ndarray]:
    """Read a ``frame_labels_<ds>.npy`` and split it per test video (see ``split_labels``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"label file {path} does not exist; pass the authors' frame_labels_<ds>.npy")
    try:
        flat = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"cannot read labels {path} as a numeric .npy array ({err})") from None
    return split_labels(flat, lengths, source=str(path))


def _mask_stack(files: list[Path]) -> np.ndarray:
    """Image masks as bool (T, H, W), nonzero = anomalous."""
    masks = []
    for f in files:
        m = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        if m is None:
            raise DataError(f"cannot read mask image {f}; the file is empty or corrupt")
        masks.append(m != 0)
    if len({m.shape for m in masks}) > 1:
        raise DataError(f"mask images in {files[0].parent} have different sizes")
    return np.stack(masks)


def load_masks(dataset_root_or_mask_path: str | os.PathLike, video: FrameSource) -> np.ndarray | None:
    """Pixel ground truth of one test video as bool (T, H, W), or None when there is none."""
    root = Path(dataset_root_or_mask_path)
    if not root.exists():
        raise DataError(f"{root} does not exist; pass the dataset root or a mask folder or .npy file")
    name = video.name
    mask_roots = [root / "testing" / "masks", root / "masks"] + ([root] if root.name == "masks" else [])
    npy_roots = [root / "testing" / "test_pixel_mask", root / "test_pixel_mask"]
    npy_roots += [root] if root.name == "test_pixel_mask" else []
    candidates = ([root] if root.suffix == ".npy" else []) + [d / f"{name}.npy" for d in npy_roots]
    candidates += [d / name for d in mask_roots] + [video.path.parent / f"{name}_gt"]
    if root.is_dir() and _files(root, IMAGE_EXTS):
        candidates.insert(0, root)
    found = next((c for c in candidates if c.is_file() or (c.is_dir() and _files(c, IMAGE_EXTS))), None)
    if found is None:
        return None
    if found.is_file():
        masks = np.load(found, allow_pickle=False)
        if masks.ndim != 3:
            raise DataError(f"mask file {found} has shape {masks.shape}; expected (T, H, W)")
        masks = masks != 0
    else:
        masks = _mask_stack(_files(found, IMAGE_EXTS))
    if len(masks) != len(video):
        raise DataError(f"{found} holds {len(masks)} masks but video {name} ({video.path}) has "
                        f"{len(video)} frames; masks must match frames one to one")
    if masks.shape[1:] != video.frame_size:
        raise DataError(f"masks in {found} are {masks.shape[1:]} but frames of {name} are "
                        f"{video.frame_size} (H, W); masks must be at the original frame size")
    return masks


def validate_video(video: FrameSource, full: bool = False) -> int:
    """Check a video cheaply (no empty frame files, first and last frames readable) or fully."""
    if isinstance(video, FrameFolder):
        empty = [f for f in video.files if f.stat().st_size == 0]
        if empty:
            raise DataError(f"{len(empty)} empty (0-byte) frame files in {video.path}, e.g. "
                            f"{empty[0]}; re-extract this video's frames")
    for i in range(len(video)) if full else sorted({0, len(video) - 1}):
        video.read(i)
    return len(video)


def validate_layout(dataset_root: str | os.PathLike, labels_path: str | os.PathLike | None = None,
                    full: bool = False) -> dict:
    """Check both splits (and the label count) and summarise them; known-dataset mismatches are warnings."""
    root = Path(dataset_root)
    summary: dict[str, Any] = {"warnings": []}
    sizes: list[tuple[int, int]] = []
    for split in ("training", "testing"):
        videos = list_videos(split_dir(root, split))
        lengths = {v.name: validate_video(v, full) for v in videos}
        sizes += [v.frame_size for v in videos]
        summary[split] = {"videos": len(videos), "frames": sum(lengths.values()), "lengths": lengths}
    summary["frame_size"] = sizes[0]
    if len(set(sizes)) > 1:
        summary["warnings"].append(f"videos have different frame sizes (H, W): {sorted(set(sizes))}")
    if labels_path is not None:
        labels = load_labels(labels_path, summary["testing"]["lengths"])
        summary["labels"] = {"frames": sum(map(len, labels.values())),
                             "anomalous": int(sum(l.sum() for l in labels.values()))}
    published = known_dataset(root.name)
    if published:
        known = KNOWN_DATASETS[published]
        found = {"train_videos": summary["training"]["videos"], "test_videos": summary["testing"]["videos"],
                 "train_frames": summary["training"]["frames"], "test_frames": summary["testing"]["frames"],
                 "frame_size": summary["frame_size"],
                 "test_lengths": list(summary["testing"]["lengths"].values())}
        summary["warnings"] += [f"{root.name}: {key} is {found[key]}, the published dataset has {want}"
                                for key, want in known.items() if key in found and found[key] != want]
    return summary


def extract_frames(video_path: str | os.PathLike, out_dir: str | os.PathLike, ext: str = ".jpg",
                   overwrite: bool = False) -> int:
    """Decode a video file into ``out_dir/000000.jpg, ...`` atomically; returns the frame count."""
    video, out = open_source(video_path), Path(out_dir)
    if ext.lower() not in IMAGE_EXTS:
        raise DataError(f"cannot write frames as {ext!r}; use one of {', '.join(IMAGE_EXTS)}")
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists; delete it or pass overwrite=True")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for i in range(len(video)):
            target = tmp / f"{i:06d}{ext}"
            if not cv2.imwrite(str(target), video.read(i)):
                raise DataError(f"cannot write {target}; check the extension {ext!r} and free disk space")
        tmp.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(video)


def frames_to_video(frames_dir_or_source: str | os.PathLike | FrameSource, out_path: str | os.PathLike,
                    fps: float = 25.0) -> Path:
    """Write a video as ``.mp4`` (mp4v) or ``.avi`` (MJPG), chosen by suffix, atomically."""
    video = (frames_dir_or_source if isinstance(frames_dir_or_source, FrameSource)
             else open_source(frames_dir_or_source))
    out = Path(out_path)
    fourcc = {".mp4": "mp4v", ".avi": "MJPG"}.get(out.suffix.lower())
    if fourcc is None:
        raise DataError(f"cannot write {out}: use a .mp4 (mp4v) or .avi (MJPG) file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    h, w = video.frame_size
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h))
    try:
        if not writer.isOpened():
            raise DataError(f"OpenCV cannot write {out} with codec {fourcc}; try the other suffix")
        for i in range(len(video)):
            writer.write(video.read(i))
        writer.release()
        tmp.replace(out)
    finally:
        writer.release()
        tmp.unlink(missing_ok=True)
    return out
