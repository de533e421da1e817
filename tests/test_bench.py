"""``python -m mnadlib bench``: the throughput report and the wall-time estimate's counts and arithmetic (no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mnadlib import bench, cli
from mnadlib.bench import dataset_counts, estimate, run, workload
from mnadlib.config import ConfigError, ModelConfig
from mnadlib.synth import SynthPreset, generate

TORCH_THREADS = 1
TINY = SynthPreset(size=(48, 72), train_lengths=(16, 20), test_lengths=(12, 14), normal_test_videos=1, crowd=(1, 2))


def test_workload_of_ped2_from_its_published_counts() -> None:
    counts = dataset_counts("ped2")
    assert counts["frame_size"] == (240, 360)
    # 2,550 training frames in 16 videos: a 5-frame clip starts at all but the last 4 frames of each
    assert workload(counts, "pred", epochs=60, batch=4) == {
        "train_clips": 2486, "steps_per_epoch": 621, "train_steps": 37260, "test_frames_scored": 1962,
        "frames_read_per_clip": 5}
    recon = workload(counts, "recon", epochs=60, batch=4)
    assert (recon["train_clips"], recon["train_steps"], recon["test_frames_scored"]) == (2550, 38220, 2010)
    assert dataset_counts("UCSDped2")["dataset"] == "ped2"


def test_a_dataset_folder_is_counted(tmp_path: Path) -> None:
    root = generate(tmp_path, preset=TINY)
    counts = dataset_counts(root)
    assert counts == {"dataset": str(root), "train_videos": 2, "train_frames": 36, "test_videos": 2,
                      "test_frames": 26, "frame_size": (48, 72)}
    assert workload(counts, "pred", epochs=3, batch=8)["train_steps"] == 3 * ((36 - 8) // 8)


def test_estimate_multiplies_the_measured_unit_times(tmp_path: Path) -> None:
    root = generate(tmp_path, preset=TINY)
    rep = estimate(root, preset_name="cpu", epochs=2, threads=1, repeats=1)
    m, e = rep["measured"], rep["estimate"]
    assert (rep["train_steps"], rep["test_frames_scored"], rep["batch"], rep["size"]) == (2 * (28 // 8), 18, 8, [64, 64])
    assert all(m[k] > 0 for k in ("train_s_per_step", "eval_frames_per_s", "read_s_per_frame"))
    assert rep["train_split_cached"] and rep["train_frames_read"] == 36  # the frame cache reads each frame once
    train_s = rep["train_steps"] * m["train_s_per_step"] + 36 * m["read_s_per_frame"]
    eval_s = rep["test_frames_scored"] / m["eval_frames_per_s"] + 26 * m["read_s_per_frame"]
    assert e["train_s"] == pytest.approx(train_s, rel=0.02, abs=0.2)  # the report rounds the unit times
    assert e["eval_pass_s"] == pytest.approx(eval_s, rel=0.02, abs=0.2)
    assert "not a measured run" in rep["note"]
    w = rep["work"]
    assert w["train_gflop_per_step"] > 0 and w["eval_gflop_per_frame"] > 0
    assert w["train_pflop"] == pytest.approx(rep["train_steps"] * w["train_gflop_per_step"] / 1e6, rel=0.01)
    assert w["eval_pass_tflop"] == pytest.approx(rep["test_frames_scored"] * w["eval_gflop_per_frame"] / 1e3, rel=0.01)


def test_work_is_counted_and_grows_with_the_frame_area() -> None:
    torch.set_num_threads(TORCH_THREADS)
    cfg = ModelConfig(method="pred", t_length=5, width=0.125)
    small = bench._measure(cfg, (16, 16), 2, torch.device("cpu"), 1)
    large = bench._measure(cfg, (32, 32), 2, torch.device("cpu"), 1)
    assert small.eval_flop > 0 and small.step_flop > 0
    # every counted operation (convolutions, the memory's query-item products) runs once per pixel or query
    assert (large.eval_flop, large.step_flop) == (4 * small.eval_flop, 4 * small.step_flop)
    assert 2.5 < small.step_flop / (2 * small.eval_flop) < 3.5  # forward and backward of a batch of 2


def test_estimate_refuses_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="neither a dataset folder"):
        dataset_counts("ped3")
    assert cli.main(["bench", "--estimate", "ped3"]) == 2
    assert "ped2, avenue, shanghai" in capsys.readouterr().err
    assert cli.main(["bench", "--estimate", "ped2", "--epochs", "-3"]) == 2
    assert "epochs must be >= 0" in capsys.readouterr().err
    assert cli.main(["bench", "--estimate", "ped2", "--preset", "fast"]) == 2
    assert "unknown preset 'fast'" in capsys.readouterr().err
    for args, message in ((["--sizes", "7"], "multiples of 8"), (["--sizes", "abc"], "two integers"),
                          (["--threads", "0"], "--threads 0 is not usable"), (["--width", "0"], "--width 0.0 is not usable")):
        assert cli.main(["bench", *args]) == 2
        assert message in capsys.readouterr().err, args
    for args, message in ((["--estimate", "ped2", "--batch", "2", "--width", "3"], "--batch, --width do nothing with --estimate"),
                          (["--preset", "cpu"], "--preset does nothing without --estimate"),
                          (["--width", "nan"], "width must be positive and finite")):
        assert cli.main(["bench", *args]) == 2
        assert message in capsys.readouterr().err, args
    with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):  # the API checks what the CLI does
        run([8], repeats=0)
    with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):
        bench.read_seconds(None, (8, 8), repeats=0)  # type: ignore[arg-type]


def test_throughput_report_and_the_estimate_command(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    rep = run(sizes=[16], width=0.125, batch=2, threads=1, repeats=1)
    (row,) = rep["results"]
    assert row["size"] == 16 and row["train_batch"] == 2 and row["eval_frames_per_s"] > 0 and row["train_s_per_step"] > 0
    assert row["train_tflop_per_s"] == pytest.approx(row["train_gflop_per_step"] / row["train_s_per_step"] / 1e3, rel=0.05, abs=1e-3)
    assert cli.main(["bench", "--estimate", "avenue", "--preset", "cpu", "--epochs", "1", "--threads", "1",
                     "--repeats", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["dataset"], out["train_steps"], out["test_frames_scored"]) == ("avenue", (15328 - 64) // 8, 15324 - 84)
    assert out["train_split_cached"] and out["train_frames_read"] == 15328  # 15328 frames of 64 x 64 fit in the cache
    monkeypatch.setattr(bench, "FRAME_CACHE_MIB", 100)  # 15328 resized frames need 180 MiB: read per clip, an upper bound
    assert cli.main(["bench", "--estimate", "avenue", "--preset", "cpu", "--epochs", "1", "--threads", "1",
                     "--repeats", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert not out["train_split_cached"] and out["train_frames_read"] == out["train_steps"] * 8 * 5


def test_app_timing_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = generate(tmp_path, preset=TINY)
    video = sorted((root / "testing" / "frames").iterdir())[0]
    assert cli.main(["bench", "--app", str(video), "--threads", "1"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["scored_frames"] == 12 - 4 and rep["frame_size"] == [48, 72] and rep["size"] == [64, 64]
    assert [c["change"] for c in rep["changes"]] == list(bench.APP_CHANGES)
    assert all(c["settings_s"] >= 0 and c["frame_view_s"] > 0 for c in rep["changes"]) and rep["open_session_s"] > 0
    assert rep["first_frame_view_s"] > 0
    assert rep["checkpoint"].endswith("mnad_pred_synthped_cpu.pt") and rep["all_regions_boxes"] > 0
    assert rep["kept_frames_mib"] == round(2 * 8 * 64 * 64 * 3 / 2**20, 1) and rep["kept_frames_on_disk"] == 0
    assert rep["frames_ram_budget_mib"] == 1024 and rep["peak_rss_mib"] > 0
    for args, message in ((["--app", str(video), "--estimate", "ped2"], "two benchmarks: give one"),
                          (["--app", str(video), "--sizes", "128"], "--sizes does nothing with --app"),
                          (["--checkpoint", "x.pt"], "--checkpoint does nothing without --estimate or --app"),
                          (["--app", str(tmp_path / "none.avi")], "does not exist")):
        assert cli.main(["bench", *args]) == 2
        assert message in capsys.readouterr().err, args
