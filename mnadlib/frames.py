"""Reading videos frame by frame: folders of image frames and video files, behind one interface.

``FrameSource.read(i)`` gives frame i as BGR uint8 like ``cv2.imread``, checks that every frame has
frame 0's size, and raises ``DataError`` naming the file for a missing, empty or corrupt input.
Frames are ordered by natural sort of their names, never by parsing numbers out of them.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
OTHER_IMAGE_EXTS = (".gif", ".apng", ".avif", ".heic", ".heif", ".jxl", ".jp2", ".ppm", ".pgm", ".pnm", ".tga", ".exr")
# images that OpenCV reads on some builds only, or only their first frame (an animated GIF): refused, never skipped
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm")


JPEG_EXTS = (".jpg", ".jpeg")
STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn and SOI carry no length
EXIF_ORIENTATION = 0x0112  # the EXIF tag that cv2.imread applies to a JPEG: 5-8 turn it a quarter, swapping W and H


def jpeg_cut_short(data: bytes) -> bool:
    """Whether JPEG bytes lack an end-of-image marker after their first scan: libjpeg decodes a truncated file silently.

    The header's segments are walked by their lengths, so an EXIF thumbnail (a JPEG inside APP1)
    is skipped; entropy-coded data never holds FF D9, and bytes after the image's end (a camera's
    trailer) do not matter.
    """
    i = 2  # after SOI
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xDA:  # start of the first scan
            return data.find(b"\xff\xd9", i + 2) < 0
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in STANDALONE_MARKERS:
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return True


class DataError(ValueError):
    """Input data is missing or malformed; the message names the path and what to do."""


class TruncatedVideoWarning(UserWarning):
    """A video file decodes to fewer frames than its header announces (often a cut-short copy)."""


def natural_key(path_or_name: str | os.PathLike) -> tuple:
    """Sort key on the name only, numbers compared as numbers: "2.jpg" before "10.jpg"."""
    name = Path(path_or_name).name
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)) + (name,)


def media_files(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    """Visible files in ``folder`` with one of ``exts`` (any case), naturally sorted; a broken link to one is an error, not a gap."""
    found = [p for p in folder.iterdir() if not p.name.startswith(".") and p.suffix.lower() in exts]
    check_links(found)
    return sorted((p for p in found if p.is_file()), key=natural_key)


def check_links(paths: list[Path]) -> None:
    """Refuse a symbolic link whose target is gone, which would otherwise drop a frame or a video without a word."""
    broken = [p for p in paths if p.is_symlink() and not p.exists()]
    if broken:
        raise DataError(f"{broken[0]} is a symbolic link to {os.readlink(broken[0])}, which does not exist"
                        + (f" (and {len(broken) - 1} more in {broken[0].parent})" if len(broken) > 1 else "")
                        + "; mount or copy its target, or remove the link")


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
            raise self._size_error(i, img.shape[:2])
        return img

    def _size_error(self, i: int, size: tuple[int, int]) -> DataError:
        """The error for frame i of (H, W) ``size``, not frame 0's."""
        return DataError(f"{self._where(i)} is {size[1]}x{size[0]} but frame 0 is {self.frame_size[1]}x"
                         f"{self.frame_size[0]} (WxH): all frames of a video must have one size; re-extract or "
                         "resize this video's frames")

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
        other = media_files(path, OTHER_IMAGE_EXTS)
        if other:
            ext, more = other[0].suffix, f" (and {len(other) - 1} more)" if len(other) > 1 else ""
            raise DataError(f"{other[0]}{more} is a {ext} image, which mnadlib does not read as a frame (frames are "
                            f"{', '.join(IMAGE_EXTS)}): convert such frames to PNG (e.g. mogrify -format png *{ext}) "
                            "and remove the originals; an animated GIF is a video: ffmpeg -i IN.gif OUT.mp4")
        self.files = media_files(path, IMAGE_EXTS)
        if not self.files:
            subdirs = sorted(p.name for p in path.iterdir() if p.is_dir())
            videos = media_files(path, VIDEO_EXTS)
            splits = [d for d in subdirs if d in ("training", "testing")]
            hint = (f" It holds videos ({videos[0].name}, ...): give one of them." if videos else
                    f" It is a dataset folder (it holds {' and '.join(splits)}): give one video's folder in it, "
                    f"e.g. {path / splits[-1] / 'frames'}/<video>." if splits else
                    f" It holds folders {subdirs[:3]}: give one video's folder, or the split folder that holds "
                    "them (a dataset's training/frames or testing/frames)." if subdirs else "")
            raise DataError(f"video folder {path} holds no frames (expected files ending in "
                            f"{', '.join(IMAGE_EXTS)}); remove it or extract its frames.{hint}")
        patterns: dict[tuple, list[Path]] = {}
        for f in self.files:
            patterns.setdefault(natural_key(f.stem)[:-1:2], []).append(f)  # the name's text around its numbers
        if len(patterns) > 1:
            usual, *odd = sorted(patterns.values(), key=len, reverse=True)
            raise DataError(f"{odd[0][0].name} in {path} is not named like its other frames ({usual[0].name}, "
                            f"{len(usual)} of them): a copy such as '001 (1).jpg' or another kind of image would "
                            "be read as an extra frame; remove such files, or name all frames alike")
        for a, b in zip(self.files, self.files[1:]):
            if natural_key(a.stem)[:-1] == natural_key(b.stem)[:-1]:
                raise DataError(f"{a.name} and {b.name} in {path} are the same frame number (frames extracted twice, "
                                "or in two formats?): keep one of each, or the video would show every such frame twice")

    def __len__(self) -> int:
        return len(self.files)

    def check_sizes(self) -> None:
        """Check every frame file's size from its image header (no decoding), against frame 0's."""
        for i, f in enumerate(self.files):
            try:
                with Image.open(f) as im:
                    w, h = im.size
                    if f.suffix.lower() in JPEG_EXTS and im.getexif().get(EXIF_ORIENTATION) in (5, 6, 7, 8):
                        w, h = h, w
            except OSError as exc:  # PIL's UnidentifiedImageError is one
                raise DataError(f"frame file {f} is unreadable or corrupt ({exc}); re-extract this video's frames") from exc
            if (h, w) != self.frame_size:
                raise self._size_error(i, (h, w))

    def _where(self, i: int) -> str:
        return f"frame file {self.files[i]}"

    def _decode(self, i: int) -> np.ndarray:
        f = self.files[i]
        data = f.read_bytes()  # read once: checked for a cut-short end (a JPEG), then decoded
        if f.suffix.lower() in JPEG_EXTS and data[:2] == b"\xff\xd8" and jpeg_cut_short(data):
            raise DataError(f"frame file {f} is cut short (no end-of-image marker after its scans; OpenCV "
                            "would fill the missing rows with grey): re-extract or copy this video's frames again")
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if img is None:
            raise DataError(f"cannot read image {f} ({len(data)} bytes): the file is empty "
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
            header = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            if header > 0:
                cap.set(cv2.CAP_PROP_POS_FRAMES, header - 1)
                if cap.grab() and not cap.grab():
                    return header
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
        if n < header:
            warnings.warn(f"video {self.path}: its header says {header} frames but only the first {n} decode, "
                          f"so only those {n} are used; if the file was cut short (an interrupted copy or "
                          "download), copy it again", TruncatedVideoWarning, stacklevel=2)
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
    if path.is_file() and path.suffix.lower() in IMAGE_EXTS + OTHER_IMAGE_EXTS:
        raise DataError(f"{path} is an image, not a video: give a video file ({', '.join(VIDEO_EXTS)}) or the folder "
                        "of a video's frames" + (" (an animated GIF converts with ffmpeg -i IN.gif OUT.mp4)"
                                                 if path.suffix.lower() == ".gif" else ""))
    if path.is_file():
        raise DataError(f"{path} is neither a frame folder nor a video file "
                        f"(expected one of {', '.join(VIDEO_EXTS)})")
    raise DataError(f"video {path} does not exist; check the path")


def move_into_place(moves: list[tuple[Path, Path]], backup_dir: Path) -> None:
    """Rename each (new, place) pair into place, keeping what was there in ``backup_dir`` until all have moved.

    A failure part way puts every earlier file or folder back where it was, so nothing is lost;
    ``backup_dir`` (on the same file system, so every rename is atomic) is the caller's to delete.
    """
    backups = [(backup_dir / f"replaced-{i}", place) for i, (_, place) in enumerate(moves)]
    placed: list[tuple[Path, Path]] = []
    try:
        for backup, place in backups:
            if place.exists() or place.is_symlink():
                place.rename(backup)
        for new, place in moves:
            new.rename(place)
            placed.append((new, place))
    except BaseException:
        for new, place in placed:
            place.rename(new)
        for backup, place in backups:
            if backup.exists() or backup.is_symlink():
                backup.rename(place)
        raise


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
        backup = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        try:
            move_into_place([(tmp, out)], backup)
        finally:
            shutil.rmtree(backup, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(video)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary name beside ``path`` for writers that need a file name (OpenCV, imageio), renamed over
    ``path`` when the block succeeds and removed when it fails, so an earlier file is never left half-replaced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a folder of its own, so two writers of one path never share a file, and the writer creates the file with
    # the umask's permissions; the name kept: writers choose the format by its suffix
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield folder / path.name
        (folder / path.name).replace(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def frames_to_video(frames_dir_or_source: str | os.PathLike | FrameSource, out_path: str | os.PathLike,
                    fps: float = 25.0) -> Path:
    """Write a video as ``.mp4`` (mp4v) or ``.avi`` (MJPG), chosen by suffix, atomically."""
    video = (frames_dir_or_source if isinstance(frames_dir_or_source, FrameSource)
             else open_source(frames_dir_or_source))
    out = Path(out_path)
    fourcc = {".mp4": "mp4v", ".avi": "MJPG"}.get(out.suffix.lower())
    if fourcc is None:
        raise DataError(f"cannot write {out}: use a .mp4 (mp4v) or .avi (MJPG) file name")
    h, w = video.frame_size
    with atomic_path(out) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*fourcc), float(fps), (w, h))
        try:
            if not writer.isOpened():
                raise DataError(f"OpenCV cannot write {out} with codec {fourcc}; try the other suffix")
            for i in range(len(video)):
                writer.write(video.read(i))
        finally:
            writer.release()
    return out
