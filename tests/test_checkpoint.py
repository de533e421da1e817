"""Checkpoints: safe loading of the authors' pickles, our atomic format, and every kind of bad file."""

from __future__ import annotations

import gzip
import io
import json
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
    with pytest.raises(ck.CheckpointError, match="convert it once with `python -m mnadlib convert --original-model"):
        ck.load_checkpoint(parity / "pred" / "model.pth.gz")
    with pytest.raises(ck.CheckpointError, match="model.pth belongs to --original-model"):  # the files given swapped
        ck.load_original(parity / "pred" / "model.pth.gz", parity / "pred" / "model.pth.gz")


def test_convert_cli_gives_identical_model(parity, tmp_path):
    out = tmp_path / "pred.pt"
    subprocess.run([sys.executable, "-m", "mnadlib", "convert", "--original-model", str(parity / "pred" / "model.pth.gz"),
                    "--original-keys", str(parity / "pred" / "keys.pt.gz"), "--out", str(out)], check=True, capture_output=True)
    a, ia = ck.load_original(parity / "pred" / "model.pth.gz", parity / "pred" / "keys.pt.gz")
    b, ib = ck.load_checkpoint(out, method="pred")
    assert torch.equal(ia, ib)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
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


def _glob(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _text(s):
    return b"X" + len(s.encode()).to_bytes(4, "little") + s.encode()


def _unpickle(data):
    return ck._AllowListUnpickler(io.BytesIO(data)).load()


def test_a_pickle_cannot_alter_torchs_own_functions_or_call_real_layers():
    """pickle's BUILD sets attributes on any object it holds: on torch's shared _rebuild_tensor_v2 that would
    change every later tensor load in the process. REDUCE calls classes: a real Conv2d(4096, 4096, 3) allocates."""
    real = torch._utils._rebuild_tensor_v2
    defaults = real.__defaults__
    # _rebuild_tensor_v2.__defaults__ = ({"neg": True},) via BUILD's (None, slotstate) form, then the int 7
    poison = (b"\x80\x02" + _glob("torch._utils", "_rebuild_tensor_v2") + b"(N}" + _text("__defaults__")
              + b"(}" + _text("neg") + b"\x88ststb0J\x07\x00\x00\x00.")
    assert _unpickle(poison) == 7
    assert torch._utils._rebuild_tensor_v2 is real and real.__defaults__ == defaults
    conv = _unpickle(b"\x80\x02" + _glob("torch.nn.modules.conv", "Conv2d") + b".")
    assert conv is not torch.nn.Conv2d and issubclass(conv, torch.nn.Module)
    with pytest.raises(TypeError):
        _unpickle(b"\x80\x02" + _glob("torch.nn.modules.conv", "Conv2d") + b"(J\x00\x10\x00\x00J\x00\x10\x00\x00K\x03tR.")
    for module, name in [("torch", "FloatStorage"), ("torch.serialization", "load"), ("builtins", "getattr")]:
        with pytest.raises(ck.UnsafeCheckpointError, match=f"{module}.{name}"):
            _unpickle(b"\x80\x02" + _glob(module, name) + b".")


def test_module_trees_are_read_from_their_tables_not_their_methods():
    root = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    assert ck._module_state(root, "m").keys() == root.state_dict().keys()
    vars(root)["_modules"]["x"] = 5
    with pytest.raises(ck.CheckpointError, match="'x' in _modules is a int"):
        ck._module_state(root, "m")
    deep = torch.nn.Sequential()
    for _ in range(40):
        deep = torch.nn.Sequential(deep)
    with pytest.raises(ck.CheckpointError, match="nest more than"):
        ck._module_state(deep, "m")


def test_keys_that_claim_more_than_they_store_or_are_not_finite(tmp_path):
    cfg = ModelConfig(width=0.125)
    huge = torch.zeros(1, 1).expand(10**6, cfg.fdim)  # stride 0: 4 bytes in the file, 2 GB once used
    nan = init_items(cfg.msize, cfg.fdim)
    nan[0, 0] = float("nan")
    for name, items in [("huge", huge), ("nan", nan)]:
        torch.save(items, tmp_path / f"{name}.pt")
        with pytest.raises(ck.CheckpointError, match="not stored whole" if name == "huge" else "NaN or infinite"):
            ck.check_items(torch.load(tmp_path / f"{name}.pt", weights_only=True), cfg, name)
    doubles = init_items(cfg.msize, cfg.fdim).double()
    assert ck.check_items(doubles, cfg, "d").dtype == torch.float32
    with pytest.raises(ck.CheckpointError, match="torch.int64 tensor of shape"):
        ck.check_items(torch.zeros(10, cfg.fdim, dtype=torch.long), cfg, "ints")


def _payload(tmp_path):
    cfg = ModelConfig(width=0.125)
    path = ck.save_checkpoint(tmp_path / "m.pt", MNAD(cfg).eval(), init_items(cfg.msize, cfg.fdim),
                              train_config={"size": [32, 32]})
    return path, torch.load(path, weights_only=True)


@pytest.mark.parametrize("change,message", [
    (lambda p: p.update(version="2"), "format version '2' is no number"),
    (lambda p: p.update(train_config=[1]), r"train_config.size is \[1\]"),
    (lambda p: p["train_config"].update(size=["a", "b"]), "train_config.size"),
    (lambda p: p.update(history=5), "history is no list"),
    (lambda p: p.update(state_dict=[1, 2]), "state_dict is not a mapping"),
    (lambda p: p["model_config"].update(width=100.0), "does not fit an MNAD pred model"),
    (lambda p: p["model_config"].update(t_length=2.5), "describes no MNAD model"),
    (lambda p: p["model_config"].update(msize=7), "holds 10 memory items but its config says 7"),
    (lambda p: p["state_dict"]["encoder.moduleConv1.0.weight"].fill_(float("inf")), "NaN or infinite"),
    (lambda p: p["state_dict"].update({"encoder.moduleConv1.0.weight": p["state_dict"]["encoder.moduleConv1.0.weight"].long()}),
     r"encoder.moduleConv1.0.weight \(torch.int64, needs floating point\)"),
])
def test_damaged_metadata_and_weights_of_our_checkpoints(tmp_path, change, message):
    path, payload = _payload(tmp_path)
    change(payload)
    torch.save(payload, path)
    with pytest.raises(ck.CheckpointError, match=message):
        ck.open_checkpoint(path)


def test_float64_memory_loads_as_float32(tmp_path):
    path, payload = _payload(tmp_path)
    payload["memory"] = payload["memory"].double()
    torch.save(payload, path)
    assert ck.open_checkpoint(path).items.dtype == torch.float32


def test_a_zip_checkpoint_damaged_inside_and_a_gzip_bomb_are_refused(tmp_path, monkeypatch):
    path, _ = _payload(tmp_path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)  # inside a weight: torch itself would load it, wrong
    path.write_bytes(bytes(data))
    with pytest.raises(ck.CheckpointError, match="fails its checksum"):
        ck.open_checkpoint(path)
    monkeypatch.setattr(ck, "MAX_UNPACKED_BYTES", 1000)
    (tmp_path / "bomb.pt.gz").write_bytes(gzip.compress(bytes(5000)))
    with pytest.raises(ck.CheckpointError, match="unpacks to more than"):
        ck.load_checkpoint(tmp_path / "bomb.pt.gz")
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(ck.CheckpointError, match="is a folder"):
        ck.load_checkpoint(tmp_path / "folder.pt")


def test_atomic_write_refuses_what_is_no_file_writes_through_links_and_keeps_modes(tmp_path):
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_text("x")
    for bad in ("dir", "fifo", "file/sub.json"):
        with pytest.raises(FileExistsError):
            ck.atomic_write_json({}, tmp_path / bad)
    target = tmp_path / "target.json"
    target.write_text("old")
    target.chmod(0o600)
    (tmp_path / "link.json").symlink_to(target)
    ck.atomic_write_json({"a": 1}, tmp_path / "link.json")
    assert (tmp_path / "link.json").is_symlink() and json.loads(target.read_text()) == {"a": 1}
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "fifo", "file", "link.json", "target.json"]


def test_convert_never_replaces_its_input_and_asks_before_replacing_a_file(parity, tmp_path):
    model = tmp_path / "model.pth.gz"
    model.write_bytes((parity / "pred" / "model.pth.gz").read_bytes())
    keys = parity / "pred" / "keys.pt.gz"
    before = model.read_bytes()
    with pytest.raises(FileExistsError, match="is the input"):
        ck.convert(model, keys, model, overwrite=True)
    assert model.read_bytes() == before
    (tmp_path / "out.pt").write_text("mine")
    r = subprocess.run([sys.executable, "-m", "mnadlib", "convert", "--original-model", str(model),
                        "--original-keys", str(keys), "--out", str(tmp_path / "out.pt")], capture_output=True, text=True)
    assert r.returncode == 2 and "--overwrite" in r.stderr and (tmp_path / "out.pt").read_text() == "mine"
    with pytest.raises(ck.CheckpointError, match="Unsupported global: GLOBAL model\\."):
        ck.load_original(model, model)
