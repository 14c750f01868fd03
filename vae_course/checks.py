"""Checks for the course's exercises: immediate feedback, never the answer.

Each exercise at the end of notebooks 01-05 has one check here, named after what it checks
(``checks.kl_by_hand(value)``, ``checks.kl_diagonal(fn)``, ...); the exercise's statement says which
one to call. A check takes your answer (a number, a tensor, or a function you wrote) and

* **passes**: prints a line starting with ``✓`` and returns ``True``;
* **fails**: raises :class:`NotYet` (an ``AssertionError``) with a *hint* that says what looks
  wrong (a sign, a missing factor, a shape, "you averaged over pixels") but not the answer;
* **cannot use the answer**: raises :class:`BadAnswer` (a ``TypeError``) naming the argument, what
  was expected and what was received: a string instead of a number, a tensor of the wrong shape,
  or a function of yours that raised (its error is quoted; the traceback from inside the check
  is not shown).

Numbers computed by hand are accepted within 1 % (round to three significant digits). Functions
are called on small random inputs and compared with the course's package (``vae_course.losses``
and friends) to float32 precision.

Usage, in a notebook::

    from vae_course import checks
    checks.kl_by_hand(0.82)          # ✓ ... -> True, or NotYet: hint
    checks.kl_diagonal(my_kl)        # my_kl(mu, logvar, mu_p, logvar_p) -> (N,)

The bug hunts' broken functions live in :mod:`vae_course.bughunts`.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from vae_course import bughunts, losses

__all__ = [
    "NotYet", "BadAnswer",
    # 01
    "bce_of_blank_decoder", "compression_ratio", "mask_noise", "masked_denoising",
    # 02
    "linear_gaussian_evidence", "linear_gaussian_posterior", "best_grayscale_log_likelihood",
    "bughunt_grayscale_bernoulli",
    # 03
    "kl_by_hand", "kl_diagonal", "effective_beta", "bughunt_mean_over_pixels", "bughunt_logvar_as_logstd",
    # 04
    "estimator_variances", "bughunt_variance_sampling", "bughunt_posterior_mean_loss",
    # 05
    "label_information", "one_hot", "relabel_decode",
]


class NotYet(AssertionError):
    """The answer is wrong; the message is a hint."""


class BadAnswer(TypeError):
    """The answer cannot be checked: wrong type or shape, or the learner's function raised."""


# ----------------------------------------------------------------------------------------------
# Helpers: turn answers into numbers and tensors, call learner functions, report.
# ----------------------------------------------------------------------------------------------

def _passed(exercise: str, message: str) -> bool:
    print(f"✓ Exercise {exercise}: correct. {message}")
    return True


def _not_yet(exercise: str, hint: str):
    __tracebackhide__ = True
    raise NotYet(f"Exercise {exercise}: not yet. Hint: {hint}")


def _bad(exercise: str, message: str):
    __tracebackhide__ = True
    raise BadAnswer(f"Exercise {exercise}: {message}")


def _describe(value) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def _number(value, name: str, exercise: str) -> float:
    """A real number from an int, float, numpy scalar or one-element tensor."""
    __tracebackhide__ = True
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    elif hasattr(value, "item") and getattr(value, "size", None) == 1:  # numpy scalar / 1-element array
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _bad(exercise, f"`{name}`: expected a number (e.g. 0.25), got {_describe(value)}")
    value = float(value)
    if not math.isfinite(value):
        _bad(exercise, f"`{name}`: expected a finite number, got {value}")
    return value


def _close(a: float, b: float, rel: float = 0.01, abs_tol: float = 1e-3) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


def _function(fn, name: str, exercise: str):
    __tracebackhide__ = True
    if not callable(fn):
        _bad(exercise, f"`{name}`: expected a function, got {_describe(fn)}. "
                       f"Pass the function itself (no parentheses after its name).")
    return fn


def _call(fn, name: str, exercise: str, *args, **kwargs):
    """Call the learner's function; if it raises, report its error without our traceback."""
    __tracebackhide__ = True
    try:
        return fn(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - any error of the learner's code is reported, not re-raised
        failure = error
    # Raised outside the except block, so the learner's traceback is not chained to ours.
    if isinstance(failure, NotImplementedError):
        _bad(exercise, f"`{name}` still raises NotImplementedError: write your solution first.")
    shown = ", ".join(_describe(a) for a in args)
    _bad(exercise, f"your function `{name}` raised {type(failure).__name__}: {failure}\n"
                   f"  It was called with: {shown}. Make it run on inputs like these.")


def _tensor(out, name: str, exercise: str, shape: tuple[int, ...]) -> Tensor:
    __tracebackhide__ = True
    if not isinstance(out, Tensor):
        _bad(exercise, f"`{name}` should return a torch.Tensor of shape {shape}, got {_describe(out)}")
    if not out.is_floating_point():
        _bad(exercise, f"`{name}` should return a floating-point tensor of shape {shape}, got dtype {out.dtype}")
    if tuple(out.shape) != tuple(shape):
        hint = ""
        if out.dim() == len(shape) + 1 and tuple(out.shape[:len(shape)]) == tuple(shape):
            hint = " It looks like you forgot to sum over the last dimension."
        elif out.dim() == 0 or out.numel() == 1:
            hint = " It looks like you reduced over the batch too: return one value per example."
        _bad(exercise, f"`{name}` should return shape {shape}, got {tuple(out.shape)}.{hint}")
    return out.detach().to("cpu", torch.float64)


def _matches(a: Tensor, b: Tensor, rtol: float = 1e-4, atol: float = 1e-4) -> bool:
    return bool(torch.allclose(a.to(torch.float64), b.to(torch.float64), rtol=rtol, atol=atol))


def _ratio(a: Tensor, b: Tensor) -> float:
    """Median of a / b, to recognise answers off by a constant factor."""
    return float((a.to(torch.float64) / b.to(torch.float64)).median())


# ----------------------------------------------------------------------------------------------
# 01 · Autoencoders
# ----------------------------------------------------------------------------------------------

def bce_of_blank_decoder(value) -> bool:
    """01.1: the BCE (nats) of one 784-pixel digit when every logit is 0, whatever the digit."""
    __tracebackhide__ = True
    ex = "01.1"
    v, answer = _number(value, "value", ex), 784 * math.log(2)
    if _close(v, answer):
        return _passed(ex, "Every pixel costs the same at logit 0, whatever its value: the untrained decoder's loss.")
    if v < 0:
        _not_yet(ex, "a loss is -log p, and p <= 1 for each binary outcome: it cannot be negative.")
    if _close(v, answer / math.log(2)):
        _not_yet(ex, "that is the value in bits (log base 2). The course measures in nats: natural logarithm.")
    if _close(v, math.log(2)) or _close(v, 1.0):
        _not_yet(ex, "that is the cost of one pixel. The loss of an image sums over all its pixels.")
    _not_yet(ex, "write the BCE of one pixel, -[x ln σ(ℓ) + (1-x) ln(1-σ(ℓ))], at ℓ = 0: σ(0) = 1/2. "
                 "Then sum over the pixels.")


def compression_ratio(value) -> bool:
    """01.2: raw bits of an 8-bit 28x28 image over the bits of a float16 code of 32 numbers."""
    __tracebackhide__ = True
    ex = "01.2"
    v, raw, code = _number(value, "value", ex), 784 * 8, 32 * 16
    if _close(v, raw / code):
        return _passed(ex, "Bits before over bits after.")
    if _close(v, code / raw):
        _not_yet(ex, "the ratio is upside down: a compression ratio is (size before) / (size after), larger is better.")
    if _close(v, 784 / 32):
        _not_yet(ex, "you compared numbers, not bits: a pixel is 8 bits, a float16 is 16 bits.")
    if _close(v, raw / (32 * 32)):
        _not_yet(ex, "a float16 takes 16 bits, not 32.")
    _not_yet(ex, "count bits on both sides: pixels x bits per pixel, codes x bits per code number.")


def mask_noise(fn) -> bool:
    """01.3: ``fn(x, fraction, generator=None)`` sets a random ``fraction`` of each image's pixels to 0."""
    __tracebackhide__ = True
    ex = "01.3"
    _function(fn, "mask_noise", ex)
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.1  # no zeros
    original = x.clone()
    out = _call(fn, "mask_noise", ex, x, 0.3, generator=torch.Generator().manual_seed(1))
    out = _tensor(out, "mask_noise", ex, tuple(x.shape))
    if not torch.equal(x, original):
        _not_yet(ex, "your function changed its input x in place; return a new tensor (e.g. multiply by a mask).")
    kept = out == original.double()
    zeroed = out == 0
    if not bool((kept | zeroed).all()):
        _not_yet(ex, "masking sets some pixels to exactly 0 and leaves the others unchanged; "
                     "your output has other values (did you add noise or rescale?).")
    share = float(zeroed.double().mean())
    if abs(share - 0.7) < 0.03:
        _not_yet(ex, "you zeroed the pixels you meant to keep: `fraction` is the share set to 0.")
    if abs(share - 0.3) > 0.03:
        _not_yet(ex, f"asked for fraction 0.3, your function zeroed {share:.3f} of the pixels.")
    per_image = zeroed.flatten(1).double().mean(1)
    if bool((zeroed[0] == zeroed[1:]).all()):
        _not_yet(ex, "every image got the same mask: draw the random mask for the whole batch, one per image.")
    if float(per_image.std()) > 0.1:
        _not_yet(ex, "the share of masked pixels varies too much between images; mask each pixel independently.")
    again = _call(fn, "mask_noise", ex, original.clone(), 0.3, generator=torch.Generator().manual_seed(1))
    if not torch.equal(_tensor(again, "mask_noise", ex, tuple(x.shape)), out):
        _not_yet(ex, "the same generator seed should give the same mask: draw your random numbers with `generator`.")
    return _passed(ex, f"{share:.1%} of the pixels masked, independently per pixel, repeatable with a generator.")


def masked_denoising(denoiser_error, plain_error) -> bool:
    """01.3 (second part): MSE per pixel on masked test digits, masking denoiser vs plain autoencoder."""
    __tracebackhide__ = True
    ex = "01.3"
    d, p = _number(denoiser_error, "denoiser_error", ex), _number(plain_error, "plain_error", ex)
    if d <= 0 or p <= 0 or d > 1 or p > 1:
        _bad(ex, f"expected two mean squared errors per pixel in (0, 1], got {d:.4g} and {p:.4g}")
    if d >= p:
        _not_yet(ex, "your denoiser is not better than the plain autoencoder. Did you score the denoiser's output "
                     "against the *clean* digits, feed both models the same masked inputs, and train the "
                     "denoiser with `corrupt=`?")
    return _passed(ex, f"the masking denoiser's error is {p / d:.2f}x lower on masked digits.")


# ----------------------------------------------------------------------------------------------
# 02 · From autoencoder to VAE
# ----------------------------------------------------------------------------------------------
# The 1-D linear-Gaussian model of exercise 02.1: z ~ N(0, 1), x | z ~ N(w z, s2), w = 2, s2 = 1, x = 1.
_W, _S2, _X = 2.0, 1.0, 1.0


def linear_gaussian_evidence(value) -> bool:
    """02.1: log p(x) in nats for the 1-D linear-Gaussian model (w = 2, sigma^2 = 1, x = 1)."""
    __tracebackhide__ = True
    ex = "02.1"
    v = _number(value, "log_px", ex)

    def log_normal(x, var):
        return -0.5 * math.log(2 * math.pi * var) - x * x / (2 * var)

    if _close(v, log_normal(_X, _W ** 2 + _S2)):
        return _passed(ex, "p(x) is Gaussian: both noise sources add their variances.")
    if v > 0 and _close(-v, log_normal(_X, _W ** 2 + _S2)):
        _not_yet(ex, "check the sign: a density below 1 has a negative logarithm.")
    if _close(v, log_normal(_X, _S2)):
        _not_yet(ex, "that is the density with the noise variance alone; z is random too, and x = w z + noise.")
    if _close(v, log_normal(_X, _W ** 2)):
        _not_yet(ex, "you left out the observation noise: x = w z + noise, and both parts vary.")
    if _close(v, log_normal(_X, _W + _S2)):
        _not_yet(ex, "the variance of w z is w² Var(z), not w Var(z).")
    if _close(v, -0.5 * math.log(_W ** 2 + _S2) - _X ** 2 / (2 * (_W ** 2 + _S2))):
        _not_yet(ex, "the right variance, but the Gaussian's normalizer 1/sqrt(2π v) is missing.")
    _not_yet(ex, "x = w z + ε is a sum of independent Gaussians: find its mean and variance, then take log N(x; mean, variance).")


def linear_gaussian_posterior(mean, variance) -> bool:
    """02.2: the mean and variance of p(z|x) for the same model as 02.1."""
    __tracebackhide__ = True
    ex = "02.2"
    m, v = _number(mean, "mean", ex), _number(variance, "variance", ex)
    total = _W ** 2 + _S2
    m_ok, v_ok = _close(m, _W * _X / total), _close(v, _S2 / total)
    if m_ok and v_ok:
        return _passed(ex, "the posterior is narrower than the prior and pulled towards 0 from x / w.")
    if v <= 0:
        _bad(ex, f"`variance`: expected a positive number, got {v}")
    if not m_ok:
        if _close(m, _X / _W):
            _not_yet(ex, "mean: x / w explains x with no noise, but the prior N(0, 1) pulls z towards 0.")
        _not_yet(ex, "mean: complete the square in z in log p(x|z) + log p(z); the mean is where it peaks.")
    if v >= 1:
        _not_yet(ex, "variance: seeing x can only make us more certain about z than the prior (variance 1).")
    if _close(v, 1 / _W ** 2) or _close(v, _S2 / _W ** 2):
        _not_yet(ex, "variance: the precisions (1 / variance) of the prior and of the likelihood add.")
    _not_yet(ex, "variance: read it off the z² coefficient after completing the square: -z² / (2 variance).")


def best_grayscale_log_likelihood(value) -> bool:
    """02.3: the largest value of bughunts.bernoulli_log_likelihood for an image of 784 pixels equal to 0.5."""
    __tracebackhide__ = True
    ex = "02.3"
    v, answer = _number(value, "value", ex), -784 * math.log(2)
    if _close(v, answer):
        return _passed(ex, "even a perfect decoder cannot reach 0: the number carries the pixels' own entropy.")
    if _close(v, 0.0):
        _not_yet(ex, "0 would be right for binary pixels with a certain decoder. Here x = 0.5: try the best logit for "
                     "one pixel (set the derivative to 0) and evaluate.")
    if _close(v, -answer):
        _not_yet(ex, "check the sign: the function returns a log-likelihood, minus the BCE.")
    if _close(v, -math.log(2)):
        _not_yet(ex, "that is one pixel; the function sums over all 784.")
    _not_yet(ex, "the best logit for a pixel of value x is logit(x); evaluate x ln σ(ℓ) + (1-x) ln(1-σ(ℓ)) there.")


def _grayscale_inputs():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(6, 1, 28, 28, generator=g) * 2
    x = torch.rand(6, 1, 28, 28, generator=g)
    x = torch.where((x - 0.5).abs() < 1e-3, torch.full_like(x, 0.25), x)  # no pixel exactly at the threshold
    return logits, x


def bughunt_grayscale_bernoulli(fn) -> bool:
    """02.3 (fix): ``fn(logits, x)`` -> (N,) a normalized Bernoulli log-likelihood of x binarized at 0.5."""
    __tracebackhide__ = True
    ex = "02.3"
    _function(fn, "binarized_log_likelihood", ex)
    logits, x = _grayscale_inputs()
    out = _tensor(_call(fn, "binarized_log_likelihood", ex, logits, x), "binarized_log_likelihood", ex, (6,))
    want = -losses.bernoulli_nll(logits, (x > 0.5).float()).double()
    if _matches(out, want):
        return _passed(ex, "a Bernoulli log-likelihood of binary data: at most 0, and 0 only for a certain, right decoder.")
    if _matches(out, bughunts.bernoulli_log_likelihood(logits, x).double()):
        _not_yet(ex, "that is the broken function's value: it still scores the gray pixels.")
    if _matches(out, -want):
        _not_yet(ex, "check the sign: return the log-likelihood (at most 0), not the negative log-likelihood.")
    if bool((out > 1e-6).any()):
        _not_yet(ex, "a log-probability of binary pixels is at most 0; some of yours are positive.")
    _not_yet(ex, "binarize first (pixel > 0.5 becomes 1, else 0, as floats), then score the binary image "
                 "with the Bernoulli log-likelihood computed from logits, summed over pixels.")


# ----------------------------------------------------------------------------------------------
# 03 · The KL divergence
# ----------------------------------------------------------------------------------------------

def _kl1(m1, v1, m2, v2):
    """KL(N(m1, v1) || N(m2, v2)) in one dimension."""
    return 0.5 * (math.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)


def kl_by_hand(value) -> bool:
    """03.1: KL( N(1, 0.5^2) || N(0, 1) ) in nats."""
    __tracebackhide__ = True
    ex = "03.1"
    v, answer = _number(value, "value", ex), _kl1(1.0, 0.25, 0.0, 1.0)
    if _close(v, answer):
        return _passed(ex, "closed form ½(σ² - ln σ² - 1 + μ²) with k = 1.")
    if v < 0:
        _not_yet(ex, "a KL divergence is never negative (Jensen). Check the signs of the log term.")
    if _close(v, _kl1(0.0, 1.0, 1.0, 0.25)):
        _not_yet(ex, "that is the reverse direction, KL(N(0,1) || N(1, 0.5²)). Here q = N(1, 0.5²) comes first.")
    if _close(v, 2 * answer):
        _not_yet(ex, "off by a factor 2: the formula starts with ½.")
    if _close(v, _kl1(1.0, 0.5, 0.0, 1.0)):
        _not_yet(ex, "you used σ = 0.5 where the formula needs the variance σ².")
    if _close(v, answer / math.log(2)):
        _not_yet(ex, "that is in bits; use the natural logarithm (nats).")
    _not_yet(ex, "plug μ = 1 and σ² = 0.25 into ½(σ² - ln σ² - 1 + μ²).")


def _kl_inputs(n=5, d=3):
    g = torch.Generator().manual_seed(3)
    return (torch.randn(n, d, generator=g), torch.randn(n, d, generator=g),
            torch.randn(n, d, generator=g), torch.randn(n, d, generator=g))


def kl_diagonal(fn) -> bool:
    """03.2: ``fn(mu, logvar, mu_p, logvar_p)`` -> (N,) KL between diagonal Gaussians, summed over dimensions."""
    __tracebackhide__ = True
    ex = "03.2"
    _function(fn, "kl_diagonal", ex)
    mu, logvar, mu_p, logvar_p = _kl_inputs()
    out = _tensor(_call(fn, "kl_diagonal", ex, mu, logvar, mu_p, logvar_p), "kl_diagonal", ex, (5,))
    want = losses.gaussian_kl(mu, logvar, mu_p, logvar_p).double()
    if _matches(out, want):
        standard = _tensor(_call(fn, "kl_diagonal", ex, mu, logvar, torch.zeros(5, 3), torch.zeros(5, 3)),
                           "kl_diagonal", ex, (5,))
        if _matches(standard, losses.gaussian_kl(mu, logvar).double()):
            return _passed(ex, "it matches losses.gaussian_kl, for a general prior and for N(0, I).")
    if bool((out < -1e-6).any()):
        _not_yet(ex, "some of your KLs are negative; a KL divergence is >= 0. Check the sign of each term.")
    if _matches(out, losses.gaussian_kl(mu_p, logvar_p, mu, logvar).double()):
        _not_yet(ex, "that is KL(p || q), the reverse direction: the first Gaussian (mu, logvar) is q.")
    ratio = _ratio(out, want)
    if abs(ratio - 1 / 3) < 1e-3:
        _not_yet(ex, "off by the number of dimensions: you averaged over the latent dimensions; sum them.")
    if abs(ratio - 2) < 1e-3 or abs(ratio - 0.5) < 1e-3:
        _not_yet(ex, "off by a factor 2: check the ½ in front.")
    _not_yet(ex, "write one dimension's ½(ln σp² - ln σ² + (σ² + (μ - μp)²) / σp² - 1) with σ² = exp(logvar), "
                 "then sum over dimensions.")


def effective_beta(value) -> bool:
    """03.3: the KL weight (beta) that the broken loss (mean over pixels) amounts to, for 28x28 images."""
    __tracebackhide__ = True
    ex = "03.3"
    v = _number(value, "beta", ex)
    if _close(v, 784.0):
        return _passed(ex, "dividing the reconstruction by the number of pixels is the same as multiplying the KL by it.")
    if _close(v, 1 / 784):
        _not_yet(ex, "upside down: divide the whole broken loss by its reconstruction's factor; which term grows?")
    if _close(v, 28.0):
        _not_yet(ex, "count all the pixels of a 28 x 28 image, not one row.")
    if _close(v, 1.0):
        _not_yet(ex, "the two losses are not the same: the broken one divides one of the terms.")
    _not_yet(ex, "write the broken loss as c * (sum over pixels) + KL and multiply by 1/c.")


def _elbo_inputs():
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(4, 1, 28, 28, generator=g)
    x = torch.rand(4, 1, 28, 28, generator=g)
    mu, logvar = torch.randn(4, 20, generator=g), torch.randn(4, 20, generator=g) * 0.5
    return logits, x, mu, logvar


def bughunt_mean_over_pixels(fn) -> bool:
    """03.3 (fix): ``fn(logits, x, mu, logvar)`` -> (N,) the negative ELBO per example, in nats."""
    __tracebackhide__ = True
    ex = "03.3"
    _function(fn, "negative_elbo", ex)
    args = _elbo_inputs()
    out = _tensor(_call(fn, "negative_elbo", ex, *args), "negative_elbo", ex, (4,))
    want = losses.negative_elbo(*args).total.double()
    if _matches(out, want):
        return _passed(ex, "reconstruction and KL both summed, per example: it matches losses.negative_elbo.")
    if _matches(out, bughunts.negative_elbo_mean_over_pixels(*args).double()):
        _not_yet(ex, "that is still the broken loss: the reconstruction is averaged over pixels.")
    ratio = _ratio(out, want)
    if abs(ratio - 1 / 784) < 1e-4:
        _not_yet(ex, "you averaged over pixels: both terms are now divided by the pixel count. The balance is right, "
                     "but the number is no longer in nats per example; sum over pixels instead.")
    if abs(ratio - 1 / 20) < 1e-4 or abs(ratio - 1 / (784 + 20)) < 1e-3:
        _not_yet(ex, "you averaged the KL over latent dimensions; sum it, as the reconstruction is summed.")
    _not_yet(ex, "negative ELBO = (BCE summed over pixels) + (KL summed over latent dimensions), per example.")


def bughunt_logvar_as_logstd(fn) -> bool:
    """03.4 (fix): ``fn(mu, logvar)`` -> (N,) KL( N(mu, exp(logvar)) || N(0, I) ) per example."""
    __tracebackhide__ = True
    ex = "03.4"
    _function(fn, "gaussian_kl", ex)
    mu, logvar, _, _ = _kl_inputs()
    out = _tensor(_call(fn, "gaussian_kl", ex, mu, logvar), "gaussian_kl", ex, (5,))
    want = losses.gaussian_kl(mu, logvar).double()
    if _matches(out, want):
        return _passed(ex, "σ² = exp(logvar): it matches losses.gaussian_kl.")
    if _matches(out, bughunts.gaussian_kl_logvar_as_logstd(mu, logvar).double()):
        _not_yet(ex, "that is still the broken KL: it treats the encoder output as ln σ.")
    zero = _tensor(_call(fn, "gaussian_kl", ex, mu, torch.zeros_like(logvar)), "gaussian_kl", ex, (5,))
    if _matches(zero, losses.gaussian_kl(mu, torch.zeros_like(logvar)).double()):
        _not_yet(ex, "right when logvar = 0 (σ = 1), wrong elsewhere: check how σ² and ln σ² follow from logvar.")
    _not_yet(ex, "the encoder outputs logvar = ln σ², so σ² = exp(logvar) and ln σ² = logvar, no factor 2 anywhere.")


# ----------------------------------------------------------------------------------------------
# 04 · The reparameterization trick
# ----------------------------------------------------------------------------------------------

def estimator_variances(reparameterization, score_function) -> bool:
    """04.1: variances of the one-sample estimators of d/dmu E[z^2] for q = N(0.5, 1)."""
    __tracebackhide__ = True
    ex = "04.1"
    r = _number(reparameterization, "reparameterization", ex)
    s = _number(score_function, "score_function", ex)
    mu, var = 0.5, 1.0
    want_r = 4 * var
    second_moment = (mu ** 4 + 18 * mu ** 2 * var + 15 * var ** 2) / var  # E[(f(z) (z-mu)/var)^2]
    want_s = second_moment - (2 * mu) ** 2
    if r < 0 or s < 0:
        _bad(ex, f"variances are >= 0, got reparameterization={r}, score_function={s}")
    if not _close(r, want_r):
        if _close(r, (2 * mu) ** 2 + want_r):
            _not_yet(ex, "reparameterization: that is E[g²]; subtract the squared mean (E[g])² to get the variance.")
        if _close(r, 2 * math.sqrt(var)):
            _not_yet(ex, "reparameterization: that is the standard deviation of the estimate, not its variance.")
        _not_yet(ex, "reparameterization: the estimate is g = 2z = 2(μ + σε). What is Var(2σε)?")
    if not _close(s, want_s):
        if _close(s, second_moment):
            _not_yet(ex, "score function: that is E[g²]; subtract (E[g])² = (2μ)².")
        _not_yet(ex, "score function: g = z² (z - μ)/σ². Expand with z = μ + σε and use E[ε²] = 1, E[ε⁴] = 3, "
                     "E[ε⁶] = 15 (odd moments are 0).")
    return _passed(ex, f"the score-function estimate is {want_s / want_r:.1f}x noisier here, for the same mean.")


def bughunt_variance_sampling(fn) -> bool:
    """04.2 (fix): ``fn(mu, logvar, eps)`` -> (N, D) a sample of N(mu, exp(logvar)) from the noise eps."""
    __tracebackhide__ = True
    ex = "04.2"
    _function(fn, "reparameterize", ex)
    g = torch.Generator().manual_seed(11)
    mu, logvar = torch.randn(4000, 3, generator=g), torch.randn(4000, 3, generator=g) - 1
    eps = torch.randn(4000, 3, generator=g)
    out = _tensor(_call(fn, "reparameterize", ex, mu, logvar, eps), "reparameterize", ex, (4000, 3))
    want = (mu + torch.exp(0.5 * logvar) * eps).double()
    if _matches(out, want, rtol=1e-5, atol=1e-5):
        return _passed(ex, "z = μ + σ ε with σ = exp(logvar / 2).")
    if _matches(out, bughunts.reparameterize_with_variance(mu, logvar, eps).double()):
        _not_yet(ex, "that is still the broken sampler: it scales the noise by the variance.")
    if _matches(out, mu.double()):
        _not_yet(ex, "your z ignores the noise: a sample needs ε.")
    again = _tensor(_call(fn, "reparameterize", ex, mu, logvar, eps), "reparameterize", ex, (4000, 3))
    if not torch.equal(again, out):
        _not_yet(ex, "two calls with the same eps gave different z: use the eps you are given, draw no new noise.")
    _not_yet(ex, "the noise ε ~ N(0, 1) must be scaled by the standard deviation σ, and the encoder gives "
                 "logvar = ln σ².")


def bughunt_posterior_mean_loss(fn, model, x) -> bool:
    """04.3 (fix): ``fn(model, x, eps)`` -> (N,) the one-sample negative ELBO, decoding z = mu + sigma * eps."""
    __tracebackhide__ = True
    ex = "04.3"
    _function(fn, "test_negative_elbo", ex)
    if not (hasattr(model, "encode") and hasattr(model, "decode")):
        _bad(ex, f"`model`: expected the notebook's trained VAE, got {_describe(model)}")
    if not isinstance(x, Tensor) or x.dim() != 4:
        _bad(ex, f"`x`: expected a batch of images (N, 1, 28, 28), got {_describe(x)}")
    x = x[:64].to(model.device)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        g = torch.Generator().manual_seed(13)
        eps1 = torch.randn(mu.shape, generator=g).to(mu.device)
        eps2 = torch.randn(mu.shape, generator=g).to(mu.device)
        out1 = _tensor(_call(fn, "test_negative_elbo", ex, model, x, eps1), "test_negative_elbo", ex, (len(x),))
        out2 = _tensor(_call(fn, "test_negative_elbo", ex, model, x, eps2), "test_negative_elbo", ex, (len(x),))
        z = mu + torch.exp(0.5 * logvar) * eps1
        want = losses.negative_elbo(model.decode(z), x, mu, logvar).total.double().cpu()
        at_mean = bughunts.test_loss_at_posterior_mean(model, x).double().cpu()
    if _matches(out1, want, rtol=1e-4, atol=1e-3):
        return _passed(ex, "one sample of z per digit, as in training: an unbiased estimate of the negative ELBO.")
    if torch.equal(out1, out2):
        if _matches(out1, at_mean, rtol=1e-4, atol=1e-3):
            _not_yet(ex, "that is still the broken loss: it decodes z = μ and ignores eps.")
        _not_yet(ex, "your loss does not depend on eps: build z from it.")
    kl = losses.gaussian_kl(mu, logvar).double().cpu()
    if _matches(out1 + kl, want, rtol=1e-4, atol=1e-3):
        _not_yet(ex, "the KL term is missing: the negative ELBO is reconstruction + KL.")
    _not_yet(ex, "z = μ + exp(logvar / 2) * eps, then losses.negative_elbo(model.decode(z), x, μ, logvar).total.")


# ----------------------------------------------------------------------------------------------
# 05 · Conditional VAE
# ----------------------------------------------------------------------------------------------

def label_information(value) -> bool:
    """05.1: how many nats lower -log p(x|y) is than -log p(x), for a perfect classifier and 10 balanced classes."""
    __tracebackhide__ = True
    ex = "05.1"
    v, answer = _number(value, "value", ex), math.log(10)
    if _close(v, answer):
        return _passed(ex, "log p(x|y) - log p(x) = log p(y|x) - log p(y).")
    if _close(v, -answer):
        _not_yet(ex, "right size, wrong sign: the question asks how much *lower* -log p(x|y) is, a positive number.")
    if _close(v, 1.0):
        _not_yet(ex, "that is log base 10; nats use the natural logarithm.")
    if _close(v, answer / math.log(2)):
        _not_yet(ex, "that is in bits; nats use the natural logarithm.")
    if _close(v, 0.0):
        _not_yet(ex, "the label is not free information: use Bayes' rule, p(x|y) = p(y|x) p(x) / p(y).")
    _not_yet(ex, "use Bayes' rule: log p(x|y) - log p(x) = log p(y|x) - log p(y). What are p(y|x) and p(y) here?")


def one_hot(fn) -> bool:
    """05.2: ``fn(y, num_classes)`` -> (N, num_classes) float one-hot rows."""
    __tracebackhide__ = True
    ex = "05.2"
    _function(fn, "one_hot", ex)
    y = torch.tensor([3, 0, 9, 9, 1])
    out = _call(fn, "one_hot", ex, y, 10)
    if isinstance(out, Tensor) and not out.is_floating_point():
        _not_yet(ex, f"your one-hot has dtype {out.dtype}; it is concatenated with float pixels, so return floats.")
    if isinstance(out, Tensor) and tuple(out.shape) == (10, 5):
        _not_yet(ex, "transposed: one row per label, one column per class.")
    out = _tensor(out, "one_hot", ex, (5, 10))
    want = torch.nn.functional.one_hot(y, 10).double()
    if torch.equal(out, want):
        other = _call(fn, "one_hot", ex, torch.tensor([0, 1]), 3)   # a class (2) that no label uses
        if (isinstance(other, Tensor) and tuple(other.shape) == (2, 3)
                and torch.equal(other.double(), torch.nn.functional.one_hot(torch.tensor([0, 1]), 3).double())):
            return _passed(ex, "one 1 per row, in the label's column.")
        _not_yet(ex, "right for 10 classes, wrong for num_classes = 3: use the argument, not a constant.")
    if not bool(((out == 0) | (out == 1)).all()) or not torch.equal(out.sum(1), torch.ones(5, dtype=out.dtype)):
        _not_yet(ex, "each row should hold exactly one 1 and zeros elsewhere.")
    _not_yet(ex, "the 1 of row i belongs in column y[i].")


def relabel_decode(fn, cvae, x, y) -> bool:
    """05.3: ``fn(cvae, x, y_encode, y_decode)`` -> (N, 1, 28, 28) pixels: encode with one label, decode with another."""
    __tracebackhide__ = True
    ex = "05.3"
    _function(fn, "relabel_decode", ex)
    if not hasattr(cvae, "one_hot"):
        _bad(ex, f"`cvae`: expected the notebook's trained CVAE, got {_describe(cvae)}")
    if not isinstance(x, Tensor) or x.dim() != 4 or not isinstance(y, Tensor) or len(y) != len(x):
        _bad(ex, f"`x`, `y`: expected images (N, 1, 28, 28) and their labels (N,), got {_describe(x)} and {_describe(y)}")
    x, y = x[:20].to(cvae.device), y[:20].to(cvae.device)
    y_other = (y + 5) % 10
    with torch.no_grad():
        out = _call(fn, "relabel_decode", ex, cvae, x, y_other, y)
        out = _tensor(out, "relabel_decode", ex, tuple(x.shape))
        again = _tensor(_call(fn, "relabel_decode", ex, cvae, x, y_other, y), "relabel_decode", ex, tuple(x.shape))
        mu, _ = cvae.encode(x, y_other)
        want = cvae.to_pixels(cvae.decode(mu, y)).double().cpu()
        swapped = cvae.to_pixels(cvae.decode(cvae.encode(x, y)[0], y_other)).double().cpu()
    if _matches(out, want, rtol=1e-4, atol=1e-4):
        return _passed(ex, "encoded with one label, decoded with another.")
    if float(out.min()) < 0 or float(out.max()) > 1:
        _not_yet(ex, "your output has values outside [0, 1]: the decoder returns logits; convert with cvae.to_pixels.")
    if not torch.equal(out, again):
        _not_yet(ex, "two calls gave different pictures: decode the posterior mean μ, not a sample.")
    if _matches(out, swapped, rtol=1e-4, atol=1e-4):
        _not_yet(ex, "the labels are swapped: encode with y_encode, decode with y_decode.")
    _not_yet(ex, "μ, logvar = cvae.encode(x, y_encode); then cvae.decode(μ, y_decode), as pixels.")
