"""The interactive localization app: its callbacks across the slider ranges, exports, and bad input.

The callbacks are called directly with the values the sliders can take; the ipywidgets app is
built and driven headless (no browser) to check that bad input ends in a status message.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from mnadlib import synth, widgets
from mnadlib.config import ConfigError
from mnadlib.data import DataError, list_videos, open_source, split_dir
from mnadlib.localize import LocalizeError
from mnadlib.localize_eval import FORK
from mnadlib.localize_video import LocalizeConfig, fit_normal, load_model, relocalize
from mnadlib.widgets import (FORK_FIELDS, THRESHOLD_CHOICES, LocalizationApp, curve_png, export, frame_view, message,
                             open_session, save_upload, settings, list_test_videos, to_png)



TORCH_THREADS = 1  # read by conftest


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    preset = synth.SynthPreset(size=(48, 64), train_lengths=(12, 12), test_lengths=(14, 16), normal_test_videos=0,
                               max_events=1, crowd=(1, 2))
    return synth.generate(tmp_path_factory.mktemp("data"), preset=preset, seed=1)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", (32, 32))


@pytest.fixture(scope="module")
def session(data: Path, ckpt: Path):
    model, items, size = load_model(ckpt)
    cfg = LocalizeConfig(size=size)
    normal = fit_normal(model, items, list_videos(split_dir(data, "training")), cfg)
    video = list_videos(split_dir(data, "testing"))[1]
    return open_session(video, model, items, cfg, normal, data)


def test_test_videos(data):
    assert list_test_videos(data) == ["01", "02"]


@pytest.mark.parametrize("kind", ["ssim", "error", "memory"])
@pytest.mark.parametrize("mode", THRESHOLD_CHOICES)
def test_settings_across_sliders(session, kind, mode):
    for alpha in (0.0, 0.5, 1.0):
        for area in (0, 5, 200):
            res = settings(session, kind, mode, 0.05 if kind != "memory" else 1e-4, area, alpha, largest_only=area == 5)
            expected_kind = "ssim" if mode == "fork" else kind
            assert res.cfg.map_kind == expected_kind and res.cfg.alpha == alpha
            if mode == "fork":  # the fork's whole mode: its own area and largest-only settings
                assert (res.cfg.min_area, res.cfg.largest_only) == (FORK.min_area, True)
            else:
                assert res.cfg.min_area == area and all(r["area"] >= area for rows in res.boxes for r in rows)
            if area == 5 or mode == "fork":
                assert all(len(b) <= 1 for b in res.boxes)


def test_frame_view_and_curve_for_every_frame(session):
    settings(session, "ssim", "otsu", min_area=0)
    pngs = set()
    for frame in range(len(session.source)):
        view = frame_view(session, frame, height=48)
        assert set(view) == {"frame", "prediction", "heat"}
        assert all(v.shape == (48, 64, 3) and v.dtype == np.uint8 for v in view.values())
        pngs.add(to_png(view["frame"]))
    assert len(pngs) > len(session.source) // 2, "frames before t_length clamp; the rest must differ"
    one, other = curve_png(session, 5), curve_png(session, 12)
    assert one[:4] == b"\x89PNG" and one != other


def test_gt_boxes_are_drawn_in_green(session):
    settings(session, "ssim", "calibrated", min_area=10_000)
    frame = 4 + int(np.argmax(session.masks[4:].sum(axis=(1, 2))))
    view = frame_view(session, frame, height=48)["frame"]
    green = (view[..., 1] == 200) & (view[..., 0] == 0) & (view[..., 2] == 0)
    assert green.any()


@pytest.mark.parametrize("what", ["mp4", "gif", "csv", "json"])
def test_export(session, tmp_path, what):
    path = export(session, tmp_path, what, every=2)
    assert path.is_file() and path.stat().st_size > 0
    if what == "json":
        assert len(json.loads(path.read_text())["frames"]) == len(session.result.frames)
    with pytest.raises(LocalizeError):
        export(session, tmp_path, "avi")


def test_out_of_range_threshold_and_short_video_are_refused(session, data, ckpt, tmp_path):
    with pytest.raises(LocalizeError, match="outside"):
        settings(session, "ssim", "fixed", 1.5)
    with pytest.raises(LocalizeError, match=r"map_kind must be one of \['error', 'memory', 'ssim'\], got 'sim'"):
        settings(session, "sim", "fixed", 0.1)
    model, items, size = load_model(ckpt)
    video = open_source(list_videos(split_dir(data, "testing"))[0].path)
    for bad in (0, 1.5, -0.1, float("nan"), True, "0.25"):
        with pytest.raises(LocalizeError, match=r"normal fraction must be a number in \(0, 1\]"):
            open_session(video, model, items, LocalizeConfig(size=size), normal_fraction=bad)
    short = tmp_path / "short"
    short.mkdir()
    for i in range(4):
        cv2.imwrite(str(short / f"{i}.png"), np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(LocalizeError, match=r"has 4 frame\(s\); this model needs at least 6: a clip of t_length=5 "
                                            "frames scores one, and calibrating"):
        open_session(open_source(short), model, items, LocalizeConfig(size=size))
    cv2.imwrite(str(short / "4.png"), np.zeros((40, 40, 3), np.uint8))  # t_length frames: one scored, against normal
    one = open_session(open_source(short), model, items, LocalizeConfig(size=size), session.base.normal)
    assert list(one.base.frames) == [4]


def test_upload_round_trip_and_garbage(tmp_path, data):
    frames = list_videos(split_dir(data, "testing"))[0]
    from mnadlib.frames import frames_to_video

    video = frames_to_video(frames, tmp_path / "v.avi", fps=10)
    saved = save_upload("../../evil/v.avi", video.read_bytes(), tmp_path / "up")
    assert saved.parent == tmp_path / "up" and len(open_source(saved)) == len(frames)
    with pytest.raises(DataError):
        open_source(save_upload("bad.mp4", b"garbage" * 10, tmp_path / "up"))
    with pytest.raises(DataError):
        save_upload("empty.mp4", b"", tmp_path / "up")


def test_message_is_html_escaped():
    assert "&lt;b&gt;" in message(LocalizeError("<b>"))
    assert "#1a7f37" in message("ok", ok=True)


def test_app_drives_headless_and_shows_bad_input(data, ckpt, tmp_path, tiny_checkpoint):
    app = LocalizationApp(ckpt, data, out_dir=tmp_path)
    assert app.session is not None and "loaded 01" in app.status.value
    first = app.images["frame"].value
    app.frame.value = app.frame.max
    assert app.images["frame"].value != first
    app.mode.value = "fixed"
    assert not app.value.disabled
    app.mode.value = "fork"
    assert app.kind.value == "ssim"
    app.kind.value = "memory"
    app.video.value = "02"
    assert "loaded 02" in app.status.value
    app.upload.value = ({"name": "bad.mp4", "content": memoryview(b"garbage" * 20), "size": 140, "type": "video/mp4",
                         "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
    assert "cannot open" in app.status.value
    app._guard(app._export, "csv")
    assert "wrote" in app.status.value and list(tmp_path.glob("*_boxes.csv"))
    wrong = LocalizationApp(tiny_checkpoint(tmp_path / "w.pt", (64, 64)), data, out_dir=tmp_path, size=(32, 32))
    assert "pass --size 64 64" in wrong.status.value and wrong.session is None


def test_an_unexpected_error_in_a_callback_is_shown_not_only_logged(data, ckpt, tmp_path, monkeypatch):
    app = LocalizationApp(ckpt, data, out_dir=tmp_path)

    def broken(*_):
        raise RuntimeError("boom")

    monkeypatch.setattr("mnadlib.widgets.frame_view", broken)
    with pytest.raises(RuntimeError, match="boom"):
        app.frame.value = app.frame.max
    assert "unexpected RuntimeError: boom" in app.status.value and "#c62828" in app.status.value
    monkeypatch.undo()
    app.frame.value = app.frame.min  # the app still answers
    assert app.images["frame"].value


def test_fork_mode_in_the_app_is_the_metrics_tables_fork(session):
    res = settings(session, "error", "fork", 0.05, 200, 0.6, largest_only=False)
    assert all(getattr(res.cfg, k) == getattr(FORK, k) for k in FORK_FIELDS)
    assert res.cfg.smooth_sigma == 0 and res.cfg.open_close == 0 and all(len(b) <= 1 for b in res.boxes)
    assert res.boxes == relocalize(session.base, dataclasses.replace(session.base.cfg, **{k: getattr(FORK, k)
                                                                                         for k in FORK_FIELDS})).boxes


def test_app_starts_from_the_given_settings_and_video(data, ckpt, tmp_path):
    cfg = LocalizeConfig(map_kind="error", threshold=0.02, min_area=7, largest_only=True, alpha=0.3)
    app = LocalizationApp(ckpt, data, out_dir=tmp_path, cfg=cfg, video="02")
    assert "loaded 02" in app.status.value and app.session.source.name == "02"
    assert (app.kind.value, app.mode.value, app.area.value, app.largest.value) == ("error", "fixed", 7, True)
    assert app.value.value == pytest.approx(0.02) and not app.value.disabled
    res = app.session.result.cfg
    assert (res.map_kind, res.threshold, res.min_area, res.largest_only, res.alpha) == ("error", pytest.approx(0.02), 7,
                                                                                      True, 0.3)
    app.mode.value = "fork"  # locks the fork's map, area and largest-only, and gives them back after
    assert (app.kind.value, app.area.value, app.largest.value, app.kind.disabled) == ("ssim", 0, True, True)
    app.video.value = "01"
    assert app.area.value == 0 and app.session.result.cfg.min_area == 0
    app.mode.value = "otsu"
    assert (app.kind.value, app.area.value, app.largest.value, app.kind.disabled) == ("error", 7, True, False)
    with pytest.raises(ConfigError, match=r"no test video '99' .*\['01', '02'\]"):
        LocalizationApp(ckpt, data, out_dir=tmp_path, video="99")
    with pytest.raises(ConfigError, match="outside the app's range"):
        LocalizationApp(ckpt, data, out_dir=tmp_path, cfg=LocalizeConfig(threshold=1e-6))


def test_the_apps_fps_sets_the_exported_videos_rate(data, ckpt, tmp_path):
    app = LocalizationApp(ckpt, data, out_dir=tmp_path, fps=10)
    assert app.session.result.fps == 10.0
    cap = cv2.VideoCapture(str(export(app.session, tmp_path, "mp4")))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    cap.release()
    assert LocalizationApp(ckpt, data, out_dir=tmp_path).session.result.fps == 25.0  # frame folders record no rate
    with pytest.raises(LocalizeError, match="fps must be a frame rate above 0"):
        LocalizationApp(ckpt, data, out_dir=tmp_path, fps=-1)


def test_after_an_upload_the_earlier_test_video_can_be_chosen_again(data, ckpt, tmp_path):
    app = LocalizationApp(ckpt, data, out_dir=tmp_path)
    clip = split_dir(data, "testing") / "02"
    frames = sorted(clip.iterdir())
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for f in frames:
        writer.write(cv2.imread(str(f)))
    writer.release()
    app.upload.value = ({"name": "clip.avi", "content": memoryview(video.read_bytes()), "size": video.stat().st_size,
                         "type": "video/avi", "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
    assert "loaded upload clip.avi" in app.status.value and app.video.value is None
    app.video.value = "01"
    assert "loaded 01" in app.status.value and app.session.source.name == "01"


def _upload(app: LocalizationApp, name: str, frames: list[Path], out: Path) -> None:
    """Write frames as an MJPG AVI at out and upload it to the app as name."""
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for f in frames:
        writer.write(cv2.imread(str(f)))
    writer.release()
    app.upload.value = ({"name": name, "content": memoryview(out.read_bytes()), "size": out.stat().st_size,
                         "type": "video/avi", "last_modified": datetime.datetime.now(datetime.timezone.utc)},)


def test_an_upload_of_the_same_name_leaves_the_shown_one_alone_and_uploads_are_removed(data, ckpt, tmp_path):
    app = LocalizationApp(ckpt, data, out_dir=tmp_path / "app")
    frames = sorted((split_dir(data, "testing") / "02").iterdir())
    _upload(app, "clip.avi", frames, tmp_path / "long.avi")
    shown = app.session.source.path
    assert "loaded upload clip.avi" in app.status.value and shown.is_file()
    assert "calibrated on its first 6 frames, assumed normal; only 2 scored frames" in app.status.value
    _upload(app, "clip.avi", frames[:3], tmp_path / "short.avi")
    assert "has 3 frame(s)" in app.status.value
    app.status.value = ""
    app.frame.value = app.frame.max  # the upload on show still decodes
    assert app.session.source.path == shown and app.status.value == "" and len(open_source(shown)) == len(frames)
    assert [p for p in (tmp_path / "app" / "uploads").rglob("*") if p.is_file()] == [shown]
    _upload(app, "clip.avi", frames, tmp_path / "long.avi")
    assert app.session.source.path != shown and not shown.parent.exists()
    app.video.value = "01"
    assert "loaded 01" in app.status.value and not any((tmp_path / "app" / "uploads").iterdir())


def test_a_model_without_memory_is_offered_no_memory_map(data, tmp_path):
    import torch

    from mnadlib.checkpoint import save_checkpoint
    from mnadlib.config import ModelConfig
    from mnadlib.model import MNAD

    torch.manual_seed(0)
    nomem = save_checkpoint(tmp_path / "nomem.pt", MNAD(ModelConfig(width=0.0625, use_memory=False)).eval(), None,
                            train_config={"size": [32, 32]})
    app = LocalizationApp(nomem, data, out_dir=tmp_path)
    assert tuple(app.kind.options) == ("ssim", "error") and "loaded 01" in app.status.value
    refused = LocalizationApp(nomem, data, out_dir=tmp_path, cfg=LocalizeConfig(map_kind="memory"))
    assert "needs a model with memory" in refused.status.value and refused.session is None


def test_the_apps_gif_of_a_long_video_keeps_every_kth_frame(data, ckpt, tmp_path, monkeypatch):
    import imageio.v2 as imageio

    monkeypatch.setattr(widgets, "GIF_MAX_FRAMES", 4, raising=False)
    app = LocalizationApp(ckpt, data, out_dir=tmp_path)
    scored = len(app.session.result.frames)
    app._guard(app._export, "gif")
    every = -(-scored // 4)
    assert f"one scored frame in {every})" in app.status.value
    assert len(imageio.mimread(tmp_path / "01_annotated.gif")) == len(range(0, scored, every)) <= 4


def test_a_test_video_that_fails_to_load_can_be_chosen_again(data, ckpt, tmp_path):
    root = Path(shutil.copytree(data, tmp_path / "data"))
    masks = root / "testing" / "masks" / "02"
    spare = sorted(masks.iterdir())[-1].rename(tmp_path / "spare.png")
    app = LocalizationApp(ckpt, root, out_dir=tmp_path)
    app.video.value = "02"
    assert "masks but video 02" in app.status.value and app.video.value == "01" and app.session.source.name == "01"
    spare.rename(masks / spare.name)
    app.video.value = "02"
    assert "loaded 02" in app.status.value and app.session.source.name == "02"


def test_a_test_video_removed_after_the_app_started_is_a_clear_message(data, ckpt, tmp_path):
    root = Path(shutil.copytree(data, tmp_path / "data"))
    app = LocalizationApp(ckpt, root, out_dir=tmp_path)
    shutil.rmtree(split_dir(root, "testing") / "02")
    app.video.value = "02"
    assert "test video 02 is no longer in" in app.status.value and app.session.source.name == "01"
