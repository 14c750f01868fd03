"""Tests of what notebook 07 uses: the per-dimension KL, free bits, KL annealing (a beta schedule in
``fit``), active units, rate and distortion, importance-weighted bounds for several k on the same
samples, bits per dimension, and the decoder likelihoods (learned Gaussian variance, continuous
Bernoulli)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vae_course import evaluate, losses, models, train
from helpers import gen

SHAPE = (1, 4, 4)


def _dataset(n=64, seed=0):
    """Binary 4x4 images: noisy copies of two prototypes (learnable), labels = prototype."""
    g = gen(seed)
    protos = torch.tensor([[1.0] * 8 + [0.0] * 8, [0.0, 1.0] * 8]).view(2, *SHAPE)
    y = torch.randint(0, 2, (n,), generator=g)
    flip = torch.rand(n, *SHAPE, generator=g) < 0.05
    return torch.where(flip, 1 - protos[y], protos[y]), y


def _model(cls=models.VAE, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(**{"image_shape": SHAPE, "hidden_dims": (16,), "latent_dim": 3, **kw})


def _fit(model, x, y=None, **kw):
    kw = {"epochs": 3, "batch_size": 16, "lr": 1e-2, "device": "cpu", "progress": False, **kw}
    return train.fit(model, x, y, **kw)


def _raises(exc, name, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert name in str(info.value), str(info.value)


# ---------------------------------------------------------------- the per-dimension KL

def test_kl_per_dim_matches_torch_distributions_and_sums_to_gaussian_kl():
    g = gen(0)
    mu, logvar = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    mu_p, logvar_p = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    for prior, args in ((torch.distributions.Normal(0.0, 1.0), ()),
                        (torch.distributions.Normal(mu_p, (0.5 * logvar_p).exp()), (mu_p, logvar_p))):
        per_dim = losses.gaussian_kl_per_dim(mu, logvar, *args)
        assert per_dim.shape == (5, 4)
        torch.testing.assert_close(per_dim, torch.distributions.kl_divergence(q, prior))
        torch.testing.assert_close(losses.gaussian_kl(mu, logvar, *args), per_dim.sum(1))


# ---------------------------------------------------------------- free bits

def _kl_rows():
    """Per-dimension KLs with batch means 0.1, 0.5 and 2.0 nats (and per-example spread)."""
    mu = torch.tensor([[0.2, 0.9, 2.0], [0.6, 1.1, 2.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    mu = mu * torch.sqrt(torch.tensor([0.2, 1.0, 4.0], dtype=torch.float64) / mu.pow(2).mean(0))
    return mu.requires_grad_(True), torch.zeros_like(mu)


def test_free_bits_batch_mean_is_sum_of_max_lambda_and_mean_kl():
    mu, logvar = _kl_rows()
    per_dim = losses.gaussian_kl_per_dim(mu, logvar)
    torch.testing.assert_close(per_dim.mean(0), torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64))
    for lam in (0.0, 0.3, 1.0, 3.0):
        term = losses.free_bits_kl(per_dim, lam)
        assert term.shape == (3,)
        expected = torch.clamp(per_dim.mean(0), min=lam).sum()
        torch.testing.assert_close(term.mean(), expected)
    torch.testing.assert_close(losses.free_bits_kl(per_dim, 0.0), per_dim.sum(1))


def test_free_bits_removes_the_gradient_only_below_lambda():
    mu, logvar = _kl_rows()
    (plain,) = torch.autograd.grad(losses.gaussian_kl(mu, logvar).mean(), mu)
    (free,) = torch.autograd.grad(losses.free_bits_kl(losses.gaussian_kl_per_dim(mu, logvar), 1.0).mean(), mu)
    # dimensions 0 and 1 (mean KL 0.1 and 0.5 nats < 1) get no KL gradient; dimension 2 keeps it
    assert torch.all(free[:, :2] == 0) and torch.all(plain[:, :2].abs().sum(0) > 0)
    torch.testing.assert_close(free[:, 2], plain[:, 2])


def test_free_bits_in_the_model_loss_keeps_the_true_kl_part():
    x, _ = _dataset(16)
    model = _model()
    torch.manual_seed(1)
    plain = model.loss(x)
    torch.manual_seed(1)
    free = model.loss(x, free_bits=5.0)  # above every dimension's KL: the KL term is the constant 3 * 5
    torch.testing.assert_close(free.kl, plain.kl)
    torch.testing.assert_close(free.reconstruction, plain.reconstruction)
    torch.testing.assert_close(free.total, plain.reconstruction + 15.0)
    cvae = _model(models.CVAE, num_classes=2)
    y = torch.zeros(16, dtype=torch.int64)
    torch.manual_seed(2)
    parts = cvae.loss(x, y, beta=2.0, free_bits=5.0)
    assert torch.all(parts.kl < 5.0)
    torch.testing.assert_close(parts.total, parts.reconstruction + 2.0 * 15.0)


def test_free_bits_rejects_bad_values():
    per_dim = torch.rand(4, 3)
    for bad in (-0.1, float("nan"), float("inf"), "1"):
        _raises(ValueError, "free_bits", losses.free_bits_kl, per_dim, bad)
    _raises(ValueError, "kl_per_dim", losses.free_bits_kl, torch.rand(4), 1.0)
    x, _ = _dataset(8)
    for bad in (-1.0, float("nan"), float("inf")):
        _raises(ValueError, "free_bits", _fit, _model(), x, free_bits=bad)
    _raises(ValueError, "free_bits", _fit, _model(models.Autoencoder), x, free_bits=0.5)


def test_fit_with_free_bits_trains_differently_and_reports_the_true_kl():
    x, _ = _dataset()
    plain, free = _model(), _model()
    h_plain, h_free = _fit(plain, x, epochs=2), _fit(free, x, epochs=2, free_bits=2.0)
    assert h_free.train["kl"] != h_plain.train["kl"]
    parts = evaluate.loss_parts(free, x)
    assert parts.kl >= 0 and math.isclose(parts.total, parts.reconstruction + parts.kl, rel_tol=1e-6)


# ---------------------------------------------------------------- a beta schedule (KL annealing)

def test_callable_beta_is_called_with_each_global_step_and_used():
    x, _ = _dataset(64)  # 4 batches of 16 per epoch
    calls = []

    def schedule(step):
        calls.append(step)
        return 0.0

    with_schedule, constant = _model(), _model()
    _fit(with_schedule, x, epochs=3, beta=schedule)
    _fit(constant, x, epochs=3, beta=0.0)
    assert calls == [0] + list(range(12)), calls  # step 0 once more: checked before training
    for a, b in zip(with_schedule.state_dict().values(), constant.state_dict().values()):
        assert torch.equal(a, b), "a schedule returning 0 should train exactly like beta=0"
    different = _model()
    _fit(different, x, epochs=3, beta=lambda step: 10.0)
    assert not torch.equal(different.mu_head.weight, constant.mu_head.weight)


def test_linear_warmup_rises_linearly_then_stays():
    schedule = train.linear_warmup(10)
    assert [schedule(s) for s in (0, 5, 10, 50)] == [0.0, 0.5, 1.0, 1.0]
    assert train.linear_warmup(4, start=1.0, end=3.0)(2) == 2.0
    _raises(ValueError, "steps", train.linear_warmup, 0)
    _raises(ValueError, "end", train.linear_warmup, 5, end=float("nan"))


def test_bad_beta_is_rejected_naming_beta():
    x, _ = _dataset(8)
    for bad in (-1.0, float("nan"), "1.0", None, [1.0]):
        _raises(ValueError, "beta", _fit, _model(), x, beta=bad)
    _raises(ValueError, "beta", _fit, _model(), x, beta=lambda step: -1.0)
    _raises(ValueError, "beta", _fit, _model(), x, beta=lambda step: float("nan") if step == 2 else 1.0)


# ---------------------------------------------------------------- per-dimension KL, active units, rate-distortion

def _half_dead_vae():
    """A VAE whose latent dimension 1 ignores x: q(z_1|x) = N(0, 1) for every x."""
    model = _model()
    with torch.no_grad():
        for head in (model.mu_head, model.logvar_head):
            head.weight[1] = 0.0
            head.bias[1] = 0.0
    return model


def test_kl_per_dimension_sums_to_the_mean_kl_and_is_zero_for_a_dead_dimension():
    x, _ = _dataset()
    model = _half_dead_vae()
    per_dim = evaluate.kl_per_dimension(model, x)
    assert per_dim.shape == (3,) and per_dim[1] == 0 and torch.all(per_dim[[0, 2]] > 0)
    assert math.isclose(float(per_dim.sum()), evaluate.negative_elbo(model, x).kl, rel_tol=1e-5)


def test_active_units_counts_dimensions_whose_mean_varies():
    x, _ = _dataset()
    model = _half_dead_vae()
    units = evaluate.active_units(model, x)
    with torch.no_grad():
        mu, _ = model.encode(x)
    torch.testing.assert_close(units.variance, mu.var(0, unbiased=False))
    assert units.variance[1] == 0 and units.count == int((mu.var(0, unbiased=False) > 0.01).sum())
    assert evaluate.active_units(model, x, threshold=1e9).count == 0
    _raises(ValueError, "threshold", evaluate.active_units, model, x, threshold=-1.0)
    _raises(TypeError, "model", evaluate.active_units, _model(models.Autoencoder), x)


def test_rate_plus_distortion_is_the_negative_elbo():
    x, _ = _dataset()
    model = _model()
    rd = evaluate.rate_distortion(model, x)
    nelbo = evaluate.negative_elbo(model, x)
    assert rd.rate == pytest.approx(nelbo.kl) and rd.distortion == pytest.approx(nelbo.reconstruction)


# ---------------------------------------------------------------- importance weighting on shared samples

def test_importance_weighted_bounds_are_ordered_on_the_same_samples():
    x, _ = _dataset()
    model = _model()
    _fit(model, x, epochs=2)
    bounds = evaluate.importance_weighted_nlls(model, x, ks=(1, 5, 50))
    assert list(bounds) == [1, 5, 50]
    assert bounds[1].mean >= bounds[5].mean >= bounds[50].mean, bounds
    assert bounds[1].mean > bounds[50].mean  # a real gap on a trained model
    elbo = evaluate.negative_elbo(model, x)
    assert abs(bounds[1].mean - elbo.total) < 4 * bounds[1].stderr + 0.05, (bounds[1], elbo)
    # one k alone is importance_weighted_nll (same seed, same samples)
    assert evaluate.importance_weighted_nlls(model, x, ks=(7,))[7] == evaluate.importance_weighted_nll(model, x, k=7)


def test_importance_weighted_nlls_per_example_are_ordered_per_image_and_average_to_the_summary():
    x, _ = _dataset()
    model = _model()
    _fit(model, x, epochs=2)
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
    x, _ = _dataset(8)
    model = _model()
    for bad in ((), (5, 1), (2, 5), (0, 5), (1.0, 5), 5, (1, 1)):
        _raises(ValueError, "ks", evaluate.importance_weighted_nlls, model, x, ks=bad)


def test_bits_per_dim():
    assert evaluate.bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    est = evaluate.bits_per_dim(evaluate.Estimate(2 * 784 * math.log(2), 784 * math.log(2)), 784)
    assert est.mean == pytest.approx(2.0) and est.stderr == pytest.approx(1.0)
    _raises(ValueError, "dims", evaluate.bits_per_dim, 1.0, 0)


# ---------------------------------------------------------------- decoder likelihoods

def test_learned_decoder_variance_is_a_trained_parameter_of_the_right_shape(tmp_path):
    x, _ = _dataset()
    for variance, shape in (("learned", ()), ("learned_per_pixel", SHAPE)):
        model = _model(likelihood="gaussian", decoder_variance=variance)
        assert model.decoder_logvar.shape == shape and model.config["decoder_variance"] == variance
        before = model.decoder_logvar.detach().clone()
        _fit(model, x, epochs=3)
        assert not torch.equal(model.decoder_logvar.detach(), before), "the log-variance should be trained"
        # the loss uses it: at log-variance v the reconstruction is the Gaussian NLL with v
        torch.manual_seed(0)
        parts = model.loss(x)
        torch.manual_seed(0)
        mean, _, _ = model(x)
        torch.testing.assert_close(parts.reconstruction, losses.gaussian_nll(mean, x, model.decoder_logvar))
        loaded = train.load_checkpoint(train.save_checkpoint(model, tmp_path / f"{variance}.pt"))
        torch.testing.assert_close(loaded.decoder_logvar, model.decoder_logvar)
    assert "decoder_variance" not in _model().config  # old configs unchanged
    _raises(ValueError, "decoder_variance", _model, decoder_variance="learned")  # Bernoulli decoder
    _raises(ValueError, "decoder_variance", _model, likelihood="gaussian", decoder_variance="yes")


def test_importance_weights_use_the_learned_variance():
    x, _ = _dataset(32)
    model = _model(likelihood="gaussian", decoder_variance="learned")
    with torch.no_grad():
        model.decoder_logvar_param.fill_(-3.0 / models.DECODER_LOGVAR_SPEED)
    assert float(model.decoder_logvar.detach()) == pytest.approx(-3.0)
    fixed = _model(likelihood="gaussian")
    fixed.load_state_dict({k: v for k, v in model.state_dict().items() if k != "decoder_logvar_param"})
    iw_learned = evaluate.importance_weighted_nll(model, x, k=5)
    iw_fixed = evaluate.importance_weighted_nll(fixed, x, k=5)
    assert iw_learned.mean != pytest.approx(iw_fixed.mean)


LOGITS = torch.tensor([-30.0, -8.0, -2.0, -0.7, -0.5, -0.49, -0.1, -1e-6, 0.0, 1e-4, 0.3, 0.5, 0.51, 1.5, 6.0, 15.0],
                      dtype=torch.float64)


def test_continuous_bernoulli_log_norm_matches_numerical_integration():
    # C(lambda) normalizes lambda^x (1 - lambda)^(1 - x) on [0, 1]: log C = -log of its integral
    x = torch.linspace(0.0, 1.0, 400_001, dtype=torch.float64)
    lam = torch.sigmoid(LOGITS)[:, None]
    integral = torch.trapezoid(lam.pow(x) * (1 - lam).pow(1 - x), x, dim=1)
    torch.testing.assert_close(losses.continuous_bernoulli_log_norm(LOGITS), -integral.log(), rtol=0, atol=1e-8)
    torch.testing.assert_close(losses.continuous_bernoulli_log_norm(torch.zeros(1)), torch.tensor([math.log(2)]))


def test_continuous_bernoulli_matches_torch_distributions():
    inner = LOGITS[LOGITS.abs() < 6]  # torch clamps probabilities near 0 and 1; compare where it does not
    lib = torch.distributions.ContinuousBernoulli(logits=inner)
    torch.testing.assert_close(losses.continuous_bernoulli_log_norm(inner), lib._cont_bern_log_norm(), rtol=0, atol=1e-7)
    xs = torch.rand(len(inner), generator=gen(0), dtype=torch.float64)
    ours = -losses.continuous_bernoulli_nll(inner[:, None], xs[:, None])
    torch.testing.assert_close(ours, lib.log_prob(xs), rtol=0, atol=1e-7)


def test_continuous_bernoulli_gradient_is_smooth_across_the_series_switch():
    eta = torch.linspace(-1.0, 1.0, 2001, dtype=torch.float32, requires_grad=True)
    (grad,) = torch.autograd.grad(losses.continuous_bernoulli_log_norm(eta).sum(), eta)
    # d log C / d eta = 1/eta - 1/sinh(eta) (float64 reference; -> eta/6 at 0)
    e = eta.detach().double()
    exact = torch.where(e.abs() < 1e-3, e / 6, 1 / e - 1 / torch.sinh(e))
    torch.testing.assert_close(grad.double(), exact, rtol=0, atol=2e-5)


def test_grayscale_bce_is_not_normalized_and_the_continuous_bernoulli_is():
    x = torch.linspace(0.0, 1.0, 100_001, dtype=torch.float64)[:, None]
    logits = torch.full_like(x, 0.0)
    bce_density = torch.exp(-losses.bernoulli_nll(logits, x))                  # lambda = 1/2: 1/2 everywhere
    cb_density = torch.exp(-losses.continuous_bernoulli_nll(logits, x))
    assert math.isclose(float(torch.trapezoid(bce_density, x[:, 0])), 0.5, rel_tol=1e-9)
    assert math.isclose(float(torch.trapezoid(cb_density, x[:, 0])), 1.0, rel_tol=1e-9)
    # and the BCE of a gray pixel is not 0 at its best logit: min over logits of BCE(., 0.5) = log 2
    best = losses.bernoulli_nll(torch.zeros(1, 1, dtype=torch.float64), torch.full((1, 1), 0.5, dtype=torch.float64))
    assert math.isclose(float(best), math.log(2), rel_tol=1e-12)


def test_continuous_bernoulli_vae_trains():
    x, _ = _dataset()
    model = _model(likelihood="continuous_bernoulli")
    history = _fit(model, x, epochs=4)
    assert history.train["total"][-1] < history.train["total"][0]
    assert 0 <= model.sample(3).min() and model.sample(3).max() <= 1


# ---------------------------------------------------------------- figures

def test_rate_distortion_and_kl_per_dimension_figures():
    import matplotlib
    matplotlib.use("Agg")
    from vae_course import plots

    fig = plots.rate_distortion({"beta sweep": {"β=1": (20.0, 120.0), "β=4": (5.0, 150.0)}, "other": {"": (10.0, 130.0)}})
    ax = fig.axes[0]
    assert "nats" in ax.get_xlabel() and "nats" in ax.get_ylabel()
    assert [t.get_text() for t in ax.texts][:2] == ["β=1", "β=4"]
    assert list(ax.lines[0].get_xdata()) == [20.0, 5.0]
    with pytest.raises(ValueError, match="curves"):
        plots.rate_distortion({})
    fig = plots.kl_per_dimension({"a": torch.tensor([0.1, 2.0, 0.0])}, threshold=0.5)
    line = fig.axes[0].lines[0]
    assert np.allclose(line.get_ydata(), [2.0, 0.1, 1e-4]) and fig.axes[0].get_yscale() == "log"


def test_rate_distortion_draws_the_iso_elbo_line_through_a_named_point_and_names_the_threshold():
    import matplotlib
    matplotlib.use("Agg")
    from vae_course import plots

    fig = plots.rate_distortion({"sweep": {"β=1": (20.0, 120.0), "β=4": (5.0, 150.0)}}, iso_elbo_through="β=1")
    ax = fig.axes[0]
    through = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(through) == 1 and "140.0" in through[0].get_label()
    xs, ys = through[0].get_xdata(), through[0].get_ydata()
    assert np.allclose(np.asarray(xs) + np.asarray(ys), 140.0)       # every point of the line has R + D = 140
    assert "--" not in [line.get_linestyle() for line in plots.rate_distortion({"s": {"a": (1.0, 2.0)}}).axes[0].lines]
    with pytest.raises(ValueError, match="iso_elbo_through.*β=2"):
        plots.rate_distortion({"sweep": {"β=1": (20.0, 120.0)}}, iso_elbo_through="β=2")
    fig = plots.kl_per_dimension({"a": torch.tensor([0.1, 2.0])}, threshold=0.5, threshold_label="free-bits floor λ = 0.5 nats")
    assert "free-bits floor λ = 0.5 nats" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    fig = plots.kl_per_dimension({"a": torch.tensor([0.1, 2.0])}, threshold=0.5)
    assert "0.5 nats" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
