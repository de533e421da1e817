"""Checkpoints: safe loading of the authors' pickles, our atomic format, and every kind of bad file."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mnadlib import checkpoint as ck
from mnadlib.config import ModelConfig
from mnadlib.memory import init_items
from mnadlib.model import MNAD


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_forbidden_global_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "model.pth"
    torch.save({"model": _Evil(marker)}, bad)
    keys = tmp_path / "keys.pt"
    torch.save(torch.zeros(10, 512), keys)
    with pytest.raises(ck.UnsafeCheckpointError, match=r"(posix|os|nt)\.system"):
        ck.load_original(bad, keys)
    assert not marker.exists()


def test_our_loader_rejects_pickled_code(tmp_path):
    bad = tmp_path / "model.pt"
    torch.save({"format": "mnadlib", "x": _Evil(tmp_path / "pwned")}, bad)
    with pytest.raises(ck.CheckpointError, match="GLOBAL (posix|os|nt).system") as err:
        ck.load_checkpoint(bad)
    assert not (tmp_path / "pwned").exists()
    assert "weights_only" not in str(err.value)  # torch's advice to switch the safe loading off is not passed on


def test_checkpoints_without_a_usable_config_and_ours_given_to_convert(tmp_path):
    for i, payload in enumerate([{"format": "mnadlib", "version": 1},
                                 {"format": "mnadlib", "version": 1, "model_config": {"bogus": 1}, "state_dict": {}}]):
        torch.save(payload, tmp_path / f"{i}.pt")
        with pytest.raises(ck.CheckpointError, match="no usable model_config and state_dict"):
            ck.open_checkpoint(tmp_path / f"{i}.pt")
    cfg = ModelConfig(width=0.125)
    ours = ck.save_checkpoint(tmp_path / "m.pt", MNAD(cfg).eval(), init_items(cfg.msize, cfg.fdim))
    with pytest.raises(ck.CheckpointError, match="already an mnadlib checkpoint"):
        ck.load_original(ours, ours)


def test_roundtrip_and_atomic_write(tmp_path, monkeypatch):
    cfg = ModelConfig(width=0.125)
    model = MNAD(cfg).eval()
    items = init_items(cfg.msize, cfg.fdim, torch.Generator().manual_seed(0))
    path = ck.save_checkpoint(tmp_path / "m.pt", model, items)
    loaded, loaded_items = ck.load_checkpoint(path)
    x = torch.rand(1, 12, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, loaded_items).output, model(x, items).output, atol=0, rtol=0)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(path, model, items)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_open_checkpoint_reads_the_file_once(tmp_path, monkeypatch):
    cfg = ModelConfig(width=0.125)
    items = init_items(cfg.msize, cfg.fdim, torch.Generator().manual_seed(0))
    history = [{"epoch": 1, "loss": 0.5}]
    path = ck.save_checkpoint(tmp_path / "m.pt", MNAD(cfg).eval(), items, train_config={"size": [48, 64]},
                              history=history)
    reads = []
    real = ck._torch_load
    monkeypatch.setattr(ck, "_torch_load", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    got = ck.open_checkpoint(path, "pred")
    assert reads == [path]
    assert got.train_size == (48, 64) and got.history == history
    torch.testing.assert_close(got.items, items, atol=0, rtol=0)
    with pytest.raises(ck.CheckpointError, match="pass --method pred"):
        ck.open_checkpoint(path, "recon")
    bare = ck.save_checkpoint(tmp_path / "bare.pt", MNAD(cfg).eval(), items)
    assert ck.open_checkpoint(bare).train_size is None and ck.open_checkpoint(bare).history == []


def test_atomic_writes_get_an_ordinary_files_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        (tmp_path / "plain.json").write_text("{}")
        written = ck.atomic_write_json({}, tmp_path / "atomic.json")
    finally:
        os.umask(old)
    assert (written.stat().st_mode & 0o777) == ((tmp_path / "plain.json").stat().st_mode & 0o777) == 0o644


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "truncated_gzip"])
def test_damaged_files_give_clear_errors(tmp_path, damage):
    cfg = ModelConfig(width=0.125)
    good = ck.save_checkpoint(tmp_path / "good.pt", MNAD(cfg), init_items(cfg.msize, cfg.fdim))
    data = good.read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": np.random.default_rng(0).bytes(4096),
                     "truncated_gzip": gzip.compress(data)[:500]}[damage])
    with pytest.raises(ck.CheckpointError, match="bad.pt"):
        ck.load_checkpoint(bad)
    with pytest.raises(ck.CheckpointError, match="not found"):
        ck.load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch notes the garbage protocol byte first
def test_random_bytes_always_give_checkpoint_error(tmp_path):
    """Corrupt bytes fail in many places of the unpicklers (IndexError, OverflowError, MemoryError, ...):
    every one of them must surface as CheckpointError, on our loader and on the authors' model.pth loader.
    Seeds 0-199 include blobs that raised each of those before they were caught."""
    bad = tmp_path / "bad.pt"
    for seed in range(200):
        rng = np.random.default_rng(seed)
        for prefix in (b"", b"\x80\x02"):  # plain garbage, and garbage behind a pickle protocol-2 header
            bad.write_bytes(prefix + rng.bytes(4096))
            with pytest.raises(ck.CheckpointError, match="bad.pt"):
                ck.load_checkpoint(bad)
            with pytest.raises(ck.CheckpointError, match="bad.pt"):
                ck.load_original(bad, tmp_path / "keys.pt")


def test_authors_files_wrong_kind_and_keys(parity, tmp_path):
    with pytest.raises(ck.CheckpointError, match="'recon' model.*--method recon"):
        ck.load_original(parity / "recon" / "model.pth.gz", parity / "recon" / "keys.pt.gz", method="pred")
    wrong = tmp_path / "keys.pt"
    torch.save(torch.zeros(10, 256), wrong)
    with pytest.raises(ck.CheckpointError, match=r"\(10, 256\).*512"):
        ck.load_original(parity / "pred" / "model.pth.gz", wrong)
    with pytest.raises(ck.CheckpointError, match="load_original|convert"):
        ck.load_checkpoint(parity / "pred" / "model.pth.gz")


def test_convert_cli_gives_identical_model(parity, tmp_path):
    out = tmp_path / "pred.pt"
    subprocess.run([sys.executable, "-m", "mnadlib", "convert", "--original-model", str(parity / "pred" / "model.pth.gz"),
                    "--original-keys", str(parity / "pred" / "keys.pt.gz"), "--out", str(out)], check=True, capture_output=True)
    a, ia = ck.load_original(parity / "pred" / "model.pth.gz", parity / "pred" / "keys.pt.gz")
    b, ib = ck.load_checkpoint(out, method="pred")
    assert torch.equal(ia, ib)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    r = subprocess.run([sys.executable, "-m", "mnadlib", "convert", "--original-model", str(parity / "pred" / "model.pth.gz"),
                        "--original-keys", str(parity / "pred" / "keys.pt.gz"), "--method", "recon", "--out", str(tmp_path / "x.pt")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--method pred" in r.stderr and not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("method,use_memory,use_skips", [("pred", True, True), ("pred", False, True), ("pred", True, False),
                                                         ("recon", True, False), ("recon", False, False)])
def test_infer_config_roundtrip(method, use_memory, use_skips):
    cfg = ModelConfig(method=method, width=0.125, use_memory=use_memory, use_skips=use_skips)
    got = ck.infer_config(MNAD(cfg).state_dict())
    assert (got.method, got.use_memory, got.use_skips, got.width, got.t_length) == (method, use_memory, use_skips, 0.125, cfg.t_length)
