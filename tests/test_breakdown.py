"""Frame AUC by anomaly kind and by visible anomaly size, on hand-made scores and on synthped's masks."""

from __future__ import annotations

import numpy as np
import pytest

from mnadlib import synth
from mnadlib.breakdown import AREA_BINS, area_bin, areas_from_masks, auc_by_kind, auc_by_size, visible_area
from mnadlib.data import list_videos, load_labels, split_dir
from mnadlib.evaluate import EvalResult, VideoScores


def _result() -> EvalResult:
    """Two videos; PSNR rises to each video's best early, so the running-max scores are PSNR minus that best."""
    videos = {"01": VideoScores(frames=[4, 5, 6, 7, 8], score=[0.9, 0.8, 0.1, 0.2, 0.85], label=[0, 0, 1, 1, 1],
                                psnr=[30.0, 31.0, 29.0, 30.5, 25.0]),
              "02": VideoScores(frames=[4, 5, 6], score=[0.7, 0.95, 0.6], label=[0, 0, 1], psnr=[33.0, 32.0, 32.5])}
    return EvalResult(videos, auc=None, macro_auc=None, config={})


def test_auc_by_kind_separates_what_the_score_sees_from_what_it_misses() -> None:
    objects = {"01": [{"kind": "cart", "frames": [6, 7]}, {"kind": "lawn_walker", "frames": [7, 8]}],
               "02": [{"kind": "lawn_walker", "frames": [6]}], "03": [{"kind": "cart", "frames": [1]}]}
    rows = auc_by_kind(_result(), objects)
    # cart frames (0.1, 0.2) score below every normal frame (0.7..0.95): perfectly separated.
    # Running max: normals 0, 0, 0, -1; cart frames -2, -0.5: 4 + 3 of 8 pairs ranked right.
    assert rows[0] == {"kind": "cart", "frames": 2, "frame_auc": 100.0, "frame_auc_running": 87.5}
    # lawn walker frames (0.2, 0.85, 0.6) against the normals: 4 + 2 + 4 of 12 pairs ranked right;
    # running max -0.5, -6, -0.5 against 0, 0, 0, -1: 3 + 4 + 3 of 12.
    assert rows[1] == {"kind": "lawn_walker", "frames": 3, "frame_auc": round(100 * 10 / 12, 2),
                       "frame_auc_running": round(100 * 10 / 12, 2)}
    with pytest.raises(ValueError, match="labels"):
        auc_by_kind(EvalResult({"01": VideoScores(frames=[4], score=[0.5], psnr=[30.0])}, None, None, {}), objects)
    with pytest.raises(ValueError, match="PSNR"):
        auc_by_kind(EvalResult({"01": VideoScores(frames=[4], score=[0.5], label=[1])}, None, None, {}), objects)


def test_area_bins_are_fixed_fractions_of_the_frame() -> None:
    assert [area_bin(a) for a in (0.0, 0.0024, 0.0025, 0.007, 0.01, 0.019, 0.02, 0.5)] == [
        AREA_BINS[0], AREA_BINS[0], AREA_BINS[1], AREA_BINS[2], AREA_BINS[3], AREA_BINS[3], AREA_BINS[4], AREA_BINS[4]]
    masks = np.zeros((2, 10, 20), bool)
    masks[1, :2, :5] = True
    assert visible_area(masks).tolist() == [0.0, 0.05]
    with pytest.raises(ValueError, match="T, H, W"):
        visible_area(masks[0])


def test_auc_by_size_scores_each_bin_against_every_normal_frame() -> None:
    # video 01's anomalous frames 6, 7, 8 cover 0.1 %, 3 % and 3 %; video 02 has no masks, so its
    # anomalous frame is left out while its normal frames still count
    areas = {"01": np.array([0, 0, 0, 0, 0, 0, 0.001, 0.03, 0.03])}
    rows = auc_by_size(_result(), areas)
    assert [r["visible_area"] for r in rows] == [AREA_BINS[0], AREA_BINS[4]]
    assert rows[0] == {"visible_area": AREA_BINS[0], "frames": 1, "frame_auc": 100.0, "frame_auc_running": 100.0}
    # large frames score 0.2 and 0.85 against normals 0.9, 0.8, 0.7, 0.95: 4 + 2 of 8 pairs;
    # running max -0.5 and -6 against 0, 0, 0, -1: 3 + 4 of 8
    assert rows[1] == {"visible_area": AREA_BINS[4], "frames": 2, "frame_auc": 75.0, "frame_auc_running": 87.5}
    with pytest.raises(ValueError, match="one value per frame"):
        auc_by_size(_result(), {"01": np.zeros(8)})


def test_areas_from_synthped_masks_match_its_labels(tmp_path) -> None:
    cfg = synth.SynthPreset(size=(48, 64), train_lengths=(12,), test_lengths=(14, 12), normal_test_videos=1, crowd=(1, 2))
    synth.generate(tmp_path, preset=cfg, seed=3)
    root = tmp_path / "synthped"
    videos = list_videos(split_dir(root, "testing"))
    areas = areas_from_masks(root, videos)
    labels = load_labels(tmp_path / "frame_labels_synthped.npy", [(v.name, len(v)) for v in videos])
    assert set(areas) == {v.name for v in videos}
    for v in videos:
        assert len(areas[v.name]) == len(v)
        assert np.array_equal(areas[v.name] > 0, labels[v.name].astype(bool))
