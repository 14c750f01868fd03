"""The NumPy VAE (notebook 06): every backward pass against PyTorch autograd and finite differences,
shape errors, Adam against torch.optim.Adam, training on the four 3x3 images, and the 1/K
variance of K decoder passes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from vae_course import gaussian, losses
from vae_course import numpy_vae as nv

# float64 everywhere: autograd agrees to rounding, finite differences (h = 1e-6) to ~1e-8.
AUTOGRAD_TOL = 1e-10
FD_TOL = 1e-6


def t(a: np.ndarray) -> torch.Tensor:
    """A float64 leaf tensor with requires_grad, holding a copy of ``a``."""
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def assert_close(numpy_grad, reference, tol, what):
    reference = reference.detach().numpy() if isinstance(reference, torch.Tensor) else reference
    err = np.abs(numpy_grad - reference).max() / max(1.0, np.abs(reference).max())
    assert err < tol, f"{what}: largest relative difference {err:.2e} (tolerance {tol:.0e})"


def check_layer(layer, x, torch_forward, rng):
    """``nv.gradient_check``: the layer's backward against autograd and finite differences."""
    errors = nv.gradient_check(layer, x, torch_forward, rng)
    assert set(errors) == {"forward", "input", *layer.params}
    for name, (autograd, finite) in errors.items():
        assert autograd < AUTOGRAD_TOL and finite < FD_TOL, f"{layer.label} {name}: {autograd:.1e}, {finite:.1e}"


def test_gradient_check_catches_a_wrong_backward():
    class WrongTanh(nv.Tanh):
        def backward(self, grad_out):
            return grad_out * (1.0 - self._cached()[0])  # forgot the square
    rng = np.random.default_rng(0)
    errors = nv.gradient_check(WrongTanh(), rng.standard_normal((3, 4)), lambda x, p: torch.tanh(x), rng)
    assert errors["input"][0] > 0.01 and errors["input"][1] > 0.01, errors
    assert errors["forward"][0] < 1e-15


# ------------------------------------------------------------------ layers vs autograd and finite differences

@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 5), d_in=st.integers(1, 6), d_out=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_dense_backward(n, d_in, d_out, seed):
    rng = np.random.default_rng(seed)
    layer = nv.Dense(d_in, d_out, rng)
    layer.params["b"] = rng.standard_normal(d_out)
    check_layer(layer, rng.standard_normal((n, d_in)), lambda x, p: x @ p["W"] + p["b"], rng)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 3), c_in=st.integers(1, 3), c_out=st.integers(1, 3), k=st.integers(1, 3),
       stride=st.integers(1, 2), extra_h=st.integers(0, 3), extra_w=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_conv2d_backward(n, c_in, c_out, k, stride, extra_h, extra_w, seed):
    rng = np.random.default_rng(seed)
    layer = nv.Conv2d(c_in, c_out, k, stride, rng)
    layer.params["b"] = rng.standard_normal(c_out)
    x = rng.standard_normal((n, c_in, k + extra_h, k + extra_w))
    check_layer(layer, x, lambda x, p: F.conv2d(x, p["W"], p["b"], stride=stride), rng)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 3), c_in=st.integers(1, 3), c_out=st.integers(1, 3), k=st.integers(1, 3),
       stride=st.integers(1, 2), h=st.integers(1, 3), w=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_conv_transpose2d_backward(n, c_in, c_out, k, stride, h, w, seed):
    rng = np.random.default_rng(seed)
    layer = nv.ConvTranspose2d(c_in, c_out, k, stride, rng)
    layer.params["b"] = rng.standard_normal(c_out)
    x = rng.standard_normal((n, c_in, h, w))
    check_layer(layer, x, lambda x, p: F.conv_transpose2d(x, p["W"], p["b"], stride=stride), rng)


def test_conv_transpose_is_the_transpose_of_conv():
    # <conv(x), y> == <x, conv_transpose(y)> with the same weights and no bias: the adjoint.
    rng = np.random.default_rng(0)
    conv, convt = nv.Conv2d(2, 3, 2, 2, rng), nv.ConvTranspose2d(3, 2, 2, 2, rng)
    convt.params["W"] = conv.params["W"].copy()  # (C_out, C_in, k, k) read as (C_in', C_out', k, k)
    x, y = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((2, 3, 2, 2))
    lhs = np.sum(conv.forward(x) * y)
    rhs = np.sum(x[:, :, :4, :4] * convt.forward(y))
    assert abs(lhs - rhs) < 1e-12


@pytest.mark.parametrize("layer, torch_fn", [(nv.Tanh(), torch.tanh), (nv.Softplus(), F.softplus)],
                         ids=["tanh", "softplus"])
def test_elementwise_backward(layer, torch_fn):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 2)) * 3
    check_layer(layer, x, lambda x, p: torch_fn(x), rng)


def test_softplus_is_stable_far_from_zero():
    layer = nv.Softplus()
    x = np.array([[-800.0, -30.0, 0.0, 30.0, 800.0]])
    y = layer.forward(x)
    assert np.all(np.isfinite(y)) and y[0, -1] == 800.0 and 0 < y[0, 1] < 1e-12
    assert_close(layer.backward(np.ones_like(x)), np.array([[0.0, math.exp(-30), 0.5, 1.0, 1.0]]), 1e-12, "sigmoid")


def test_gaussian_head_backward():
    rng = np.random.default_rng(2)
    head = nv.GaussianHead(4, 3, rng)
    h = rng.standard_normal((5, 4))
    mu, var = head.forward(h)
    g_mu, g_var = rng.standard_normal(mu.shape), rng.standard_normal(var.shape)
    head.zero_grad()
    grad_h = head.backward(g_mu, g_var)

    h_t = t(h)
    p = {name: t(layer.params[k]) for name, layer in (("mu", head.mean), ("a", head.pre_var)) for k in ("W",)}
    b = {name: t(layer.params["b"]) for name, layer in (("mu", head.mean), ("a", head.pre_var))}
    mu_t = h_t @ p["mu"] + b["mu"]
    var_t = F.softplus(h_t @ p["a"] + b["a"])
    assert_close(var, var_t, AUTOGRAD_TOL, "var = softplus(a)")
    ((mu_t * torch.from_numpy(g_mu)).sum() + (var_t * torch.from_numpy(g_var)).sum()).backward()
    assert_close(grad_h, h_t.grad, AUTOGRAD_TOL, "dL/dh")
    assert_close(head.mean.grads["W"], p["mu"].grad, AUTOGRAD_TOL, "dL/dW_mu")
    assert_close(head.pre_var.grads["W"], p["a"].grad, AUTOGRAD_TOL, "dL/dW_a")
    assert_close(head.pre_var.grads["b"], b["a"].grad, AUTOGRAD_TOL, "dL/db_a")

    def loss():
        m, v = head.forward(h)
        return float(np.sum(m * g_mu) + np.sum(v * g_var))
    assert_close(grad_h, nv.numerical_gradient(loss, h), FD_TOL, "dL/dh vs finite differences")
    assert_close(head.pre_var.grads["W"], nv.numerical_gradient(loss, head.pre_var.params["W"]), FD_TOL,
                 "dL/dW_a vs finite differences")


def test_reparameterize_backward():
    rng = np.random.default_rng(3)
    mu, var, eps = rng.standard_normal((4, 2)), rng.uniform(0.1, 2.0, (4, 2)), rng.standard_normal((4, 2))
    layer = nv.Reparameterize()
    z = layer.forward(mu, var, eps)
    G = rng.standard_normal(z.shape)
    g_mu, g_var = layer.backward(G)
    mu_t, var_t = t(mu), t(var)
    z_t = mu_t + var_t.sqrt() * torch.from_numpy(eps)
    assert_close(z, z_t, AUTOGRAD_TOL, "z")
    (z_t * torch.from_numpy(G)).sum().backward()
    assert_close(g_mu, mu_t.grad, AUTOGRAD_TOL, "dL/dmu")
    assert_close(g_var, var_t.grad, AUTOGRAD_TOL, "dL/dvar")
    assert_close(g_var, nv.numerical_gradient(lambda: float(np.sum(layer.forward(mu, var, eps) * G)), var), FD_TOL,
                 "dL/dvar vs finite differences")


def test_gaussian_kl_matches_the_package_and_notebook_03_gradients():
    rng = np.random.default_rng(4)
    mu, var = rng.standard_normal((6, 3)), rng.uniform(0.05, 3.0, (6, 3))
    layer = nv.GaussianKL()
    kl = layer.forward(mu, var)
    logvar = torch.tensor(np.log(var))
    closed = gaussian.kl(torch.tensor(mu), logvar).mean()
    assert abs(kl - float(closed)) < 1e-12
    g_mu, g_var = layer.backward(1.0)
    hand = gaussian.kl_gradients(torch.tensor(mu), logvar)  # notebook 03's derivation, per example
    assert_close(g_mu, hand.mu / len(mu), 1e-12, "dKL/dmu = mu")
    assert_close(g_var, hand.var / len(mu), 1e-12, "dKL/dvar = 1/2 - 1/(2 var)")
    mu_t, var_t = t(mu), t(var)
    (0.5 * (var_t - var_t.log() - 1 + mu_t**2).sum() / len(mu)).backward()
    assert_close(g_var, var_t.grad, AUTOGRAD_TOL, "dKL/dvar vs autograd")
    assert_close(g_var, nv.numerical_gradient(lambda: layer.forward(mu, var), var), FD_TOL, "dKL/dvar vs FD")


def test_squared_error_is_the_gaussian_nll():
    rng = np.random.default_rng(5)
    x_hat, x = rng.standard_normal((3, 3, 3)), rng.uniform(0, 1, (3, 3, 3))
    layer = nv.SquaredError(decoder_std=0.3)
    value = layer.forward(x_hat, x)
    reference = losses.gaussian_nll(torch.tensor(x_hat), torch.tensor(x), logvar=2 * math.log(0.3)).mean()
    assert abs(value - float(reference)) < 1e-10
    grad = layer.backward(1.0)
    x_hat_t = t(x_hat)
    losses.gaussian_nll(x_hat_t, torch.tensor(x), logvar=2 * math.log(0.3)).mean().backward()
    assert_close(grad, x_hat_t.grad, AUTOGRAD_TOL, "dL/dx_hat vs autograd")
    assert_close(grad, nv.numerical_gradient(lambda: layer.forward(x_hat, x), x_hat), FD_TOL, "dL/dx_hat vs FD")


# ------------------------------------------------------------------ the whole model

def torch_negative_elbo(model: nv.VAE, x: np.ndarray, eps: np.ndarray):
    """The same loss written with torch operations on copies of the model's parameters."""
    params = [{k: t(v) for k, v in layer.params.items()} for layer in model.parameter_layers()]
    enc, head_mu, head_a, dec1, dec2 = params
    x_t = torch.tensor(x).flatten(1)
    h = torch.tanh(x_t @ enc["W"] + enc["b"])
    mu, var = h @ head_mu["W"] + head_mu["b"], F.softplus(h @ head_a["W"] + head_a["b"])
    rec = 0.0
    for e in torch.from_numpy(eps):
        z = mu + var.sqrt() * e
        x_hat = torch.tanh(z @ dec1["W"] + dec1["b"]) @ dec2["W"] + dec2["b"]
        rec = rec + losses.gaussian_nll(x_hat, x_t, logvar=2 * math.log(model.reconstruction.decoder_std)).mean() / len(eps)
    kl = gaussian.kl(mu, var.log()).mean()
    (rec + kl).backward()
    return float((rec + kl).detach()), params


@pytest.mark.parametrize("k", [1, 3])
def test_vae_gradients_match_autograd_and_finite_differences(k):
    model = nv.make_vae(seed=7)
    rng = np.random.default_rng(7)
    x = nv.toy_images_3x3()
    eps = rng.standard_normal((k, 4, 2))
    parts = model.loss_and_gradients(x, eps)
    assert abs(parts["total"] - parts["reconstruction"] - parts["kl"]) < 1e-12 and parts["kl"] > 0
    total, params = torch_negative_elbo(model, x, eps)
    assert abs(parts["total"] - total) < 1e-10
    for layer, torch_params in zip(model.parameter_layers(), params):
        for name in layer.params:
            assert_close(layer.grads[name], torch_params[name].grad, AUTOGRAD_TOL, f"{layer.label} {name}")
    grads = {id(layer): {k: g.copy() for k, g in layer.grads.items()} for layer in model.parameter_layers()}
    for layer in model.parameter_layers():
        numeric = nv.numerical_gradient(lambda: model.loss_and_gradients(x, eps)["total"], layer.params["b"])
        assert_close(grads[id(layer)]["b"], numeric, FD_TOL, f"{layer.label} b vs finite differences")


def test_conv_vae_decoder_gradients_match_autograd():
    # A conv decoder: z -> Dense -> Tanh -> (4, 2, 2) -> ConvTranspose2d(k=2) -> (1, 3, 3) image.
    rng = np.random.default_rng(8)
    decoder = nv.Sequential([nv.Dense(2, 16, rng), nv.Tanh(), nv.Reshape((16,), (4, 2, 2)),
                             nv.ConvTranspose2d(4, 1, 2, 1, rng), nv.Reshape((1, 3, 3), (3, 3))])
    z = rng.standard_normal((5, 2))
    out = decoder.forward(z)
    assert out.shape == (5, 3, 3)
    G = rng.standard_normal(out.shape)
    decoder.zero_grad()
    grad_z = decoder.backward(G)
    dense, convt = decoder.layers[0], decoder.layers[3]
    z_t, W1, b1, W2, b2 = t(z), t(dense.params["W"]), t(dense.params["b"]), t(convt.params["W"]), t(convt.params["b"])
    y = F.conv_transpose2d(torch.tanh(z_t @ W1 + b1).reshape(5, 4, 2, 2), W2, b2).reshape(5, 3, 3)
    (y * torch.from_numpy(G)).sum().backward()
    assert_close(grad_z, z_t.grad, AUTOGRAD_TOL, "dL/dz")
    assert_close(dense.grads["W"], W1.grad, AUTOGRAD_TOL, "dense W")
    assert_close(convt.grads["W"], W2.grad, AUTOGRAD_TOL, "conv-transpose W")


# ------------------------------------------------------------------ bad input

def _layers_with_bad_input():
    rng = np.random.default_rng(0)
    yield nv.Dense(9, 8, rng, name="encoder.dense"), (np.zeros((4, 8)),), "Dense 'encoder.dense'", "(N, 9)", "(4, 8)"
    yield nv.Conv2d(1, 2, 2, 1, rng, name="c"), (np.zeros((4, 3, 3)),), "Conv2d 'c'", "(N, 1, H, W)", "(4, 3, 3)"
    yield nv.Conv2d(1, 2, 3, 1, rng, name="c"), (np.zeros((4, 1, 2, 5)),), "Conv2d 'c'", "H, W >= 3", "(4, 1, 2, 5)"
    yield nv.ConvTranspose2d(2, 1, 2, 2, rng), (np.zeros((4, 1, 2, 2)),), "ConvTranspose2d", "(N, 2, H, W)", "(4, 1, 2, 2)"
    yield nv.Reshape((3, 3), (9,), name="flatten"), (np.zeros((4, 9)),), "Reshape 'flatten'", "(N, 3, 3)", "(4, 9)"
    yield nv.Reparameterize(name="sampler"), (np.zeros((4, 2)), np.ones((4, 2)), np.zeros((4, 3))), \
        "Reparameterize 'sampler'", "(4, 2)", "(4, 3)"
    yield nv.GaussianKL(), (np.zeros((4, 2)), np.ones((2, 4))), "GaussianKL", "(4, 2)", "(2, 4)"
    yield nv.SquaredError(), (np.zeros((4, 3, 3)), np.zeros((4, 9))), "SquaredError", "(4, 3, 3)", "(4, 9)"
    yield nv.GaussianHead(8, 2, rng, name="head"), (np.zeros((4, 9)),), "Dense 'head.mean'", "(N, 8)", "(4, 9)"


@pytest.mark.parametrize("layer, args, name, expected, received", list(_layers_with_bad_input()),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_wrong_shapes_name_the_layer_and_both_shapes(layer, args, name, expected, received):
    with pytest.raises(ValueError) as info:
        layer.forward(*args)
    message = str(info.value)
    assert message.startswith(name) and expected in message and received in message, message


def test_wrong_gradient_shape_and_order_are_reported():
    rng = np.random.default_rng(0)
    layer = nv.Dense(3, 2, rng, name="d")
    with pytest.raises(RuntimeError, match="Dense 'd': backward"):
        layer.backward(np.zeros((1, 2)))
    layer.forward(np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"Dense 'd': expected grad_out of shape \(5, 2\), got \(5, 3\)"):
        layer.backward(np.zeros((5, 3)))
    with pytest.raises(TypeError, match="Dense 'd': expected input as a floating-point NumPy array, got Tensor"):
        layer.forward(torch.zeros(5, 3))
    model = nv.make_vae()
    with pytest.raises(ValueError, match=r"VAE: expected eps of shape \(S, 4, 2\), got \(4, 2\)"):
        model.loss_and_gradients(nv.toy_images_3x3(), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="n_decoder_passes"):
        model.train_step(nv.toy_images_3x3(), nv.Adam(model.parameter_layers()), rng, 0)


# ------------------------------------------------------------------ Adam

def test_adam_matches_torch_optim_adam():
    rng = np.random.default_rng(9)
    layer = nv.Dense(4, 3, rng)
    w = torch.tensor(layer.params["W"], requires_grad=True)
    b = torch.tensor(layer.params["b"], requires_grad=True)
    ours = nv.Adam([layer], lr=0.05, betas=(0.8, 0.99), eps=1e-6)
    theirs = torch.optim.Adam([w, b], lr=0.05, betas=(0.8, 0.99), eps=1e-6)
    x, target = rng.standard_normal((6, 4)), rng.standard_normal((6, 3))
    for _ in range(6):
        y = layer.forward(x)
        layer.zero_grad()
        layer.backward(2 * (y - target) / len(x))
        ours.step()
        theirs.zero_grad()
        ((torch.from_numpy(x) @ w + b - torch.from_numpy(target)) ** 2).sum(1).mean().backward()
        theirs.step()
        assert_close(layer.params["W"], w, 1e-12, "W after an Adam step")
        assert_close(layer.params["b"], b, 1e-12, "b after an Adam step")
    assert not np.allclose(layer.params["W"], nv.Dense(4, 3, np.random.default_rng(9)).params["W"])


# ------------------------------------------------------------------ training on the four images

@pytest.fixture(scope="module")
def trained():
    model = nv.make_vae(seed=0)
    optimizer = nv.Adam(model.parameter_layers(), lr=0.01)
    rng = np.random.default_rng(0)
    x = nv.toy_images_3x3()
    history = [model.train_step(x, optimizer, rng, n_decoder_passes=4)["total"] for _ in range(2000)]
    return model, x, history


def test_training_lowers_the_loss_and_reconstructs_all_four_images(trained):
    model, x, history = trained
    assert np.mean(history[-100:]) < np.mean(history[:100]) - 10, (history[:3], history[-3:])
    mu, _ = model.encode(x)
    error = np.abs(model.decode(mu) - x).max(axis=(1, 2))
    assert np.all(error < 0.25), f"largest pixel error per image: {error}"


def test_latent_codes_separate_the_four_images(trained):
    model, x, _ = trained
    mu, var = model.encode(x)
    rng = np.random.default_rng(1)
    z = mu[:, None] + np.sqrt(var[:, None]) * rng.standard_normal((4, 500, 2))  # 500 samples of each q(z|x_i)
    log_q = -0.5 * (((z[:, :, None] - mu) ** 2) / var + np.log(var)).sum(-1)   # (4 images, 500, 4 posteriors)
    accuracy = (log_q.argmax(-1) == np.arange(4)[:, None]).mean()
    assert accuracy > 0.95, f"only {accuracy:.1%} of samples of q(z|x_i) are most likely under q(z|x_i)"


# ------------------------------------------------------------------ K decoder passes

def test_k_decoder_passes_divide_the_gradient_variance_by_k():
    model = nv.make_vae(seed=3)
    x = nv.toy_images_3x3()
    rng = np.random.default_rng(3)
    repeats = 400
    mean_1, var_1 = nv.gradient_variance(model, x, 1, repeats, rng)
    mean_8, var_8 = nv.gradient_variance(model, x, 8, repeats, rng)
    # The variance estimates have a relative error of roughly sqrt(2 / repeats) = 7% each.
    assert 8 / 1.5 < var_1 / var_8 < 8 * 1.5, f"variance ratio {var_1 / var_8:.2f}, expected about 8"
    # Same mean: averaging K passes is unbiased. E||mean_1 - mean_8||^2 = (var_1 + var_8) / repeats.
    gap = np.sum((mean_1 - mean_8) ** 2) / ((var_1 + var_8) / repeats)
    assert gap < 3, f"the mean gradients differ by {gap:.1f} times their expected squared distance"


def test_manifold_grid_tile_lines_for_tiny_images():
    # The notebook's 9 x 9 grid of 3x3 images: lines between the tiles, ticks at the tiles' centres.
    import matplotlib.pyplot as plt

    from vae_course import plots

    fig = plots.manifold_grid(lambda z: torch.zeros(len(z), 1, 3, 3), n=5, tile_lines=True)
    ax = fig.axes[0]
    assert len(ax.lines) == 2 * 4
    assert list(ax.get_xticks()) == [1.0, 4.0, 10.0, 13.0]   # tiles 0, 1, 3, 4; pixel k spans k +- 0.5
    plt.close(fig)
