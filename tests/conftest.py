"""Shared fixtures: the parity pack of the authors' reference outputs, and small models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

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
