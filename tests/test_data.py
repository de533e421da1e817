"""Tests of mnadlib.data on tiny generated frame folders and videos (no real dataset needed)."""

from __future__ import annotations

import io
import pickle
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mnadlib.data import (
    ClipDataset, KNOWN_DATASETS, frames_mib, known_dataset, list_videos, load_frame, load_labels, load_masks, split_dir,
    split_labels, validate_layout, validate_video,
)
from mnadlib.frames import (DataError, FrameSource, TruncatedVideoWarning, atomic_path, extract_frames, frames_to_video,
                            move_into_place, natural_key, open_source)

H, W = 24, 40


def frame(i: int, h: int = H, w: int = W) -> np.ndarray:
    """A distinct BGR frame: value encodes the frame index, plus a gradient."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (i * 17) % 256
    img[..., 1] = np.arange(w, dtype=np.uint8)[None, :] * 3
    img[..., 2] = np.arange(h, dtype=np.uint8)[:, None] * 5
    return img


def write_frames(folder: Path, n: int, names=None, ext: str = ".png", start: int = 0) -> Path:
    """Write n lossless frames named 000.png... (or the given names)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        name = names[k] if names else f"{k + start:03d}{ext}"
        assert cv2.imwrite(str(folder / name), frame(k))
    return folder


def write_video(path: Path, frames: list[np.ndarray], fourcc: str = "MJPG") -> Path:
    """Write frames as a video file with OpenCV."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def red(n: int) -> list[np.ndarray]:
    """n pure-red BGR frames (JPEG-friendly, checks that colours are not swapped)."""
    img = np.zeros((32, 48, 3), np.uint8)
    img[..., 2] = 230
    return [img.copy() for _ in range(n)]


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    """ROOT/toy with 2 training and 3 testing videos in the frames layout."""
    root = tmp_path / "toy"
    for split, lengths in (("training", [6, 7]), ("testing", [5, 6, 4])):
        for v, n in enumerate(lengths, 1):
            write_frames(root / split / "frames" / f"{v:02d}", n)
    return root


def test_natural_key_orders_unpadded_numbers():
    names = ["10.jpg", "2.jpg", "1.jpg", "Test10", "Test2"]
    assert sorted(names, key=natural_key) == ["1.jpg", "2.jpg", "10.jpg", "Test2", "Test10"]
    assert natural_key(Path("a/b/3.png")) < natural_key("b/12.png")


def test_frame_folder_natural_order_not_parsed_names(tmp_path):
    folder = write_frames(tmp_path / "v", 3, names=["10.png", "2.png", "1.png"])
    src = open_source(folder)
    assert isinstance(src, FrameSource) and len(src) == 3 and src.name == "v"
    assert src.frame_size == (H, W)
    for i in range(3):  # file "1.png" holds frame(2), "2.png" frame(1), "10.png" frame(0)
        np.testing.assert_array_equal(src.read(i), frame(2 - i))
    with pytest.raises(IndexError):
        src.read(3)


def test_grayscale_frames_become_three_channel_bgr(tmp_path):
    (tmp_path / "v").mkdir()
    cv2.imwrite(str(tmp_path / "v" / "0.png"), np.full((H, W), 77, np.uint8))
    img = open_source(tmp_path / "v").read(0)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8 and (img == 77).all()


def test_frames_layout_and_split_dir(ds):
    assert split_dir(ds, "testing") == ds / "testing" / "frames"
    videos = list_videos(split_dir(ds, "testing"))
    assert [v.name for v in videos] == ["01", "02", "03"] and [len(v) for v in videos] == [5, 6, 4]


def test_folder_of_videos_mixed_with_frames_and_single_file(tmp_path):
    split = tmp_path / "shanghai" / "training" / "videos"
    split.mkdir(parents=True)
    write_video(split / "10.avi", [frame(i) for i in range(4)])
    write_video(split / "2.avi", [frame(i) for i in range(3)])
    write_frames(split / "5", 2)
    assert split_dir(tmp_path / "shanghai", "training") == split
    videos = list_videos(split)
    assert [(v.name, len(v)) for v in videos] == [("2", 3), ("5", 2), ("10", 4)]
    single = list_videos(split / "10.avi")
    assert len(single) == 1 and single[0].name == "10" and single[0].frame_size == (H, W)


def test_split_folder_holding_videos_directly(tmp_path):
    split = tmp_path / "ds" / "testing"
    split.mkdir(parents=True)
    write_video(split / "a.avi", [frame(0)] * 2)
    assert split_dir(tmp_path / "ds", "testing") == split
    write_frames(split / "a", 2)
    with pytest.raises(DataError, match=r"both a frame folder and a video file named \['a'\]"):
        list_videos(split)


def test_symlinked_videos_and_frames_are_read_and_broken_links_named(tmp_path):
    store, split = write_frames(tmp_path / "store" / "a", 3), tmp_path / "frames"
    split.mkdir()
    (split / "01").symlink_to(store)
    assert [(v.name, len(v)) for v in list_videos(split)] == [("01", 3)]
    (split / "02").symlink_to(tmp_path / "store" / "gone")  # an unmounted disk, a moved folder
    with pytest.raises(DataError, match=r"02 is a symbolic link to .*gone, which does not exist"):
        list_videos(split)
    (split / "02").unlink()
    (store / "001.png").rename(tmp_path / "001.png")
    (store / "001.png").symlink_to(tmp_path / "elsewhere.png")  # a frame linked into a store, its target gone
    with pytest.raises(DataError, match=r"001\.png is a symbolic link"):
        list_videos(split)


def test_single_frame_folder_is_one_video(tmp_path):
    videos = list_videos(write_frames(tmp_path / "clip", 3))
    assert [(v.name, len(v)) for v in videos] == [("clip", 3)]


def test_ucsd_original_layout_ignores_gt_folders(tmp_path):
    root = tmp_path / "UCSDped2"
    write_frames(root / "Train" / "Train001", 3, ext=".tif", start=1)
    for v in (1, 2):
        write_frames(root / "Test" / f"Test{v:03d}", 4, ext=".tif", start=1)
        write_frames(root / "Test" / f"Test{v:03d}_gt", 4, ext=".bmp", start=1)
    (root / "Test" / "Thumbs.db").write_bytes(b"x")
    assert split_dir(root, "testing") == root / "Test"
    videos = list_videos(split_dir(root, "testing"))
    assert [v.name for v in videos] == ["Test001", "Test002"] and all(len(v) == 4 for v in videos)
    np.testing.assert_array_equal(videos[0].read(0), frame(0))


def test_load_frame_matches_authors_np_load_frame(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    (tmp_path / "v").mkdir()
    cv2.imwrite(str(tmp_path / "v" / "0.png"), img)
    out = load_frame(open_source(tmp_path / "v"), 0, (16, 32))
    expected = cv2.resize(cv2.imread(str(tmp_path / "v" / "0.png")), (32, 16)).astype(np.float32)
    expected = (expected / 127.5) - 1.0
    assert out.dtype == np.float32 and out.shape == (16, 32, 3)
    np.testing.assert_array_equal(out, expected)
    same = load_frame(open_source(tmp_path / "v"), 0, (H, W))
    np.testing.assert_array_equal(same, img.astype(np.float32) / np.float32(127.5) - np.float32(1))
    assert same.min() >= -1 and same.max() <= 1


@pytest.mark.parametrize("t_length", [1, 2, 4])
def test_clip_dataset_samples_shape_and_order(ds, t_length):
    videos = list_videos(split_dir(ds, "testing"))
    clips = ClipDataset(videos, t_length, (H, W))
    assert len(clips) == sum(len(v) - t_length + 1 for v in videos)
    assert clips.samples[0] == (0, 0) and clips.samples[-1] == (2, 4 - t_length)
    x = clips[1]
    assert x.dtype == torch.float32 and x.shape == (3 * t_length, H, W)
    for j in range(t_length):  # frame-major: channels 3j..3j+2 are frame start+j
        want = load_frame(videos[0], 1 + j, (H, W)).transpose(2, 0, 1)
        np.testing.assert_array_equal(x[3 * j:3 * j + 3].numpy(), want)
    assert clips.video_of(0) == ("01", t_length - 1)
    assert clips.video_of(len(clips) - 1) == ("03", 3)


def _counting(videos: list[FrameSource]) -> list[int]:
    """Make each video count its reads (after it has read frame 0 for its size); returns the live list of counts."""
    counts = [0] * len(videos)
    for k, v in enumerate(videos):
        v.frame_size
        read = v.read

        def counted(i: int, k: int = k, read=read) -> np.ndarray:
            counts[k] += 1
            return read(i)

        v.read = counted
    return counts


def test_frame_cache_decodes_each_frame_once_and_changes_no_clip(ds):
    """Three epochs in shuffled order read every frame once with the cache, once per clip without; the clips are identical."""
    videos = list_videos(split_dir(ds, "testing"))
    plain = ClipDataset(list_videos(split_dir(ds, "testing")), 3, (H, W), cache_mib=0)
    cached = ClipDataset(videos, 3, (H, W))
    counts = _counting(videos)
    order = np.random.default_rng(0).permutation(np.tile(np.arange(len(cached)), 3))
    for k in order:
        torch.testing.assert_close(cached[int(k)], plain[int(k)], rtol=0, atol=0)
    assert counts == [len(v) for v in videos]


def test_frame_cache_stays_within_its_budget_and_reads_in_order_once(ds):
    """A cache of one clip's frames holds no more than that, and clips read in order still decode each frame once."""
    videos = list_videos(split_dir(ds, "testing"))
    clips = ClipDataset(videos, 3, (H, W), cache_mib=frames_mib(3, (H, W)))
    counts = _counting(videos)
    for k in range(len(clips)):
        clips[k]
        assert len(clips._cache) <= 3 and clips._cached <= clips.cache_bytes
    assert counts == [len(v) for v in videos]
    for k in reversed(range(len(clips))):  # a budget smaller than the data: evicted frames are decoded again
        clips[k]
    assert sum(counts) > sum(len(v) for v in videos)
    with pytest.raises(DataError, match="cache_mib must be >= 0"):
        ClipDataset(videos, 3, (H, W), cache_mib=-1)


def test_clip_dataset_rejects_short_video_and_is_picklable(ds):
    videos = list_videos(split_dir(ds, "testing"))
    with pytest.raises(DataError, match=r"03 \(4 frames"):
        ClipDataset(videos, 5, (H, W))
    clips = pickle.loads(pickle.dumps(ClipDataset(videos, 2, (16, 16))))
    assert clips[0].shape == (6, 16, 16)


def test_video_random_access_equals_sequential(tmp_path):
    src = open_source(write_video(tmp_path / "v.avi", [frame(i) for i in range(40)]))
    assert len(src) == 40
    seq = [src.read(i) for i in range(40)]
    for i in (30, 3, 39, 0, 4, 12, 11):
        np.testing.assert_array_equal(src.read(i), seq[i])
    assert src.read(0)[0, 0, 0] == pytest.approx(0, abs=8) and seq[10][0, 0, 0] == pytest.approx(170, abs=8)


def test_dataloader_workers_over_video_file(tmp_path):
    src = open_source(write_video(tmp_path / "v.avi", [frame(i) for i in range(12)]))
    src.read(5)  # the parent holds an open capture: workers must not reuse it
    clips = ClipDataset([src], 3, (16, 24))
    expected = torch.stack([clips[k] for k in range(len(clips))])
    loader = DataLoader(clips, batch_size=3, num_workers=2, shuffle=False, timeout=60)
    got = torch.cat(list(loader))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_labels_shapes_and_split(tmp_path):
    lengths = {"02": 3, "01": 2}  # split in sorted order whatever the dict order
    flat = np.array([0, 1, 1, 0, 0])
    for arr in (flat[None, :], flat, flat[:, None], flat.astype(np.float64)):
        np.save(tmp_path / "l.npy", arr)
        out = load_labels(tmp_path / "l.npy", lengths)
        assert list(out) == ["01", "02"]
        np.testing.assert_array_equal(out["01"], [0, 1])
        np.testing.assert_array_equal(out["02"], [1, 0, 0])
        assert out["01"].dtype.kind == "i"
    assert list(split_labels(flat, [("a", 5)])) == ["a"]


def test_label_and_mask_files_that_are_not_npy_are_named_for_what_they_are(tmp_path, ds):
    lengths = [("01", 3)]
    (tmp_path / "gt.mat").write_bytes(b"MATLAB 5.0 MAT-file, Platform: GLNXA64" + bytes(100))
    np.savez(tmp_path / "gt.npz", labels=np.zeros(3))
    (tmp_path / "gt.txt").write_text("0 0 1\n")
    np.save(tmp_path / "per_video.npy", np.array([np.zeros(2), np.zeros(1)], dtype=object), allow_pickle=True)
    for name, says in (("gt.mat", "a MATLAB .mat file"), ("gt.npz", "a .npz archive"), ("gt.txt", "not a .npy file"),
                       ("per_video.npy", "as a numeric .npy array")):
        with pytest.raises(DataError, match=re.escape(f"{tmp_path / name}") + ".*" + re.escape(says)):
            load_labels(tmp_path / name, lengths)
    pix = ds / "testing" / "test_pixel_mask"
    pix.mkdir(parents=True)
    (pix / "01.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match=r"mask file .*01\.npy is not a \.npy file"):
        load_masks(ds, list_videos(split_dir(ds, "testing"))[0])


def test_labels_errors():
    lengths = [("01", 3), ("02", 4)]
    with pytest.raises(DataError, match=r"5 labels but the test videos have 7 frames.*'02'"):
        split_labels(np.zeros((1, 5)), lengths)
    with pytest.raises(DataError, match=r"9 labels.*7 frames.*left over.* Is a test video of 2 frames missing\?"):
        split_labels(np.zeros(9), lengths)
    with pytest.raises(DataError, match=r"The difference equals the length of \['01'\]: is that a video the labels"):
        split_labels(np.zeros(4), lengths)
    with pytest.raises(DataError) as missing:  # 3 labels too many: no present video named as the cause
        split_labels(np.zeros(10), lengths)
    assert "difference equals" not in str(missing.value) and "Is a test video of 3 frames missing?" in str(missing.value)
    with pytest.raises(DataError, match="shape"):
        split_labels(np.zeros((2, 7)), lengths)
    with pytest.raises(DataError, match="shape"):
        split_labels(np.zeros((1, 7, 1)), lengths)
    with pytest.raises(DataError, match="0 \\(normal\\) or 1"):
        split_labels(np.array([0, 1, 2, 0, 0, 0, 0.5]), lengths)
    with pytest.raises(DataError, match="does not exist"):
        load_labels("/nonexistent/labels.npy", lengths)


def test_masks_our_layout(ds):
    video = list_videos(split_dir(ds, "testing"))[2]
    assert load_masks(ds, video) is None
    folder = ds / "testing" / "masks" / "03"
    folder.mkdir(parents=True)
    for k in range(4):
        m = np.zeros((H, W), np.uint8)
        m[k, :5] = 255
        cv2.imwrite(str(folder / f"{k:03d}.png"), m)
    masks = load_masks(ds, video)
    assert masks.dtype == bool and masks.shape == (4, H, W) and masks[2, 2, :5].all() and masks.sum() == 20
    np.testing.assert_array_equal(load_masks(ds / "testing" / "masks", video), masks)
    for k in range(4):  # 16-bit masks of 0 and 1, as some annotation tools write them
        cv2.imwrite(str(folder / f"{k:03d}.png"), (masks[k] * 1).astype(np.uint16))
    np.testing.assert_array_equal(load_masks(ds, video), masks)
    (folder / "003.png").unlink()
    with pytest.raises(DataError, match="3 masks.*4 frames"):
        load_masks(ds, video)


def test_jpeg_masks_do_not_grow_with_compression_noise(ds):
    video = list_videos(split_dir(ds, "testing"))[2]
    folder = ds / "testing" / "masks" / "03"
    folder.mkdir(parents=True)
    truth = np.zeros((4, H, W), bool)
    truth[1, 5:17, 9:22] = truth[2, 3:9, 30:37] = True
    for k in range(4):
        cv2.imwrite(str(folder / f"{k:03d}.jpg"), truth[k] * np.uint8(255), [cv2.IMWRITE_JPEG_QUALITY, 75])
    assert (cv2.imread(str(folder / "001.jpg"), cv2.IMREAD_GRAYSCALE) != 0).sum() > truth[1].sum()  # the noise
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(load_masks(ds, video), truth)
    for k in range(4):  # 0/1 masks, which JPEG damages beyond repair: a warning says so
        cv2.imwrite(str(folder / f"{k:03d}.jpg"), truth[k].astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
    with pytest.warns(UserWarning, match="lossy compression blurs.*save them as PNG"):
        assert load_masks(ds, video)[1].any()


@pytest.mark.parametrize("quality, lossy", [(75, True), (101, False)])
def test_webp_masks_lossy_or_lossless(ds, quality, lossy):
    video = list_videos(split_dir(ds, "testing"))[2]
    folder = ds / "testing" / "masks" / "03"
    folder.mkdir(parents=True)
    truth = np.zeros((4, H, W), bool)
    truth[1, 5:17, 9:22] = truth[2, 3:9, 30:37] = True
    for k in range(4):  # OpenCV writes lossless WebP (a VP8L chunk) above quality 100, lossy (VP8) below
        cv2.imwrite(str(folder / f"{k:03d}.webp"), truth[k] * np.uint8(255), [cv2.IMWRITE_WEBP_QUALITY, quality])
    noisy = (cv2.imread(str(folder / "001.webp"), cv2.IMREAD_GRAYSCALE) != 0).sum() > truth[1].sum()
    assert noisy == lossy and (b"VP8 " if lossy else b"VP8L") in (folder / "001.webp").read_bytes()[:64]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(load_masks(ds, video), truth)


def test_masks_in_an_unread_format_are_an_error(ds):
    video = list_videos(split_dir(ds, "testing"))[2]
    folder = ds / "testing" / "masks" / "03"
    folder.mkdir(parents=True)
    for k in range(4):
        Image.fromarray(np.zeros((H, W), np.uint8)).save(folder / f"{k:03d}.gif")
    with pytest.raises(DataError, match=r"000\.gif is a \.gif image.*not read as a mask.*convert the masks of"):
        load_masks(ds, video)
    for k in range(4):  # PNG beside leftover GIFs: still refused, since the GIFs may be the masks meant
        cv2.imwrite(str(folder / f"{k:03d}.png"), np.zeros((H, W), np.uint8))
    with pytest.raises(DataError, match="gif"):
        load_masks(ds, video)


def test_masks_ucsd_gt_and_shanghaitech_npy(tmp_path):
    test = tmp_path / "UCSDped2" / "Test"
    write_frames(test / "Test001", 3, ext=".tif", start=1)
    gt = test / "Test001_gt"
    gt.mkdir()
    for k in range(3):
        cv2.imwrite(str(gt / f"{k + 1:03d}.bmp"), np.full((H, W), 255 * (k == 1), np.uint8))
    video = list_videos(test)[0]
    masks = load_masks(tmp_path / "UCSDped2", video)
    assert masks.shape == (3, H, W) and masks[1].all() and not masks[[0, 2]].any()

    root = tmp_path / "shanghai"
    sh_video = open_source(write_frames(root / "testing" / "frames" / "01_0014", 4))
    pix = np.zeros((4, H, W), np.uint8)
    pix[3, 1, 1] = 1
    (root / "testing" / "test_pixel_mask").mkdir(parents=True)
    np.save(root / "testing" / "test_pixel_mask" / "01_0014.npy", pix)
    masks = load_masks(root, sh_video)
    assert masks.dtype == bool and masks.sum() == 1 and masks[3, 1, 1]
    np.save(root / "testing" / "test_pixel_mask" / "01_0014.npy", pix[:2])
    with pytest.raises(DataError, match="2 masks.*4 frames"):
        load_masks(root, sh_video)


def test_error_missing_dataset_and_split(tmp_path):
    with pytest.raises(DataError, match="dataset root .* does not exist"):
        split_dir(tmp_path / "nope", "training")
    (tmp_path / "ds" / "training").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no testing videos .*tried .*testing[/\\]frames"):
        split_dir(tmp_path / "ds", "testing")
    with pytest.raises(DataError, match="does not exist"):
        list_videos(tmp_path / "missing")
    with pytest.raises(DataError, match="holds no videos"):
        list_videos(tmp_path / "ds" / "training")
    with pytest.raises(DataError, match="'training' or 'testing'"):
        split_dir(tmp_path / "ds", "train")


def test_error_video_folder_without_frames(tmp_path):
    write_frames(tmp_path / "split" / "01", 2)
    (tmp_path / "split" / "02").mkdir()
    (tmp_path / "split" / "02" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"02 holds no frames"):
        list_videos(tmp_path / "split")
    videos = tmp_path / "videos"
    frames_to_video(open_source(tmp_path / "split" / "01"), videos / "cam.avi", fps=5)
    with pytest.raises(DataError, match=r"holds videos \(cam.avi, ...\): give one of them"):
        open_source(videos)


@pytest.mark.parametrize("odd", ["001 (1).png", "001 - Copy.png", "001 copy.png", "thumb_001.png"])
def test_error_a_frame_named_unlike_the_others(tmp_path, odd):
    folder = write_frames(tmp_path / "v", 3, names=["000.png", "001.png", "002.png"])
    cv2.imwrite(str(folder / odd), frame(1))  # would sort in as a fourth frame
    with pytest.raises(DataError, match=rf"{re.escape(odd)} in .* is not named like its other frames \(000\.png, 3"):
        open_source(folder)
    assert len(open_source(write_frames(tmp_path / "w", 3, names=["frame 1.png", "frame 2.png", "frame 10.png"]))) == 3


@pytest.mark.parametrize("names", [("000.jpg", "000.png", "001.jpg"), ("1.jpg", "01.jpg", "2.jpg")])
def test_error_the_same_frame_number_twice(tmp_path, names):
    folder = tmp_path / "01"
    folder.mkdir()
    for n in names:
        cv2.imwrite(str(folder / n), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="are the same frame number"):
        open_source(folder)
    (folder / names[1]).unlink()
    assert len(open_source(folder)) == 2


def test_webp_frames_are_read_and_gif_frames_are_named_not_skipped(tmp_path):
    webp = write_frames(tmp_path / "webp", 3, ext=".webp")
    assert len(open_source(webp)) == 3 and open_source(webp).read(2).shape == (H, W, 3) and list_videos(webp)
    mixed = write_frames(tmp_path / "mixed", 3)
    Image.fromarray(frame(3)).save(mixed / "003.gif")  # would be skipped: a video one frame short
    with pytest.raises(DataError, match=r"003\.gif is a \.gif image, .*convert such frames to PNG"):
        open_source(mixed)
    gifs = tmp_path / "gifs"
    gifs.mkdir()
    for k in range(3):
        Image.fromarray(frame(k)).save(gifs / f"{k:03d}.gif")
    with pytest.raises(DataError, match=r"000\.gif \(and 2 more\) is a \.gif image"):
        list_videos(gifs)
    with pytest.raises(DataError, match="is an image, not a video.*ffmpeg -i IN.gif OUT.mp4"):
        open_source(gifs / "000.gif")


def test_error_frames_of_different_sizes(tmp_path):
    folder = write_frames(tmp_path / "v", 3)
    cv2.imwrite(str(folder / "001.png"), frame(1, h=H + 8))
    src = open_source(folder)
    src.read(0)
    with pytest.raises(DataError, match=r"001\.png is 40x32 but frame 0 is 40x24"):
        src.read(1)
    with pytest.raises(DataError, match="one size"):
        ClipDataset([open_source(folder)], 2, (16, 16))[0]


def test_error_unreadable_and_zero_byte_images(tmp_path):
    folder = write_frames(tmp_path / "v", 3)
    (folder / "001.png").write_bytes(b"")
    (folder / "002.png").write_bytes(b"not a png")
    src = open_source(folder)
    with pytest.raises(DataError, match=r"001\.png \(0 bytes\)"):
        src.read(1)
    with pytest.raises(DataError, match=r"002\.png .*corrupt"):
        src.read(2)
    with pytest.raises(DataError, match="empty \\(0-byte\\) frame files"):
        validate_video(src)


def test_error_jpeg_frame_cut_short_is_named_not_decoded_grey(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (3, H, W, 3), dtype=np.uint8)  # most bytes in the scan
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), noise[i])
    whole = (folder / "001.jpg").read_bytes()
    (folder / "001.jpg").write_bytes(whole[: len(whole) * 2 // 3])
    assert cv2.imread(str(folder / "001.jpg")) is not None  # OpenCV reads it, grey below the cut
    src = open_source(folder)
    src.read(0)
    with pytest.raises(DataError, match=r"001\.jpg is cut short"):
        src.read(1)
    with pytest.raises(DataError, match="cut short"):
        validate_video(src, full=True)
    buf = io.BytesIO()
    Image.fromarray(noise[1]).save(buf, "JPEG", progressive=True, exif=Image.Exif())
    (folder / "001.jpg").write_bytes(buf.getvalue() + b"\0" * 16)  # progressive, EXIF, zero padding: whole
    assert src.read(1).shape == (H, W, 3)
    thumb = io.BytesIO()
    Image.fromarray(noise[2][:8, :8]).save(thumb, "JPEG")
    exif = Image.Exif()
    exif[0x010F] = "cam"
    buf = io.BytesIO()
    Image.fromarray(noise[1]).save(buf, "JPEG", exif=exif.tobytes() + thumb.getvalue())  # a JPEG inside APP1
    whole = buf.getvalue()
    (folder / "001.jpg").write_bytes(whole + b"\xff\xda" + bytes(range(200)))  # a trailer after the end
    assert src.read(1).shape == (H, W, 3)
    (folder / "001.jpg").write_bytes(whole[: len(whole) - 500])  # cut: the thumbnail's end-of-image must not pass
    with pytest.raises(DataError, match="cut short"):
        src.read(1)


def test_header_size_check_turns_frames_as_their_exif_orientation_does(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40x24, shown (and read by cv2.imread) 24x40
    for i in range(2):
        Image.fromarray(frame(i)).save(folder / f"{i:03d}.jpg", exif=exif)
    src = open_source(folder)
    assert src.frame_size == (W, H) and validate_video(src, headers=True) == 2
    Image.fromarray(frame(1)).save(folder / "001.jpg")  # no orientation: really another size
    with pytest.raises(DataError, match=r"001\.jpg is 40x24 but frame 0 is 24x40"):
        validate_video(open_source(folder), headers=True)


def test_error_corrupt_empty_and_truncated_videos(tmp_path):
    (tmp_path / "empty.avi").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"junk" * 1000)
    with pytest.raises(DataError, match=r"empty.avi is empty \(0 bytes\)"):
        open_source(tmp_path / "empty.avi")
    with pytest.raises(DataError, match=r"cannot open video .*junk.mp4"):
        open_source(tmp_path / "junk.mp4")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DataError, match="neither a frame folder nor a video"):
        open_source(tmp_path / "x.txt")
    good = write_video(tmp_path / "good.avi", [frame(i) for i in range(20)]).read_bytes()
    (tmp_path / "cut.avi").write_bytes(good[: len(good) // 2])
    with pytest.warns(TruncatedVideoWarning, match=r"cut.avi: its header says 20 frames but only the first \d+ decode"):
        cut = open_source(tmp_path / "cut.avi")
    assert 0 < len(cut) < 20  # frames are counted by decoding, not taken from the header
    cut.read(len(cut) - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(open_source(tmp_path / "good.avi")) == 20  # a whole file: no warning


def test_extract_frames_and_frames_to_video_round_trip(tmp_path):
    video = write_video(tmp_path / "in.avi", red(9))
    out = tmp_path / "frames" / "in"
    assert extract_frames(video, out) == 9
    names = sorted(p.name for p in out.iterdir())
    assert names[0] == "000000.jpg" and len(names) == 9
    assert [p.name for p in out.parent.iterdir()] == ["in"]  # no temporary folder left
    src = open_source(out)
    b, g, r = src.read(4).reshape(-1, 3).mean(0)
    assert r > 200 and b < 30 and g < 30  # red stays red: BGR throughout
    with pytest.raises(DataError, match="already exists"):
        extract_frames(video, out)
    assert extract_frames(video, out, ext=".png", overwrite=True) == 9
    assert [p.name for p in out.parent.iterdir()] == ["in"]  # the replaced frames are gone, no backup left
    assert sorted(p.suffix for p in out.iterdir()) == [".png"] * 9
    for suffix in (".mp4", ".avi"):
        path = frames_to_video(out, tmp_path / f"back{suffix}", fps=10)
        back = open_source(path)
        assert len(back) == 9 and back.frame_size == (32, 48)
        b, g, r = back.read(8).reshape(-1, 3).mean(0)
        assert r > 200 and b < 30 and g < 30
    with pytest.raises(DataError, match=r"\.mp4.*\.avi"):
        frames_to_video(src, tmp_path / "x.gif")
    assert not list(tmp_path.glob(".*tmp*"))


def test_two_writers_of_one_path_do_not_share_a_temporary_file(tmp_path):
    """Two runs writing one --out at once each finish (the later rename wins), a failed one leaves no file behind."""
    out = tmp_path / "annotated.mp4"
    with atomic_path(out) as first, atomic_path(out) as second:
        assert first != second and first.name == second.name == out.name  # writers pick the format by the suffix
        first.write_bytes(b"first")
        second.write_bytes(b"second")
    assert out.read_bytes() == b"first"  # the outer block renames last
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("the writer failed")
    assert out.read_bytes() == b"first" and sorted(tmp_path.iterdir()) == [out]


def test_validate_layout_summary_and_labels(ds, tmp_path):
    summary = validate_layout(ds)
    assert summary["training"] == {"videos": 2, "frames": 13, "lengths": {"01": 6, "02": 7}}
    assert summary["testing"]["frames"] == 15 and summary["frame_size"] == (H, W)
    assert summary["warnings"] == []
    np.save(tmp_path / "labels.npy", np.r_[np.zeros(10), np.ones(5)][None])
    assert validate_layout(ds, tmp_path / "labels.npy", full=True)["labels"] == {"frames": 15, "anomalous": 5}
    np.save(tmp_path / "short.npy", np.zeros((1, 14)))
    with pytest.raises(DataError, match="14 labels.*15 frames"):
        validate_layout(ds, tmp_path / "short.npy")


def test_validate_layout_warns_on_known_dataset_mismatch(ds):
    ped2 = ds.rename(ds.parent / "ped2")
    warnings = validate_layout(ped2)["warnings"]
    assert any("test_videos is 3" in w for w in warnings) and any("frame_size" in w for w in warnings)


def test_known_datasets_facts():
    ped2 = KNOWN_DATASETS["ped2"]
    assert sum(ped2["test_lengths"]) == ped2["test_frames"] == 2010 and len(ped2["test_lengths"]) == 12
    avenue = KNOWN_DATASETS["avenue"]
    assert sum(avenue["test_lengths"]) == avenue["test_frames"] == 15324
    assert KNOWN_DATASETS["shanghaitech"]["test_frames"] == 40791 == KNOWN_DATASETS["shanghai"]["test_frames"]


@pytest.mark.parametrize("name, key", [
    ("ped2", "ped2"), ("UCSDped2", "ped2"), ("UCSD_Ped2", "ped2"), ("Avenue", "avenue"), ("CUHK_Avenue", "avenue"),
    ("shanghai", "shanghai"), ("ShanghaiTech", "shanghai"), ("synthped", None), ("ped1", None), ("ped22", None),
])
def test_known_dataset_names_release_folders(name, key):
    """The folder names the datasets ship under map to the paper's keys; others are not guessed at."""
    assert known_dataset(name) == key


def test_validate_layout_checks_a_ucsd_release_folder_against_ped2(ds):
    warnings = validate_layout(ds.rename(ds.parent / "UCSDped2"))["warnings"]
    assert any(w.startswith("UCSDped2: test_videos is 3") for w in warnings)


def test_a_dataset_folder_given_as_a_video_folder_names_its_split(tmp_path):
    for split in ("training", "testing"):
        write_frames(tmp_path / "ds" / split / "frames" / "01", 3)
    with pytest.raises(DataError, match=r"ds is a dataset folder \(it holds testing and training\).*ds/training/frames"):
        list_videos(tmp_path / "ds")
    assert [v.name for v in list_videos(tmp_path / "ds" / "training" / "frames")] == ["01"]
    assert [v.name for v in list_videos(tmp_path / "ds" / "training")] == ["01"]  # the split, above its frames/
    with pytest.raises(DataError, match=r"ds holds no frames .* It is a dataset folder \(it holds testing and training\)"):
        open_source(tmp_path / "ds")


def test_cuhk_avenue_release_folders_are_split_folders(tmp_path):
    root = tmp_path / "CUHK_Avenue"
    for split in ("training", "testing"):
        write_frames(root / f"{split}_videos" / "01", 3)
    assert split_dir(root, "training") == root / "training_videos" and split_dir(root, "testing") == root / "testing_videos"
    with pytest.raises(DataError, match=r"or video files in ROOT/<dataset>/\{training,testing\}/videos/"):
        split_dir(tmp_path / "CUHK_Avenue" / "training_videos", "training")


def test_validate_layout_headers_checks_every_frames_size(ds, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ds, bad)
    frames = sorted((bad / "testing" / "frames" / "02").iterdir())
    mid = frames[len(frames) // 2]
    assert 0 < len(frames) // 2 < len(frames) - 1
    cv2.imwrite(str(mid), np.zeros((H + 1, W, 3), np.uint8))  # a frame mid-video of another size
    validate_layout(bad)  # the cheap check reads the first and last frames only
    with pytest.raises(DataError, match=rf"{mid.name}.* is {W}x{H + 1} but frame 0 is {W}x{H} \(WxH\)"):
        validate_layout(bad, headers=True)
    assert validate_layout(ds, headers=True)["testing"]["frames"] == 15
    mid.write_bytes(b"not an image")  # a corrupt frame mid-video: the cheap check misses it too
    validate_layout(bad)
    with pytest.raises(DataError, match=rf"frame file .*{mid.name} is unreadable or corrupt"):
        validate_layout(bad, headers=True)


def test_cuhk_avenue_mat_masks(tmp_path):
    from scipy.io import savemat

    root = tmp_path / "CUHK_Avenue"
    (root / "testing_videos").mkdir(parents=True)
    video = list_videos(write_video(root / "testing_videos" / "01.avi", [frame(k) for k in range(3)]).parent)[0]
    truth = np.zeros((3, H, W), bool)
    truth[1, 4:9, 10:20] = True
    cells = np.empty((1, 3), dtype=object)  # MATLAB's 1xT cell, as the release saves volLabel
    for k in range(3):
        cells[0, k] = truth[k].astype(np.float64)
    folder = root / "ground_truth_demo" / "testing_label_mask"
    folder.mkdir(parents=True)
    savemat(folder / "1_label.mat", {"volLabel": cells})
    np.testing.assert_array_equal(load_masks(root, video), truth)
    np.testing.assert_array_equal(load_masks(folder / "1_label.mat", video), truth)  # the file itself, passed as masks
    savemat(folder / "1_label.mat", {"volLabel": cells[:, :2]})
    with pytest.raises(DataError, match="2 masks but video 01 .* has 3 frames"):
        load_masks(root, video)
    savemat(folder / "1_label.mat", {"labels": truth.astype(np.uint8)})
    with pytest.raises(DataError, match=r"holds \['labels'\], not CUHK Avenue's volLabel"):
        load_masks(root, video)
    odd = np.empty((1, 2), dtype=object)
    odd[0, 0], odd[0, 1] = np.zeros((H, W)), np.zeros((H, W + 1))
    savemat(folder / "1_label.mat", {"volLabel": odd})
    with pytest.raises(DataError, match="one 2-D mask per frame, all of one size"):
        load_masks(root, video)
    (folder / "1_label.mat").write_bytes(b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + b"\x00\x02IM" + bytes(64))
    with pytest.raises(DataError, match="MATLAB v7.3 .*h5py"):
        load_masks(root, video)
    (folder / "1_label.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(40))
    with pytest.raises(DataError, match="cannot read mask file .* as a MATLAB file"):
        load_masks(root, video)


def test_move_into_place_puts_everything_back_when_a_move_fails(tmp_path, monkeypatch):
    new = tmp_path / "new"
    new.mkdir()
    (new / "a").write_text("new a")
    (new / "b").write_text("new b")
    (tmp_path / "b").write_text("old b")
    backup = tmp_path / "backup"
    backup.mkdir()
    rename = Path.rename

    def second_fails(self: Path, target: Path) -> Path:
        if self == new / "b":
            raise OSError("rename failed")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", second_fails)
    with pytest.raises(OSError, match="rename failed"):
        move_into_place([(new / "a", tmp_path / "a"), (new / "b", tmp_path / "b")], backup)
    assert not (tmp_path / "a").exists() and (tmp_path / "b").read_text() == "old b" and not any(backup.iterdir())
    assert sorted(p.name for p in new.iterdir()) == ["a", "b"]
    monkeypatch.undo()
    move_into_place([(new / "a", tmp_path / "a"), (new / "b", tmp_path / "b")], backup)
    assert [(tmp_path / n).read_text() for n in "ab"] == ["new a", "new b"]
