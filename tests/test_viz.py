"""Figures: each function returns a Figure with the expected content, and ``save`` writes the files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from mnadlib import viz
from mnadlib.evaluate import EvalResult, VideoScores


def _result(n_videos: int = 3, length: int = 30) -> EvalResult:
    """An evaluation result whose anomalous frames score low."""
    rng = np.random.default_rng(0)
    videos = {}
    for v in range(n_videos):
        label = np.zeros(length, dtype=int)
        label[10 + v : 20 + v] = 1
        score = 0.8 - 0.5 * label + 0.1 * rng.random(length)
        videos[f"{v + 1:02d}"] = VideoScores(frames=list(range(4, 4 + length)), score=score.tolist(), label=label.tolist())
    return EvalResult(videos, auc=None, macro_auc=None, config={})


def test_score_curves_one_panel_per_video_with_shading() -> None:
    fig = viz.score_curves(_result(3))
    axes = fig.get_axes()
    assert len(axes) == 3
    assert all(len(ax.get_lines()) == 1 for ax in axes)
    assert all(len(ax.patches) == 1 for ax in axes)  # one anomalous run shaded per video


def test_score_curves_say_when_videos_are_left_out() -> None:
    assert "first 2 of 3 test videos" in viz.score_curves(_result(3), max_videos=2).get_suptitle()
    assert "first" not in viz.score_curves(_result(3), max_videos=3).get_suptitle()
    assert viz.score_curves(_result(3)).get_axes()[0].get_ylabel() == "score (high: normal)"


def test_score_curves_accepts_json_form_and_rescored_scores() -> None:
    res = _result(2)
    scores = {name: np.ones(len(s.score)) for name, s in res.videos.items()}
    fig = viz.score_curves(res.to_dict(), scores=scores)
    assert np.allclose(fig.get_axes()[0].get_lines()[0].get_ydata(), 1.0)


def test_roc_curves_one_line_per_method_plus_chance() -> None:
    res = _result(2)
    fig = viz.roc_curves({"a": viz.result_curve(res), "b": viz.result_curve(res)})
    ax = fig.get_axes()[0]
    assert len(ax.get_lines()) == 3
    assert "AUC 100.0%" in ax.get_legend().get_texts()[0].get_text()


@pytest.mark.parametrize("kind", ["tensor", "uint8"])
def test_example_frames_three_panels_per_row(kind: str) -> None:
    if kind == "tensor":
        ex = (torch.zeros(3, 16, 24), torch.ones(3, 16, 24) * 0.5)
    else:
        ex = (np.zeros((16, 24, 3), np.uint8), np.full((16, 24, 3), 200, np.uint8))
    mask = np.zeros((32, 48), bool)
    mask[4:10, 4:10] = True
    fig = viz.example_frames([ex, ex], titles=["x", "y"], masks=[mask, None])
    assert len(fig.get_axes()) == 8  # three panels per row and the error map's colour bar
    err = fig.get_axes()[2].get_images()[0].get_array()
    assert err.shape == (16, 24) and float(err.max()) > 0


def test_example_error_maps_share_one_colour_scale() -> None:
    """A normal frame's small error must not be stretched to look like an anomaly's large one."""
    target = torch.zeros(3, 16, 24)
    fig = viz.example_frames([(target, target + 1.0), (target, target + 0.1)], titles=["anomalous", "normal"])
    maps = [ax.get_images()[0] for ax in fig.get_axes() if ax.get_images() and ax.get_images()[0].get_cmap().name == "inferno"]
    assert len(maps) == 2
    assert maps[0].get_clim() == maps[1].get_clim() == (0.0, pytest.approx(0.25))
    assert len(fig.get_axes()) == 8  # six panels and a colour bar beside each error map


def test_to_rgb_flips_bgr_and_scales() -> None:
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 255  # blue
    rgb = viz.to_rgb(bgr)
    assert rgb[0, 0].tolist() == [0.0, 0.0, 1.0]
    assert viz.to_rgb(-torch.ones(3, 2, 2)).max() == 0.0


def test_tsne_queries_colours_points_by_nearest_item() -> None:
    rng = np.random.default_rng(0)
    items = rng.normal(size=(4, 8))
    nearest = rng.integers(0, 4, size=120)
    queries = items[nearest] + 0.05 * rng.normal(size=(120, 8))
    fig = viz.tsne_queries(queries, nearest, items, max_points=80)
    ax = fig.get_axes()[0]
    points, stars = ax.collections
    assert points.get_offsets().shape == (80, 2)
    assert stars.get_offsets().shape == (4, 2)


def test_training_curves_and_memory_usage() -> None:
    hist = [{"epoch": e, "loss": 1.0 / e, "pixel": 0.5 / e, "compactness": 0.1, "separateness": 0.2,
             "memory_usage": [5, 0, 3]} for e in (1, 2, 3)]
    fig = viz.training_curves({"a": hist, "b": hist})
    assert len(fig.get_axes()) == 4
    assert all(len(ax.get_lines()) == 2 for ax in fig.get_axes())
    bars = viz.memory_usage(hist).get_axes()[0].patches
    assert [round(b.get_height(), 1) for b in bars] == [62.5, 0.0, 37.5]


def test_training_curves_leave_a_run_without_memory_out_of_the_memory_losses() -> None:
    """pred_nomem has no compactness or separateness; a line at zero there read as a perfect memory loss."""
    def hist(compact: float) -> list[dict]:
        return [{"epoch": e, "loss": 1.0 / e, "pixel": 0.5 / e, "compactness": compact / e, "separateness": compact}
                for e in (1, 2)]
    fig = viz.training_curves({"pred_mem": hist(0.1), "pred_nomem": hist(0.0), "recon_mem": hist(0.2)})
    total, _, compactness, separateness = fig.get_axes()
    assert [line.get_label() for line in compactness.get_lines()] == ["pred_mem", "recon_mem"]
    assert [line.get_label() for line in separateness.get_lines()] == ["pred_mem", "recon_mem"]
    assert compactness.get_yscale() == "log"
    colour = {line.get_label(): line.get_color() for line in total.get_lines()}
    assert all(line.get_color() == colour[line.get_label()] for line in compactness.get_lines())
    only = viz.training_curves({"pred_nomem": hist(0.0)}).get_axes()[2]
    assert not only.get_lines() and only.texts[0].get_text() == "no run with memory"


def test_frames_with_masks_and_label_timeline() -> None:
    frames = [np.zeros((12, 18, 3), np.uint8)] * 3
    mask = np.zeros((12, 18), bool)
    mask[2:5, 2:5] = True
    fig = viz.frames_with_masks(frames, [mask, None, mask], ["a", "b", "c"], cols=2)
    assert len(fig.get_axes()) == 3
    fig = viz.label_timeline({"01": np.array([0, 1, 1, 0]), "02": np.zeros(5, int)})
    assert [t.get_text() for t in fig.get_axes()[0].get_yticklabels()] == ["01", "02"]


def test_save_writes_png_and_svg(tmp_path) -> None:
    fig = viz.score_curves(_result(1))
    assert isinstance(fig, Figure)
    paths = viz.save(fig, tmp_path / "sub" / "curves", svg=True)
    assert [p.name for p in paths] == ["curves.png", "curves.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in paths[1].read_bytes()[:500]
    assert not fig.get_axes()  # released


def test_save_replaces_a_figure_atomically(tmp_path, monkeypatch) -> None:
    """A figure that cannot be written (a full disk) leaves the earlier PNG whole, and no temporary file."""
    import errno
    import os

    from mnadlib.checkpoint import WriteError

    png = viz.save(viz.score_curves(_result(1)), tmp_path / "curves")[0]
    before = png.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match="is the disk full"):
        viz.save(viz.score_curves(_result(2)), tmp_path / "curves")
    assert png.read_bytes() == before and list(tmp_path.iterdir()) == [png]
