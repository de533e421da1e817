"""Whole-video localization: results, re-thresholding, output files, the CLI, bad input, real footage.

Tiny models (width 0.0625, 32x32) on a tiny synthped; the real-footage test runs the CLI with
``--fit-frames`` on a few seconds of OpenCV's ``vtest.avi`` (Debian package opencv-doc; set
MNADLIB_VTEST to another copy) and on a generated video when that file is absent.
"""

from __future__ import annotations

import csv
import dataclasses
import gc
import json
import os
import pickle
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mnadlib import synth
from mnadlib.checkpoint import save_checkpoint
from mnadlib.cli import main
from mnadlib.config import ConfigError, ModelConfig
from mnadlib.data import list_videos, load_masks, split_dir
from mnadlib.frames import DataError, FrameSource, frames_to_video, open_source
from mnadlib.localize import LocalizeError
from mnadlib import framestore, localize_cli, localize_output, localize_video
from mnadlib.localize_eval import FORK, FORK_NAME, OURS, OURS_NAME, default_modes, format_table, localization_metrics
from mnadlib.localize_output import check_masks, panels, write_outputs, write_video
from mnadlib.model import MNAD
from mnadlib.localize_video import (FrameRange, LocalizeConfig, fit_normal, fit_on_frames, load_model, localize,
                                    parse_range, relocalize)
from mnadlib.scoring import regularity

VTEST = Path(os.environ.get("MNADLIB_VTEST", "/usr/share/doc/opencv-doc/examples/data/vtest.avi"))
SIZE = (32, 32)
TORCH_THREADS = 1  # read by conftest


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthped: 2 training and 2 test videos of 48x64 frames."""
    preset = synth.SynthPreset(size=(48, 64), train_lengths=(14, 14), test_lengths=(16, 18), normal_test_videos=0,
                               max_events=1, crowd=(1, 2))
    return synth.generate(tmp_path_factory.mktemp("data"), preset=preset, seed=0)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", SIZE)


@pytest.fixture(scope="module")
def setup(data: Path, ckpt: Path):
    """Model, normal reference, a test video and its localization."""
    model, items, size = load_model(ckpt)
    cfg = LocalizeConfig(size=size)
    normal = fit_normal(model, items, list_videos(split_dir(data, "training")), cfg)
    video = list_videos(split_dir(data, "testing"))[1]
    return model, items, normal, video, localize(video, model, items, cfg, normal=normal, progress=False)


def test_result_covers_every_scored_frame_at_frame_resolution(setup):
    model, _, _, video, res = setup
    n = len(video) - model.cfg.t_length + 1
    assert list(res.frames) == list(range(model.cfg.t_length - 1, len(video)))
    assert res.regularity.shape == res.flags.shape == np.asarray(res.pixel_thresholds).shape == (n,)
    for kind in ("ssim", "error", "memory"):
        assert res.map(0, kind).shape == video.frame_size == (48, 64)
    h, w = video.frame_size
    for k, rows in enumerate(res.boxes):
        assert all(0 <= r["x0"] < r["x1"] <= w and 0 <= r["y0"] < r["y1"] <= h and r["frame"] == res.frames[k]
                   for r in rows)
        assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)


@pytest.mark.parametrize("kind", ["ssim", "error", "memory"])
@pytest.mark.parametrize("threshold", ["calibrated", "otsu", 0.05])
def test_relocalize_over_kinds_and_thresholds(setup, kind, threshold):
    res = relocalize(setup[4], map_kind=kind, threshold=threshold, min_area=0, open_close=0)
    if threshold != "calibrated":  # a calibrated threshold may flag nothing in this short test video
        assert sum(len(res.regions(k)) for k in range(len(res.frames))) > 0  # the checks below see some region
    for k in range(len(res.frames)):
        amap = res.map(k)
        for r in res.regions(k):
            assert r.area >= 1 and (amap[r.mask] > res.pixel_thresholds[k]).all()
    assert sum(map(len, res.boxes)) >= sum(map(len, relocalize(res, min_area=40).boxes))


def test_boxes_and_thresholds_are_found_per_frame_when_asked_for_and_read_as_a_list(setup, monkeypatch):
    import mnadlib.localize_video as lv

    calls: list[int] = []
    thresholds: list[int] = []
    regions, pixel_threshold = lv._regions, lv._pixel_threshold
    monkeypatch.setattr(lv, "_regions", lambda res, k, thr: calls.append(k) or regions(res, k, thr))
    monkeypatch.setattr(lv, "_pixel_threshold", lambda res, k: thresholds.append(k) or pixel_threshold(res, k))
    res = relocalize(setup[4], threshold="otsu", min_area=0)
    assert calls == thresholds == []  # a re-threshold finds no Otsu threshold and no region until a frame is shown
    n = len(res.frames)
    assert res.boxes[-1] == res.boxes[n - 1] and calls == thresholds == [n - 1]  # found once, then kept
    eager = [lv.regions_to_records(int(f), regions(res, k, float(res.pixel_thresholds[k]))) for k, f in enumerate(res.frames)]
    assert res.boxes == eager and eager == res.boxes and res.boxes[1:3] == eager[1:3] and len(res.boxes) == n
    assert sum(map(len, eager)) > 0 and sorted(calls) == sorted(thresholds) == list(range(n))
    otsu = np.asarray(res.pixel_thresholds)
    assert otsu.shape == (n,) and otsu.tolist() == [pixel_threshold(res, k) for k in range(n)] and np.ptp(otsu) > 0
    with pytest.raises(IndexError):
        res.boxes[n]
    with pytest.raises(IndexError):
        res.pixel_thresholds[-n - 1]


def test_a_video_past_the_memory_budget_is_kept_in_a_temporary_file_and_localized_alike(setup, monkeypatch):
    model, items, normal, video, res = setup
    frame = res.preds[0].nbytes + res.targets[0].nbytes + res.dists[0].nbytes
    monkeypatch.setattr(framestore, "RAM_BYTES", framestore.ram_in_use() + 2 * frame)  # two frames in memory, the rest on disk
    spilled = localize(video, model, items, res.cfg, normal=normal, progress=False)
    n = len(res.frames)
    assert spilled.preds.on_disk == spilled.targets.on_disk == n - 2 > 0
    assert all(np.array_equal(a, b) for a, b in zip([*spilled.preds, *spilled.targets], [*res.preds, *res.targets]))
    assert np.array_equal(spilled.regularity, res.regularity) and spilled.boxes == res.boxes
    otsu = relocalize(spilled, threshold="otsu", min_area=0)
    assert otsu.boxes == relocalize(res, threshold="otsu", min_area=0).boxes and sum(map(len, otsu.boxes)) > 0
    again = pickle.loads(pickle.dumps(otsu))  # a result saved for later keeps its frames and its lazy regions
    assert again.preds.on_disk == n and again.boxes == otsu.boxes  # the original holds the budget: all on disk
    assert all(np.array_equal(a, b) for a, b in zip(again.targets, res.targets))
    assert np.asarray(again.pixel_thresholds).tolist() == np.asarray(otsu.pixel_thresholds).tolist()


def test_the_normal_frames_kept_for_calibration_count_against_the_memory_budget(data, setup):
    model, items, _, _, res = setup
    gc.collect()  # earlier tests' garbage
    before = framestore.ram_in_use()
    ref = fit_normal(model, items, list_videos(split_dir(data, "training")), res.cfg)  # two videos, joined in one store
    kept = sum(a.nbytes for a in [*ref.preds, *ref.targets, *ref.dists])
    assert len(ref.preds) == len(ref.psnr) > 0 and framestore.ram_in_use() - before == kept
    del ref
    assert framestore.ram_in_use() == before  # given back with the reference, and the parts' stores with their videos


def test_a_dropped_result_gives_its_memory_budget_back_at_once(setup):
    model, items, normal, video, res = setup
    gc.collect()  # earlier tests' garbage
    gc.disable()  # what is given back must go with the last reference, not at a collection
    try:
        before = framestore.ram_in_use()
        first = localize(video, model, items, res.cfg, normal=normal, progress=False)
        otsu = relocalize(first, threshold="otsu", min_area=0)
        assert first.boxes[0] == res.boxes[0] and isinstance(otsu.boxes[-1], list) and otsu.pixel_thresholds[1] > 0
        assert framestore.ram_in_use() > before
        del first, otsu
        assert framestore.ram_in_use() == before
    finally:
        gc.enable()


def test_otsu_and_fixed_thresholds_report_regions(setup):
    assert sum(map(len, relocalize(setup[4], threshold="otsu", min_area=0).boxes)) > 0
    assert sum(map(len, relocalize(setup[4], map_kind="error", threshold=0.0, min_area=0).boxes)) > 0


def test_fork_mode_keeps_only_the_largest_region_above_230(setup):
    fork = relocalize(setup[4], FORK)
    every = relocalize(fork, largest_only=False)
    assert all(len(b) <= 1 for b in fork.boxes) and fork.cfg.largest_only and not every.cfg.largest_only
    assert len(fork.boxes) == len(every.boxes) and sum(map(len, fork.boxes)) > 0
    for a, b in zip(fork.boxes, every.boxes):
        if a:
            assert a[0]["area"] == max(r["area"] for r in b)
    many = relocalize(setup[4], threshold="otsu", min_area=0)  # frames with several regions: largest_only picks one
    largest = relocalize(many, largest_only=True)
    assert sum(len(b) > 1 for b in many.boxes) > 0
    for a, b in zip(largest.boxes, many.boxes):
        assert len(a) == min(len(b), 1) and (not a or a[0]["area"] == max(r["area"] for r in b))


def test_min_area_is_in_original_frame_pixels(setup):
    every = relocalize(setup[4], threshold="otsu", min_area=0)
    areas = sorted(r["area"] for rows in every.boxes for r in rows)
    cut = areas[len(areas) // 2]  # the median region's area, in the original frame's pixels
    res = relocalize(every, min_area=cut)
    kept = [r["area"] for rows in res.boxes for r in rows]
    assert kept and min(kept) >= cut and sorted(kept) == [a for a in areas if a >= cut]


def test_streaming_needs_normal_frames_and_offline_does_not(setup):
    model, items, _, video, res = setup
    with pytest.raises(LocalizeError, match="normal frames"):
        localize(video, model, items, LocalizeConfig(size=SIZE, threshold="otsu"), progress=False)
    off = localize(video, model, items, LocalizeConfig(size=SIZE, threshold="otsu", streaming=False), progress=False)
    assert np.allclose(off.regularity, regularity(off.psnr, off.dist, 0.6))
    with pytest.raises(LocalizeError, match=r"^threshold 'calibrated' needs normal frames \(--normal"):
        relocalize(off, threshold="calibrated")  # at the change, not when a frame is shown
    stream = relocalize(res, alpha=1.0)
    assert stream.flags.tolist() == (stream.regularity < stream.frame_threshold).tolist()


def test_localize_leaves_the_callers_model_where_it_is(setup, ckpt, monkeypatch):
    model, items, normal, video, res = setup
    monkeypatch.setattr(localize_video, "resolve_device", lambda _: torch.device("meta"))  # "auto" would mean a GPU
    again = localize(video, model, items, dataclasses.replace(res.cfg, device="auto"), normal=normal, progress=False)
    assert {p.device.type for p in model.parameters()} == {"cpu"} and np.array_equal(again.psnr, res.psnr)
    with pytest.raises(ConfigError, match="move it first"):
        localize(video, model, items, dataclasses.replace(res.cfg, device="meta"), normal=normal, progress=False)
    monkeypatch.undo()
    assert {p.device.type for p in load_model(ckpt, device="cpu")[0].parameters()} == {"cpu"}


@pytest.mark.parametrize("bad", [dict(map_kind="depth"), dict(threshold="median"), dict(threshold=1.5),
                                 dict(map_kind="error", threshold=-0.1), dict(threshold="fork", map_kind="error"),
                                 dict(alpha=2.0), dict(percentile=101), dict(min_area=-1), dict(size=(30, 30)),
                                 dict(threshold=True), dict(smooth_sigma=float("nan")), dict(min_area=float("nan")),
                                 dict(frame_threshold=float("nan")), dict(frame_threshold=float("inf"))])
def test_bad_config_is_refused(bad):
    with pytest.raises(LocalizeError):
        LocalizeConfig(**bad)


def test_write_outputs(setup, data, tmp_path):
    _, _, _, video, res = setup
    masks = load_masks(data, video)
    paths = write_outputs(res, video, tmp_path, masks=masks, gif_every=3)
    cap = cv2.VideoCapture(str(paths["video"]))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(res.frames)
    ok, img = cap.read()
    assert ok and img.shape[1] >= 3 * video.frame_size[1] - 2
    saved = json.loads(paths["json"].read_text())["frames"]
    assert [f["frame"] for f in saved] == res.frames.tolist()
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(f["boxes"]) for f in saved)
    summary = json.loads(paths["segments"].read_text())
    assert summary["anomalous_frames"] == int(res.flags.sum()) and summary["segments"]
    for s in summary["segments"]:
        assert res.flags[res.index(s["start"])] and s["start"] <= s["peak_frame"] <= s["end"]
    assert paths["plot"].stat().st_size > 0 and paths["gif"].stat().st_size > 0
    with pytest.raises(LocalizeError, match="not aligned"):
        check_masks(masks[1:], video)


def test_localization_metrics_fork_vs_ours(data, ckpt):
    model, items, size = load_model(ckpt)
    table = localization_metrics(model, items, data, size, {"fork": FORK, "ours": OURS})
    for row in table.values():
        assert 0 <= row["pixel_auroc"] <= 1 and 0 <= row["ucsd_auc"] <= 1
        assert 0 <= row["rbdc"] <= 1 and 0 <= row["tbdc"] <= 1 and 0 <= row["peak_in_mask_auc"] <= 1
    assert "| fork |" in format_table(table) and "peak-in-mask" in format_table(table)


def test_localization_metrics_of_a_model_without_memory_leave_out_the_memory_map(data, tmp_path):
    torch.manual_seed(0)
    nomem = save_checkpoint(tmp_path / "nomem.pt", MNAD(ModelConfig(width=0.0625, use_memory=False)).eval(), None,
                            train_config={"size": list(SIZE)})
    model, items, size = load_model(nomem)
    table = localization_metrics(model, items, data, size)
    assert FORK_NAME in table and OURS_NAME in table and not any("memory" in name for name in table)
    with pytest.raises(LocalizeError, match="needs a model with memory"):  # asked for explicitly, it is refused
        localization_metrics(model, items, data, size, default_modes(memory=True))


def test_fit_normal_caps_the_frames_it_scores_and_the_maps_it_keeps(setup, data, monkeypatch):
    model, items, full = setup[:3]
    monkeypatch.setattr(localize_video, "MAX_CALIBRATION_MAPS", 7)
    capped = fit_normal(model, items, list_videos(split_dir(data, "training")), LocalizeConfig(size=SIZE))
    assert len(full.psnr) == len(capped.psnr) == 20 and len(full.preds) == 20  # two videos of 14 frames, t_length 5
    assert len(capped.preds) == len(capped.targets) == len(capped.dists) == 7  # every 3rd of the 20: 0, 3, ..., 18
    assert all(np.array_equal(capped.preds[j], full.preds[3 * j]) for j in range(7))
    assert np.array_equal(capped.psnr, full.psnr)
    monkeypatch.setattr(localize_video, "MAX_CALIBRATION_FRAMES", 20)  # 28 frames: each video's first 10 are scored
    cut = fit_normal(model, items, list_videos(split_dir(data, "training")), LocalizeConfig(size=SIZE))
    assert len(cut.psnr) == 12 and cut.source == "01_0-10, 02_0-10"  # 6 of each video's 10 frames scored
    assert np.allclose(cut.psnr[:6], full.psnr[:6]) and np.allclose(cut.psnr[6:], full.psnr[10:16])


def test_frame_range_and_parse_range(setup):
    video = setup[3]
    part = FrameRange(video, 2, 9)
    assert len(part) == 7 and np.array_equal(part.read(0), video.read(2))
    assert parse_range("0:30") == (0, 30)
    for bad in ("30", "5:2", "a:b"):
        with pytest.raises(LocalizeError):
            parse_range(bad)
    with pytest.raises(LocalizeError):
        FrameRange(video, 0, len(video) + 1)


def _cli(*args: str) -> int:
    return main(["localize", *args, "--quiet"])


def test_cli_writes_everything(data, ckpt, tmp_path, capsys):
    test = split_dir(data, "testing")
    rc = _cli("--video", str(test / "02"), "--checkpoint", str(ckpt), "--normal", str(split_dir(data, "training")),
              "--masks", str(data), "--out", str(tmp_path), "--map", "error", "--threshold", "otsu", "--min-area", "4")
    assert rc == 0, capsys.readouterr().err
    assert {p.name for p in tmp_path.iterdir()} >= {"annotated.mp4", "regularity.png", "boxes.json", "boxes.csv",
                                                    "segments.json"}
    assert json.loads((tmp_path / "segments.json").read_text())["config"]["map_kind"] == "error"


def test_cli_stable_entry_point_calibrates_on_the_first_quarter(data, ckpt, tmp_path, capsys):
    video = split_dir(data, "testing") / "02"
    assert _cli("--video", str(video), "--checkpoint", str(ckpt), "--out", str(tmp_path)) == 0
    assert "calibrated on frames 0:6" in capsys.readouterr().err
    summary = json.loads((tmp_path / "segments.json").read_text())
    assert summary["normal_frames"] == "02_0-6" and summary["calibrated_pixel_threshold"] is not None


def test_cli_fps_sets_the_times_of_a_frame_folder_and_says_when_it_is_assumed(data, ckpt, tmp_path, capsys):
    video = split_dir(data, "testing") / "02"
    common = ["--video", str(video), "--checkpoint", str(ckpt), "--threshold", "otsu", "--offline"]
    assert _cli(*common, "--out", str(tmp_path / "assumed")) == 0
    assert "records no frame rate, so the segments' times, annotated.mp4 and the GIF assume 25 fps" in capsys.readouterr().err
    assert _cli(*common, "--out", str(tmp_path / "given"), "--fps", "10") == 0
    assert "records no frame rate" not in capsys.readouterr().err
    assumed, given = (json.loads((tmp_path / name / "segments.json").read_text()) for name in ("assumed", "given"))
    assert (assumed["fps"], given["fps"]) == (25.0, 10.0)
    assert given["segments"], "otsu flags some frames of this video"
    for seg in given["segments"]:
        assert (seg["start_s"], seg["end_s"]) == (round(seg["start"] / 10, 3), round(seg["end"] / 10, 3))
    cap = cv2.VideoCapture(str(tmp_path / "given" / "annotated.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    cap.release()


def test_cli_bad_input_exits_2_with_one_line(data, ckpt, tmp_path, capsys):
    test = split_dir(data, "testing")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 50)
    empty = tmp_path / "empty.avi"
    empty.touch()
    short = tmp_path / "short"
    short.mkdir()
    for i in range(3):
        cv2.imwrite(str(short / f"{i}.png"), np.zeros((40, 40, 3), np.uint8))
    wrong_masks = tmp_path / "masks.npy"
    np.save(wrong_masks, np.zeros((5, 48, 64), bool))
    no_masks = tmp_path / "no_masks"
    no_masks.mkdir()
    common = ["--checkpoint", str(ckpt), "--out", str(tmp_path / "o")]
    cases = {
        "cannot open": ["--video", str(garbage), *common],
        "empty": ["--video", str(empty), *common],
        "t_length": ["--video", str(short), *common],
        "--size 32 32": ["--video", str(test / "01"), *common, "--size", "64", "64"],
        "masks": ["--video", str(test / "01"), *common, "--masks", str(wrong_masks)],
        "must be in": ["--video", str(test / "01"), *common, "--map", "ssim", "--threshold", "5"],
        "does not exist": ["--video", str(tmp_path / "missing.mp4"), *common],
        "0 <= START < END, got '5:2'": ["--video", str(tmp_path / "missing.mp4"), *common, "--gif-frames", "5:2"],
        "--fit-epochs must be at least 1": ["--video", str(test / "01"), "--fit-frames", "0:10", "--fit-epochs", "0",
                                            "--out", str(tmp_path / "o")],
        "give --gif-every N too": ["--video", str(test / "01"), *common, "--gif-frames", "0:5"],
        "--gif-every must be >= 0": ["--video", str(test / "01"), *common, "--gif-every", "-1"],
        "holds no scored frame": ["--video", str(test / "01"), *common, "--gif-every", "1", "--gif-frames", "500:600"],
        "is a file; give a folder": ["--video", str(test / "01"), "--checkpoint", str(ckpt), "--out", str(wrong_masks)],
        "fps must be a frame rate above 0": ["--video", str(test / "01"), *common, "--fps", "0"],
        "at most 1000, got nan": ["--video", str(test / "01"), *common, "--fps", "nan"],
        "cannot write --out": ["--video", str(test / "01"), "--checkpoint", str(ckpt), "--out", str(wrong_masks / "o")],
        "cannot write --out ": ["--metrics", "--data", str(data), "--checkpoint", str(ckpt), "--out", str(wrong_masks / "o")],
        "is a file; give a folder for the outputs": ["--metrics", "--data", str(data), "--checkpoint", str(ckpt),
                                                     "--out", str(wrong_masks)],
        "holds no masks for 01": ["--video", str(test / "01"), *common, "--masks", str(no_masks)],
        "not both": ["--video", str(test / "01"), *common, "--normal", str(test / "02"), "--normal-frames", "abc"],
    }
    for needle, args in cases.items():
        assert _cli(*args) == 2, needle
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1 and err.startswith("error:"), (needle, err)
    with pytest.raises(SystemExit) as exit_info:  # argparse's own message, not a traceback
        _cli("--video", str(test / "01"), *common, "--size", "64", "x")
    assert exit_info.value.code == 2 and "--size: invalid int value: 'x'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _real_or_generated_clip(tmp_path: Path, data: Path) -> tuple[Path, str]:
    """A few seconds of vtest.avi when installed, else a video made from the synthped test frames."""
    if not VTEST.is_file() and os.environ.get("MNADLIB_REQUIRE_VTEST"):
        pytest.fail(f"MNADLIB_REQUIRE_VTEST is set but {VTEST} is missing (apt-get install opencv-doc)")
    if VTEST.is_file():
        src: FrameSource = FrameRange(open_source(VTEST), 0, 48)
        kind = "vtest"
    else:
        frames = [f for v in list_videos(split_dir(data, "testing")) for f in (v.read(i) for i in range(len(v)))]
        folder = tmp_path / "frames"
        folder.mkdir()
        for i, f in enumerate(frames[:34]):
            cv2.imwrite(str(folder / f"{i:04d}.png"), f)
        src, kind = open_source(folder), "generated"
    return frames_to_video(src, tmp_path / "clip.avi", fps=10), kind


def test_cli_fit_frames_on_real_footage(data, tmp_path, capsys):
    clip, kind = _real_or_generated_clip(tmp_path, data)
    out = tmp_path / "out"
    n = len(open_source(clip))
    rc = _cli("--video", str(clip), "--fit-frames", f"0:{n - 6}", "--fit-epochs", "1", "--size", "32", "32",
              "--out", str(out), "--gif-every", "4")
    assert rc == 0, (kind, capsys.readouterr().err)
    boxes = json.loads((out / "boxes.json").read_text())["frames"]
    assert len(boxes) == n - 4, kind
    assert (out / "fit" / "fit_run" / "model.pt").is_file()
    cap = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n - 4
    assert _cli("--video", str(clip), "--fit-frames", "0:6", "--out", str(tmp_path / "o2")) == 2
    assert "too short" in capsys.readouterr().err


def test_cli_localizes_a_model_without_memory_and_offline_alone(data, tmp_path, capsys):
    """The no-memory ablation has no distance to calibrate; --offline alone still calibrates its pixel threshold."""
    cfg = ModelConfig(width=0.0625, use_memory=False)
    torch.manual_seed(0)
    nomem = save_checkpoint(tmp_path / "nomem.pt", MNAD(cfg).eval(), None, train_config={"size": list(SIZE)})
    video = str(split_dir(data, "testing") / "02")
    assert _cli("--video", video, "--checkpoint", str(nomem), "--out", str(tmp_path / "a")) == 0, capsys.readouterr().err
    assert "the thresholds come from 2 scored normal frames only" in capsys.readouterr().err  # 6 of 18 assumed normal
    assert json.loads((tmp_path / "a" / "segments.json").read_text())["scored_frames"] == 14
    assert _cli("--video", video, "--checkpoint", str(nomem), "--offline", "--out", str(tmp_path / "b")) == 0
    assert "calibrated on frames 0:" in capsys.readouterr().err


def test_fit_frames_asks_for_a_stretch_that_trains_and_calibrates(walking_footage, tmp_path, capsys):
    video = str(walking_footage(tmp_path / "cam", n=60))
    assert _cli("--video", video, "--fit-frames", "0:10", "--fit-epochs", "1", "--out", str(tmp_path / "o")) == 2
    need = int(re.search(r"give at least (\d+) frames", capsys.readouterr().err).group(1))
    with pytest.raises(LocalizeError, match="too short"):
        fit_on_frames(open_source(video), 0, need - 1, tmp_path / "f", epochs=1, progress=False)
    with pytest.raises(LocalizeError, match="seed must be in"):  # the preset's checks hold for what is changed
        fit_on_frames(open_source(video), 0, need, tmp_path / "f", epochs=1, seed=-1, progress=False)
    assert not (tmp_path / "f").exists()
    holdout = round(0.2 * need)
    assert need - holdout >= 5 + 8 and holdout >= 5 + 1  # a batch of 8 clips of 5 frames; 2 scored held-out frames


def test_cli_refuses_an_output_over_the_input_video(setup, data, ckpt, tmp_path, capsys):
    """The reviewer's repro: the input video named annotated.mp4 inside --out was written over while being read."""
    trap = tmp_path / "trap2"
    video = frames_to_video(split_dir(data, "testing") / "02", trap / "annotated.mp4", fps=10)
    elsewhere = frames_to_video(split_dir(data, "testing") / "01", tmp_path / "clip.mp4", fps=10)
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "annotated.mp4").symlink_to(elsewhere)
    before = {p: p.read_bytes() for p in (video, elsewhere)}
    for vid, out in ((video, trap), (elsewhere, tmp_path / "linked")):
        assert _cli("--video", str(vid), "--checkpoint", str(ckpt), "--out", str(out)) == 2
        err = capsys.readouterr().err.strip()
        assert "would be written over the --video input" in err and len(err.splitlines()) == 1, err
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in trap.iterdir()) == ["annotated.mp4"]  # nothing else written either
    with pytest.raises(LocalizeError, match="would be written over the video input"):  # the library refuses it too
        write_outputs(setup[4], video, trap)
    with pytest.raises(LocalizeError, match="are not aligned with"):  # masks of another video: nothing written
        write_outputs(setup[4], elsewhere, tmp_path / "misaligned", masks=np.zeros((3, 8, 8), bool))
    assert not (tmp_path / "misaligned").exists()


def test_cli_refuses_an_output_folder_in_the_input_frame_folder(data, ckpt, tmp_path, capsys):
    """The second repro: --out FRAMES wrote regularity.png among the frames, which broke every later run."""
    frames = tmp_path / "trap" / "frames"
    src = open_source(split_dir(data, "testing") / "02")
    frames.mkdir(parents=True)
    for i in range(len(src)):
        cv2.imwrite(str(frames / f"{i:03d}.png"), src.read(i))
    listing = sorted(p.name for p in frames.iterdir())
    fit_input = tmp_path / "o" / "fit" / "fit_frames" / "fit"  # an earlier run's frames, which --fit-frames rewrites
    fit_input.mkdir(parents=True)
    cv2.imwrite(str(fit_input / "000.png"), src.read(0))
    cases = {"is the --video folder": ["--video", str(frames), "--checkpoint", str(ckpt), "--out", str(frames)],
             "or inside it": ["--video", str(frames), "--checkpoint", str(ckpt), "--out", str(frames / "run")],
             "holds the --video folder": ["--video", str(frames), "--checkpoint", str(ckpt), "--out", str(frames.parent)],
             "is the --normal folder": ["--video", str(split_dir(data, "testing") / "01"), "--checkpoint", str(ckpt),
                        "--normal", str(frames), "--out", str(frames / "run")],
             "would be written over the --video input": ["--video", str(fit_input), "--fit-frames", "0:1",
                                                 "--out", str(tmp_path / "o")]}
    for needle, args in cases.items():
        assert _cli(*args) == 2, needle
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, (needle, err)
    with pytest.raises(LocalizeError, match="which fit_on_frames empties first"):
        fit_on_frames(fit_input, 0, 1, tmp_path / "o" / "fit", epochs=1, holdout=0, progress=False)
    assert sorted(p.name for p in frames.iterdir()) == listing and [p.name for p in frames.parent.iterdir()] == ["frames"]
    assert [p.name for p in fit_input.iterdir()] == ["000.png"]


def test_write_outputs_leaves_earlier_files_whole_when_a_write_fails(setup, tmp_path, monkeypatch):
    res, video = setup[4], setup[3]
    paths = write_outputs(res, video, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    calls = []

    def failing_panels(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise DataError("cannot decode frame 7")
        return panels(*args, **kwargs)

    monkeypatch.setattr(localize_output, "panels", failing_panels)
    with pytest.raises(DataError, match="cannot decode"):
        write_outputs(res, video, tmp_path)
    assert len(calls) == 3 and {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp file left

    class Figure:
        def savefig(self, f, **kwargs):
            f.write(b"half a png")
            raise OSError("No space left on device")

    monkeypatch.setattr(localize_output, "regularity_figure", lambda *a, **k: Figure())
    monkeypatch.setattr("matplotlib.pyplot.close", lambda fig: None)
    with pytest.raises(OSError, match="No space left"):
        write_outputs(res, video, tmp_path)
    assert paths["plot"].read_bytes() == before["regularity.png"]
    assert {p.name for p in tmp_path.iterdir()} == set(before)


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> list:
    """Replaces --fit-frames training with a recorder: bad input must be refused before it is called."""
    calls: list = []

    def fit(*args, **kwargs):
        calls.append(args)
        raise AssertionError("trained before the input was checked")

    monkeypatch.setattr(localize_cli, "fit_on_frames", fit)
    return calls


@pytest.mark.parametrize("bad", ["other size", "0-byte", "gif frames", "gif frames of a video file", "threshold",
                                 "normal"])
def test_fit_frames_checks_the_whole_input_before_training(walking_footage, tmp_path, capsys, no_training, bad):
    folder = walking_footage(tmp_path / "cam", n=40)
    video, extra = str(folder), []
    if bad == "other size":
        cv2.imwrite(str(folder / "0035.png"), np.zeros((50, 60, 3), np.uint8))  # outside the fit range 0:30
    elif bad == "0-byte":
        (folder / "0035.png").write_bytes(b"")
    elif bad.startswith("gif frames"):
        video = str(frames_to_video(folder, tmp_path / "cam.avi", fps=10)) if "file" in bad else video
        extra = ["--gif-every", "1", "--gif-frames", "1000:1100"]
    elif bad == "threshold":
        extra = ["--threshold", "5"]
    else:
        extra = ["--normal", str(tmp_path / "missing")]
    rc = _cli("--video", video, "--fit-frames", "0:30", "--fit-epochs", "1", "--out", str(tmp_path / "o"), *extra)
    err = capsys.readouterr().err.strip()
    needle = {"other size": "0035.png is 60x50 but frame 0 is 128x96", "0-byte": "empty (0-byte) frame files",
              "gif frames": "holds no scored frame", "gif frames of a video file": "(40 frames; scored: 4..39)",
              "threshold": "maps must be in [0.0, 1.0]", "normal": "does not exist"}[bad]
    assert rc == 2 and needle in err and len(err.splitlines()) == 1, err
    assert no_training == [] and not (tmp_path / "o" / "fit").exists()


def test_a_failure_after_fit_frames_training_says_how_to_reuse_the_model(walking_footage, tiny_checkpoint, tmp_path,
                                                                          capsys, monkeypatch):
    video, out = str(walking_footage(tmp_path / "cam", n=40)), tmp_path / "o"

    def fake_fit(source, start, end, out_dir, *args, **kwargs):  # training, minus its minutes
        return tiny_checkpoint(Path(out_dir) / "fit_run" / "model.pt", SIZE), FrameRange(source, 24, 30)

    def failing_localize(source, *args, **kwargs):
        raise DataError(f"cannot decode frame 33 of video {source.path}")

    monkeypatch.setattr(localize_cli, "fit_on_frames", fake_fit)
    monkeypatch.setattr(localize_cli, "localize", failing_localize)
    assert _cli("--video", video, "--fit-frames", "0:30", "--out", str(out)) == 2
    err = capsys.readouterr().err.strip()
    model = out / "fit" / "fit_run" / "model.pt"
    assert len(err.splitlines()) == 1 and err.startswith("error: cannot decode frame 33"), err
    hint = re.search(r"rerun with (--checkpoint \S+ --normal-frames \S+) in place of --fit-frames", err)
    assert hint and hint.group(1) == f"--checkpoint {model} --normal-frames 24:30", err
    monkeypatch.undo()
    assert _cli("--video", video, *hint.group(1).split(), "--out", str(out)) == 0, capsys.readouterr().err
    summary = json.loads((out / "segments.json").read_text())
    assert summary["normal_frames"] == "cam_24-30" and summary["scored_frames"] == 36


def test_write_video_refuses_to_write_over_the_video_it_reads(setup, data, tmp_path):
    res = setup[4]
    video = frames_to_video(split_dir(data, "testing") / "02", tmp_path / "clip.mp4", fps=10)
    before = video.read_bytes()
    with pytest.raises(LocalizeError, match="is the video being read"):
        write_video(res, video, video)
    assert video.read_bytes() == before
    assert write_video(res, video, tmp_path / "clip_annotated.mp4").stat().st_size > 0
