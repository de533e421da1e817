"""The steps the notebooks orchestrate: parameter checks, run folders, data, models, tables.

The reproduction notebooks (``notebooks/01..05``) keep narrative, parameters and plots; the logic
they share lives here so it is tested once. The ablation table is built by :mod:`mnadlib.ablation`.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import synth
from .checkpoint import atomic_write_json, load_original, open_checkpoint
from .config import EvalConfig, scratch_dir, to_dict, validate_size
from .data import KNOWN_DATASETS, DataError, FrameSource, known_dataset, list_videos, load_labels, load_masks, split_dir
from .evaluate import EvalResult, FrameStep, iter_frames
from .inject import InjectConfig, inject
from .memory import flatten_queries
from .model import MNAD

# The paper's Table 1 (frame-level AUC, %), MNAD with memory.
PAPER_TABLE1 = {"pred": {"ped2": 97.0, "avenue": 88.5, "shanghai": 70.5},
                "recon": {"ped2": 90.2, "avenue": 82.8, "shanghai": 69.8}}
VARIANTS = {"pred_mem": ("pred", True), "pred_nomem": ("pred", False), "recon_mem": ("recon", True)}
WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "mnad_pred_synthped_cpu.pt"


def default_out_dir() -> Path:
    """Where notebooks write when ``out_dir`` is empty: one shared folder under the system temp dir."""
    return scratch_dir("default")


def check_params(ns: dict[str, Any], paths: Sequence[str] = (), existing: Sequence[str] = (),
                 choices: Mapping[str, Sequence[str]] | None = None,
                 bounds: Mapping[str, tuple[float | None, float | None]] | None = None) -> dict[str, Any]:
    """Validate a notebook's parameters in its namespace (``globals()``) right after the parameters cell.

    The parameters cell's annotations (``epochs: int = 2``) are the specification. Unknown names
    in papermill's injected cell (it injects those too, with a mere warning), values of the wrong
    type, a float that is not finite, a value outside its ``choices`` or its inclusive ``bounds``
    (lo, hi; None for open), relative paths among ``paths`` and ``existing``, and missing files
    among ``existing`` raise one ValueError that lists them all, before any work starts. Ints given
    for float parameters are converted in ``ns``, and ``~`` in paths is expanded there, so later
    cells never see a path relative to the working directory. Returns the parameters as a dict.
    """
    spec = ns.get("__annotations__") or {}
    if not spec:
        raise ValueError("no parameters found: call check_params(globals()) after the cell tagged 'parameters'")
    errors = [f"unknown parameter {k!r}" for k in sorted(_injected(ns.get("In") or [])) if k not in spec]
    for name, typ in spec.items():
        value = ns.get(name)
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            ns[name] = value = float(value)
        if not isinstance(value, typ) or (typ in (int, float) and isinstance(value, bool)):
            hint = (f" (papermill's -p reads it as a number or bool: pass text with -r {name} VALUE)"
                    if typ is str and isinstance(value, (int, float, bool)) else
                    " (papermill's -p takes True or False)" if typ is bool and str(value).lower() in ("true", "false")
                    else "")
            errors.append(f"parameter {name!r} must be {typ.__name__}, got {type(value).__name__} {value!r}{hint}")
        elif typ is float and not math.isfinite(value):
            errors.append(f"parameter {name!r} must be a finite number, got {value!r}")
    for name, allowed in (choices or {}).items():
        if isinstance(ns.get(name), str) and ns[name] not in allowed:
            errors.append(f"parameter {name!r} must be one of {', '.join(map(repr, allowed))}, got {ns[name]!r}")
    for name, (lo, hi) in (bounds or {}).items():
        value = ns.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
                (lo is not None and value < lo) or (hi is not None and value > hi)):
            where = f"at least {lo}" if hi is None else f"at most {hi}" if lo is None else f"between {lo} and {hi}"
            errors.append(f"parameter {name!r} must be {where}, got {value!r}")
    for name in (*paths, *existing):
        value = ns.get(name)
        if isinstance(value, str) and value.startswith("~"):
            ns[name] = value = str(Path(value).expanduser())
        if isinstance(value, str) and value and not Path(value).is_absolute():
            errors.append(f"parameter {name!r} must be an absolute path (papermill and nbval run notebooks in "
                          f"different working directories), got {value!r}")
        elif name in existing and isinstance(value, str) and value and not Path(value).exists():
            errors.append(f"parameter {name!r}: {value} does not exist")
    if errors:
        accepted = ", ".join(f"{k}: {getattr(t, '__name__', t)}" for k, t in spec.items())
        raise ValueError("bad notebook parameters: " + "; ".join(errors) + f". This notebook takes {accepted}")
    return {k: ns[k] for k in spec}


def _injected(history: Sequence[str]) -> set[str]:
    """Names assigned by the last papermill-injected cell (source starting ``# Parameters``) in IPython's ``In``."""
    for source in reversed(history):
        if source.lstrip().startswith("# Parameters"):
            body = ast.parse(source).body
            return {t.id for node in body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
    return set()


@dataclass
class RunFolder:
    """The layout of a run folder shared by the notebooks."""

    root: Path

    @property
    def data(self) -> Path:
        """Generated datasets."""
        return self.root / "data"

    @property
    def train(self) -> Path:
        """One sub-folder per trained variant (``pred_mem/model.pt``, ``history.json``, ...)."""
        return self.root / "train"

    @property
    def results(self) -> Path:
        """JSON written by the notebooks."""
        return self.root / "results"

    @property
    def figures(self) -> Path:
        """PNG and SVG figures."""
        return self.root / "figures"

    def write_json(self, name: str, obj: Any) -> Path:
        """Write ``results/<name>.json`` atomically (:func:`write_json`)."""
        return write_json(self.results / f"{name}.json", obj)


def write_json(path: Path, obj: Any) -> Path:
    """JSON of ``obj`` (paths and NumPy scalars too), atomically (:func:`atomic_write_json`).

    A NaN or infinite float (a macro AUC when no test video holds both classes) is written as
    null, as :meth:`EvalResult.to_dict` does: JSON has no NaN, and strict readers (jq, JavaScript) refuse the file.
    """
    return atomic_write_json(_plain(obj), path)


def _plain(obj: Any) -> Any:
    """``obj`` as JSON holds it: paths as text, NumPy scalars as Python's, NaN or infinite floats as None."""
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def run_folder(out_dir: str) -> RunFolder:
    """The run folder ``out_dir`` (absolute) or, when empty, :func:`default_out_dir`; created."""
    root = Path(out_dir).expanduser() if out_dir else default_out_dir()
    root.mkdir(parents=True, exist_ok=True)
    return RunFolder(root)


@dataclass
class Dataset:
    """Where a dataset lives: ``ROOT/<name>`` and the authors' ``ROOT/frame_labels_<name>.npy``."""

    name: str
    path: Path
    labels: Path | None

    def videos(self, split: str) -> list[FrameSource]:
        """The videos of ``training`` or ``testing``."""
        return list_videos(split_dir(self.path, split))

    def test_labels(self, videos: Sequence[FrameSource] | None = None) -> dict[str, np.ndarray]:
        """Per-video frame labels of the test split; DataError when the label file is missing."""
        if self.labels is None:
            looked = " or ".join(p.name for p in label_candidates(self.path.parent, self.name))
            raise DataError(f"no {looked} beside {self.path}: put the authors' label file there, or give its path "
                            "(labels= in a notebook, -p labels PATH to python -m mnadlib.reproduce)")
        videos = self.videos("testing") if videos is None else videos
        return load_labels(self.labels, [(v.name, len(v)) for v in videos])


def prepare_dataset(data_root: str | Path, name: str, synth_preset: str | synth.SynthPreset | None = None, seed: int = 0,
                    generate: bool = True, labels: str | Path = "", footage: str | Path = "",
                    inject_cfg: InjectConfig | None = None, overwrite: bool = False) -> Dataset:
    """Locate ``data_root/name`` and its labels (``labels``, else :func:`label_candidates` in ``data_root``).

    With ``generate``, a missing synthped is generated, and with ``footage`` (a video of a normal
    scene) a missing ``name`` is written from it by :func:`mnadlib.inject.inject` with ``inject_cfg``
    (default settings) and ``seed``. A synthped of an older generator or (with a preset given) of
    another preset or seed, or a dataset injected from other footage or settings, is rewritten only
    with ``overwrite`` too; otherwise DataError says what it holds. A folder that mnadlib did not
    write (a downloaded dataset) is never rewritten.
    """
    root = Path(data_root)
    if footage and name == "synthped":
        raise DataError("synthped is generated, not injected: give the injected footage another dataset name")
    if footage:
        cfg = dataclasses.replace(inject_cfg or InjectConfig(), seed=seed)
        meta = _written_by_mnadlib(root / name, "source")
        if meta is None or meta.get("source") != str(footage) or meta.get("config") != to_dict(cfg):
            held = None if meta is None else f"anomalies injected from {meta.get('source')} with seed {meta.get('config', {}).get('seed')}"
            _may_write(root / name, held, f"anomalies injected from {footage} with seed {seed}", generate, overwrite)
            inject(footage, root, name, cfg, overwrite=True)
    elif name == "synthped":
        meta = _written_by_mnadlib(root / name, "generator")
        want = to_dict(synth.get_preset(synth_preset or "small"))
        if (meta is None or meta.get("generator") != synth.GENERATOR_VERSION
                or (synth_preset is not None and (meta.get("preset") != want or meta.get("seed") != seed))):
            held = None if meta is None else f"synthped generator {meta.get('generator', 1)}, seed {meta.get('seed')}"
            _may_write(root / name, held, f"synthped generator {synth.GENERATOR_VERSION} of preset {synth_preset or 'small'!r}, "
                       f"seed {seed}", generate, overwrite)
            synth.generate(root, preset=synth_preset or "small", seed=seed, overwrite=True)
    elif not (root / name).is_dir():
        raise DataError(f"dataset folder {root / name} does not exist; download {name} and lay it out as "
                        f"{root}/{name}/{{training,testing}}/frames/<video>/ (see the README), or use synthped")
    if labels:
        if not Path(labels).is_file():
            raise DataError(f"label file {labels} does not exist")
        return Dataset(name, root / name, Path(labels))
    found = [p for p in label_candidates(root, name) if p.is_file()]
    return Dataset(name, root / name, found[0] if found else None)


def label_candidates(root: Path, name: str) -> list[Path]:
    """Where a dataset's labels are looked for: ``frame_labels_<name>.npy``, then under its paper key
    (``frame_labels_ped2.npy`` beside ``UCSDped2``), as the authors ship them."""
    key = known_dataset(name)
    return [root / f"frame_labels_{n}.npy" for n in dict.fromkeys([name] + ([key] if key else []))]


class DatasetConflict(DataError):
    """The dataset folder asked for holds other data (or none) and may not be written: a new run or data_root fixes it."""


def _written_by_mnadlib(folder: Path, key: str) -> dict[str, Any] | None:
    """The ``annotations.json`` of a dataset that synth (``key="generator"``) or inject (``"source"``) wrote, else None.

    DataError when ``folder`` exists but holds something else: mnadlib never replaces data it did not write.
    """
    meta = synth.written_meta(folder)
    if meta is not None and key in meta:
        return meta
    if synth.occupied(folder):
        writer = "synth" if key == "generator" else "inject"
        raise DatasetConflict(f"{folder} exists but was not written by mnadlib's {writer}, so it is left as it is: "
                              "give the dataset another name (e.g. --dataset mycam) or another data_root")
    return None


def _may_write(folder: Path, held: str | None, wanted: str, generate: bool, overwrite: bool) -> None:
    """Refuse, with what to do, to write ``wanted`` into ``folder`` (holding ``held``, or nothing) unless allowed."""
    if generate and (held is None or overwrite):
        return
    if held is None:
        raise DatasetConflict(f"{folder} does not exist (or is empty), and {wanted} is not generated here: write it "
                              "with notebook 01 (or prepare_dataset(generate=True)), or leave data_root empty to use "
                              "the run folder's own data")
    raise DatasetConflict(f"{folder} holds {held}, not {wanted}: give another data_root (or --data-root), or replace "
                          "it with notebook 01's overwrite=True (prepare_dataset(overwrite=True))")


def annotated_objects(dataset: Dataset) -> dict[str, list[dict[str, Any]]] | None:
    """Per test video, its annotated anomalous objects (synthped's ``annotations.json``), or None without one."""
    path = dataset.path / "testing" / "annotations.json"
    return {v: info["objects"] for v, info in json.loads(path.read_text())["videos"].items()} if path.is_file() else None


def expected_counts(name: str, synth_preset: str = "small") -> dict[str, int] | None:
    """Published video and frame counts of a known dataset (synthped: of its preset), or None."""
    if name == "synthped":
        p = synth.get_preset(synth_preset)
        return {"train_videos": len(p.train_lengths), "test_videos": len(p.test_lengths),
                "train_frames": sum(p.train_lengths), "test_frames": sum(p.test_lengths)}
    published = known_dataset(name)
    return None if published is None else {k: KNOWN_DATASETS[published][k]
                                           for k in ("train_videos", "test_videos", "train_frames", "test_frames")}


def layout_counts(summary: Mapping[str, Any]) -> dict[str, int]:
    """Video and frame counts of a ``validate_layout`` summary, keyed like :func:`expected_counts`."""
    return {"train_videos": summary["training"]["videos"], "test_videos": summary["testing"]["videos"],
            "train_frames": summary["training"]["frames"], "test_frames": summary["testing"]["frames"]}


def sample_frames(dataset: Dataset, max_videos: int = 0) -> tuple[list[np.ndarray], list[np.ndarray | None], list[str]]:
    """One frame per test video (the first ``max_videos``; 0 = all) with its mask: the largest anomaly, else the middle frame."""
    frames, masks, titles = [], [], []
    videos = dataset.videos("testing")
    for video in videos[:max_videos] if max_videos > 0 else videos:
        stack = load_masks(dataset.path, video)
        area = stack.reshape(len(stack), -1).sum(axis=1) if stack is not None else np.zeros(len(video))
        i = int(np.argmax(area)) if area.any() else len(video) // 2
        frames.append(video.read(i))
        masks.append(None if stack is None else stack[i])
        titles.append(f"test {video.name} frame {i}" + (" (anomalous)" if area[i] else ""))
    return frames, masks, titles


def read_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch ``history.json`` that training writes."""
    path = Path(run_dir) / "history.json"
    if not path.is_file():
        raise DataError(f"{path} does not exist; train first (02_train)")
    return json.loads(path.read_text())


def rounded(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], digits: int = 5) -> list[dict[str, Any]]:
    """The ``keys`` of each row, floats rounded to ``digits`` significant digits (for printing)."""
    return [{k: float(f"{r[k]:.{digits}g}") if isinstance(r[k], float) else r[k] for k in keys} for r in rows]


def variant_name(method: str, use_memory: bool, authors: bool = False) -> str:
    """Name of a variant, e.g. ``pred_mem`` (a folder under train/); ``authors_pred_mem`` for the authors' pickles.

    The prefix keeps 03's ``eval_<variant>.json`` and 05's curves of the authors' model apart from the run's own.
    """
    return f"{'authors_' if authors else ''}{method}_{'mem' if use_memory else 'nomem'}"


def resolve_checkpoint(checkpoint: str, method: str, run: RunFolder, dataset: str) -> Path:
    """``checkpoint``, else ``train/<method>_mem/model.pt`` of the run, else the committed synthped weights."""
    if checkpoint:
        return Path(checkpoint)
    trained = run.train / variant_name(method, True) / "model.pt"
    if trained.is_file():
        return trained
    if dataset == "synthped" and method == "pred" and WEIGHTS.is_file():
        return WEIGHTS
    raise ValueError(f"no checkpoint: {trained} does not exist; run 02_train with method={method!r} "
                     "and out_dir set to this run folder, or pass checkpoint=/path/to/model.pt")


@dataclass
class Loaded:
    """A model ready to evaluate, with the input size it was trained at."""

    model: MNAD
    items: torch.Tensor | None
    size: tuple[int, int]
    source: str
    history: list[dict[str, Any]]


def load_model(checkpoint: str | Path | None, method: str | None, original_model: str = "", original_keys: str = "",
               device: torch.device | str = "cpu", original_size: int = 256) -> Loaded:
    """Our checkpoint, or the authors' (MNADrc's) pickles, run at ``original_size`` squared, when ``original_*`` are given.

    The checkpoint must hold ``method``'s model ("pred" or "recon"; None: whichever it holds).
    """
    if original_model or original_keys:
        if not (original_model and original_keys):
            raise ValueError("give both original_model (model.pth) and original_keys (keys.pt)")
        model, items = load_original(original_model, original_keys, method)
        size = validate_size((original_size, original_size))
        return Loaded(model.to(device), items, size, f"{original_model} + {original_keys}", [])
    if checkpoint is None:
        raise ValueError("give a checkpoint, or original_model and original_keys")
    ckpt = open_checkpoint(checkpoint, method)
    size = validate_size(ckpt.train_size or (256, 256))
    return Loaded(ckpt.model.to(device), ckpt.items, size, str(checkpoint), ckpt.history)


def eval_config(alpha: float, size: tuple[int, int], update: bool = True, device: str = "auto", th: float = 0.01) -> EvalConfig:
    """The authors' protocol; without the update, frames are scored in batches (same numbers, faster)."""
    return EvalConfig(alpha=alpha, th=th, size=size, test_time_update=update, batch_size=1 if update else 16, device=device)


def write_results(run: RunFolder, results: Mapping[str, Any]) -> Path:
    """Write the run's ``results.json`` (the file the pipeline reads its table and claims from)."""
    return write_json(run.root / "results.json", results)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table with aligned columns."""
    cells = [[str(c) for c in columns]] + [["-" if r.get(c) is None else str(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table1(measured: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """The paper's Table 1 rows beside measured ones: ``measured[method][dataset]`` in percent.

    A release folder name (UCSDped2, ShanghaiTech) lands in the paper's column (ped2, shanghai).
    """
    rows = [{"source": "paper", "method": m, **{d: v for d, v in PAPER_TABLE1[m].items()}} for m in PAPER_TABLE1]
    rows += [{"source": "measured here", "method": m, **{table1_column(d): a for d, a in v.items()}}
             for m, v in measured.items()]
    return rows


def table1_column(dataset: str) -> str:
    """The Table 1 column of a dataset folder name: the paper's key for a published dataset, else the name."""
    return known_dataset(dataset) or dataset


def table1_columns(dataset: str) -> tuple[str, ...]:
    """Columns of :func:`table1`: the paper's three datasets, plus ``dataset`` when it is another one."""
    column = table1_column(dataset)
    return ("source", "method", *PAPER_TABLE1["pred"], *(() if column in PAPER_TABLE1["pred"] else (column,)))


def same_test_set(result: Mapping[str, Any], labels: Mapping[str, np.ndarray]) -> bool:
    """Whether an evaluation's JSON scored exactly these test videos, with these frame labels at the frames it scored.

    Another run's ``eval_*.json`` left in a shared run folder (another dataset or label file) must not be drawn as this one's.
    """
    videos = result.get("videos") or {}
    if set(videos) != set(labels):
        return False
    for name, rec in videos.items():
        frames, label = rec.get("frames") or [], rec.get("label")
        if label is None or len(label) != len(frames) or any(f >= len(labels[name]) for f in frames):
            return False
        if np.asarray(labels[name])[frames].tolist() != list(label):
            return False
    return True


def check_auc(result: EvalResult, data: str | Path) -> None:
    """ValueError saying which class is missing when the scored test frames hold one class only (no frame AUC)."""
    if result.auc is not None:
        return
    labels = [v for s in result.videos.values() for v in (s.label or [])]
    if not labels:
        raise ValueError(f"no frame labels for the test videos of {data}: give a label file (labels parameter)")
    only = "anomalous" if all(labels) else "normal"
    raise ValueError(f"every one of the {len(labels)} scored test frames of {data} is labelled {only} (the first "
                     "t_length - 1 frames of each video are not scored): a frame AUC needs both normal and anomalous "
                     "frames; check the label file, or add test videos of the other class")


def pick_examples(result: EvalResult, n: int = 3) -> list[tuple[str, int]]:
    """(video, frame) of the lowest-scored anomalous frames, one per video, and of the highest-scored normal frame."""
    anomalous, normal = [], []
    for name, s in result.videos.items():
        score, label = np.asarray(s.score), np.asarray(s.label if s.label is not None else np.zeros(len(s.score)))
        if (label == 1).any():
            i = int(np.argmin(np.where(label == 1, score, np.inf)))
            anomalous.append((score[i], name, s.frames[i]))
        if (label == 0).any():
            i = int(np.argmax(np.where(label == 0, score, -np.inf)))
            normal.append((-score[i], name, s.frames[i]))
    picks = [(v, f) for _, v, f in sorted(anomalous)[: max(n - 1, 1)]] + [(v, f) for _, v, f in sorted(normal)[:1]]
    return picks[:n]


def example_titles(result: EvalResult, picks: Sequence[tuple[str, int]]) -> list[str]:
    """A title per picked (video, frame): its ground truth and regularity score, so the normal example is told from the anomalous."""
    titles = []
    for video, frame in picks:
        s = result.videos[video]
        i = s.frames.index(frame)
        truth = "" if s.label is None else ("anomalous, " if s.label[i] else "normal, ")
        titles.append(f"{video}/{frame} {truth}score {s.score[i]:.2f}")
    return titles


def collect_steps(loaded: Loaded, videos: Sequence[FrameSource], cfg: EvalConfig,
                  wanted: Sequence[tuple[str, int]]) -> list[FrameStep]:
    """The FrameSteps of ``wanted`` (video, frame) pairs, in the order asked, scoring all videos in order only as far as needed."""
    found: dict[tuple[str, int], FrameStep] = {}
    for step in iter_frames(loaded.model, loaded.items, list(videos), cfg):
        if (step.video, step.frame) in wanted:
            found[(step.video, step.frame)] = step
            if len(found) == len(set(wanted)):
                break
    return [found[w] for w in wanted if w in found]


def sample_queries(loaded: Loaded, videos: Sequence[FrameSource], n_frames: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) queries and the index of each one's nearest memory item, from ``n_frames`` clips spread over ``videos``."""
    from .data import ClipDataset

    if loaded.items is None:
        raise ValueError("this model has no memory: there are no memory items to colour queries by")
    data = ClipDataset(list(videos), loaded.model.cfg.t_length, loaded.size)
    picks = np.linspace(0, len(data) - 1, num=min(n_frames, len(data))).round().astype(int)
    clip = torch.stack([data[int(k)] for k in picks])  # (n, 3*t_length, H, W)
    device = next(loaded.model.parameters()).device
    with torch.no_grad():
        x, _ = loaded.model.split_clip(clip.to(device))
        fea = loaded.model.encoder(x)[0]  # (n, C, h, w)
        query = flatten_queries(fea)  # (n*h*w, C)
        nearest = torch.matmul(query, loaded.items.to(device).t()).argmax(dim=1)  # (n*h*w,)
    return query.cpu().numpy(), nearest.cpu().numpy()
