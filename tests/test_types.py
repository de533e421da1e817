"""The package type-checks under mypy with pyproject.toml's [tool.mypy] settings, so CI catches a type error."""
from __future__ import annotations

import os
from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_finds_no_errors(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)  # mypy reads pyproject.toml and resolves its `files` from the working directory
    stdout, stderr, status = api.run(["--config-file", str(ROOT / "pyproject.toml"),
                                      "--cache-dir", os.devnull])  # no .mypy_cache left in the checkout
    assert status == 0, f"mypy reports:\n{stdout}{stderr}"
