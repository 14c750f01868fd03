"""Tests of the models of notebook 08 and their maths: the log-densities and Monte Carlo KL in
vae_course.losses, the mixture-of-Gaussians prior VAE, the convolutional VAE, and the prior hook
that the importance-weighted evaluation uses."""
from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from vae_course import evaluate, losses, models, train
from helpers import gen

CONV_SHAPE = (1, 8, 8)  # the smallest images the two stride-2 convolutions handle comfortably


def _images(n, shape, seed=0):
    """Binary images, each one of four random templates with a few pixels flipped: structure a
    model can learn in a few steps."""
    g = gen(seed)
    templates = (torch.rand(4, *shape, generator=g) > 0.5).float()
    x = templates[torch.randint(0, 4, (n,), generator=g)]
    flip = (torch.rand(n, *shape, generator=g) < 0.05).float()
    return (x - flip).abs()


def _mixture_model(**kw):
    torch.manual_seed(0)
    return models.MixturePriorVAE(**{"image_shape": (1, 4, 4), "hidden_dims": (8,), "latent_dim": 3,
                                     "n_components": 4, **kw})


def _conv_model(**kw):
    torch.manual_seed(0)
    return models.ConvVAE(**{"image_shape": CONV_SHAPE, "channels": (4, 8), "latent_dim": 3, **kw})


# ---------------------------------------------------------------- log-densities

def test_gaussian_log_prob_matches_torch_distributions_and_broadcasts():
    g = gen(1)
    z = torch.randn(5, 7, 3, generator=g, dtype=torch.float64)
    mu = torch.randn(7, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(7, 3, generator=g, dtype=torch.float64)
    expected = D.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    got = losses.gaussian_log_prob(z, mu, logvar)
    assert got.shape == (5, 7)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(losses.gaussian_log_prob(z), D.Normal(0.0, 1.0).log_prob(z).sum(-1))


def test_mixture_log_prob_matches_mixture_same_family():
    g = gen(2)
    k, d = 5, 3
    means = 2 * torch.randn(k, d, generator=g, dtype=torch.float64)
    logvars = torch.randn(k, d, generator=g, dtype=torch.float64)
    logits = torch.randn(k, generator=g, dtype=torch.float64)
    z = 3 * torch.randn(4, 6, d, generator=g, dtype=torch.float64)
    reference = D.MixtureSameFamily(D.Categorical(logits=logits),
                                    D.Independent(D.Normal(means, (0.5 * logvars).exp()), 1))
    got = losses.mixture_log_prob(z, means, logvars, logits)
    assert got.shape == (4, 6)
    torch.testing.assert_close(got, reference.log_prob(z))


def test_mixture_log_prob_stays_finite_far_from_every_component():
    # Naively, exp(log N) underflows to 0 here and log(0) = -inf; the logsumexp does not.
    means, logvars, logits = torch.zeros(3, 2), torch.full((3, 2), -4.0), torch.zeros(3)
    value = losses.mixture_log_prob(torch.full((1, 2), 50.0), means, logvars, logits)
    assert torch.isfinite(value).all() and value.item() < -1e4


def test_mixture_of_one_standard_normal_is_the_standard_normal():
    z = torch.randn(10, 4, generator=gen(3))
    one = losses.mixture_log_prob(z, torch.zeros(1, 4), torch.zeros(1, 4), torch.zeros(1))
    torch.testing.assert_close(one, losses.gaussian_log_prob(z))


@pytest.mark.parametrize("bad, name", [
    (dict(means=torch.zeros(3)), "means"),
    (dict(logvars=torch.zeros(2, 2)), "logvars"),
    (dict(logits=torch.zeros(2)), "logits"),
    (dict(z=torch.zeros(4, 5)), "z"),
    (dict(logits=torch.zeros(3, dtype=torch.int64)), "logits"),
])
def test_mixture_log_prob_rejects_bad_shapes_naming_the_argument(bad, name):
    args = dict(z=torch.zeros(4, 2), means=torch.zeros(3, 2), logvars=torch.zeros(3, 2), logits=torch.zeros(3))
    args.update(bad)
    with pytest.raises((ValueError, TypeError), match=name):
        losses.mixture_log_prob(**args)


# ---------------------------------------------------------------- the Monte Carlo KL

def test_monte_carlo_kl_converges_to_the_closed_form():
    """With the prior N(0, I) (a mixture of one standard normal) the KL has a closed form; the
    mean of many one-sample estimates must agree with it within a few standard errors."""
    g = gen(4)
    mu = torch.randn(3, 2, generator=g, dtype=torch.float64)
    logvar = 0.5 * torch.randn(3, 2, generator=g, dtype=torch.float64)
    n = 200_000
    z = mu + (0.5 * logvar).exp() * torch.randn(n, 3, 2, generator=g, dtype=torch.float64)
    log_prior = losses.mixture_log_prob(z, torch.zeros(1, 2, dtype=torch.float64),
                                        torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    estimates = losses.monte_carlo_kl(z, mu.expand_as(z), logvar.expand_as(z), log_prior)  # (n, 3)
    mean, stderr = estimates.mean(0), estimates.std(0) / math.sqrt(n)
    exact = losses.gaussian_kl(mu, logvar)
    assert ((mean - exact).abs() < 4 * stderr).all(), (mean, exact, stderr)
    assert (stderr < 0.01).all()
    assert (estimates < 0).any(), "single estimates can be negative; only their mean is the KL"


def test_monte_carlo_kl_rejects_mismatched_log_prior():
    z = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="log_prior"):
        losses.monte_carlo_kl(z, z, z, torch.zeros(3))
    with pytest.raises(ValueError, match="mu"):
        losses.monte_carlo_kl(z, torch.zeros(4, 3), z, torch.zeros(4))


# ---------------------------------------------------------------- mixture-prior VAE

def test_mixture_vae_shapes_and_per_example_loss():
    model = _mixture_model()
    x = _images(6, (1, 4, 4))
    parts = model.loss(x)
    assert parts.total.shape == parts.reconstruction.shape == parts.kl.shape == (6,)
    assert torch.isfinite(parts.total).all()
    torch.testing.assert_close(parts.total, parts.reconstruction + parts.kl)
    assert model.prior_log_prob(torch.zeros(2, 5, 3)).shape == (2, 5)
    samples = model.sample(7, generator=gen(1))
    assert samples.shape == (7, 1, 4, 4) and samples.min() >= 0 and samples.max() <= 1
    torch.testing.assert_close(model.prior_weights.sum(), torch.tensor(1.0))


def test_mixture_vae_loss_is_reconstruction_plus_beta_times_the_mc_kl():
    model = _mixture_model()
    x = _images(5, (1, 4, 4))
    torch.manual_seed(5)
    parts = model.loss(x, beta=3.0)
    torch.manual_seed(5)  # the same z: encode, reparameterize, decode by hand
    mu, logvar = model.encode(x)
    z = model.reparameterize(mu, logvar)
    torch.testing.assert_close(parts.reconstruction, losses.bernoulli_nll(model.decode(z), x))
    torch.testing.assert_close(parts.kl, losses.gaussian_log_prob(z, mu, logvar) - model.prior_log_prob(z))
    torch.testing.assert_close(parts.total, parts.reconstruction + 3.0 * parts.kl)


def test_mixture_vae_prior_parameters_get_gradients():
    model = _mixture_model()
    model.loss(_images(8, (1, 4, 4))).total.mean().backward()
    for p in (model.prior_means, model.prior_logvars, model.prior_logits):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_mixture_vae_samples_come_from_the_mixture():
    model = _mixture_model(latent_dim=2, n_components=2)
    with torch.no_grad():
        model.prior_means.copy_(torch.tensor([[-5.0, 0.0], [5.0, 0.0]]))
        model.prior_logvars.fill_(math.log(0.25))
        model.prior_logits.copy_(torch.tensor([math.log(0.2), math.log(0.8)]))
    z = model.sample_prior(20_000, generator=gen(6))
    right = (z[:, 0] > 0).double().mean().item()
    assert right == pytest.approx(0.8, abs=0.02)
    assert z[z[:, 0] > 0, 0].mean().item() == pytest.approx(5.0, abs=0.03)
    assert z[z[:, 0] > 0, 0].std().item() == pytest.approx(0.5, abs=0.03)


def test_mixture_of_one_fixed_standard_normal_matches_the_vae_on_average():
    """K = 1 with the component held at N(0, I): the loss is the VAE's, with a noisy KL whose
    mean over many samples is the closed-form KL."""
    model = _mixture_model(n_components=1)
    with torch.no_grad():
        model.prior_means.zero_()
        model.prior_logvars.zero_()
    x = _images(3, (1, 4, 4)).repeat(4000, 1, 1, 1)
    with torch.no_grad():
        kl = model.loss(x).kl.double().view(4000, 3)
        mu, logvar = model.encode(x[:3])
    exact = losses.gaussian_kl(mu, logvar).double()
    assert ((kl.mean(0) - exact).abs() < 4 * kl.std(0) / math.sqrt(4000) + 1e-6).all()


def test_mixture_vae_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="n_components"):
        models.MixturePriorVAE(n_components=0)
    with pytest.raises(ValueError, match="n_components"):
        models.MixturePriorVAE(n_components=2.5)
    model = _mixture_model()
    with pytest.raises(ValueError, match="z"):
        model.prior_log_prob(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="x"):
        model.loss(torch.zeros(2, 1, 5, 5))


# ---------------------------------------------------------------- convolutional VAE

def test_conv_vae_shapes_on_mnist_size():
    model = models.ConvVAE(latent_dim=5)
    x = _images(3, models.MNIST_SHAPE)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, 5)
    assert model.decode(mu).shape == (3, 1, 28, 28)
    assert model.reconstruct(x).shape == (3, 1, 28, 28)
    assert model.sample(4).shape == (4, 1, 28, 28)
    parts = model.loss(x)
    assert parts.total.shape == parts.reconstruction.shape == parts.kl.shape == (3,)
    assert torch.isfinite(parts.total).all()
    assert any(isinstance(m, torch.nn.Conv2d) for m in model.encoder)
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.decoder)


def test_conv_vae_loss_is_negative_elbo_of_its_forward_pass():
    model = _conv_model()
    x = _images(4, CONV_SHAPE)
    torch.manual_seed(9)
    parts = model.loss(x, beta=0.5)
    torch.manual_seed(9)
    logits, mu, logvar = model(x)
    torch.testing.assert_close(parts.reconstruction, losses.bernoulli_nll(logits, x))
    torch.testing.assert_close(parts.kl, losses.gaussian_kl(mu, logvar))
    torch.testing.assert_close(parts.total, parts.reconstruction + 0.5 * parts.kl)


def test_conv_vae_is_translation_equivariant_in_its_first_layer():
    # Why convolutions: the same filter at every position. Shift the input by 2 pixels (one
    # stride-2 step), and the first layer's feature map shifts by one cell.
    model = _conv_model()
    x = torch.zeros(1, *CONV_SHAPE)
    x[..., 2:4, 2:4] = 1.0
    shifted = torch.roll(x, shifts=2, dims=-1)
    first = model.encoder[0]
    a, b = first(x), first(shifted)
    torch.testing.assert_close(torch.roll(a, shifts=1, dims=-1)[..., 1:3], b[..., 1:3])


@pytest.mark.parametrize("kwargs, name", [
    (dict(image_shape=(1, 30, 30)), "image_shape"),
    (dict(image_shape=(28, 28)), "image_shape"),
    (dict(channels=(16,)), "channels"),
    (dict(channels=(16, 0)), "channels"),
    (dict(latent_dim=0), "latent_dim"),
])
def test_conv_vae_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        models.ConvVAE(**kwargs)


def test_conv_vae_rejects_wrong_image_shape():
    model = _conv_model()
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 1, 8, 8\)"):
        model.encode(torch.zeros(2, 1, 4, 4))


# ---------------------------------------------------------------- training, checkpoints, evaluation

@pytest.mark.parametrize("make, shape", [(_mixture_model, (1, 4, 4)), (_conv_model, CONV_SHAPE)])
def test_a_few_steps_of_fit_reduce_the_loss(make, shape):
    model = make()
    x = _images(64, shape)
    before = evaluate.negative_elbo(model, x).total
    history = train.fit(model, x, epochs=40, batch_size=16, lr=3e-3, progress=False, device="cpu")
    after = evaluate.negative_elbo(model, x).total
    assert history.train["total"][-1] < history.train["total"][0]
    assert after < 0.85 * before, (before, after)


@pytest.mark.parametrize("make, shape", [(_mixture_model, (1, 4, 4)), (_conv_model, CONV_SHAPE)])
def test_checkpoint_roundtrip(make, shape, tmp_path):
    model = make()
    train.fit(model, _images(32, shape), epochs=1, batch_size=16, progress=False, device="cpu")
    path = train.save_checkpoint(model, tmp_path / "model.pt")
    loaded = train.load_checkpoint(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    z = torch.randn(3, model.latent_dim, generator=gen(2))
    torch.testing.assert_close(loaded.decode(z), model.decode(z))
    torch.testing.assert_close(loaded.prior_log_prob(z), model.prior_log_prob(z))
    with pytest.raises(ValueError, match="config field"):
        train.load_checkpoint(path, make(latent_dim=4))


def test_vae_prior_hook_is_the_standard_normal():
    z = torch.randn(2, 5, 20, generator=gen(3))
    torch.testing.assert_close(models.VAE().prior_log_prob(z), D.Normal(0.0, 1.0).log_prob(z).sum(-1))


def test_importance_weights_use_the_models_prior():
    """log w = log p(x|z) + log p(z) - log q(z|x) with the model's own (mixture) log p(z)."""
    model = _mixture_model()
    with torch.no_grad():
        model.prior_means.mul_(3.0)  # a prior far from N(0, I): using N(0, I) would show
    x = _images(6, (1, 4, 4))
    seen = []
    model.prior_log_prob = lambda z: seen.append(z) or type(model).prior_log_prob(model, z)
    log_w = evaluate.importance_weights(model, x, None, 5)
    assert log_w.shape == (5, 6) and len(seen) == 1
    z = seen[0]  # (5, 6, 3)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        log_px_z = -losses.bernoulli_nll(model.decode(z.reshape(-1, 3)), x.repeat(5, 1, 1, 1)).view(5, 6)
        expected = (log_px_z + losses.mixture_log_prob(z, model.prior_means, model.prior_logvars, model.prior_logits)
                    - losses.gaussian_log_prob(z, mu, logvar))
        standard = log_px_z + losses.gaussian_log_prob(z) - losses.gaussian_log_prob(z, mu, logvar)
    torch.testing.assert_close(log_w, expected)
    assert not torch.allclose(log_w, standard)
    estimate = evaluate.importance_weighted_nll(model, x, k=20)
    assert math.isfinite(estimate.mean) and estimate.stderr > 0


@pytest.mark.parametrize("make, shape", [(_mixture_model, (1, 4, 4)), (_conv_model, CONV_SHAPE)])
def test_iwae_bound_is_tighter_than_the_elbo(make, shape):
    model = make()
    x = _images(64, shape)
    train.fit(model, x, epochs=5, batch_size=16, lr=3e-3, progress=False, device="cpu")
    nelbo = evaluate.negative_elbo(model, x).total
    iwae = evaluate.importance_weighted_nll(model, x, k=200)
    assert iwae.mean < nelbo, (iwae, nelbo)
    assert iwae.mean > nelbo - 20


# ---------------------------------------------------------------- the aggregate posterior's KL, and the figures

def _constant_encoder(mu_value):
    torch.manual_seed(0)
    model = models.VAE(image_shape=(1, 4, 4), hidden_dims=(8,), latent_dim=2)
    with torch.no_grad():
        for head, bias in ((model.mu_head, mu_value), (model.logvar_head, 0.0)):
            head.weight.zero_()
            head.bias.fill_(bias)
    return model


def test_marginal_kl_is_zero_when_every_posterior_is_the_prior():
    estimate = evaluate.marginal_kl(_constant_encoder(0.0), _images(30, (1, 4, 4)), n_samples=500)
    assert abs(estimate.mean) < 1e-5 and estimate.stderr < 1e-5


def test_marginal_kl_of_a_shifted_posterior_matches_the_closed_form():
    # q(z) = N(c, I) for every image: KL(N(c, I) || N(0, I)) = |c|^2 / 2 = 1.0 for c = (1, 1).
    estimate = evaluate.marginal_kl(_constant_encoder(1.0), _images(30, (1, 4, 4)), n_samples=4000)
    assert abs(estimate.mean - 1.0) < 4 * estimate.stderr + 1e-9, estimate


def test_marginal_kl_uses_the_models_prior_and_checks_arguments():
    model = _mixture_model(latent_dim=2, n_components=1)
    with torch.no_grad():
        model.mu_head.weight.zero_(), model.mu_head.bias.fill_(2.0)
        model.logvar_head.weight.zero_(), model.logvar_head.bias.zero_()
        model.prior_means.fill_(2.0), model.prior_logvars.zero_()
    assert abs(evaluate.marginal_kl(model, _images(10, (1, 4, 4)), n_samples=200).mean) < 1e-5
    with pytest.raises(TypeError, match="model"):
        evaluate.marginal_kl(models.CVAE(image_shape=(1, 4, 4), latent_dim=2), _images(4, (1, 4, 4)))
    with pytest.raises(ValueError, match="n_samples"):
        evaluate.marginal_kl(model, _images(4, (1, 4, 4)), n_samples=0)


def test_prior_ellipses_and_loss_vs_time_figures():
    import matplotlib
    matplotlib.use("Agg")
    from vae_course import plots

    model = _mixture_model(latent_dim=2, n_components=3)
    fig = plots.latent_scatter(torch.randn(40, 2, generator=gen(1)), torch.arange(40) % 10)
    plots.prior_ellipses(fig.axes[0], model.prior_means, model.prior_logvars, model.prior_weights)
    ellipses = [line for line in fig.axes[0].lines if len(line.get_xdata()) == 100]
    assert len(ellipses) == 3
    x0 = ellipses[0].get_xdata()
    sigma = math.exp(0.5 * model.prior_logvars[0, 0].item())
    assert (x0.max() - x0.min()) / 2 == pytest.approx(2.0 * sigma, rel=1e-3)
    x = _images(32, (1, 4, 4))
    history = train.fit(model, x, epochs=3, batch_size=16, progress=False, device="cpu", test_images=x)
    fig = plots.loss_vs_time({"mixture": history})
    line = fig.axes[0].lines[0]
    assert list(line.get_ydata()) == history.test["total"]
    assert line.get_xdata()[-1] == pytest.approx(sum(history.seconds))
    bare = train.fit(model, x, epochs=1, batch_size=16, progress=False, device="cpu")
    with pytest.raises(ValueError, match="test_images"):
        plots.loss_vs_time({"bare": bare})
