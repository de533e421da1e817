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
# # 02 · Train MNAD
#
# Trains one MNAD model on the normal training videos, as the authors' `Train.py` does (Park et
# al., CVPR 2020, Sec. 3.3): pixel loss plus the feature compactness and separateness losses
# (Eq. 9), Adam with a cosine-annealed learning rate, the memory items updated at every step.
# `method` picks future-frame prediction (`pred`) or reconstruction (`recon`); `use_memory=False`
# trains the ablation without the memory module. `preset="cpu"` is the small setting that trains
# in minutes on two CPU cores; `preset="paper"` is the paper's Ped2 setting (60 epochs, 256x256).
#
# Writes `<out_dir>/train/<method>_<mem|nomem>/model.pt` (loadable by `python -m mnadlib
# evaluate --checkpoint`), `history.json` with per-epoch losses and memory usage, and shows the
# loss curves and how often each memory item is the nearest one to a query. A resumable
# `checkpoint.pt` is written after every epoch. With `resume=True` (the default, as for `python -m
# mnadlib train`) an interrupted training continues after its last epoch, to the same weights; a
# finished one of the same settings is kept as it is, so running the notebook again costs
# nothing; and a model of other settings (another seed, preset, dataset...) is never replaced:
# the notebook stops and says what differs. `resume=False` trains from the start, replacing it.
#
# **Paths.** Every path is a parameter and must be absolute; `out_dir` left empty is
# `<system temp dir>/mnadlib-runs/default`, shared with the other notebooks (run 01 first, or the
# synthped data are generated here).

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
method: str = "pred"  # pred (t-1 frames in, the next one predicted) or recon (one frame reconstructed)
use_memory: bool = True  # False: the ablation without the memory module
preset: str = "cpu"  # cpu (small, minutes on 2 CPU cores) or paper (the paper's Ped2 settings)
epochs: int = 0  # training epochs; 0: the preset's
width: float = 0.0  # channel multiplier (1.0: the paper's 64-128-256-512 encoder); 0: the preset's
max_steps: int = 0  # cap on steps per epoch; 0: full epochs (smoke runs use a few)
seed: int = 0  # seed for weights, memory items and data order
resume: bool = True  # continue this run folder's training (an interrupted one; a finished one of these settings is kept); False: train from the start, replacing its model
device: str = "auto"  # auto, cpu, cuda or mps
workers: int = 0  # processes reading frames beside the training loop (helps a GPU); the same weights for any count
dataset: str = "synthped"  # dataset folder under data_root: synthped, ped2, avenue or shanghai
data_root: str = ""  # absolute folder holding <dataset>/ (run 01 to write one); empty: <out_dir>/data, where a missing synthped is generated
out_dir: str = ""  # absolute run folder; empty: <system temp dir>/mnadlib-runs/default

# %%
from mnadlib.config import METHODS, SEED_RANGE
from mnadlib.pipeline import check_params

params = check_params(globals(), paths=("data_root", "out_dir"), choices={"method": METHODS},
                      bounds={"epochs": (0, None), "width": (0, None), "max_steps": (0, None), "seed": SEED_RANGE,
                              "workers": (0, None)})

# %%
import dataclasses
import hashlib
import math
import time
from pathlib import Path

from mnadlib import config, pipeline, viz
from mnadlib.checkpoint import load_checkpoint
from mnadlib.data import split_dir
from mnadlib.train import train

t0 = time.time()

# %%
p = config.preset(preset, method)
model_cfg = dataclasses.replace(p.model, use_memory=use_memory, width=width or p.model.width)
train_cfg = dataclasses.replace(p.train, epochs=epochs or p.train.epochs, max_steps_per_epoch=max_steps,
                                seed=seed, device=device, num_workers=workers)
run = pipeline.run_folder(out_dir)
variant = pipeline.variant_name(method, use_memory)
run_dir = run.train / variant
ds = pipeline.prepare_dataset(Path(data_root) if data_root else run.data, dataset, generate=not data_root)
print("model:", config.to_dict(model_cfg))
print("train:", config.to_dict(train_cfg))
print("data: ", ds.path, "\nrun:  ", run_dir)

# %% [markdown]
# ## Train
#
# One line per epoch as it finishes: its mean losses, the time trained so far and about how long
# is left (hours with the `paper` preset on a CPU; `python -m mnadlib bench --estimate ped2` tells
# before you start).

# %%
checkpoint = train(split_dir(ds.path, "training"), model_cfg, train_cfg, run_dir, resume=resume, progress=False,
                   epoch_lines=True)
history = pipeline.read_history(run_dir)
train_s = round(time.time() - t0, 1)
print(pipeline.format_table(pipeline.rounded(history, ("epoch", "loss", "pixel", "compactness", "separateness", "lr")),
                            ("epoch", "loss", "pixel", "compactness", "separateness", "lr")))
print(f"trained in {train_s} s; wrote {checkpoint}")

# %% [markdown]
# ## Loss curves and memory-item usage
#
# Usage is the share of query positions, over the last epoch, whose nearest memory item is each
# item; items that no query ever picks do not describe any normal pattern.

# %%
figures = viz.save_and_display(viz.training_curves({variant: history}), run.figures / f"02_{variant}_training_curves")
if use_memory:
    figures += viz.save_and_display(viz.memory_usage(history, f"memory item usage, last epoch ({variant})"),
                                    run.figures / f"02_{variant}_memory_usage")

# %% [markdown]
# ## Results

# %%
model, items = load_checkpoint(checkpoint, method)
out = run.write_json(f"02_train_{variant}", {
    "params": params, "checkpoint": checkpoint, "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
    "model_config": config.to_dict(model_cfg), "train_config": config.to_dict(train_cfg),
    "final": history[-1], "train_s": train_s, "figures": figures,
})
print(f"wrote {out}")
assert model.cfg.use_memory == use_memory and (items is not None) == use_memory
assert len(history) == train_cfg.epochs and all(math.isfinite(h["loss"]) for h in history)
if train_cfg.epochs >= 2 and max_steps == 0:
    assert history[-1]["pixel"] < history[0]["pixel"], "the pixel loss did not decrease"
