"""Video anomaly datasets: split folders, clips, frame labels, pixel masks, layout checks.

Reproduces the authors' ``model/utils.py``: ``np_load_frame`` (``load_frame``: cv2 BGR, bilinear
resize, ``x / 127.5 - 1``) and ``DataLoader`` (``ClipDataset``: every start frame with
``t_length`` frames left, channels frame-major), and reads their ``frame_labels_<ds>.npy``.
Unlike the authors, frames are indexed by natural sort order, never by parsing file names, and
video files are read directly with OpenCV (:mod:`mnadlib.frames`). Layouts understood::

    ROOT/ped2/training/frames/01/000.jpg ...     frames (Liu et al., CVPR 2018 release)
    ROOT/ped2/testing/frames/01/000.jpg ...
    ROOT/ped2/testing/masks/01/000.png ...       optional pixel masks, nonzero = anomalous
    ROOT/frame_labels_ped2.npy                   (1, N) frame labels, 1 = anomalous
    ROOT/shanghai/training/videos/01_001.avi     video files, anywhere frames are accepted
    ROOT/shanghai/testing/test_pixel_mask/01_0014.npy   (T, H, W) pixel masks
    CUHK_Avenue/testing_videos/01.avi, CUHK_Avenue/ground_truth_demo/testing_label_mask/1_label.mat
    UCSDped2/Train/Train001/001.tif, UCSDped2/Test/Test001/001.tif, Test001_gt/001.bmp
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .frames import (IMAGE_EXTS, JPEG_EXTS, OTHER_IMAGE_EXTS, VIDEO_EXTS, DataError, FrameFolder, FrameSource, check_links,
                     media_files, natural_key, open_source)

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


def list_videos(path: str | os.PathLike) -> list[FrameSource]:
    """Videos in a split folder (sub-folders of frames and/or video files), naturally sorted.

    Also accepts the UCSD release folder (``Test/Test001``; ``Test001_gt`` masks are skipped),
    a single video file, or a single folder of frames.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist; check the path of the video, video folder or dataset")
    if path.is_file():
        return [open_source(path)]
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    check_links([p for p in entries if p.suffix.lower() in ("", *VIDEO_EXTS)])  # a video's folder or file
    dirs = [p for p in entries
            if p.is_dir() and not p.name.endswith("_gt") and p.name not in _ANNOTATION_DIRS]
    files = [p for p in entries if p.is_file() and p.suffix.lower() in VIDEO_EXTS]
    if not dirs and not files:
        if media_files(path, IMAGE_EXTS + OTHER_IMAGE_EXTS):  # a folder of frames (FrameFolder refuses other formats)
            return [FrameFolder(path)]
        raise DataError(f"{path} holds no videos: expected one sub-folder of frames per video "
                        f"or video files ({', '.join(VIDEO_EXTS)})")
    if not files and len(dirs) == 1 and dirs[0].name in ("frames", "videos"):  # a split folder, ROOT/ds/training
        return list_videos(dirs[0])
    splits = sorted(d.name for d in dirs if d.name in ("training", "testing"))
    if splits and not files:
        try:
            example = split_dir(path, splits[-1])
        except DataError:
            example = path / splits[-1]
        raise DataError(f"{path} is a dataset folder (it holds {' and '.join(splits)}), not a folder of videos; "
                        f"give the folder of one split's videos, e.g. {example}")
    videos = [open_source(p) for p in dirs + files]
    names = [v.name for v in videos]
    twins = sorted({n for n in names if names.count(n) > 1})
    if twins:
        raise DataError(f"{path} holds both a frame folder and a video file named {twins}; "
                        "keep only one of each")
    return sorted(videos, key=lambda v: natural_key(v.name))


def split_dir(dataset_root: str | os.PathLike, split: str) -> Path:
    """The folder holding one split's videos: ``split/frames``, ``split/videos``, ``split``, UCSD's or CUHK Avenue's."""
    root = Path(dataset_root)
    if split not in ("training", "testing"):
        raise DataError(f"split must be 'training' or 'testing', got {split!r}")
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist; pass ROOT/<dataset> (e.g. ROOT/ped2)")
    ucsd = root / ("Train" if split == "training" else "Test")
    tried = [root / split / "frames", root / split / "videos", root / split, ucsd, root / f"{split}_videos"]  # CUHK Avenue's
    for cand in tried:
        if cand.is_dir() and any(
            (p.is_dir() or p.suffix.lower() in VIDEO_EXTS) and not p.name.startswith(".")
            for p in cand.iterdir()
        ):
            return cand
    raise DataError(f"no {split} videos under {root}; tried " + ", ".join(map(str, tried))
                    + ". Lay the dataset out as ROOT/<dataset>/{training,testing}/frames/<video>/ (or video files "
                    "in ROOT/<dataset>/{training,testing}/videos/)")


FRAME_CACHE_MIB = 1024  # resized frames a ClipDataset keeps by default, so a frame is decoded once, not once per clip and epoch


def resized_frame(source: FrameSource, i: int, size: tuple[int, int]) -> np.ndarray:
    """Frame i decoded and resized to (H, W) as the authors do (cv2 bilinear), still uint8 (H, W, 3)."""
    h, w = size
    return cv2.resize(source.read(i), (w, h))


def to_model_space(img: np.ndarray) -> np.ndarray:
    """A uint8 frame as float32 in [-1, 1]: ``x / 127.5 - 1``, the authors' scaling."""
    return (img.astype(np.float32) / 127.5) - 1.0


def frames_mib(n_frames: int, size: tuple[int, int]) -> float:
    """MiB that ``n_frames`` resized (H, W, 3) uint8 frames take in the frame cache; one clip's (t_length) suffice to read clips in order."""
    return n_frames * size[0] * size[1] * 3 / 2**20


def load_frame(source: FrameSource, i: int, size: tuple[int, int]) -> np.ndarray:
    """Frame i as float32 (H, W, 3) in [-1, 1], exactly the authors' ``np_load_frame``."""
    return to_model_space(resized_frame(source, i, size))


class ClipDataset(Dataset):
    """Clips of ``t_length`` consecutive frames, as the authors' DataLoader with time_step=t_length-1.

    Each frame belongs to up to ``t_length`` clips and training reads every clip once an epoch,
    so resized uint8 frames are kept in a least-recently-used cache of ``cache_mib`` MiB (0: none).
    The clips are the same with or without it; a DataLoader worker holds its own copy.
    """

    def __init__(self, videos: list[FrameSource], t_length: int, size: tuple[int, int],
                 cache_mib: float = FRAME_CACHE_MIB) -> None:
        if t_length < 1:
            raise DataError(f"t_length must be >= 1, got {t_length}")
        if not cache_mib >= 0:
            raise DataError(f"cache_mib must be >= 0 (0: no frame cache), got {cache_mib}")
        if not videos:
            raise DataError("ClipDataset got no videos; check the split folder")
        short = [f"{v.name} ({len(v)} frames, {v.path})" for v in videos if len(v) < t_length]
        if short:
            raise DataError(f"videos shorter than t_length={t_length}: {', '.join(short)}; "
                            "remove them (a clip is t_length consecutive frames: for prediction, the inputs and the "
                            "frame predicted), or use a smaller t_length (ModelConfig.t_length)")
        self.videos, self.t_length, self.size = list(videos), t_length, (int(size[0]), int(size[1]))
        self.samples: list[tuple[int, int]] = [
            (v, s) for v, video in enumerate(self.videos) for s in range(len(video) - t_length + 1)
        ]
        self.cache_bytes = int(cache_mib * 2**20)
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cached = 0  # bytes held by _cache

    def __len__(self) -> int:
        return len(self.samples)

    def _frame(self, v: int, i: int) -> np.ndarray:
        """Frame i of video v resized (uint8), from the cache when it holds it."""
        key = (v, i)
        img = self._cache.get(key)
        if img is not None:
            self._cache.move_to_end(key)
            return img
        img = resized_frame(self.videos[v], i, self.size)
        if img.nbytes <= self.cache_bytes:
            self._cache[key] = img
            self._cached += img.nbytes
            while self._cached > self.cache_bytes:
                self._cached -= self._cache.popitem(last=False)[1].nbytes
        return img

    def __getitem__(self, k: int) -> torch.Tensor:
        """(t_length*3, H, W) float32; channels 0..2 are the first frame."""
        v, start = self.samples[k]
        frames = [to_model_space(self._frame(v, start + j)).transpose(2, 0, 1)  # (3, H, W)
                  for j in range(self.t_length)]
        return torch.from_numpy(np.ascontiguousarray(np.concatenate(frames, axis=0)))

    def video_of(self, k: int) -> tuple[str, int]:
        """(video name, index of the clip's last frame, the one that is scored)."""
        v, start = self.samples[k]
        return self.videos[v].name, start + self.t_length - 1


def _ordered(lengths: dict[str, int] | Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """(name, length) pairs in the natural order of names (the order of the label file)."""
    pairs = list(lengths.items()) if isinstance(lengths, dict) else list(lengths)
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
            same = [name for name, n in pairs if n == total - arr.size]
            hint = f" The difference equals the length of {same}: is that a video the labels do not cover?" if same else ""
        else:
            effect = (f"{arr.size - total} labels would be left over; if a video is missing "
                      "from the folder, every video after it would get another video's labels")
            hint = f" Is a test video of {arr.size - total} frames missing?"
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
    return split_labels(read_npy(path, "labels"), lengths, source=str(path))


def read_npy(path: Path, what: str) -> np.ndarray:
    """One array from a .npy file, or a DataError that names a .mat, .npz or text file for what it is."""
    with open(path, "rb") as fh:
        head = fh.read(128)
    if not head.startswith(b"\x93NUMPY"):
        kind = ("a MATLAB .mat file: numpy.save the array of scipy.io.loadmat(path) that you need"
                if head.startswith(b"MATLAB") else
                "a .npz archive: numpy.save the array of numpy.load(path) that you need" if head.startswith(b"PK")
                else "not a .npy file: numpy.save the array as one")
        raise DataError(f"{what} {path} is {kind}, and pass that .npy file")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"cannot read {what} {path} as a numeric .npy array ({err}); numpy.save one numeric array") from None


AVENUE_MASK_DIRS = ("ground_truth_demo/testing_label_mask", "testing_label_mask")  # under the dataset root


def read_mat_masks(path: Path) -> np.ndarray:
    """CUHK Avenue's ``<n>_label.mat`` as bool (T, H, W): its ``volLabel`` holds one (H, W) mask per frame.

    scipy's MATLAB reader builds arrays only (no code runs), so the release's files are read as they are.
    """
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except NotImplementedError:
        raise DataError(f"mask file {path} is a MATLAB v7.3 (HDF5) file, which scipy does not read: save its masks "
                        "as one (T, H, W) .npy per video (e.g. with h5py) and pass that") from None
    except (ValueError, TypeError, OSError, IndexError, EOFError) as err:  # a cut-short file fails with any of these
        raise DataError(f"cannot read mask file {path} as a MATLAB file ({err}); download it again") from None
    if "volLabel" not in mat:
        held = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"mask file {path} holds {held}, not CUHK Avenue's volLabel (one mask per frame); save the "
                        "masks as one (T, H, W) .npy per video and pass that")
    frames = [np.asarray(m) for m in np.asarray(mat["volLabel"], dtype=object).ravel()]
    if not frames or any(f.ndim != 2 or f.shape != frames[0].shape for f in frames):
        shapes = sorted({f.shape for f in frames})
        raise DataError(f"volLabel in {path} should hold one 2-D mask per frame, all of one size; got shapes {shapes}")
    return np.stack(frames) != 0


def _lossy(f: Path) -> bool:
    """Whether an image file is lossily compressed: a JPEG, or a WebP whose image chunk is VP8 (VP8L is lossless)."""
    if f.suffix.lower() in JPEG_EXTS:
        return True
    if f.suffix.lower() != ".webp":
        return False
    with open(f, "rb") as fh:
        data = fh.read(1 << 16)
    pos = 12  # after "RIFF", the size and "WEBP": chunks of a fourcc, a little-endian size and the data, padded to even
    while pos + 8 <= len(data):
        fourcc, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if fourcc in (b"VP8 ", b"VP8L"):
            return fourcc == b"VP8 "
        pos += 8 + size + (size & 1)
    return False


def _mask_stack(files: list[Path]) -> np.ndarray:
    """Image masks as bool (T, H, W), nonzero = anomalous; 16-bit masks keep their depth, so a 0/1 mask stays one.

    Lossy masks (JPEG, lossy WebP): compression leaves faint non-zero pixels around every region,
    which would grow it, so there a pixel is anomalous from half the video's brightest mask value up
    (at least 1); dim lossy masks (0/1 values) are distorted beyond repair, which a warning says.
    """
    masks = []
    for f in files:
        m = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)
        if m is None:
            raise DataError(f"cannot read mask image {f}; the file is empty or corrupt")
        masks.append(m)
    if len({m.shape for m in masks}) > 1:
        raise DataError(f"mask images in {files[0].parent} have different sizes")
    stack = np.stack(masks)
    if not any(_lossy(f) for f in files):
        return stack != 0
    peak = int(stack.max())
    if 0 < peak < 128:
        warnings.warn(f"the lossy (JPEG or WebP) masks in {files[0].parent} reach only {peak}: lossy compression blurs "
                      "masks of small values such as 0 and 1 (regions shrink or vanish); save them as PNG", stacklevel=3)
    return stack >= max(1, peak / 2)


def load_masks(dataset_root_or_mask_path: str | os.PathLike, video: FrameSource) -> np.ndarray | None:
    """Pixel ground truth of one test video as bool (T, H, W), or None when there is none."""
    root = Path(dataset_root_or_mask_path)
    if not root.exists():
        raise DataError(f"{root} does not exist; pass the dataset root or a mask folder or .npy file")
    name = video.name
    mask_roots = [root / "testing" / "masks", root / "masks"] + ([root] if root.name == "masks" else [])
    npy_roots = [root / "testing" / "test_pixel_mask", root / "test_pixel_mask"]
    npy_roots += [root] if root.name == "test_pixel_mask" else []
    candidates = ([root] if root.suffix in (".npy", ".mat") else []) + [d / f"{name}.npy" for d in npy_roots]
    candidates += [d / name for d in mask_roots] + [video.path.parent / f"{name}_gt"]
    if name.isdigit():  # CUHK Avenue's release: testing_videos/01.avi has ground_truth_demo/testing_label_mask/1_label.mat
        candidates += [root / d / f"{int(name)}_label.mat" for d in AVENUE_MASK_DIRS]
    if root.is_dir() and media_files(root, IMAGE_EXTS + OTHER_IMAGE_EXTS):
        candidates.insert(0, root)
    found = next((c for c in candidates if c.is_file() or (c.is_dir() and media_files(c, IMAGE_EXTS + OTHER_IMAGE_EXTS))),
                 None)
    if found is None:
        return None
    other = media_files(found, OTHER_IMAGE_EXTS) if found.is_dir() else []
    if other:
        raise DataError(f"{other[0]} is a {other[0].suffix} image, which mnadlib does not read as a mask (masks are "
                        f"{', '.join(IMAGE_EXTS)} or one .npy per video): convert the masks of {found} to PNG "
                        f"(e.g. mogrify -format png *{other[0].suffix}) and remove the originals")
    if found.suffix == ".mat":
        masks = read_mat_masks(found)
    elif found.is_file():
        masks = read_npy(found, "mask file")
        if masks.ndim != 3:
            raise DataError(f"mask file {found} has shape {masks.shape}; expected (T, H, W)")
        masks = masks != 0
    else:
        masks = _mask_stack(media_files(found, IMAGE_EXTS))
    if len(masks) != len(video):
        raise DataError(f"{found} holds {len(masks)} masks but video {name} ({video.path}) has "
                        f"{len(video)} frames; masks must match frames one to one")
    if masks.shape[1:] != video.frame_size:
        raise DataError(f"masks in {found} are {masks.shape[1:]} but frames of {name} are "
                        f"{video.frame_size} (H, W); masks must be at the original frame size")
    return masks


def validate_video(video: FrameSource, full: bool = False, headers: bool = False) -> int:
    """Check a video cheaply (no empty frame files, first and last frames readable) or fully;
    ``headers`` also checks every frame file's size from its image header, which costs no decoding."""
    if isinstance(video, FrameFolder):
        empty = [f for f in video.files if f.stat().st_size == 0]
        if empty:
            raise DataError(f"{len(empty)} empty (0-byte) frame files in {video.path}, e.g. "
                            f"{empty[0]}; re-extract this video's frames")
        if headers:
            video.check_sizes()
    for i in range(len(video)) if full else sorted({0, len(video) - 1}):
        video.read(i)
    return len(video)


def validate_layout(dataset_root: str | os.PathLike, labels_path: str | os.PathLike | None = None,
                    full: bool = False, headers: bool = False) -> dict:
    """Check both splits (and the label count) and summarise them; known-dataset mismatches are warnings.

    ``full`` decodes every frame; ``headers`` reads every frame file's header for its size (cheap).
    """
    root = Path(dataset_root)
    summary: dict[str, Any] = {"warnings": []}
    sizes: list[tuple[int, int]] = []
    for split in ("training", "testing"):
        videos = list_videos(split_dir(root, split))
        lengths = {v.name: validate_video(v, full, headers) for v in videos}
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
