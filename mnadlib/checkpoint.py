"""Checkpoints: ours (state dict + memory + config, ``weights_only``) and the authors' pickles, loaded safely.

The authors' ``Train.py`` saves ``torch.save(model)`` -- a whole pickled ``convAE`` module whose
classes live in their repository (``model.final_future_prediction_...``, ``model.Reconstruction``)
-- plus ``torch.save(m_items)`` as ``keys.pt``. Unpickling such a file normally imports and runs
whatever globals it names. Here it goes through an allow-list unpickler: the authors' classes map
to empty stand-in modules, the few torch and collections globals such a file needs resolve
normally, and anything else is refused *before* it is imported, with an error naming it.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import tempfile
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from .config import ModelConfig, to_dict
from .model import MNAD

FORMAT = "mnadlib"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be used: missing, truncated, corrupt, or of another kind."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle names a global outside the allow-list; it was not imported or executed."""


_AUTHOR_PREFIX = "model."
_ALLOWED: dict[str, set[str]] = {
    "torch._utils": {"_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state"},
    "torch": {"FloatStorage", "DoubleStorage", "HalfStorage", "LongStorage", "IntStorage", "BoolStorage", "ByteStorage"},
    "torch.nn.modules.conv": {"Conv2d", "ConvTranspose2d"},
    "torch.nn.modules.batchnorm": {"BatchNorm2d"},
    "torch.nn.modules.activation": {"ReLU", "Tanh"},
    "torch.nn.modules.pooling": {"MaxPool2d"},
    "torch.nn.modules.container": {"Sequential"},
    "collections": {"OrderedDict"},
    "builtins": {"set"},
    "__builtin__": {"set"},
}
_STANDINS: dict[tuple[str, str], type] = {}


def _standin(module: str, name: str) -> type:
    """An empty ``nn.Module`` subclass standing for one of the authors' classes (never imports their code)."""
    key = (module, name)
    if key not in _STANDINS:
        _STANDINS[key] = type(name, (nn.Module,), {"__module__": f"mnadlib.standin.{module}"})
    return _STANDINS[key]


class _AllowListUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals; the authors' ``model.*`` classes become stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith(_AUTHOR_PREFIX):
            return _standin(module, name)
        if name in _ALLOWED.get(module, ()):
            return super().find_class(module, name)
        raise UnsafeCheckpointError(
            f"refused to load global '{module}.{name}': it is not on the allow-list of an MNAD "
            "checkpoint, so the file was not unpickled. Only load checkpoints from a source you trust; "
            "if this is a genuine MNAD checkpoint, please report the global name."
        )


def _safe_load(f: io.BytesIO | Path, **kwargs: Any) -> Any:
    """``pickle.load`` through the allow-list (used by torch for legacy checkpoints)."""
    return _AllowListUnpickler(f, **kwargs).load()


_pickle_module = types.ModuleType("mnadlib_safe_pickle")
_pickle_module.Unpickler = _AllowListUnpickler  # type: ignore[attr-defined]
_pickle_module.load = _safe_load  # type: ignore[attr-defined]


def _read_bytes(path: str | Path) -> bytes:
    """Read a file, gunzipping it when it is gzip; errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint file not found: {p}")
    data = p.read_bytes()
    if not data:
        raise CheckpointError(f"checkpoint file is empty: {p}")
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise CheckpointError(f"{p} is a truncated or corrupt gzip file ({exc}); download or copy it again") from exc
    return data


def _torch_load(path: str | Path, weights_only: bool) -> Any:
    """torch.load to CPU with clear errors for truncated or corrupt files."""
    data = _read_bytes(path)
    kwargs: dict[str, Any] = {"map_location": "cpu", "weights_only": weights_only}
    if not weights_only:
        kwargs["pickle_module"] = _pickle_module
    try:
        return torch.load(io.BytesIO(data), **kwargs)
    except UnsafeCheckpointError:
        raise
    except pickle.UnpicklingError as exc:
        what = ("It is no mnadlib checkpoint, or it holds more than tensors and plain data. If it is the authors' "
                "whole-model pickle (model.pth), load it with load_original() (--original-model with --original-keys) "
                "or `python -m mnadlib convert`." if weights_only else
                "It is neither the authors' model.pth nor their keys.pt, or it is damaged.")
        raise CheckpointError(f"{path} could not be loaded safely: {_reason(exc)}. {what}") from exc
    except Exception as exc:  # corrupt bytes fail anywhere in the unpickler: IndexError, OverflowError, MemoryError...
        raise CheckpointError(f"{path} is no torch file, or a truncated or corrupt one ({type(exc).__name__}: {exc}); "
                              "copy or re-create it") from exc


def _reason(exc: BaseException) -> str:
    """The cause in torch's weights-only error, without its advice to switch the safe loading off."""
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    kept = [p.strip() for p in str(exc).split("\n\n") if p.strip() and not p.strip().startswith(boilerplate)]
    return " ".join(kept).replace("WeightsUnpickler error:", "").strip().rstrip(".") or type(exc).__name__


def infer_config(state: dict[str, torch.Tensor], method: str | None = None) -> ModelConfig:
    """Derive the model configuration from a state dict's shapes (the authors store no config)."""
    try:
        first = state["encoder.moduleConv1.0.weight"]
        c4 = state["encoder.moduleConv4.3.weight"].shape[0]
        dec_in = state["decoder.moduleConv.0.weight"].shape[1]
        up4_out = state["decoder.moduleUpsample4.0.weight"].shape[1]
        head_in = state["decoder.moduleDeconv1.0.weight"].shape[1]
        n_channel = state["decoder.moduleDeconv1.6.weight"].shape[0]
    except KeyError as exc:
        raise CheckpointError(f"not an MNAD state dict: key {exc} is missing") from None
    layout = "recon" if up4_out == c4 else "pred"
    if method is not None and method != layout:
        raise CheckpointError(f"this checkpoint holds a '{layout}' model, not '{method}': pass --method {layout} "
                              f"(method=\"{layout}\" in a notebook)")
    c1 = first.shape[0]
    in_frames = first.shape[1] // n_channel
    return ModelConfig(
        method=layout,  # type: ignore[arg-type]
        t_length=in_frames + 1 if layout == "pred" else 1,
        n_channel=n_channel,
        width=c1 / 64,
        use_memory=dec_in == 2 * c4,
        use_skips=layout == "pred" and head_in == 2 * c1,
    )


def check_items(items: Any, cfg: ModelConfig, source: str) -> torch.Tensor:
    """Validate memory items: a float (M, C) tensor with C the model's feature dimension."""
    if not isinstance(items, torch.Tensor) or items.dim() != 2 or not items.is_floating_point():
        shape = tuple(items.shape) if isinstance(items, torch.Tensor) else type(items).__name__
        raise CheckpointError(f"{source}: memory items must be a float tensor of shape (M, {cfg.fdim}), got {shape}")
    if items.shape[1] != cfg.fdim or items.shape[0] < 2:
        raise CheckpointError(
            f"{source}: memory items have shape {tuple(items.shape)} but the model needs (M >= 2, {cfg.fdim}); "
            "are these the keys.pt saved with this model?"
        )
    return items


def _build(state: dict[str, torch.Tensor], cfg: ModelConfig, source: str) -> MNAD:
    """Instantiate MNAD and load the state strictly, reporting mismatches by name."""
    model = MNAD(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{source} does not fit an MNAD {cfg.method} model: {exc}") from exc
    return model.eval()


def load_original(model_path: str | Path, keys_path: str | Path, method: str | None = None) -> tuple[MNAD, torch.Tensor]:
    """Load the authors' (or MNADrc's) pickled ``model.pth`` and ``keys.pt`` (plain or .gz) on the CPU, safely."""
    obj = _torch_load(model_path, weights_only=False)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        raise CheckpointError(f"{model_path} is already an mnadlib checkpoint: use it as it is (--checkpoint)")
    if not isinstance(obj, nn.Module) or not hasattr(obj, "encoder"):
        raise CheckpointError(f"{model_path} does not hold an MNAD convAE module (got {type(obj).__name__})")
    state = obj.state_dict()
    cfg = infer_config(state, method)
    items = check_items(_torch_load(keys_path, weights_only=True), cfg, str(keys_path)).float()
    cfg.msize = items.shape[0]
    return _build(state, cfg, str(model_path)), items


def save_checkpoint(path: str | Path, model: MNAD, items: torch.Tensor | None, **extra: Any) -> Path:
    """Write our checkpoint atomically (temp file, fsync, rename): nothing half-written survives a crash."""
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model_config": to_dict(model.cfg),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "memory": None if items is None else items.detach().cpu(),
        **extra,
    }
    return atomic_torch_save(payload, path)


def _new_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file under the current umask (mkstemp's files are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, fsync it and rename it over ``path``.

    A reader sees the old file or the new one, never half of one, whenever the writer is stopped.
    The file gets the permissions of an ordinarily written one, so others can read a shared checkpoint.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """torch.save, atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_json(obj: Any, path: str | Path, indent: int = 1) -> Path:
    """JSON of ``obj``, written atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(json.dumps(obj, indent=indent).encode()))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load our checkpoint's raw dictionary with ``weights_only=True``."""
    payload = _torch_load(path, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an mnadlib checkpoint; for the authors' model.pth + keys.pt use "
            "--original-model/--original-keys or `python -m mnadlib convert`"
        )
    if payload.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer mnadlib (format {payload['version']}); upgrade mnadlib")
    return payload


@dataclass(frozen=True)
class Checkpoint:
    """Our checkpoint, read once: the model (in eval mode), its memory items and the raw payload."""

    model: MNAD
    items: torch.Tensor | None
    payload: dict[str, Any]

    @property
    def train_size(self) -> tuple[int, int] | None:
        """The (H, W) the model was trained at, or None when the checkpoint does not record it."""
        size = self.payload.get("train_config", {}).get("size")
        return (int(size[0]), int(size[1])) if size else None

    @property
    def history(self) -> list[dict[str, Any]]:
        """Per-epoch training losses, as training recorded them (empty for a converted checkpoint)."""
        return list(self.payload.get("history", []))


def open_checkpoint(path: str | Path, method: str | None = None) -> Checkpoint:
    """Read our checkpoint once; ``method`` ("pred" / "recon"), when given, must match the model's."""
    payload = read_checkpoint(path)
    try:
        cfg = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in payload["model_config"].items()})
        state = payload["state_dict"]
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise CheckpointError(f"{path} has no usable model_config and state_dict ({type(exc).__name__}: {exc}); "
                              "a newer mnadlib may have written it, or it is damaged") from exc
    if method is not None and cfg.method != method:
        raise CheckpointError(f"{path} holds a '{cfg.method}' model, not '{method}': pass --method {cfg.method} "
                              f"(method=\"{cfg.method}\" in a notebook)")
    model = _build(state, cfg, str(path))
    items = payload.get("memory")
    if cfg.use_memory:
        items = check_items(items, cfg, str(path))
    return Checkpoint(model, items, payload)


def load_checkpoint(path: str | Path, method: str | None = None) -> tuple[MNAD, torch.Tensor | None]:
    """Load our checkpoint: the model (in eval mode) and its memory items."""
    ckpt = open_checkpoint(path, method)
    return ckpt.model, ckpt.items


def convert(model_path: str | Path, keys_path: str | Path, out: str | Path, method: str | None = None) -> Path:
    """Convert the authors' pickles into our safe checkpoint format."""
    model, items = load_original(model_path, keys_path, method)
    return save_checkpoint(out, model, items, source={"model": str(model_path), "keys": str(keys_path)})
