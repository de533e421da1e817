"""Training as the authors' ``Train.py`` does it (Park et al., CVPR 2020, Sec. 3.3 and 4.1), made resumable.

One step: forward in training mode (the memory is read *and* updated), loss = pixel MSE +
lambda_c * compactness + lambda_s * separateness (Eq. 9), backward, Adam over encoder + decoder.
The learning rate is cosine-annealed once per epoch over all epochs. Around it: seeds, a tqdm
progress bar, atomic checkpoints every N epochs (model, memory, optimizer, scheduler, epoch,
RNG state, config), resume after an interruption, per-epoch loss history and memory usage, and a
run manifest (config, seed, library versions, git commit when available).
"""

from __future__ import annotations

import hashlib
import platform
import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import __version__
from .checkpoint import (CheckpointError, atomic_write_json, check_out_folder, check_writable, read_checkpoint,
                         save_checkpoint)
from .config import ConfigError, ModelConfig, TrainConfig, to_dict
from .data import FRAME_CACHE_MIB, ClipDataset, DataError, list_videos
from .memory import init_items
from .model import MNAD

CHECKPOINT = "checkpoint.pt"  # resumable state, rewritten every N epochs
FINAL = "model.pt"  # the trained model and memory, loadable by evaluate
# TrainConfig fields that shape the weights: a resume needs them equal (device, workers, checkpointing may change)
RESUME_KEYS = ("epochs", "batch_size", "lr", "loss_compact", "loss_separate", "size", "seed", "max_steps_per_epoch")
_clock = time.perf_counter  # the epoch lines' clock (tests replace it)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for data order."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _mps_available() -> bool:
    """Whether this torch build has Apple's MPS backend and it can run here."""
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; ``cpu``, ``cuda[:N]`` or ``mps`` must exist here (ConfigError otherwise)."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch is a CPU-only build" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ConfigError(f"device {device!r} asked for, but {build}; use device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    elif dev.type == "mps" and not _mps_available():
        raise ConfigError(f"device {device!r} asked for, but MPS is not available here; use device cpu or auto")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {device!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    return dev


@dataclass
class StepResult:
    """Losses of one step (floats) and the memory items after it."""

    loss: float
    pixel: float
    compactness: float
    separateness: float
    memory: torch.Tensor | None
    nearest: torch.Tensor | None


def make_optimizer(model: MNAD, cfg: TrainConfig) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.CosineAnnealingLR]:
    """Adam over encoder then decoder parameters (the authors' order) and cosine annealing over the epochs."""
    params = list(model.encoder.parameters()) + list(model.decoder.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)


def train_step(model: MNAD, items: torch.Tensor | None, clip: torch.Tensor, optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> StepResult:
    """One optimisation step on a (B, n_channel*t_length, H, W) clip batch, exactly as Train.py."""
    x, target = model.split_clip(clip)
    out = model(x, items, train=True)
    optimizer.zero_grad()
    pixel = torch.mean((out.output - target) ** 2)
    loss = pixel + cfg.loss_compact * out.compactness_loss + cfg.loss_separate * out.separateness_loss
    loss.backward()
    optimizer.step()
    return StepResult(
        loss=loss.item(),
        pixel=pixel.item(),
        compactness=out.compactness_loss.item(),
        separateness=out.separateness_loss.item(),
        memory=out.memory,
        nearest=None if out.mem is None else out.mem.nearest.detach(),
    )


def git_commit() -> str | None:
    """The git commit of the checkout mnadlib runs from (not of the working directory), when it runs from one."""
    try:
        return subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    """Versions of what shapes a trained model: the package, Python, torch, NumPy, OpenCV (it decodes and resizes
    the frames), and the platform."""
    return {"mnadlib": __version__, "torch": torch.__version__, "numpy": np.__version__, "opencv": cv2.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def write_manifest(run_dir: Path, **fields: Any) -> Path:
    """Write run_dir/manifest.json: configuration, seed, versions and git commit."""
    manifest = {
        **versions(),
        "git_commit": git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **fields,
    }
    return atomic_write_json(manifest, run_dir / "manifest.json", indent=2)


def train(
    data: str | Path,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    run_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
    epoch_lines: bool | None = None,
) -> Path:
    """Train on the normal videos under ``data`` (a training split folder); return the final checkpoint path.

    With ``resume`` and an existing ``run_dir/checkpoint.pt`` of the same configuration, training
    continues after the last completed epoch instead of starting over. ``progress`` shows a bar
    per epoch; ``epoch_lines`` (default: as ``progress``) prints one line per finished epoch with
    its losses and the time left, which is what a notebook wants: live, without bars.
    """
    epoch_lines = progress if epoch_lines is None else epoch_lines
    run_dir = Path(run_dir)
    check_out_folder(run_dir)
    check_writable(run_dir, "--out")
    generator = seed_everything(train_cfg.seed)
    device = resolve_device(train_cfg.device)
    # workers start afresh each epoch, so a cache in them would be refilled every epoch
    videos = list_videos(data)
    seen = [[v.name, len(v)] for v in videos]  # which videos trained: a resume on other data is refused
    digest = _first_frames_digest(videos)  # and what they show: another synthped seed has the same names and counts
    dataset = ClipDataset(videos, model_cfg.t_length, train_cfg.size,
                          cache_mib=0 if train_cfg.num_workers else FRAME_CACHE_MIB)
    if len(dataset) < train_cfg.batch_size:
        raise DataError(f"{data} yields {len(dataset)} clips, fewer than one batch of {train_cfg.batch_size}; "
                        "use a smaller batch size or more training frames")
    loader = DataLoader(
        dataset, batch_size=train_cfg.batch_size, shuffle=True, drop_last=True,
        num_workers=train_cfg.num_workers, generator=generator,
    )
    memory_format = training_memory_format(device)
    model = MNAD(model_cfg).to(device, memory_format=memory_format)  # type: ignore[call-overload]  # torch's stub omits to(memory_format=)
    items = init_items(model_cfg.msize, model_cfg.fdim, generator).to(device) if model_cfg.use_memory else None
    optimizer, scheduler = make_optimizer(model, train_cfg)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    ckpt_path = run_dir / CHECKPOINT
    if resume and not ckpt_path.exists() and (run_dir / FINAL).exists():
        raise FileExistsError(f"{run_dir} holds a trained {FINAL} but no {CHECKPOINT} to continue from; training "
                              "there would replace it. Use a new --out folder (out_dir in a notebook), or --restart "
                              "(resume=False) to replace it")
    if resume and ckpt_path.exists():
        start_epoch, items, history = _resume(ckpt_path, model, optimizer, scheduler, generator, model_cfg, train_cfg,
                                              device, seen, digest)
        if epoch_lines:
            tqdm.write(f"resuming {ckpt_path} after epoch {start_epoch} of {train_cfg.epochs}"
                       if start_epoch < train_cfg.epochs else
                       f"{run_dir} is already trained with these settings (to epoch {train_cfg.epochs}): nothing left "
                       "to train; --restart (resume=False) trains it again")
    finished = start_epoch >= train_cfg.epochs  # only a resumed run can be
    run_dir.mkdir(parents=True, exist_ok=True)  # only now: a run refused above leaves no empty folder behind
    written = (CHECKPOINT, FINAL, "history.json", "manifest.json")
    for stale in (p for name in written for p in run_dir.glob(f".{name}.*.tmp")):
        stale.unlink(missing_ok=True)  # half-written by a run killed mid-save (SIGKILL skips the cleanup)
    if not finished:  # a finished run keeps the manifest of the session that trained it
        write_manifest(run_dir, model_config=to_dict(model_cfg), train_config=to_dict(train_cfg), data=str(data),
                       seed=train_cfg.seed, device=str(device), resumed_from_epoch=start_epoch or None)
    started = _clock()
    for epoch in range(start_epoch, train_cfg.epochs):
        model.train()
        sums = np.zeros(4)
        usage = np.zeros(model_cfg.msize, dtype=np.int64)
        steps = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{train_cfg.epochs}", disable=not progress, leave=False)
        for clip in bar:
            res = train_step(model, items, clip.to(device, memory_format=memory_format), optimizer, train_cfg)
            items = res.memory
            sums += (res.loss, res.pixel, res.compactness, res.separateness)
            if res.nearest is not None:
                usage += np.bincount(res.nearest.cpu().numpy(), minlength=model_cfg.msize)
            steps += 1
            bar.set_postfix(loss=f"{res.loss:.4f}")
            if train_cfg.max_steps_per_epoch and steps >= train_cfg.max_steps_per_epoch:
                break
        scheduler.step()
        mean = (sums / max(steps, 1)).tolist()  # Python floats: weights_only checkpoints refuse NumPy scalars
        loss, pixel, compact, separate = (float(v) for v in mean)
        history.append({"epoch": epoch + 1, "loss": loss, "pixel": pixel, "compactness": compact,
                        "separateness": separate, "lr": optimizer.param_groups[0]["lr"], "memory_usage": usage.tolist()})
        if epoch_lines:
            tqdm.write(f"epoch {epoch + 1}/{train_cfg.epochs}  loss {loss:.5f}  pixel {pixel:.5f}  "
                       f"compact {compact:.5f}  separate {separate:.5f}  "
                       f"{_timing(_clock() - started, epoch + 1 - start_epoch, train_cfg.epochs - epoch - 1)}")
        if (epoch + 1) % train_cfg.checkpoint_every == 0 or epoch + 1 == train_cfg.epochs:
            _save_resumable(ckpt_path, model, items, optimizer, scheduler, generator, epoch + 1, history, train_cfg, seen,
                            digest)
    final = run_dir / FINAL
    if finished and final.exists() and final.stat().st_mtime >= ckpt_path.stat().st_mtime:
        return final  # written from this checkpoint; a run killed between the two saves writes it below
    atomic_write_json(history, run_dir / "history.json", indent=2)
    return save_checkpoint(final, model, items, train_config=to_dict(train_cfg), history=history)


def training_memory_format(device: torch.device) -> torch.memory_format:
    """The layout :func:`train` holds weights and clips in: channels-last on a CPU, where oneDNN's convolutions
    train the ``cpu`` preset about 18 % faster in it; NCHW elsewhere, where it was not measured. The values
    agree with NCHW's to float rounding (another summation order, as another processor's kernels give)."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s`` or ``2 h 07 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _timing(elapsed: float, done: int, left: int) -> str:
    """Time this session has trained, and the time left at its mean epoch time so far."""
    return f"({_duration(elapsed)}, about {_duration(elapsed / done * left)} left)" if left else f"({_duration(elapsed)})"


def _first_frames_digest(videos: list) -> str:
    """SHA-256 of every video's first frame: one decode per video tells one recording from another of the same shape."""
    h = hashlib.sha256()
    for v in videos:
        frame = np.ascontiguousarray(v.read(0))
        h.update(f"{v.name}:{frame.shape}:".encode())
        h.update(frame.tobytes())
    return h.hexdigest()


def _save_resumable(path: Path, model: MNAD, items: torch.Tensor | None, optimizer: torch.optim.Optimizer,
                    scheduler: Any, generator: torch.Generator, epoch: int, history: list, train_cfg: TrainConfig,
                    videos: list, digest: str) -> None:
    """Write everything needed to continue training after ``epoch``, and which ``videos`` ([name, frames]) it saw."""
    save_checkpoint(
        path, model, items,
        train_config=to_dict(train_cfg), epoch=epoch, history=history, videos=videos, first_frames=digest,
        optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
        rng={"torch": torch.get_rng_state(), "generator": generator.get_state()},
    )


def _resume(path: Path, model: MNAD, optimizer: torch.optim.Optimizer, scheduler: Any, generator: torch.Generator,
            model_cfg: ModelConfig, train_cfg: TrainConfig, device: torch.device,
            videos: list, digest: str) -> tuple[int, torch.Tensor | None, list]:
    """Restore a run from its last checkpoint; refuse one written with another configuration or other videos."""
    try:
        payload = read_checkpoint(path)
    except CheckpointError as exc:  # truncated or damaged: its own message says so; say how to go on
        raise CheckpointError(f"{exc}. To train this run folder from the start instead, use --restart "
                              "(resume=False)") from exc
    saved, wanted = payload.get("train_config", {}), to_dict(train_cfg)
    if not isinstance(saved, dict) or not isinstance(payload.get("model_config"), dict):
        raise CheckpointError(f"{path} records no usable configuration; it is damaged. Use --restart (resume=False)")
    differ = [f"train.{k} (saved {saved.get(k)!r}, now {wanted[k]!r})" for k in RESUME_KEYS if saved.get(k) != wanted[k]]
    if payload["model_config"] != to_dict(model_cfg):
        now = to_dict(model_cfg)
        differ.insert(0, ", ".join(f"model.{k} (saved {payload['model_config'].get(k)!r}, now {v!r})"
                                   for k, v in now.items() if payload["model_config"].get(k) != v) or "the model configuration")
    if "videos" in payload and payload["videos"] != videos:  # checkpoints before this check do not record them
        differ.append("the training videos (names and frame counts)")
    elif "first_frames" in payload and payload["first_frames"] != digest:
        differ.append("the training videos' first frames (another recording with the same names and lengths)")
    if differ:
        raise CheckpointError(
            f"{path} was written by a run with other settings: {'; '.join(differ)}. Continuing it would give weights "
            "that neither run asked for; use a new --out folder (out_dir in a notebook), or --restart (resume=False) "
            "to start over there"
        )
    try:
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        torch.set_rng_state(payload["rng"]["torch"])
        generator.set_state(payload["rng"]["generator"])
        items = payload["memory"]
        return int(payload["epoch"]), None if items is None else items.to(device), list(payload["history"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is no resumable training checkpoint ({type(exc).__name__}: {exc}); a final "
                              f"{FINAL} copied there cannot be continued. Use --restart (resume=False)") from exc
