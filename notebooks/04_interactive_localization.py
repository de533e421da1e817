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
# # 04 · Interactive anomaly localization
#
# MNAD (Park et al., CVPR 2020) scores whole frames. This notebook shows **where** the anomaly is:
# every frame becomes an anomaly map at the frame's own resolution (1 - SSIM of predicted vs.
# actual frame, the squared prediction error, or each query's distance to its nearest memory item,
# Sec. 3.2), a threshold calibrated on normal training frames turns it into regions, and every
# region gets a box and a score. The fork this package improves on kept only the largest region
# above SSIM * 255 < 230, on the unsmoothed map; that mode is one click away (threshold `fork`, which
# locks the map kind, minimum area and largest-only controls to the fork's, as in the metrics table).
#
# The app: choose a test video (or upload your own), scrub or play the frames, and change the map
# kind, threshold, minimum region area and `alpha` (the PSNR weight of the regularity score,
# Eq. 12). Panels: the frame with predicted boxes (ground truth in green), the prediction, the heat
# map, and the regularity curve with the current frame marked and the ground truth shaded. Export
# buttons write an annotated MP4/GIF (the GIF of a video over 300 scored frames keeps every k-th, to
# stay small) and the boxes as CSV/JSON. An uploaded video is calibrated on its own first quarter,
# which must be normal.
#
# Below the app, one frame is rendered statically and the localization metrics of the fork's mode
# and ours are computed, so a headless run (papermill, nbval) shows and checks something.
#
# **Paths.** Every path is a parameter and must be absolute; `out_dir` left empty is
# `<system temp dir>/mnadlib-runs/default`, shared with the other notebooks. `checkpoint` left empty
# is the run folder's `train/pred_mem/model.pt` (notebook 02), else, on synthped, the repository's
# `weights/mnad_pred_synthped_cpu.pt`.

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
    from google.colab import output

    output.enable_custom_widget_manager()

# %% tags=["parameters"]
checkpoint: str = ""  # absolute path of a checkpoint (model.pt); empty: 02's model, else the committed weights
dataset: str = "synthped"  # dataset folder under data_root whose test videos the app offers
data_root: str = ""  # absolute folder holding <dataset>/ (run 01 to write one); empty: <out_dir>/data, where a missing synthped is generated
out_dir: str = ""  # absolute run folder; empty: <system temp dir>/mnadlib-runs/default
video: str = ""  # test video shown first; empty: the first one
frame: int = -1  # frame rendered statically; -1: the frame with the lowest regularity
map_kind: str = "ssim"  # ssim (1 - SSIM), error (squared prediction error) or memory (distance to memory)
threshold: str = "calibrated"  # calibrated (percentile of normal frames), otsu, fork, or a number
percentile: float = 99.9  # calibrated: percentile of the map's values on normal training frames
min_area: int = -1  # smallest region in frame pixels; -1: 0.1% of the frame
alpha: float = 0.6  # weight of PSNR in the regularity score (paper: 0.6)
fps: float = 0.0  # the test videos' frame rate, for the exported MP4/GIF and times; 0: a video file's own, else 25
seed: int = 0  # seed for anything random
threads: int = 1  # torch CPU threads; these small models run fastest on one (more can be far slower on a busy CPU)
metrics: bool = True  # compute pixel AUROC, UCSD 40% AUC and RBDC/TBDC for the fork's mode and ours

# %%
from mnadlib.config import SEED_RANGE
from mnadlib.pipeline import check_params

params = check_params(globals(), paths=("checkpoint", "data_root", "out_dir"), existing=("checkpoint",),
                      bounds={"seed": SEED_RANGE, "threads": (1, None), "min_area": (-1, None)})

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Image, display

from mnadlib import pipeline
from mnadlib.localize_eval import FORK_NAME, OURS_NAME, format_table, localization_metrics
from mnadlib.localize_video import LocalizeConfig, parse_threshold
from mnadlib.train import resolve_device, seed_everything
from mnadlib.widgets import LocalizationApp, curve_png, frame_view

seed_everything(seed)
torch.set_num_threads(threads)
t0 = time.time()
run = pipeline.run_folder(out_dir)
data = pipeline.prepare_dataset(data_root or run.data, dataset, seed=seed, generate=not data_root)
ckpt = pipeline.resolve_checkpoint(checkpoint, "pred", run, dataset)

# %%
cfg = LocalizeConfig(map_kind=map_kind, threshold=parse_threshold(threshold), percentile=percentile,
                     min_area=None if min_area < 0 else min_area, alpha=alpha)
print(f"checkpoint {ckpt}\ndataset {data.path}\n{cfg}")

# %% [markdown]
# ## The app
#
# Loading calibrates the thresholds on the training split's normal frames and localizes the first
# test video; each new video runs the model once, after which every slider only re-thresholds,
# and a frame's threshold and regions are found when it is shown (an export finds those of every frame).

# %%
app = LocalizationApp(ckpt, data.path, out_dir=run.root / "localization", cfg=cfg, video=video, fps=fps or None)
display(app.widget)

# %% [markdown]
# ## One frame, rendered statically
#
# The same callbacks the app uses, called with plain values.

# %%
session = app.session
assert session is not None, f"the app could not load a video: {app.status.value}"
res = session.result
shown = int(res.frames[np.argmin(res.regularity)]) if frame < 0 else frame
if shown not in res.frames:
    why = " (a prediction model scores a frame from the ones before it)" if 0 <= shown < res.frames[0] else ""
    raise ValueError(f"frame {frame} of video {session.source.name} has no score: the scored frames are "
                     f"{res.frames[0]}..{res.frames[-1]}{why}")
view = frame_view(session, shown, height=240)
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
for ax, (name, img) in zip(axes, view.items()):
    ax.imshow(img)
    _ = ax.set_title(name)
    ax.axis("off")
fig.tight_layout()
plt.show()
plt.close(fig)
display(Image(data=curve_png(session, shown), format="png"))
print(f"{session.source.name}: frame {shown}, regularity {res.regularity[res.index(shown)]:.3f}, "
      f"boxes {res.boxes[res.index(shown)]}")

# %% [markdown]
# ## The fork's mode beside ours
#
# Pixel AUROC of each mode's map; the UCSD Ped 40% criterion and RBDC/TBDC (Ramachandra & Jones,
# WACV 2020) on what each mode reports. Thresholds come from normal training frames only; the test
# labels choose nothing. The last column is an oracle: each anomalous frame scored by the map's peak
# inside its true mask, each normal frame by its peak anywhere. Low, it says that a normal frame's
# brightest spot (a pedestrian near the camera) outshines the anomaly, however good the pixel AUROC.

# %%
table = {}
if metrics:
    loaded = pipeline.load_model(ckpt, None, device=resolve_device("auto"))  # pred or recon: localization takes either
    table = localization_metrics(loaded.model, loaded.items, data.path, loaded.size)
    print(format_table(table))

# %%
summary = {"checkpoint": str(ckpt), "video": session.source.name, "frame": shown,
           "segments": res.segments(), "boxes": int(sum(map(len, res.boxes))), "metrics": table,
           "seconds": round(time.time() - t0, 1)}
print(run.write_json("interactive_localization", summary))
assert all(v.shape[:2] == (240, round(240 * session.source.frame_size[1] / session.source.frame_size[0]))
           for v in view.values())
assert "error" not in app.status.value.lower(), app.status.value
if table:
    fork, ours = table[FORK_NAME], table[OURS_NAME]
    assert all(0.0 <= v <= 1.0 for row in table.values() for v in row.values() if v is not None)
    # Ours beat the fork on pixel AUROC and the UCSD 40% criterion on each of synthped seeds 0-2; on
    # RBDC/TBDC on seeds 1 and 2 but not 0 (docs/localization.md), so those two are reported, not asserted.
    assert ours["pixel_auroc"] >= fork["pixel_auroc"] and ours["ucsd_auc"] >= fork["ucsd_auc"], (fork, ours)
