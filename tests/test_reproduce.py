"""``python -m mnadlib.reproduce``: a smoke run end to end, never overwriting a run, clear failures and exit codes."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mnadlib import pipeline, reproduce, runlog, synth
from mnadlib.breakdown import AREA_BINS
from mnadlib.checkpoint import WriteError
from mnadlib.data import DataError
from mnadlib.evaluate import EvalResult, VideoScores

PIPELINE_TIMEOUT = 1500  # s; a guard against a hung pipeline, not a time claim (a loaded machine took over 600)


def test_smoke_run_end_to_end_then_refuses_to_overwrite(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "mnadlib.reproduce", "--smoke", "--name", "smoke", "--runs-dir", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIPELINE_TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "without encryption" not in done.stderr  # the kernels talk over local sockets, not TCP
    run = tmp_path / "smoke"
    results = json.loads((run / "results.json").read_text())
    assert 0 <= results["main"]["frame_auc"] <= 1 and results["main"]["variant"] == "pred_mem"
    assert {r["model"] for r in results["ablation"]} == {"pred_mem", "zero_motion", "pred_nomem", "recon_mem"}
    assert "Ablation" in done.stdout and "paper protocol" in done.stdout
    quality = results["prediction_quality"]
    assert [q["predictor"] for q in quality] == ["pred_mem", "zero_motion (the previous frame)"]
    assert all(q["normal_psnr"] > 0 and q["anomalous_psnr"] > 0 for q in quality)
    assert "copying the previous frame" in done.stdout
    assert {r["kind"] for r in results["by_kind"]} <= set(synth.ANOMALY_KINDS) and results["by_kind"]
    assert "each anomaly kind" in done.stdout
    assert results["by_size"] and {r["visible_area"] for r in results["by_size"]} <= set(AREA_BINS)
    scored = json.loads((run / "results" / "eval_pred_mem.json").read_text())["videos"].values()
    assert sum(r["frames"] for r in results["by_size"]) == sum(sum(v["label"]) for v in scored)  # every anomalous frame binned
    assert "visible area" in done.stdout and "pixel masks for" not in done.stdout
    assert results["by_size_videos"] == {"with_masks": len(scored), "test_videos": len(scored)}  # synthped masks every video
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["python"] == sys.executable and manifest["smoke"]
    assert [s["notebook"] for s in manifest["steps"]] == ["01_prepare_data", "02_train_pred_mem", "02_train_pred_nomem",
                                                         "02_train_recon_mem", "03_reproduce_auc", "05_result_figures"]
    assert all((run / "notebooks" / f"{s['notebook']}.ipynb").is_file() for s in manifest["steps"])
    kernel = json.loads((run / "results" / "01_prepare_data.json").read_text())
    assert kernel["python_prefix"] == sys.prefix  # the notebooks ran in this environment
    drawn = json.loads((run / "results" / "05_result_figures.json").read_text())
    figures = drawn["figures"]
    assert drawn["roc_curves"][3:] == ["pred_nomem, no memory (PSNR only)", "recon_mem, paper protocol"]
    assert {Path(f).name for f in figures} >= {"05_regularity.png", "05_roc.png", "05_examples.png", "05_tsne.png"}
    assert all(Path(f).is_file() for f in figures)

    before = (run / "manifest.json").read_bytes()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr and f"--resume {run}" in again.stderr
    assert (run / "manifest.json").read_bytes() == before


def test_smoke_run_on_own_footage_with_injected_anomalies(tmp_path: Path, walking_footage) -> None:
    video = walking_footage(tmp_path / "cam", n=330)
    cmd = [sys.executable, "-m", "mnadlib.reproduce", "--smoke", "--name", "cam", "--runs-dir", str(tmp_path / "runs"),
           "--dataset", "mycam", "--variants", "pred_mem", "-p", "footage", str(video)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIPELINE_TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = tmp_path / "runs" / "cam"
    meta = json.loads((run / "data" / "mycam" / "testing" / "annotations.json").read_text())
    assert meta["source"] == str(video) and any(v["objects"] for v in meta["videos"].values())
    results = json.loads((run / "results.json").read_text())
    assert 0 <= results["main"]["frame_auc"] <= 1 and "mycam" in done.stdout  # Table 1 gets the dataset's column
    assert {r["kind"] for r in results["by_kind"]} <= {"cyclist", "skateboarder", "cart", "runner"}


def test_failing_notebook_exits_1_naming_it_and_its_executed_copy(tmp_path: Path, monkeypatch, capsys) -> None:
    step = ("01_prepare_data", "01_prepare_data", {"dataset": "ped2", "data_root": str(tmp_path), "out_dir": str(tmp_path / "r")})
    monkeypatch.setattr(reproduce, "plan", lambda *args, **kwargs: [step])
    assert reproduce.main(["--name", "bad", "--runs-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "notebook 01_prepare_data failed" in err and "DataError" in err
    assert str(tmp_path / "bad" / "notebooks" / "01_prepare_data.ipynb") in err
    assert json.loads((tmp_path / "bad" / "manifest.json").read_text())["status"] == "failed"
    assert f"after fixing the cause, continue with: python -m mnadlib.reproduce --resume {tmp_path / 'bad'}" in err

    first = json.loads((tmp_path / "bad" / "manifest.json").read_text())["wall_s"]

    assert reproduce.main(["--resume", str(tmp_path / "bad")]) == 1  # the cause is still there: it fails again
    manifest = json.loads((tmp_path / "bad" / "manifest.json").read_text())
    assert [s["status"] for s in manifest["steps"]] == ["failed", "failed"] and manifest["resumed"][0]["after"] == "failed"
    assert manifest["wall_s"] == round(first + manifest["attempt_wall_s"], 1) > first  # the run's time counts both attempts
    assert "s with the earlier attempts)" in capsys.readouterr().out
    assert (tmp_path / "bad" / "notebooks" / "01_prepare_data.attempt-1.ipynb").is_file()


def test_a_manifest_that_cannot_be_written_is_one_error_that_advises_resume(tmp_path: Path, monkeypatch, capsys) -> None:
    def full(out, log):
        raise WriteError(f"could not write {out / 'manifest.json'} ([Errno 28] No space left on device); is the disk full?")

    monkeypatch.setattr(reproduce, "plan", lambda *args, **kwargs: [("01_prepare_data", "01_prepare_data", {})])
    monkeypatch.setattr(reproduce, "write_manifest", full)
    assert reproduce.main(["--name", "full", "--runs-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("No space left") == 1
    assert f"continue with: python -m mnadlib.reproduce --resume {tmp_path / 'full'}" in err


def _plan_one_cell(tmp_path: Path, monkeypatch, step: str, source: str) -> None:
    """Make the pipeline's plan one step, ``step``, that runs a notebook of one code cell."""
    import nbformat

    nb = tmp_path / "one_cell.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)],
                                            metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                     "display_name": "Python 3"}}), nb)
    monkeypatch.setattr(reproduce, "_source", lambda name: nb)
    monkeypatch.setattr(reproduce, "plan", lambda *args, **kwargs: [(step, "one_cell", {})])


@pytest.mark.parametrize("raise_line, advice", [
    ("raise AssertionError('claim missed: frame AUC 60.00% < 70.00%')", "would score the same checkpoints again"),
    ("from mnadlib.config import ConfigError\nraise ConfigError('unknown preset')", "cannot fix this: start a new run"),
    ("from mnadlib.pipeline import DatasetConflict\nraise DatasetConflict('holds other data')", "another --dataset"),
])
def test_failures_that_resume_cannot_fix_do_not_advise_it(tmp_path: Path, monkeypatch, capsys, raise_line, advice) -> None:
    _plan_one_cell(tmp_path, monkeypatch, "03_reproduce_auc", raise_line)
    assert reproduce.main(["--name", "bad", "--runs-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert advice in err and "continue with" not in err


def test_a_missed_claim_still_prints_the_results_table(tmp_path: Path, monkeypatch, capsys) -> None:
    results = {"params": {"dataset": "synthped"}, "main": {"variant": "pred_mem", "frame_auc": 0.6, "macro_auc": 0.7},
               "claims": {"min_auc": 0.7, "holds": False}, "table1": pipeline.table1({"pred": {"synthped": 60.0}}),
               "ablation": []}
    _plan_one_cell(tmp_path, monkeypatch, "03_reproduce_auc",
                   "from pathlib import Path\nfrom mnadlib import pipeline\n"
                   f"pipeline.write_results(pipeline.RunFolder(Path.cwd()), {results!r})\n"
                   "raise AssertionError('claim missed: frame AUC 60.00% < 70.00%')")
    assert reproduce.main(["--name", "low", "--runs-dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "frame AUC 60.00%, macro AUC 70.00% (claim >= 70.0%: MISSED)" in out and "Table 1" in out
    assert "claim missed" in err and f"run folder: {tmp_path / 'low'} (failed" in out


def test_a_paper_dataset_with_the_cpu_preset_gets_a_note(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(reproduce, "_run", lambda *args: 0)
    (tmp_path / "data").mkdir()
    base = ["--dataset", "ped2", "--data-root", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs")]
    assert reproduce.main(base + ["--name", "quick"]) == 0
    assert "note: --dataset ped2 with the cpu preset" in capsys.readouterr().err
    assert reproduce.main(base + ["--name", "paper", "-p", "preset", "paper"]) == 0
    assert "note:" not in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["-p", "preset", "gpu"], "unknown preset 'gpu'"),
    (["-p", "synth_preset", "huge"], "unknown synthped preset 'huge'"),
    (["-p", "labels", "no/such/labels.npy"], "no/such/labels.npy: no such file"),
    (["-p", "train_dir", "no/such/train"], "no/such/train: no such folder"),
    (["-p", "original_model", "model.pth"], "give both -p original_model"),
    (["--name", "../escape"], "--name must be one folder name"),
    (["--name", ".."], "--name must be one folder name"),
])
def test_bad_values_are_refused_before_any_notebook_runs(tmp_path: Path, monkeypatch, capsys, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.pth").write_bytes(b"")
    runs = tmp_path / "runs" / "in"
    argv = ["--runs-dir", str(runs)] + (args if "--name" in args else ["--name", "r", *args])
    assert reproduce.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # no run folder was made, inside --runs-dir or beside it


def test_a_kernel_that_dies_is_reported_with_its_log(tmp_path: Path, monkeypatch, capsys) -> None:
    _plan_one_cell(tmp_path, monkeypatch, "01_prepare_data", "import os\nos.write(2, b'fatal: the kernel gave up\\n')\nos._exit(3)")
    assert reproduce.main(["--name", "dead", "--runs-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    kernel_log = tmp_path / "dead" / "notebooks" / reproduce.KERNEL_LOG
    assert "notebook 01_prepare_data failed with DeadKernelError" in err and f"the kernel's log: {kernel_log}" in err
    assert "fatal: the kernel gave up" in kernel_log.read_text() and "fatal" not in err


def test_ctrl_c_then_resume_skips_finished_notebooks_and_continues_training(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "mnadlib.reproduce", "--smoke", "--name", "r", "--runs-dir", str(tmp_path),
           "--variants", "pred_mem", "-p", "epochs", "20"]
    run = tmp_path / "r"
    ckpt = run / "train" / "pred_mem" / "checkpoint.pt"
    # A shell that starts the suite with `&` hands it SIGINT ignored; give the pipeline the default a terminal gives
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) as proc:
        deadline = time.time() + 300
        while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert ckpt.exists(), "training never wrote its first checkpoint"
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole foreground group
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == reproduce.INTERRUPTED, out[-2000:] + err[-2000:]
    assert f"--resume {run}" in err and "Traceback" not in err  # the dying kernel's own goes to notebooks/kernel.log
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert [(s["notebook"], s["status"]) for s in manifest["steps"]] == [("01_prepare_data", "ok"),
                                                                        ("02_train_pred_mem", "interrupted")]
    prepared = (run / "notebooks" / "01_prepare_data.ipynb").read_bytes()

    done = subprocess.run([sys.executable, "-m", "mnadlib.reproduce", "--resume", str(run)],
                          capture_output=True, text=True, timeout=PIPELINE_TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "01_prepare_data: done in an earlier attempt, skipped" in done.stdout and "Ablation" in done.stdout
    assert (run / "notebooks" / "01_prepare_data.ipynb").read_bytes() == prepared  # not run again
    assert (run / "notebooks" / "02_train_pred_mem.attempt-1.ipynb").is_file()  # the interrupted copy is kept
    trained = json.loads((run / "train" / "pred_mem" / "manifest.json").read_text())
    assert 1 <= trained["resumed_from_epoch"] < 20
    assert [h["epoch"] for h in json.loads((run / "train" / "pred_mem" / "history.json").read_text())] == list(range(1, 21))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["resumed"][0]["after"] == "interrupted"
    assert [s["notebook"] for s in manifest["steps"] if s["status"] == "ok"] == [
        "01_prepare_data", "02_train_pred_mem", "03_reproduce_auc", "05_result_figures"]
    assert (run / "results.json").is_file()

    assert reproduce.main(["--resume", str(run)]) == 0  # a finished run: its table again, nothing re-run
    assert json.loads((run / "manifest.json").read_text()) == manifest


def test_sigterm_unwinds_like_ctrl_c_exits_143_and_stops_the_kernel(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "mnadlib.reproduce", "--smoke", "--name", "t", "--runs-dir", str(tmp_path),
           "--variants", "pred_mem"]
    run = tmp_path / "t"
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not (run / "data").exists():  # 01 writes synthped
            time.sleep(0.05)
        kernels = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert kernels, "notebook 01's kernel never started"
        proc.send_signal(signal.SIGTERM)  # the process alone, as kill PID or a scheduler's time limit sends it
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == reproduce.TERMINATED, out[-2000:] + err[-2000:]
    assert f"terminated (SIGTERM); continue with: python -m mnadlib.reproduce --resume {run}" in err
    assert "Traceback" not in err
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert [(s["notebook"], s["status"]) for s in manifest["steps"]] == [("01_prepare_data", "interrupted")]
    assert (run / "notebooks" / reproduce.KERNEL_LOG).read_text().startswith("== 01_prepare_data, ")
    time.sleep(1)
    assert not any(Path(f"/proc/{k}").exists() for k in kernels), "the kernel outlived the pipeline"


@pytest.mark.parametrize("where", ["plan", "hold"])  # before the run folder is made, and after
def test_ctrl_c_before_the_first_notebook_exits_130_and_leaves_the_name_free(tmp_path: Path, monkeypatch, capsys,
                                                                             where: str) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(reproduce, where, interrupted)
    assert reproduce.main(["--name", "r", "--runs-dir", str(tmp_path)]) == reproduce.INTERRUPTED
    err = capsys.readouterr().err
    assert "interrupted before the run started" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_resume_refuses_a_live_run_a_non_run_folder_and_new_parameters(tmp_path: Path, capsys) -> None:
    run = tmp_path / "live"
    run.mkdir()
    assert reproduce.main(["--resume", str(run)]) == 2
    assert "holds no manifest.json" in capsys.readouterr().err
    assert list(run.iterdir()) == []  # no lock file left in a folder that is no run
    (run / "manifest.json").write_text(json.dumps({"dataset": "synthped", "variants": ["pred_mem"], "parameters": {},
                                                   "smoke": True, "steps": [], "status": "running"}))
    with runlog.hold(run):  # as the process still running the pipeline there holds it
        assert reproduce.main(["--resume", str(run)]) == 2
    assert "another process is running the pipeline" in capsys.readouterr().err
    assert reproduce.main(["--resume", str(run), "-p", "epochs", "3", "--smoke"]) == 2
    assert "drop --param, --smoke" in capsys.readouterr().err
    assert reproduce.main(["--resume", str(tmp_path / "nothing")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert reproduce.main(["--resume", str(run / "manifest.json")]) == 2
    assert "manifest.json: is a file, not a run folder; pass the folder" in capsys.readouterr().err
    (run / "manifest.json").write_text("{")
    assert reproduce.main(["--resume", str(run)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize("component", ["x" * 300, "x" * 300 + "/run"])
def test_resume_of_a_path_too_long_for_the_file_system_is_a_one_line_error(tmp_path: Path, capsys, component: str) -> None:
    assert reproduce.main(["--resume", str(tmp_path / component)]) == 2
    err = capsys.readouterr().err
    assert "File name too long" in err and "Traceback" not in err and err.count("\n") == 1


def test_resume_removes_what_writers_killed_mid_write_left(tmp_path: Path, monkeypatch, capsys) -> None:
    run = tmp_path / "killed"
    (run / "results").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"dataset": "synthped", "variants": ["pred_mem"], "parameters": {},
                                                   "smoke": True, "steps": [], "status": "running"}))
    leftovers = [run / ".manifest.json.k1ll3d_x.tmp", run / "results" / ".eval_pred_mem.json.a1b2c3d4.tmp",
                 run / "data" / ".synthped.q9w8e7r6.tmp" / "synthped" / "training" / "01.jpg"]
    kept = [run / "results" / "eval_pred_mem.json", run / "notes.tmp", run / ".hidden"]
    for path in leftovers + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    monkeypatch.setattr(reproduce, "plan", lambda *args, **kwargs: [])
    monkeypatch.setattr(reproduce, "summary", lambda out: "")
    assert reproduce.main(["--resume", str(run)]) == 0
    assert "removed 3 temporary file(s) or folder(s)" in capsys.readouterr().out
    assert not any(p.exists() for p in leftovers) and not (run / "data" / ".synthped.q9w8e7r6.tmp").exists()
    assert all(p.exists() for p in kept)


MANIFEST = {"dataset": "synthped", "variants": ["pred_mem"], "parameters": {}, "smoke": True, "steps": [],
            "status": "failed", "versions": {"mnadlib": "0.0.9"}}


@pytest.mark.parametrize("manifest, message", [
    ([1, 2], "holds a JSON list, not a run's manifest"),
    (7, "holds a JSON int, not a run's manifest"),
    ({**MANIFEST, "parameters": ["epochs"]}, "parameters is list, not dict"),
    ({**MANIFEST, "variants": "pred_mem"}, "variants is str, not list"),
    ({**MANIFEST, "steps": [{"notebook": "01_prepare_data"}]}, "a step lacks its notebook or status"),
    ({**MANIFEST, "data_root": 5}, "data_root is int"),
    ({**MANIFEST, "resumed": "yes"}, "resumed is str"),
    ({**MANIFEST, "variants": ["pred_big"]}, "made by mnadlib 0.0.9) holds settings that mnadlib"),
    ({**MANIFEST, "parameters": {"old_param": 1}}, "unknown parameter(s) ['old_param']"),
])
def test_resume_of_a_manifest_this_version_cannot_read_is_a_one_line_error(tmp_path: Path, capsys, manifest,
                                                                           message: str) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert reproduce.main(["--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and ("cannot be continued" in err or "can continue" in err)
    assert "Traceback" not in err and json.loads((tmp_path / "manifest.json").read_text()) == manifest


def test_resume_with_other_package_versions_warns(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({**MANIFEST, "versions": {**reproduce._versions(), "torch": "1.0"}}))
    monkeypatch.setattr(reproduce, "plan", lambda *args, **kwargs: [])
    monkeypatch.setattr(reproduce, "summary", lambda out: "")
    assert reproduce.main(["--resume", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "started with other versions (torch 1.0 -> " in err and "mnadlib" not in err.split("versions")[1]


def test_resume_warns_of_versions_the_run_recorded_only(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(reproduce, "plan", lambda *args, **kwargs: [])
    monkeypatch.setattr(reproduce, "summary", lambda out: "")
    now = reproduce._versions()
    assert {"opencv", "scipy", "scikit-image", "scikit-learn"} <= now.keys()
    older = {k: now[k] for k in ("mnadlib", "python", "torch", "numpy", "papermill", "platform")}  # before opencv & co.
    (tmp_path / "manifest.json").write_text(json.dumps({**MANIFEST, "versions": older}))
    assert reproduce.main(["--resume", str(tmp_path)]) == 0
    assert "other versions" not in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text(json.dumps({**MANIFEST, "versions": {**now, "scikit-image": "0.1"}}))
    assert reproduce.main(["--resume", str(tmp_path)]) == 0
    assert "started with other versions (scikit-image 0.1 -> " in capsys.readouterr().err


def test_resume_at_another_git_commit_warns_unless_the_run_had_finished(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(reproduce, "git_commit", lambda: "new")
    monkeypatch.setattr(reproduce, "plan", lambda *args, **kwargs: [])
    monkeypatch.setattr(reproduce, "summary", lambda out: "")
    for status, warned in (("failed", True), ("ok", False)):
        manifest = {**MANIFEST, "versions": reproduce._versions(), "git_commit": "old", "status": status}
        (tmp_path / "manifest.json").write_text(json.dumps(manifest))
        assert reproduce.main(["--resume", str(tmp_path)]) == 0
        err = capsys.readouterr().err
        assert ("this run started at git commit old and continues at new" in err) is warned, (status, err)


@pytest.mark.parametrize("results", [None, "{", '{"main": {}}'])
def test_a_finished_run_without_a_readable_results_json_is_a_one_line_error(tmp_path: Path, capsys, results) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({**MANIFEST, "status": "ok"}))
    if results is not None:
        (tmp_path / "results.json").write_text(results)
    assert reproduce.main(["--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot print the results table" in err and "Traceback" not in err and err.count("\n") == 1


def test_resume_warns_when_this_version_plans_other_notebook_parameters(tmp_path: Path, monkeypatch, capsys) -> None:
    run = tmp_path / "moved"  # a run folder moved since: its own paths differ, which is no change of parameters
    planned = reproduce.plan("synthped", None, tmp_path / "was-here", {}, True, ["pred_mem"])
    logged = [{"notebook": name, "parameters": params, "status": "ok"} for name, _, params in planned[:2]]
    logged[1]["parameters"] = {**logged[1]["parameters"], "max_steps": 5}  # what an older mnadlib's smoke mode set
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({**MANIFEST, "steps": logged, "versions": reproduce._versions()}))
    monkeypatch.setattr(reproduce, "execute", lambda steps, out, log: None)
    monkeypatch.setattr(reproduce, "summary", lambda out: "")
    assert reproduce.main(["--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert "other parameters than the run's earlier attempt did (02_train_pred_mem max_steps: 5 -> 2)" in err
    assert "out_dir" not in err and "01_prepare_data" not in err


def test_a_folder_that_takes_no_lock_file_is_a_one_line_error(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    (tmp_path / runlog.LOCK).mkdir()  # open() fails on it as on a read-only or full file system
    assert reproduce.main(["--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write in run folder {tmp_path}" in err and "Traceback" not in err and err.count("\n") == 1

    def unwritable(out):
        raise ValueError(f"cannot write in run folder {out}")

    monkeypatch.setattr(reproduce, "hold", unwritable)
    assert reproduce.main(["--name", "new", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert list((tmp_path / "runs").iterdir()) == []  # the --name stays free


def test_run_folder_on_a_file_system_without_locks_warns_and_goes_on(tmp_path: Path, monkeypatch, capsys) -> None:
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(runlog.fcntl, "flock", no_locks)
    with runlog.hold(tmp_path):  # no RunLocked: the run goes on, unlocked, and says so
        assert (tmp_path / runlog.LOCK).is_file()
        assert f"cannot lock {tmp_path}" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["-p", "epoch", "3"], "unknown parameter(s) ['epoch']"),
    (["-p", "epochs", "abc"], "epochs must be int, got str 'abc'"),
    (["-p", "epochs", "[1"], "epochs must be int, got str '[1'"),  # not PyYAML's six-line parse error
    (["--dataset", "cam", "-p", "footage", "/no/cam #2: x.mp4"], "footage /no/cam #2: x.mp4 does not exist"),  # as written
    (["--name", "x" * 300], "pick a shorter --name"),
    (["-p", "svg", "1"], "svg must be bool, got int 1"),
    (["-p", "out_dir", "/tmp/elsewhere"], "the pipeline sets out_dir (use --name and --runs-dir)"),
    (["-p", "checkpoint", "/x/recon.pt", "-p", "resume", "false"], "checkpoint (use nothing: 03 and 05 evaluate"),
    (["-p", "dataset", "ped2"], "dataset (use --dataset)"),
    (["--config", "/"], "--config /: cannot read it"),
    (["-p", "device", "cuda:99"], "cuda:99"),
    (["-p", "width", "true"], "width must be float, got bool True"),
    (["-p", "method", "foo"], "method must be pred or recon"),
    (["-p", "footage", "/no/such/video.mp4"], "synthped is generated, not injected"),
    (["--dataset", "ped2"], "needs --data-root"),
    (["--dataset", "../ped2", "--data-root", "."], "must be a folder name"),
    (["--dataset", "mycam", "-p", "footage", "/no/such/video.mp4"], "does not exist"),
    (["--variants", "pred_mem,big"], "unknown variant(s) ['big']"),
    (["--variants", "recon_mem"], "must include pred_mem"),
])
def test_bad_arguments_exit_2_without_creating_a_run(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    assert reproduce.main(["--name", "x", "--runs-dir", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", sorted(reproduce.SET_BY_RUN))
def test_each_parameter_the_pipeline_sets_is_refused_naming_its_option(tmp_path: Path, capsys, name: str) -> None:
    value = {"use_memory": "false", "resume": "true"}.get(name, "/tmp/elsewhere")
    assert reproduce.main(["--name", "x", "--runs-dir", str(tmp_path), "-p", name, value]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{name} (use {reproduce.SET_BY_RUN[name]})" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_an_unknown_parameter_is_refused_in_one_line_listing_each_notebooks_parameters(tmp_path: Path, capsys) -> None:
    assert reproduce.main(["--name", "x", "--runs-dir", str(tmp_path), "-p", "epoch", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown parameter(s) ['epoch']" in err, err
    for notebook in reproduce.NOTEBOOKS:
        assert f"{notebook}: " + ", ".join(reproduce.notebook_parameters(notebook)) in err


def test_parameters_from_yaml_then_command_line(tmp_path: Path) -> None:
    cfg = tmp_path / "params.yaml"
    cfg.write_text("epochs: 3\ndevice: cpu\nmin_auc: 0.9\n")
    params = reproduce._user_params(str(cfg), [["epochs", "5"], ["svg", "false"]])
    assert params == {"epochs": 5, "device": "cpu", "min_auc": 0.9, "svg": False}
    steps = reproduce.plan("synthped", None, tmp_path / "run", params, smoke=False, variants=["pred_mem", "recon_mem"])
    by_name = {name: p for name, _, p in steps}
    assert by_name["02_train_recon_mem"]["method"] == "recon" and by_name["02_train_recon_mem"]["epochs"] == 5
    assert by_name["02_train_pred_mem"]["use_memory"] is True and by_name["05_result_figures"]["svg"] is False
    assert by_name["01_prepare_data"]["overwrite"] is False  # 01 never replaces data another run made
    with_root = reproduce.plan("synthped", tmp_path, tmp_path / "run", {"overwrite": True}, False, ["pred_mem"])
    assert with_root[0][2]["overwrite"] is True and with_root[0][2]["data_root"] == str(tmp_path)  # unless asked
    assert "epochs" not in by_name["03_reproduce_auc"] and by_name["03_reproduce_auc"]["min_auc"] == 0.9
    cfg.write_text("th: 1e-3\n")  # PyYAML reads this as text; a float parameter takes it as the number
    steps = reproduce.plan("synthped", None, tmp_path / "run", reproduce._user_params(str(cfg), [["alpha", "5E-1"]]),
                           False, ["pred_mem"])
    evaluated = {name: p for name, _, p in steps}["03_reproduce_auc"]
    assert evaluated["th"] == 1e-3 and evaluated["alpha"] == 0.5
    with pytest.raises(ValueError, match="epochs must be int, got str '1e3'"):
        reproduce.plan("synthped", None, tmp_path / "run", {"epochs": "1e3"}, False, ["pred_mem"])
    with pytest.raises(ValueError, match="th must be float, got str 'nan'"):
        reproduce.plan("synthped", None, tmp_path / "run", {"th": "nan"}, False, ["pred_mem"])
    bad = tmp_path / "nested.yaml"
    bad.write_text("train: {epochs: 3}\n")
    with pytest.raises(ValueError, match="flat YAML"):
        reproduce._user_params(str(bad), [])
    bad.write_text("1: 2\nfoo: 3\n")
    with pytest.raises(ValueError, match="flat YAML"):
        reproduce._user_params(str(bad), [])


def test_broken_yaml_and_an_unwritable_runs_dir_are_one_line_errors(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("epochs: [1\n")
    assert reproduce.main(["--config", str(bad), "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--config {bad} is not valid YAML" in err and "line 2" in err and err.count("\n") == 1
    assert reproduce._user_params(None, [["x", "'02'"], ["y", "a b #1.mp4"], ["z", "3"]]) == {"x": "02", "y": "a b #1.mp4", "z": 3}
    assert reproduce.main(["--runs-dir", str(bad / "runs"), "--name", "x"]) == 2
    err = capsys.readouterr().err
    assert "cannot create run folder" in err and "pick a writable --runs-dir" in err and "Traceback" not in err


def test_help_documents_the_options(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        reproduce.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--name", "--config", "--smoke", "--dataset", "--data-root", "--param", "--runs-dir", "--variants",
                 "--resume"):
        assert flag in out


def test_prepare_dataset_reuses_or_regenerates_synthped(tmp_path: Path) -> None:
    ds = pipeline.prepare_dataset(tmp_path, "synthped", "small", seed=0)
    meta = ds.path / "testing" / "annotations.json"
    stamp = meta.stat().st_mtime_ns
    assert pipeline.prepare_dataset(tmp_path, "synthped").labels == ds.labels  # no preset asked: reused as is
    assert meta.stat().st_mtime_ns == stamp
    with pytest.raises(pipeline.DatasetConflict, match="holds synthped generator .*, seed 0, not .* seed 1: give another"):
        pipeline.prepare_dataset(tmp_path, "synthped", "small", seed=1)  # another seed replaces it only when asked
    assert meta.stat().st_mtime_ns == stamp
    pipeline.prepare_dataset(tmp_path, "synthped", "small", seed=1, overwrite=True)
    assert json.loads(meta.read_text())["seed"] == 1
    with pytest.raises(DataError, match="seed 2"):
        pipeline.prepare_dataset(tmp_path, "synthped", "small", seed=2, generate=False, overwrite=True)
    with pytest.raises(DataError, match="does not exist .or is empty., and synthped .* is not generated here"):
        pipeline.prepare_dataset(tmp_path / "empty", "synthped", generate=False)
    with pytest.raises(DataError, match="ped2 does not exist"):
        pipeline.prepare_dataset(tmp_path, "ped2")
    assert pipeline.expected_counts("ped2")["test_videos"] == 12 == pipeline.expected_counts("UCSDped2")["test_videos"]


def test_prepare_dataset_regenerates_what_an_older_generator_wrote(tmp_path: Path) -> None:
    """Data from another synthped generator version is never reused silently, nor replaced unasked."""
    ds = pipeline.prepare_dataset(tmp_path, "synthped", "small", seed=0)
    meta_path = ds.path / "testing" / "annotations.json"
    meta = json.loads(meta_path.read_text())
    assert meta["generator"] == synth.GENERATOR_VERSION
    meta["generator"] = synth.GENERATOR_VERSION - 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError):
        pipeline.prepare_dataset(tmp_path, "synthped", generate=False)
    with pytest.raises(DataError, match="overwrite=True"):
        pipeline.prepare_dataset(tmp_path, "synthped")  # never replaced unasked
    pipeline.prepare_dataset(tmp_path, "synthped", overwrite=True)
    assert json.loads(meta_path.read_text())["generator"] == synth.GENERATOR_VERSION
    objects = pipeline.annotated_objects(ds)
    assert objects is not None and set(objects) == {v.name for v in ds.videos("testing")}


def test_prepare_dataset_never_replaces_data_mnadlib_did_not_write(tmp_path: Path, walking_footage) -> None:
    """A downloaded dataset under the name asked for stays byte for byte, whatever the flags."""
    own = tmp_path / "ped2" / "training" / "frames" / "01"
    own.mkdir(parents=True)
    (own / "000.jpg").write_bytes(b"a real frame")
    mine = tmp_path / "synthped" / "testing" / "frames" / "01"
    mine.mkdir(parents=True)
    (mine / "000.jpg").write_bytes(b"my own synthped-named data")
    video = walking_footage(tmp_path / "in" / "cam", n=330)
    with pytest.raises(DataError, match="not written by mnadlib's inject"):
        pipeline.prepare_dataset(tmp_path, "ped2", seed=2, footage=video, overwrite=True)
    with pytest.raises(DataError, match="not written by mnadlib's synth"):
        pipeline.prepare_dataset(tmp_path, "synthped", "small", overwrite=True)
    assert (own / "000.jpg").read_bytes() == b"a real frame"
    assert (mine / "000.jpg").read_bytes() == b"my own synthped-named data"


def test_notebooks_json_is_written_atomically(tmp_path: Path, monkeypatch) -> None:
    """results/*.json and results.json survive a write that fails (a full disk) whole, leaving no temporary file."""
    run = pipeline.RunFolder(tmp_path)
    written = [run.write_json("02_train_pred_mem", {"path": tmp_path, "n": np.int64(3)}),
               pipeline.write_results(run, {"main": {"frame_auc": np.float32(0.5)}})]
    assert json.loads(written[0].read_text()) == {"path": str(tmp_path), "n": 3}
    before = [p.read_bytes() for p in written]

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match="is the disk full"):
        run.write_json("02_train_pred_mem", {"n": 4})
    with pytest.raises(WriteError, match="is the disk full"):
        pipeline.write_results(run, {"main": {}})
    assert [p.read_bytes() for p in written] == before
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["02_train_pred_mem.json", "results", "results.json"]


def test_a_nan_auc_is_null_in_results_json_and_printed_as_missing(tmp_path: Path) -> None:
    """Any NaN or infinite AUC (an ablation row's or a kind's too) is null: results.json stays strict JSON and the table prints."""
    run = pipeline.RunFolder(tmp_path)
    pipeline.write_results(run, {
        "params": {"dataset": "mycam"}, "main": {"variant": "pred_mem", "frame_auc": 0.8, "macro_auc": float("nan")},
        "claims": {"min_auc": 0.0, "holds": None}, "table1": pipeline.table1({"pred": {"mycam": 80.0}}), "ablation": [],
        "by_kind": [{"kind": "cart", "frames": 3, "frame_auc": np.float64("inf"), "frame_auc_running": 50.0}]})

    def refuse(name: str) -> None:
        raise ValueError(f"{name} in results.json")

    results = json.loads((tmp_path / "results.json").read_text(), parse_constant=refuse)
    assert results["main"]["macro_auc"] is None and results["by_kind"][0]["frame_auc"] is None
    assert "macro AUC - (no test video holds both classes) (no claim)" in reproduce.summary(tmp_path)


def test_the_visible_area_table_says_when_only_some_videos_have_masks(tmp_path: Path) -> None:
    run = pipeline.RunFolder(tmp_path)
    row = {"visible_area": "1-2 %", "frames": 206, "frame_auc": 64.8, "frame_auc_running": 63.2}
    base = {"params": {"dataset": "UCSDped1"}, "main": {"variant": "pred_mem", "frame_auc": 0.8, "macro_auc": 0.7},
            "claims": {"min_auc": 0.7, "holds": True}, "table1": pipeline.table1({"pred": {"UCSDped1": 80.0}}),
            "ablation": [], "by_size": [row]}
    pipeline.write_results(run, {**base, "by_size_videos": {"with_masks": 10, "test_videos": 36}})
    assert ("running-max; pixel masks for 10 of 36 test videos, the others' anomalous frames left out)"
            in reproduce.summary(tmp_path))
    pipeline.write_results(run, {**base, "by_size_videos": {"with_masks": 36, "test_videos": 36}})
    assert "(protocol and running-max)\n" in reproduce.summary(tmp_path)
    assert "macro AUC 70.00% (claim >= 70.0%: holds)" in reproduce.summary(tmp_path)
    pipeline.write_results(run, {**base, "claims": {"min_auc": 0.7, "holds": False}})
    assert "(claim >= 70.0%: MISSED)" in reproduce.summary(tmp_path)
    pipeline.write_results(run, base)  # a results.json of an earlier version, without the count
    assert "(protocol and running-max)\n" in reproduce.summary(tmp_path)


def test_pick_examples_and_tables() -> None:
    videos = {"01": VideoScores(frames=[4, 5, 6, 7], score=[0.9, 0.2, 0.1, 0.95], label=[0, 1, 1, 0]),
              "02": VideoScores(frames=[4, 5, 6], score=[1.0, 0.5, 0.3], label=[0, 0, 1])}
    result = EvalResult(videos, auc=None, macro_auc=None, config={})
    assert pipeline.pick_examples(result, 3) == [("01", 6), ("02", 6), ("02", 4)]
    assert pipeline.example_titles(result, [("01", 6), ("02", 4)]) == ["01/6 anomalous, score 0.10", "02/4 normal, score 1.00"]
    table = pipeline.format_table([{"a": 1, "b": None}, {"a": 22, "b": "x"}], ("a", "b"))
    assert table.splitlines() == ["a   b", "--  -", "1   -", "22  x"]
    rows = pipeline.table1({"pred": {"synthped": 75.0}})
    assert rows[0] == {"source": "paper", "method": "pred", "ped2": 97.0, "avenue": 88.5, "shanghai": 70.5}
    assert pipeline.table1_columns("synthped")[-1] == "synthped" and "synthped" not in pipeline.table1_columns("ped2")
    ucsd = pipeline.table1({"pred": {"UCSDped2": 96.1}})[-1]
    assert ucsd == {"source": "measured here", "method": "pred", "ped2": 96.1}
    assert pipeline.table1_columns("UCSDped2") == pipeline.table1_columns("ped2") == ("source", "method", "ped2", "avenue", "shanghai")


def test_same_test_set_tells_an_evaluation_of_these_labels_from_another_runs() -> None:
    labels = {"01": np.array([0, 0, 0, 0, 0, 1, 1]), "02": np.array([1, 0, 0, 0, 0, 0])}
    pred = {"videos": {"01": {"frames": [4, 5, 6], "label": [0, 1, 1]}, "02": {"frames": [4, 5], "label": [0, 0]}}}
    recon = {"videos": {"01": {"frames": list(range(7)), "label": labels["01"].tolist()},
                        "02": {"frames": list(range(6)), "label": labels["02"].tolist()}}}
    assert pipeline.same_test_set(pred, labels) and pipeline.same_test_set(recon, labels)
    assert not pipeline.same_test_set({"videos": {"01": pred["videos"]["01"]}}, labels)  # a video missing
    assert not pipeline.same_test_set({"videos": {**pred["videos"], "03": pred["videos"]["02"]}}, labels)
    other = {"videos": {**pred["videos"], "01": {"frames": [4, 5, 6], "label": [1, 1, 1]}}}  # another label file
    assert not pipeline.same_test_set(other, labels)
    longer = {"videos": {**pred["videos"], "02": {"frames": [4, 5, 6], "label": [0, 0, 0]}}}  # a longer video
    assert not pipeline.same_test_set(longer, labels)
    assert not pipeline.same_test_set({"videos": {n: {**v, "label": None} for n, v in pred["videos"].items()}}, labels)


def test_a_test_set_of_one_class_is_a_clear_error_not_a_missing_auc() -> None:
    from mnadlib.evaluate import EvalResult, VideoScores

    def result(*labels: list[int] | None) -> EvalResult:
        videos = {f"0{k}": VideoScores(frames=list(range(4, 4 + len(v or [0]))), label=v) for k, v in enumerate(labels)}
        return EvalResult(videos, None, None, {})

    with pytest.raises(ValueError, match="every one of the 5 scored test frames of D is labelled normal .* needs both"):
        pipeline.check_auc(result([0, 0], [0, 0, 0]), "D")
    with pytest.raises(ValueError, match="of the 2 scored test frames of D is labelled anomalous"):
        pipeline.check_auc(result([1, 1]), "D")
    with pytest.raises(ValueError, match="no frame labels for the test videos of D"):
        pipeline.check_auc(result(None), "D")
    pipeline.check_auc(EvalResult({}, 0.8, 0.8, {}), "D")


def test_labels_are_found_under_the_papers_name_and_missing_ones_say_where_they_were_looked_for(tmp_path: Path) -> None:
    import numpy as np

    for split in ("training", "testing"):
        (tmp_path / "UCSDped2" / split).mkdir(parents=True)
    np.save(tmp_path / "frame_labels_ped2.npy", np.zeros((1, 3)))
    assert pipeline.prepare_dataset(tmp_path, "UCSDped2", generate=False).labels == tmp_path / "frame_labels_ped2.npy"
    np.save(tmp_path / "frame_labels_UCSDped2.npy", np.zeros((1, 3)))  # the folder's own name comes first
    assert pipeline.prepare_dataset(tmp_path, "UCSDped2", generate=False).labels == tmp_path / "frame_labels_UCSDped2.npy"
    (tmp_path / "frame_labels_UCSDped2.npy").unlink()
    (tmp_path / "frame_labels_ped2.npy").unlink()
    with pytest.raises(DataError, match=r"no frame_labels_UCSDped2.npy or frame_labels_ped2.npy beside .*-p labels PATH"):
        pipeline.prepare_dataset(tmp_path, "UCSDped2", generate=False).test_labels([])


def test_a_published_count_mismatch_advises_resume_for_a_download_and_a_new_run_for_a_rename(tmp_path: Path) -> None:
    exc = reproduce.PipelineError("notebook 01_prepare_data failed", "AssertionError",
                                  "ped2 counts {} differ from the published {}: check the download")
    advice = reproduce.next_step(exc, tmp_path)
    assert f"--resume {tmp_path}" in advice and "start a new run with that --dataset" in advice


def test_short_footage_is_refused_before_a_kernel_starts_saying_how_long(tmp_path: Path, capsys, walking_footage) -> None:
    video = walking_footage(tmp_path / "cam", n=100)
    args = ["--name", "x", "--runs-dir", str(tmp_path), "--dataset", "mycam", "-p", "footage", str(video)]
    assert reproduce.main(args) == 2
    err = capsys.readouterr().err
    assert "has 100 frames" in err and "need at least 240 frames" in err and "-p clip_length" in err
    assert not (tmp_path / "x").exists()
    reproduce._check_footage({"footage": str(video), "clip_length": 20})  # notebook 01's inject settings: enough
    with pytest.raises(ValueError, match="need at least 220 frames"):
        reproduce._check_footage({"footage": str(video), "clip_length": 20, "train_fraction": 0.9})
    for extra, needle in ((["-p", "train_fraction", "5e-1"], "has 100 frames"),  # read as 0.5 before the footage check
                          (["-p", "clip_length", "abc"], "clip_length must be int, got str 'abc'")):
        assert reproduce.main(args + extra) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, err
    assert not (tmp_path / "x").exists()


def test_kernel_sockets_that_a_killed_pipeline_left_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    import socket

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    names = [f"mnadlib-kernel-{gone.pid}-1", f"mnadlib-kernel-{gone.pid}-2", f"mnadlib-kernel-{os.getpid()}-1"]
    for name in names:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(tmp_path / name))
    (tmp_path / f"mnadlib-kernel-{gone.pid}-3").write_text("a file of that name, not a socket")
    removed = reproduce.remove_stale_kernel_sockets(tmp_path)
    assert sorted(p.name for p in removed) == names[:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([names[2], f"mnadlib-kernel-{gone.pid}-3"])
