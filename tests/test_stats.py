"""Tests of vae_course.stats: the mean and its standard error."""
from __future__ import annotations

import math

import torch

from vae_course import stats
from helpers import gen


def test_mean_and_stderr_along_a_dimension():
    values = torch.randn(50, 3, generator=gen(0), dtype=torch.float64)
    mean, stderr = stats.mean_and_stderr(values, dim=0)
    torch.testing.assert_close(mean, values.sum(0) / 50)
    torch.testing.assert_close(stderr, ((values - mean).pow(2).sum(0) / 49).sqrt() / math.sqrt(50))
    mean_rows, stderr_rows = stats.mean_and_stderr(values, dim=1)
    assert mean_rows.shape == stderr_rows.shape == (50,)


def test_stderr_is_nan_for_one_value_and_zero_for_equal_values():
    mean, stderr = stats.mean_and_stderr(torch.tensor([2.5]))
    assert float(mean) == 2.5 and math.isnan(float(stderr))
    assert float(stats.mean_and_stderr(torch.full((4,), 1.5))[1]) == 0.0


def test_stderr_covers_the_true_mean_about_two_thirds_of_the_time():
    values = torch.randn(2000, 400, generator=gen(1), dtype=torch.float64)  # 2000 experiments of 400 draws of N(0, 1)
    mean, stderr = stats.mean_and_stderr(values, dim=1)
    covered = float((mean.abs() < stderr).double().mean())
    assert abs(covered - 0.683) < 0.04, covered
