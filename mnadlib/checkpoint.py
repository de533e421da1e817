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
import re
import tempfile
import types
import zipfile
import zlib
from collections.abc import Callable, Iterable
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
# torch's layers in the pickle become empty stand-ins too: the file may call a class it names, and
# a real Conv2d(4096, 4096, 3) would allocate its weights at load time.
_STANDIN_CLASSES: dict[str, set[str]] = {
    "torch.nn.modules.conv": {"Conv2d", "ConvTranspose2d"},
    "torch.nn.modules.batchnorm": {"BatchNorm2d"},
    "torch.nn.modules.activation": {"ReLU", "Tanh"},
    "torch.nn.modules.pooling": {"MaxPool2d"},
    "torch.nn.modules.container": {"Sequential"},
}
# Functions are handed out as fresh wrappers: pickle's BUILD can set attributes on any object it
# holds, and on torch's own function objects that would change them for the whole process.
_FUNCTIONS: dict[str, set[str]] = {
    "torch._utils": {"_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state"},
}
_IMMUTABLE_TYPES: dict[str, set[str]] = {  # built-in types whose attributes cannot be set
    "collections": {"OrderedDict"},
    "builtins": {"set"},
    "__builtin__": {"set"},
}
MAX_UNPACKED_BYTES = 1 << 30  # a gzipped checkpoint unpacking to more is refused: the paper's model is 60 MiB
_MAX_DEPTH = 32  # module nesting; MNAD's is 3


def _wrapper(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A new function that calls ``fn``: what the pickle does to it stays with this load."""
    def call(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)
    return call


class _AllowListUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals; the authors' classes and torch's layers become stand-ins."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._standins: dict[tuple[str, str], type] = {}  # per load, so one file cannot alter another's

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith(_AUTHOR_PREFIX) or name in _STANDIN_CLASSES.get(module, ()):
            return self._standin(module, name)
        if name in _FUNCTIONS.get(module, ()):
            return _wrapper(super().find_class(module, name))
        if name in _IMMUTABLE_TYPES.get(module, ()):
            return super().find_class(module, name)
        raise UnsafeCheckpointError(
            f"refused to load global '{module}.{name}': it is not on the allow-list of an MNAD "
            "checkpoint, so the file was not unpickled. Only load checkpoints from a source you trust; "
            "if this is a genuine MNAD checkpoint, please report the global name."
        )

    def _standin(self, module: str, name: str) -> type:
        """An empty ``nn.Module`` subclass standing for a class of the file (its code is never imported)."""
        key = (module, name)
        if key not in self._standins:
            self._standins[key] = type(name, (nn.Module,), {"__module__": f"mnadlib.standin.{module}"})
        return self._standins[key]


def _safe_load(f: io.BytesIO | Path, **kwargs: Any) -> Any:
    """``pickle.load`` through the allow-list (used by torch for legacy checkpoints)."""
    return _AllowListUnpickler(f, **kwargs).load()


_pickle_module = types.ModuleType("mnadlib_safe_pickle")
_pickle_module.Unpickler = _AllowListUnpickler  # type: ignore[attr-defined]
_pickle_module.load = _safe_load  # type: ignore[attr-defined]


def _read_bytes(path: str | Path) -> bytes:
    """Read a file, gunzipping it when it is gzip (up to MAX_UNPACKED_BYTES); errors name the file."""
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"{p} is a folder; give the checkpoint file inside it")
    if not p.is_file():
        what = "is not a regular file" if p.exists() else ("is a broken symlink" if p.is_symlink() else "not found")
        raise CheckpointError(f"checkpoint file {what}: {p}")
    data = p.read_bytes()
    if not data:
        raise CheckpointError(f"checkpoint file is empty: {p}")
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as g:
                data = g.read(MAX_UNPACKED_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise CheckpointError(f"{p} is a truncated or corrupt gzip file ({exc}); download or copy it again") from exc
        if len(data) > MAX_UNPACKED_BYTES:
            raise CheckpointError(f"{p} unpacks to more than {MAX_UNPACKED_BYTES >> 30} GiB, far more than an MNAD "
                                  "checkpoint (the paper's model is 60 MiB): it is no checkpoint, so it was not read")
    return data


def _check_zip(path: str | Path, data: bytes) -> None:
    """torch does not verify a zip checkpoint's checksums: a damaged file would load wrong weights."""
    try:
        bad = zipfile.ZipFile(io.BytesIO(data)).testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise CheckpointError(f"{path} is a damaged zip file ({exc}); copy or re-create it") from exc
    if bad is not None:
        raise CheckpointError(f"{path} is damaged: '{bad}' inside it fails its checksum; copy or re-create it")


def _torch_load(path: str | Path, weights_only: bool, hint: str = "") -> Any:
    """torch.load to CPU with clear errors for truncated or corrupt files; ``hint`` replaces the advice for a refused pickle."""
    data = _read_bytes(path)
    if data[:4] == b"PK\x03\x04":
        _check_zip(path, data)
    kwargs: dict[str, Any] = {"map_location": "cpu", "weights_only": weights_only}
    if not weights_only:
        if os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0").lower() not in ("", "0", "false", "no", "off"):
            raise CheckpointError(f"{path}: TORCH_FORCE_WEIGHTS_ONLY_LOAD is set, which forbids the allow-list "
                                  "unpickler that reads the authors' whole-model pickles; unset it for this command")
        kwargs["pickle_module"] = _pickle_module
    try:
        return torch.load(io.BytesIO(data), **kwargs)
    except UnsafeCheckpointError:
        raise
    except pickle.UnpicklingError as exc:
        what = hint or ("It is no mnadlib checkpoint, or it holds more than tensors and plain data. If it is the "
                        "authors' whole-model pickle (model.pth), convert it once with `python -m mnadlib convert "
                        "--original-model model.pth --original-keys keys.pt --out model.pt` (in Python: load_original(); "
                        "`evaluate` also takes --original-model and --original-keys)." if weights_only else
                        "It is neither the authors' model.pth nor their keys.pt, or it is damaged.")
        raise CheckpointError(f"{path} could not be loaded safely: {_reason(exc)}. {what}") from exc
    except MemoryError as exc:
        raise CheckpointError(f"{path} needs more memory than is free to load; it is damaged or no MNAD checkpoint") from exc
    except Exception as exc:  # corrupt bytes fail anywhere in the unpickler: IndexError, OverflowError, MemoryError...
        raise CheckpointError(f"{path} is no torch file, or a truncated or corrupt one ({type(exc).__name__}: {exc}); "
                              "copy or re-create it") from exc


def _reason(exc: BaseException) -> str:
    """The cause in torch's weights-only error, without its advice to switch the safe loading off."""
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s+Please use|\n|$)", str(exc))
    if found:
        return found.group(1).strip().rstrip(".")
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    kept = [p.strip() for p in str(exc).split("\n\n") if p.strip() and not p.strip().startswith(boilerplate)]
    return " ".join(kept).replace("WeightsUnpickler error:", "").strip().rstrip(".") or type(exc).__name__


def infer_config(state: dict[str, torch.Tensor], method: str | None = None) -> ModelConfig:
    """Derive the model configuration from a state dict's shapes (the authors store no config)."""
    names = ("encoder.moduleConv1.0.weight", "encoder.moduleConv4.3.weight", "decoder.moduleConv.0.weight",
             "decoder.moduleUpsample4.0.weight", "decoder.moduleDeconv1.0.weight", "decoder.moduleDeconv1.6.weight")
    for name in names:
        if name not in state:
            raise CheckpointError(f"not an MNAD state dict: key '{name}' is missing")
        if not isinstance(state[name], torch.Tensor) or state[name].dim() != 4 or min(state[name].shape) < 1:
            raise CheckpointError(f"not an MNAD state dict: '{name}' is no 4-D convolution weight")
    first = state[names[0]]
    c4 = state[names[1]].shape[0]
    dec_in = state[names[2]].shape[1]
    up4_out = state[names[3]].shape[1]
    head_in = state[names[4]].shape[1]
    n_channel = state[names[5]].shape[0]
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
    """Validate memory items, a finite float (M, C) tensor with C the model's feature dimension; return them as float32."""
    if not isinstance(items, torch.Tensor) or items.dim() != 2 or not items.is_floating_point():
        got = f"{items.dtype} tensor of shape {tuple(items.shape)}" if isinstance(items, torch.Tensor) else type(items).__name__
        raise CheckpointError(f"{source}: memory items must be a float tensor of shape (M, {cfg.fdim}), got {got}")
    if items.shape[1] != cfg.fdim or items.shape[0] < 2:
        raise CheckpointError(
            f"{source}: memory items have shape {tuple(items.shape)} but the model needs (M >= 2, {cfg.fdim}); "
            "are these the keys.pt saved with this model?"
        )
    _check_tensor(items, "memory items", source)
    return items.float()


def _check_tensor(t: torch.Tensor, name: str, source: str) -> None:
    """A tensor must hold its own data (no stride tricks claiming more than the file has) and be finite."""
    need = (t.storage_offset() + t.numel()) * t.element_size()
    if not t.is_contiguous() or t.untyped_storage().nbytes() < need:
        raise CheckpointError(f"{source}: '{name}' of shape {tuple(t.shape)} is not stored whole in the file "
                              "(no checkpoint torch writes looks like this); it is damaged or crafted")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise CheckpointError(f"{source}: '{name}' holds NaN or infinite values; the training that wrote it diverged, "
                              "or the file is damaged")


def _check_state(state: Any, source: str) -> dict[str, torch.Tensor]:
    """A state dict: names to whole, finite tensors."""
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{source}: its state_dict is not a mapping of names to tensors; it is damaged")
    for name, t in state.items():
        _check_tensor(t, name, source)
    return state


def _module_state(module: nn.Module, source: str, prefix: str = "", depth: int = 0) -> dict[str, torch.Tensor]:
    """The parameters and buffers of an unpickled module tree, read from its tables: no method of the file runs."""
    if depth > _MAX_DEPTH:
        raise CheckpointError(f"{source}: modules nest more than {_MAX_DEPTH} deep; it is no MNAD model")
    attrs = vars(module)
    state: dict[str, torch.Tensor] = {}
    skip = attrs.get("_non_persistent_buffers_set", set())
    for table in ("_parameters", "_buffers", "_modules"):
        entries = attrs.get(table)
        if not isinstance(entries, dict):
            raise CheckpointError(f"{source}: module '{prefix.rstrip('.') or 'the model'}' has no {table} table; "
                                  "it is damaged or no MNAD model")
        for name, value in entries.items():
            if value is None or (table == "_buffers" and isinstance(skip, set) and name in skip):
                continue
            if table == "_modules" and isinstance(name, str) and isinstance(value, nn.Module):
                state.update(_module_state(value, source, f"{prefix}{name}.", depth + 1))
            elif table != "_modules" and isinstance(name, str) and isinstance(value, torch.Tensor):
                state[prefix + name] = value
            else:
                raise CheckpointError(f"{source}: '{prefix}{name}' in {table} is a {type(value).__name__}; "
                                      "it is damaged or no MNAD model")
    return state


def _build(state: dict[str, torch.Tensor], cfg: ModelConfig, source: str) -> MNAD:
    """Instantiate MNAD and load the state strictly; every name and shape is compared before any weight is allocated."""
    try:
        with torch.device("meta"):
            meta = MNAD(cfg).state_dict()
        expected = {k: tuple(v.shape) for k, v in meta.items()}
    except Exception as exc:  # a damaged config fails anywhere in the layers' constructors
        raise CheckpointError(f"{source}: its model configuration describes no MNAD model ({type(exc).__name__}: "
                              f"{exc}); it is damaged") from exc
    wrong = sorted(set(expected) ^ set(state))
    for k in sorted(expected.keys() & state.keys()):
        if tuple(state[k].shape) != expected[k]:
            wrong.append(f"{k} {tuple(state[k].shape)} (needs {expected[k]})")
        elif meta[k].is_floating_point() and not state[k].is_floating_point():
            wrong.append(f"{k} ({state[k].dtype}, needs floating point)")
    if wrong:
        more = f" and {len(wrong) - 5} more" if len(wrong) > 5 else ""
        raise CheckpointError(f"{source} does not fit an MNAD {cfg.method} model: {', '.join(wrong[:5])}{more} "
                              "differ; it was saved for another architecture or is damaged")
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
    state = _check_state(_module_state(obj, str(model_path)), str(model_path))
    cfg = infer_config(state, method)
    items = check_items(_torch_load(keys_path, weights_only=True,
                                    hint="The keys file (--original-keys) should hold only the memory items, a "
                                         "tensor (the authors' keys.pt); this one holds more, e.g. a whole model "
                                         "(model.pth belongs to --original-model)."), cfg, str(keys_path))
    cfg.msize = items.shape[0]
    return _build(state, cfg, str(model_path)), items


def save_checkpoint(path: str | Path, model: MNAD, items: torch.Tensor | None, **extra: Any) -> Path:
    """Write our checkpoint atomically (temp file, fsync, rename): nothing half-written survives a crash."""
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model_config": to_dict(model.cfg),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},  # NCHW, as loaders check
        "memory": None if items is None else items.detach().cpu(),
        **extra,
    }
    return atomic_torch_save(payload, path)


def _new_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file under the current umask (mkstemp's files are 0600)."""
    try:  # Linux reports the umask without changing it, which os.umask would do for a moment in every thread
        status = Path("/proc/self/status").read_text()
        umask = int(re.search(r"^Umask:\s*([0-7]+)", status, re.M).group(1), 8)  # type: ignore[union-attr]
    except (OSError, AttributeError):
        umask = os.umask(0)
        os.umask(umask)
    return 0o666 & ~umask


class WriteError(OSError):
    """A file could not be written (disk full, no permission); the previous file at that path is unchanged."""


def check_out_folder(path: str | Path, flag: str = "--out") -> None:
    """WriteError when the folder to write into is, or would lie inside, an existing file; before anything is read."""
    out = Path(path)
    held = next((p for p in (out, *out.parents) if p.exists()), None)
    if held is not None and not held.is_dir():
        raise WriteError(f"{flag} {out}: {held} is a file; give a folder (new or existing) to write into")


def check_writable(path: str | Path, flag: str) -> None:
    """WriteError when ``path`` (a file or folder to write) could not be written, found before a long run.

    The nearest existing folder at or above it takes a temporary file, so a refused run creates no folder.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise WriteError(f"cannot write {flag} {path}: {exc.strerror or exc} ({folder}); give a path in a folder "
                         "you can write to") from None


def within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it, symlinks resolved (and hard links of one file the same)."""
    p, f = path.resolve(), folder.resolve()
    if p == f or f in p.parents:
        return True
    try:
        return os.path.samefile(p, f)
    except OSError:  # either does not exist yet
        return False


def check_not_inputs(outputs: Iterable[str | Path], inputs: dict[str, str | Path | None]) -> None:
    """FileExistsError when an output would replace an input file, or an existing file inside an input folder.

    ``inputs`` maps a flag (for the message) to the path given with it, None when not given.
    """
    given_paths = {flag: Path(given) for flag, given in inputs.items() if given is not None}
    for out in map(Path, outputs):
        for flag, given in given_paths.items():
            if not given.exists() or not within(out, given):
                continue
            if given.is_file():
                raise FileExistsError(f"output {out} is the {flag} input {given}; writing it would destroy that input: "
                                      "give another --out")
            if out.exists():
                raise FileExistsError(f"output {out} would replace a file inside the {flag} folder {given}; "
                                      "give an --out outside it")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, fsync it and rename it over ``path``.

    A reader sees the old file or the new one, never half of one, whenever the writer is stopped.
    A symlink is written through to its target. A new file gets the permissions of an ordinarily
    written one, so others can read a shared checkpoint; a replaced file keeps its own.
    """
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if target.exists() and not target.is_file():
        raise FileExistsError(f"{path} exists and is no regular file (a folder, device or pipe); give a file path")
    if target.parent.exists() and not target.parent.is_dir():
        raise FileExistsError(f"cannot write {path}: {target.parent} is a file, not a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = target.stat().st_mode & 0o7777 if target.exists() else _new_file_mode()
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError of its zip writer
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"could not write {path} ({exc}); is the disk full? Any earlier file there is unchanged") from exc
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
    version = payload.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: its format version {version!r} is no number; it is damaged")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer mnadlib (format {version}); upgrade mnadlib")
    return payload


def _train_size(payload: dict[str, Any], source: str) -> tuple[int, int] | None:
    """The training (H, W) a payload records, None when it records none; malformed metadata is an error."""
    train_cfg = payload.get("train_config", {})
    size = train_cfg.get("size") if isinstance(train_cfg, dict) else train_cfg
    if not size:
        return None
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise CheckpointError(f"{source}: train_config.size is {size!r}, not (H, W); it is damaged") from None
    if h < 1 or w < 1:
        raise CheckpointError(f"{source}: train_config.size is {size!r}, not (H, W); it is damaged")
    return (h, w)


@dataclass(frozen=True)
class Checkpoint:
    """Our checkpoint, read once: the model (in eval mode), its memory items and the raw payload."""

    model: MNAD
    items: torch.Tensor | None
    payload: dict[str, Any]

    @property
    def train_size(self) -> tuple[int, int] | None:
        """The (H, W) the model was trained at, or None when the checkpoint does not record it."""
        return _train_size(self.payload, "checkpoint")

    @property
    def history(self) -> list[dict[str, Any]]:
        """Per-epoch training losses, as training recorded them (empty for a converted checkpoint)."""
        return list(self.payload.get("history", []))


def open_checkpoint(path: str | Path, method: str | None = None) -> Checkpoint:
    """Read our checkpoint once; ``method`` ("pred" / "recon"), when given, must match the model's."""
    payload = read_checkpoint(path)
    try:
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in payload["model_config"].items()}
        cfg = ModelConfig(**fields)
        state = payload["state_dict"]
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise CheckpointError(f"{path} has no usable model_config and state_dict ({type(exc).__name__}: {exc}); "
                              "a newer mnadlib may have written it, or it is damaged") from exc
    if method is not None and cfg.method != method:
        raise CheckpointError(f"{path} holds a '{cfg.method}' model, not '{method}': pass --method {cfg.method} "
                              f"(method=\"{cfg.method}\" in a notebook)")
    train_size = _train_size(payload, str(path))
    if not isinstance(payload.get("history", []), list):
        raise CheckpointError(f"{path}: its training history is no list; it is damaged")
    model = _build(_check_state(state, str(path)), cfg, str(path))
    model.train_size = train_size
    items = payload.get("memory")
    if cfg.use_memory:
        items = check_items(items, cfg, str(path))
        if items.shape[0] != cfg.msize:
            raise CheckpointError(f"{path} holds {items.shape[0]} memory items but its config says {cfg.msize}; "
                                  "it is damaged")
    return Checkpoint(model, items, payload)


def load_checkpoint(path: str | Path, method: str | None = None) -> tuple[MNAD, torch.Tensor | None]:
    """Load our checkpoint: the model (in eval mode) and its memory items."""
    ckpt = open_checkpoint(path, method)
    return ckpt.model, ckpt.items


def convert(model_path: str | Path, keys_path: str | Path, out: str | Path, method: str | None = None,
            overwrite: bool = False) -> Path:
    """Convert the authors' pickles into our safe checkpoint format; an existing ``out`` is replaced only with ``overwrite``."""
    out = Path(out)
    for given in (model_path, keys_path):
        if out.exists() and Path(given).exists() and os.path.samefile(out, given):
            raise FileExistsError(f"--out {out} is the input {given}; converting would replace the authors' file. "
                                  "Give another output path")
    if out.is_file() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it, or give another --out")
    model, items = load_original(model_path, keys_path, method)
    return save_checkpoint(out, model, items, source={"model": str(model_path), "keys": str(keys_path)})
