"""FrameStore: a list of arrays that spills to a temporary file past its memory budget."""

from __future__ import annotations

import copy
import pickle
import tempfile

import numpy as np
import pytest

from mnadlib import framestore
from mnadlib.framestore import FrameStore, FrameStoreError


def _frames(n: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (6, 8, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("chunk_frames", [1, 2, 1000])
@pytest.mark.parametrize("budget_frames, on_disk", [(0, 5), (2.5, 3), (4.5, 1), (5, 0)])
def test_a_store_reads_back_what_was_appended_in_memory_and_on_disk(budget_frames, on_disk, chunk_frames, monkeypatch):
    frames = _frames()
    monkeypatch.setattr(framestore, "CHUNK_BYTES", chunk_frames * frames[0].nbytes)
    store = FrameStore(frames, ram_bytes=int(budget_frames * frames[0].nbytes))
    assert len(store) == 5 and store.on_disk == on_disk
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(store, frames))
    assert np.array_equal(store[-1], frames[-1]) and np.array_equal(store[-5], frames[0])
    assert [np.array_equal(a, b) for a, b in zip(store[1:4], frames[1:4])] == [True] * 3
    assert not store[0].flags.writeable and not store[4].flags.writeable  # a kept frame cannot be changed by a reader
    frames[0][:] = 0
    assert store[0].any()  # the store kept a copy
    for k in (5, -6):
        with pytest.raises(IndexError):
            store[k]


def test_a_store_copies_and_pickles_as_its_arrays_and_close_empties_it():
    frames = _frames(3)
    store = FrameStore(frames, ram_bytes=0)
    for other in (copy.deepcopy(store), pickle.loads(pickle.dumps(store))):
        assert other.on_disk == 3 and all(np.array_equal(a, b) for a, b in zip(other, frames))
    store.close()
    assert len(store) == 0
    store.append(frames[0][:2])  # an emptied store takes any shape again
    assert store[0].shape == (2, 8, 3)


def test_a_store_refuses_another_shape_or_dtype_and_a_negative_budget():
    store = FrameStore(_frames(1))
    with pytest.raises(ValueError, match=r"^a FrameStore holds arrays of one shape and dtype, \(6, 8, 3\) uint8; "
                                         r"got \(6, 7, 3\) uint8$"):
        store.append(np.zeros((6, 7, 3), np.uint8))
    with pytest.raises(ValueError, match=r"got \(6, 8, 3\) float32$"):
        store.append(np.zeros((6, 8, 3), np.float32))
    with pytest.raises(ValueError, match="ram_bytes must be 0 or more, got -1"):
        FrameStore(ram_bytes=-1)


def test_a_full_temporary_folder_is_a_clear_error(monkeypatch):
    def full(**_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    store = FrameStore(_frames(1), ram_bytes=_frames(1)[0].nbytes)
    with pytest.raises(FrameStoreError, match=r"could not store frame 1 in a temporary file in .*No space left on "
                                              r"device.*set TMPDIR to a folder with room"):
        store.append(_frames(1)[0])
    assert len(store) == 1


def test_a_write_that_fails_half_way_leaves_the_frames_after_it_in_place(monkeypatch):
    frames = _frames(3)
    store = FrameStore(frames[:1], ram_bytes=0)
    real = store._file.write

    def part_then_full(data: bytes) -> int:
        real(data[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store._file, "write", part_then_full)
    with pytest.raises(FrameStoreError):
        store.append(frames[1])
    monkeypatch.setattr(store._file, "write", real)  # room again
    store.append(frames[2])
    assert len(store) == 2 and np.array_equal(store[1], frames[2]) and np.array_equal(store[0], frames[0])


def test_all_stores_share_one_budget_and_give_their_share_back_when_closed_or_dropped(monkeypatch):
    frames = _frames(4)
    nb = frames[0].nbytes
    monkeypatch.setattr(framestore, "RAM_BYTES", framestore.ram_in_use() + 3 * nb)  # other tests' stores may be alive
    a, b = FrameStore(frames[:2]), FrameStore(frames)
    assert (a.on_disk, b.on_disk) == (0, 3)
    del a  # garbage-collected at once: its two arrays' share is free again
    c = FrameStore(frames)
    assert c.on_disk == 2
    c.close()
    assert FrameStore(frames).on_disk == 2  # b still holds one; c's two came back at close
    monkeypatch.setattr(framestore, "RAM_BYTES", 0)
    assert FrameStore(frames).on_disk == 4  # the budget is read at each append
