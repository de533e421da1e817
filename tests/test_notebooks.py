"""Notebooks: py:percent and .ipynb in sync and output-free, one documented parameters cell, clear errors on bad parameters.

The notebooks run end to end in ``test_reproduce.py`` (smoke parameters) and, with their default
parameters, under ``pytest --nbval-lax --current-env notebooks/`` in CI.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest
import torch

from mnadlib import pipeline
from mnadlib.checkpoint import save_checkpoint
from mnadlib.config import ModelConfig
from mnadlib.model import MNAD
from mnadlib.reproduce import NOTEBOOK_DIR, current_python_kernel

ALL_NOTEBOOKS = sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9]*.py"))  # the pipeline's and 04, the interactive one
PARAM_LINE = re.compile(r'^[a-z_][a-z0-9_]*: (str|int|float|bool) = ("[^"=]*"|[-0-9.]+|True|False)  # [^=]+$')


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    """(type, source, tags) of every cell."""
    return [(c.cell_type, c.source.strip(), list(c.metadata.get("tags", []))) for c in nb.cells]


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_py_and_ipynb_in_sync_and_output_free(name: str) -> None:
    py = jupytext.read(NOTEBOOK_DIR / f"{name}.py")
    ipynb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    assert _cells(py) == _cells(ipynb), f"{name}.py and {name}.ipynb differ: run `jupytext --sync notebooks/{name}.py`"
    assert ipynb.metadata["kernelspec"]["name"] == "python3"
    assert "widgets" not in ipynb.metadata
    for cell in ipynb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}.ipynb holds outputs"


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_one_documented_parameters_cell(name: str) -> None:
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    lines = [ln for ln in tagged[0].source.splitlines() if ln.strip()]
    assert all(PARAM_LINE.match(ln) for ln in lines), [ln for ln in lines if not PARAM_LINE.match(ln)]
    inferred = papermill.inspect_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"))
    assert len(inferred) == len(lines) and all(p["help"] for p in inferred.values())
    assert "out_dir" in inferred and "dataset" in inferred
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert "google.colab" in code[0] and "check_params(globals()" in code[2]


@pytest.mark.parametrize("source, clones", [("https://github.com/someone/mnadlib.git", True),
                                             ("git+https://github.com/someone/mnadlib.git", True), ("/content/drive/mnadlib", False)])
def test_colab_cell_installs_a_checkout_in_colab_only(monkeypatch, tmp_path: Path, source: str, clones: bool) -> None:
    import types

    first = {n: next(c.source for c in nbformat.read(NOTEBOOK_DIR / f"{n}.ipynb", as_version=4).cells
                     if c.cell_type == "code") for n in ALL_NOTEBOOKS}
    code = first["01_prepare_data"]
    assert all(c.startswith(code) for c in first.values())  # the same install in every notebook (04 adds widgets)
    ran: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: ran.append(cmd))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("MNADLIB_SOURCE", source)
    monkeypatch.setenv("MNADLIB_CHECKOUT", str(tmp_path / "mnadlib"))
    exec(code, {})
    assert ran == []  # not in Colab: nothing installed
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    exec(code, {})
    checkout = str(tmp_path / "mnadlib") if clones else source
    expected = [["git", "clone", "-q", source.removeprefix("git+"), checkout]] if clones else []
    assert ran == [*expected, [sys.executable, "-m", "pip", "install", "-q", "-e", f"{checkout}[notebooks]"]]
    assert sys.path[0] == os.path.abspath(checkout)
    monkeypatch.delenv("MNADLIB_SOURCE")
    ran.clear()
    exec(code, {})
    assert ran == []  # no source set, mnadlib already installed (by a pip cell of the user's): used as it is
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="set MNADLIB_SOURCE"):
        exec(code, {})


def test_check_params_reports_every_problem() -> None:
    injected = "# Parameters\nepochs = \"3\"\nlr = 1\nepoch = 3\n"
    ns = {"__annotations__": {"epochs": int, "lr": float, "out_dir": str, "ckpt": str}, "In": ["", "x = 1", injected, ""],
          "epochs": "3", "lr": 1, "out_dir": "runs/x", "ckpt": "/no/such/model.pt", "epoch": 3, "rows": []}
    with pytest.raises(ValueError) as err:
        pipeline.check_params(ns, paths=("out_dir",), existing=("ckpt",))
    msg = str(err.value)
    assert "unknown parameter 'epoch'" in msg and "'epochs' must be int, got str '3'" in msg
    assert "rows" not in msg  # a global of a later cell (a second Run All) is not an injected parameter
    assert "'out_dir' must be an absolute path" in msg and "/no/such/model.pt does not exist" in msg
    assert ns["lr"] == 1.0 and isinstance(ns["lr"], float)
    good = {"__annotations__": {"epochs": int, "use": bool}, "epochs": 2, "use": False}
    assert pipeline.check_params(good) == {"epochs": 2, "use": False}
    with pytest.raises(ValueError, match="'epochs' must be int, got bool"):
        pipeline.check_params({"__annotations__": {"epochs": int}, "epochs": True})


def test_check_params_refuses_non_finite_floats_and_values_outside_choices_or_bounds() -> None:
    spec = {"method": str, "min_auc": float, "alpha": float, "threads": int, "seed": int}
    ns = {"__annotations__": spec, "method": "bogus", "min_auc": 70.0, "alpha": float("nan"), "threads": 0, "seed": -1}
    rules = {"choices": {"method": ("pred", "recon")},
             "bounds": {"min_auc": (0, 1), "alpha": (None, 1), "threads": (1, None), "seed": (0, 2**32 - 1)}}
    with pytest.raises(ValueError) as err:
        pipeline.check_params(ns, **rules)
    msg = str(err.value)
    assert "'method' must be one of 'pred', 'recon', got 'bogus'" in msg
    assert "'min_auc' must be between 0 and 1, got 70.0" in msg and "'alpha' must be a finite number, got nan" in msg
    assert "'threads' must be at least 1, got 0" in msg and "'seed' must be between 0 and 4294967295, got -1" in msg
    good = {"__annotations__": spec, "method": "recon", "min_auc": 0.7, "alpha": -1.0, "threads": 1, "seed": 2**32 - 1}
    assert pipeline.check_params(good, **rules)["method"] == "recon"


def test_check_params_expands_home_and_explains_text_read_as_a_number(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "model.pt").write_bytes(b"x")
    ns = {"__annotations__": {"data_root": str, "checkpoint": str}, "data_root": "~/data", "checkpoint": "~/model.pt"}
    pipeline.check_params(ns, paths=("data_root",), existing=("checkpoint",))
    assert ns == {**ns, "data_root": str(tmp_path / "data"), "checkpoint": str(tmp_path / "model.pt")}
    with pytest.raises(ValueError, match="must be str, got int 2 .*pass text with -r video VALUE"):
        pipeline.check_params({"__annotations__": {"video": str}, "video": 2})
    with pytest.raises(ValueError, match="papermill's -p takes True or False"):
        pipeline.check_params({"__annotations__": {"svg": bool}, "svg": "false"})


def _run(name: str, tmp_path: Path, **params) -> papermill.PapermillExecutionError:
    """Execute a notebook expecting it to fail; return the error."""
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
                                   parameters={"out_dir": str(tmp_path / "run"), **params}, progress_bar=False,
                                   kernel_manager_class=current_python_kernel())
    return err.value


@pytest.mark.parametrize("name, params, ename, message", [
    ("02_train", {"epoch": 3}, "ValueError", "unknown parameter 'epoch'"),
    ("02_train", {"epochs": "three"}, "ValueError", "parameter 'epochs' must be int, got str 'three'"),
    ("01_prepare_data", {"data_root": "data"}, "ValueError", "'data_root' must be an absolute path"),
    ("03_reproduce_auc", {"checkpoint": "/no/such/model.pt"}, "ValueError", "/no/such/model.pt does not exist"),
    ("02_train", {"dataset": "ped2", "data_root": "{tmp}"}, "DataError", "ped2 does not exist"),
    ("04_interactive_localization", {"checkpoint": "model.pt"}, "ValueError", "'checkpoint' must be an absolute path"),
    ("05_result_figures", {"examples": -1}, "ValueError", "parameter 'examples' must be at least 0, got -1"),
    ("03_reproduce_auc", {"method": "bogus"}, "ValueError", "'method' must be one of 'pred', 'recon', got 'bogus'"),
    ("03_reproduce_auc", {"min_auc": 70}, "ValueError", "'min_auc' must be between 0 and 1, got 70.0"),
    ("04_interactive_localization", {"threads": 0}, "ValueError", "'threads' must be at least 1, got 0"),
    ("02_train", {"max_steps": -3}, "ValueError", "'max_steps' must be at least 0, got -3"),
])
def test_bad_parameters_fail_with_a_clear_error(tmp_path: Path, name: str, params: dict, ename: str, message: str) -> None:
    params = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in params.items()}
    err = _run(name, tmp_path, **params)
    assert err.ename == ename and message in err.evalue


def test_02_run_again_keeps_its_model_and_refuses_to_replace_it_with_other_settings(tmp_path: Path) -> None:
    """A second Run All trains nothing; another seed in the same out_dir stops before touching the model."""
    quick = {"epochs": 1, "max_steps": 2, "device": "cpu", "out_dir": str(tmp_path / "run")}

    def execute(**params) -> None:
        papermill.execute_notebook(str(NOTEBOOK_DIR / "02_train.ipynb"), str(tmp_path / "02.ipynb"),
                                   parameters={**quick, **params}, progress_bar=False,
                                   kernel_manager_class=current_python_kernel())

    execute()
    model = tmp_path / "run" / "train" / "pred_mem" / "model.pt"
    before = model.read_bytes()
    execute()
    assert model.read_bytes() == before and "already trained with these settings" in (tmp_path / "02.ipynb").read_text()
    err = _run("02_train", tmp_path, **quick, seed=1)
    assert err.ename == "CheckpointError" and "train.seed (saved 0, now 1)" in err.evalue
    assert "out_dir in a notebook" in err.evalue and "resume=False" in err.evalue
    assert model.read_bytes() == before
    execute(seed=1, resume=False)
    assert model.read_bytes() != before


def test_a_published_dataset_name_with_other_counts_is_refused(tmp_path: Path) -> None:
    """A UCSD release folder is checked against Ped2's published counts; the error says how to run on part of it."""
    import cv2
    import numpy as np

    root = tmp_path / "data" / "UCSDped2"
    for split in ("Train", "Test"):
        folder = root / split / f"{split}001"
        folder.mkdir(parents=True)
        for t in range(12):
            cv2.imwrite(str(folder / f"{t + 1:03d}.tif"), np.full((16, 24, 3), 10 * t, np.uint8))
    np.save(tmp_path / "data" / "frame_labels_UCSDped2.npy", np.zeros((1, 12), int))
    err = _run("01_prepare_data", tmp_path, dataset="UCSDped2", data_root=str(tmp_path / "data"))
    assert err.ename == "AssertionError" and "differ from the published" in err.evalue
    assert "'test_videos': 12" in err.evalue and "UCSDped2_part" in err.evalue


def test_checkpoint_of_the_other_method_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(method="pred", width=0.125)
    ckpt = save_checkpoint(tmp_path / "pred.pt", MNAD(cfg), torch.nn.functional.normalize(torch.rand(10, cfg.fdim), dim=1),
                           train_config={"size": [32, 32]})
    for name in ("03_reproduce_auc", "05_result_figures"):
        err = _run(name, tmp_path, method="recon", checkpoint=str(ckpt))
        assert err.ename == "CheckpointError" and "holds a 'pred' model, not 'recon'" in err.evalue
        assert not (tmp_path / "run" / "data").exists()  # refused before synthped is generated


def test_03_reproduces_the_authors_auc_with_their_pickles(tmp_path: Path, parity: Path) -> None:
    """03 on the authors' pred model.pth/keys.pt over tiny_ucsd gives the AUC their Evaluate.py recorded."""
    import json

    import numpy as np

    rec = np.load(parity / "pred" / "evaluate_loop.npz")
    params = {"method": "pred", "original_model": str(parity / "pred" / "model.pth.gz"),
              "original_keys": str(parity / "pred" / "keys.pt.gz"), "original_size": 64, "th": float(rec["th"]),
              "dataset": "tiny_ucsd", "data_root": str(parity), "labels": str(parity / "tiny_ucsd" / "frame_labels_tiny.npy"),
              "ablation": False, "min_auc": 0.6, "device": "cpu", "out_dir": str(tmp_path / "run")}
    papermill.execute_notebook(str(NOTEBOOK_DIR / "03_reproduce_auc.ipynb"), str(tmp_path / "03.ipynb"), parameters=params,
                               progress_bar=False, kernel_manager_class=current_python_kernel())
    main = json.loads((tmp_path / "run" / "results.json").read_text())["main"]
    assert main["frame_auc"] == pytest.approx(float(rec["auc"]), abs=1e-12)
    assert main["variant"] == "authors_pred_mem"  # not the name of the run's own trained pred_mem
    assert [p.name for p in (tmp_path / "run" / "results").glob("eval_*.json")] == ["eval_authors_pred_mem.json"]


def test_03_on_the_authors_pickles_keeps_the_runs_own_model_beside_them(tmp_path: Path, parity: Path,
                                                                        tiny_checkpoint) -> None:
    """The authors' results are authors_pred_mem; the run's own pred_mem is scored in the ablation, not overwritten."""
    import json

    from mnadlib.synth import SynthPreset, generate

    tiny = SynthPreset(size=(48, 64), train_lengths=(14, 14), test_lengths=(16, 18), normal_test_videos=0, max_events=1,
                       crowd=(1, 2))
    generate(tmp_path / "data", preset=tiny)  # the ablation's normal-frame rows need a training split
    tiny_checkpoint(tmp_path / "run" / "train" / "pred_mem" / "model.pt", (32, 32))
    params = {"method": "pred", "original_model": str(parity / "pred" / "model.pth.gz"),
              "original_keys": str(parity / "pred" / "keys.pt.gz"), "original_size": 64, "data_root": str(tmp_path / "data"),
              "min_auc": 0.0, "device": "cpu", "out_dir": str(tmp_path / "run")}
    papermill.execute_notebook(str(NOTEBOOK_DIR / "03_reproduce_auc.ipynb"), str(tmp_path / "03.ipynb"), parameters=params,
                               progress_bar=False, kernel_manager_class=current_python_kernel())
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    results = tmp_path / "run" / "results"
    authors, own = (json.loads((results / f"eval_{n}.json").read_text()) for n in ("authors_pred_mem", "pred_mem"))
    assert authors["auc"] == res["main"]["frame_auc"] and own["auc"] != authors["auc"]
    assert [r["frame_auc"] for r in res["ablation"] if r["model"] == "pred_mem" and r["setting"] == "paper protocol"] \
        == [round(100 * own["auc"], 2)]


def test_03_writes_a_macro_auc_without_a_video_of_both_classes_as_null(tmp_path: Path, parity: Path) -> None:
    """One all-anomalous video among normal ones: a frame AUC, no macro AUC, and results.json stays valid JSON."""
    import json

    import numpy as np

    from mnadlib.reproduce import summary

    np.save(tmp_path / "labels.npy", np.r_[np.zeros(12), np.ones(14), np.zeros(10)].astype(int)[None])
    params = {"method": "pred", "original_model": str(parity / "pred" / "model.pth.gz"),
              "original_keys": str(parity / "pred" / "keys.pt.gz"), "original_size": 64, "dataset": "tiny_ucsd",
              "data_root": str(parity), "labels": str(tmp_path / "labels.npy"), "ablation": False, "min_auc": 0.0,
              "device": "cpu", "out_dir": str(tmp_path / "run")}
    papermill.execute_notebook(str(NOTEBOOK_DIR / "03_reproduce_auc.ipynb"), str(tmp_path / "03.ipynb"), parameters=params,
                               progress_bar=False, kernel_manager_class=current_python_kernel())

    def no_nan(token: str) -> None:
        raise AssertionError(f"results.json holds {token}, which is not JSON")
    main = json.loads((tmp_path / "run" / "results.json").read_text(), parse_constant=no_nan)["main"]
    assert main["macro_auc"] is None and 0 <= main["frame_auc"] <= 1
    assert "macro AUC - (no test video holds both classes)" in summary(tmp_path / "run")


def test_03_table1_names_a_checkpoint_without_memory(tmp_path: Path, parity: Path) -> None:
    """Table 1's paper rows are MNAD with memory; a no-memory model's measured row must not read as one of them."""
    import json

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "nomem.pt", MNAD(ModelConfig(method="pred", width=0.125, use_memory=False)), None,
                           train_config={"size": [32, 32]})
    params = {"method": "pred", "checkpoint": str(ckpt), "dataset": "tiny_ucsd", "data_root": str(parity),
              "labels": str(parity / "tiny_ucsd" / "frame_labels_tiny.npy"), "ablation": False, "min_auc": 0.0,
              "device": "cpu", "out_dir": str(tmp_path / "run")}
    papermill.execute_notebook(str(NOTEBOOK_DIR / "03_reproduce_auc.ipynb"), str(tmp_path / "03.ipynb"), parameters=params,
                               progress_bar=False, kernel_manager_class=current_python_kernel())
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["main"]["variant"] == "pred_nomem"
    assert res["table1"][-1] == {"source": "measured here", "method": "pred (no memory)",
                                 "tiny_ucsd": round(100 * res["main"]["frame_auc"], 1)}


def test_05_draws_the_figures_of_the_authors_pickles(tmp_path: Path, parity: Path) -> None:
    """05 takes 03's original_model parameters, so its figures show the model 03 scored, not the run's own."""
    import json

    import numpy as np

    rec = np.load(parity / "pred" / "evaluate_loop.npz")
    params = {"method": "pred", "original_model": str(parity / "pred" / "model.pth.gz"),
              "original_keys": str(parity / "pred" / "keys.pt.gz"), "original_size": 64, "th": float(rec["th"]),
              "dataset": "tiny_ucsd", "data_root": str(parity), "labels": str(parity / "tiny_ucsd" / "frame_labels_tiny.npy"),
              "examples": 1, "tsne_frames": 2, "svg": False, "device": "cpu", "out_dir": str(tmp_path / "run")}
    stale = {"videos": {"01": {"frames": [4, 5], "score": [0.2, 0.9], "label": [1, 0]}}}  # another dataset's evaluation
    pipeline.write_json(tmp_path / "run" / "results" / "eval_pred_nomem.json", stale)
    papermill.execute_notebook(str(NOTEBOOK_DIR / "05_result_figures.ipynb"), str(tmp_path / "05.ipynb"), parameters=params,
                               progress_bar=False, kernel_manager_class=current_python_kernel())
    out = json.loads((tmp_path / "run" / "results" / "05_result_figures.json").read_text())
    assert out["checkpoint"] == f"{params['original_model']} + {params['original_keys']}"
    assert out["frame_auc"] == pytest.approx(float(rec["auc"]), abs=1e-12)
    assert out["roc_curves"] == ["authors_pred_mem, paper protocol", "authors_pred_mem, PSNR only",
                                 "authors_pred_mem, patch-level error"]


def test_default_out_dir_does_not_shadow_the_package(tmp_path: Path) -> None:
    # the notebooks' shared folder sits in the temp dir; named "mnadlib/", it turned `python -m mnadlib` run
    # from there into an empty namespace package (ImportError) for the editable install `make setup` makes
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    code = "from mnadlib.pipeline import default_out_dir; d = default_out_dir(); d.mkdir(parents=True); print(d)"
    made = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert Path(made.stdout.strip()).is_relative_to(tmp_path)
    done = subprocess.run([sys.executable, "-m", "mnadlib", "--help"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
