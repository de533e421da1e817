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
# # 01 · Prepare the data
#
# Puts a dataset where the other notebooks look for it and checks it. By default it generates
# **synthped**, the synthetic UCSD Ped2-like dataset of `mnadlib.synth` (pedestrians on a walkway;
# cyclists, skateboarders, carts, a runner and a lawn walker as anomalies in the test videos).
# For Ped2, Avenue or ShanghaiTech, set `dataset` and point `data_root` at the folder holding
# `<dataset>/{training,testing}/frames/` and the authors' `frame_labels_<dataset>.npy`.
# For your own camera, set `footage` to a video of its normal scene and `dataset` to a new name:
# the video's first half becomes the training split and synthped's anomalies are pasted into its
# second half (`python -m mnadlib inject`), with exact masks and labels; `clip_length`,
# `train_fraction` and `height_fraction` are `inject`'s options of those names.
#
# The notebook validates the layout, prints per-split video and frame counts, asserts them
# against the published counts (synthped: its preset's), and shows a sample frame of each test
# video with its mask and the frame labels of every test video.
#
# **Paths.** Every path is a parameter and must be absolute. `out_dir` is the run folder; left
# empty it is `<system temp dir>/mnadlib-runs/default`, shared by all notebooks so that they chain.
# `python -m mnadlib.reproduce` gives each run its own folder.

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
dataset: str = "synthped"  # dataset folder under data_root: synthped, ped2, avenue or shanghai
data_root: str = ""  # absolute folder holding <dataset>/ and frame_labels_<dataset>.npy; empty: <out_dir>/data
generate: bool = True  # synthped (or footage): write the dataset when data_root lacks it
overwrite: bool = False  # True: replace a synthped or injected dataset of another preset, seed or footage here (never data mnadlib did not write)
synth_preset: str = "small"  # synthped size: small (minutes on a CPU) or full (Ped2's counts and frame size)
seed: int = 0  # synthped generator seed; with footage, the seed of the injected anomalies
labels: str = ""  # absolute path of the frame labels .npy; empty: frame_labels_<dataset>.npy (or of its paper name, e.g. ped2 for UCSDped2) beside the dataset
footage: str = ""  # absolute path of a video (or frame folder) of a normal scene to inject anomalies into; empty: none
clip_length: int = 80  # with footage: frames per training and test video (python -m mnadlib inject --clip-length)
train_fraction: float = 0.5  # with footage: leading share of it that becomes the normal training split
height_fraction: float = 0.18  # with footage: a pasted actor's height over the frame height (a person's in your footage)
show_videos: int = 12  # test videos shown in the sample-frame figure (0: all)
out_dir: str = ""  # absolute run folder; empty: <system temp dir>/mnadlib-runs/default

# %%
from mnadlib.config import SEED_RANGE
from mnadlib.pipeline import check_params

params = check_params(globals(), paths=("data_root", "out_dir"), existing=("footage", "labels"),
                      bounds={"seed": SEED_RANGE, "show_videos": (0, None)})

# %%
import time
from pathlib import Path

from mnadlib import pipeline, viz
from mnadlib.data import validate_layout
from mnadlib.inject import InjectConfig

t0 = time.time()

# %%
run = pipeline.run_folder(out_dir)
root = Path(data_root) if data_root else run.data
expected = pipeline.expected_counts(dataset, synth_preset)
print(f"run folder: {run.root}\ndata root:  {root}")

# %% [markdown]
# ## Generate or locate the dataset, then validate it

# %%
inject_cfg = InjectConfig(clip_length=clip_length, train_fraction=train_fraction, height_fraction=height_fraction)
ds = pipeline.prepare_dataset(root, dataset, synth_preset, seed, generate, labels=labels, footage=footage,
                              inject_cfg=inject_cfg, overwrite=overwrite)
summary = validate_layout(ds.path, ds.labels, headers=True)  # every frame's size, from its header
counts = pipeline.layout_counts(summary)
for split in ("training", "testing"):
    lengths = summary[split]["lengths"]
    print(f"{split:9s} {summary[split]['videos']:4d} videos {summary[split]['frames']:7d} frames "
          f"(shortest {min(lengths.values())}, longest {max(lengths.values())})")
print("frame size (H, W):", summary["frame_size"])
print("labels:", summary.get("labels", "none"))
for warning in summary["warnings"]:
    print("warning:", warning)

# %% [markdown]
# ## A frame of each test video, anomalies outlined in red

# %%
frames, masks, titles = pipeline.sample_frames(ds, show_videos)
figures = viz.save_and_display(viz.frames_with_masks(frames, masks, titles), run.figures / f"01_{dataset}_samples")

# %% [markdown]
# ## Frame labels of each test video (red: anomalous)
#
# The AUC notebooks need them, so a dataset without a label file stops here, before any training.

# %%
figures += viz.save_and_display(viz.label_timeline(ds.test_labels()), run.figures / f"01_{dataset}_labels")

# %% [markdown]
# ## Results

# %%
out = run.write_json("01_prepare_data", {
    "params": params, "dataset": ds.path, "labels": ds.labels, "counts": counts, "expected": expected,
    "frame_size": summary["frame_size"], "label_summary": summary.get("labels"), "warnings": summary["warnings"],
    "figures": figures, "python": sys.executable, "python_prefix": sys.prefix, "wall_s": round(time.time() - t0, 1),
})
print(f"wrote {out}")
if expected is not None:
    assert counts == expected, (f"{dataset} counts {counts} differ from the published {expected}: check the download, "
                                f"or give the folder another name (e.g. {dataset}_part) to run on part of it")
if dataset == "synthped" or footage:
    assert summary["labels"]["frames"] == counts["test_frames"] and 0 < summary["labels"]["anomalous"] < counts["test_frames"]
