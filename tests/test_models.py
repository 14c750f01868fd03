"""Tests of vae_course.models: shapes, logits vs pixels, the reparameterization trick, the CVAE's
conditioning, linearity of the linear autoencoder, and input checks that name the argument."""
from __future__ import annotations

import math

import pytest
import torch

from vae_course import losses, models
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
    model = _model(models.VAE)
    x = _images(4)
    torch.manual_seed(11)
    parts = model.loss(x, beta=2.0)
    torch.manual_seed(11)
    logits, mu, logvar = model(x)
    torch.testing.assert_close(parts.reconstruction, losses.bernoulli_nll(logits, x))
    torch.testing.assert_close(parts.kl, losses.gaussian_kl(mu, logvar))
    torch.testing.assert_close(parts.total, parts.reconstruction + 2.0 * parts.kl)


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
    _raises(TypeError, "y", model.encode, x)
    _raises(ValueError, "y", model.sample, 2, y=10)
    _raises(TypeError, "y", model.sample, 2, y="3")
    _raises(ValueError, "y", model.sample, 2, y=torch.tensor([1, 2, 3]))


def test_sample_bad_n():
    for cls in (models.VAE, models.CVAE):
        model = _model(cls)
        for bad in (0, -1, 2.0, True):
            _raises(ValueError, "n", model.sample, bad)
