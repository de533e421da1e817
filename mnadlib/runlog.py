"""The run folder's manifest and lock, which let ``python -m mnadlib.reproduce --resume`` continue a run.

The manifest (``manifest.json``: parameters, versions, git commit, one entry per notebook with
its status and wall time) is rewritten atomically after every notebook, so a run that was
interrupted, failed or killed says how far it got. The lock is an ``flock`` held by the process
running the pipeline; the operating system drops it when that process ends, however it ends.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write_json

try:
    import fcntl
except ImportError:  # Windows: runs are not locked there
    fcntl = None  # type: ignore[assignment]

MANIFEST = "manifest.json"
LOCK = ".reproduce.lock"  # held (flock) by the process running the pipeline in this folder
# a temporary file of checkpoint.atomic_write or folder of synth.write_dataset: ".<name>.<8 random chars>.tmp"
LEFTOVER = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
REQUIRED = {"dataset": str, "variants": list, "parameters": dict, "smoke": bool, "steps": list}  # what a resume re-plans from


class RunLocked(RuntimeError):
    """Another process is running the pipeline in this run folder."""


def write_manifest(out: Path, log: dict[str, Any]) -> Path:
    """Write ``out/manifest.json`` atomically (a reader never sees half a file)."""
    return atomic_write_json(log, out / MANIFEST)


def read_manifest(out: Path) -> dict[str, Any]:
    """The manifest of a run folder to continue; ValueError when the folder cannot be continued."""
    path = out / MANIFEST
    if not path.is_file():
        raise ValueError(f"{out} holds no {MANIFEST}, so it is not a run folder of python -m mnadlib.reproduce; "
                         "pass the folder a run printed ('run folder: ...')")
    try:
        log = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); the run cannot be continued, start a new one") from None
    if not isinstance(log, dict):
        raise ValueError(f"{path} holds a JSON {type(log).__name__}, not a run's manifest; the run cannot be continued, "
                         "start a new one")
    missing = [k for k in REQUIRED if k not in log]
    if missing:
        raise ValueError(f"{path} lacks {missing}; the run cannot be continued, start a new one")
    wrong = [f"{k} is {type(log[k]).__name__}, not {t.__name__}" for k, t in REQUIRED.items() if not isinstance(log[k], t)]
    wrong += [f"{k} is {type(log[k]).__name__}" for k, t in (("data_root", (str, type(None))), ("resumed", list))
              if k in log and not isinstance(log[k], t)]
    if isinstance(log["steps"], list) and any(
            not (isinstance(s, dict) and isinstance(s.get("notebook"), str) and isinstance(s.get("status"), str))
            for s in log["steps"]):
        wrong.append("a step lacks its notebook or status")
    if wrong:
        raise ValueError(f"{path} is not a manifest this mnadlib can continue ({'; '.join(wrong)}); start a new run")
    return log


@contextmanager
def hold(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run folder for as long as the pipeline runs in it.

    The operating system drops the lock when the process ends, however it ends, so a folder
    whose lock is free holds no live run. RunLocked when another process holds it; on a file
    system that cannot lock, a warning, and the run goes on unlocked. ValueError when the lock
    file cannot be made (a read-only or full file system): nothing could be written there either.
    """
    try:
        lock = (out / LOCK).open("a")
    except OSError as exc:
        raise ValueError(f"cannot write in run folder {out} ({exc.strerror or exc} on {LOCK}); a run continues only "
                         "in a folder it can write to: copy it to one and resume the copy") from None
    with lock as f:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLocked(f"another process is running the pipeline in {out}; wait for it to end "
                                "(or stop it) before resuming") from None
            except OSError as exc:  # a file system without flock (some network and FUSE mounts)
                print(f"warning: cannot lock {out} ({exc}); do not resume this run while it still runs",
                      file=sys.stderr)
        yield


def sweep(out: Path) -> list[Path]:
    """Remove the temporary files and folders that a writer killed mid-write (SIGKILL skips its cleanup) left in ``out``.

    Call it only while holding the run folder's lock: then no writer of this run is alive.
    """
    removed = []
    for folder, dirs, files in os.walk(out):
        for name in [d for d in dirs if LEFTOVER.fullmatch(d)]:
            dirs.remove(name)
            shutil.rmtree(Path(folder, name), ignore_errors=True)
            removed.append(Path(folder, name))
        for name in filter(LEFTOVER.fullmatch, files):
            Path(folder, name).unlink(missing_ok=True)
            removed.append(Path(folder, name))
    return removed


def attempt_path(target: Path) -> Path:
    """``<run>.attempt-<k>.ipynb``: the first free name for an earlier attempt's executed copy."""
    k = 1
    while (path := target.with_name(f"{target.stem}.attempt-{k}{target.suffix}")).exists():
        k += 1
    return path
