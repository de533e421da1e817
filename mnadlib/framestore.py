"""A list of equal-shaped arrays that moves to a temporary file once it outgrows a memory budget.

Localizing a video keeps every scored frame's model-resolution prediction and input, so that
:func:`mnadlib.localize_video.relocalize` (and the app) can re-threshold without the model. At
256x256 that is 393 KB a frame: an hour of 25 fps footage would hold 35 GB in memory. A
:class:`FrameStore` keeps arrays in memory while all live stores together hold at most RAM_BYTES,
and appends the rest to an unnamed temporary file (``tempfile.TemporaryFile`` in ``TMPDIR``),
which the system removes when the store is closed, garbage-collected or its process ends.

In memory the arrays lie in blocks of CHUNK_BYTES, each its own mapping (glibc's malloc maps any
block over 32 MiB by itself). Small arrays kept one by one lie between the model's temporaries in
the heap and keep their freed memory from going back to the system: with every prediction and
input on disk but the memory distances (4 KB a frame) in a list, localizing 791 frames at 256x256
still grew the process by 349 MiB, of which ``malloc_trim`` returned 310; in a store, by 99 MiB.
"""

from __future__ import annotations

import tempfile
import threading
import weakref
from collections.abc import Iterable, Sequence
from typing import IO, Any, overload

import numpy as np

RAM_BYTES = 1 << 30  # what all live stores together keep in memory; past it they spill to disk (1 GiB)
CHUNK_BYTES = 33 << 20  # in-memory block size: over glibc's largest mmap threshold (32 MiB)
_in_ram = [0]  # bytes all live stores hold in memory
_in_ram_lock = threading.Lock()


def ram_in_use() -> int:
    """Bytes of arrays that all live stores hold in memory."""
    return _in_ram[0]


def _reserve(nbytes: int) -> bool:
    """Count ``nbytes`` against RAM_BYTES if they fit."""
    with _in_ram_lock:
        if _in_ram[0] + nbytes > RAM_BYTES:
            return False
        _in_ram[0] += nbytes
        return True


def _release(account: list[int]) -> None:
    """Give back what a store counted against RAM_BYTES (at close, or when it is garbage-collected)."""
    with _in_ram_lock:
        _in_ram[0] -= account[0]
        account[0] = 0


class FrameStoreError(OSError):
    """A frame could not be stored: the temporary folder is full or not writable."""


class FrameStore(Sequence[np.ndarray]):
    """Equal-shaped arrays, appended in order and read back by index; the first ones in memory.

    An array stays in memory while all live stores together hold at most RAM_BYTES (read at each
    append, so it can be set at any time) and this store at most its own ``ram_bytes`` (None: no
    cap of its own); from the first one that does not fit on, the store appends to its file.
    """

    def __init__(self, items: Iterable[np.ndarray] = (), ram_bytes: int | None = None) -> None:
        if ram_bytes is not None and ram_bytes < 0:
            raise ValueError(f"ram_bytes must be 0 or more, got {ram_bytes}")
        self.ram_bytes = ram_bytes
        self._lock = threading.Lock()  # seek + read of one frame must not interleave with another thread's
        self._account = [0]  # bytes this store counts against RAM_BYTES
        weakref.finalize(self, _release, self._account)
        self._reset()
        for a in items:
            self.append(a)

    def _reset(self) -> None:
        self._chunks: list[np.ndarray] = []  # (n, *shape) blocks of the in-memory arrays
        self._in_ram = 0
        self._file: IO[bytes] | None = None
        self._on_disk = 0
        self._shape: tuple[int, ...] = ()
        self._dtype: np.dtype = np.dtype(np.uint8)
        self._nbytes = -1  # bytes per array; -1 until the first is appended
        self._per_chunk = 1  # arrays per in-memory block

    @property
    def on_disk(self) -> int:
        """How many of the arrays lie in the temporary file."""
        return self._on_disk

    def append(self, a: np.ndarray) -> None:
        """Add a copy of one array (read-only, like every array the store returns); the first sets shape and dtype."""
        a = np.asarray(a)
        if self._nbytes < 0:
            self._shape, self._dtype, self._nbytes = a.shape, a.dtype, a.nbytes
            self._per_chunk = max(1, CHUNK_BYTES // max(1, a.nbytes))
        elif a.shape != self._shape or a.dtype != self._dtype:
            raise ValueError(f"a FrameStore holds arrays of one shape and dtype, {self._shape} {self._dtype}; "
                             f"got {a.shape} {a.dtype}")
        own = None if self.ram_bytes is None else self.ram_bytes // max(1, self._nbytes)  # arrays its own cap holds
        if self._file is None and (own is None or self._in_ram < own) and _reserve(self._nbytes):
            self._account[0] += self._nbytes
            row = self._in_ram % self._per_chunk  # every block but the last holds _per_chunk arrays
            if row == 0:
                rows = self._per_chunk if own is None else min(self._per_chunk, own - self._in_ram)
                self._chunks.append(np.empty((rows, *self._shape), self._dtype))
            self._chunks[-1][row] = a
            self._in_ram += 1
            return
        with self._lock:
            try:
                if self._file is None:
                    self._file = tempfile.TemporaryFile(prefix="mnadlib-frames-")
                self._file.seek(self._on_disk * self._nbytes)  # not the end: a failed write may have left a part
                self._file.write(np.ascontiguousarray(a).tobytes())
            except OSError as e:
                raise FrameStoreError(
                    f"could not store frame {len(self)} in a temporary file in {tempfile.gettempdir()} ({e}); "
                    f"set TMPDIR to a folder with room for {a.nbytes / 2**20:.1f} MiB per frame, or "
                    "localize a shorter stretch of the video") from e
        self._on_disk += 1

    def __len__(self) -> int:
        return self._in_ram + self._on_disk

    @overload
    def __getitem__(self, k: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, k: slice) -> list[np.ndarray]: ...

    def __getitem__(self, k: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        k = range(len(self))[k]  # IndexError past either end, as a list's
        if k < self._in_ram:
            view = self._chunks[k // self._per_chunk][k % self._per_chunk]
            view.flags.writeable = False
            return view
        assert self._file is not None, "arrays past the memory budget are in the file"
        with self._lock:
            self._file.seek((k - self._in_ram) * self._nbytes)
            buf = self._file.read(self._nbytes)
        return np.frombuffer(buf, self._dtype).reshape(self._shape)  # read-only: frombuffer of bytes

    def close(self) -> None:
        """Free the memory and remove the temporary file now; the store is empty afterwards."""
        if self._file is not None:
            self._file.close()
        _release(self._account)
        self._reset()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (or deep-copied) as its arrays, since an open file cannot be."""
        return {"items": list(self), "ram_bytes": self.ram_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        FrameStore.__init__(self, state["items"], state["ram_bytes"])
