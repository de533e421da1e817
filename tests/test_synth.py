"""Tests of the synthetic Ped2-like dataset: layout, labels, masks, boxes, determinism, no shortcuts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mnadlib import actors, cli, synth
from mnadlib.config import ConfigError
from mnadlib.frames import DataError
from mnadlib.synth import ANOMALY_KINDS, PRESETS, SynthPreset

TINY = SynthPreset(size=(48, 72), train_lengths=(12, 14), test_lengths=(30, 30, 30), crowd=(1, 3))
# many short anomalous test videos at a small size: enough objects for statistics in about a second
MANY = SynthPreset(size=(64, 96), train_lengths=(10,), test_lengths=(40,) * 30, normal_test_videos=0, max_events=3)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small preset, generated once for the module."""
    return synth.generate(tmp_path_factory.mktemp("small"), "small", seed=0)


def _digest(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _labels(ds: Path) -> np.ndarray:
    return np.load(ds.parent / f"frame_labels_{ds.name}.npy")


def _object_stats(preset: SynthPreset, seed: int = 0) -> dict[str, list[tuple[str, float, float]]]:
    """Per actor of the test videos: (kind, mean grey level of its visible pixels, median box-centre speed)."""
    scene = synth.build_scene(preset.size, seed)
    h, w = preset.size
    stats: dict[str, list[tuple[str, float, float]]] = {"anomaly": [], "pedestrian": []}
    for plan in (p for p in synth.plan_videos(preset, seed) if p.split == "testing"):
        grey: dict[int, list[float]] = {}
        track: dict[int, list[tuple[int, float, float]]] = {}
        kinds: dict[int, str] = {}
        for t, fr in enumerate(synth.render_video(plan, scene)):
            image = fr.image.mean(axis=2)
            for b in fr.actors:
                x0, y0, x1, y1 = b.box
                inside = fr.anomaly if b.anomalous else fr.pedestrian
                sub = inside[y0:y1, x0:x1]
                grey.setdefault(b.id, []).append(float(image[y0:y1, x0:x1][sub].mean()))
                kinds[b.id] = b.kind  # a lawn walker starts as a pedestrian: keep its last kind
                if x0 > 0 and y0 > 0 and x1 < w and y1 < h:
                    track.setdefault(b.id, []).append((t, (x0 + x1) / 2, (y0 + y1) / 2))
        for i, kind in kinds.items():
            tr = np.array(track.get(i, []))
            steps = [np.hypot(*(b[1:] - a[1:])) for a, b in zip(tr[:-1], tr[1:]) if b[0] == a[0] + 1]
            if len(steps) >= 5:
                group = "pedestrian" if kind == "pedestrian" else "anomaly"
                stats[group].append((kind, float(np.mean(grey[i])), float(np.median(steps))))
    return stats


def test_presets_match_ped2_counts() -> None:
    full, small = PRESETS["full"], PRESETS["small"]
    assert (len(full.train_lengths), len(full.test_lengths), full.size) == (16, 12, (240, 360))
    assert full.test_lengths == (180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180)
    assert all(120 <= n <= 180 for n in full.train_lengths)
    assert (len(small.train_lengths), len(small.test_lengths), small.size) == (8, 6, (120, 180))
    assert synth.get_preset("small") is not PRESETS["small"]


def test_unknown_preset_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'huge'.*\['full', 'small'\]"):
        synth.generate(tmp_path, "huge")
    assert not any(tmp_path.iterdir())


def test_cli_synth_refuses_bad_input_in_one_line_and_overwrites_when_asked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["synth", "--out", str(tmp_path), "--preset", "huge", "--quiet"]) == 2
    assert "unknown synthped preset 'huge'" in capsys.readouterr().err
    assert cli.main(["synth", "--out", str(tmp_path / "neg"), "--seed", "-1", "--quiet"]) == 2
    assert "seed must be a whole number >= 0" in capsys.readouterr().err and not (tmp_path / "neg").exists()
    (tmp_path / "afile").write_text("keep")
    for out in (tmp_path / "afile", tmp_path / "afile" / "data"):
        assert cli.main(["synth", "--out", str(out), "--quiet"]) == 2
        assert f"{tmp_path / 'afile'} is a file; give a folder" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "keep"
    (tmp_path / "afile").unlink()
    (tmp_path / "synthped").mkdir()
    (tmp_path / "synthped" / "mine.txt").write_text("keep")
    assert cli.main(["synth", "--out", str(tmp_path), "--quiet"]) == 2
    assert "was not written by mnadlib" in capsys.readouterr().err and (tmp_path / "synthped" / "mine.txt").read_text() == "keep"
    assert cli.main(["synth", "--out", str(tmp_path), "--overwrite", "--quiet"]) == 2  # not even when asked
    assert (tmp_path / "synthped" / "mine.txt").read_text() == "keep"
    (tmp_path / "synthped" / "mine.txt").unlink()
    assert cli.main(["synth", "--out", str(tmp_path), "--preset", "small", "--quiet"]) == 0  # an empty folder is free
    assert cli.main(["synth", "--out", str(tmp_path), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    seen = {}
    monkeypatch.setattr(synth, "generate", lambda out, **kw: seen.update(kw) or Path(out) / "synthped")
    assert cli.main(["synth", "--out", str(tmp_path), "--overwrite", "--quiet"]) == 0 and seen["overwrite"] is True


def test_layout_and_counts(small: Path) -> None:
    cfg = PRESETS["small"]
    train = sorted((small / "training" / "frames").iterdir())
    test = sorted((small / "testing" / "frames").iterdir())
    assert [p.name for p in train] == [f"{i:02d}" for i in range(1, 9)]
    assert [p.name for p in test] == [f"{i:02d}" for i in range(1, 7)]
    assert [len(list(p.glob("*.jpg"))) for p in train] == list(cfg.train_lengths)
    assert [len(list(p.glob("*.jpg"))) for p in test] == list(cfg.test_lengths)
    assert (train[0] / "000.jpg").is_file() and not (small / "training" / "masks").exists()
    frame = cv2.imread(str(test[0] / "000.jpg"), cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(str(small / "testing" / "masks" / "01" / "000.png"), cv2.IMREAD_UNCHANGED)
    assert frame.shape == (120, 180, 3) and frame.dtype == np.uint8
    assert mask.shape == (120, 180) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    for p in test:
        masks = (small / "testing" / "masks" / p.name).glob("*.png")
        assert sorted(m.stem for m in masks) == sorted(f.stem for f in p.glob("*.jpg"))


def test_labels_agree_with_masks_and_annotations(small: Path) -> None:
    labels = _labels(small)
    meta = json.loads((small / "testing" / "annotations.json").read_text())
    assert labels.dtype == np.int64 and labels.shape == (1, sum(PRESETS["small"].test_lengths))
    assert meta["seed"] == 0 and meta["preset"]["size"] == [120, 180]
    offset = 0
    for v, info in sorted(meta["videos"].items()):
        pngs = sorted((small / "testing" / "masks" / v).glob("*.png"))
        masks = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in pngs]
        assert len(masks) == info["length"]
        assert labels[0, offset:offset + info["length"]].tolist() == [int(m.any()) for m in masks]
        offset += info["length"]
        annotated = sorted({t for o in info["objects"] for t in o["frames"]})
        assert annotated == [t for t, m in enumerate(masks) if m.any()]
        for t, m in enumerate(masks):
            covered = np.zeros_like(m, bool)
            for o in (o for o in info["objects"] if t in o["frames"]):
                x0, y0, x1, y1 = o["boxes"][o["frames"].index(t)]
                assert 0 <= x0 < x1 <= 180 and 0 <= y0 < y1 <= 120
                box = m[y0:y1, x0:x1] > 0  # tight: the object's pixels touch all four sides
                assert box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any()
                covered[y0:y1, x0:x1] = True
            assert not (m > 0)[~covered].any(), f"mask pixels outside the boxes in video {v} frame {t}"


def test_normal_and_anomalous_test_videos(small: Path) -> None:
    meta = json.loads((small / "testing" / "annotations.json").read_text())["videos"]
    labels, offset, normal, anomalous = _labels(small)[0], 0, [], []
    for v, info in sorted(meta.items()):
        video = labels[offset:offset + info["length"]]
        offset += info["length"]
        (anomalous if video.any() else normal).append(v)
        if video.any():
            assert video[: info["length"] // 5].sum() == 0, f"video {v} should start with a normal stretch"
    assert len(normal) >= 1 and len(anomalous) >= 1
    assert {o["kind"] for info in meta.values() for o in info["objects"]} == set(ANOMALY_KINDS)


def test_training_videos_hold_no_anomaly() -> None:
    scene = synth.build_scene(TINY.size, 3)
    plans = [p for p in synth.plan_videos(TINY, 3) if p.split == "training"]
    assert plans and all(p.events == () for p in plans)
    for plan in plans:
        for fr in synth.render_video(plan, scene):
            assert not fr.anomaly.any() and not any(b.anomalous for b in fr.actors)


def test_deterministic_per_seed(tmp_path: Path) -> None:
    a = synth.generate(tmp_path / "a", TINY, seed=5)
    b = synth.generate(tmp_path / "b", TINY, seed=np.int64(5))  # a NumPy integer is a seed like any other
    c = synth.generate(tmp_path / "c", TINY, seed=6)
    assert _digest(a.parent) == _digest(b.parent)
    assert _digest(a.parent) != _digest(c.parent)
    frame = "training/frames/01/005.jpg"
    assert not np.array_equal(cv2.imread(str(a / frame)), cv2.imread(str(c / frame)))
    for bad in (-1, 1.5, "5", True):
        with pytest.raises(ConfigError, match="seed must be a whole number >= 0"):
            synth.generate(tmp_path / "bad", TINY, seed=bad)
    assert not (tmp_path / "bad").exists()


def test_atomic_write_and_no_overwrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = synth.generate(tmp_path, TINY, seed=1)
    before = _digest(tmp_path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        synth.generate(tmp_path, TINY, seed=2)
    assert _digest(tmp_path) == before

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(synth, "_write_video", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        synth.generate(tmp_path, TINY, seed=2, overwrite=True)
    entries = ["frame_labels_synthped.npy", ds.name]  # no temporary sibling left behind
    assert _digest(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == entries
    monkeypatch.undo()
    rename = Path.rename

    def labels_move_fails(self: Path, target: Path) -> Path:  # the last rename: the dataset has moved in already
        if self.name == "labels.npy" and Path(target).name == entries[0]:
            raise OSError("rename failed")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", labels_move_fails)
    with pytest.raises(OSError, match="rename failed"):
        synth.generate(tmp_path, TINY, seed=2, overwrite=True)
    assert _digest(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == entries
    monkeypatch.undo()
    synth.generate(tmp_path, TINY, seed=2, overwrite=True)
    assert _digest(tmp_path) != before and sorted(p.name for p in tmp_path.iterdir()) == entries



def test_overwrite_never_replaces_data_mnadlib_did_not_write(tmp_path: Path) -> None:
    own = tmp_path / "a" / "synthped" / "training" / "frames" / "01"
    own.mkdir(parents=True)
    (own / "000.jpg").write_bytes(b"a frame of my own")
    with pytest.raises(FileExistsError, match="was not written by mnadlib"):
        synth.generate(tmp_path / "a", TINY, seed=1, overwrite=True)
    assert (own / "000.jpg").read_bytes() == b"a frame of my own"
    np.save(tmp_path / "b_labels.npy", np.ones((1, 3)))
    (tmp_path / "b").mkdir()
    (tmp_path / "b_labels.npy").rename(tmp_path / "b" / "frame_labels_synthped.npy")  # the authors' file, no dataset
    with pytest.raises(FileExistsError, match="frame_labels_synthped.npy exists without the dataset .*synthped that would show mnadlib wrote it"):
        synth.generate(tmp_path / "b", TINY, seed=1, overwrite=True)
    assert np.load(tmp_path / "b" / "frame_labels_synthped.npy").tolist() == [[1.0, 1.0, 1.0]]
    (tmp_path / "empty").mkdir()
    assert synth.generate(tmp_path, TINY, seed=2, name="empty") == tmp_path / "empty"


@pytest.mark.parametrize("kind", ANOMALY_KINDS)
def test_anomalous_actors_share_the_pedestrian_palette(kind: str) -> None:
    def pixels(kind: str, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.concatenate([img[mask] for img, mask in (actors.render_actor(kind, 40, rng) for _ in range(300))])

    ped, odd = pixels("pedestrian", 0).astype(float), pixels(kind, 1).astype(float)
    assert np.abs(ped.mean(axis=0) - odd.mean(axis=0)).max() < 6  # per BGR channel, grey levels
    assert abs(ped.std() - odd.std()) < 6


def test_an_unknown_actor_kind_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown actor kind 'bus'; choose from pedestrian, lawn_walker"):
        actors.render_actor("bus", 40, np.random.default_rng(0))


def test_anomalies_look_alike_but_move_faster() -> None:
    stats = _object_stats(MANY)
    anomaly = np.array([s[1:] for s in stats["anomaly"]])  # (objects, 2) grey level, speed
    pedestrian = np.array([s[1:] for s in stats["pedestrian"]])
    assert len(anomaly) >= 30 and len(pedestrian) >= 100
    assert abs(anomaly[:, 0].mean() - pedestrian[:, 0].mean()) < 10  # mean grey level per object, in the frames
    assert anomaly[:, 1].mean() > 1.8 * pedestrian[:, 1].mean()  # lawn walkers keep walking pace
    fast = np.array([s[2] for s in stats["anomaly"] if s[0] in ("cyclist", "skateboarder")])
    assert fast.mean() > 2.5 * pedestrian[:, 1].mean()


def test_annotated_anomalies_move_faster_than_pedestrians(small: Path) -> None:
    meta = json.loads((small / "testing" / "annotations.json").read_text())["videos"]
    speeds = []
    for info in meta.values():
        for o in info["objects"]:
            b = np.array(o["boxes"], float)
            inside = (b[:, 0] > 0) & (b[:, 1] > 0) & (b[:, 2] < 180) & (b[:, 3] < 120)
            c, f = ((b[:, :2] + b[:, 2:]) / 2)[inside], np.array(o["frames"])[inside]
            steps = np.hypot(*np.diff(c, axis=0).T)[np.diff(f) == 1]
            if len(steps) >= 5:
                speeds.append(np.median(steps))
    pedestrian = np.mean([s[2] for s in _object_stats(PRESETS["small"])["pedestrian"]])
    assert len(speeds) >= 4 and np.mean(speeds) > 1.5 * pedestrian


def test_contact_sheet(small: Path, tmp_path: Path) -> None:
    out = synth.contact_sheet(small, tmp_path / "sheet.png", n=6)
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 600


def test_contact_sheet_names_an_unreadable_mask(tmp_path: Path) -> None:
    """A mask that cannot be read is a DataError naming it, not OpenCV's assertion from resizing nothing."""
    ds = synth.generate(tmp_path, TINY, seed=0)
    for png in (ds / "testing" / "masks").rglob("*.png"):
        png.write_bytes(b"")
    with pytest.raises(DataError, match=r"cannot read .*\.png: the file is missing, empty or corrupt"):
        synth.contact_sheet(ds, tmp_path / "sheet.png")


def test_crowd_is_steady_along_each_video() -> None:
    """A video's crowd neither grows nor thins from start to end (a ramp would read as a drift in any score)."""
    preset = PRESETS["small"]
    scene = synth.build_scene(preset.size, 0)
    drifts, sizes = [], set()
    for plan in synth.plan_videos(preset, 0):
        counts = [sum(a.kind == "pedestrian" for a in fr.actors) for fr in synth.render_video(plan, scene)]
        quarter = len(counts) // 4
        drifts.append(np.mean(counts[-quarter:]) - np.mean(counts[:quarter]))
        sizes.add(round(float(np.mean(counts))))
    assert max(abs(d) for d in drifts) <= 1.0, drifts
    assert abs(float(np.mean(drifts))) <= 0.3, drifts
    assert len(sizes) >= 3, f"crowd sizes should differ between videos, got {sizes}"
