"""``python -m mnadlib seeds``: one seed end to end on a tiny synthped, the spread table, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mnadlib import cli, seeds
from mnadlib.checkpoint import load_checkpoint
from mnadlib.config import to_dict
from mnadlib.inject import InjectConfig
from mnadlib.seeds import report, run_seed, run_settings, spread
from mnadlib.synth import SynthPreset

TORCH_THREADS = 1
TINY = SynthPreset(size=(48, 72), train_lengths=(16, 16), test_lengths=(30, 30, 30), normal_test_videos=1, crowd=(1, 2))


def test_one_seed_end_to_end(tmp_path: Path) -> None:
    run = run_seed(3, tmp_path, synth_preset=TINY, epochs=1, width=0.125)
    meta = json.loads((tmp_path / "seed3" / "data" / "synthped" / "testing" / "annotations.json").read_text())
    assert meta["seed"] == 3 and run["epochs"] == 1 and run["width"] == 0.125
    assert run["data"] == {"dataset": "synthped", "preset": to_dict(TINY)}
    assert load_checkpoint(tmp_path / "seed3" / "pred_mem" / "model.pt")[0].cfg.width == 0.125
    protocol = run["frame_auc"]["paper protocol: test-time update, per-video min-max"]
    assert 0 <= protocol <= 100 and "no test-time update" in run["frame_auc"]
    kinds = {o["kind"] for v in meta["videos"].values() for o in v["objects"]}
    assert set(run["by_kind"]) == kinds and all(0 <= a <= 100 for a in run["by_kind"].values())
    assert run["by_size"] and all(0 <= a <= 100 for a in run["by_size"].values())
    assert {k.rsplit(", ", 1)[1] for k in run["by_size"]} == {"protocol", "running-max"}
    assert 0 <= run["localization"]["pixel_auroc"] <= 100
    assert set(run["psnr"]) == {f"{p}, {k}" for p in ("model", "zero_motion (the previous frame)")
                                for k in ("normal frames", "anomalous frames", "sd of normal frames within a video")}
    assert all(v > 0 for v in run["psnr"].values())


def test_spread_and_report_count_only_measured_values() -> None:
    runs = [{"seed": 0, "frame_auc": {"a": 70.0, "b": None}, "macro_auc": {}, "by_kind": {"cart": 60.0}, "psnr": {},
             "localization": {}},
            {"seed": 1, "frame_auc": {"a": 80.0, "b": 50.0}, "macro_auc": {}, "by_kind": {"cart": 70.0}, "psnr": {},
             "localization": {}}]
    got = spread(runs, "frame_auc")
    assert got["a"] == pytest.approx((75.0, 7.0710678, 2)) and got["b"] == (50.0, None, 1)
    text = report(runs)
    assert "| a | 70.0 | 80.0 | 75.0 ± 7.1 |" in text and "| b | - | 50.0 | 50.0 (n=1) |" in text
    assert "| cart | 60.0 | 70.0 | 65.0 ± 7.1 |" in text
    assert "visible area" not in text and "PSNR" not in text  # groups no run measured get no table


def test_report_of_one_seed_gives_the_mean_without_a_spread() -> None:
    text = report([{"seed": 4, "frame_auc": {"a": 70.0}, "by_kind": {"cart": 61.25}}])
    assert "| a | 70.0 | 70.0 (n=1) |" in text and "| cart | 61.2 | 61.2 (n=1) |" in text
    assert "| frame AUC % | seed 4 | mean |" in text and "±" not in text


def test_bad_seed_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["seeds", "--seeds", "1", "1", "--work", str(tmp_path)]) == 2
    assert "repeats a seed" in capsys.readouterr().err and not any(tmp_path.iterdir())
    assert cli.main(["seeds", "--seeds", "1", "--epochs", "-1", "--work", str(tmp_path)]) == 2
    assert "--epochs must be >= 0" in capsys.readouterr().err and not any(tmp_path.iterdir())
    for width in ("-0.5", "nan", "inf", "-inf"):
        assert cli.main(["seeds", "--seeds", "1", f"--width={width}", "--work", str(tmp_path)]) == 2
        assert "--width must be a finite channel multiplier > 0" in capsys.readouterr().err and not any(tmp_path.iterdir())
    assert cli.main(["seeds", "--seeds", "0", "-1", "--work", str(tmp_path)]) == 2
    assert "--seeds must be non-negative integers" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_one_seed_on_footage_with_injected_anomalies(tmp_path: Path, walking_footage) -> None:
    video = walking_footage(tmp_path / "cam", n=100)
    cfg = InjectConfig(width=0, clip_length=20, train_fraction=0.4, height_fraction=0.3)
    run = run_seed(5, tmp_path / "work", epochs=1, footage=video, inject_cfg=cfg)
    meta = json.loads((tmp_path / "work" / "seed5" / "data" / "injected" / "testing" / "annotations.json").read_text())
    assert meta["config"]["seed"] == 5 and meta["source"] == str(video)
    assert 0 <= run["frame_auc"]["paper protocol: test-time update, per-video min-max"] <= 100
    assert set(run["by_kind"]) == {o["kind"] for v in meta["videos"].values() for o in v["objects"]}
    assert "baseline: the previous frame as the prediction (PSNR, per-video min-max)" in run["frame_auc"]


def test_seeds_json_keeps_the_finished_seeds_of_an_interrupted_benchmark(tmp_path: Path, monkeypatch) -> None:
    def fake(seed: int, work: Path, **kwargs) -> dict:
        if seed == 2:
            raise KeyboardInterrupt
        return {"seed": seed, "frame_auc": {"paper protocol": 70.0 + seed}, "wall_s": 1.0}

    monkeypatch.setattr(seeds, "run_seed", fake)
    assert cli.main(["seeds", "--seeds", "0", "1", "2", "--work", str(tmp_path), "--quiet"]) == 130  # Ctrl-C's status
    assert [r["seed"] for r in json.loads((tmp_path / "seeds.json").read_text())] == [0, 1]


def _fake_run_seed(calls: list[int]):
    """A run_seed that records the seeds it ran and measures nothing but its settings and one made-up AUC."""
    def fake(seed: int, work: Path, epochs: int = 0, width: float = 0.0, footage: Path | None = None, **kwargs) -> dict:
        calls.append(seed)
        return {"seed": seed, **run_settings(epochs=epochs, footage=footage, width=width),
                "frame_auc": {"paper protocol": 70.0 + seed + len(calls) / 10}, "wall_s": 1.0}
    return fake


def test_a_rerun_merges_into_seeds_json(tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[int] = []
    monkeypatch.setattr(seeds, "run_seed", _fake_run_seed(calls))
    work = ["--work", str(tmp_path), "--epochs", "1", "--quiet"]
    assert cli.main(["seeds", "--seeds", "0", *work]) == 0
    assert "70.1 (n=1)" in capsys.readouterr().out
    assert cli.main(["seeds", "--seeds", "2", "1", *work]) == 0  # new seeds join seed 0's row
    rows = json.loads((tmp_path / "seeds.json").read_text())
    assert [(r["seed"], r["frame_auc"]["paper protocol"]) for r in rows] == [(0, 70.1), (1, 71.3), (2, 72.2)]
    assert "| paper protocol | 70.1 | 71.3 | 72.2 | 71.2 ± 1.1 |" in capsys.readouterr().out
    cpu_width = str(rows[0]["width"])  # the cpu preset's width, asked for by value: the same settings
    assert cli.main(["seeds", "--seeds", "1", *work, "--width", cpu_width]) == 0  # a rerun seed replaces its row
    rows = json.loads((tmp_path / "seeds.json").read_text())
    assert [(r["seed"], r["frame_auc"]["paper protocol"]) for r in rows] == [(0, 70.1), (1, 71.4), (2, 72.2)]
    assert "| 70.1 | 71.4 | 72.2 |" in capsys.readouterr().out and calls == [0, 2, 1, 1]


def test_a_rerun_with_other_settings_is_refused(tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str],
                                                walking_footage) -> None:
    calls: list[int] = []
    monkeypatch.setattr(seeds, "run_seed", _fake_run_seed(calls))
    assert cli.main(["seeds", "--seeds", "0", "1", "--work", str(tmp_path), "--epochs", "1", "--quiet"]) == 0
    stamp = (tmp_path / "seeds.json").read_bytes()
    video = walking_footage(tmp_path / "cam", n=12)
    for other, named in ((["--epochs", "2"], "epochs 1"), (["--epochs", "1", "--width", "0.5"], "width"),
                         (["--epochs", "1", "--footage", str(video)], "data")):
        assert cli.main(["seeds", "--seeds", "2", "--work", str(tmp_path), "--quiet", *other]) == 2
        err = capsys.readouterr().err
        assert f"holds seeds [0, 1] measured with {named}" in err and "use another --work, or delete" in err
    assert calls == [0, 1] and (tmp_path / "seeds.json").read_bytes() == stamp  # nothing ran, nothing was rewritten
    for damaged, said in (("{not json", "is not JSON"), ('{"seed": 0}', "is not a list of seed rows")):
        (tmp_path / "seeds.json").write_text(damaged)
        assert cli.main(["seeds", "--seeds", "2", "--work", str(tmp_path), "--epochs", "1", "--quiet"]) == 2
        assert said in capsys.readouterr().err and calls == [0, 1]
