"""Scores equal the authors' utils.py formulas; the O(n) normalisation equals their O(n^2) loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mnadlib import scoring
from mnadlib.config import ConfigError, EvalConfig, ModelConfig, validate_size


def test_minmax_equals_authors_loop():
    x = np.random.default_rng(0).normal(30, 3, 50)
    ref = [(v - np.min(x)) / (np.max(x) - np.min(x)) for v in x]
    np.testing.assert_array_equal(scoring.minmax(x), ref)
    assert (scoring.minmax([2.0, 2.0]) == 0).all()


def test_regularity_and_auc():
    psnr = [30, 31, 20, 32]
    dist = [0.1, 0.1, 0.5, 0.1]
    s = scoring.regularity(psnr, dist, 0.6)
    assert s.argmin() == 2 and s.max() <= 1 and s.min() >= 0
    assert scoring.frame_auc(s, np.array([0, 0, 1, 0])) == 1.0
    with pytest.raises(ValueError, match="both normal and anomalous"):
        scoring.frame_auc(s, np.zeros(4))


def test_psnr_and_point_score():
    a = torch.zeros(1, 3, 4, 4)
    b = torch.full((1, 3, 4, 4), 0.2)  # 0.1 apart on the [0, 1] scale
    mse = scoring.mse_per_frame(a, b)[0].item()
    assert math.isclose(mse, 0.01, rel_tol=1e-6)
    assert math.isclose(scoring.psnr(mse), 20.0, rel_tol=1e-6)
    assert math.isclose(scoring.point_score(a, b), 0.01, rel_tol=1e-5)  # uniform error: weights cancel


def test_macro_auc_skips_single_class_videos():
    scores = {"a": np.array([1.0, 0.0]), "b": np.array([0.5, 0.4])}
    labels = {"a": np.array([0, 1]), "b": np.array([0, 0])}
    assert scoring.macro_auc(scores, labels) == 1.0


@pytest.mark.parametrize("size", [(250, 256), (0, 8), ("a", 8), (8,)])
def test_size_must_be_multiple_of_8(size):
    with pytest.raises(ConfigError):
        validate_size(size)


def test_config_errors():
    with pytest.raises(ConfigError, match="test_time_update"):
        EvalConfig(batch_size=4)
    with pytest.raises(ConfigError, match="method"):
        ModelConfig(method="flow")  # type: ignore[arg-type]
    assert ModelConfig(method="recon").t_length == 1
    assert ModelConfig(width=0.25).channels == (16, 32, 64, 128)
