"""Unit tests for mnadlib.localize: maps, thresholds, regions, streaming scores and metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.metrics import structural_similarity
from sklearn.metrics import roc_auc_score

from mnadlib import localize_metrics
from mnadlib.localize import (
    LocalizeError,
    StreamingNormalizer,
    anomaly_map,
    calibrate_threshold,
    error_map,
    find_regions,
    fork_threshold_mask,
    frame_decisions,
    memory_map,
    otsu_threshold,
    regions_to_records,
    resolve_threshold,
    segments,
    ssim_map,
    to_frame_size,
)
from mnadlib.localize_metrics import box_iou, peak_frame_auc, pixel_auroc, rbdc_tbdc, ucsd_pixel_criterion


def squares_map() -> np.ndarray:
    """A 40x60 map with three separated squares of different sizes and heights."""
    m = np.zeros((40, 60), dtype=np.float32)
    m[2:8, 3:9] = 0.5  # 6x6, box (3, 2, 9, 8)
    m[20:30, 10:20] = 0.9  # 10x10, box (10, 20, 20, 30)
    m[5:9, 40:44] = 0.7  # 4x4, box (40, 5, 44, 9)
    return m


# ---------------------------------------------------------------------------------------- maps


def test_error_map_constant_images():
    pred, target = np.full((8, 10, 3), 0.5), np.full((8, 10, 3), -0.5)
    e = error_map(pred, target)
    assert e.shape == (8, 10) and e.dtype == np.float32
    np.testing.assert_allclose(e, 0.25)  # ((0.75 - 0.25)) ** 2 on the [0, 1] scale
    target = np.zeros((8, 10, 3))
    target[..., 0] = 1.0  # one channel differs by 0.5 on the [0, 1] scale
    np.testing.assert_allclose(error_map(np.zeros((8, 10, 3)), target), 0.25 / 3, rtol=1e-6)
    np.testing.assert_allclose(error_map(np.ones((4, 4)), -np.ones((4, 4))), 1.0)  # (H, W) accepted


@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        (np.zeros((3, 16, 16)), np.zeros((3, 16, 16)), "looks like"),
        (np.full((8, 8, 3), 200.0), np.zeros((8, 8, 3)), r"\[-1, 1\]"),
        (np.zeros((8, 8, 3)), np.zeros((8, 9, 3)), r"\(8, 8, 3\) vs \(8, 9, 3\)"),
        (np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 8, 3)), "shape"),
    ],
)
def test_error_map_rejects_bad_images(pred, target, match):
    with pytest.raises(LocalizeError, match=match):
        error_map(pred, target)


def test_ssim_map_is_one_minus_skimages_full_map():
    """The localization's SSIM map is skimage's full map (float64, mean over channels), from the frame score's code."""
    rng = np.random.default_rng(1)
    for shape in ((24, 40, 3), (17, 9)):
        pred = rng.uniform(-1, 1, shape)
        target = np.clip(pred + rng.normal(0, 0.3, shape), -1, 1)
        _, ref = structural_similarity((pred + 1) / 2, (target + 1) / 2, data_range=1.0,
                                       channel_axis=-1 if len(shape) == 3 else None, full=True)
        ref = ref.mean(axis=-1) if len(shape) == 3 else ref
        np.testing.assert_allclose(ssim_map(pred, target), np.clip(1 - ref, 0, 1), atol=1e-6)


def test_ssim_map_range():
    rng = np.random.default_rng(0)
    img = rng.uniform(-1, 1, (32, 32, 3))
    assert np.allclose(ssim_map(img, img), 0.0, atol=1e-6)
    other = img.copy()
    other[8:24, 8:24] = -img[8:24, 8:24]
    s = ssim_map(img, other)
    assert s.shape == (32, 32) and 0.0 <= s.min() and s.max() <= 1.0
    assert s[12:20, 12:20].mean() > 0.5 > s[:2, :2].mean()
    with pytest.raises(LocalizeError, match="7x7"):
        ssim_map(np.zeros((5, 5)), np.zeros((5, 5)))


def test_memory_map_and_to_frame_size():
    d = np.arange(16, dtype=np.float32).reshape(4, 4)
    up = memory_map(d, (32, 48))
    assert up.shape == (32, 48) and up.dtype == np.float32
    assert d.min() <= up.min() and up.max() <= d.max()  # bilinear stays within the input range
    np.testing.assert_allclose(memory_map(np.full((4, 4), 0.3), (17, 23)), 0.3, rtol=1e-6)
    assert to_frame_size(np.zeros((64, 64)), (240, 360)).shape == (240, 360)
    with pytest.raises(LocalizeError, match="feature grid"):
        memory_map(np.zeros(16), (8, 8))
    with pytest.raises(LocalizeError, match="positive integers"):
        to_frame_size(np.zeros((4, 4)), (0, 5))


def test_anomaly_map_dispatch_and_smoothing():
    pred, target = np.zeros((16, 16, 3)), np.zeros((16, 16, 3))
    target[8, 8] = 1.0
    raw = anomaly_map("error", pred, target)
    np.testing.assert_allclose(raw, error_map(pred, target))
    smooth = anomaly_map("error", pred, target, smooth_sigma=2.0)
    assert smooth.max() < raw.max() and np.isclose(smooth.sum(), raw.sum(), rtol=1e-3)
    assert anomaly_map("ssim", pred, target, out_shape=(24, 20)).shape == (24, 20)
    assert anomaly_map("memory", distances=np.ones((2, 2)), out_shape=(8, 8)).shape == (8, 8)
    with pytest.raises(LocalizeError, match="needs pred and target"):
        anomaly_map("error", pred=pred)
    with pytest.raises(LocalizeError, match="out_shape"):
        anomaly_map("memory", distances=np.ones((2, 2)))
    with pytest.raises(LocalizeError, match="kind must be one of"):
        anomaly_map("psnr", pred, target)  # type: ignore[arg-type]
    with pytest.raises(LocalizeError, match="smooth_sigma"):
        anomaly_map("error", pred, target, smooth_sigma=-1)


def test_fork_threshold_mask_marks_changed_patch():
    rng = np.random.default_rng(1)
    img = rng.uniform(-1, 1, (40, 40, 3))
    assert not fork_threshold_mask(img, img).any()
    other = img.copy()
    other[10:20, 15:30] = rng.uniform(-1, 1, (10, 15, 3))
    mask = fork_threshold_mask(img, other)
    assert mask.dtype == bool and mask[12:18, 17:28].all()
    assert not mask[30:, :].any() and not mask[:, :8].any()
    (region,) = find_regions(mask.astype(np.float32), 0.5, open_close=0, largest_only=True)
    x0, y0, x1, y1 = region.box
    assert x0 <= 15 and y0 <= 10 and x1 >= 30 and y1 >= 20


# ---------------------------------------------------------------------------------- thresholds


def test_otsu_splits_bimodal_map():
    m = np.concatenate([np.full(500, 0.1), np.full(100, 0.8)]).reshape(20, 30)
    t = otsu_threshold(m)
    assert 0.1 <= t < 0.8
    assert resolve_threshold(m, "otsu") == t


def test_calibrated_percentile():
    maps = [np.arange(100.0).reshape(10, 10), np.arange(100.0, 200.0).reshape(10, 10)]
    assert calibrate_threshold(maps, 99.0) == pytest.approx(np.percentile(np.arange(200), 99.0))
    assert calibrate_threshold(np.stack(maps), 50.0) == pytest.approx(99.5)
    assert calibrate_threshold(maps[0], 100.0) == 99.0  # a single (H, W) map
    big = np.random.default_rng(0).uniform(0, 1, (256, 256))  # sampled: close to, not exactly, exact
    assert calibrate_threshold([big], 99.0) == pytest.approx(0.99, abs=0.005)
    with pytest.raises(LocalizeError, match="at least one"):
        calibrate_threshold([])
    with pytest.raises(LocalizeError, match=r"percentile must be in \[0.0, 100.0\]"):
        calibrate_threshold(maps, 101)


def test_resolve_threshold_modes_and_errors():
    m = np.zeros((4, 4))
    assert resolve_threshold(m, 0.3) == 0.3
    assert resolve_threshold(m, "calibrated", calibrated=0.2) == 0.2
    assert resolve_threshold(m, 2.5, kind="memory") == 2.5
    for bad in (float("nan"), -0.1, 1.5):
        with pytest.raises(LocalizeError, match=r"\[0.0, 1.0\]"):
            resolve_threshold(m, bad)
    with pytest.raises(LocalizeError, match="needs calibrated"):
        resolve_threshold(m, "calibrated")
    with pytest.raises(LocalizeError, match="'otsu' or 'calibrated'"):
        resolve_threshold(m, "auto")


# ------------------------------------------------------------------------------------- regions


def test_find_regions_finds_every_blob():
    regions = find_regions(squares_map(), 0.25, open_close=0)
    assert [r.box for r in regions] == [(10, 20, 20, 30), (40, 5, 44, 9), (3, 2, 9, 8)]  # by score
    assert [r.area for r in regions] == [100, 16, 36]
    assert [r.score for r in regions] == pytest.approx([0.9, 0.7, 0.5])
    assert [r.mean for r in regions] == pytest.approx([0.9, 0.7, 0.5])
    assert all(r.mask.shape == (40, 60) and r.mask.sum() == r.area for r in regions)
    assert not (regions[0].mask & regions[1].mask).any()


def test_find_regions_min_area_largest_only_and_morphology():
    m = squares_map()
    assert [r.area for r in find_regions(m, 0.25, min_area=20, open_close=0)] == [100, 36]
    (largest,) = find_regions(m, 0.25, open_close=0, largest_only=True)
    assert largest.box == (10, 20, 20, 30)
    assert find_regions(m, 0.95) == []
    m[35, 55] = 1.0  # a one-pixel speck: opening removes it, the squares keep their boxes
    regions = find_regions(m, 0.25, open_close=3)
    assert sorted(r.box for r in regions) == [(3, 2, 9, 8), (10, 20, 20, 30), (40, 5, 44, 9)]
    assert len(find_regions(m, 0.25, open_close=0)) == 4
    two = np.zeros((10, 10))
    two[2, 2] = two[3, 3] = 1.0  # diagonal neighbours: one 8-connected region
    assert len(find_regions(two, 0.5, open_close=0)) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": float("nan")}, "threshold"),
        ({"threshold": -0.5}, "threshold"),
        ({"threshold": 0.5, "min_area": -1}, "min_area"),
        ({"threshold": 0.5, "open_close": -3}, "open_close"),
    ],
)
def test_find_regions_rejects_bad_arguments(kwargs, match):
    with pytest.raises(LocalizeError, match=match):
        find_regions(squares_map(), **kwargs)


def test_regions_to_records_is_json_friendly():
    rows = regions_to_records(7, find_regions(squares_map(), 0.25, open_close=0))
    assert rows[0] == {"frame": 7, "x0": 10, "y0": 20, "x1": 20, "y1": 30, "area": 100,
                       "score": pytest.approx(0.9), "mean": pytest.approx(0.9)}
    json.dumps(rows)


# ------------------------------------------------------------------ frame decisions, streaming


def test_frame_decisions():
    np.testing.assert_array_equal(frame_decisions(np.array([0.9, 0.2, 0.5]), 0.5), [False, True, False])
    with pytest.raises(LocalizeError, match="threshold"):
        frame_decisions(np.zeros(3), float("nan"))


def test_streaming_normalizer():
    norm = StreamingNormalizer(alpha=0.6, q=(0, 100)).fit(np.array([20.0, 25.0, 30.0]), np.array([0.0, 1.0]))
    assert norm.psnr_range == (20.0, 30.0) and norm.dist_range == (0.0, 1.0)
    assert norm.score(25.0, 0.5) == pytest.approx(0.5)  # 0.6 * 0.5 + 0.4 * (1 - 0.5)
    np.testing.assert_allclose(norm.score(np.array([30.0, 20.0]), np.array([0.0, 1.0])), [1.0, 0.0])
    assert norm.score(35.0, 0.0) == pytest.approx(1.3)  # beyond the normal range: not clipped
    clipped = StreamingNormalizer(alpha=0.6, q=(0, 100), clip=True).fit([20.0, 30.0], [0.0, 1.0])
    assert clipped.score(35.0, 0.0) == 1.0
    robust = StreamingNormalizer().fit(np.arange(101.0), np.arange(101.0))  # 1st and 99th percentiles
    assert robust.psnr_range == (1.0, 99.0)
    with pytest.raises(LocalizeError, match="before fit"):
        StreamingNormalizer().score(1.0, 1.0)
    with pytest.raises(LocalizeError, match="no spread"):
        StreamingNormalizer().fit(np.ones(5), np.arange(5.0))
    with pytest.raises(LocalizeError, match="alpha"):
        StreamingNormalizer(alpha=1.5)


def test_segments():
    flags = np.array([0, 1, 1, 0, 1, 0, 1, 1, 1], dtype=bool)
    scores = np.array([0.9, 0.3, 0.2, 0.8, 0.4, 0.9, 0.1, 0.5, 0.3])
    assert segments(flags, scores) == [
        {"start": 1, "end": 2, "length": 2, "peak": 0.2},
        {"start": 4, "end": 4, "length": 1, "peak": 0.4},
        {"start": 6, "end": 8, "length": 3, "peak": 0.1},
    ]
    assert [s["start"] for s in segments(flags, min_length=2)] == [1, 6]
    assert segments(flags, scores, peak="max")[2]["peak"] == 0.5
    assert segments(flags)[0]["peak"] is None
    assert segments(np.zeros(5, dtype=bool)) == []
    assert segments(np.ones(3, dtype=bool)) == [{"start": 0, "end": 2, "length": 3, "peak": None}]
    with pytest.raises(LocalizeError, match="differ"):
        segments(flags, scores[:3])


# ------------------------------------------------------------------------------------- metrics


def test_pixel_auroc():
    gt = np.zeros((2, 8, 8), dtype=bool)
    gt[0, 2:4, 2:4] = True
    assert pixel_auroc(list(gt.astype(np.float32)), list(gt)) == 1.0  # the mask itself
    assert pixel_auroc([np.full((8, 8), 0.3)] * 2, list(gt)) == 0.5  # a constant map
    maps = [np.array([[0.1, 0.4], [0.35, 0.8]])]
    masks = [np.array([[0, 0], [1, 1]])]  # pairs (pos > neg): 0.35>0.1, 0.8>0.1, 0.8>0.4, not 0.35>0.4
    assert pixel_auroc(maps, masks) == pytest.approx(0.75)
    with pytest.raises(LocalizeError, match=r"\(8, 8\) differs from mask shape \(4, 4\)"):
        pixel_auroc([np.zeros((8, 8))], [np.zeros((4, 4))])
    with pytest.raises(LocalizeError, match="both anomalous and normal"):
        pixel_auroc([np.zeros((8, 8))], [np.zeros((8, 8))])
    with pytest.raises(LocalizeError, match="2 maps but 1 masks"):
        pixel_auroc([np.zeros((8, 8))] * 2, [np.zeros((8, 8))])


@pytest.mark.parametrize("sampled", [False, True])
def test_a_summary_fed_frame_by_frame_gives_the_metrics_of_the_whole_lists(sampled, monkeypatch):
    rng = np.random.default_rng(1)
    maps = [rng.random((12, 16)).astype(np.float32) for _ in range(6)]
    masks = [np.zeros((12, 16), bool) for _ in range(6)]
    for g in masks[::2]:
        g[3:7, 4:9] = True
    for m, g in zip(maps[:4], masks[:4]):  # two of the three anomalies stand out
        m[g] += 0.6
    dets = [np.where(m > 0.9, m, 0).astype(np.float32) for m in maps]
    if sampled:  # fewer pixels than the frames hold: the seeded sample, drawn frame by frame
        monkeypatch.setattr(localize_metrics, "MAX_AUROC_PIXELS", 500)
    summary = localize_metrics.PixelSummary(6 * 12 * 16)
    for m, g, d in zip(maps, masks, dets):
        summary.add(m, g, d)
    assert (summary.rate < 1) == sampled
    assert summary.pixel_auroc() == pixel_auroc(maps, masks)
    every = roc_auc_score(np.concatenate([g.ravel() for g in masks]), np.concatenate([m.ravel() for m in maps]))
    assert (summary.pixel_auroc() == every) != sampled  # unsampled: every pixel; sampled: not quite
    assert summary.peak_frame_auc() == peak_frame_auc(maps, masks)
    whole = ucsd_pixel_criterion(None, dets, masks)
    assert summary.ucsd_pixel_criterion()["auc"] == whole["auc"] and 0 < whole["auc"] < 1
    short = localize_metrics.PixelSummary(6 * 12 * 16 + 1)
    short.add(maps[0], masks[0])
    with pytest.raises(LocalizeError, match=r"^192 pixels were added but total_pixels is 1153"):
        short.pixel_auroc()
    with pytest.raises(LocalizeError, match="1 of the 2 frames came with a detection map"):
        bad = localize_metrics.PixelSummary(2 * 12 * 16)
        bad.add(maps[0], masks[0], dets[0])
        bad.add(maps[1], masks[1])
        bad.ucsd_pixel_criterion()


def test_peak_frame_auc_reads_the_peak_inside_the_mask():
    normal = [np.full((4, 4), v) for v in (1.0, 2.0, 3.0)]  # peaks 1, 2, 3
    hidden = np.zeros((4, 4))
    hidden[0, 0], hidden[3, 3] = 10.0, 2.5  # its brightest spot is off the anomaly; the anomaly's peak is 2.5
    found = np.zeros((4, 4))
    found[1, 1] = 4.0
    maps = [*normal, hidden, found]
    masks = [np.zeros((4, 4), dtype=bool) for _ in range(5)]
    masks[3][3, 3] = masks[4][1, 1] = True
    assert peak_frame_auc(maps, masks) == pytest.approx(5 / 6)  # 2.5 beats 1 and 2 of the three peaks, 4 beats all
    assert peak_frame_auc(maps[:4], masks[:4]) == pytest.approx(2 / 3)  # the frame max (10) would have scored 1.0
    with pytest.raises(LocalizeError, match="both anomalous frames"):
        peak_frame_auc(normal, masks[:3])
    with pytest.raises(LocalizeError, match="differs from mask shape"):
        peak_frame_auc([np.zeros((4, 4)), found], [np.zeros((2, 2)), masks[4]])


def test_pixel_auroc_samples_large_inputs(monkeypatch):
    monkeypatch.setattr(localize_metrics, "MAX_AUROC_PIXELS", 1000)
    rng = np.random.default_rng(3)
    masks = [rng.uniform(size=(40, 50)) < 0.2 for _ in range(4)]  # 8000 pixels, 1000 drawn
    maps = [m + rng.normal(0, 0.5, m.shape) for m in masks]
    first = pixel_auroc(maps, masks)
    assert first == pixel_auroc(maps, masks)  # seeded: the same sample every call
    monkeypatch.setattr(localize_metrics, "MAX_AUROC_PIXELS", 10**9)
    assert first == pytest.approx(pixel_auroc(maps, masks), abs=0.05)


def ucsd_case() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames: A anomalous 50% covered, B anomalous 30% covered, C normal with a false alarm, D clean."""
    masks = [np.zeros((10, 10), dtype=bool) for _ in range(4)]
    maps = [np.zeros((10, 10)) for _ in range(4)]
    masks[0][0, :] = masks[1][0, :] = True  # 10 true anomalous pixels each
    maps[0][0, :5] = 0.9  # 5 of 10 = 50%
    maps[1][0, :3] = 0.9  # 3 of 10 = 30%
    maps[2][5, 5] = 0.7  # one predicted pixel on a normal frame
    return maps, masks


def test_ucsd_criterion_coverage_and_false_positive():
    maps, masks = ucsd_case()
    r = ucsd_pixel_criterion(None, maps, masks, thresholds=np.array([0.5]))
    assert r["tpr"][0] == 0.5  # A counts (50% >= 40%), B does not (30%)
    assert r["fpr"][0] == 0.5  # C has a predicted pixel, D has none
    assert r["coverage"] == 0.4
    full = ucsd_pixel_criterion(None, maps, masks)  # exact operating points: crit A .9, B 0, C .7, D 0
    np.testing.assert_allclose(full["tpr"], [0, 0.5, 0.5, 1])
    np.testing.assert_allclose(full["fpr"], [0, 0, 0.5, 1])
    assert full["auc"] == pytest.approx(0.625)  # 0.5 * 0.5 + 0.5 * (0.5 + 1) / 2
    gated = ucsd_pixel_criterion(np.array([False, True, True, True]), maps, masks, thresholds=np.array([0.5]))
    assert gated["tpr"][0] == 0.0  # A's frame-level flag is off
    maps[1][0, 3] = 0.9  # B now covers exactly 4 of 10 = 40%
    assert ucsd_pixel_criterion(None, maps, masks, thresholds=np.array([0.5]))["tpr"][0] == 1.0


def test_ucsd_criterion_errors():
    maps, masks = ucsd_case()
    with pytest.raises(LocalizeError, match="both anomalous frames"):
        ucsd_pixel_criterion(None, maps[2:], masks[2:])
    with pytest.raises(LocalizeError, match="bool flags"):
        ucsd_pixel_criterion(np.array([0.3, 0.2, 0.1, 0.9]), maps, masks)
    with pytest.raises(LocalizeError, match="coverage"):
        ucsd_pixel_criterion(None, maps, masks, coverage=0.0)


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching, exclusive ends
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def two_tracks(frames: int = 10) -> list[list[tuple[str, tuple[int, int, int, int]]]]:
    """Two objects, "a" and "b", visible in every frame."""
    return [[("a", (0, 0, 10, 10)), ("b", (50, 50, 70, 70))] for _ in range(frames)]


def test_rbdc_tbdc_perfect_and_missing_detectors():
    gt = two_tracks()
    perfect = [[(box, 1.0) for _, box in frame] for frame in gt]
    r = rbdc_tbdc(perfect, gt)
    assert (r["rbdc"], r["tbdc"]) == (1.0, 1.0)
    missing = [[((100, 100, 110, 110), 0.8)] for _ in gt]  # always elsewhere: 1 FP per frame
    r = rbdc_tbdc(missing, gt)
    assert (r["rbdc"], r["tbdc"]) == (0.0, 0.0)
    np.testing.assert_allclose(r["fpr"], [1.0])
    assert rbdc_tbdc([[] for _ in gt], gt)["rbdc"] == 0.0  # no detections at all


def test_rbdc_tbdc_one_of_two_tracks():
    gt = two_tracks()
    only_a = [[((0, 0, 10, 10), 1.0)] for _ in gt]
    r = rbdc_tbdc(only_a, gt)
    assert r["rbdc"] == pytest.approx(0.5) and r["tbdc"] == pytest.approx(0.5)
    once_b = [list(frame) for frame in only_a]
    once_b[3].append(((52, 52, 70, 70), 0.6))  # IoU 0.81 with b, in 1 of b's 10 frames = 10%
    r = rbdc_tbdc(once_b, gt)
    assert r["rbdc"] == pytest.approx(0.55) and r["tbdc"] == pytest.approx(1.0)
    r = rbdc_tbdc(once_b, gt, track_fraction=0.2)
    assert r["tbdc"] == pytest.approx(0.5)


def test_rbdc_tbdc_false_positives_lower_the_area():
    gt = two_tracks()
    dets = [[(box, 0.5) for _, box in frame] for frame in gt]
    for f in (0, 1):
        dets[f].append(((100, 0, 120, 20), 0.9))  # confident false positives in 2 of 10 frames
    r = rbdc_tbdc(dets, gt)
    np.testing.assert_allclose(r["fpr"], [0.2, 0.2])
    np.testing.assert_allclose(r["rbdr"], [0.0, 1.0])
    assert r["rbdc"] == pytest.approx(0.8) and r["tbdc"] == pytest.approx(0.8)  # flat 0 up to FPR 0.2
    assert rbdc_tbdc(dets, gt, fpr_max=0.1)["rbdc"] == 0.0
    assert rbdc_tbdc(dets, gt, num_frames=20)["rbdc"] == pytest.approx(0.9)  # FPR 0.1


def test_rbdc_iou_boundary_and_errors():
    gt = [[("a", (0, 0, 10, 10))]]
    assert rbdc_tbdc([[((0, 0, 10, 1), 1.0)]], gt)["rbdc"] == 1.0  # IoU exactly 0.1 counts
    assert rbdc_tbdc([[((0, 0, 10, 1), 1.0)]], gt, iou=0.2)["rbdc"] == 0.0
    with pytest.raises(LocalizeError, match="frames"):
        rbdc_tbdc([[], []], gt)
    with pytest.raises(LocalizeError, match="ground-truth region"):
        rbdc_tbdc([[]], [[]])
    with pytest.raises(LocalizeError, match="iou"):
        rbdc_tbdc([[]], gt, iou=0.0)
    with pytest.raises(LocalizeError, match="num_frames"):
        rbdc_tbdc([[]], gt, num_frames=0)
