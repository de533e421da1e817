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
# # 05 · Result figures
#
# The paper's result figures for one checkpoint, saved as PNG (and SVG) under
# `<out_dir>/figures/`:
#
# * the regularity score of each test video with the ground-truth anomalous frames shaded (Fig. 5);
# * ROC curves of the model under the paper's protocol, with PSNR alone and with the patch-level
#   error, plus every other variant that 03 evaluated in this run folder on the same test videos
#   and labels (an evaluation of other data, left by an earlier run in a shared folder, is left out);
# * example frames with the prediction and its squared-error map (Fig. 4);
# * a t-SNE of the queries coloured by their nearest memory item (Fig. 6);
# * training curves of the variants trained in this run folder, and the memory-item usage.
#
# **Paths.** Every path is a parameter and must be absolute; `out_dir` left empty is
# `<system temp dir>/mnadlib-runs/default`, shared with the other notebooks. With no `checkpoint`,
# the notebook uses `<out_dir>/train/<method>_mem/model.pt`, or, on synthped with `pred`, the
# committed `weights/mnad_pred_synthped_cpu.pt`. The authors' pickles (`original_model` +
# `original_keys`, as in 03) replace the checkpoint, so the figures show the model 03 scored.

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
method: str = "pred"  # what the checkpoint holds: pred or recon
checkpoint: str = ""  # absolute path of our model.pt; empty: <out_dir>/train/<method>_mem/model.pt or the committed weights
original_model: str = ""  # absolute path of the authors' (or MNADrc's) model.pth, plain or .gz; used with original_keys, instead of checkpoint
original_keys: str = ""  # absolute path of the matching keys.pt, plain or .gz
original_size: int = 256  # square input size the authors' pickles run at (the paper: 256)
alpha: float = -1.0  # weight of PSNR in the regularity score; negative: the paper's (0.6 pred, 0.7 recon)
th: float = 0.01  # test-time memory update when a frame's point score is below this (the paper: 0.01)
examples: int = 3  # example frames: the lowest-scored anomalous frames and the most normal-looking one; 0: none
tsne_frames: int = 20  # clips whose queries enter the t-SNE (h*w queries each); 0: no t-SNE
show_videos: int = 6  # test videos in the regularity-score figure (0: all)
svg: bool = True  # also write an SVG beside each PNG
seed: int = 0  # seed of the t-SNE
device: str = "auto"  # auto, cpu, cuda or mps
dataset: str = "synthped"  # dataset folder under data_root: synthped, ped2, avenue or shanghai
labels: str = ""  # absolute path of the frame labels .npy; empty: frame_labels_<dataset>.npy (or of its paper name, e.g. ped2 for UCSDped2) beside the dataset
data_root: str = ""  # absolute folder holding <dataset>/ and frame_labels_<dataset>.npy (run 01 to write one); empty: <out_dir>/data, where a missing synthped is generated
out_dir: str = ""  # absolute run folder; empty: <system temp dir>/mnadlib-runs/default

# %%
from mnadlib.config import METHODS, SEED_RANGE
from mnadlib.pipeline import check_params

params = check_params(globals(), paths=("data_root", "out_dir"),
                      existing=("checkpoint", "original_model", "original_keys", "labels"),
                      choices={"method": METHODS}, bounds={"alpha": (None, 1), "seed": SEED_RANGE,
                      "examples": (0, None), "tsne_frames": (0, None), "show_videos": (0, None)})

# %%
import json
import time
from pathlib import Path

from mnadlib import pipeline, viz
from mnadlib.config import preset
from mnadlib.data import load_masks
from mnadlib.evaluate import evaluate, rescore
from mnadlib.train import resolve_device

t0 = time.time()

# %%
run = pipeline.run_folder(out_dir)
ckpt = None if original_model else pipeline.resolve_checkpoint(checkpoint, method, run, dataset)
main = pipeline.load_model(ckpt, method, original_model, original_keys, resolve_device(device), original_size)
ds = pipeline.prepare_dataset(Path(data_root) if data_root else run.data, dataset, generate=not data_root, labels=labels)
alpha = alpha if alpha >= 0 else preset("paper", method).eval.alpha
cfg = pipeline.eval_config(alpha, main.size, update=True, device=device, th=th)
variant = pipeline.variant_name(method, main.items is not None, authors=bool(original_model))
videos = ds.videos("testing")
frame_labels = ds.test_labels(videos)
figures = []
print(f"model: {main.source}\ndata:  {ds.path}\nfigures: {run.figures}")

# %%
result = evaluate(main.model, main.items, videos, cfg, frame_labels)
pipeline.check_auc(result, ds.path)  # a test set of one class has no frame AUC: a clear error, not a TypeError
print(f"frame AUC {100 * result.auc:.2f}%  macro AUC {100 * result.macro_auc:.2f}%")

# %% [markdown]
# ## Regularity score per test video (red: ground-truth anomalous frames)

# %%
figures += viz.save_and_display(viz.score_curves(result, max_videos=show_videos), run.figures / "05_regularity", svg)

# %% [markdown]
# ## ROC curves

# %%
curves = {f"{variant}, paper protocol": viz.result_curve(result),
          f"{variant}, PSNR only": viz.result_curve(result, rescore(result, 1.0)[0]),
          f"{variant}, patch-level error": viz.result_curve(result, rescore(result, alpha, error="patch")[0])}
for path in sorted(run.results.glob("eval_*.json")):
    if path.stem == f"eval_{variant}":
        continue
    other = json.loads(path.read_text())
    if pipeline.same_test_set(other, frame_labels):
        name = path.stem[5:]  # 03's ablation: a variant without memory is scored by PSNR alone, as its row says
        setting = "no memory (PSNR only)" if name in pipeline.VARIANTS and not pipeline.VARIANTS[name][1] else "paper protocol"
        curves[f"{name}, {setting}"] = viz.result_curve(other)
    else:
        print(f"left out of the ROC: {path} scored other test videos or labels than {ds.path} (an earlier run's)")
figures += viz.save_and_display(viz.roc_curves(curves), run.figures / "05_roc", svg)

# %% [markdown]
# ## Example frames: the real frame (anomaly outlined), the model's output and the error map

# %%
picks = pipeline.pick_examples(result, examples) if examples else []
steps = pipeline.collect_steps(main, videos, cfg, picks) if picks else []
by_name = {v.name: v for v in videos}
masks = [None if (m := load_masks(ds.path, by_name[s.video])) is None else m[s.frame] for s in steps]
titles = pipeline.example_titles(result, [(s.video, s.frame) for s in steps])
if steps:
    figures += viz.save_and_display(viz.example_frames(steps, titles, masks), run.figures / "05_examples", svg)

# %% [markdown]
# ## t-SNE of queries, coloured by their nearest memory item
#
# With memory, queries gather around the items they read from (the paper's Fig. 6).

# %%
if main.items is not None and tsne_frames:
    queries, nearest = pipeline.sample_queries(main, videos, tsne_frames)
    figures += viz.save_and_display(viz.tsne_queries(queries, nearest, main.items.cpu().numpy(), seed=seed), run.figures / "05_tsne", svg)

# %% [markdown]
# ## Training curves and memory-item usage
#
# The variants trained in this run folder side by side when the checkpoint is one of them, else the
# checkpoint's own history; the authors' pickles carry none, so they get no curves.

# %%
trained_here = ckpt is not None and ckpt.resolve().parent.parent == run.train.resolve()
histories = {p.parent.name: json.loads(p.read_text()) for p in sorted(run.train.glob("*/history.json"))} if trained_here else {}
histories = histories or ({variant: main.history} if main.history else {})
if histories:
    figures += viz.save_and_display(viz.training_curves(histories), run.figures / "05_training_curves", svg)
if main.history and main.items is not None:
    figures += viz.save_and_display(viz.memory_usage(main.history, f"memory item usage, last training epoch ({variant})"),
                                    run.figures / "05_memory_usage", svg)

# %% [markdown]
# ## Results

# %%
out = run.write_json("05_result_figures", {"params": params, "checkpoint": main.source, "frame_auc": result.auc,
                                           "roc_curves": list(curves), "figures": figures,
                                           "wall_s": round(time.time() - t0, 1)})
print(f"wrote {out}")
for f in figures:
    print(" ", f)
assert len(steps) == len(picks) and all(f.is_file() and f.stat().st_size > 0 for f in figures)
assert len(figures) >= (2 + bool(steps) + (main.items is not None and tsne_frames > 0)) * (1 + svg)
