"""Shared fixtures: the parity pack of the authors' reference outputs, small models, a tiny normal scene."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
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
    """Path of ../shared/parity; tests that need it skip, saying why, only when it is absent.

    With ``MNADLIB_REQUIRE_PARITY`` set (``.ci/run`` sets it) they fail instead: CI has the pack.
    """
    if not (PARITY / "README.md").is_file():
        if os.environ.get("MNADLIB_REQUIRE_PARITY"):
            pytest.fail(f"MNADLIB_REQUIRE_PARITY is set but the parity pack is not at {PARITY}: "
                        "check out ../shared beside this repository or set MNADLIB_PARITY")
        pytest.skip(f"parity pack not found at {PARITY} (set MNADLIB_PARITY); CI has it beside the checkout")
    return PARITY


def _threads_for(module: object) -> int:
    """Torch threads for a test module: 2 (the parity pack's) unless it sets ``TORCH_THREADS``.

    Tiny models run fastest, and steadiest on a shared machine, on one thread.
    """
    return int(getattr(module, "TORCH_THREADS", 2))


@pytest.fixture(autouse=True, scope="module")
def _module_threads(request: pytest.FixtureRequest):
    """Thread count for the module's own fixtures."""
    torch.set_num_threads(_threads_for(request.module))
    yield


@pytest.fixture(autouse=True)
def _threads(request: pytest.FixtureRequest, _module_threads):
    """Thread count for each test (the parity pack was recorded with 2 intra-op threads)."""
    torch.set_num_threads(_threads_for(request.module))
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


WALK_HW = (96, 128)


def write_walking_footage(folder: Path, n: int = 120, seed: int = 0) -> Path:
    """A normal scene: textured figures walking left and right at 1-2 px/frame over a textured ground."""
    rng = np.random.default_rng(seed)
    ground = cv2.GaussianBlur(rng.integers(90, 170, (*WALK_HW, 3)).astype(np.uint8), (5, 5), 1.5)
    people = [(rng.uniform(8, WALK_HW[1] - 16), rng.uniform(40, 80), rng.choice((-1, 1)) * rng.uniform(1, 2),
               rng.integers(0, 80, (14, 8, 3)).astype(np.uint8)) for _ in range(4)]
    folder.mkdir(parents=True)
    for t in range(n):
        img = ground.copy()
        for x, y, v, look in people:
            cx = int(round(x + v * t)) % (WALK_HW[1] - 8)
            img[int(y) - 14:int(y), cx:cx + 8] = look
        cv2.imwrite(str(folder / f"{t:04d}.png"), img)
    return folder


@pytest.fixture(scope="session")
def walking_footage():
    """Factory of tiny normal scenes as frame folders: ``walking_footage(folder, n=120, seed=0)``."""
    return write_walking_footage
