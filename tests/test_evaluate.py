"""Tests of vae_course.evaluate, against an exact log p(x) computed by numerical integration on
a model with a one-dimensional latent and 2x2 binary images (so every image can be enumerated)."""
from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from vae_course import evaluate, gaussian, models, train
from helpers import gen

SHAPE = (1, 2, 2)
ALL_IMAGES = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64).view(16, *SHAPE)
GRID = torch.linspace(-12.0, 12.0, 48_001, dtype=torch.float64)  # dz = 0.0005
DZ = float(GRID[1] - GRID[0])


_gen = gen  # one seeded generator per call (tests/helpers.py)


def _training_data(n=256, seed=0):
    """Four 2x2 patterns with 10% pixel noise; label = pattern index % 2."""
    g = _gen(seed)
    patterns = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 1, 0, 1]], dtype=torch.float32)
    k = torch.randint(0, 4, (n,), generator=g)
    flip = torch.rand(n, 4, generator=g) < 0.1
    x = torch.where(flip, 1 - patterns[k], patterns[k]).view(n, *SHAPE)
    return x, k % 2


def _exact(model):
    """Exact -log p(x[|y]), the exact ELBO and its parts, per (image, label) pair, by integrating
    over a fine grid of the one-dimensional latent (float64)."""
    if model.num_classes:  # every image with every label
        images, labels = ALL_IMAGES.repeat(2, 1, 1, 1), torch.arange(2).repeat_interleave(16)
    else:
        images, labels = ALL_IMAGES, None
    with torch.no_grad():
        z = GRID[:, None]
        log_prior = -0.5 * (GRID ** 2 + math.log(2 * math.pi))  # (G,)
        flat = images.flatten(1)  # (M, 4)
        log_px_z = torch.empty(len(images), len(GRID), dtype=torch.float64)
        for c in (range(2) if model.num_classes else [None]):
            logits = model.decode(z, torch.full((len(GRID),), c) if c is not None else None)
            logits = logits.flatten(1)  # (G, 4)
            rows = labels == c if c is not None else slice(None)
            # log p(x|z) summed over pixels, written out by hand
            log_px_z[rows] = flat[rows] @ F.logsigmoid(logits).T + (1 - flat[rows]) @ F.logsigmoid(-logits).T
        log_joint = log_px_z + log_prior
        log_px = torch.logsumexp(log_joint, dim=1) + math.log(DZ)  # (M,)

        mu, logvar = model.encode(images, labels)
        log_q = -0.5 * (math.log(2 * math.pi) + logvar + (GRID - mu) ** 2 / logvar.exp())  # (M, G)
        q = log_q.exp() * DZ
        log_w = log_joint - log_q  # log importance weight at each grid point
        elbo = (q * log_w).sum(1)
        e_recon = (q * log_px_z).sum(1)
        log_post = log_joint - log_px[:, None]
        return dict(
            model=model, images=images, labels=labels, log_px=log_px, elbo=elbo, e_recon=e_recon,
            q_mass=q.sum(1),
            var_log_w=(q * log_w ** 2).sum(1) - elbo ** 2,  # variance of the 1-sample IWAE estimator
            var_recon=(q * log_px_z ** 2).sum(1) - e_recon ** 2,  # variance of the 1-sample reconstruction
            kl_to_posterior=(q * (log_q - log_post)).sum(1),
            kl_to_prior=gaussian.kl(mu, logvar),
        )


@pytest.fixture(scope="module", params=["VAE", "CVAE"])
def exact(request):
    """A trained tiny model (float64) with exact quantities per evaluation pair (see ``_exact``)."""
    torch.manual_seed(0)
    kw = {"image_shape": SHAPE, "hidden_dims": (8,), "latent_dim": 1}
    model = models.CVAE(num_classes=2, **kw) if request.param == "CVAE" else models.VAE(**kw)
    x, y = _training_data()
    train.fit(model, x, y if model.num_classes else None, steps=80, batch_size=64, lr=2e-2,
              device="cpu", progress=False)
    return _exact(model.double().eval())


def _repeat(e, r):
    labels = e["labels"].repeat(r) if e["labels"] is not None else None
    return e["images"].repeat(r, 1, 1, 1), labels


def test_exact_computation_is_sound(exact):
    """Guards for the test's own integrals: p(x[|y]) sums to 1 over all 16 images; q is resolved by the grid."""
    p = exact["log_px"].exp()
    if exact["model"].num_classes:
        torch.testing.assert_close(p.view(2, 16).sum(1), torch.ones(2, dtype=torch.float64), atol=1e-6, rtol=0)
    else:
        assert p.sum().item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(exact["q_mass"], torch.ones_like(exact["q_mass"]), atol=1e-6, rtol=0)


def test_elbo_identity_on_an_exact_model(exact):
    """log p(x) - KL(q || p(z|x)) = E_q[log p(x|z)] - KL(q || p(z)), and so ELBO <= log p(x)."""
    elbo_from_parts = exact["e_recon"] - exact["kl_to_prior"]
    torch.testing.assert_close(elbo_from_parts, exact["elbo"], atol=1e-6, rtol=0)
    torch.testing.assert_close(exact["log_px"] - exact["kl_to_posterior"], exact["elbo"], atol=1e-6, rtol=0)
    assert (exact["elbo"] <= exact["log_px"] + 1e-9).all()
    assert (exact["kl_to_posterior"] >= -1e-9).all()


def test_negative_elbo_matches_the_exact_expectation(exact):
    r = 100
    images, labels = _repeat(exact, r)
    est = evaluate.negative_elbo(exact["model"], images, labels, seed=1)
    target = -exact["elbo"].mean().item()
    m = len(exact["log_px"])
    se = math.sqrt(exact["var_recon"].sum().item() * r) / (m * r)  # exact MC standard error
    assert abs(est.total - target) < 4 * se + 1e-9, (est.total, target, se)
    assert est.kl == pytest.approx(exact["kl_to_prior"].mean().item(), rel=1e-9)
    assert est.total == pytest.approx(est.reconstruction + est.kl, rel=1e-12)
    # an upper bound on the exact -log p(x) (on average, beyond noise)
    assert est.total > -exact["log_px"].mean().item() - 4 * se


def test_iwae_k1_matches_the_exact_negative_elbo(exact):
    r = 100
    images, labels = _repeat(exact, r)
    est = evaluate.importance_weighted_nll(exact["model"], images, k=1, labels=labels, seed=2)
    m = len(exact["log_px"])
    se = math.sqrt(exact["var_log_w"].sum().item() * r) / (m * r)
    assert abs(est.mean - (-exact["elbo"].mean().item())) < 4 * se, (est, -exact["elbo"].mean(), se)


def test_iwae_tightens_with_k_towards_the_exact_nll(exact):
    """ELBO >= IWAE-10 >= IWAE-100 >= -log p(x) (on average), for any q: here the trained decoder
    with a deliberately poor encoder (shifted, too wide), so that the bound has room to tighten."""
    model = copy.deepcopy(exact["model"])
    with torch.no_grad():
        model.mu_head.bias += 0.5
        model.logvar_head.bias += 1.0
    e = _exact(model)
    assert e["log_px"].equal(exact["log_px"])  # p(x) does not depend on the encoder
    nll, neg_elbo = -e["log_px"].mean().item(), -e["elbo"].mean().item()
    assert neg_elbo - nll > 0.3  # the bound is loose for this q
    images, labels = _repeat(e, 20)
    est = {k: evaluate.importance_weighted_nll(model, images, k=k, labels=labels, seed=3).mean
           for k in (1, 10, 100)}
    images, labels = _repeat(e, 3)
    est[3000] = evaluate.importance_weighted_nll(model, images, k=3000, labels=labels, seed=3).mean
    m = len(e["log_px"])
    se1 = math.sqrt(e["var_log_w"].sum().item() * 20) / (m * 20)
    assert est[1] == pytest.approx(neg_elbo, abs=4 * se1)
    noise = 0.01  # the estimates share the seed but not the samples
    assert est[1] > est[10] + 0.1, (est, nll)
    assert est[10] > est[100] - noise, (est, nll)
    assert est[100] > nll - noise, (est, nll)
    assert est[3000] == pytest.approx(nll, abs=noise), (est, nll)
    # most of the gap is closed by k = 100
    assert est[100] - nll < 0.5 * (neg_elbo - nll)


def test_importance_weights_shape_and_k1_expectation(exact):
    model, images, labels = exact["model"], exact["images"], exact["labels"]
    torch.manual_seed(0)
    log_w = evaluate.importance_weights(model, images, labels, 3000)
    assert log_w.shape == (3000, len(images))
    # the mean of the log weights is the ELBO, per image
    se = (exact["var_log_w"] / 3000).sqrt()
    assert ((log_w.mean(0) - exact["elbo"]).abs() < 5 * se + 1e-9).all()


# ---------------------------------------------------------------- a tiny 4x4 model

@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    g = _gen(1)
    x = (torch.rand(60, 1, 4, 4, generator=g) < 0.3).float()
    y = torch.randint(0, 3, (60,), generator=g)
    vae = models.VAE(image_shape=(1, 4, 4), hidden_dims=(8,), latent_dim=2)
    cvae = models.CVAE(image_shape=(1, 4, 4), hidden_dims=(8,), latent_dim=2, num_classes=3)
    ae = models.Autoencoder(image_shape=(1, 4, 4), hidden_dims=(8,), latent_dim=2)
    return dict(x=x, y=y, vae=vae, cvae=cvae, ae=ae)


def test_negative_elbo_is_deterministic_given_seed_and_keeps_global_rng(tiny):
    vae, x = tiny["vae"], tiny["x"]
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = evaluate.negative_elbo(vae, x, seed=7)
    assert torch.equal(torch.rand(3), expected_next)  # the global RNG is untouched
    b = evaluate.negative_elbo(vae, x, seed=7)
    c = evaluate.negative_elbo(vae, x, seed=8)
    assert a == b
    assert a.total != c.total
    assert a.kl == pytest.approx(c.kl)  # the KL part is closed form: no sampling
    i1 = evaluate.importance_weighted_nll(vae, x, k=5, seed=7)
    i2 = evaluate.importance_weighted_nll(vae, x, k=5, seed=7)
    i3 = evaluate.importance_weighted_nll(vae, x, k=5, seed=8)
    assert i1 == i2 and i1.mean != i3.mean
    assert i1.stderr > 0


def test_evaluation_restores_training_mode(tiny):
    vae, x = tiny["vae"], tiny["x"]
    vae.train()
    evaluate.negative_elbo(vae, x)
    evaluate.importance_weighted_nll(vae, x, k=2)
    assert vae.training
    vae.eval()
    evaluate.negative_elbo(vae, x)
    assert not vae.training


def test_negative_elbo_mean_is_per_example_over_batches(tiny):
    """The mean over images is the same for any batch size (closed-form KL part)."""
    vae, x = tiny["vae"], tiny["x"]
    a = evaluate.negative_elbo(vae, x, batch_size=7)
    b = evaluate.negative_elbo(vae, x, batch_size=1000)
    assert a.kl == pytest.approx(b.kl, rel=1e-6)
    mu, logvar = vae.encode(x)
    assert a.kl == pytest.approx(gaussian.kl(mu, logvar).mean().item(), rel=1e-6)


@pytest.mark.parametrize("name", ["ae", "vae", "cvae"])
def test_reconstruction_error(tiny, name):
    model, x, y = tiny[name], tiny["x"], tiny["y"]
    labels = y if model.num_classes else None
    err = evaluate.reconstruction_error(model, x, labels, batch_size=7)
    assert err.shape == (60,)
    assert (err >= 0).all() and (err <= 1).all()
    recon = model.reconstruct(x, labels)
    torch.testing.assert_close(err, ((recon - x) ** 2).flatten(1).mean(1))
    torch.testing.assert_close(err, evaluate.reconstruction_error(model, x, labels))


def test_reconstruction_error_is_zero_for_a_perfect_reconstruction():
    model = models.Autoencoder(image_shape=(1, 2, 2), hidden_dims=(), latent_dim=4, likelihood="gaussian")
    with torch.no_grad():  # encoder and decoder: identity maps
        model.encoder[0].weight.copy_(torch.eye(4))
        model.encoder[0].bias.zero_()
        model.decoder[0].weight.copy_(torch.eye(4))
        model.decoder[0].bias.zero_()
    x = torch.rand(5, 1, 2, 2, generator=_gen(2))
    torch.testing.assert_close(evaluate.reconstruction_error(model, x), torch.zeros(5))
    with torch.no_grad():
        model.decoder[0].bias.fill_(0.1)
    err = evaluate.reconstruction_error(model, x * 0.5)  # stays below the clamp at 1
    torch.testing.assert_close(err, torch.full((5,), 0.01))


# ---------------------------------------------------------------- bad input

def _raises(exc, name, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert name in str(info.value), str(info.value)


def test_cvae_requires_labels(tiny):
    cvae, x, y = tiny["cvae"], tiny["x"], tiny["y"]
    _raises(ValueError, "labels", evaluate.negative_elbo, cvae, x)
    _raises(ValueError, "labels", evaluate.importance_weighted_nll, cvae, x, k=2)
    _raises(ValueError, "labels", evaluate.reconstruction_error, cvae, x)
    _raises(TypeError, "labels", evaluate.negative_elbo, cvae, x, y.int())
    _raises(TypeError, "labels", evaluate.negative_elbo, cvae, x, y.float())
    _raises(ValueError, "labels", evaluate.negative_elbo, cvae, x, y[:-1])
    _raises(ValueError, "labels", evaluate.negative_elbo, cvae, x, y + 3)
    # with labels, all three work
    evaluate.negative_elbo(cvae, x, y)
    evaluate.importance_weighted_nll(cvae, x, k=2, labels=y)


def test_bad_arguments_name_the_argument(tiny):
    vae, ae, x = tiny["vae"], tiny["ae"], tiny["x"]
    _raises(TypeError, "model", evaluate.negative_elbo, ae, x)
    _raises(TypeError, "model", evaluate.importance_weighted_nll, ae, x)
    for bad in (0, -3, 2.5):
        _raises(ValueError, "k", evaluate.importance_weighted_nll, vae, x, k=bad)
        _raises(ValueError, "batch_size", evaluate.negative_elbo, vae, x, batch_size=bad)
    _raises(TypeError, "images", evaluate.negative_elbo, vae, (x * 255).to(torch.uint8))
    _raises(ValueError, "images", evaluate.negative_elbo, vae, x.view(60, 16))
    _raises(ValueError, "images", evaluate.importance_weighted_nll, vae, x * 2)
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    _raises(ValueError, "images", evaluate.reconstruction_error, ae, nan)


def test_digit_classifier_reads_clear_patterns_and_gives_graded_confidence():
    g = _gen(5)
    protos = torch.eye(4).view(4, 1, 2, 2)
    y = torch.arange(200) % 4
    x = (protos[y] + 0.15 * torch.rand(200, 1, 2, 2, generator=g)).clamp(0, 1)
    clf = evaluate.train_digit_classifier(x[:150], y[:150])
    assert evaluate.classifier_accuracy(clf, x[150:], y[150:]) == 1.0
    assert evaluate.classifier_accuracy(clf, x[150:], (y[150:] + 1) % 4) == 0.0
    ambiguous = torch.full((1, 1, 2, 2), 0.5)
    assert clf.predict_proba(ambiguous.flatten(1).numpy()).max() < 1.0
    with pytest.raises(ValueError, match="labels"):
        evaluate.train_digit_classifier(x, y[:10])


def test_negative_elbo_per_example_averages_to_negative_elbo(tiny):
    for model, labels in ((tiny["vae"], None), (tiny["cvae"], tiny["y"])):
        per = evaluate.negative_elbo_per_example(model, tiny["x"], labels, batch_size=7)
        assert per.shape == (60,) and per.dtype == torch.float64
        mean = evaluate.negative_elbo(model, tiny["x"], labels, batch_size=7).total
        assert float(per.mean()) == pytest.approx(mean, rel=1e-6)


def test_paired_difference_uses_the_spread_of_differences():
    torch.manual_seed(0)
    shared = 100 + 30 * torch.randn(400)           # digit difficulty, common to both models
    a, b = shared + 0.5 + 0.1 * torch.randn(400), shared + 0.1 * torch.randn(400)
    d = evaluate.paired_difference(a, b)
    assert d.mean == pytest.approx(float((a.double() - b.double()).mean()), rel=1e-9)
    assert d.stderr == pytest.approx(float((a - b).std() / 20), rel=1e-6)
    # Unpaired error bars (about 1.5 each) would hide the 0.5 difference; the paired one shows it.
    assert abs(d.mean) > 2 * d.stderr and float(a.std() / 20) > d.mean


@pytest.mark.parametrize("a, b, name", [
    ([1.0, 2.0], torch.tensor([1.0, 2.0]), "a"),
    (torch.tensor([1.0]), torch.tensor([1.0]), "a"),
    (torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]), "a"),
    (torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0]), "b"),
    (torch.tensor([1.0, 2.0]), torch.ones(2, 2), "b"),
])
def test_paired_difference_names_bad_arguments(a, b, name):
    with pytest.raises((TypeError, ValueError), match=f"^{name}:"):
        evaluate.paired_difference(a, b)


def test_importance_weights_do_not_depend_on_the_chunk_size(tiny):
    """Issue 11 class 5: the k samples are decoded in chunks (bounded memory); same draws, same result."""
    for model, y in ((tiny["vae"], None), (tiny["cvae"], tiny["y"][:7])):
        x = tiny["x"][:7]
        results = []
        for rows in (1, 7 * 3, 7 * 64, 10**6):  # one sample per pass ... all 64 at once
            torch.manual_seed(5)
            results.append(evaluate.importance_weights(model, x, y, 64, chunk_rows=rows))
        for other in results[1:]:
            assert other.shape == (64, 7)
            torch.testing.assert_close(other, results[0], rtol=1e-5, atol=1e-5)


def test_iwae_with_large_k_decodes_in_bounded_chunks(tiny, monkeypatch):
    """No decoder pass sees more than DECODE_ROWS rows, even for k * N far above it."""
    seen = []
    model = tiny["vae"]
    decode = model.decode
    monkeypatch.setattr(model, "decode", lambda z, *a: seen.append(z.shape[0]) or decode(z, *a))
    monkeypatch.setattr(evaluate, "DECODE_ROWS", 50)
    evaluate.importance_weighted_nll(model, tiny["x"][:10], k=200, batch_size=10)
    assert seen and max(seen) <= 50 and sum(seen) == 200 * 10


def test_label_share_is_eta_squared():
    """Between-class over total sum of squares, with class sizes as weights: 0 for identical class
    means, 1 when each class sits on one point, and the textbook value for unequal class sizes."""
    y = torch.tensor([0, 0, 0, 1])
    z = torch.tensor([[0.0], [1.0], [2.0], [5.0]])
    # class means 1 and 5, overall mean 2: between 3 * 1 + 1 * 9 = 12, total 4 + 1 + 0 + 9 = 14
    assert evaluate.label_share(z, y) == pytest.approx(12 / 14)
    assert evaluate.label_share(torch.tensor([[0.0, 1], [0, 1], [3, 2], [3, 2]]), torch.tensor([4, 4, 7, 7])) == pytest.approx(1.0)
    assert evaluate.label_share(torch.tensor([[-1.0], [1], [-1], [1]]), torch.tensor([0, 0, 1, 1])) == pytest.approx(0.0)
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(500, 3, generator=g), torch.randint(0, 10, (500,), generator=g)
    assert 0 <= evaluate.label_share(z, y) < 0.1            # random labels explain little
    assert evaluate.label_share(z + 5 * F.one_hot(y, 10)[:, :3], y) > 0.5


@pytest.mark.parametrize("codes, labels, name", [
    (torch.ones(4), torch.zeros(4, dtype=torch.long), "codes"),
    (torch.ones(4, 2), torch.zeros(4, dtype=torch.long), "codes"),
    (torch.tensor([[0.0], [float("nan")]]), torch.zeros(2, dtype=torch.long), "codes"),
    (torch.randn(4, 2), torch.zeros(3, dtype=torch.long), "labels"),
    (torch.randn(4, 2), torch.zeros(4), "labels"),
])
def test_label_share_names_bad_arguments(codes, labels, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        evaluate.label_share(codes, labels)


def test_rate_per_example_is_the_kl_part_of_the_negative_elbo(tiny):
    for model, labels in ((tiny["vae"], None), (tiny["cvae"], tiny["y"])):
        rate = evaluate.rate_per_example(model, tiny["x"], labels, batch_size=7)
        assert rate.shape == (60,) and rate.dtype == torch.float64 and (rate >= 0).all()
        kl = evaluate.negative_elbo(model, tiny["x"], labels).kl  # closed form in the loss too
        assert float(rate.mean()) == pytest.approx(kl, rel=1e-5)
    with pytest.raises(TypeError, match="^model:"):
        evaluate.rate_per_example(tiny["ae"], tiny["x"])


# ---------------------------------------------------------------- the evaluation context

@pytest.mark.parametrize("fails", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_evaluating_sets_eval_mode_no_grad_and_a_forked_seeded_rng_then_restores(training, fails):
    model = models.VAE(image_shape=SHAPE, hidden_dims=(4,), latent_dim=1)
    model.train(training)
    torch.manual_seed(123)
    outside = torch.get_rng_state()
    drawn = []
    try:
        with evaluate.evaluating(model, seed=7):
            assert not model.training and not torch.is_grad_enabled()
            drawn.append(torch.rand(3))
            if fails:
                raise KeyError("inside")
    except KeyError:
        assert fails
    assert model.training is training and torch.is_grad_enabled()
    assert torch.equal(torch.get_rng_state(), outside), "the caller's RNG is as it was"
    torch.manual_seed(7)
    assert torch.equal(drawn[0], torch.rand(3)), "seeded with seed"
    with pytest.raises(ValueError, match="seed"):
        with evaluate.evaluating(model, seed=-1):
            pass


def test_every_evaluation_leaves_the_mode_and_the_rng_as_they_were(tiny):
    model, x = tiny["vae"], tiny["x"]
    model.train()
    torch.manual_seed(5)
    state = torch.get_rng_state()
    for run in (lambda: evaluate.loss_parts(model, x), lambda: evaluate.negative_elbo_per_example(model, x),
                lambda: evaluate.importance_weighted_nlls(model, x, ks=(1, 2)), lambda: evaluate.rate_per_example(model, x),
                lambda: evaluate.marginal_kl(model, x, n_samples=10)):
        run()
        assert model.training and torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("name", ["ae", "vae"])
def test_evaluation_refuses_labels_a_model_does_not_take(tiny, name):
    model, x, y = tiny[name], tiny["x"], tiny["y"]
    with pytest.raises(ValueError, match="labels: a .* takes no labels"):
        evaluate.reconstruction_error(model, x, y)
    if name == "vae":
        with pytest.raises(ValueError, match="labels: a VAE takes no labels"):
            evaluate.negative_elbo(model, x, y)
    with pytest.raises(ValueError, match="labels: a CVAE needs labels"):
        evaluate.negative_elbo(tiny["cvae"], x)


def test_loss_parts_of_an_autoencoder_refuse_a_kl_weight(tiny):
    with pytest.raises(ValueError, match="beta"):
        evaluate.loss_parts(tiny["ae"], tiny["x"], beta=2.0)
