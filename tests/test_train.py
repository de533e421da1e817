"""Training loop: losses fall, checkpoints are atomic and complete, an interrupted run resumes exactly."""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import mnadlib.train as tr
from mnadlib.checkpoint import CheckpointError, WriteError, load_checkpoint
from mnadlib.config import ConfigError, ModelConfig, TrainConfig
from mnadlib.data import DataError
from mnadlib.evaluate import EvalResult, VideoScores


@pytest.fixture()
def frames(tmp_path):
    """Two tiny videos of a moving square on a smooth background."""
    root = tmp_path / "toy" / "training" / "frames"
    rng = np.random.default_rng(0)
    bg = cv2.GaussianBlur(rng.uniform(60, 180, (32, 32, 3)).astype(np.float32), (0, 0), 3)
    for v in ("01", "02"):
        (root / v).mkdir(parents=True)
        for t in range(10):
            img = bg.copy()
            x = 2 + 2 * t
            img[10:16, x : x + 6] = 220
            cv2.imwrite(str(root / v / f"{t:03d}.jpg"), img.astype(np.uint8))
    return root


def _cfgs(epochs=3):
    return ModelConfig(width=0.0625, msize=4), TrainConfig(epochs=epochs, batch_size=4, size=(32, 32), lr=1e-3)


def test_train_writes_checkpoint_history_manifest(frames, tmp_path):
    mcfg, tcfg = _cfgs()
    final = tr.train(frames, mcfg, tcfg, tmp_path / "run", progress=False)
    model, items = load_checkpoint(final)
    assert items.shape == (4, mcfg.fdim)
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["pixel"] < hist[0]["pixel"]
    assert sum(hist[0]["memory_usage"]) > 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["torch"] == torch.__version__ and manifest["opencv"] == cv2.__version__


def test_history_is_replaced_not_rewritten_in_place(frames, tmp_path):
    """A reader holding the earlier history.json (or a kill mid-write) sees a whole file: the new one is renamed over it."""
    mcfg, tcfg = _cfgs(epochs=1)
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text("[]")
    os.link(run / "history.json", tmp_path / "held")
    tr.train(frames, mcfg, tcfg, run, progress=False)
    assert (tmp_path / "held").read_text() == "[]"
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1]


def test_each_epoch_line_says_the_time_trained_and_left(frames, tmp_path, monkeypatch, capsys):
    clock = iter(range(0, 1000, 50))  # the training loop's start, then the end of each epoch: 50 s apart
    monkeypatch.setattr(tr, "_clock", lambda: float(next(clock)))
    mcfg, tcfg = _cfgs()
    tr.train(frames, mcfg, tcfg, tmp_path / "run", progress=False, epoch_lines=True)  # as notebook 02: lines, no bars
    out, err = capsys.readouterr()
    assert "it/s" not in out + err
    lines = [ln for ln in out.splitlines() if ln.startswith("epoch ")]
    assert [ln[ln.index("("):] for ln in lines] == ["(50 s, about 1 min 40 s left)", "(1 min 40 s, about 50 s left)",
                                                   "(2 min 30 s)"]
    assert tr._duration(7620) == "2 h 07 min"


def test_interrupted_training_resumes_to_the_same_weights(frames, tmp_path, monkeypatch):
    mcfg, tcfg = _cfgs()
    ref, ref_items = load_checkpoint(tr.train(frames, mcfg, tcfg, tmp_path / "ref", progress=False))
    real_step = tr.train_step
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # during epoch 2 (4 steps per epoch)
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(tr, "train_step", flaky)
    with pytest.raises(KeyboardInterrupt):
        tr.train(frames, mcfg, tcfg, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "checkpoint.pt").exists() and not (tmp_path / "run" / "model.pt").exists()
    monkeypatch.setattr(tr, "train_step", real_step)
    got, got_items = load_checkpoint(tr.train(frames, mcfg, tcfg, tmp_path / "run", progress=False))
    torch.testing.assert_close(got_items, ref_items, rtol=0, atol=0)
    for (k, a), b in zip(ref.state_dict().items(), got.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["resumed_from_epoch"] == 2


def test_frame_cache_gives_the_same_weights(frames, tmp_path, monkeypatch):
    """Training reads frames through the cache; without it the weights are the same to the bit."""
    mcfg, tcfg = _cfgs(epochs=2)
    ref, ref_items = load_checkpoint(tr.train(frames, mcfg, tcfg, tmp_path / "ref", progress=False))
    monkeypatch.setattr(tr, "FRAME_CACHE_MIB", 0)
    got, got_items = load_checkpoint(tr.train(frames, mcfg, tcfg, tmp_path / "nocache", progress=False))
    torch.testing.assert_close(got_items, ref_items, rtol=0, atol=0)
    for (k, a), b in zip(ref.state_dict().items(), got.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def test_frame_reading_workers_give_the_same_weights(frames, tmp_path):
    mcfg, tcfg = _cfgs(epochs=2)
    ref, ref_items = load_checkpoint(tr.train(frames, mcfg, tcfg, tmp_path / "ref", progress=False))
    got, got_items = load_checkpoint(tr.train(frames, mcfg, dataclasses.replace(tcfg, num_workers=2),
                                              tmp_path / "workers", progress=False))
    torch.testing.assert_close(got_items, ref_items, rtol=0, atol=0)
    for (k, a), b in zip(ref.state_dict().items(), got.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    with pytest.raises(ConfigError, match="num_workers must be >= 0"):
        dataclasses.replace(tcfg, num_workers=-1)


def test_resume_refuses_another_configuration(frames, tmp_path):
    mcfg, tcfg = _cfgs(epochs=1)
    tr.train(frames, mcfg, tcfg, tmp_path / "run", progress=False)
    with pytest.raises(CheckpointError, match=r"other settings: model.width \(saved 0.0625, now 0.125\)\. "):
        tr.train(frames, ModelConfig(width=0.125, msize=4), tcfg, tmp_path / "run", progress=False)
    # more epochs, another seed or lr would continue the old cosine schedule or data order: refused, naming them
    for changed, field in ((dataclasses.replace(tcfg, epochs=2), r"train.epochs \(saved 1, now 2\)"),
                           (dataclasses.replace(tcfg, seed=1, lr=5e-4), r"train.lr .*; train.seed \(saved 0, now 1\)")):
        with pytest.raises(CheckpointError, match=field):
            tr.train(frames, mcfg, changed, tmp_path / "run", progress=False)
    moved = dataclasses.replace(tcfg, device="cpu", checkpoint_every=5)  # where and how often it saves: fine
    tr.train(frames, mcfg, moved, tmp_path / "run", progress=False)
    other = tmp_path / "other"
    shutil.copytree(frames, other)
    shutil.rmtree(other / "02")
    with pytest.raises(CheckpointError, match=r"other settings: the training videos .names and frame counts.\. "):
        tr.train(other, mcfg, tcfg, tmp_path / "run", progress=False)
    shutil.copytree(frames, tmp_path / "moved")  # the same videos elsewhere: fine
    tr.train(tmp_path / "moved", mcfg, tcfg, tmp_path / "run", progress=False)
    recording = tmp_path / "recording"  # the same names and lengths, another recording (another synthped seed)
    shutil.copytree(frames, recording)
    first = sorted((recording / "01").iterdir())[0]
    first.write_bytes(sorted((recording / "02").iterdir())[-1].read_bytes())
    with pytest.raises(CheckpointError, match="first frames .another recording"):
        tr.train(recording, mcfg, tcfg, tmp_path / "run", progress=False)


def test_a_finished_run_of_the_same_settings_is_kept_as_it_is(frames, tmp_path, monkeypatch, capsys):
    """Running a training again (a notebook's "Run all") trains nothing and leaves model and manifest as they were."""
    mcfg, tcfg = _cfgs(epochs=1)
    run = tmp_path / "run"
    final = tr.train(frames, mcfg, tcfg, run, progress=False)
    model, manifest = final.read_bytes(), (run / "manifest.json").read_bytes()

    def no_step(*args, **kwargs):
        raise AssertionError("a finished run trained again")

    monkeypatch.setattr(tr, "train_step", no_step)
    assert tr.train(frames, mcfg, tcfg, run, progress=False, epoch_lines=True) == final
    assert final.read_bytes() == model and (run / "manifest.json").read_bytes() == manifest
    assert "already trained with these settings (to epoch 1): nothing left to train; --restart (resume=False)" in \
        capsys.readouterr().out
    with pytest.raises(CheckpointError, match=r"train.seed \(saved 0, now 3\).*new --out folder \(out_dir in a notebook\)"):
        tr.train(frames, mcfg, dataclasses.replace(tcfg, seed=3), run, progress=False)
    assert final.read_bytes() == model


def test_a_finished_run_is_not_replaced_and_a_final_model_is_no_checkpoint(frames, tmp_path):
    mcfg, tcfg = _cfgs(epochs=1)
    run = tmp_path / "run"
    final = tr.train(frames, mcfg, tcfg, run, progress=False)
    (run / "checkpoint.pt").unlink()  # the resumable file is 3 times the model's size: people delete it
    before = final.read_bytes()
    with pytest.raises(FileExistsError, match="no checkpoint.pt to continue from"):
        tr.train(frames, mcfg, tcfg, run, progress=False)
    assert final.read_bytes() == before
    shutil.copy(final, run / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="no resumable training checkpoint.*--restart"):
        tr.train(frames, mcfg, tcfg, run, progress=False)
    assert final.read_bytes() == before
    (run / "checkpoint.pt").write_bytes(before[:1000])  # cut short by a full disk or a copy
    with pytest.raises(CheckpointError, match="damaged.*To train this run folder from the start instead, use --restart"):
        tr.train(frames, mcfg, tcfg, run, progress=False)
    (run / "checkpoint.pt").unlink()
    stale = [run / ".checkpoint.pt.k1ll3d.tmp", run / ".history.json.k1ll3d00.tmp"]  # what a SIGKILL during a save leaves
    for path in stale:
        path.write_bytes(b"half")
    tr.train(frames, mcfg, tcfg, run, resume=False, progress=False)
    assert not any(path.exists() for path in stale)
    for bad, message in ((dict(seed=-1), "seed must be in"), (dict(seed=2**32), "seed must be in"),
                         (dict(max_steps_per_epoch=-1), "must be >= 0"), (dict(epochs=0), "epochs must be >= 1, got 0"),
                         (dict(checkpoint_every=0), "checkpoint_every must be >= 1, got 0")):
        with pytest.raises(ConfigError, match=message):
            dataclasses.replace(tcfg, **bad)
    for width in (float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="positive and finite"):
            ModelConfig(width=width)


def test_no_memory_variant_trains(frames, tmp_path):
    mcfg = ModelConfig(width=0.0625, use_memory=False)
    _, tcfg = _cfgs(epochs=1)
    model, items = load_checkpoint(tr.train(frames, mcfg, tcfg, tmp_path / "run", progress=False))
    assert items is None and model.memory is None


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "mnadlib", *args], capture_output=True, text=True)


def test_cli_train_then_evaluate(frames, tmp_path):
    run = tmp_path / "run"
    r = _cli("train", "--data", str(frames.parents[1]), "--epochs", "1", "--size", "32", "32", "--width", "0.125",
             "--out", str(run), "--quiet")
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(run / "model.pt")[0].cfg.width == 0.125
    r = _cli("train", "--data", str(frames.parents[1]), "--width", "0", "--out", str(tmp_path / "bad"), "--quiet")
    assert r.returncode == 2 and "width must be positive" in r.stderr and not (tmp_path / "bad").exists()
    test = frames.parents[1] / "testing" / "frames"
    test.mkdir(parents=True)
    (frames / "01").rename(test / "01")
    labels = tmp_path / "labels.npy"
    np.save(labels, np.array([[0] * 5 + [1] * 5]))
    out = tmp_path / "res.json"
    r = _cli("evaluate", "--data", str(frames.parents[1]), "--labels", str(labels), "--checkpoint", str(run / "model.pt"),
             "--out", str(out), "--quiet")  # no --size: the checkpoint's 32 x 32
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["config"]["size"] == [32, 32]
    assert len(res["videos"]["01"]["score"]) == 6 and res["videos"]["01"]["label"] == [0, 1, 1, 1, 1, 1]
    assert len(res["videos"]["01"]["ssim_db"]) == 6 and all(0 < v < 100 for v in res["videos"]["01"]["ssim_db"])
    assert 0 <= res["auc"] <= 1
    assert out.with_suffix(".csv").read_text().count("\n") == 7
    np.save(labels, np.zeros((1, 10)))
    r = _cli("evaluate", "--data", str(frames.parents[1]), "--labels", str(labels), "--checkpoint", str(run / "model.pt"),
             "--quiet")
    assert r.returncode == 0 and "no frame AUC: the labels hold only one class" in r.stdout, r.stderr
    test.rename(frames.parents[1] / "testing_videos")  # CUHK Avenue's layout of the test split
    (frames.parents[1] / "testing").rmdir()
    avenue = tmp_path / "avenue.json"
    from mnadlib import cli

    assert cli.main(["evaluate", "--data", str(frames.parents[1]), "--checkpoint", str(run / "model.pt"),
                     "--out", str(avenue), "--quiet"]) == 0
    assert list(json.loads(avenue.read_text())["videos"]) == ["01"]


def test_cli_evaluate_says_so_when_no_video_holds_both_classes(frames, tmp_path, tiny_checkpoint, capsys):
    """One all-normal and one all-anomalous video: a frame AUC but no macro AUC, which used to print as 'nan%'."""
    from mnadlib import cli

    labels = tmp_path / "labels.npy"
    np.save(labels, np.array([[0] * 10 + [1] * 10]))
    ckpt = tiny_checkpoint(tmp_path / "model.pt")
    assert cli.main(["evaluate", "--data", str(frames), "--checkpoint", str(ckpt), "--labels", str(labels), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "; frame AUC " in out and "(no macro AUC: no test video holds both classes)" in out and "nan%" not in out


def test_evaluate_results_are_written_atomically(tmp_path, monkeypatch):
    """A write that fails (a full disk) leaves the earlier result.json and .csv whole, and no temporary file."""
    scores = VideoScores(frames=[4, 5], psnr=[30.0, 20.0], feature_distance=[0.1, 0.2], point_score=[0.2, 0.3],
                         patch_psnr=[29.0, 19.0], ssim_db=[20.0, 10.0], updated=[True, False], score=[0.9, 0.1], label=[0, 1])
    result = EvalResult({"01": scores}, 1.0, 1.0, {})
    out = result.write_json(tmp_path / "res.json")
    csv_path = result.write_csv(tmp_path / "res.csv")
    before = out.read_bytes(), csv_path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    for write, path in ((result.write_json, out), (result.write_csv, csv_path)):
        with pytest.raises(WriteError, match="is the disk full"):
            write(path)
    assert (out.read_bytes(), csv_path.read_bytes()) == before and sorted(tmp_path.iterdir()) == [csv_path, out]


@pytest.mark.parametrize("args,message", [
    (["--size", "30", "32"], "multiples of 8"),
    (["--labels", "WRONG"], "labels"),
    (["--checkpoint", "missing.pt"], "not found"),
    (["--out", "DIR"], "is a folder"),
    (["--out", "FILE/res.json"], "cannot write --out"),  # refused before the frames are scored
    (["--device", "gpu7"], "unknown device"),
    (["--device", "cuda:99"], "asked for"),  # a CPU-only torch, or too few GPUs: refused either way
    (["--size", "64", "64"], "was trained at 32x32"),
    (["--out", "res.csv"], "names the CSV that is written beside"),  # the CSV would overwrite the JSON
    (["--batch-size", "0", "--no-update"], "batch_size must be >= 1"),
])
def test_cli_evaluate_bad_input(frames, tmp_path, args, message):
    run = tmp_path / "run"
    tr.train(frames, *_cfgs(epochs=1), run, progress=False)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((1, 7)))
    args = [str(wrong) if a == "WRONG" else str(tmp_path) if a == "DIR" else str(wrong / "res.json") if a.startswith("FILE")
            else str(tmp_path / a) if a.endswith(".pt") else a for a in args]
    base = ["evaluate", "--data", str(frames), "--checkpoint", str(run / "model.pt"), "--size", "32", "32", "--quiet"]
    r = _cli(*base, *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_cli_evaluate_never_writes_over_its_inputs(frames, tmp_path, capsys):
    from mnadlib import cli

    tr.train(frames, *_cfgs(epochs=1), tmp_path / "run", progress=False)
    ckpt, labels, frame = tmp_path / "run" / "model.pt", tmp_path / "labels.npy", frames / "01" / "000.jpg"
    np.save(labels, np.zeros((2, 10)))
    before = {p: p.read_bytes() for p in (ckpt, labels, frame)}
    base = ["evaluate", "--data", str(frames), "--checkpoint", str(ckpt), "--labels", str(labels), "--size", "32", "32",
            "--quiet", "--out"]
    for out, message in ((ckpt, "is the --checkpoint input"), (labels, "is the --labels input"),
                         (frame, "would replace a file inside the --data folder")):
        assert cli.main(base + [str(out)]) == 2
        assert message in capsys.readouterr().err
    assert {p: p.read_bytes() for p in before} == before


def test_bad_devices_and_a_batch_larger_than_the_data_are_clear_errors(frames, tmp_path):
    assert tr.resolve_device("cpu") == torch.device("cpu") and tr.resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ConfigError, match="unknown device"):
        tr.resolve_device("gpu7")
    with pytest.raises(ConfigError, match="not supported"):
        tr.resolve_device("meta")
    with pytest.raises(ConfigError, match="asked for, but"):
        tr.resolve_device("cuda:99")
    model_cfg, train_cfg = _cfgs(epochs=1)
    with pytest.raises(DataError, match="fewer than one batch of 64; use a smaller batch size"):
        tr.train(frames, model_cfg, dataclasses.replace(train_cfg, batch_size=64), tmp_path / "run", progress=False)


def test_cli_train_bad_numbers_and_ctrl_c(frames, tmp_path, monkeypatch, capsys):
    from mnadlib import cli

    base = ["train", "--data", str(frames), "--split-path", "--epochs", "1", "--size", "32", "32", "--quiet"]
    for extra, message in ((["--seed", "-1"], "seed must be in"), (["--width", "nan"], "positive and finite"),
                           (["--max-steps", "-1"], "--max-steps"), (["--out", str(frames / "01" / "000.jpg")], "is a file"),
                           (["--out", str(frames / "01" / "000.jpg" / "run")], "000.jpg is a file; give a folder")):
        out = [] if "--out" in extra else ["--out", str(tmp_path / "bad")]
        assert cli.main(base + out + extra) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tr, "train", interrupted)
    assert cli.main(base + ["--out", str(tmp_path / "run")]) == 130
    assert "run the same command again to continue" in capsys.readouterr().err


def test_cli_ctrl_c_while_scoring_is_one_line_and_writes_nothing(frames, tmp_path, monkeypatch, capsys):
    from mnadlib import cli

    tr.train(frames, *_cfgs(epochs=1), tmp_path / "run", progress=False)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("mnadlib.evaluate.evaluate", interrupted)
    out = tmp_path / "res.json"
    assert cli.main(["evaluate", "--data", str(frames), "--checkpoint", str(tmp_path / "run" / "model.pt"),
                     "--out", str(out), "--quiet"]) == 130
    assert capsys.readouterr().err == "interrupted: evaluate wrote nothing half; run the same command again\n"
    assert not out.exists()


def test_cli_shows_mnadlib_warnings_as_one_line(capsys):
    import warnings

    from mnadlib import cli
    from mnadlib.frames import TruncatedVideoWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        cli._one_line_warnings()
        cli._one_line_warnings()  # installed once, however often main runs
        warnings.warn("video cut.avi: its header says 20 frames but only the first 7 decode", TruncatedVideoWarning)
    assert capsys.readouterr().err == "warning: video cut.avi: its header says 20 frames but only the first 7 decode\n"


def test_cli_restart_starts_over_where_a_run_of_other_settings_is_refused(frames, tmp_path, capsys):
    from mnadlib import cli

    run = tmp_path / "run"
    base = ["train", "--data", str(frames), "--split-path", "--epochs", "1", "--size", "32", "32", "--quiet",
            "--out", str(run)]
    assert cli.main(base) == 0
    before = (run / "model.pt").read_bytes()
    assert cli.main(base + ["--seed", "1"]) == 2 and "--restart" in capsys.readouterr().err
    assert (run / "model.pt").read_bytes() == before
    assert cli.main(base + ["--seed", "1", "--restart"]) == 0
    assert (run / "model.pt").read_bytes() != before
    history = json.loads((run / "history.json").read_text())
    assert [e["epoch"] for e in history] == [1], history
