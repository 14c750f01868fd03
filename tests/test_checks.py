"""vae_course.checks and vae_course.bughunts: every check passes a right answer, rejects a wrong one
with a hint that does not give the answer away, and reports bad input (wrong type, wrong shape, a
function that raises) as a clear BadAnswer; every bug hunt's fixed twin matches vae_course.losses
and its broken version does not."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vae_course import bughunts, checks, losses, models

# --- The fixed twins of the bug hunts (the notebooks' solutions hold the same code). -----------


def binarized_log_likelihood(logits, x):
    x_binary = (x > 0.5).float()
    return -F.binary_cross_entropy_with_logits(logits, x_binary, reduction="none").flatten(1).sum(1)


def negative_elbo_fixed(logits, x, mu, logvar):
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)
    kl = 0.5 * (logvar.exp() - logvar - 1 + mu.pow(2)).sum(dim=1)
    return reconstruction + kl


def gaussian_kl_fixed(mu, logvar):
    return 0.5 * (logvar.exp() - logvar - 1 + mu.pow(2)).sum(dim=1)


def reparameterize_fixed(mu, logvar, eps):
    return mu + torch.exp(0.5 * logvar) * eps


def sampled_negative_elbo(model, x, eps):
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * eps
    return losses.negative_elbo(model.decode(z), x, mu, logvar).total


def kl_diagonal(mu, logvar, mu_p, logvar_p):
    return 0.5 * (logvar_p - logvar + (logvar.exp() + (mu - mu_p) ** 2) / logvar_p.exp() - 1).sum(1)


def mask_noise(x, fraction, generator=None):
    keep = torch.rand(x.shape, generator=generator) >= fraction
    return x * keep.to(x.dtype)


def one_hot(y, num_classes):
    return F.one_hot(y, num_classes).float()


def relabel_decode(cvae, x, y_encode, y_decode):
    mu, _ = cvae.encode(x, y_encode)
    return cvae.to_pixels(cvae.decode(mu, y_decode))


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return models.VAE(latent_dim=2)


@pytest.fixture(scope="module")
def cvae():
    torch.manual_seed(0)
    return models.CVAE(latent_dim=2)


@pytest.fixture(scope="module")
def images():
    return torch.rand(32, 1, 28, 28, generator=_gen(0)), torch.arange(32) % 10


# --- Numbers computed by hand ------------------------------------------------------------------

# (check, right answer(s), [(wrong answer(s), words expected in the hint)])
NUMBER_CASES = [
    (checks.bce_of_blank_decoder, (784 * math.log(2),), [((784.0,), "bits"), ((math.log(2),), "one pixel"),
                                                         ((-543.4,), "negative")]),
    (checks.compression_ratio, (12.25,), [((24.5,), "bits"), ((6.125,), "16 bits"), ((1 / 12.25,), "upside down")]),
    (checks.linear_gaussian_evidence, (-0.5 * math.log(10 * math.pi) - 0.1,),
     [((-0.5 * math.log(2 * math.pi) - 0.5,), "z is random"), ((0.5 * math.log(10 * math.pi) + 0.1,), "sign")]),
    (checks.linear_gaussian_posterior, (0.4, 0.2), [((0.5, 0.2), "prior"), ((0.4, 1.5), "more certain")]),
    (checks.best_grayscale_log_likelihood, (-784 * math.log(2),), [((0.0,), "binary"), ((784 * math.log(2),), "sign")]),
    (checks.kl_by_hand, (0.5 * (0.25 - math.log(0.25)),),
     [((0.5 * (math.log(0.25) + 8 - 1),), "reverse"), ((0.25 - math.log(0.25),), "factor 2"), ((-0.8,), "never negative")]),
    (checks.effective_beta, (784,), [((1 / 784,), "upside down"), ((28,), "all the pixels")]),
    (checks.estimator_variances, (4.0, 18.5625), [((5.0, 18.5625), "squared mean"), ((4.0, 19.5625), "E[g²]")]),
    (checks.label_information, (math.log(10),), [((1.0,), "base 10"), ((-math.log(10),), "sign"),
                                                 ((math.log2(10),), "bits")]),
]


def _answer_texts(answer):
    """How an answer could leak into a message: its value at a few roundings."""
    texts = set()
    for a in answer:
        for digits in (2, 3, 4):
            texts.add(f"{a:.{digits}f}")
        texts.add(f"{a:.3g}")
    return {t for t in texts if len(t.strip("-0.")) >= 2}   # ignore trivial strings like "0.0"


@pytest.mark.parametrize("check, answer, wrongs", NUMBER_CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_number_check_passes_right_and_hints_wrong(check, answer, wrongs, capsys):
    assert check(*answer) is True
    assert "✓" in capsys.readouterr().out
    # rounded to three significant digits is accepted
    assert check(*(float(f"{a:.3g}") for a in answer)) is True
    for wrong, words in wrongs:
        with pytest.raises(checks.NotYet) as info:
            check(*wrong)
        message = str(info.value)
        assert "Hint:" in message and words in message, message
        leaked = [t for t in _answer_texts(answer) if t in message]
        assert not leaked, f"the hint gives the answer away ({leaked}): {message}"


@pytest.mark.parametrize("check, answer, wrongs", NUMBER_CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_number_check_rejects_non_numbers_clearly(check, answer, wrongs):
    args = list(answer)
    for bad in ("0.5", None, [1.0, 2.0], torch.ones(3), float("nan"), True):
        args[0] = bad
        with pytest.raises(checks.BadAnswer) as info:
            check(*args)
        message = str(info.value)
        assert "expected" in message and "got" in message and "Exercise" in message, message


def test_number_check_accepts_tensors_and_numpy_scalars():
    import numpy as np
    assert checks.effective_beta(torch.tensor(784.0))
    assert checks.effective_beta(np.float32(784.0))


# --- Functions written by the learner ----------------------------------------------------------

def _raises(*args, **kwargs):
    raise ValueError("something inside the learner's code")


def _stub(*args, **kwargs):
    raise NotImplementedError("Exercise: your code here")


def _function_cases(vae, cvae, images):
    x, y = images
    return [
        # (name, check(fn), right fn, [(wrong fn, words in hint)], wrong-shape fn)
        ("mask_noise", checks.mask_noise, mask_noise,
         [(lambda x, f, generator=None: mask_noise(x, 1 - f, generator), "zeroed the pixels you meant to keep"),
          (lambda x, f, generator=None: x * (torch.rand(x.shape[1:], generator=generator) >= f), "same mask"),
          (lambda x, f, generator=None: x * (torch.rand(x.shape) >= f), "generator"),
          (lambda x, f, generator=None: x + 0.1 * torch.randn(x.shape, generator=generator), "exactly 0")],
         lambda x, f, generator=None: mask_noise(x, f, generator).flatten(1)),
        ("binarized_log_likelihood", checks.bughunt_grayscale_bernoulli, binarized_log_likelihood,
         [(bughunts.bernoulli_log_likelihood, "broken"),
          (lambda l, x: -binarized_log_likelihood(l, x), "sign")],
         lambda l, x: binarized_log_likelihood(l, x).sum()),
        ("kl_diagonal", checks.kl_diagonal, kl_diagonal,
         [(lambda m, l, mp, lp: kl_diagonal(mp, lp, m, l), "reverse"),
          (lambda m, l, mp, lp: kl_diagonal(m, l, mp, lp) / 3, "averaged"),
          (lambda m, l, mp, lp: 2 * kl_diagonal(m, l, mp, lp), "factor 2")],
         lambda m, l, mp, lp: 0.5 * (lp - l + (l.exp() + (m - mp) ** 2) / lp.exp() - 1)),
        ("negative_elbo", checks.bughunt_mean_over_pixels, negative_elbo_fixed,
         [(bughunts.negative_elbo_mean_over_pixels, "averaged over pixels"),
          (lambda l, x, m, v: negative_elbo_fixed(l, x, m, v) / 784, "averaged over pixels")],
         lambda l, x, m, v: negative_elbo_fixed(l, x, m, v)[None]),
        ("gaussian_kl", checks.bughunt_logvar_as_logstd, gaussian_kl_fixed,
         [(bughunts.gaussian_kl_logvar_as_logstd, "broken"),
          (lambda m, l: gaussian_kl_fixed(m, 0.5 * l), "logvar = 0")],
         lambda m, l: 0.5 * (l.exp() - l - 1 + m.pow(2))),
        ("reparameterize", checks.bughunt_variance_sampling, reparameterize_fixed,
         [(bughunts.reparameterize_with_variance, "broken"),
          (lambda m, l, e: m, "ignores the noise"),
          (lambda m, l, e: m + torch.exp(0.5 * l) * torch.randn_like(e), "same eps")],
         lambda m, l, e: reparameterize_fixed(m, l, e)[:, :2]),
        ("test_negative_elbo", lambda fn: checks.bughunt_posterior_mean_loss(fn, vae, x), sampled_negative_elbo,
         [(lambda model, x, eps: bughunts.test_loss_at_posterior_mean(model, x), "z = μ"),
          (lambda model, x, eps: sampled_negative_elbo(model, x, eps)
           - losses.gaussian_kl(*model.encode(x)), "KL term is missing")],
         lambda model, x, eps: sampled_negative_elbo(model, x, eps).mean()),
        ("one_hot", checks.one_hot, one_hot,
         [(lambda y, n: F.one_hot(y, n), "dtype"), (lambda y, n: one_hot(y, n).T, "transposed"),
          (lambda y, n: F.one_hot(y).float(), "num_classes = 3"),
          (lambda y, n: one_hot((y + 1) % n, n), "column y[i]")],
         lambda y, n: one_hot(y, n)[:, None]),
        ("relabel_decode", lambda fn: checks.relabel_decode(fn, cvae, x, y), relabel_decode,
         [(lambda c, x, ye, yd: relabel_decode(c, x, yd, ye), "swapped"),
          (lambda c, x, ye, yd: c.decode(c.encode(x, ye)[0], yd), "logits"),
          (lambda c, x, ye, yd: c.to_pixels(c.decode(c.reparameterize(*c.encode(x, ye)), yd)), "posterior mean")],
         lambda c, x, ye, yd: relabel_decode(c, x, ye, yd).flatten(1)),
    ]


CASE_NAMES = ["mask_noise", "binarized_log_likelihood", "kl_diagonal", "negative_elbo", "gaussian_kl",
              "reparameterize", "test_negative_elbo", "one_hot", "relabel_decode"]


@pytest.fixture
def cases(vae, cvae, images):
    return {c[0]: c for c in _function_cases(vae, cvae, images)}


@pytest.mark.parametrize("name", CASE_NAMES)
def test_function_check_passes_right_and_hints_wrong(name, cases, capsys):
    _, check, right, wrongs, _ = cases[name]
    assert check(right) is True
    assert "✓" in capsys.readouterr().out
    for wrong, words in wrongs:
        with pytest.raises(checks.NotYet) as info:
            check(wrong)
        assert "Hint:" in str(info.value) and words in str(info.value), str(info.value)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_function_check_reports_bad_functions_clearly(name, cases):
    _, check, _, _, wrong_shape = cases[name]
    with pytest.raises(checks.BadAnswer, match=r"expected a function, got float") as info:
        check(0.5)
    assert "Traceback" not in str(info.value)
    with pytest.raises(checks.BadAnswer, match=r"raised ValueError: something inside the learner's code") as info:
        check(_raises)
    assert "called with" in str(info.value)
    assert info.value.__context__ is None, "the learner's error is quoted, its traceback not chained"
    with pytest.raises(checks.BadAnswer, match="still raises NotImplementedError"):
        check(_stub)
    with pytest.raises(checks.BadAnswer, match=r"should return (shape|a torch.Tensor|a floating)") as info:
        check(wrong_shape)
    assert "got" in str(info.value)
    with pytest.raises(checks.BadAnswer, match="should return a torch.Tensor"):
        check(lambda *args, **kwargs: [1.0, 2.0])


def test_model_checks_reject_wrong_models_and_data(vae, cvae, images):
    x, y = images
    with pytest.raises(checks.BadAnswer, match="`model`: expected"):
        checks.bughunt_posterior_mean_loss(sampled_negative_elbo, "vae", x)
    with pytest.raises(checks.BadAnswer, match="`x`: expected"):
        checks.bughunt_posterior_mean_loss(sampled_negative_elbo, vae, x.flatten(1))
    with pytest.raises(checks.BadAnswer, match="`cvae`: expected"):
        checks.relabel_decode(relabel_decode, vae, x, y)
    with pytest.raises(checks.BadAnswer, match="expected images"):
        checks.relabel_decode(relabel_decode, cvae, x, y[:3])


def test_masked_denoising_compares_two_errors():
    assert checks.masked_denoising(0.02, 0.05)
    with pytest.raises(checks.NotYet, match="not better"):
        checks.masked_denoising(0.05, 0.02)
    with pytest.raises(checks.BadAnswer, match="mean squared errors"):
        checks.masked_denoising(-1.0, 0.02)


# --- The bug hunts: the fixed twins match the package, the broken versions do not ---------------

def _elbo_args():
    g = _gen(1)
    return (torch.randn(8, 1, 28, 28, generator=g), torch.rand(8, 1, 28, 28, generator=g),
            torch.randn(8, 20, generator=g), torch.randn(8, 20, generator=g))


def test_bughunt_mean_over_pixels_fixed_matches_package():
    args = _elbo_args()
    package = losses.negative_elbo(*args).total
    torch.testing.assert_close(negative_elbo_fixed(*args), package)
    assert not torch.allclose(bughunts.negative_elbo_mean_over_pixels(*args), package, rtol=0.05)
    # the broken loss is exactly the package's with beta = 784, divided by 784 (the effective beta)
    torch.testing.assert_close(bughunts.negative_elbo_mean_over_pixels(*args) * 784,
                               losses.negative_elbo(*args, beta=784.0).total)


def test_bughunt_logvar_as_logstd_fixed_matches_package():
    _, _, mu, logvar = _elbo_args()
    torch.testing.assert_close(gaussian_kl_fixed(mu, logvar), losses.gaussian_kl(mu, logvar))
    assert not torch.allclose(bughunts.gaussian_kl_logvar_as_logstd(mu, logvar), losses.gaussian_kl(mu, logvar), rtol=0.05)
    # the broken KL equals the right KL at twice the log-variance: it reads logvar as ln sigma
    torch.testing.assert_close(bughunts.gaussian_kl_logvar_as_logstd(mu, logvar), losses.gaussian_kl(mu, 2 * logvar))


def _monte_carlo_kl(z, mu, logvar):
    """E_q[log q(z) - log p(z)] from samples z, per example."""
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(0)


def test_bughunt_variance_sampling_fixed_matches_package():
    g = _gen(2)
    mu, logvar = torch.randn(3, 2, generator=g, dtype=torch.float64), torch.tensor([[-2.0, 1.0]] * 3, dtype=torch.float64)
    eps = torch.randn(100_000, 3, 2, generator=g, dtype=torch.float64)
    exact = losses.gaussian_kl(mu, logvar)
    fixed = _monte_carlo_kl(reparameterize_fixed(mu, logvar, eps), mu, logvar)
    broken = _monte_carlo_kl(bughunts.reparameterize_with_variance(mu, logvar, eps), mu, logvar)
    torch.testing.assert_close(fixed, exact, rtol=0.02, atol=0.02)
    assert ((broken - exact).abs() > 0.2).all(), (broken, exact)
    # and the fixed sampler is the package's reparameterize, given the same noise
    torch.manual_seed(5)
    package = models.VAE.reparameterize(mu, logvar)
    torch.manual_seed(5)
    torch.testing.assert_close(reparameterize_fixed(mu, logvar, torch.randn_like(mu)), package)


def test_bughunt_grayscale_bernoulli_is_not_normalized_and_the_fix_is():
    gray = torch.full((1, 1, 28, 28), 0.5)
    best = bughunts.bernoulli_log_likelihood(torch.logit(gray), gray)  # the best logits for x = 0.5
    torch.testing.assert_close(best, torch.tensor([-784 * math.log(2)]))
    # summed over both outcomes of a binary pixel, a normalized likelihood gives 1; the fix does
    logit = torch.tensor([[[[0.3]]]])
    total = sum(binarized_log_likelihood(logit, torch.full_like(logit, v)).exp() for v in (0.0, 1.0))
    torch.testing.assert_close(total, torch.ones(1))
    logits, x = torch.randn(4, 1, 28, 28, generator=_gen(3)), torch.rand(4, 1, 28, 28, generator=_gen(4))
    torch.testing.assert_close(binarized_log_likelihood(logits, x), -losses.bernoulli_nll(logits, (x > 0.5).float()))
    gap = (bughunts.bernoulli_log_likelihood(logits, x) - binarized_log_likelihood(logits, x)).abs()
    assert (gap > 1.0).all(), gap


def test_bughunt_posterior_mean_loss_fixed_matches_package(vae, images):
    x, _ = images
    torch.manual_seed(0)
    with torch.no_grad():
        mu, logvar = vae.encode(x)
        eps = torch.randn(200, *mu.shape, generator=_gen(6))
        fixed = torch.stack([sampled_negative_elbo(vae, x, e) for e in eps])
        broken = bughunts.test_loss_at_posterior_mean(vae, x)
        # one sample, same noise: exactly the package's negative ELBO
        z = mu + torch.exp(0.5 * logvar) * eps[0]
        torch.testing.assert_close(fixed[0], losses.negative_elbo(vae.decode(z), x, mu, logvar).total)
        # averaged over samples it agrees with evaluate.negative_elbo's estimate; z = mu differs
        from vae_course import evaluate
        package = evaluate.negative_elbo(vae, x.repeat(50, 1, 1, 1)).total   # 50 samples per digit
    assert abs(float(fixed.mean()) - package) < 0.5, (float(fixed.mean()), package)
    assert not torch.allclose(broken, fixed.mean(0), atol=1e-3)
