"""Bad inputs across the public API: each is rejected with TypeError or ValueError whose message
names the argument (never a raw traceback from deep inside torch or pathlib).

One parametrized test; each case is ``(callable, exception type, argument name)``. Tests of one
module's own argument checks live beside that module's tests; this file is the cross-API sweep.
"""
from __future__ import annotations

import re

import pytest
import torch

from vae_course import data, evaluate, losses, models, plots, train

SHAPE = (1, 4, 4)


def _vae(**kw):
    torch.manual_seed(0)
    return models.VAE(**{"image_shape": SHAPE, "hidden_dims": (8,), "latent_dim": 2, **kw})


def _cvae():
    torch.manual_seed(0)
    return models.CVAE(image_shape=SHAPE, hidden_dims=(8,), latent_dim=2, num_classes=3)


X = torch.rand(6, *SHAPE)
Y = torch.tensor([0, 1, 2, 0, 1, 2])


def _fit(model=None, images=X, labels=None, **kw):
    kw = {"epochs": 1, "batch_size": 4, "device": "cpu", "progress": False, **kw}
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
    "fit epochs 0": (lambda: _fit(epochs=0), ValueError, "epochs"),
    "fit epochs str": (lambda: _fit(epochs="3"), ValueError, "epochs"),
    "fit batch_size 0": (lambda: _fit(batch_size=0), ValueError, "batch_size"),
    "fit lr NaN": (lambda: _fit(lr=float("nan")), ValueError, "lr"),
    "fit beta negative": (lambda: _fit(beta=-1.0), ValueError, "beta"),
    "fit model not a model": (lambda: _fit(model="vae"), TypeError, "model"),
    "fit checkpoint not a path": (lambda: _fit(checkpoint=123), TypeError, "checkpoint"),
    "fit resume_from not a path": (lambda: _fit(resume_from=1.5, epochs=2), TypeError, "resume_from"),
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
    "gaussian_kl int mu": (lambda: losses.gaussian_kl(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3)),
                           TypeError, "mu"),
    "gaussian_kl logvar shape": (lambda: losses.gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 4)), ValueError, "logvar"),
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
    "epochs_for_steps 0 steps": (lambda: train.epochs_for_steps(0, 100), ValueError, "steps"),
    "image_grid 5-D images": (lambda: plots.image_grid(torch.rand(2, 1, 1, 4, 4)), ValueError, "images"),
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
