"""The semi-supervised VAE M2 (Kingma, Rezende, Mohamed & Welling 2014): its bounds against brute
force and against log p(x) computed exactly, shapes, the classifier's gradients, the alpha term,
accuracy with its standard error, and bad input refused by name (notebook 09)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vae_course import data, evaluate, losses, models, train

SHAPE = (1, 4, 4)
C = 3  # classes of the small test models


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _model(latent_dim=2, alpha=1.0, image_shape=SHAPE, seed=0, **kw):
    torch.manual_seed(seed)
    return models.M2VAE(image_shape=image_shape, hidden_dims=(8,), latent_dim=latent_dim, num_classes=C,
                        alpha=alpha, **kw).double()


def _images(n, shape=SHAPE, seed=0):
    return torch.rand(n, *shape, generator=_gen(seed), dtype=torch.float64)


def _brute_force_parts(model, x, eps):
    """L(x, y) for every label y, written out label by label with model.encode/decode and the noise
    ``eps`` (N, C, J): ``(L (N, C), log q(y|x) (N, C))``."""
    n = x.shape[0]
    columns = []
    for y in range(model.num_classes):
        labels = torch.full((n,), y, dtype=torch.int64)
        mu, logvar = model.encode(x, labels)
        z = mu + (0.5 * logvar).exp() * eps[:, y]
        log_px_z = -torch.nn.functional.binary_cross_entropy_with_logits(model.decode(z, labels), x,
                                                                         reduction="none").flatten(1).sum(1)
        kl = 0.5 * (logvar.exp() - logvar - 1 + mu.pow(2)).sum(1)
        columns.append(-log_px_z + kl + math.log(model.num_classes))    # L(x, y) = -(log p(x|y,z) + log p(y)) + KL
    return torch.stack(columns, dim=1), torch.log_softmax(model.class_logits(x), dim=1)


# ---------------------------------------------------------------- the bounds against brute force


def test_unlabelled_bound_is_the_expectation_over_q_y_written_out_by_hand():
    model = _model()
    x = _images(5)
    torch.manual_seed(3)
    parts = model.loss(x)                                    # every digit unlabelled: U(x)
    torch.manual_seed(3)
    eps = torch.randn(5, C, model.latent_dim, dtype=torch.float64)   # the same draws, in the same order
    neg_elbo_y, log_q = _brute_force_parts(model, x, eps)
    q = log_q.exp()
    # U(x) = sum_y q(y|x) [L(x, y) + log q(y|x)] = sum_y q L - H(q)   (eq. 7)
    brute = sum(q[:, y] * (neg_elbo_y[:, y] + log_q[:, y]) for y in range(C))
    torch.testing.assert_close(parts.total, brute)
    torch.testing.assert_close(parts.reconstruction + parts.kl, parts.total)
    entropy = -(q * log_q).sum(1)
    torch.testing.assert_close(losses.categorical_entropy(model.class_logits(x)), entropy)
    assert (parts.total > 0).all()


def test_labelled_bound_and_the_alpha_term():
    x = _images(4)
    y = torch.tensor([0, 2, 1, 2])
    plain, weighted = _model(alpha=0.0), _model(alpha=2.5)       # the same weights (same seed)
    torch.manual_seed(5)
    without = plain.loss(x, y)
    torch.manual_seed(5)
    with_alpha = weighted.loss(x, y)
    torch.manual_seed(5)
    eps = torch.randn(4, plain.latent_dim, dtype=torch.float64)
    mu, logvar = plain.encode(x, y)
    z = mu + (0.5 * logvar).exp() * eps
    recon = torch.nn.functional.binary_cross_entropy_with_logits(plain.decode(z, y), x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (logvar.exp() - logvar - 1 + mu.pow(2)).sum(1)
    torch.testing.assert_close(without.total, recon + kl + math.log(C))          # L(x, y), eq. 6
    torch.testing.assert_close(without.kl, kl + math.log(C))
    cross_entropy = -torch.log_softmax(plain.class_logits(x), 1)[torch.arange(4), y]
    torch.testing.assert_close(with_alpha.total - without.total, 2.5 * cross_entropy)   # eq. 9
    torch.testing.assert_close(with_alpha.reconstruction, without.reconstruction)


def test_a_batch_of_both_kinds_is_each_digit_scored_by_its_own_bound():
    model = _model(alpha=0.7)
    x = _images(6)
    y = torch.tensor([1, -1, 0, -1, -1, 2])
    known = y >= 0
    torch.manual_seed(2)
    mixed = model.loss(x, y)
    # the same random draws, in the same order: the labelled digits' z first, then the unlabelled ones'
    torch.manual_seed(2)
    labelled = model.loss(x[known], y[known])
    unlabelled = model.loss(x[~known])
    for part, part_l, part_u in zip(mixed, labelled, unlabelled):
        assert part.shape == (6,)
        torch.testing.assert_close(part[known], part_l)
        torch.testing.assert_close(part[~known], part_u)
    assert (mixed.kl[known] >= math.log(C)).all(), "a labelled digit's KL includes KL(label || p(y)) = ln C"


def test_the_bound_is_below_log_p_x_computed_exactly_and_monte_carlo_agrees():
    torch.manual_seed(0)
    model = models.M2VAE(image_shape=(1, 2, 2), hidden_dims=(8,), latent_dim=1, num_classes=C, alpha=0.0)
    x = torch.bernoulli(torch.full((6, 1, 2, 2), 0.4, dtype=torch.float32), generator=_gen(1))
    exact = evaluate.m2_exact_by_quadrature(model, x)
    assert exact.elbo.shape == exact.log_likelihood.shape == (6,)
    gap = exact.log_likelihood - exact.elbo
    assert (gap > 0).all(), "ELBO(x) <= log p(x), strictly for a posterior q cannot match exactly"
    # log p(x) by quadrature against log p(x) by brute-force Monte Carlo over the prior (many z)
    double = model.double()
    z = torch.randn(200_000, 1, generator=_gen(2), dtype=torch.float64)
    log_joint = []
    for y in range(C):
        labels = torch.full((len(z),), y, dtype=torch.int64)
        logits = double.decode(z, labels).flatten(1)                  # (S, 4)
        log_px = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits.unsqueeze(0).expand(6, -1, -1), x.double().flatten(1).unsqueeze(1).expand(-1, len(z), -1),
            reduction="none").sum(-1)                                 # (6, S)
        log_joint.append(torch.logsumexp(log_px, 1) - math.log(len(z)) - math.log(C))
    monte_carlo = torch.logsumexp(torch.stack(log_joint, 1), 1)
    torch.testing.assert_close(exact.log_likelihood, monte_carlo, atol=2e-3, rtol=0)
    # the package's one-sample loss, averaged over many draws, is -ELBO(x)
    torch.manual_seed(4)
    draws = torch.stack([double.loss(x.double()).total.detach() for _ in range(3000)])
    mean, stderr = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
    assert ((-mean - exact.elbo).abs() < 4 * stderr + 1e-6).all(), (-mean, exact.elbo, stderr)


def test_quadrature_refuses_a_model_it_cannot_integrate():
    with pytest.raises(ValueError, match="model: expected latent_dim 1"):
        evaluate.m2_exact_by_quadrature(_model(latent_dim=2), _images(2))
    with pytest.raises(TypeError, match="model: expected an M2VAE"):
        evaluate.m2_exact_by_quadrature(models.CVAE(image_shape=SHAPE, hidden_dims=(8,), latent_dim=1), _images(2))


def test_all_labels_at_once_equals_one_label_at_a_time():
    model = _model()
    x = _images(5)
    mu_all, logvar_all = model._encode_all_labels(x)
    assert mu_all.shape == logvar_all.shape == (5, C, model.latent_dim)
    for y in range(C):
        mu, logvar = model.encode(x, torch.full((5,), y, dtype=torch.int64))
        torch.testing.assert_close(mu_all[:, y], mu)
        torch.testing.assert_close(logvar_all[:, y], logvar)


# ---------------------------------------------------------------- shapes and the interface


def test_shapes():
    model = _model(latent_dim=3)
    x, y = _images(7), torch.tensor([0, 1, 2, -1, -1, 0, -1])
    known = torch.tensor([0, 1, 2, 2, 1, 0, 1])
    assert model.class_logits(x).shape == (7, C)
    assert model.classify(x).shape == (7,) and model.classify(x).dtype == torch.int64
    mu, logvar = model.encode(x, known)
    assert mu.shape == logvar.shape == (7, 3)
    assert model.decode(mu, known).shape == (7, *SHAPE)
    assert model.reconstruct(x).shape == model.reconstruct(x, known).shape == (7, *SHAPE)
    assert all(p.shape == (7,) for p in model.loss(x, y))
    assert all(p.shape == (7,) for p in model.loss(x))
    assert model.sample(4, generator=_gen(0)).shape == model.sample(4, 1).shape == (4, *SHAPE)
    assert model.sample(2, np.int64(2)).shape == model.sample(2, torch.tensor(0)).shape == (2, *SHAPE)
    with pytest.raises(ValueError, match=r"y: expected an integer"):
        model.sample(2, "3")
    with pytest.raises(ValueError, match=r"y: expected labels in \[0, 2\]"):
        model.sample(2, -1)
    recon, kl = model._all_label_parts(x, x)
    assert recon.shape == kl.shape == (7, C)
    assert model.config["alpha"] == 1.0 and models.M2VAE(**model.config).num_classes == C


def test_fit_trains_on_labelled_and_unlabelled_digits_and_evaluate_scores_them():
    model = _model(alpha=1.0).float()
    x = _images(48).float()
    y = data.keep_labels(torch.arange(C).repeat(16), per_class=2, seed=0)
    history = train.fit(model, x, y, steps=30, batch_size=16, lr=3e-3, progress=False, device="cpu")
    assert history.train["total"][-1] < history.train["total"][0]
    unlabelled = evaluate.negative_elbo(model, x)
    assert unlabelled.total == pytest.approx(unlabelled.reconstruction + unlabelled.kl)
    assert math.isfinite(unlabelled.total)


# ---------------------------------------------------------------- the classifier's gradients


def _classifier_gradient(model):
    return sum(p.grad.abs().sum() for p in model.classifier.parameters() if p.grad is not None)


def test_the_classifier_learns_from_unlabelled_digits():
    model = _model(alpha=0.0)
    model.loss(_images(6)).total.mean().backward()             # no label at all
    assert _classifier_gradient(model) > 0, "U(x) weighs each label's bound by q(y|x): it trains the classifier"


def test_without_alpha_labelled_digits_do_not_train_the_classifier():
    x, y = _images(6), torch.tensor([0, 1, 2, 0, 1, 2])
    model = _model(alpha=0.0)
    model.loss(x, y).total.mean().backward()
    assert _classifier_gradient(model) == 0, "L(x, y) does not involve q(y|x): this is why eq. 9 adds alpha"
    model = _model(alpha=1.0)
    model.loss(x, y).total.mean().backward()
    assert _classifier_gradient(model) > 0


# ---------------------------------------------------------------- accuracy and its standard error


def test_accuracy_and_its_standard_error():
    model = _model()
    with torch.no_grad():                 # a classifier that always says 1
        last = model.classifier[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    labels = torch.tensor([1] * 30 + [0] * 10 + [2] * 10)
    estimate = evaluate.accuracy(model, _images(50), labels, batch_size=7)
    a = 30 / 50
    assert estimate.mean == pytest.approx(a)
    assert estimate.stderr == pytest.approx(math.sqrt(a * (1 - a) / 49))
    per_digit = evaluate.correct_per_example(model, _images(50), labels)
    assert per_digit.dtype == torch.float64 and torch.equal(per_digit, (labels == 1).double())


def test_paper_alpha():
    assert models.M2VAE.paper_alpha(60_000, 100) == pytest.approx(60.0)
    with pytest.raises(ValueError, match="n_labelled"):
        models.M2VAE.paper_alpha(100, 200)


# ---------------------------------------------------------------- keep_labels


def test_keep_labels_keeps_per_class_labels_of_each_class():
    labels = torch.arange(10).repeat(50)
    kept = data.keep_labels(labels, 10, seed=1)
    assert torch.equal(torch.bincount(kept[kept >= 0], minlength=10), torch.full((10,), 10))
    assert torch.equal(kept[kept >= 0], labels[kept >= 0]) and int((kept == -1).sum()) == 400
    assert torch.equal(kept, data.keep_labels(labels, 10, seed=1))
    assert not torch.equal(kept, data.keep_labels(labels, 10, seed=2))
    assert torch.equal(data.keep_labels(labels, None), labels)
    with pytest.raises(ValueError, match="per_class: expected at most 50"):
        data.keep_labels(labels, 51)


# ---------------------------------------------------------------- bad input, named


@pytest.mark.parametrize("call, kind, pattern", [
    (lambda m, x: m.loss(x, torch.tensor([0, 1, 3])), ValueError, r"y: expected labels in \[0, 2\] or -1 .*got values in \[0, 3\]"),
    (lambda m, x: m.loss(x, torch.tensor([0, -2, 1])), ValueError, r"y: expected labels .* got values in \[-2, 1\]"),
    (lambda m, x: m.loss(x, torch.tensor([0.0, 1.0, 1.0])), TypeError, r"y: expected class indices of dtype torch.int64"),
    (lambda m, x: m.loss(x, torch.tensor([0, 1])), ValueError, r"y: expected shape \(3,\)"),
    (lambda m, x: m.encode(x, torch.tensor([0, -1, 1])), ValueError, r"y: expected labels in \[0, 2\]"),
    (lambda m, x: m.encode(x), ValueError, r"y: a M2VAE needs labels"),
    (lambda m, x: m.decode(torch.zeros(3, 2), None), ValueError, r"y: a M2VAE needs labels"),
    (lambda m, x: m.loss(x, free_bits=0.5), ValueError, r"free_bits: .*expected 0.0"),
    (lambda m, x: m.loss(x, beta=-1.0), ValueError, r"beta: expected a finite number >= 0"),
    (lambda m, x: m.class_logits(x * 2), ValueError, r"x: expected pixel values in \[0, 1\]"),
    (lambda m, x: evaluate.accuracy(m, x, torch.tensor([0, -1, 1])), ValueError, r"labels: expected labels in \[0, 2\]"),
    (lambda m, x: evaluate.accuracy(models.VAE(image_shape=SHAPE), x, torch.tensor([0, 1, 1])), TypeError,
     r"model: expected an M2VAE"),
    (lambda m, x: losses.unlabelled_negative_elbo(torch.zeros(3, 2), torch.zeros(3, 3), torch.zeros(3, 3)),
     ValueError, r"reconstruction and logits: expected the same shape"),
    (lambda m, x: losses.categorical_entropy(torch.zeros(3)), ValueError, r"logits: expected shape \(N, C\)"),
    (lambda m, x: losses.labelled_negative_elbo(torch.zeros(3), torch.zeros(3), 1), ValueError, r"num_classes"),
])
def test_bad_input_is_refused_by_name(call, kind, pattern):
    model = _model().float()
    with pytest.raises(kind, match=pattern):
        call(model, _images(3).float())


@pytest.mark.parametrize("kwargs, pattern", [
    ({"alpha": -1.0}, r"alpha: expected a finite number >= 0, got float -1.0"),
    ({"alpha": float("nan")}, r"alpha: expected a finite number"),
    ({"num_classes": 1}, r"num_classes: expected an integer >= 2"),
    ({"hidden_dims": ()}, r"hidden_dims: an M2VAE's encoder and classifier need at least one hidden layer"),
])
def test_bad_configuration_is_refused_by_name(kwargs, pattern):
    config = {"image_shape": SHAPE, "hidden_dims": (8,), "latent_dim": 2, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        models.M2VAE(**config)
