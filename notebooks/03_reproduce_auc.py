# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Reproduce the frame-level AUC
#
# Evaluates a checkpoint with the authors' protocol (`Evaluate.py`; Park et al., CVPR 2020,
# Sec. 3.4): frames scored in order, the memory updated at test time when a frame's point score
# is below `th`, PSNR and feature distance min-max normalised per video and combined with `alpha`,
# and the frame AUC over all test videos concatenated. The checkpoint is ours (`model.pt` from
# 02) or the authors' / MNADrc's pickles (`original_model` + `original_keys`, loaded through an
# allow-list unpickler; they run at `original_size`, 256 in the paper; their results are named
# `authors_<method>_mem`, so they sit beside the run's own model's, and 02's trained variants join
# the ablation). For Ped2, Avenue or
# ShanghaiTech, point `data_root` at the folder holding `<dataset>/` and the authors'
# `frame_labels_<dataset>.npy` (or pass `labels`), and set `min_auc` to the claim you check.
#
# It prints the paper's Table 1 beside the measured AUC, then an ablation: test-time update off,
# PSNR alone, the extensions (patch-level error; an online running-max PSNR, the dB a frame falls
# below the best frame of its video so far, which takes each video's opening frames as normal,
# and the same with the frame's SSIM in dB instead of its PSNR; normalisation with statistics of
# normal training frames scored without update), the
# zero-motion baseline a prediction model must beat (the previous frame as the prediction,
# scored the same way) and, when 02 trained them into `train_dir`, the model without memory and
# the other method. Each row gives the paper's
# (micro) frame AUC and the macro AUC (mean of per-video AUCs). Then the model's mean PSNR on
# normal and anomalous frames and, for prediction, the copy's beside it, which says whether it
# learned normal motion at all. `results.json` holds
# everything; the last cell asserts the claim `frame AUC >= min_auc`.
#
# **Paths.** Every path is a parameter and must be absolute; `out_dir` left empty is
# `<system temp dir>/mnadlib-runs/default`, shared with the other notebooks. With no `checkpoint`,
# the notebook uses `<out_dir>/train/<method>_mem/model.pt`, or, on synthped with `pred`, the
# committed `weights/mnad_pred_synthped_cpu.pt`.

# %%
import sys

if "google.colab" in sys.modules:  # Colab only: install mnadlib from a git URL or folder that you set
    import importlib.util
    import os
    import subprocess

    MNADLIB_SOURCE = os.environ.get("MNADLIB_SOURCE", "")  # e.g. "https://github.com/<you>/mnadlib.git"
    if MNADLIB_SOURCE:
        checkout = MNADLIB_SOURCE  # a source checkout, not a wheel: the committed weights come with it
        if "://" in MNADLIB_SOURCE or MNADLIB_SOURCE.startswith("git@"):
            checkout = os.environ.get("MNADLIB_CHECKOUT", "/content/mnadlib")
            if not os.path.isdir(checkout):
                subprocess.run(["git", "clone", "-q", MNADLIB_SOURCE.removeprefix("git+"), checkout], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", f"{checkout}[notebooks]"], check=True)
        sys.path.insert(0, os.path.abspath(checkout))  # this kernel started before the editable install
    elif importlib.util.find_spec("mnadlib") is None:  # an mnadlib installed before this cell is used as it is
        raise ValueError("set MNADLIB_SOURCE (in this cell or the environment) to the git URL or folder of mnadlib")

# %% tags=["parameters"]
method: str = "pred"  # what the checkpoint holds: pred or recon (a checkpoint of the other kind is refused)
checkpoint: str = ""  # absolute path of our model.pt; empty: <out_dir>/train/<method>_mem/model.pt or the committed weights
original_model: str = ""  # absolute path of the authors' (or MNADrc's) model.pth, plain or .gz; used with original_keys
original_keys: str = ""  # absolute path of the matching keys.pt, plain or .gz
original_size: int = 256  # square input size the authors' pickles run at (the paper: 256)
alpha: float = -1.0  # weight of PSNR in the regularity score; negative: the paper's (0.6 pred, 0.7 recon)
th: float = 0.01  # test-time memory update when a frame's point score is below this (the paper: 0.01)
ablation: bool = True  # also run the ablation rows
train_dir: str = ""  # absolute folder of 02's runs (<variant>/model.pt) for the other variants; empty: <out_dir>/train
min_auc: float = 0.70  # claim asserted at the end: the main model's frame AUC (0..1) reaches this; 0: no claim
device: str = "auto"  # auto, cpu, cuda or mps
dataset: str = "synthped"  # dataset folder under data_root: synthped, ped2, avenue or shanghai
data_root: str = ""  # absolute folder holding <dataset>/ and frame_labels_<dataset>.npy (run 01 to write one); empty: <out_dir>/data, where a missing synthped is generated
labels: str = ""  # absolute path of the frame labels .npy; empty: frame_labels_<dataset>.npy (or of its paper name, e.g. ped2 for UCSDped2) beside the dataset
out_dir: str = ""  # absolute run folder; empty: <system temp dir>/mnadlib-runs/default

# %%
from mnadlib.config import METHODS
from mnadlib.pipeline import check_params

params = check_params(globals(), paths=("data_root", "out_dir"),
                      existing=("checkpoint", "original_model", "original_keys", "train_dir", "labels"),
                      choices={"method": METHODS}, bounds={"min_auc": (0, 1), "alpha": (None, 1)})

# %%
import time
from pathlib import Path

from mnadlib import pipeline
from mnadlib.ablation import ablation_rows, copy_baseline, prediction_quality, variant_rows
from mnadlib.breakdown import areas_from_masks, auc_by_kind, auc_by_size
from mnadlib.config import preset
from mnadlib.evaluate import evaluate
from mnadlib.train import resolve_device

t0 = time.time()

# %%
run = pipeline.run_folder(out_dir)
ckpt = None if original_model else pipeline.resolve_checkpoint(checkpoint, method, run, dataset)
main = pipeline.load_model(ckpt, method, original_model, original_keys, resolve_device(device), original_size)
ds = pipeline.prepare_dataset(Path(data_root) if data_root else run.data, dataset, generate=not data_root, labels=labels)
alpha = alpha if alpha >= 0 else preset("paper", method).eval.alpha
cfg = pipeline.eval_config(alpha, main.size, update=True, device=device, th=th)
videos = ds.videos("testing")
frame_labels = ds.test_labels(videos)
print(f"model: {main.source} ({method}, memory: {main.items is not None}, input {main.size})")
print(f"data:  {ds.path}: {len(videos)} test videos, {sum(map(len, frame_labels.values()))} frames")
print("eval:", cfg)

# %% [markdown]
# ## The paper's protocol

# %%
t_eval = time.time()
result = evaluate(main.model, main.items, videos, cfg, frame_labels)
pipeline.check_auc(result, ds.path)  # a test set of one class has no frame AUC: a clear error, not a TypeError
eval_s = round(time.time() - t_eval, 1)
variant = pipeline.variant_name(method, main.items is not None, authors=bool(original_model))
result.write_json(run.results / f"eval_{variant}.json")
macro_auc = result.to_dict()["macro_auc"]  # None (null in results.json, which has no NaN) when no video holds both classes
print(f"frame AUC {100 * result.auc:.2f}%  macro AUC {'-' if macro_auc is None else f'{100 * macro_auc:.2f}%'}  "
      f"({sum(len(s.frames) for s in result.videos.values())} frames scored, "
      f"{sum(sum(s.updated) for s in result.videos.values())} memory updates, {eval_s} s)")

# %% [markdown]
# ## Table 1: frame AUC (%), the paper's numbers and ours
#
# The paper's rows are copied from its Table 1 (MNAD with memory), not measured here. A checkpoint
# without memory is measured as `<method> (no memory)`, so it does not read as MNAD's row.

# %%
table1 = pipeline.table1({method if main.items is not None else f"{method} (no memory)": {dataset: round(100 * result.auc, 1)}})
print(pipeline.format_table(table1, pipeline.table1_columns(dataset)))

# %% [markdown]
# ## Ablation
#
# Rows on the main model first (evaluation changes only), then, for prediction, the zero-motion
# baseline (no model: each frame "predicted" by the one before it; a frame predictor that does not
# beat it has learned nothing the score can use), then the other trained variants found in
# `train_dir` (each with its own paper `alpha`). Macro AUC is the mean of per-video AUCs over
# videos holding both classes.

# %%
baseline = copy_baseline(main, videos, frame_labels)
rows = []
if ablation:
    rows = ablation_rows(main, variant, ds, alpha, result, videos, frame_labels, device, baseline=baseline)
    rows += variant_rows(Path(train_dir) if train_dir else run.train, exclude=variant, videos=videos,
                          labels=frame_labels, results_dir=run.results, device=device, th=th)
    print(pipeline.format_table(rows, ("model", "setting", "frame_auc", "macro_auc")))

# %% [markdown]
# ## How well the model predicts
#
# Mean PSNR (dB) on the normal and on the anomalous test frames, their gap, and how much normal
# frames' PSNR swings within a video (standard deviation, averaged over videos), for the model
# and, for prediction, for copying the previous frame. A model below the copy on normal frames has
# not learned normal motion yet (too few epochs or too coarse a preset). A gap separates the
# classes only as far as it is large against the swing.

# %%
quality = prediction_quality(variant, result, baseline)
print(pipeline.format_table(quality, ("predictor", "normal_psnr", "anomalous_psnr", "gap_db", "normal_sd_db")))
if baseline is not None and quality[0]["normal_psnr"] < quality[1]["normal_psnr"]:
    print("note: the model predicts normal frames worse than copying the previous frame does (under-trained)")

# %% [markdown]
# ## Which anomalies the score separates
#
# When the dataset annotates its anomalous objects (synthped's `annotations.json`), the frame AUC
# of each kind alone: the frames showing it against every normal frame, with the protocol's
# scores (`frame_auc`) and with the running-max extension's (`frame_auc_running`). It tells a weak
# kind (one the score cannot see) from a weak protocol (one that mixes videos badly, which lowers
# every kind).
#
# When the dataset has pixel masks (synthped, UCSD's `_gt` folders, ShanghaiTech's
# `test_pixel_mask`, Avenue's `testing_label_mask`), the same by how much of the frame the anomaly
# covers, in fixed bins: it tells whether the misses are the frames where the anomaly is small (far
# from the camera, or only entering the frame). Where only some test videos have masks (UCSD Ped1
# ships them for 10 of 36), the others' anomalous frames are left out, and the table says so.

# %%
objects = pipeline.annotated_objects(ds)
by_kind = auc_by_kind(result, objects) if objects else []
print(pipeline.format_table(by_kind, ("kind", "frames", "frame_auc", "frame_auc_running"))
      if by_kind else "no per-object annotations")
areas = areas_from_masks(ds.path, videos)
by_size = auc_by_size(result, areas)
print(pipeline.format_table(by_size, ("visible_area", "frames", "frame_auc", "frame_auc_running"))
      if by_size else "no pixel masks")
masked = {"with_masks": len(areas), "test_videos": len(videos)}
if by_size and len(areas) < len(videos):
    print(f"pixel masks for {len(areas)} of {len(videos)} test videos: the anomalous frames of the other "
          f"{len(videos) - len(areas)} are left out of this table (their normal frames count)")

# %% [markdown]
# ## Results

# %%
# holds: None when nothing is claimed (min_auc 0: a smoke run, or data without a claim)
claims = {"min_auc": min_auc, "frame_auc": result.auc, "holds": result.auc >= min_auc if min_auc > 0 else None}
out = pipeline.write_results(run, {
    "params": params, "dataset": ds.path, "main": {"checkpoint": main.source, "variant": variant, "frame_auc": result.auc,
                                                   "macro_auc": macro_auc, "eval_s": eval_s},
    "table1": table1, "ablation": rows, "prediction_quality": quality, "by_kind": by_kind, "by_size": by_size,
    "by_size_videos": masked, "claims": claims,
    "wall_s": round(time.time() - t0, 1),
})
print(f"wrote {out}")
assert all(r["frame_auc"] is None or 0 <= r["frame_auc"] <= 100 for r in rows)
assert all(q["normal_psnr"] is not None and q["normal_psnr"] > 0 for q in quality)
assert result.auc >= min_auc, f"claim missed: frame AUC {100 * result.auc:.2f}% < {100 * min_auc:.2f}%"
