"""Scores equal the authors' utils.py formulas; the O(n) normalisation equals their O(n^2) loop; SSIM equals skimage's; the zero-motion baseline and the running-max rescoring."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mnadlib import scoring
from mnadlib.config import ConfigError, EvalConfig, ModelConfig, validate_size
from mnadlib.data import DataError, list_videos, load_frame
from mnadlib.evaluate import (EvalResult, NormalStats, VideoScores, evaluate, mean_psnr, rescore, summarise,
                              within_video_sd, zero_motion_baseline)
from mnadlib.memory import init_items
from mnadlib.model import MNAD
from mnadlib.ablation import prediction_quality
from skimage.metrics import structural_similarity


def test_minmax_equals_authors_loop():
    x = np.random.default_rng(0).normal(30, 3, 50)
    ref = [(v - np.min(x)) / (np.max(x) - np.min(x)) for v in x]
    np.testing.assert_array_equal(scoring.minmax(x), ref)
    assert (scoring.minmax([2.0, 2.0]) == 0).all()


def test_regularity_and_auc():
    psnr = [30, 31, 20, 32]
    dist = [0.1, 0.1, 0.5, 0.1]
    s = scoring.regularity(psnr, dist, 0.6)
    assert s.argmin() == 2 and s.max() <= 1 and s.min() >= 0
    assert scoring.frame_auc(s, np.array([0, 0, 1, 0])) == 1.0
    with pytest.raises(ValueError, match="both normal and anomalous"):
        scoring.frame_auc(s, np.zeros(4))


def test_psnr_and_point_score():
    a = torch.zeros(1, 3, 4, 4)
    b = torch.full((1, 3, 4, 4), 0.2)  # 0.1 apart on the [0, 1] scale
    mse = scoring.mse_per_frame(a, b)[0].item()
    assert math.isclose(mse, 0.01, rel_tol=1e-6)
    assert math.isclose(scoring.psnr(mse), 20.0, rel_tol=1e-6)
    assert math.isclose(scoring.point_score(a, b), 0.01, rel_tol=1e-5)  # uniform error: weights cancel


def test_scoring_refuses_frames_of_different_shapes_and_a_negative_mse() -> None:
    batch, one = torch.zeros(2, 3, 4, 4), torch.zeros(3, 4, 4)
    with pytest.raises(scoring.ScoreError, match=r"\(2, 3, 4, 4\) and target \(3, 4, 4\) differ in shape"):
        scoring.mse_per_frame(batch, one)  # would broadcast into a wrong (2,) answer
    with pytest.raises(scoring.ScoreError, match="never negative"):
        scoring.psnr(-1.0)
    assert math.isnan(scoring.psnr(float("nan")))  # left for _score to report with its video


def test_macro_auc_skips_single_class_videos():
    scores = {"a": np.array([1.0, 0.0]), "b": np.array([0.5, 0.4])}
    labels = {"a": np.array([0, 1]), "b": np.array([0, 0])}
    assert scoring.macro_auc(scores, labels) == 1.0


@pytest.mark.parametrize("size", [(250, 256), (0, 8), ("a", 8), (8,)])
def test_size_must_be_multiple_of_8(size):
    with pytest.raises(ConfigError):
        validate_size(size)


def test_config_errors():
    with pytest.raises(ConfigError, match="test_time_update"):
        EvalConfig(batch_size=4)
    with pytest.raises(ConfigError, match="batch_size must be >= 1, got 0"):
        EvalConfig(batch_size=0, test_time_update=False)
    with pytest.raises(ConfigError, match="num_workers must be >= 0"):
        EvalConfig(num_workers=-1)
    for th in (float("nan"), float("inf")):  # the JSON result once held NaN, and the update ran never (nan) or always
        with pytest.raises(ConfigError, match="th must be a finite number"):
            EvalConfig(th=th)
    with pytest.raises(ConfigError, match="method"):
        ModelConfig(method="flow")  # type: ignore[arg-type]
    assert ModelConfig(method="recon").t_length == 1
    assert ModelConfig(width=0.25).channels == (16, 32, 64, 128)


def test_mean_ssim_equals_skimage_and_ssim_db_is_its_decibels() -> None:
    """Batched SSIM is the mean of skimage's full SSIM map (every pixel, edges mirrored); ssim_db = -10 log10(1 - SSIM)."""
    torch.manual_seed(0)
    target = torch.rand(3, 3, 20, 24) * 2 - 1
    output = (target + 0.3 * torch.randn_like(target)).clamp(-1, 1)
    ref = [structural_similarity(((o + 1) / 2).permute(1, 2, 0).double().numpy(), ((t + 1) / 2).permute(1, 2, 0).double().numpy(),
                                 data_range=1.0, channel_axis=-1, full=True)[1].mean() for o, t in zip(output, target)]
    ssim = scoring.mean_ssim(output, target)
    np.testing.assert_allclose(ssim.numpy(), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(scoring.ssim_db(output, target).numpy(), -10 * np.log10(1 - np.array(ref)), rtol=1e-12)
    assert scoring.ssim_db(target, target).tolist() == pytest.approx([100.0] * 3)  # identical frames: the floor, finite
    assert (scoring.ssim_db(output[:, :, ::2, ::2], target[:, :, ::2, ::2]) < 100).all()
    with pytest.raises(ValueError, match="at least 7x7"):
        scoring.mean_ssim(output[..., :6], target[..., :6])


def test_zero_motion_baseline_scores_the_jump_and_aligns_with_the_model_frames(tmp_path: Path) -> None:
    """A still scene with one sudden change: the baseline ranks that frame lowest, PSNR computed as the paper's."""
    rng = np.random.default_rng(0)
    still = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for name, jump in (("01", 7), ("02", None)):
        folder = tmp_path / name
        folder.mkdir()
        for t in range(10):
            img = still.copy()
            if jump is not None and t >= jump:  # a change that stays: only its first frame differs from the one before
                img[8:16, 8:16] = 255 - img[8:16, 8:16]
            img[0, 0] = t  # a little change everywhere, so no PSNR is infinite
            cv2.imwrite(str(folder / f"{t:03d}.png"), img)
    videos = list_videos(tmp_path)
    labels = {"01": np.array([0] * 7 + [1] + [0] * 2), "02": np.zeros(10, int)}
    res = zero_motion_baseline(videos, 5, (32, 32), labels, batch_size=3)
    assert res.videos["01"].frames == list(range(4, 10)) == res.videos["02"].frames
    s = res.videos["01"]
    assert int(np.argmin(s.score)) == s.frames.index(7) and s.score[s.frames.index(7)] == 0.0
    assert res.macro_auc == 1.0
    prev, cur = (load_frame(videos[0], t, (32, 32)) for t in (6, 7))
    mse = float((((cur - prev) / 2) ** 2).mean())
    assert s.psnr[s.frames.index(7)] == pytest.approx(10 * np.log10(1 / mse), rel=1e-5)
    assert int(np.argmin(s.ssim_db)) == s.frames.index(7)  # the SSIM extension sees the jump too
    assert s.ssim_db[s.frames.index(7)] == pytest.approx(scoring.ssim_db(*(torch.as_tensor(f).permute(2, 0, 1)[None] for f in (prev, cur))).item())
    with pytest.raises(ValueError, match="t_length >= 2"):
        zero_motion_baseline(videos, 1, (32, 32))
    with pytest.raises(DataError, match="labels"):
        zero_motion_baseline(videos, 5, (32, 32), {"01": labels["01"]})


def test_repeated_frames_keep_every_score_finite(tmp_path: Path) -> None:
    """Real footage repeats frames (frame-rate conversion): copying one gives MSE 0, which must not become NaN."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "01"
    folder.mkdir()
    frames = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(5)]
    for t in range(10):
        cv2.imwrite(str(folder / f"{t:03d}.png"), frames[t // 2])  # every frame shown twice
    labels = {"01": np.array([0] * 8 + [1] * 2)}
    res = zero_motion_baseline(list_videos(tmp_path), 5, (32, 32), labels)
    psnr = np.asarray(res.videos["01"].psnr)
    assert psnr.max() == pytest.approx(120.0) and psnr.min() < 20  # repeats score 120 dB, changes far less
    assert np.isfinite(res.videos["01"].score).all() and res.auc is not None
    for error, norm in (("frame", "video"), ("frame", "running"), ("ssim", "running"), ("patch", "video")):
        scores, auc, _ = rescore(res, 1.0, error=error, norm=norm)
        assert np.isfinite(scores["01"]).all() and auc is not None and 0 <= auc <= 1, (error, norm)
    assert scoring.psnr(0.0) == pytest.approx(120.0) and scoring.psnr(2.5e-12) < 120


def test_mean_psnr_and_prediction_quality_split_normal_from_anomalous_frames() -> None:
    """Means over the labelled frames only, the gap normal minus anomalous, and no number without labels."""
    model = EvalResult({"01": VideoScores(frames=[4, 5, 6], psnr=[30.0, 32.0, 24.0], label=[0, 0, 1]),
                        "02": VideoScores(frames=[4, 5], psnr=[34.0, 22.0], label=[0, 1])}, None, None, {})
    copy = EvalResult({"01": VideoScores(frames=[4, 5, 6], psnr=[36.0, 36.0, 35.0], label=[0, 0, 1]),
                       "02": VideoScores(frames=[4, 5], psnr=[36.0, 33.0], label=[0, 1])}, None, None, {})
    assert mean_psnr(model) == 32.0 and mean_psnr(model, 1) == 23.0 and mean_psnr(model, None) == 28.4
    rows = prediction_quality("pred_mem", model, copy)
    assert within_video_sd(model) == 1.0  # video 01: normal 30, 32 -> sd 1; video 02 has one normal frame
    assert rows == [{"predictor": "pred_mem", "normal_psnr": 32.0, "anomalous_psnr": 23.0, "gap_db": 9.0,
                     "normal_sd_db": 1.0},
                    {"predictor": "zero_motion (the previous frame)", "normal_psnr": 36.0, "anomalous_psnr": 34.0,
                     "gap_db": 2.0, "normal_sd_db": 0.0}]
    unlabelled = EvalResult({"01": VideoScores(frames=[4], psnr=[30.0])}, None, None, {})
    assert mean_psnr(unlabelled) is None and mean_psnr(unlabelled, None) == 30.0
    assert prediction_quality("recon_mem", unlabelled, None) == [
        {"predictor": "recon_mem", "normal_psnr": None, "anomalous_psnr": None, "gap_db": None, "normal_sd_db": None}]


def test_rescore_running_max_is_online_and_comparable_across_videos() -> None:
    """The running-max score uses no future frame, ignores each video's PSNR level, and refuses alpha != 1."""
    quiet = [40.0, 40.2, 40.1, 37.5, 40.3]  # a quiet video: high PSNR, an anomaly at frame 3
    crowd = [30.0, 31.0, 30.5, 30.8, 31.2]  # a crowded, fully normal video: lower PSNR all along
    videos = {"01": VideoScores(frames=list(range(5)), psnr=quiet, feature_distance=[0.0] * 5, label=[0, 0, 0, 1, 0]),
              "02": VideoScores(frames=list(range(5)), psnr=crowd, feature_distance=[0.0] * 5, label=[0] * 5)}
    result = EvalResult(videos, None, None, {})
    scores, auc, _ = rescore(result, 1.0, norm="running")
    assert scores["01"].tolist() == pytest.approx([0.0, 0.0, -0.1, -2.7, 0.0])
    assert scores["02"].tolist() == pytest.approx([0.0, 0.0, -0.5, -0.2, 0.0])
    assert auc == 1.0  # the anomaly is the frame furthest below its video's best so far
    prefix = EvalResult({"01": VideoScores(frames=[0, 1, 2], psnr=quiet[:3], feature_distance=[0.0] * 3)}, None, None, {})
    assert rescore(prefix, 1.0, norm="running")[0]["01"].tolist() == scores["01"][:3].tolist()  # the future changes nothing
    assert rescore(result, 1.0, norm="normal", stats=NormalStats((30, 40), (0, 1), (30, 40), (10, 20)))[1] < 0.5  # the crowd sinks it
    with pytest.raises(ValueError, match="no per-frame ssim_db: evaluate again"):
        rescore(result, 1.0, error="ssim", norm="running")  # a result written before the SSIM extension
    for name, s in result.videos.items():
        s.ssim_db = [p - 20 for p in s.psnr]  # the same ranking in other dB
    ssim_scores, ssim_auc, _ = rescore(result, 1.0, error="ssim", norm="running")
    assert ssim_auc == auc and all(np.allclose(ssim_scores[n], scores[n]) for n in scores)
    with pytest.raises(ValueError, match="error must be"):
        rescore(result, 1.0, error="mse")
    with pytest.raises(ValueError, match="alpha=1"):
        rescore(result, 0.6, norm="running")
    with pytest.raises(ValueError, match="norm must be"):
        rescore(result, 1.0, norm="online")


@pytest.mark.parametrize("labels", [np.array([0, 255, 0, 0], dtype=np.uint8), np.array([1, 2, 1, 1]),
                                    np.array([0.0, 0.5, 0.0, 0.0]), np.array([0.0, np.nan, 0.0, 0.0]), np.array(list("0100"))])
def test_frame_auc_and_roc_refuse_labels_other_than_0_and_1(labels: np.ndarray) -> None:
    """uint8 0/255 labels (a mask's maximum) once wrapped in ``1 - label`` and gave the inverted AUC 0.0."""
    s = np.array([0.9, 0.1, 0.8, 0.7])
    with pytest.raises(scoring.ScoreError, match="0 \\(normal\\) or 1 \\(anomalous\\)"):
        scoring.frame_auc(s, labels)
    with pytest.raises(scoring.ScoreError, match="0 \\(normal\\) or 1 \\(anomalous\\)"):
        scoring.roc(s, labels)
    good = np.array([0, 1, 0, 0])
    for ok in (good, good.astype(bool), good.astype(np.uint8), good.astype(np.float32), good[None]):
        assert scoring.frame_auc(s, ok) == 1.0
        fpr, tpr = scoring.roc(s, ok)
        assert tpr[1] == 1.0 and fpr[1] == 0.0


def test_scores_and_labels_that_do_not_pair_up_are_clear_errors() -> None:
    """Mismatched lengths, video names or an alpha outside [0, 1] once gave numpy's or sklearn's errors, or a number."""
    with pytest.raises(scoring.ScoreError, match="3 PSNR values but 2 feature distances"):
        scoring.regularity([30.0, 31.0, 32.0], [0.1, 0.2], 0.6)
    for alpha in (-3.0, 5.0, float("nan")):
        with pytest.raises(scoring.ScoreError, match="alpha must be in \\[0, 1\\]"):
            scoring.regularity([30.0, 31.0], [0.1, 0.2], alpha)
    for check in (scoring.frame_auc, scoring.roc):
        with pytest.raises(scoring.ScoreError, match="3 scores but 4 labels"):
            check(np.array([0.9, 0.1, 0.8]), np.array([0, 1, 0, 0]))
    with pytest.raises(scoring.ScoreError, match="only scores for \\['a'\\], only labels for \\['b'\\]"):
        scoring.macro_auc({"a": np.array([0.9, 0.1])}, {"b": np.array([0, 1])})
    result = EvalResult({"01": VideoScores(frames=[0, 1], psnr=[30.0, 20.0], feature_distance=[0.1, 0.2], label=[0, 1])},
                        None, None, {})
    with pytest.raises(scoring.ScoreError, match="alpha must be in"):
        rescore(result, 5.0)


def _tiny_videos(root: Path, lengths: tuple[int, ...] = (8, 8)) -> list:
    """Frame folders 01, 02, ... of random 32 x 32 frames."""
    rng = np.random.default_rng(2)
    for v, n in enumerate(lengths, 1):
        folder = root / f"{v:02d}"
        folder.mkdir(parents=True)
        for t in range(n):
            cv2.imwrite(str(folder / f"{t:03d}.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return list_videos(root)


def _tiny_model(use_memory: bool = True) -> tuple[MNAD, torch.Tensor]:
    """An untrained width-0.0625 prediction model and its memory items."""
    torch.manual_seed(0)
    cfg = ModelConfig(width=0.0625, use_memory=use_memory)
    return MNAD(cfg).eval(), init_items(cfg.msize, cfg.fdim, torch.Generator().manual_seed(0))


def test_a_model_with_non_finite_output_is_an_error_not_an_auc(tmp_path: Path) -> None:
    """One NaN weight made every PSNR NaN; min-max turned them into zeros and the feature distance alone gave an AUC."""
    videos = _tiny_videos(tmp_path)
    labels = {"01": np.array([0] * 6 + [1] * 2), "02": np.zeros(8, int)}
    model, items = _tiny_model()
    with torch.no_grad():
        model.decoder.moduleDeconv1[6].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(scoring.ScoreError, match="video '01': 4 of 4 scored frames have a NaN or infinite psnr"):
        evaluate(model, items, videos, EvalConfig(size=(32, 32)), labels)
    with pytest.raises(scoring.ScoreError, match="1 of 3 values to normalise are NaN"):
        scoring.minmax([1.0, float("nan"), 3.0])
    with pytest.raises(scoring.ScoreError, match="1 of 4 scores are NaN"):
        scoring.frame_auc(np.array([0.9, np.nan, 0.8, 0.7]), np.array([0, 1, 0, 0]))


def test_the_cli_reports_non_finite_scores_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    from mnadlib import cli
    from mnadlib.checkpoint import save_checkpoint

    _tiny_videos(tmp_path / "testing" / "frames")
    model, items = _tiny_model()
    save_checkpoint(tmp_path / "model.pt", model, items, train_config={"size": [32, 32]})
    monkeypatch.setattr(scoring, "psnr", lambda mse: float("nan"))  # as a model whose output is not finite
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "model.pt"), "--data", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: video '01'") and "NaN or infinite psnr" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("bad, message", [
    (np.array([[0] * 8]), r"labels of video '01' have shape \(1, 8\); give one label per frame, shape \(8,\)"),
    (np.array([0] * 6 + [255] * 2, dtype=np.uint8), r"labels of video '01': labels must be 0 \(normal\) or 1 \(anomalous\), found \[255\]"),
    (np.array([0.0] * 6 + [0.5] * 2), r"found \[0.5\]"),
])
def test_evaluate_refuses_per_video_labels_of_another_shape_or_values(tmp_path: Path, bad: np.ndarray, message: str) -> None:
    """(1, N) labels were reported as '8 frames but 1 labels'; 0/255 and 0.5 were stored as 255 and 0 without a word."""
    videos = _tiny_videos(tmp_path)
    model, items = _tiny_model()
    with pytest.raises(DataError, match=message):
        evaluate(model, items, videos, EvalConfig(size=(32, 32)), {"01": bad, "02": np.zeros(8, int)})
    res = evaluate(model, items, videos, EvalConfig(size=(32, 32)),
                   {"01": np.array([False] * 6 + [True] * 2), "02": np.zeros(8, np.float32)})
    assert res.videos["01"].label == [0, 0, 1, 1] and res.auc is not None


def test_evaluate_runs_where_the_model_is_and_refuses_another_explicit_device(tmp_path: Path) -> None:
    """EvalConfig(device='cuda') on a CPU model was ignored: it scored on the CPU and recorded 'cuda'."""
    videos = _tiny_videos(tmp_path)
    model, items = _tiny_model()
    assert evaluate(model, items, videos, EvalConfig(size=(32, 32), device="cpu")).config["device"] == "cpu"
    assert evaluate(model, items, videos, EvalConfig(size=(32, 32))).config["device"] == "cpu"  # auto
    for other in ("cuda", "mps", "cuda:1"):
        with pytest.raises(ConfigError, match=f"EvalConfig.device is '{other}' but the model is on cpu: move it first"):
            evaluate(model, items, videos, EvalConfig(size=(32, 32), device=other))
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        evaluate(model, items, videos, EvalConfig(size=(32, 32), device="gpu"))


def test_a_model_without_memory_ignores_items_instead_of_updating_them(tmp_path: Path) -> None:
    """Items passed to a no-memory model were 'updated' below th, and every frame was recorded as updated."""
    videos = _tiny_videos(tmp_path)
    model, items = _tiny_model(use_memory=False)
    res = evaluate(model, items, videos, EvalConfig(size=(32, 32), th=10.0))
    assert not any(u for s in res.videos.values() for u in s.updated) and res.memory is None
    assert res.videos["01"].psnr == evaluate(model, None, videos, EvalConfig(size=(32, 32), th=10.0)).videos["01"].psnr


def test_a_nan_macro_auc_is_written_as_json_null(tmp_path: Path) -> None:
    """Videos each of one class give a frame AUC but no macro AUC; json wrote NaN, which strict parsers refuse."""
    per = {name: VideoScores(frames=[0, 1], psnr=[30.0, 31.0], feature_distance=[0.1, 0.1], point_score=[0.0, 0.0],
                             patch_psnr=[30.0, 31.0], ssim_db=[20.0, 21.0], updated=[False, False], score=score, label=label)
           for name, score, label in (("01", [0.6, 0.9], [0, 0]), ("02", [0.1, 0.2], [1, 1]))}
    res = EvalResult(per, *summarise(per), {})
    assert res.auc == 1.0 and math.isnan(res.macro_auc)
    text = res.write_json(tmp_path / "r.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))["macro_auc"] is None


def test_two_videos_of_one_name_are_an_error_not_one_merged_video(tmp_path: Path) -> None:
    """Videos from two folders, both named 01, were scored as one video: min-max over both, labels by frame index."""
    first, second = _tiny_videos(tmp_path / "a", (8,)), _tiny_videos(tmp_path / "b", (8,))
    model, items = _tiny_model()
    with pytest.raises(DataError, match=r"videos \['01'\] appear more than once"):
        evaluate(model, items, first + second, EvalConfig(size=(32, 32)))
    with pytest.raises(DataError, match=r"videos \['01'\] appear more than once"):
        zero_motion_baseline(first + second, 5, (32, 32))


def test_scoring_at_another_size_than_the_checkpoint_was_trained_at_warns(tmp_path: Path, tiny_checkpoint) -> None:
    """EvalConfig() scores at 256 x 256: the committed 64 x 64 model ran there silently (74.2 % against 87.4 % on two videos)."""
    import warnings

    from mnadlib.checkpoint import open_checkpoint
    from mnadlib.evaluate import SizeWarning

    videos = _tiny_videos(tmp_path / "v")
    ckpt = open_checkpoint(tiny_checkpoint(tmp_path / "m.pt", (32, 32)))
    assert ckpt.model.train_size == (32, 32) == ckpt.train_size
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(ckpt.model, ckpt.items, videos, EvalConfig(size=ckpt.train_size))
    with pytest.warns(SizeWarning, match=r"scoring at 64x64 a model trained at 32x32 .* EvalConfig\(size=\(32, 32\)\)"):
        evaluate(ckpt.model, ckpt.items, videos, EvalConfig(size=(64, 64)))
