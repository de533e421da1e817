"""The interactive localization app: its callbacks across the slider ranges, exports, and bad input.

The callbacks are called directly with the values the sliders can take; the ipywidgets app is
built and driven headless (no browser) to check that bad input ends in a status message.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mnadlib import synth
from mnadlib.data import DataError, list_videos, open_source, split_dir
from mnadlib.localize import LocalizeError
from mnadlib.localize_video import LocalizeConfig, fit_normal, load_model
from mnadlib.widgets import (THRESHOLD_CHOICES, LocalizationApp, curve_png, export, frame_view, message,
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
            assert all(r["area"] >= area for rows in res.boxes for r in rows) or mode == "fork"
            if area == 5:
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
    short = tmp_path / "short"
    short.mkdir()
    for i in range(4):
        cv2.imwrite(str(short / f"{i}.png"), np.zeros((40, 40, 3), np.uint8))
    model, items, size = load_model(ckpt)
    with pytest.raises(LocalizeError, match="at least"):
        open_session(open_source(short), model, items, LocalizeConfig(size=size))


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
