"""Tests of vae_course.gradient_estimators: the reparameterization and score-function estimators of
the gradient of E_q[f(z)] are unbiased (their means agree with the closed-form gradient within
standard errors), give one estimate per sample, and differ in variance as the theory says; bad
inputs name the argument."""
from __future__ import annotations

import math

import pytest
import torch

from vae_course import gradient_estimators as ge
from helpers import gen

ESTIMATORS = [ge.reparameterization_gradients, ge.score_function_gradients]


def _square(z):
    return z.pow(2).sum(1)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_estimates_are_unbiased_for_the_second_moment(estimator):
    # E[sum_j z_j^2] = sum_j (mu_j^2 + sigma_j^2): d/dmu = 2 mu, d/dlogvar = sigma^2
    mu, logvar = torch.tensor([0.5, -1.0], dtype=torch.float64), torch.tensor([0.0, math.log(0.25)], dtype=torch.float64)
    grad_mu, grad_logvar = estimator(_square, mu, logvar, 200_000, generator=gen(0))
    assert grad_mu.shape == grad_logvar.shape == (200_000, 2)
    for rows, exact in ((grad_mu, 2 * mu), (grad_logvar, logvar.exp())):
        stderr = rows.std(0) / math.sqrt(len(rows))
        assert float(((rows.mean(0) - exact) / stderr).abs().max()) < 5, (rows.mean(0), exact)


def test_reparameterization_has_the_known_variance_and_the_score_function_more():
    # one sample of d/dmu E[z^2], q = N(mu, 1) with mu = 0.5: the pathwise estimate 2 z has variance 4;
    # the score estimate z^2 (z - mu) has E[(mu + e)^4 e^2] - (2 mu)^2 = mu^4 + 18 mu^2 + 15 - 4 mu^2 = 18.5625
    mu, logvar = torch.tensor([0.5], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    rep, _ = ge.reparameterization_gradients(_square, mu, logvar, 100_000, generator=gen(1))
    score, _ = ge.score_function_gradients(_square, mu, logvar, 100_000, generator=gen(1))
    assert float(rep.var()) == pytest.approx(4.0, rel=0.03)
    assert float(score.var()) == pytest.approx(18.5625, rel=0.1)


def test_the_same_generator_gives_the_same_estimates_and_the_inputs_stay_untouched():
    mu, logvar = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    for estimator in ESTIMATORS:
        a = estimator(_square, mu, logvar, 5, generator=gen(2))
        b = estimator(_square, mu, logvar, 5, generator=gen(2))
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert mu.grad is None and logvar.grad is None


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_bad_inputs_name_the_argument(estimator):
    for args, name, error in (((torch.zeros(2, 3), torch.zeros(2, 3), 4), "mu", ValueError),
                              ((torch.zeros(3), torch.zeros(4), 4), "logvar", ValueError),
                              ((torch.zeros(3, dtype=torch.int64), torch.zeros(3), 4), "mu", TypeError),
                              ((torch.zeros(3), torch.zeros(3), 0), "n", ValueError)):
        with pytest.raises(error, match=name):
            estimator(_square, *args)
