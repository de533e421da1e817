"""Shared fixtures: the parity pack of the authors' reference outputs, and small models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mnadlib.checkpoint import save_checkpoint
from mnadlib.config import ModelConfig
from mnadlib.memory import init_items
from mnadlib.model import MNAD

ROOT = Path(__file__).resolve().parents[1]
PARITY = Path(os.environ.get("MNADLIB_PARITY", ROOT.parent / "shared" / "parity"))


@pytest.fixture(scope="session")
def parity() -> Path:
    """Path of ../shared/parity; tests that need it skip, saying why, only when it is absent."""
    if not (PARITY / "README.md").is_file():
        pytest.skip(f"parity pack not found at {PARITY} (set MNADLIB_PARITY); CI has it beside the checkout")
    return PARITY


@pytest.fixture(autouse=True)
def _threads():
    """The pack was recorded with 2 intra-op threads."""
    torch.set_num_threads(2)
    yield


def save_tiny_checkpoint(path: Path, size: tuple[int, int] = (32, 32)) -> Path:
    """An untrained width-0.0625 prediction model saved as a checkpoint trained at ``size``."""
    torch.manual_seed(0)
    cfg = ModelConfig(width=0.0625)
    items = init_items(cfg.msize, cfg.fdim, torch.Generator().manual_seed(0))
    return save_checkpoint(path, MNAD(cfg).eval(), items, train_config={"size": list(size)})


@pytest.fixture(scope="session")
def tiny_checkpoint():
    """Factory of tiny untrained checkpoints: ``tiny_checkpoint(path, size)``."""
    return save_tiny_checkpoint
