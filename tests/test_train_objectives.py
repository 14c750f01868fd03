"""Tests of the training objectives' options in vae_course.train and the models' losses: free bits,
a beta schedule (KL annealing), a learned Gaussian decoder variance and the continuous Bernoulli
decoder, on a tiny data set of 4x4 binary images."""
from __future__ import annotations

import math

import torch

from vae_course import evaluate, losses, models, train
from helpers import TINY_SHAPE, quick_fit, raises_naming as _raises, tiny_dataset, tiny_vae


def test_free_bits_in_the_model_loss_keeps_the_true_kl_part():
    x, _ = tiny_dataset(16)
    model = tiny_vae()
    torch.manual_seed(1)
    plain = model.loss(x)
    torch.manual_seed(1)
    free = model.loss(x, free_bits=5.0)  # above every dimension's KL: the KL term is the constant 3 * 5
    torch.testing.assert_close(free.kl, plain.kl)
    torch.testing.assert_close(free.reconstruction, plain.reconstruction)
    torch.testing.assert_close(free.total, plain.reconstruction + 15.0)
    cvae = tiny_vae(models.CVAE, num_classes=2)
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
    x, _ = tiny_dataset(8)
    for bad in (-1.0, float("nan"), float("inf")):
        _raises(ValueError, "free_bits", quick_fit, tiny_vae(), x, free_bits=bad)
    _raises(ValueError, "free_bits", quick_fit, tiny_vae(models.Autoencoder), x, free_bits=0.5)


def test_fit_with_free_bits_trains_differently_and_reports_the_true_kl():
    x, _ = tiny_dataset()
    plain, free = tiny_vae(), tiny_vae()
    h_plain, h_free = quick_fit(plain, x, steps=8), quick_fit(free, x, steps=8, free_bits=2.0)
    assert h_free.train["kl"] != h_plain.train["kl"]
    parts = evaluate.loss_parts(free, x)
    assert parts.kl >= 0 and math.isclose(parts.total, parts.reconstruction + parts.kl, rel_tol=1e-6)


def test_callable_beta_is_called_with_each_global_step_and_used():
    x, _ = tiny_dataset(64)  # 4 batches of 16 per epoch
    calls = []

    def schedule(step):
        calls.append(step)
        return 0.0

    with_schedule, constant = tiny_vae(), tiny_vae()
    quick_fit(with_schedule, x, steps=12, beta=schedule)
    quick_fit(constant, x, steps=12, beta=0.0)
    # each of the 12 global steps once, in order; before training only step 0 is probed (the checks)
    assert calls[-12:] == list(range(12)) and set(calls[:-12]) == {0}, calls
    for a, b in zip(with_schedule.state_dict().values(), constant.state_dict().values()):
        assert torch.equal(a, b), "a schedule returning 0 should train exactly like beta=0"
    different = tiny_vae()
    quick_fit(different, x, steps=12, beta=lambda step: 10.0)
    assert not torch.equal(different.mu_head.weight, constant.mu_head.weight)


def test_linear_warmup_rises_linearly_then_stays():
    schedule = train.linear_warmup(10)
    assert [schedule(s) for s in (0, 5, 10, 50)] == [0.0, 0.5, 1.0, 1.0]
    assert train.linear_warmup(4, start=1.0, end=3.0)(2) == 2.0
    _raises(ValueError, "steps", train.linear_warmup, 0)
    _raises(ValueError, "end", train.linear_warmup, 5, end=float("nan"))


def test_bad_beta_is_rejected_naming_beta():
    x, _ = tiny_dataset(8)
    for bad in (-1.0, float("nan"), "1.0", None, [1.0]):
        _raises(ValueError, "beta", quick_fit, tiny_vae(), x, beta=bad)
    _raises(ValueError, "beta", quick_fit, tiny_vae(), x, beta=lambda step: -1.0)
    _raises(ValueError, "beta", quick_fit, tiny_vae(), x, beta=lambda step: float("nan") if step == 2 else 1.0)


def test_learned_decoder_variance_is_a_trained_parameter_of_the_right_shape(tmp_path):
    x, _ = tiny_dataset()
    for variance, shape in (("learned", ()), ("learned_per_pixel", TINY_SHAPE)):
        model = tiny_vae(likelihood="gaussian", decoder_variance=variance)
        assert model.decoder_logvar.shape == shape and model.config["decoder_variance"] == variance
        before = model.decoder_logvar.detach().clone()
        quick_fit(model, x, steps=12)
        assert not torch.equal(model.decoder_logvar.detach(), before), "the log-variance should be trained"
        # the loss uses it: at log-variance v the reconstruction is the Gaussian NLL with v
        torch.manual_seed(0)
        parts = model.loss(x)
        torch.manual_seed(0)
        mean, _, _ = model(x)
        torch.testing.assert_close(parts.reconstruction, losses.gaussian_nll(mean, x, model.decoder_logvar))
        loaded = train.load_checkpoint(train.save_checkpoint(model, tmp_path / f"{variance}.pt"))
        torch.testing.assert_close(loaded.decoder_logvar, model.decoder_logvar)
    assert "decoder_variance" not in tiny_vae().config  # old configs unchanged
    _raises(ValueError, "decoder_variance", tiny_vae, decoder_variance="learned")  # Bernoulli decoder
    _raises(ValueError, "decoder_variance", tiny_vae, likelihood="gaussian", decoder_variance="yes")


def test_continuous_bernoulli_vae_trains():
    x, _ = tiny_dataset()
    model = tiny_vae(likelihood="continuous_bernoulli")
    history = quick_fit(model, x, steps=16)
    assert history.train["total"][-1] < history.train["total"][0]
    assert 0 <= model.sample(3).min() and model.sample(3).max() <= 1
