"""Bad inputs across the public API: each is rejected with TypeError or ValueError whose message
names the argument (never a raw traceback from deep inside torch or pathlib).

The first parametrized test is the cross-API sweep; each case is ``(callable, exception type,
argument name)``. Then issue 11 class 3 ("Inputs"), one test per area: numbers (NumPy and 0-d
tensor scalars accepted wherever a number is, with the same result as the plain number; bad ones
refused naming the argument, what was expected and what was received), the plotting helpers'
and the widgets' argument checks, and widgets that never clamp a value the learner typed.
"""
from __future__ import annotations

import inspect
import math
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vae_course import data, evaluate, gaussian, linear_gaussian, losses, models, numpy_vae, plots, stats, train, widgets  # noqa: E402

SHAPE = (1, 4, 4)


def _vae(**kw):
    torch.manual_seed(0)
    return models.VAE(**{"image_shape": SHAPE, "hidden_dims": (8,), "latent_dim": 2, **kw})


def _cvae():
    torch.manual_seed(0)
    return models.CVAE(image_shape=SHAPE, hidden_dims=(8,), latent_dim=2, num_classes=3)


X = torch.rand(6, *SHAPE)
Y = torch.tensor([0, 1, 2, 0, 1, 2])


# fit's training budget: ``steps`` (optimizer steps) once fit takes it, else ``epochs``.
BUDGET = "steps" if "steps" in inspect.signature(train.fit).parameters else "epochs"


def _fit(model=None, images=X, labels=None, **kw):
    kw = {BUDGET: 1, "batch_size": 4, "device": "cpu", "progress": False, **kw}
    return train.fit(model if model is not None else _vae(), images, labels, **kw)


def _with_nan(x):
    x = x.clone()
    x[1, 0, 2, 2] = float("nan")
    return x


CASES = {
    # fit: data
    "fit images 2-D": (lambda: _fit(images=X.flatten(1)), ValueError, "images"),
    "fit images uint8": (lambda: _fit(images=(X * 255).to(torch.uint8)), TypeError, "images"),
    "fit images numpy": (lambda: _fit(images=X.numpy()), TypeError, "images"),
    "fit images above 1": (lambda: _fit(images=X * 2), ValueError, "images"),
    "fit images negative": (lambda: _fit(images=X - 1), ValueError, "images"),
    "fit images NaN": (lambda: _fit(images=_with_nan(X)), ValueError, "images"),
    "fit empty batch": (lambda: _fit(images=X[:0]), ValueError, "images"),
    "fit test_images wrong size": (lambda: _fit(test_images=torch.rand(2, 1, 5, 5)), ValueError, "test_images"),
    "fit CVAE labels out of range": (lambda: _fit(_cvae(), labels=Y + 1), ValueError, "labels"),
    "fit CVAE labels negative": (lambda: _fit(_cvae(), labels=Y - 1), ValueError, "labels"),
    "fit CVAE labels float": (lambda: _fit(_cvae(), labels=Y.float()), TypeError, "labels"),
    "fit CVAE labels missing": (lambda: _fit(_cvae()), ValueError, "labels"),
    "fit CVAE labels too few": (lambda: _fit(_cvae(), labels=Y[:4]), ValueError, "labels"),
    # fit: settings
    "fit device 'gpu'": (lambda: _fit(device="gpu"), ValueError, "device"),
    "fit device cuda:7 absent": (lambda: _fit(device="cuda:7" if not torch.cuda.is_available() else "cuda:99"),
                                 ValueError, "device"),
    "fit device int": (lambda: _fit(device=[0]), TypeError, "device"),
    f"fit {BUDGET} 0": (lambda: _fit(**{BUDGET: 0}), ValueError, BUDGET),
    f"fit {BUDGET} str": (lambda: _fit(**{BUDGET: "3"}), ValueError, BUDGET),
    "fit corrupt not callable": (lambda: _fit(models.Autoencoder(image_shape=SHAPE, hidden_dims=(8,), latent_dim=2),
                                              corrupt=0.5), TypeError, "corrupt"),
    "fit batch_size 0": (lambda: _fit(batch_size=0), ValueError, "batch_size"),
    "fit lr NaN": (lambda: _fit(lr=float("nan")), ValueError, "lr"),
    "fit beta negative": (lambda: _fit(beta=-1.0), ValueError, "beta"),
    "fit model not a model": (lambda: _fit(model="vae"), TypeError, "model"),
    "fit checkpoint not a path": (lambda: _fit(checkpoint=123), TypeError, "checkpoint"),
    "fit resume_from not a path": (lambda: _fit(resume_from=1.5, **{BUDGET: 2}), TypeError, "resume_from"),
    # models
    "VAE latent_dim 0": (lambda: _vae(latent_dim=0), ValueError, "latent_dim"),
    "VAE hidden_dims int": (lambda: _vae(hidden_dims=400), ValueError, "hidden_dims"),
    "VAE likelihood": (lambda: _vae(likelihood="poisson"), ValueError, "likelihood"),
    "VAE activation": (lambda: _vae(activation="swish"), ValueError, "activation"),
    "encode wrong image shape": (lambda: _vae().encode(torch.rand(3, 1, 5, 5)), ValueError, "x"),
    "encode empty batch": (lambda: _vae().encode(torch.rand(0, *SHAPE)), ValueError, "x"),
    "decode wrong latent size": (lambda: _vae().decode(torch.zeros(3, 5)), ValueError, "z"),
    "decode int latents": (lambda: _vae().decode(torch.zeros(3, 2, dtype=torch.int64)), TypeError, "z"),
    "sample n 0": (lambda: _vae().sample(0), ValueError, "n"),
    "CVAE sample label 3 of 3": (lambda: _cvae().sample(2, 3), ValueError, "y"),
    "CVAE num_classes 0": (lambda: models.CVAE(image_shape=SHAPE, num_classes=0), ValueError, "num_classes"),
    # losses
    "gaussian_kl int mu": (lambda: gaussian.kl(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3)),
                           TypeError, "mu"),
    "gaussian_kl logvar shape": (lambda: gaussian.kl(torch.zeros(2, 3), torch.zeros(2, 4)), ValueError, "logvar"),
    "bernoulli_nll x above 1": (lambda: losses.bernoulli_nll(torch.zeros(2, 4), torch.full((2, 4), 1.5)),
                                ValueError, "x"),
    "bernoulli_nll x NaN": (lambda: losses.bernoulli_nll(torch.zeros(2, 4), torch.full((2, 4), float("nan"))),
                            ValueError, "x"),
    "negative_elbo beta NaN": (lambda: losses.negative_elbo(torch.zeros(2, 4), torch.rand(2, 4), torch.zeros(2, 2),
                                                            torch.zeros(2, 2), beta=float("nan")), ValueError, "beta"),
    # evaluate
    "iwae k 0": (lambda: evaluate.importance_weighted_nll(_vae(), X, k=0), ValueError, "k"),
    "iwae empty images": (lambda: evaluate.importance_weighted_nll(_vae(), X[:0]), ValueError, "images"),
    "negative_elbo of an autoencoder": (lambda: evaluate.negative_elbo(models.Autoencoder(image_shape=SHAPE), X),
                                        TypeError, "model"),
    "negative_elbo CVAE labels wrong": (lambda: evaluate.negative_elbo(_cvae(), X, Y[:3]), ValueError, "labels"),
    "iwae batch_size 0": (lambda: evaluate.importance_weighted_nll(_vae(), X, batch_size=0), ValueError, "batch_size"),
    # checkpoints
    "load_checkpoint path int": (lambda: train.load_checkpoint(123), TypeError, "path"),
    "load_checkpoint into a non-model": (lambda: train.load_checkpoint(train.save_checkpoint(_vae(), _tmp() / "m.pt"),
                                                                       "vae"), TypeError, "model"),
    # data and plots
    "load_mnist split": (lambda: data.load_mnist("valid"), ValueError, "split"),
    "load_mnist plain http": (lambda: data.load_mnist(mirrors="http://example.com/"), ValueError, "mirrors"),
    "add_gaussian_noise std": (lambda: data.add_gaussian_noise(X, -0.1), ValueError, "std"),
    "image_grid 5-D images": (lambda: plots.image_grid(torch.rand(2, 1, 1, 4, 4)), ValueError, "images"),
    "mean_and_stderr no values": (lambda: stats.mean_and_stderr([]), ValueError, "values"),
    "mean_and_stderr not numbers": (lambda: stats.mean_and_stderr(["a", "b"]), ValueError, "values"),
    "CVAE sample label np.int64 out of range": (lambda: _cvae().sample(2, np.int64(3)), ValueError, "y"),
    "CVAE sample label float": (lambda: _cvae().sample(2, 1.0), ValueError, "y"),
}

_TMP = []


def _tmp():
    return _TMP[-1]


@pytest.fixture(autouse=True)
def _tmp_dir(tmp_path):
    _TMP.append(tmp_path)
    yield
    _TMP.pop()


def test_at_least_twenty_cases_across_the_api():
    assert len(CASES) >= 20
    kinds = {"fit", "VAE", "encode", "decode", "gaussian_kl", "bernoulli_nll", "iwae", "load_mnist"}
    assert kinds <= {name.split()[0] for name in CASES}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_with_a_message_naming_the_argument(case):
    call, error, argument = CASES[case]
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    # the argument's name, as a word, before a colon or a space ("labels: expected ...")
    assert re.search(rf"(^|\W){re.escape(argument)}\b", message), message
    assert "expected" in message or "needs" in message or "no " in message, message


# ======================================================================= issue 11 class 3: inputs
# ---------------------------------------------------------------- numbers accepted


def _params(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _trained(**kw) -> torch.Tensor:
    """The parameters after a tiny fit (2 budget units) with these arguments."""
    model = _vae()
    _fit(model, **{BUDGET: 2, **kw})
    return _params(model)


def _roundtrip_config(model) -> str:
    """The configuration of ``model`` after a save and a load, as text (an np.int64 reads differently)."""
    path = train.save_checkpoint(model, _tmp() / "m.pt")
    return repr(train.load_checkpoint(path).config)


def _iwae(**kw):
    return evaluate.importance_weighted_nll(_vae(), X, **{"k": 3, **kw})


def _noise(std):
    return data.add_gaussian_noise(X, std, generator=torch.Generator().manual_seed(0))


def _kl_explorer(**kw):
    w = widgets.kl_explorer(**kw)
    return w.kl, w.mu.value, w.sigma.value


def _sliders(**kw):
    w = widgets.latent_sliders(_vae(latent_dim=3), **kw)
    return w.dims, [(s.min, s.max) for s in w.sliders]


# name: (call with a NumPy or 0-d tensor scalar, the same call with the plain Python number);
# both must give the same result, bit for bit.
ACCEPTED = {
    f"fit {BUDGET} 0-d tensor": (lambda: _trained(**{BUDGET: torch.tensor(2)}), lambda: _trained(**{BUDGET: 2})),
    f"fit {BUDGET} np.int64": (lambda: _trained(**{BUDGET: np.int64(2)}), lambda: _trained(**{BUDGET: 2})),
    "fit batch_size np.int32": (lambda: _trained(batch_size=np.int32(4)), lambda: _trained(batch_size=4)),
    "fit lr np.float32": (lambda: _trained(lr=np.float32(1e-3)), lambda: _trained(lr=float(np.float32(1e-3)))),
    "fit lr 0-d tensor with grad": (lambda: _trained(lr=torch.tensor(0.01, requires_grad=True)),
                                    lambda: _trained(lr=float(torch.tensor(0.01)))),
    "fit beta 0-d tensor": (lambda: _trained(beta=torch.tensor(0.5)), lambda: _trained(beta=0.5)),
    "fit free_bits np.float64": (lambda: _trained(free_bits=np.float64(0.1)), lambda: _trained(free_bits=0.1)),
    "fit seed np.int64": (lambda: _trained(seed=np.int64(3)), lambda: _trained(seed=3)),
    "fit seed 0-d tensor": (lambda: _trained(seed=torch.tensor(3)), lambda: _trained(seed=3)),
    "VAE latent_dim 0-d tensor": (lambda: repr(_vae(latent_dim=torch.tensor(3)).config),
                                  lambda: repr(_vae(latent_dim=3).config)),
    "VAE latent_dim np.int64 saved and loaded": (lambda: _roundtrip_config(_vae(latent_dim=np.int64(3))),
                                                 lambda: _roundtrip_config(_vae(latent_dim=3))),
    "CVAE num_classes np.int64 saved and loaded": (
        lambda: _roundtrip_config(models.CVAE(image_shape=SHAPE, hidden_dims=(8,), latent_dim=2, num_classes=np.int64(3))),
        lambda: _roundtrip_config(models.CVAE(image_shape=SHAPE, hidden_dims=(8,), latent_dim=2, num_classes=3))),
    "VAE hidden_dims and image_shape np.int64": (
        lambda: repr(_vae(image_shape=(1, np.int64(4), 4), hidden_dims=(np.int64(8),)).config),
        lambda: repr(_vae(image_shape=(1, 4, 4), hidden_dims=(8,)).config)),
    "sample n 0-d tensor": (lambda: _vae().sample(torch.tensor(3), generator=torch.Generator().manual_seed(0)),
                            lambda: _vae().sample(3, generator=torch.Generator().manual_seed(0))),
    "iwae k np.int64, seed 0-d tensor": (lambda: _iwae(k=np.int64(3), seed=torch.tensor(1)), lambda: _iwae(k=3, seed=1)),
    "negative_elbo batch_size 0-d tensor": (lambda: evaluate.negative_elbo(_vae(), X, batch_size=torch.tensor(4)).total,
                                            lambda: evaluate.negative_elbo(_vae(), X, batch_size=4).total),
    "active_units threshold np.float32": (lambda: evaluate.active_units(_vae(), X, threshold=np.float32(0.5)).count,
                                          lambda: evaluate.active_units(_vae(), X, threshold=float(np.float32(0.5))).count),
    "add_gaussian_noise std np.float32": (lambda: _noise(np.float32(0.25)), lambda: _noise(0.25)),
    "free_bits_kl free_bits 0-d tensor": (lambda: losses.free_bits_kl(torch.rand(3, 2, generator=torch.Generator().manual_seed(0)),
                                                                      torch.tensor(0.5)),
                                          lambda: losses.free_bits_kl(torch.rand(3, 2, generator=torch.Generator().manual_seed(0)),
                                                                      0.5)),
    "linear_warmup np scalars": (lambda: train.linear_warmup(np.int64(10), np.float32(0.0), torch.tensor(1.0))(4),
                                 lambda: train.linear_warmup(10, 0.0, 1.0)(4)),
    "gaussian_quantiles n, low, high": (lambda: plots.gaussian_quantiles(np.int64(5), np.float32(0.25), torch.tensor(0.75)),
                                        lambda: plots.gaussian_quantiles(5, float(np.float32(0.25)), float(torch.tensor(0.75)))),
    "tile ncols np.int64": (lambda: plots.tile(X, ncols=np.int64(4)), lambda: plots.tile(X, ncols=4)),
    "latent_sliders dims array, limit np.float32": (lambda: _sliders(dims=np.array([2, 0]), limit=np.float32(2.5)),
                                                    lambda: _sliders(dims=[2, 0], limit=2.5)),
    "linear_gaussian noise_var np.float32, seed np.int64": (
        lambda: linear_gaussian.random_model(noise_var=np.float32(0.5), seed=np.int64(3)).W,
        lambda: linear_gaussian.random_model(noise_var=0.5, seed=3).W),
    "numpy_vae.make_vae hidden np.int64, decoder_std np.float32, seed 0-d tensor": (
        lambda: numpy_vae.make_vae(hidden=np.int64(5), decoder_std=np.float32(0.25), seed=torch.tensor(2)).encoder.layers[1].params["W"],
        lambda: numpy_vae.make_vae(hidden=5, decoder_std=0.25, seed=2).encoder.layers[1].params["W"]),
    "ConvVAE channels np.int64": (lambda: repr(models.ConvVAE(image_shape=(1, 12, 12), channels=(np.int64(4), 8), latent_dim=2).config),
                                  lambda: repr(models.ConvVAE(image_shape=(1, 12, 12), channels=(4, 8), latent_dim=2).config)),
    "CVAE sample y np.int64": (lambda: _cvae().sample(2, np.int64(1), generator=torch.Generator().manual_seed(0)),
                               lambda: _cvae().sample(2, 1, generator=torch.Generator().manual_seed(0))),
    "CVAE sample y 0-d tensor": (lambda: _cvae().sample(2, torch.tensor(2), generator=torch.Generator().manual_seed(0)),
                                 lambda: _cvae().sample(2, 2, generator=torch.Generator().manual_seed(0))),
    "mean_and_stderr of a list and an array": (lambda: torch.stack(stats.mean_and_stderr([1.0, 2.0, 4.0])),
                                               lambda: torch.stack(stats.mean_and_stderr(np.array([1.0, 2.0, 4.0])))),
    "kl_explorer mu np.float64, sigma 0-d tensor": (lambda: _kl_explorer(mu=np.float64(1.5), sigma=torch.tensor(0.5)),
                                                    lambda: _kl_explorer(mu=1.5, sigma=0.5)),
}


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_numpy_and_0d_tensor_scalars_are_accepted_wherever_a_number_is(case):
    with_scalar, with_number = ACCEPTED[case]
    a, b = with_scalar(), with_number()
    assert _same(a, b), f"{case}: {a!r} differs from {b!r}"


# ---------------------------------------------------------------- numbers refused

COUNT = [True, 2.5, 2.0, "3", None, float("nan"), 0, -1, torch.tensor(2.0), torch.tensor([2]), np.array([2]),
         torch.tensor(True), np.bool_(True)]
POSITIVE = [True, "0.1", None, float("nan"), float("inf"), np.float32("nan"), torch.tensor(float("inf")), 0.0, -0.5,
            torch.tensor([0.1]), 1j]
NON_NEGATIVE = [True, "0.1", float("nan"), float("inf"), -0.5, torch.tensor(-1.0), np.array([0.1]), np.bool_(False)]
SEED = [-1, 2**63, 1.5, "0", True, torch.tensor(1.0), np.array([1])]
FINITE = [float("nan"), float("-inf"), "1", True, None, torch.tensor([0.0])]

# argument: (call with the value, the kinds of bad values). The argument's name must be in the message.
NUMERIC_ARGUMENTS = {
    BUDGET: (lambda v: _fit(**{BUDGET: v}), COUNT),
    "batch_size": (lambda v: _fit(batch_size=v), COUNT),
    "lr": (lambda v: _fit(lr=v), POSITIVE),
    "beta": (lambda v: _fit(beta=v), NON_NEGATIVE),
    "free_bits": (lambda v: _fit(free_bits=v), NON_NEGATIVE),
    "seed": (lambda v: _fit(seed=v), SEED),
    "latent_dim": (lambda v: _vae(latent_dim=v), COUNT),
    "num_classes": (lambda v: models.CVAE(image_shape=SHAPE, hidden_dims=(8,), latent_dim=2, num_classes=v), COUNT),
    "n": (lambda v: _vae().sample(v), COUNT),
    "k": (lambda v: evaluate.importance_weighted_nll(_vae(), X, k=v), COUNT),
    "seed ": (lambda v: evaluate.importance_weighted_nll(_vae(), X, k=2, seed=v), SEED),  # evaluate's seed
    "batch_size ": (lambda v: evaluate.negative_elbo(_vae(), X, batch_size=v), COUNT),  # evaluate's batch_size
    "threshold": (lambda v: evaluate.active_units(_vae(), X, threshold=v), POSITIVE),
    "std": (lambda v: data.add_gaussian_noise(X, v), NON_NEGATIVE),
    "free_bits ": (lambda v: losses.free_bits_kl(torch.rand(3, 2), v), NON_NEGATIVE),  # losses' free_bits
    "steps": (lambda v: train.linear_warmup(v), COUNT),
    "ncols": (lambda v: plots.image_grid(X, ncols=v), COUNT),
    "n  ": (lambda v: plots.gaussian_quantiles(v), COUNT),  # plots' n
    "low": (lambda v: plots.gaussian_quantiles(5, low=v), NON_NEGATIVE + [0.0, 1.0]),
    "limit": (lambda v: widgets.latent_sliders(_vae(), limit=v), POSITIVE),
    "sigma": (lambda v: widgets.kl_explorer(sigma=v), POSITIVE),
    "mu": (lambda v: widgets.kl_explorer(mu=v), FINITE),
    # the teaching models of notebooks 02, 06 and 08
    "noise_var": (lambda v: linear_gaussian.random_model(noise_var=v), POSITIVE),
    "seed  ": (lambda v: linear_gaussian.random_model(seed=v), SEED),  # linear_gaussian's seed
    "seed   ": (lambda v: linear_gaussian.sample(3, torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64),
                                                0.5, seed=v), SEED),
    "n_samples": (lambda v: linear_gaussian.elbo_monte_carlo(torch.zeros(1, 2, dtype=torch.float64), torch.eye(2, dtype=torch.float64),
                                                             torch.zeros(2, dtype=torch.float64), 0.5,
                                                             torch.zeros(1, 2, dtype=torch.float64),
                                                             q_logvar=torch.zeros(1, 2, dtype=torch.float64), n_samples=v), COUNT),
    "n_samples ": (lambda v: gaussian.monte_carlo_kl_estimate(torch.zeros(2, 3), torch.zeros(2, 3), n_samples=v),
                   COUNT + [1]),  # the standard error needs two samples
    "hidden": (lambda v: numpy_vae.make_vae(hidden=v), COUNT),
    "latent_dim ": (lambda v: numpy_vae.make_vae(latent_dim=v), COUNT),
    "decoder_std": (lambda v: numpy_vae.make_vae(decoder_std=v), POSITIVE),
    "seed    ": (lambda v: numpy_vae.make_vae(seed=v), SEED),
    "channels": (lambda v: models.ConvVAE(image_shape=(1, 12, 12), channels=(4, v), latent_dim=2), COUNT),
}
NUMERIC_CASES = [pytest.param(arg, value, id=f"{arg.strip()}={value!r}")
                 for arg, (_, values) in NUMERIC_ARGUMENTS.items() for value in values]


@pytest.mark.parametrize("argument, value", NUMERIC_CASES)
def test_a_bad_number_is_refused_naming_the_argument_expected_and_received(argument, value):
    call, _ = NUMERIC_ARGUMENTS[argument]
    with pytest.raises((TypeError, ValueError)) as info:
        call(value)
    message = str(info.value)
    assert re.search(rf"(^|\W){re.escape(argument.strip())}\b", message), message
    assert "expected" in message, message
    assert type(value).__name__ in message, f"the received value's type is not named: {message}"


# ---------------------------------------------------------------- plots' arguments


def _decode(z):
    return torch.sigmoid(z[:, :1]).view(-1, 1, 1, 1).expand(-1, 1, 3, 3)


def _history(parts=("total",)):
    h = train.History()
    for part in parts:
        h.train[part] += [3.0, 2.0]
    return h


PLOT_CASES = {
    "image_grid images NaN": (lambda: plots.image_grid(_with_nan(X)), ValueError, "images"),
    "image_grid images above 1": (lambda: plots.image_grid(X * 2), ValueError, "images"),
    "image_grid images empty": (lambda: plots.image_grid(X[:0]), ValueError, "images"),
    "image_grid images strings": (lambda: plots.image_grid([["a"]]), TypeError, "images"),
    "image_grid ncols 0": (lambda: plots.image_grid(X, ncols=0), ValueError, "ncols"),
    "image_grid labels too few": (lambda: plots.image_grid(X, labels=[1, 2]), ValueError, "labels"),
    "image_grid size negative": (lambda: plots.image_grid(X, size=-1.0), ValueError, "size"),
    "tile ncols 1.5": (lambda: plots.tile(X, ncols=1.5), ValueError, "ncols"),
    "tile pad negative": (lambda: plots.tile(X, ncols=2, pad=-1), ValueError, "pad"),
    "tile pad_value 2": (lambda: plots.tile(X, ncols=2, pad_value=2.0), ValueError, "pad_value"),
    "image_rows empty": (lambda: plots.image_rows({}), ValueError, "rows"),
    "image_rows a row of NaN": (lambda: plots.image_rows({"noisy": _with_nan(X)}), ValueError, "rows['noisy']"),
    "reconstructions n 0": (lambda: plots.reconstructions(X, X, n=0), ValueError, "n"),
    "reconstructions reconstructed above 1": (lambda: plots.reconstructions(X, X + 1), ValueError, "reconstructed"),
    "latent_scatter dims beyond J": (lambda: plots.latent_scatter(torch.randn(6, 2), Y, dims=(0, 2)), ValueError, "dims[1]"),
    "latent_scatter dims equal": (lambda: plots.latent_scatter(torch.randn(6, 3), Y, dims=(1, 1)), ValueError, "dims"),
    "latent_scatter labels float": (lambda: plots.latent_scatter(torch.randn(6, 2), Y.float()), ValueError, "labels"),
    "latent_scatter z 1-D": (lambda: plots.latent_scatter(torch.randn(6), Y), ValueError, "z"),
    "latent_scatter max_points 0": (lambda: plots.latent_scatter(torch.randn(6, 2), Y, max_points=0), ValueError, "max_points"),
    "gaussian_quantiles low 0": (lambda: plots.gaussian_quantiles(5, low=0.0), ValueError, "low"),
    "gaussian_quantiles high 1": (lambda: plots.gaussian_quantiles(5, high=1.0), ValueError, "high"),
    "gaussian_quantiles low above high": (lambda: plots.gaussian_quantiles(5, low=0.9, high=0.1), ValueError, "low, high"),
    "manifold_grid n 1": (lambda: plots.manifold_grid(_decode, n=1), ValueError, "n"),
    "manifold_grid latent_dim 1": (lambda: plots.manifold_grid(_decode, n=3, latent_dim=1), ValueError, "latent_dim"),
    "manifold_grid dims beyond latent_dim": (lambda: plots.manifold_grid(_decode, n=3, dims=(0, 2)), ValueError, "dims[1]"),
    "manifold_grid decode not callable": (lambda: plots.manifold_grid("decoder", n=3), TypeError, "decode"),
    "manifold_grid decode gives too few": (lambda: plots.manifold_grid(lambda z: _decode(z[:2]), n=3), ValueError, "decode"),
    "interpolation steps 1": (lambda: plots.interpolation(_decode, torch.zeros(2), torch.ones(2), steps=1),
                              ValueError, "steps"),
    "interpolation z_end other size": (lambda: plots.interpolation(_decode, torch.zeros(2), torch.ones(3)),
                                       ValueError, "z_start and z_end"),
    "interpolation z_start NaN": (lambda: plots.interpolation(_decode, torch.full((2,), float("nan")), torch.ones(2)),
                                  ValueError, "z_start"),
    "interpolation z_start a batch": (lambda: plots.interpolation(_decode, torch.zeros(3, 2), torch.ones(2)),
                                      ValueError, "z_start"),
    "loss_curves no histories": (lambda: plots.loss_curves({}), ValueError, "histories"),
    "loss_curves part not recorded": (lambda: plots.loss_curves({"a": _history()}, parts=("kl",)), ValueError, "parts"),
    "loss_curves not a history": (lambda: plots.loss_curves({"a": [1, 2]}), TypeError, "histories['a']"),
    "loss_vs_time part not recorded": (lambda: plots.loss_vs_time({"a": _history()}, part="kl"), ValueError, "parts"),
    "draw_gaussians sigma 0": (lambda: plots.draw_gaussians(plt.subplots()[1], 0.0, 0.0), ValueError, "sigma"),
    "gaussian_densities sigma negative": (lambda: plots.gaussian_densities([(0.0, 1.0), (1.0, -0.5)]),
                                          ValueError, "params[1] sigma"),
    "gaussian_densities empty": (lambda: plots.gaussian_densities([]), ValueError, "params"),
    "gaussian_densities ncols 0": (lambda: plots.gaussian_densities([(0.0, 1.0)], ncols=0), ValueError, "ncols"),
    "line_plot series shorter than x": (lambda: plots.line_plot([1, 2, 3], {"a": [1, 2]}, "x", "y", "t"),
                                        ValueError, "series['a']"),
    "line_plot negative y on a log y axis": (lambda: plots.line_plot([1, 2], {"a": [-0.5, 1.0]}, "x", "y", "t", logy=True),
                                       ValueError, "series['a']"),
    "line_plot negative x on a log x axis": (lambda: plots.line_plot([-1, 2], {"a": [1, 2]}, "x", "y", "t", logx=True),
                                             ValueError, "x"),
    "roc_curve one class only": (lambda: plots.roc_curve([0.1, 0.2], [True, True]), ValueError, "is_anomaly"),
    "roc_curve lengths differ": (lambda: plots.roc_curve([0.1, 0.2, 0.3], [True, False]), ValueError, "is_anomaly"),
    "roc_curve NaN score": (lambda: plots.roc_curve([float("nan"), 0.2], [True, False]), ValueError, "scores"),
    "gaussian_contours mean of 3": (lambda: plots.gaussian_contours({"q": (torch.zeros(3), torch.eye(2))}),
                                    ValueError, "gaussians['q']"),
    "gaussian_contours levels 0": (lambda: plots.gaussian_contours({"q": (torch.zeros(2), torch.eye(2))}, levels=(0.0,)),
                                   ValueError, "levels[0]"),
    "prior_ellipses weights not summing to 1": (lambda: plots.prior_ellipses(plt.subplots()[1], torch.zeros(2, 2),
                                                                             torch.zeros(2, 2), torch.tensor([0.5, 0.9])),
                                                ValueError, "weights"),
    "prior_ellipses logvars shape": (lambda: plots.prior_ellipses(plt.subplots()[1], torch.zeros(2, 2), torch.zeros(3, 2)),
                                     ValueError, "logvars"),
    "rate_distortion NaN rate": (lambda: plots.rate_distortion({"s": {"a": (float("nan"), 1.0)}}), ValueError, "rate"),
    "rate_distortion not a pair": (lambda: plots.rate_distortion({"s": {"a": 1.0}}), ValueError, "curves['s']['a']"),
    "kl_per_dimension threshold 0 on a log axis": (lambda: plots.kl_per_dimension({"a": torch.rand(4)}, threshold=0.0),
                                                   ValueError, "threshold"),
    "kl_per_dimension NaN KL": (lambda: plots.kl_per_dimension({"a": torch.tensor([1.0, float("nan")])}),
                                ValueError, "kls['a']"),
}


@pytest.fixture
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("case", list(PLOT_CASES))
def test_plot_arguments_are_checked_by_name_and_range(case, _close_figures):
    call, error, argument = PLOT_CASES[case]
    figures_before = len(plt.get_fignums())
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert message.startswith(argument) or f"{argument}:" in message or f"{argument} " in message, message
    assert "expected" in message, message
    if "plt.subplots" not in inspect.getsource(call):
        assert len(plt.get_fignums()) == figures_before, "a refused call left a figure behind"


# ---------------------------------------------------------------- widgets' arguments


WIDGET_CASES = {
    "latent_sliders dims beyond latent_dim": (lambda: widgets.latent_sliders(_vae(), dims=[0, 2]), "dims[1]"),
    "latent_sliders dims repeated": (lambda: widgets.latent_sliders(_vae(), dims=[1, 1]), "dims"),
    "latent_sliders dims empty": (lambda: widgets.latent_sliders(_vae(), dims=[]), "dims"),
    "latent_sliders dims negative": (lambda: widgets.latent_sliders(_vae(), dims=[-1]), "dims[0]"),
    "latent_sliders dims float": (lambda: widgets.latent_sliders(_vae(), dims=[0.0]), "dims[0]"),
    "latent_sliders dims an int": (lambda: widgets.latent_sliders(_vae(), dims=1), "dims"),
    "latent_sliders limit 0": (lambda: widgets.latent_sliders(_vae(), limit=0), "limit"),
    "latent_sliders limit inf": (lambda: widgets.latent_sliders(_vae(), limit=math.inf), "limit"),
    "LatentSliders step negative": (lambda: widgets.LatentSliders(_vae(), step=-0.1), "step"),
    "LatentSliders scale 0": (lambda: widgets.LatentSliders(_vae(), scale=0), "scale"),
    "cvae_sliders dims beyond latent_dim": (lambda: widgets.cvae_sliders(_cvae(), dims=[5]), "dims[0]"),
    "kl_explorer sigma 0": (lambda: widgets.kl_explorer(sigma=0.0), "sigma"),
    "kl_explorer mu NaN": (lambda: widgets.kl_explorer(mu=math.nan), "mu"),
    "gaussian.kl_1d sigma negative": (lambda: gaussian.kl_1d(0.0, -1.0), "sigma"),
    "png_bytes pixels above 1": (lambda: widgets.png_bytes(np.full((3, 3), 1.5)), "pixels"),
    "png_bytes pixels 3-D": (lambda: widgets.png_bytes(np.zeros((1, 3, 3))), "pixels"),
    "png_bytes scale 0": (lambda: widgets.png_bytes(np.zeros((3, 3)), scale=0), "scale"),
}


@pytest.mark.parametrize("case", list(WIDGET_CASES))
def test_widget_arguments_are_checked_by_name_and_range(case, _close_figures):
    call, argument = WIDGET_CASES[case]
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"{argument}:"), message
    assert "expected" in message and "got" in message, message


# ---------------------------------------------------------------- widgets never clamp


def _slider(name):
    """A widget and one of its sliders, with the slider's range."""
    if name == "kl_explorer mu":
        w = widgets.kl_explorer()
        return w, w.mu, lambda: w.kl
    if name == "kl_explorer sigma":
        w = widgets.kl_explorer()
        return w, w.sigma, lambda: w.kl
    w = widgets.latent_sliders(_vae(latent_dim=3), dims=[2], limit=2.0)
    return w, w.sliders[0], lambda: w.z.tolist()


@pytest.mark.parametrize("slider, value", [("kl_explorer mu", 3.5), ("kl_explorer mu", -100.0),
                                           ("kl_explorer sigma", 0.05), ("kl_explorer sigma", 0.0),
                                           ("kl_explorer sigma", 3.01), ("latent_sliders z3", 2.5),
                                           ("latent_sliders z3", -2.0001), ("latent_sliders z3", math.nan)])
def test_a_slider_refuses_a_value_outside_its_range_instead_of_clamping_it(slider, value, _close_figures):
    w, s, shown = _slider(slider)
    s.value = (s.min + s.max) / 2  # a value inside the range is taken as typed
    assert s.value == (s.min + s.max) / 2
    before_value, before_shown = s.value, shown()
    with pytest.raises(ValueError) as info:
        s.value = value
    message = str(info.value)
    assert s.description in message and "expected" in message and repr(value) in message, message
    if not math.isnan(value):
        assert f"[{s.min:g}, {s.max:g}]" in message, message
    assert s.value == before_value and shown() == before_shown, "a refused value changed the widget"


@pytest.mark.parametrize("mu, sigma", [(5.0, 1.0), (-7.25, 1.0), (0.0, 0.02), (0.0, 4.5), (np.float32(-3.5), 0.03)])
def test_kl_explorer_widens_its_range_to_show_the_values_given_exactly(mu, sigma, _close_figures):
    w = widgets.kl_explorer(mu=mu, sigma=sigma)
    assert w.mu.value == float(mu) and w.sigma.value == float(sigma)
    assert w.mu.min <= float(mu) <= w.mu.max and w.sigma.min <= float(sigma) <= w.sigma.max
    assert (w.mu.min, w.mu.max) == (-max(3.0, abs(float(mu))), max(3.0, abs(float(mu))))  # symmetric about 0
    expected = 0.5 * (float(sigma) ** 2 - 2 * math.log(float(sigma)) - 1 + float(mu) ** 2)
    assert w.kl == pytest.approx(expected, rel=1e-9)
    assert f"{w.kl:.3f} nats" in w.readout.value
