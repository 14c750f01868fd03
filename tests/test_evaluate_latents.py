"""Tests of vae_course.evaluate's measures of how a VAE uses its latents and how tight its bounds
are: the KL of each latent dimension, active units, rate and distortion, importance-weighted bounds
for several k on the same samples, bits per dimension; on a tiny data set of 4x4 binary images."""
from __future__ import annotations

import math

import pytest
import torch

from vae_course import evaluate, models
from helpers import quick_fit, raises_naming as _raises, tiny_dataset, tiny_vae


def _half_dead_vae():
    """A VAE whose latent dimension 1 ignores x: q(z_1|x) = N(0, 1) for every x."""
    model = tiny_vae()
    with torch.no_grad():
        for head in (model.mu_head, model.logvar_head):
            head.weight[1] = 0.0
            head.bias[1] = 0.0
    return model


def test_kl_per_dimension_sums_to_the_mean_kl_and_is_zero_for_a_dead_dimension():
    x, _ = tiny_dataset()
    model = _half_dead_vae()
    per_dim = evaluate.kl_per_dimension(model, x)
    assert per_dim.shape == (3,) and per_dim[1] == 0 and torch.all(per_dim[[0, 2]] > 0)
    assert math.isclose(float(per_dim.sum()), evaluate.negative_elbo(model, x).kl, rel_tol=1e-5)


def test_active_units_counts_dimensions_whose_mean_varies():
    x, _ = tiny_dataset()
    model = _half_dead_vae()
    units = evaluate.active_units(model, x)
    with torch.no_grad():
        mu, _ = model.encode(x)
    torch.testing.assert_close(units.variance, mu.var(0, unbiased=False))
    assert units.variance[1] == 0 and units.count == int((mu.var(0, unbiased=False) > 0.01).sum())
    assert evaluate.active_units(model, x, threshold=1e9).count == 0
    _raises(ValueError, "threshold", evaluate.active_units, model, x, threshold=-1.0)
    _raises(TypeError, "model", evaluate.active_units, tiny_vae(models.Autoencoder), x)


def test_rate_plus_distortion_is_the_negative_elbo():
    x, _ = tiny_dataset()
    model = tiny_vae()
    rd = evaluate.rate_distortion(model, x)
    nelbo = evaluate.negative_elbo(model, x)
    assert rd.rate == pytest.approx(nelbo.kl) and rd.distortion == pytest.approx(nelbo.reconstruction)


def test_importance_weighted_bounds_are_ordered_on_the_same_samples():
    x, _ = tiny_dataset()
    model = tiny_vae()
    quick_fit(model, x, steps=8)
    bounds = evaluate.importance_weighted_nlls(model, x, ks=(1, 5, 50))
    assert list(bounds) == [1, 5, 50]
    assert bounds[1].mean >= bounds[5].mean >= bounds[50].mean, bounds
    assert bounds[1].mean > bounds[50].mean  # a real gap on a trained model
    elbo = evaluate.negative_elbo(model, x)
    assert abs(bounds[1].mean - elbo.total) < 4 * bounds[1].stderr + 0.05, (bounds[1], elbo)
    # one k alone is importance_weighted_nll (same seed, same samples)
    assert evaluate.importance_weighted_nlls(model, x, ks=(7,))[7] == evaluate.importance_weighted_nll(model, x, k=7)


def test_importance_weighted_nlls_per_example_are_ordered_per_image_and_average_to_the_summary():
    x, _ = tiny_dataset()
    model = tiny_vae()
    quick_fit(model, x, steps=8)
    per = evaluate.importance_weighted_nlls_per_example(model, x, ks=(1, 5, 50), batch_size=7)
    assert list(per) == [1, 5, 50] and all(v.shape == (len(x),) and v.dtype == torch.float64 for v in per.values())
    assert (per[1] >= per[5] - 1e-9).all() and (per[5] >= per[50] - 1e-9).all()  # Jensen, image by image
    summary = evaluate.importance_weighted_nlls(model, x, ks=(1, 5, 50), batch_size=7)
    for k, v in per.items():
        assert float(v.mean()) == pytest.approx(summary[k].mean, rel=1e-12)
        assert float(v.std() / math.sqrt(len(v))) == pytest.approx(summary[k].stderr, rel=1e-12)
    # the gap measured on the same samples is far more precise than either bound's own stderr
    gap = evaluate.paired_difference(per[1], per[50])
    assert gap.mean > 0 and gap.stderr < summary[50].stderr
    for bad in ((), (5, 1), (2, 5)):
        _raises(ValueError, "ks", evaluate.importance_weighted_nlls_per_example, model, x, ks=bad)


def test_importance_weighted_bounds_reject_bad_ks():
    x, _ = tiny_dataset(8)
    model = tiny_vae()
    for bad in ((), (5, 1), (2, 5), (0, 5), (1.0, 5), 5, (1, 1)):
        _raises(ValueError, "ks", evaluate.importance_weighted_nlls, model, x, ks=bad)


def test_bits_per_dim():
    assert evaluate.bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    est = evaluate.bits_per_dim(evaluate.Estimate(2 * 784 * math.log(2), 784 * math.log(2)), 784)
    assert est.mean == pytest.approx(2.0) and est.stderr == pytest.approx(1.0)
    _raises(ValueError, "dims", evaluate.bits_per_dim, 1.0, 0)


def test_importance_weights_use_the_learned_variance():
    x, _ = tiny_dataset(32)
    model = tiny_vae(likelihood="gaussian", decoder_variance="learned")
    with torch.no_grad():
        model.decoder_logvar_param.fill_(-3.0 / models.DECODER_LOGVAR_SPEED)
    assert float(model.decoder_logvar.detach()) == pytest.approx(-3.0)
    fixed = tiny_vae(likelihood="gaussian")
    fixed.load_state_dict({k: v for k, v in model.state_dict().items() if k != "decoder_logvar_param"})
    iw_learned = evaluate.importance_weighted_nll(model, x, k=5)
    iw_fixed = evaluate.importance_weighted_nll(fixed, x, k=5)
    assert iw_learned.mean != pytest.approx(iw_fixed.mean)
