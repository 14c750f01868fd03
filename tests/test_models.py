"""Tests of vae_course.models: shapes, logits vs pixels, the reparameterization trick, the CVAE's
conditioning, linearity of the linear autoencoder, the one interface of the five models (labels,
loss options, x_in), input conversion (issue 11 class 3), input checks that name the argument,
and the models of notebook 08 (mixture prior, convolutional VAE) with their training and evaluation."""
from __future__ import annotations

import math

import pytest
import torch

from torch import distributions as D

from vae_course import evaluate, gaussian, losses, models, train
from helpers import gen

SHAPE = (1, 4, 4)


_gen = gen  # one seeded generator per call (tests/helpers.py)


def _images(n=5, shape=SHAPE, seed=0):
    return torch.rand(n, *shape, generator=_gen(seed))


def _model(cls, **kw):
    torch.manual_seed(0)
    kw = {"image_shape": SHAPE, "hidden_dims": (8,), "latent_dim": 3, **kw}
    return cls(**kw)


def _labels(n, num_classes=10, seed=0):
    return torch.randint(0, num_classes, (n,), generator=_gen(seed))


# ---------------------------------------------------------------- shapes

def test_autoencoder_shapes_mnist():
    model = models.Autoencoder()
    x = _images(3, models.MNIST_SHAPE)
    z = model.encode(x)
    assert z.shape == (3, 2)
    assert model.decode(z).shape == (3, 1, 28, 28)
    assert model(x).shape == (3, 1, 28, 28)
    assert model.reconstruct(x).shape == (3, 1, 28, 28)
    parts = model.loss(x)
    assert parts.total.shape == parts.reconstruction.shape == parts.kl.shape == (3,)
    assert torch.equal(parts.kl, torch.zeros(3))


def test_vae_shapes_mnist():
    model = models.VAE()
    x = _images(4, models.MNIST_SHAPE)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (4, 20)
    z = model.reparameterize(mu, logvar)
    assert z.shape == (4, 20)
    assert model.decode(z).shape == (4, 1, 28, 28)
    out, mu2, logvar2 = model(x)
    assert out.shape == (4, 1, 28, 28) and mu2.shape == logvar2.shape == (4, 20)
    assert model.sample(6).shape == (6, 1, 28, 28)
    assert model.reconstruct(x).shape == (4, 1, 28, 28)
    assert model.loss(x).total.shape == (4,)


def test_cvae_shapes_mnist():
    model = models.CVAE(latent_dim=5)
    x, y = _images(4, models.MNIST_SHAPE), _labels(4)
    mu, logvar = model.encode(x, y)
    assert mu.shape == logvar.shape == (4, 5)
    assert model.decode(model.reparameterize(mu, logvar), y).shape == (4, 1, 28, 28)
    out, _, _ = model(x, y)
    assert out.shape == (4, 1, 28, 28)
    assert model.sample(3, y=7).shape == (3, 1, 28, 28)
    assert model.reconstruct(x, y).shape == (4, 1, 28, 28)
    assert model.loss(x, y).total.shape == (4,)


@pytest.mark.parametrize("cls", [models.Autoencoder, models.VAE, models.CVAE])
def test_non_square_multichannel_images(cls):
    shape = (2, 3, 5)
    model = _model(cls, image_shape=shape)
    x = _images(2, shape)
    args = (x, _labels(2)) if cls is models.CVAE else (x,)
    out = model(*args)
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape == (2, *shape)
    assert model.input_dim == 30


def test_vae_without_hidden_layers():
    model = _model(models.VAE, hidden_dims=())
    mu, logvar = model.encode(_images(2))
    assert mu.shape == (2, 3)
    assert model.decode(mu).shape == (2, *SHAPE)


# ---------------------------------------------------------------- logits vs pixels

@pytest.mark.parametrize("cls", [models.Autoencoder, models.VAE, models.CVAE])
def test_decoder_returns_logits_and_display_helpers_return_pixels(cls):
    model = _model(cls)
    last = [m for m in model.decoder if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # push half the pixels far above 1 and half far below 0
        last.bias.copy_(torch.tensor([20.0, -20.0] * 8))
    x = _images(3)
    y = _labels(3)
    cond = (y,) if cls is models.CVAE else ()
    z = torch.randn(3, 3, generator=_gen(1))
    out = model.decode(z, *cond)
    assert out.max() > 1.0 and out.min() < 0.0  # raw logits, no sigmoid applied
    recon = model.reconstruct(x, *cond)
    assert recon.min() >= 0.0 and recon.max() <= 1.0
    code = model.encode(x, *cond)
    code = code[0] if isinstance(code, tuple) else code  # posterior mean for VAE/CVAE
    torch.testing.assert_close(recon, torch.sigmoid(model.decode(code, *cond)))
    if cls is not models.Autoencoder:
        samples = model.sample(5, *((4,) if cls is models.CVAE else ()))
        assert samples.shape == (5, *SHAPE)
        assert samples.min() >= 0.0 and samples.max() <= 1.0


def test_gaussian_likelihood_pixels_are_clamped_means():
    model = _model(models.VAE, likelihood="gaussian")
    last = [m for m in model.decoder if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias.copy_(torch.linspace(-3, 3, 16))
    z = torch.zeros(1, 3)
    out = model.decode(z)
    assert out.min() < 0 and out.max() > 1
    torch.testing.assert_close(model.to_pixels(out), out.clamp(0, 1))
    s = model.sample(4)
    assert s.min() >= 0 and s.max() <= 1
    # the loss of a Gaussian VAE is the Gaussian NLL of the decoder means
    x = _images(2)
    torch.manual_seed(3)
    parts = model.loss(x)
    torch.manual_seed(3)
    mean, mu, logvar = model(x)
    torch.testing.assert_close(parts.reconstruction, losses.gaussian_nll(mean, x))


def test_sample_with_generator_is_reproducible():
    model = _model(models.VAE)
    a = model.sample(4, generator=_gen(5))
    b = model.sample(4, generator=_gen(5))
    c = model.sample(4, generator=_gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------- reparameterization

def test_reparameterize_passes_gradients_to_mu_and_logvar():
    g = _gen(7)
    mu = torch.randn(4, 3, generator=g, requires_grad=True)
    logvar = torch.randn(4, 3, generator=g, requires_grad=True)
    z = models.VAE.reparameterize(mu, logvar)
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones(4, 3))
    # z = mu + exp(logvar / 2) * eps, so dz/dlogvar = (z - mu) / 2
    torch.testing.assert_close(logvar.grad, 0.5 * (z - mu).detach())
    assert (logvar.grad != 0).all()


def test_reparameterize_has_the_right_mean_and_std():
    torch.manual_seed(8)
    n = 100_000
    mu = torch.tensor([1.0, -2.0, 3.0]).expand(n, 3)
    sigma = torch.tensor([0.5, 1.0, 2.0])
    z = models.VAE.reparameterize(mu, (sigma ** 2).log().expand(n, 3)).double()
    mean_err = (z.mean(0) - mu[0].double()).abs()
    assert (mean_err < 5 * sigma.double() / math.sqrt(n)).all(), mean_err
    std_err = (z.std(0) - sigma.double()).abs()
    assert (std_err < 5 * sigma.double() / math.sqrt(2 * n)).all(), std_err
    # independent coordinates, standardized values look normal (about 68% within one sigma)
    eps = (z - mu.double()) / sigma.double()
    corr = torch.corrcoef(eps.T)
    assert (corr - torch.eye(3, dtype=torch.float64)).abs().max() < 0.02
    assert (eps.abs() < 1).double().mean().item() == pytest.approx(0.6827, abs=0.01)


def test_reparameterize_draws_fresh_noise():
    mu, logvar = torch.zeros(2, 3), torch.zeros(2, 3)
    assert not torch.equal(models.VAE.reparameterize(mu, logvar), models.VAE.reparameterize(mu, logvar))


def test_vae_forward_is_stochastic_but_reconstruct_is_not():
    model = _model(models.VAE)
    x = _images(3)
    assert not torch.equal(model(x)[0], model(x)[0])
    assert torch.equal(model.reconstruct(x), model.reconstruct(x))


def test_vae_loss_is_negative_elbo_of_its_forward_pass():
    _assert_loss_is_negative_elbo_of_forward(_model(models.VAE), _images(4), beta=2.0, seed=11)


def _assert_loss_is_negative_elbo_of_forward(model, x, beta: float, seed: int) -> None:
    """model.loss(x, beta) = the Bernoulli NLL of forward's logits + beta * the closed-form KL, same z."""
    torch.manual_seed(seed)
    parts = model.loss(x, beta=beta)
    torch.manual_seed(seed)
    logits, mu, logvar = model(x)
    torch.testing.assert_close(parts.reconstruction, losses.bernoulli_nll(logits, x))
    torch.testing.assert_close(parts.kl, gaussian.kl(mu, logvar))
    torch.testing.assert_close(parts.total, parts.reconstruction + beta * parts.kl)


# ---------------------------------------------------------------- CVAE conditioning

def test_cvae_decode_and_encode_depend_on_the_label():
    model = _model(models.CVAE)
    z = torch.randn(4, 3, generator=_gen(9))
    x = _images(4)
    y0 = torch.zeros(4, dtype=torch.int64)
    y1 = torch.full((4,), 3, dtype=torch.int64)
    out0, out1 = model.decode(z, y0), model.decode(z, y1)
    assert not torch.allclose(out0, out1)
    assert torch.equal(out0, model.decode(z, y0.clone()))  # deterministic given (z, y)
    assert not torch.allclose(model.encode(x, y0)[0], model.encode(x, y1)[0])
    # every label gives a different image from the same z ("style" fixed, class varies)
    outs = torch.stack([model.decode(z[:1], torch.tensor([c])) for c in range(10)])
    assert torch.unique(outs.flatten(1), dim=0).shape[0] == 10


def test_cvae_sample_int_label_equals_tensor_label():
    model = _model(models.CVAE)
    a = model.sample(3, y=2, generator=_gen(4))
    b = model.sample(3, y=torch.full((3,), 2, dtype=torch.int64), generator=_gen(4))
    c = model.sample(3, y=5, generator=_gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_cvae_num_classes_and_config():
    model = _model(models.CVAE, num_classes=4)
    assert model.config["num_classes"] == 4
    with pytest.raises(ValueError, match="y"):
        model.decode(torch.zeros(1, 3), torch.tensor([4]))
    model.decode(torch.zeros(1, 3), torch.tensor([3]))


@pytest.mark.parametrize("cls", [models.Autoencoder, models.VAE, models.CVAE])
def test_config_rebuilds_an_equal_model(cls):
    model = _model(cls, hidden_dims=(6, 5), latent_dim=4, likelihood="gaussian", activation="tanh")
    rebuilt = models.MODELS[cls.__name__](**model.config)
    assert rebuilt.config == model.config
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]
    assert any(isinstance(m, torch.nn.Tanh) for m in rebuilt.modules())


# ---------------------------------------------------------------- linear autoencoder

def test_linear_autoencoder_is_affine():
    """hidden_dims=() and a Gaussian likelihood: x -> x_hat is affine, f(x) - f(0) is linear."""
    model = _model(models.Autoencoder, hidden_dims=(), likelihood="gaussian")
    assert not any(isinstance(m, (torch.nn.ReLU, torch.nn.Tanh, torch.nn.ELU)) for m in model.modules())
    g = _gen(10)
    x1, x2 = torch.rand(5, *SHAPE, generator=g) * 0.5, torch.rand(5, *SHAPE, generator=g) * 0.5
    zero = torch.zeros(1, *SHAPE)

    def f(x):
        return model(x).double() - model(zero).double()

    torch.testing.assert_close(f(x1 + x2), f(x1) + f(x2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(f(0.3 * x1), 0.3 * f(x1), atol=1e-5, rtol=1e-5)
    # whereas a ReLU autoencoder is not
    relu = _model(models.Autoencoder, hidden_dims=(16,), likelihood="gaussian")
    fr = lambda x: relu(x).double() - relu(zero).double()  # noqa: E731
    assert not torch.allclose(fr(x1 + x2), fr(x1) + fr(x2), atol=1e-4)


def test_autoencoder_denoising_loss_scores_the_clean_target():
    model = _model(models.Autoencoder)
    x = _images(3)
    noisy = (x + 0.3 * torch.rand(3, *SHAPE, generator=_gen(12))).clamp(0, 1)
    parts = model.loss(x, x_in=noisy)
    torch.testing.assert_close(parts.total, losses.bernoulli_nll(model(noisy), x))
    assert not torch.allclose(parts.total, model.loss(x).total)


# ---------------------------------------------------------------- bad input

def _raises(exc, name, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert name in str(info.value), str(info.value)
    return info.value


@pytest.mark.parametrize("cls", [models.Autoencoder, models.VAE, models.CVAE])
def test_bad_constructor_args_name_the_argument(cls):
    base = {"image_shape": SHAPE, "hidden_dims": (8,), "latent_dim": 3}
    for field, bad in [("latent_dim", 0), ("latent_dim", -2), ("latent_dim", 2.5), ("latent_dim", True),
                       ("likelihood", "poisson"), ("hidden_dims", (-1,)), ("hidden_dims", (8, 0)),
                       ("hidden_dims", (4.0,)), ("hidden_dims", (True,)), ("hidden_dims", 400), ("image_shape", (1, 0, 4)),
                       ("image_shape", 784), ("activation", "sigmoidal")]:
        _raises((ValueError, TypeError), field, cls, **{**base, field: bad})
    if cls is models.CVAE:
        _raises(ValueError, "num_classes", cls, **base, num_classes=0)


@pytest.mark.parametrize("cls", [models.Autoencoder, models.VAE, models.CVAE])
def test_bad_images_name_x(cls):
    model = _model(cls)
    y = _labels(2)
    cond = (y,) if cls is models.CVAE else ()
    good = _images(2)
    nan, inf = good.clone(), good.clone()
    nan[0, 0, 1, 1] = float("nan")
    inf[1, 0, 0, 0] = float("inf")
    for exc, bad in [(TypeError, (good * 255).to(torch.uint8)), (TypeError, (good > 0.5).long()),
                     (TypeError, good.numpy()), (TypeError, good.tolist()),
                     (ValueError, good.view(2, 16)), (ValueError, torch.rand(2, 1, 4, 5)),
                     (ValueError, torch.rand(2, 4, 4)), (ValueError, nan), (ValueError, inf),
                     (ValueError, good * 2), (ValueError, good - 1)]:
        _raises(exc, "x", model.encode, bad, *cond)
        _raises(exc, "x", model, bad, *cond)
        _raises(exc, "x", model.loss, bad, *cond)
    _raises(ValueError, "x", model.encode, torch.rand(0, *SHAPE), *((y[:0],) if cond else ()))


@pytest.mark.parametrize("cls", [models.Autoencoder, models.VAE, models.CVAE])
def test_bad_latents_name_z(cls):
    model = _model(cls)
    cond = (_labels(2),) if cls is models.CVAE else ()
    _raises(ValueError, "z", model.decode, torch.zeros(2, 4), *cond)
    _raises(ValueError, "z", model.decode, torch.zeros(2, 3, 1), *cond)
    _raises(ValueError, "z", model.decode, torch.zeros(3), *cond)
    _raises(TypeError, "z", model.decode, torch.zeros(2, 3, dtype=torch.int64), *cond)
    _raises(TypeError, "z", model.decode, [[0.0] * 3] * 2, *cond)


def test_cvae_bad_labels_name_y():
    model = _model(models.CVAE)
    x, z = _images(3), torch.zeros(3, 3)
    for exc, bad in [(TypeError, torch.tensor([1, 2, 3], dtype=torch.int32)),
                     (TypeError, torch.tensor([1.0, 2.0, 3.0])),
                     (TypeError, torch.tensor([True, False, True])),
                     (TypeError, [1, 2, 3]),
                     (ValueError, torch.tensor([1, 2, 10])),
                     (ValueError, torch.tensor([-1, 2, 3])),
                     (ValueError, torch.tensor([1, 2])),
                     (ValueError, torch.tensor([[1, 2, 3]]))]:
        _raises(exc, "y", model.encode, x, bad)
        _raises(exc, "y", model.decode, z, bad)
        _raises(exc, "y", model, x, bad)
        _raises(exc, "y", model.reconstruct, x, bad)
    _raises(ValueError, "y", model.loss, x)  # a CVAE without labels
    _raises(ValueError, "y", model.encode, x)  # a CVAE needs labels everywhere
    _raises(ValueError, "y", model.decode, z)
    _raises(ValueError, "y", model.reconstruct, x)
    _raises(ValueError, "y", model.sample, 2)
    _raises(ValueError, "y", model.sample, 2, y=10)
    _raises(ValueError, "y", model.sample, 2, y="3")  # as every number validate checks: ValueError naming it
    _raises(ValueError, "y", model.sample, 2, y=torch.tensor([1, 2, 3]))


def test_sample_bad_n():
    for cls in (models.VAE, models.CVAE):
        model = _model(cls)
        for bad in (0, -1, 2.0, True):
            _raises(ValueError, "n", model.sample, bad)


# ================================================================ notebook 08's models

CONV_SHAPE = (1, 8, 8)  # the smallest images the two stride-2 convolutions handle comfortably


def _template_images(n, shape, seed=0):
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


# ---------------------------------------------------------------- mixture-prior VAE

def test_mixture_vae_shapes_and_per_example_loss():
    model = _mixture_model()
    x = _template_images(6, (1, 4, 4))
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
    x = _template_images(5, (1, 4, 4))
    torch.manual_seed(5)
    parts = model.loss(x, beta=3.0)
    torch.manual_seed(5)  # the same z: encode, reparameterize, decode by hand
    mu, logvar = model.encode(x)
    z = model.reparameterize(mu, logvar)
    torch.testing.assert_close(parts.reconstruction, losses.bernoulli_nll(model.decode(z), x))
    torch.testing.assert_close(parts.kl, gaussian.log_prob(z, mu, logvar) - model.prior_log_prob(z))
    torch.testing.assert_close(parts.total, parts.reconstruction + 3.0 * parts.kl)


def test_mixture_vae_prior_parameters_get_gradients():
    model = _mixture_model()
    model.loss(_template_images(8, (1, 4, 4))).total.mean().backward()
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
    x = _template_images(3, (1, 4, 4)).repeat(4000, 1, 1, 1)
    with torch.no_grad():
        kl = model.loss(x).kl.double().view(4000, 3)
        mu, logvar = model.encode(x[:3])
    exact = gaussian.kl(mu, logvar).double()
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
    x = _template_images(3, models.MNIST_SHAPE)
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
    _assert_loss_is_negative_elbo_of_forward(_conv_model(), _template_images(4, CONV_SHAPE), beta=0.5, seed=9)


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
    x = _template_images(64, shape)
    before = evaluate.negative_elbo(model, x).total
    history = train.fit(model, x, steps=160, batch_size=16, lr=3e-3, progress=False, device="cpu")
    after = evaluate.negative_elbo(model, x).total
    assert history.train["total"][-1] < history.train["total"][0]
    assert after < 0.85 * before, (before, after)


@pytest.mark.parametrize("make, shape", [(_mixture_model, (1, 4, 4)), (_conv_model, CONV_SHAPE)])
def test_checkpoint_roundtrip_of_the_notebook_08_models(make, shape, tmp_path):
    model = make()
    train.fit(model, _template_images(32, shape), steps=2, batch_size=16, progress=False, device="cpu")
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
    x = _template_images(6, (1, 4, 4))
    seen = []
    model.prior_log_prob = lambda z: seen.append(z) or type(model).prior_log_prob(model, z)
    log_w = evaluate.importance_weights(model, x, None, 5)
    assert log_w.shape == (5, 6) and len(seen) == 1
    z = seen[0]  # (5, 6, 3)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        log_px_z = -losses.bernoulli_nll(model.decode(z.reshape(-1, 3)), x.repeat(5, 1, 1, 1)).view(5, 6)
        expected = (log_px_z + gaussian.mixture_log_prob(z, model.prior_means, model.prior_logvars, model.prior_logits)
                    - gaussian.log_prob(z, mu, logvar))
        standard = log_px_z + gaussian.log_prob(z) - gaussian.log_prob(z, mu, logvar)
    torch.testing.assert_close(log_w, expected)
    assert not torch.allclose(log_w, standard)
    estimate = evaluate.importance_weighted_nll(model, x, k=20)
    assert math.isfinite(estimate.mean) and estimate.stderr > 0


@pytest.mark.parametrize("make, shape", [(_mixture_model, (1, 4, 4)), (_conv_model, CONV_SHAPE)])
def test_iwae_bound_is_tighter_than_the_elbo(make, shape):
    model = make()
    x = _template_images(64, shape)
    train.fit(model, x, steps=20, batch_size=16, lr=3e-3, progress=False, device="cpu")
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
    estimate = evaluate.marginal_kl(_constant_encoder(0.0), _template_images(30, (1, 4, 4)), n_samples=500)
    assert abs(estimate.mean) < 1e-5 and estimate.stderr < 1e-5


def test_marginal_kl_of_a_shifted_posterior_matches_the_closed_form():
    # q(z) = N(c, I) for every image: KL(N(c, I) || N(0, I)) = |c|^2 / 2 = 1.0 for c = (1, 1).
    estimate = evaluate.marginal_kl(_constant_encoder(1.0), _template_images(30, (1, 4, 4)), n_samples=4000)
    assert abs(estimate.mean - 1.0) < 4 * estimate.stderr + 1e-9, estimate


def test_marginal_kl_uses_the_models_prior_and_checks_arguments():
    model = _mixture_model(latent_dim=2, n_components=1)
    with torch.no_grad():
        model.mu_head.weight.zero_(), model.mu_head.bias.fill_(2.0)
        model.logvar_head.weight.zero_(), model.logvar_head.bias.zero_()
        model.prior_means.fill_(2.0), model.prior_logvars.zero_()
    assert abs(evaluate.marginal_kl(model, _template_images(10, (1, 4, 4)), n_samples=200).mean) < 1e-5
    with pytest.raises(TypeError, match="model"):
        evaluate.marginal_kl(models.CVAE(image_shape=(1, 4, 4), latent_dim=2), _template_images(4, (1, 4, 4)))
    with pytest.raises(ValueError, match="n_samples"):
        evaluate.marginal_kl(model, _template_images(4, (1, 4, 4)), n_samples=0)


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
    x = _template_images(32, (1, 4, 4))
    history = train.fit(model, x, steps=6, batch_size=16, progress=False, device="cpu", test_images=x)
    fig = plots.loss_vs_time({"mixture": history})
    line = fig.axes[0].lines[0]
    assert list(line.get_ydata()) == history.test["total"]
    assert line.get_xdata()[-1] == pytest.approx(sum(history.seconds))
    bare = train.fit(model, x, steps=2, batch_size=16, progress=False, device="cpu")
    with pytest.raises(ValueError, match="test_images"):
        plots.loss_vs_time({"bare": bare})


# ================================================================ the one interface of the five models

def _any_model(name, **kw):
    """A small instance of each of the five models (ConvVAE on 8x8 images, the others on 4x4)."""
    torch.manual_seed(0)
    if name == "ConvVAE":
        return models.ConvVAE(image_shape=CONV_SHAPE, channels=(2, 4), latent_dim=3, **kw)
    extra = {"MixturePriorVAE": {"n_components": 2}}.get(name, {})
    return models.MODELS[name](image_shape=SHAPE, hidden_dims=(8,), latent_dim=3, **extra, **kw)


def _inputs(model, n=3, seed=0):
    """Images for ``model`` and the labels it takes (None when it takes none)."""
    x = torch.rand(n, *model.image_shape, generator=_gen(seed))
    return x, (_labels(n, model.num_classes, seed) if model.num_classes else None)


ALL = sorted(models.MODELS)


@pytest.mark.parametrize("name", ALL)
def test_every_model_answers_the_same_interface(name):
    model = _any_model(name)
    x, y = _inputs(model)
    code = model.encode(x, y)
    z = code[0] if isinstance(code, tuple) else code
    assert z.shape == (3, 3)
    assert model.decode(z, y).shape == (3, *model.image_shape)
    assert model.reconstruct(x, y).shape == (3, *model.image_shape)
    parts = model.loss(x, y, beta=1.0, free_bits=0.0, x_in=x)
    assert all(p.shape == (3,) for p in parts)
    if hasattr(model, "sample"):
        assert model.sample(2, y[:2] if y is not None else None, generator=_gen(1)).shape == (2, *model.image_shape)
    # the same calls by keyword
    assert model.decode(z=z, y=y).shape == (3, *model.image_shape)


@pytest.mark.parametrize("name", [n for n in ALL if n != "CVAE"])
def test_a_model_without_labels_refuses_one_by_name(name):
    model = _any_model(name)
    x, _ = _inputs(model)
    y = torch.zeros(3, dtype=torch.int64)
    calls = {"encode": lambda: model.encode(x, y), "decode": lambda: model.decode(torch.zeros(3, 3), y),
             "reconstruct": lambda: model.reconstruct(x, y), "loss": lambda: model.loss(x, y)}
    if hasattr(model, "sample"):
        calls["sample"] = lambda: model.sample(3, y)
    for what, call in calls.items():
        err = _raises(ValueError, "y: ", call)
        assert "takes no labels" in str(err) and "expected None" in str(err) and "int64" in str(err), (what, err)


def test_a_cvae_without_labels_refuses_by_name():
    model = _any_model("CVAE")
    x, _ = _inputs(model)
    for call in (lambda: model.encode(x), lambda: model.decode(torch.zeros(3, 3)), lambda: model.reconstruct(x),
                 lambda: model.loss(x), lambda: model(x), lambda: model.sample(3)):
        err = _raises(ValueError, "y: ", call)
        assert "needs labels" in str(err) and "got None" in str(err)


def test_labels_are_a_property_of_the_model_not_of_its_caller():
    assert [models.MODELS[n].num_classes for n in ALL if n != "CVAE"] == [0] * 4
    assert _any_model("CVAE", num_classes=4).num_classes == 4
    assert not any(hasattr(_any_model(n), "conditional") for n in ALL)


@pytest.mark.parametrize("beta, free_bits, name", [(2.0, 0.0, "beta"), (0.0, 0.0, "beta"), (1.0, 0.5, "free_bits")])
def test_an_autoencoder_refuses_kl_options_by_name(beta, free_bits, name):
    model = _any_model("Autoencoder")
    x, _ = _inputs(model)
    err = _raises(ValueError, name, model.loss, x, beta=beta, free_bits=free_bits)
    assert "Autoencoder" in str(err) and "no KL" in str(err)
    model.loss(x, beta=1.0, free_bits=0.0)  # the defaults are fine


def test_a_mixture_prior_vae_refuses_free_bits_by_name():
    model = _any_model("MixturePriorVAE")
    x, _ = _inputs(model)
    _raises(ValueError, "free_bits", model.loss, x, free_bits=0.5)
    model.loss(x, beta=0.5)


@pytest.mark.parametrize("name", ["VAE", "CVAE", "MixturePriorVAE", "ConvVAE"])
def test_x_in_is_what_the_encoder_sees_and_x_what_the_loss_scores(name):
    model = _any_model(name)
    x, y = _inputs(model)
    noisy = (x + 0.3).clamp(0, 1)
    torch.manual_seed(4)
    parts = model.loss(x, y, x_in=noisy)
    torch.manual_seed(4)
    mu, logvar = model.encode(noisy, y)
    z = model.reparameterize(mu, logvar)
    torch.testing.assert_close(parts.reconstruction, model.reconstruction_nll(model.decode(z, y), x))
    torch.manual_seed(4)
    assert not torch.equal(parts.total, model.loss(x, y).total)  # the same noise, another input
    _raises(ValueError, "x_in", model.loss, x, y, x_in=noisy[:2])
    _raises(ValueError, "x_in", model.loss, x, y, x_in=noisy * 2)


def test_loss_options_are_keyword_only():
    model = _any_model("VAE")
    x, _ = _inputs(model)
    with pytest.raises(TypeError):
        model.loss(x, None, 2.0)


# ---------------------------------------------------------------- issue 11 class 3: images converted as documented

def _variants(x):
    """The same pixel values as float64, float16, bfloat16, non-contiguous, and carrying a graph.
    float16/bfloat16 round the pixels, so those are compared with the rounded float32 images."""
    w = torch.tensor(1.0, requires_grad=True)
    wide = torch.cat([x, x], dim=-1)[..., :x.shape[-1]]  # a strided view: the same values, not contiguous
    assert not wide.is_contiguous()
    return {"float64": (x.double(), x, None), "float16": (x.half(), x.half().float(), None),
            "bfloat16": (x.bfloat16(), x.bfloat16().float(), None), "non-contiguous": (wide, x, None),
            "channels_last-like transpose": (x.transpose(-1, -2).contiguous().transpose(-1, -2), x, None),
            "with a graph": (x * w, x, w)}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("variant", ["float64", "float16", "bfloat16", "non-contiguous",
                                     "channels_last-like transpose", "with a graph"])
def test_images_of_any_float_dtype_layout_or_graph_are_converted(name, variant):
    """encode, decode, loss and reconstruct take the variant and give the float32 answer."""
    model = _any_model(name)
    x, y = _inputs(model)
    given, same_as, leaf = _variants(x)[variant]
    code, want_code = model.encode(given, y), model.encode(same_as, y)
    for got, want in zip(code if isinstance(code, tuple) else (code,), want_code if isinstance(want_code, tuple) else (want_code,)):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want)
    z = (want_code[0] if isinstance(want_code, tuple) else want_code).detach()
    torch.testing.assert_close(model.decode(z.to(given.dtype) if variant != "with a graph" else z, y),
                               model.decode(z, y), atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(model.reconstruct(given, y), model.reconstruct(same_as, y))
    torch.manual_seed(1)
    parts = model.loss(given, y)
    torch.manual_seed(1)
    torch.testing.assert_close(parts.total, model.loss(same_as, y).total)
    if leaf is not None:  # the graph is kept: a learner can differentiate with respect to the input
        parts.total.sum().backward()
        assert leaf.grad is not None and torch.isfinite(leaf.grad)


@pytest.mark.parametrize("variant", ["float64", "float16", "bfloat16", "non-contiguous", "with a graph"])
def test_fit_and_evaluate_take_converted_images_and_detach_them(variant):
    model_a, model_b = _any_model("VAE"), _any_model("VAE")
    x, _ = _inputs(model_a, n=16)
    given, same_as, leaf = _variants(x)[variant]
    kw = dict(steps=3, batch_size=8, device="cpu", progress=False)
    train.fit(model_a, given, test_images=given, **kw)
    train.fit(model_b, same_as, test_images=same_as, **kw)
    assert all(torch.equal(a, b) for a, b in zip(model_a.parameters(), model_b.parameters()))
    assert evaluate.negative_elbo(model_a, given) == evaluate.negative_elbo(model_a, same_as)
    per_image = evaluate.negative_elbo_per_example(model_a, given)
    assert not per_image.requires_grad
    if leaf is not None:
        assert leaf.grad is None  # nothing was backpropagated into the caller's graph


def test_a_double_model_converts_float32_images_to_float64():
    model = _any_model("VAE").double()
    x, _ = _inputs(model)
    mu, _ = model.encode(x)
    assert mu.dtype == torch.float64
    assert model.loss(x).total.dtype == torch.float64
    assert model.sample(2).dtype == torch.float64


@pytest.mark.parametrize("bad, exc", [(torch.zeros(2, 1, 4, 4, dtype=torch.int32), TypeError),
                                      (torch.zeros(2, 1, 4, 4, dtype=torch.complex64), TypeError),
                                      (torch.full((2, 1, 4, 4), float("nan"), dtype=torch.float16), ValueError),
                                      (torch.full((2, 1, 4, 4), 2.0, dtype=torch.float64), ValueError)])
def test_images_that_cannot_be_converted_are_refused_by_name(bad, exc):
    for name in ("VAE", "Autoencoder"):
        model = _any_model(name)
        _raises(exc, "x", model.encode, bad)
        _raises(exc, "x", model.loss, bad)
        _raises(exc, "x", model.reconstruct, bad)
        _raises(exc, "images", train.fit, model, bad, steps=1, progress=False)
