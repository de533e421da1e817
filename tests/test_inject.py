"""``python -m mnadlib inject``: real footage cut into splits, synthped actors pasted in with exact labels."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mnadlib import cli, pipeline
from mnadlib.config import ConfigError
from mnadlib.data import DataError, list_videos, load_masks
from mnadlib.inject import MOTION_WIDTH, InjectConfig, inject, typical_motion

H, W = 96, 128  # walking_footage's frame size


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory, walking_footage) -> Path:
    return walking_footage(tmp_path_factory.mktemp("video") / "cam")


CFG = InjectConfig(width=0, clip_length=20, train_fraction=0.4, height_fraction=0.3, seed=3)


def test_injected_layout_labels_and_masks_agree(footage: Path, tmp_path: Path) -> None:
    path = inject(footage, tmp_path, "cam", CFG)
    train, test = list_videos(path / "training" / "frames"), list_videos(path / "testing" / "frames")
    assert [len(v) for v in train] == [20, 20] and [len(v) for v in test] == [20, 20, 20, 20]
    labels = np.load(tmp_path / "frame_labels_cam.npy")
    assert labels.shape == (1, 80)
    meta = json.loads((path / "testing" / "annotations.json").read_text())
    assert meta["frame_size"] == [H, W] and 0.9 < meta["typical_motion_px"] < 2.2
    assert not meta["videos"]["04"]["objects"]  # the last test video stays normal
    for k, v in enumerate(test):
        masks = load_masks(path, v)
        assert labels[0, 20 * k:20 * (k + 1)].tolist() == [int(m.any()) for m in masks]
        for obj in meta["videos"][v.name]["objects"]:
            assert obj["kind"] in ("cyclist", "skateboarder", "cart", "runner")
            for t, (x0, y0, x1, y1) in zip(obj["frames"], obj["boxes"]):
                assert masks[t][y0:y1, x0:x1].any() and 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
    assert labels[0, :60].sum() > 0 and labels[0, 60:].sum() == 0
    first = min(o["frames"][0] for o in meta["videos"]["01"]["objects"])
    before = cv2.imread(str(footage / f"{40 + first - 1:04d}.png"))
    assert np.array_equal(cv2.imread(str(path / "testing" / "frames" / "01" / f"{first - 1:03d}.jpg")).shape, before.shape)
    # injected actors cross faster than the footage moves: 2.5-4 times its typical motion
    steps = []
    for obj in (o for v in meta["videos"].values() for o in v["objects"] if len(o["frames"]) > 3):
        cx = [(b[0] + b[2]) / 2 for b in obj["boxes"]]
        inside = [c for c, b in zip(cx, obj["boxes"]) if b[0] > 0 and b[2] < W]
        if len(inside) > 3:
            steps.append(np.median(np.abs(np.diff(inside))))
    assert steps and all(1.5 * meta["typical_motion_px"] < step < 6 * meta["typical_motion_px"] for step in steps), steps


def test_same_seed_same_bytes_other_seed_other_events(footage: Path, tmp_path: Path) -> None:
    a, b = inject(footage, tmp_path / "a", "cam", CFG), inject(footage, tmp_path / "b", "cam", CFG)
    for f in sorted((a / "testing").rglob("*.*")):
        assert f.read_bytes() == (b / f.relative_to(a)).read_bytes()
    c = inject(footage, tmp_path / "c", "cam", InjectConfig(**{**CFG.__dict__, "seed": 4}))
    ann = lambda p: json.loads((p / "testing" / "annotations.json").read_text())["videos"]
    assert ann(a) != ann(c)


def test_the_pipeline_reads_it_as_a_dataset(footage: Path, tmp_path: Path) -> None:
    inject(footage, tmp_path, "cam", CFG)
    ds = pipeline.prepare_dataset(tmp_path, "cam")
    labels = ds.test_labels()
    assert sorted(labels) == ["01", "02", "03", "04"] and pipeline.annotated_objects(ds)["01"]


def test_bad_input_is_refused_and_nothing_is_overwritten(footage: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="too few"):
        inject(footage, tmp_path, "cam", InjectConfig(width=0, clip_length=60))
    still = tmp_path / "in" / "still"
    still.mkdir(parents=True)
    for t in range(60):
        cv2.imwrite(str(still / f"{t:03d}.png"), np.full((H, W, 3), 120, np.uint8))
    with pytest.raises(DataError, match="hardly moves"):
        inject(still, tmp_path, "still", CFG)
    with pytest.raises(DataError):
        inject(tmp_path / "missing.avi", tmp_path, "x", CFG)
    with pytest.raises(ValueError, match="train_fraction"):
        InjectConfig(train_fraction=1.0)
    with pytest.raises(ValueError, match=r"^seed must be >= 0, got -1$"):
        InjectConfig(seed=-1)
    with pytest.raises(ValueError, match=r"^width must be 0 \(the source's\) or at least 32 pixels, got 7$"):
        InjectConfig(width=7)
    with pytest.raises(ValueError, match=r"^clip_length must be at least 10 frames, got 5; height_fraction .* got nan; "
                                         r"speed_factor must be \(low, high\) with 0 < low <= high, got \(3.0, 1.0\)$"):
        InjectConfig(clip_length=5, height_fraction=float("nan"), speed_factor=(3, 1))
    path = inject(footage, tmp_path, "cam", CFG)
    stamp = (path / "testing" / "annotations.json").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        inject(footage, tmp_path, "cam", InjectConfig(**{**CFG.__dict__, "seed": 9}))
    assert (path / "testing" / "annotations.json").read_bytes() == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cam.")]  # no temporary folder left


def test_name_and_out_that_are_no_folders_are_refused(footage: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for name in ("", ".", "..", "../escaped", "a/b", "a\\b"):
        with pytest.raises(ConfigError, match="--name must be a plain folder name"):
            inject(footage, tmp_path / "out", name, CFG)
    assert not any(tmp_path.iterdir())  # refused before anything was written

    def run(out: Path, name: str = "cam") -> int:
        return cli.main(["inject", "--video", str(footage), "--out", str(out), "--name", name, "--width", "0",
                         "--clip-length", "20", "--train-fraction", "0.4"])

    assert run(tmp_path / "out", "../escaped") == 2
    assert "--name must be a plain folder name" in capsys.readouterr().err and not any(tmp_path.iterdir())
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for out in (afile, afile / "below"):
        assert run(out) == 2 and f"{afile} is a file; give a folder" in capsys.readouterr().err
    assert afile.read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["afile"]


def test_every_option_has_help(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli.main(["inject", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--clip-length CLIP_LENGTH frames per training and test video" in text
    assert "--train-fraction TRAIN_FRACTION leading share of the footage" in text and "--name NAME the dataset's" in text


def test_command_line(footage: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["inject", "--video", str(footage), "--out", str(tmp_path), "--name", "cam", "--width", "0",
            "--clip-length", "20", "--train-fraction", "0.4", "--height-fraction", "0.3"]
    assert cli.main(args) == 0
    assert "4 test videos" in capsys.readouterr().out and (tmp_path / "frame_labels_cam.npy").is_file()
    assert cli.main(args) == 2 and "overwrite" in capsys.readouterr().err
    assert cli.main([*args, "--overwrite", "--speed-factor", "4", "2"]) == 2 and "speed_factor" in capsys.readouterr().err


def test_typical_motion_measures_the_walking_speed(footage: Path) -> None:
    frames = np.stack([cv2.imread(str(p)) for p in sorted(footage.glob("*.png"))[:40]])
    speed, rows = typical_motion(frames)
    assert 0.9 < speed < 2.2 and rows.shape == (H,) and rows[:25].sum() < 0.05  # nobody walks up there


def test_typical_motion_skips_repeated_frames(footage: Path) -> None:
    frames = np.stack([cv2.imread(str(p)) for p in sorted(footage.glob("*.png"))[:40]])
    doubled = np.repeat(frames, 2, axis=0)  # every frame shown twice: pairs (0, 1), (2, 3), ... never move
    speed, rows = typical_motion(frames)
    speed2, rows2 = typical_motion(doubled)
    assert abs(speed2 - speed) < 0.1 * speed and np.abs(rows2 - rows).sum() < 0.2


def test_prepare_dataset_injects_footage_once_per_source_and_seed(tmp_path: Path, walking_footage) -> None:
    video = walking_footage(tmp_path / "in" / "cam", n=330)  # the default settings need 4 clips of 80 frames
    ann = tmp_path / "data" / "cam" / "testing" / "annotations.json"
    ds = pipeline.prepare_dataset(tmp_path / "data", "cam", seed=2, footage=video)
    first = ann.read_bytes()
    assert json.loads(first)["source"] == str(video) and ds.labels is not None
    pipeline.prepare_dataset(tmp_path / "data", "cam", seed=2, footage=video)
    assert ann.read_bytes() == first  # reused
    with pytest.raises(DataError, match="seed 3"):
        pipeline.prepare_dataset(tmp_path / "data", "cam", seed=3, footage=video, generate=False)
    assert ann.read_bytes() == first
    with pytest.raises(DataError, match="injected from .* seed 2, not .* seed 3: give another data_root"):
        pipeline.prepare_dataset(tmp_path / "data", "cam", seed=3, footage=video)
    assert ann.read_bytes() == first
    pipeline.prepare_dataset(tmp_path / "data", "cam", seed=3, footage=video, overwrite=True)
    assert json.loads(ann.read_text())["config"]["seed"] == 3
    with pytest.raises(DataError, match="another dataset name"):
        pipeline.prepare_dataset(tmp_path / "data", "synthped", footage=video)


def _squares(width: int, n: int = 12) -> np.ndarray:
    """Textured squares crossing a textured ground at 1 and 2 px/frame of a 360 px wide frame, drawn at ``width``."""
    rng = np.random.default_rng(0)
    s = width / 360
    ground = cv2.resize(cv2.GaussianBlur(rng.integers(60, 200, (45, 90, 3)).astype(np.uint8), (3, 3), 1),
                        (width, width // 2), interpolation=cv2.INTER_LINEAR)
    squares = [(40 + 50 * k, 30 + 20 * k, 1 + k % 2, rng.integers(0, 255, (8, 8, 3)).astype(np.uint8)) for k in range(4)]
    frames = []
    for t in range(n):
        img = ground.copy()
        for x, y, v, texture in squares:
            x0, y0, side = (int(round(c * s)) for c in (x + v * t, y, 40))
            img[y0:y0 + side, x0:x0 + side] = cv2.resize(texture, (side, side), interpolation=cv2.INTER_LINEAR)
        frames.append(img)
    return np.stack(frames)


def test_typical_motion_scales_with_the_frame_width() -> None:
    speed, rows = typical_motion(_squares(360))
    speed2, rows2 = typical_motion(_squares(720))  # the same scene at twice the size: twice the pixels per frame
    assert 1 < speed < 2.5 and 1.8 < speed2 / speed < 2.2
    assert rows.shape == (180,) and rows2.shape == (360,) and rows2.sum() == pytest.approx(1)
    assert np.abs(rows2.reshape(-1, 2).sum(axis=1) - rows).sum() < 0.1  # people walk in the same rows


def test_typical_motion_measures_frames_of_the_working_width_as_they_are(monkeypatch) -> None:
    """At the default --width (the working width) nothing is resized, so measurements there are the same as ever."""
    frames = _squares(MOTION_WIDTH)
    before = typical_motion(frames)

    def resize(*args, **kwargs):
        raise AssertionError("frames of the working width were resized")

    monkeypatch.setattr(cv2, "resize", resize)
    after = typical_motion(frames)
    assert after[0] == before[0] and np.array_equal(after[1], before[1])
    with pytest.raises(AssertionError, match="were resized"):
        typical_motion(frames[:, :, :300])


def test_typical_motion_reads_any_iterable_of_frames_once(footage: Path) -> None:
    frames = np.stack([cv2.imread(str(p)) for p in sorted(footage.glob("*.png"))[:41]])  # odd: a last lone pair
    speed, rows = typical_motion(frames)
    speed2, rows2 = typical_motion(f for f in frames)
    assert speed2 == speed and np.array_equal(rows2, rows)
    with pytest.raises(DataError, match="hardly moves"):
        typical_motion(iter([]))
