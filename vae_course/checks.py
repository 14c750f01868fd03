"""Checks for the course's exercises: immediate feedback, never the answer.

Each checked exercise at the end of notebooks 01-05 and 09 has one check here, named after what it checks
(``checks.kl_by_hand(value)``, ``checks.kl_diagonal(fn)``, ...); the exercise's statement says which
one to call. A check takes your answer (a number, or a function you wrote) and

* **passes**: prints a line starting with ``✓`` (and returns ``None``, so the cell shows nothing more);
* **fails**: raises :class:`NotYet` (an ``AssertionError``) with a *hint* that says what looks
  wrong (a sign, a missing factor, a shape, "you averaged over pixels") but not the answer; a
  mistake the check does not recognise gets a general hint, never the solution;
* **cannot use the answer**: raises :class:`BadAnswer` (a ``TypeError``) naming the argument, what
  was expected and what was received: a string instead of a number, a tensor of the wrong shape,
  or a function of yours that raised (its error is quoted; the traceback from inside the check
  is not shown) or did not finish within ``TIME_LIMIT_S`` seconds.

Numbers computed by hand are accepted within 1 % (round to three significant digits), except where
a known mistake lands closer than that: 04.1's score-function variance is accepted within half a unit
of its third significant digit. Numbers may be ints, floats, numpy scalars, one-element tensors, or
anything else ``float()`` converts (``fractions.Fraction``, ``decimal.Decimal``, an exact sympy value).
Functions are tested the way a test suite would test them:

* on **fresh random inputs every time** (new shapes and values, several values of each
  parameter), so only a function that computes the answer passes, not one that remembers outputs;
* against **references computed before your function runs**, with formulas written out in this
  file (the same as ``vae_course.gaussian`` and ``vae_course.losses``; ``tests/test_checks.py``
  checks that they agree), so reassigning a package function (``gaussian.kl = my_kl``) changes
  nothing here; and this module's own names cannot be reassigned (``checks._gaussian_kl = ...``
  raises AttributeError), except the setting ``TIME_LIMIT_S``;
* for the exercises that take the notebook's trained model (04.3, 05.3), on a **copy of that model
  with slightly moved weights**, the references computed with the same copy: a function that uses
  the notebook's model instead of the one it is given gives other numbers;
* on **copies** of the inputs: if your function changes an argument in place (``x.mul_(...)``,
  ``x[mask] = 0``), the check says so;
* with a **time limit**, so a function that never returns is stopped with a message (on Unix,
  in the main thread, as in a notebook; elsewhere there is no limit). The stop is an exception
  raised inside your function, repeated every second until it ends. A bare ``except:`` (or
  ``except BaseException:``) catches it: a function that catches it and goes on is still reported
  as stopped, but one that catches it in an endless loop cannot be stopped by the check, nor by
  the kernel's interrupt (also an exception): restart the kernel, and catch ``Exception`` instead;
* leaving torch's global random state as it was, so the notebook's later cells are unchanged.

A check runs in the same Python process as your code: it guards against mistakes and shortcuts
(remembered outputs, ignored parameters, in-place changes, reassigned references), not against code
written to defeat it (code that edits torch itself, writes into this module's ``__dict__`` or reads the
check's local variables).

Usage, in a notebook::

    from vae_course import checks
    checks.kl_by_hand(0.5)           # prints ✓ ..., or raises NotYet: hint
    checks.kl_diagonal(my_kl)        # my_kl(mu, logvar, mu_p, logvar_p) -> (N,)

The bug hunts' broken functions live in :mod:`vae_course.bughunts`.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import math
import numbers
import secrets
import signal
import sys
import threading
import time
import types

import torch
from torch import Tensor, nn
from torch.nn.functional import softplus as _softplus

__all__ = [
    "NotYet", "BadAnswer", "TIME_LIMIT_S",
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
    # 09
    "tie_entropy", "unlabelled_elbo", "permuted_labels",
]

TIME_LIMIT_S = 30.0
"""Seconds one call of your function may take before the check stops it (a right answer takes milliseconds)."""


class NotYet(AssertionError):
    """The answer is wrong; the message is a hint."""


class BadAnswer(TypeError):
    """The answer cannot be checked: wrong type or shape, or the learner's function raised or hung."""


# ----------------------------------------------------------------------------------------------
# References: the course's formulas, written out here in float64, so nothing a notebook reassigns
# in vae_course.gaussian or vae_course.losses can change them (tests/test_checks.py checks that
# they agree). The checks look these names up when they run; reassigning them
# (checks._gaussian_kl = ...) is refused by _ReadOnlyModule at the end of this file.
# ----------------------------------------------------------------------------------------------

def _bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """-log p(x) under a Bernoulli with these logits, summed over pixels: ``(N, ...) -> (N,)`` nats.
    Per pixel, -[x ln sigmoid(l) + (1 - x) ln(1 - sigmoid(l))] = softplus(l) - x l."""
    logits, x = logits.double(), x.double()
    return (_softplus(logits) - x * logits).flatten(1).sum(1)


def _gaussian_kl(mu: Tensor, logvar: Tensor, mu_p: Tensor | None = None, logvar_p: Tensor | None = None) -> Tensor:
    """KL( N(mu, diag e^logvar) || N(mu_p, diag e^logvar_p) ) per row, summed over dimensions:
    ``(N, J) -> (N,)`` nats; the prior defaults to N(0, I)."""
    mu, logvar = mu.double(), logvar.double()
    mu_p = torch.zeros_like(mu) if mu_p is None else mu_p.double()
    logvar_p = torch.zeros_like(mu) if logvar_p is None else logvar_p.double()
    return 0.5 * (logvar_p - logvar + (logvar.exp() + (mu - mu_p) ** 2) / logvar_p.exp() - 1).sum(1)


# ----------------------------------------------------------------------------------------------
# Helpers: report, turn answers into numbers and tensors, call the learner's functions safely.
# ----------------------------------------------------------------------------------------------

def _passed(exercise: str, message: str) -> None:
    # Returns None, so a check cell shows the ✓ line and no stray "True" below it. Each message is
    # written with its own capital: many start with a symbol (σ², z, p(x)) that must stay as it is.
    print(f"✓ Exercise {exercise}: correct. {message}")


def _not_yet(exercise: str, hint: str):
    __tracebackhide__ = True
    raise NotYet(f"Exercise {exercise}: not yet. Hint: {hint}")


def _bad(exercise: str, message: str):
    __tracebackhide__ = True
    raise BadAnswer(f"Exercise {exercise}: {message}")


def _describe(value) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, nn.Module):
        kind = type(value).__name__
        return f"{'an' if kind[:1] in 'AEIOU' else 'a'} {kind} model"
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def _number(value, name: str, exercise: str) -> float:
    """A real number from an int, float, numpy scalar, one-element tensor, or anything else that
    ``float()`` converts (Decimal, an exact sympy value such as 784*log(2)); never from a string."""
    __tracebackhide__ = True
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    elif hasattr(value, "item") and getattr(value, "size", None) == 1:  # numpy scalar / 1-element array
        value = value.item()
    if not isinstance(value, (numbers.Real, str, bytes, Tensor)) and hasattr(type(value), "__float__"):
        try:
            value = float(value)                 # Decimal, sympy: exact numbers of other libraries
        except (TypeError, ValueError, ArithmeticError):
            pass                                  # a sympy symbol, a complex number: refused below
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _bad(exercise, f"`{name}`: expected a number (e.g. 0.25), got {_describe(value)}")
    value = float(value)
    if not math.isfinite(value):
        _bad(exercise, f"`{name}`: expected a finite number, got {value}")
    return value


def _close(a: float, b: float, rel: float = 0.01, abs_tol: float = 1e-3) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


def _judge(exercise: str, value: float, answer: float, praise: str, slips: list[tuple[float, str]], general: str) -> None:
    """A number check: passes when ``value`` is ``answer`` (within 1 %); else gives the hint of the first
    recognised slip (a wrong value a learner reaches, and what it means), else the ``general`` hint."""
    __tracebackhide__ = True
    if _close(value, answer):
        return _passed(exercise, praise)
    for slip, hint in slips:
        if _close(value, slip):
            _not_yet(exercise, hint)
    _not_yet(exercise, "not a slip this check recognises. " + general)


def _matches(a: Tensor, b: Tensor, rtol: float = 1e-4, atol: float = 1e-4) -> bool:
    return bool(torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol))


_randbits = secrets.SystemRandom().getrandbits   # our own instance: patching `secrets` changes nothing here


def _fresh_generator() -> torch.Generator:
    """A generator with a new seed on every call (from the operating system, so neither torch's nor
    Python's global random state is touched): each run of a check draws new inputs."""
    return torch.Generator().manual_seed(_randbits(62))


def _randint(g: torch.Generator, low: int, high: int) -> int:
    """A random integer in [low, high]."""
    return int(torch.randint(low, high + 1, (), generator=g))


def _distinct(g: torch.Generator, low: int, high: int, k: int) -> list[int]:
    """``k`` different random integers in [low, high]: one shape per call, so no shape comes back."""
    return (torch.randperm(high - low + 1, generator=g)[:k] + low).tolist()


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


class _TimeUp(BaseException):
    """Raised inside the learner's function when its time is up (a BaseException, so that an
    ``except Exception`` in their code does not swallow it)."""


_AGAIN_S = 1.0
"""Seconds between repeated stops, after the first, for code that swallowed the first one."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise _TimeUp in the code inside after ``seconds``, and again every ``_AGAIN_S`` seconds until
    it ends (a bare ``except:`` may have swallowed the first). Yields a namespace whose ``fired`` counts
    the stops, so a timeout is known even if the code caught the exception and returned. SIGALRM, which
    exists on Unix and can be used in the main thread only (a notebook runs its cells there).
    Elsewhere: no limit."""
    armed, clock = [True], types.SimpleNamespace(fired=0)

    def time_up(signum, frame):
        if armed[0]:
            clock.fired += 1
            raise _TimeUp

    try:
        if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
            raise ValueError("no SIGALRM here")
        previous_handler = signal.signal(signal.SIGALRM, time_up)
    except (ValueError, OSError):   # Windows, another thread, or an embedding that keeps signals to itself
        yield clock
        return
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds, _AGAIN_S)
    start = time.monotonic()
    try:
        yield clock
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous_handler is None else previous_handler)
        if previous_delay > 0:  # someone else's alarm was pending (a test runner's timeout): put it back
            signal.setitimer(signal.ITIMER_REAL, max(previous_delay - (time.monotonic() - start), 1e-3),
                             previous_interval)


def _copy(value):
    """What the learner's function receives: a clone, so the check's own inputs stay as they were."""
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, nn.Module):
        try:
            return copy.deepcopy(value)
        except Exception:  # noqa: BLE001 - a model that cannot be copied is lent as it is
            return value
    return value


def _changed(original, given) -> bool:
    """Did the learner's function change ``given`` (its copy of ``original``) in place?"""
    if isinstance(original, Tensor):
        return given.shape != original.shape or not torch.equal(given, original)
    if isinstance(original, nn.Module) and given is not original:
        mine, theirs = original.state_dict(), given.state_dict()
        return mine.keys() != theirs.keys() or any(not torch.equal(mine[k], theirs[k]) for k in mine)
    return False


def _keeps_random_state(check):
    """Run ``check`` with torch's global random state saved and restored: an answer may draw from it
    (mask_noise without a generator does, a sampling mistake does), and the notebook's later cells
    must see the same random numbers as if the check had not run."""
    @functools.wraps(check)
    def run(*args, **kwargs):
        __tracebackhide__ = True
        cuda = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=cuda):
            return check(*args, **kwargs)
    return run


class _Answer:
    """The learner's function, called the safe way: on copies of the check's inputs and with a time
    limit. It remembers which arguments the function changed in place, and words the check's
    verdicts (``fail``, ``passed``)."""

    def __init__(self, fn, name: str, exercise: str, params: tuple[str, ...]):
        __tracebackhide__ = True
        if not callable(fn):
            _bad(exercise, f"`{name}`: expected a function, got {_describe(fn)}. "
                           f"Pass the function itself (no parentheses after its name).")
        # Messages call the function by the name the learner gave it (gaussian_kl_fixed, not the
        # package's gaussian_kl); a lambda or a partial keeps the exercise's name.
        own = getattr(fn, "__name__", None)
        name = own if isinstance(own, str) and own.isidentifier() else name
        self.fn, self.name, self.exercise, self.params = fn, name, exercise, params
        self.changed: list[str] = []   # arguments it changed in place, by name

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True
        names = [*self.params[:len(args)], *kwargs]
        values = [*args, *kwargs.values()]
        given = [_copy(v) for v in values]
        failure, clock = None, None
        try:
            with _time_limit(TIME_LIMIT_S) as clock:
                out = self.fn(*given[:len(args)], **dict(zip(kwargs, given[len(args):])))
        except _TimeUp:
            failure = _TimeUp
        except Exception as error:  # noqa: BLE001 - any error of the learner's code is reported, not re-raised
            failure = error
        # Reported outside the except blocks, so the learner's traceback is not chained to ours.
        shown = ", ".join(f"{n}={_describe(v)}" for n, v in zip(names, values))
        if failure is _TimeUp or (clock is not None and clock.fired):
            caught = "" if failure is _TimeUp and clock.fired == 1 else (
                " Your code caught the stop and carried on: a bare `except:` catches everything, "
                "write `except Exception:` instead.")
            _bad(self.exercise, f"your function `{self.name}` did not finish within {TIME_LIMIT_S:g} s "
                                f"(called with {shown}); it was stopped. Is there a loop that never ends?{caught}")
        if isinstance(failure, NotImplementedError):
            _bad(self.exercise, f"`{self.name}` still raises NotImplementedError: write your solution first.")
        if failure is not None:
            _bad(self.exercise, f"your function `{self.name}` raised {type(failure).__name__}: {failure}\n"
                                f"  It was called with: {shown}. Make it run on inputs like these.")
        for name, value, theirs in zip(names, values, given):
            if _changed(value, theirs) and name not in self.changed:
                self.changed.append(name)
        return out

    def tensor(self, out, shape: tuple[int, ...]) -> Tensor:
        """The function's output as a float64 CPU tensor, after checking its type and shape."""
        __tracebackhide__ = True
        shape, name = tuple(shape), self.name
        if type(out) not in (Tensor, nn.Parameter):   # a subclass could redefine what "equal" means
            several = " (several values: return only the tensor, e.g. the `.total` of a LossParts)" \
                if isinstance(out, tuple) and out and isinstance(out[0], Tensor) else ""
            self.bad(f"`{name}` should return a torch.Tensor of shape {shape}, got {_describe(out)}{several}")
        if not out.is_floating_point():
            self.bad(f"`{name}` should return a floating-point tensor of shape {shape}, got dtype {out.dtype}")
        if tuple(out.shape) != shape:
            hint = ""
            if out.dim() == len(shape) + 1 and tuple(out.shape[:len(shape)]) == shape:
                hint = " It looks like you forgot to sum over the last dimension."
            elif out.dim() == 0 or out.numel() == 1:
                hint = " It looks like you reduced over the batch too: return one value per example."
            self.bad(f"`{name}` should return shape {shape}, got {tuple(out.shape)}.{hint}")
        return out.detach().to("cpu", torch.float64)

    def _note(self) -> str:
        if not self.changed:
            return ""
        names = ", ".join(f"`{n}`" for n in self.changed)
        return (f" Note: your function changed its argument {names} in place; code that uses it afterwards "
                f"sees the change. Out-of-place operations (a * b rather than a.mul_(b)) avoid that.")

    def fail(self, hint: str):
        __tracebackhide__ = True
        _not_yet(self.exercise, hint + self._note())

    def bad(self, message: str):
        __tracebackhide__ = True
        _bad(self.exercise, message)

    def passed(self, message: str) -> None:
        _passed(self.exercise, message + self._note())


def _not_finite(out: Tensor) -> bool:
    return not bool(torch.isfinite(out).all())


_NOT_FINITE = ("your function returned NaN or inf for inputs where the answer is finite: look for a log or "
              "square root of a negative number, a division by zero, or an exp that overflows.")


def _is_multiple(out: Tensor, want: Tensor, factor: float) -> bool:
    return _matches(out, factor * want)


# The notebook's own objects, given to the checks of 04.3 and 05.3 next to the learner's function:
# checked first, so a wrong one is named (BadAnswer) rather than failing deep inside the check.

def _model_arg(model, name: str, exercise: str, conditional: bool) -> str:
    """``model`` must be a VAE with a Bernoulli decoder, a CVAE if ``conditional``; returns the words
    for what was expected, for later messages."""
    __tracebackhide__ = True
    want = ("the notebook's trained CVAE (encode(x, y) and decode(z, y) take labels)" if conditional else
            "the notebook's trained VAE (encode(x) gives (mu, logvar), no labels)")
    looks_right = (isinstance(model, nn.Module) and any(True for _ in model.parameters())
                   and all(callable(getattr(model, m, None)) for m in ("encode", "decode", "to_pixels"))
                   and isinstance(getattr(model, "latent_dim", None), int)
                   and isinstance(getattr(model, "image_shape", None), tuple))
    if not looks_right:
        _bad(exercise, f"`{name}`: expected {want}, got {_describe(model)}")
    if bool(getattr(model, "num_classes", 0)) != conditional:
        _bad(exercise, f"`{name}`: expected {want}, got {_describe(model)}, which "
                       f"{'takes no labels' if conditional else 'takes labels'}")
    if getattr(model, "likelihood", None) != "bernoulli":
        _bad(exercise, f"`{name}`: expected {want} with a Bernoulli decoder, got one with the "
                       f"{getattr(model, 'likelihood', None)!r} likelihood")
    return want


def _images_arg(x, model: nn.Module, name: str, exercise: str) -> None:
    """``x`` must be images the model takes: shape (N, *image_shape), the model's dtype, values in [0, 1]."""
    __tracebackhide__ = True
    shape, dtype = model.image_shape, next(model.parameters()).dtype
    want = (f"images of shape (N, {', '.join(map(str, shape))}), dtype {dtype} (the model's) "
            f"and pixel values in [0, 1]")
    if not isinstance(x, Tensor) or x.dim() != 1 + len(shape) or tuple(x.shape[1:]) != shape or len(x) == 0:
        _bad(exercise, f"`{name}`: expected {want}, got {_describe(x)}")
    if x.dtype != dtype:
        why = " (integers 0 to 255? divide by 255)" if not x.is_floating_point() else ""
        _bad(exercise, f"`{name}`: expected {want}, got dtype {x.dtype}{why}")
    lo, hi = float(x.detach().min()), float(x.detach().max())
    if not (0 <= lo and hi <= 1):   # also False for NaN
        _bad(exercise, f"`{name}`: expected {want}, got values in [{lo:.4g}, {hi:.4g}]")


def _labels_arg(y, n: int, model: nn.Module, name: str, exercise: str) -> None:
    """``y`` must be one int64 label per image, in [0, num_classes)."""
    __tracebackhide__ = True
    want = f"one class label per image of x: shape ({n},), dtype torch.int64, values 0 to {model.num_classes - 1}"
    if not isinstance(y, Tensor) or tuple(y.shape) != (n,):
        _bad(exercise, f"`{name}`: expected {want}, got {_describe(y)}")
    if y.dtype != torch.int64:
        _bad(exercise, f"`{name}`: expected {want}, got dtype {y.dtype}")
    if int(y.min()) < 0 or int(y.max()) >= model.num_classes:
        _bad(exercise, f"`{name}`: expected {want}, got values {int(y.min())} to {int(y.max())}")


def _encodes(model: nn.Module, name: str, exercise: str, want: str, *inputs: Tensor) -> None:
    """The model's encoder runs on two of the images (and labels) and gives (mu, logvar)."""
    __tracebackhide__ = True
    problem = ""
    try:
        with torch.no_grad():
            out = model.encode(*(t[:2] for t in inputs))
        shape = (min(2, len(inputs[0])), model.latent_dim)
        if not (isinstance(out, tuple) and len(out) == 2
                and all(isinstance(t, Tensor) and tuple(t.shape) == shape for t in out)):
            problem = f"its encode gave {_describe(out)}, not (mu, logvar) of shape {shape} each"
    except Exception as error:  # noqa: BLE001 - reported as a wrong argument
        problem = f"its encode raised {type(error).__name__}: {error}"
    if problem:
        _bad(exercise, f"`{name}`: expected {want}, got {_describe(model)}: {problem}")


def _twin(model: nn.Module, g: torch.Generator, name: str, exercise: str) -> nn.Module:
    """A copy of the notebook's model with every weight moved by noise of 2 % of its tensor's mean
    size. The learner's function gets (copies of) the twin and the references are computed with it,
    so a function that uses the notebook's model instead of its argument gives other numbers."""
    __tracebackhide__ = True
    try:
        twin = copy.deepcopy(model)
    except Exception as error:  # noqa: BLE001 - reported as a wrong argument
        _bad(exercise, f"`{name}`: expected the notebook's model, which can be copied; copying it raised "
                       f"{type(error).__name__}: {error}")
    with torch.no_grad():
        for weights in twin.parameters():
            size = float(weights.abs().mean()) + 1e-3
            weights.add_(0.02 * size * torch.randn(weights.shape, generator=g).to(weights))
    return twin


_OTHER_MODEL = ("your function did not use the {name} it was given: its numbers are those of another model "
                "(the notebook's global one?). Compute everything with the argument `{name}`.")


# ----------------------------------------------------------------------------------------------
# 01 · Autoencoders
# ----------------------------------------------------------------------------------------------

def bce_of_blank_decoder(value) -> None:
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
    if _close(v, answer / math.log(10)):
        _not_yet(ex, "that is in log base 10. The course measures in nats: natural logarithm.")
    if _close(v, math.log(2)) or _close(v, 1.0):
        _not_yet(ex, "that is the cost of one pixel. The loss of an image sums over all its pixels.")
    _not_yet(ex, "not a slip this check recognises. Work out the BCE of one pixel at logit 0 from the formula, "
                 "for a pixel of value 0 and of value 1; then add up the whole image.")


def compression_ratio(value) -> None:
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
    _not_yet(ex, "not a slip this check recognises. Count bits on both sides: pixels x bits per pixel, "
                 "code numbers x bits per code number.")


@_keeps_random_state
def mask_noise(fn) -> None:
    """01.3: ``fn(x, fraction, generator=None)`` sets a random ``fraction`` of each image's pixels to 0.

    Tested on fresh random images (no pixel is 0) for three fractions. Each output pixel must be 0 or
    its input value; the share set to 0 must be ``fraction``; and since each pixel is masked on its
    own, the share masked in one image (784 pixels), and the share of images masked at one pixel
    position, must vary as much as a binomial count does, no more and no less: a fixed number of
    pixels per image, one mask for all images, or masked rows or blocks all fail. Generators of the
    same seed must give the same masks, call after call; another seed another mask; a second call
    with the same generator a new mask (the generator's state moves on with each draw, so reading
    its seed is not drawing from it); two calls without a generator two different masks (torch's
    global generator, not a fixed seed of your own). And ``x`` must be left unchanged.
    """
    __tracebackhide__ = True
    answer = _Answer(fn, "mask_noise", "01.3", ("x", "fraction"))
    g = _fresh_generator()
    for fraction in (0.3, _uniform(g, 0.1, 0.4), _uniform(g, 0.6, 0.9)):   # 0.3 is the notebook's
        n = _randint(g, 200, 260)
        x = 0.1 + 0.9 * torch.rand(n, 1, 28, 28, generator=g)
        seed = _randbits(62)
        first, twin = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        out = answer.tensor(answer(x, fraction, generator=first), x.shape)
        if "x" in answer.changed:   # the statement asks for x unchanged: not a note but the hint
            _not_yet(answer.exercise, "your function changed its input x in place (e.g. `x[mask] = 0` or `x.mul_(...)`); "
                        "the exercise asks to leave x unchanged: return a new tensor.")
        _mask_looks_right(answer, out, x, fraction)
        if not torch.equal(answer.tensor(answer(x, fraction, generator=twin), x.shape), out):
            answer.fail("two calls with generators of the same seed gave different masks: draw every random "
                        "number with `generator` (e.g. torch.rand(..., generator=generator)).")
        other = answer(x, fraction, generator=torch.Generator().manual_seed(seed + 1))
        if torch.equal(answer.tensor(other, x.shape), out):
            answer.fail("generators with different seeds gave the same mask: draw your random numbers with "
                        "the `generator` you are given (not with torch's global generator or a seed of your own).")
        # The same two generators once more: each has moved on, so a new mask, the same for both.
        second = answer.tensor(answer(x, fraction, generator=first), x.shape)
        if torch.equal(second, out):
            answer.fail("two calls with the same generator gave the same mask: draw your random numbers from "
                        "`generator` itself, whose state moves on with each draw (not from a new generator made "
                        "from its seed).")
        if not torch.equal(answer.tensor(answer(x, fraction, generator=twin), x.shape), second):
            answer.fail("generators of the same seed gave the same first mask but different second masks: draw "
                        "every random number with `generator`, and only with it.")
    # No generator: torch's global one (restored after the check), which moves on from call to call.
    default = answer.tensor(answer(x, fraction), x.shape)
    _mask_looks_right(answer, default, x, fraction)
    if torch.equal(answer.tensor(answer(x, fraction), x.shape), default):
        answer.fail("two calls without a generator gave the same mask: with generator=None, draw from torch's "
                    "global random generator (as torch.rand does when its generator is None), not from a "
                    "generator of your own with a fixed seed.")
    return answer.passed("Each pixel masked on its own with the asked probability, repeatable with a generator.")


def _mask_looks_right(answer: _Answer, out: Tensor, x: Tensor, fraction: float) -> None:
    """The statistical tests of mask_noise, for one output. Each bound allows about 7 standard
    deviations of chance, so a right answer fails far less than once in a billion runs."""
    __tracebackhide__ = True
    zeroed = out == 0
    if not bool((zeroed | (out == x.double())).all()):
        answer.fail("masking sets some pixels to exactly 0 and leaves the others unchanged; your output has "
                    "other values (did you add noise, or rescale the kept pixels as dropout does?).")
    flat = zeroed.flatten(1).double()                      # (images, pixels): 1 where masked
    n, d = flat.shape
    share = float(flat.mean())                             # its standard deviation is below 0.0015 here
    wrong_share = f"asked for fraction {fraction:.2f}, your function set {share:.3f} of the pixels to 0"
    if 0 < share < 1:
        if bool((flat[0] == flat[1:]).all()):
            answer.fail("every image got the same mask: draw a mask of the batch's full shape, one per image.")
        # Masking pixels independently, the share masked in one image of d pixels is binomial, with
        # standard deviation sqrt(p (1 - p) / d), and so is the share of the n images masked at one pixel
        # position, with n in place of d. The standard deviation of m such shares estimates this within a
        # relative error of about 1 / sqrt(2 (m - 1)); the bounds allow 7 times that.
        binomial_sd = math.sqrt(share * (1 - share))
        spread_images = float(flat.mean(1).std()) / (binomial_sd / math.sqrt(d))   # about 1 if independent
        spread_pixels = float(flat.mean(0).std()) / (binomial_sd / math.sqrt(n))
        slack_images, slack_pixels = 7 / math.sqrt(2 * (n - 1)), 7 / math.sqrt(2 * (d - 1))
        if spread_images < 1 - slack_images:
            answer.fail("every image loses (almost) the same number of pixels. Masking each pixel independently, "
                        "that number varies from image to image like a binomial count: decide pixel by pixel.")
        if spread_images > 1 + slack_images or spread_pixels > 1 + slack_pixels:
            answer.fail("the masked pixels are not independent: the share masked varies too much between images "
                        "or between pixel positions (whole rows, blocks or images masked together?). "
                        "Decide pixel by pixel.")
        if spread_pixels < 1 - slack_pixels:
            answer.fail("each pixel position is masked in (almost) the same number of images: the masks of "
                        "different images are not independent. Decide pixel by pixel, image by image.")
    if abs(share - (1 - fraction)) < 0.01:
        answer.fail(wrong_share + ": `fraction` is the share set to 0, not the share kept.")
    if abs(share - fraction) > 0.01:
        answer.fail(wrong_share + ".")


def masked_denoising(denoiser_error, plain_error, *, denoiser=None, plain=None, x=None) -> None:
    """01.3 (second part): MSE per pixel on masked test digits, masking denoiser vs plain autoencoder.

    ``denoiser_error``, ``plain_error``: your two mean squared errors per pixel, each model fed the same
    masked test digits (30 % of the pixels set to 0) and scored against the clean digits.
    With the models and the digits (``denoiser=mask_dae, plain=ae16, x=x_test``) the check also
    scores both models itself, on freshly masked digits, and compares: each of your numbers must be
    within 10 % of its own (the masks and digits differ, the models do not), so a number from another
    model, or scored against the masked digits, is caught. Without them it can only compare the two.
    """
    __tracebackhide__ = True
    ex = "01.3"
    d, p = _number(denoiser_error, "denoiser_error", ex), _number(plain_error, "plain_error", ex)
    for value, name in ((d, "denoiser_error"), (p, "plain_error")):
        if not 0 < value <= 1:   # pixels in [0, 1]: a squared error per pixel is at most 1
            _bad(ex, f"`{name}`: expected a mean squared error per pixel, in (0, 1], got {value:.4g}")
    scored = ""
    if (denoiser, plain, x) != (None, None, None):
        for model, name in ((denoiser, "denoiser"), (plain, "plain")):
            if not hasattr(model, "reconstruct"):
                _bad(ex, f"`{name}`: expected the notebook's trained autoencoder, got {_describe(model)}")
        if not isinstance(x, Tensor) or x.dim() != 4:
            _bad(ex, f"`x`: expected the clean test digits (N, 1, 28, 28), got {_describe(x)}")
        g = _fresh_generator()
        clean = x[torch.randperm(len(x), generator=g)[:2000]].float().cpu()
        masked = clean * (torch.rand(clean.shape, generator=g) >= 0.3)
        with torch.no_grad():
            mine = {name: float((model.reconstruct(masked.to(model.device)).cpu() - clean).pow(2).mean())
                    for model, name in ((denoiser, "denoiser"), (plain, "plain"))}
        for yours, name in ((d, "denoiser"), (p, "plain")):
            if not _close(yours, mine[name], rel=0.1, abs_tol=0.0):
                _not_yet(ex, f"`{name}_error` is not what the {name} model scores on masked digits against the "
                             f"clean ones. Did you score the right model, feed it the masked digits, and compare "
                             f"its output with the clean digits?")
        scored = " The check's own scoring of both models agrees."
    if d >= p:
        _not_yet(ex, "your denoiser is not better than the plain autoencoder. Did you score the denoiser's output "
                     "against the *clean* digits, feed both models the same masked inputs, and train the "
                     "denoiser with `corrupt=`?")
    return _passed(ex, f"The masking denoiser's error is {p / d:.4g}x lower on masked digits.{scored}")


# ----------------------------------------------------------------------------------------------
# 02 · From autoencoder to VAE
# ----------------------------------------------------------------------------------------------
# The 1-D linear-Gaussian model of exercise 02.1: z ~ N(0, 1), x | z ~ N(w z, s2), w = 2, s2 = 1, x = 1.
_W, _S2, _X = 2.0, 1.0, 1.0


def _log_normal(x: float, var: float) -> float:
    return -0.5 * math.log(2 * math.pi * var) - x * x / (2 * var)


def linear_gaussian_evidence(value) -> None:
    """02.1: log p(x) in nats for the 1-D linear-Gaussian model (w = 2, s^2 = 1, x = 1)."""
    __tracebackhide__ = True
    ex = "02.1"
    v, answer = _number(value, "log_px", ex), _log_normal(_X, _W ** 2 + _S2)
    if _close(v, answer):
        return _passed(ex, "p(x) is Gaussian: both noise sources add their variances.")
    if v > 0 and _close(-v, answer):
        _not_yet(ex, "check the sign: a density below 1 has a negative logarithm.")
    if _close(v, math.exp(answer)):
        _not_yet(ex, "that looks like the density p(x) itself; the exercise asks for its natural logarithm.")
    if _close(v, answer / math.log(2)) or _close(v, answer / math.log(10)):
        _not_yet(ex, "that is in another log base; nats use the natural logarithm.")
    if _close(v, _log_normal(_X, _S2)):
        _not_yet(ex, "that is the density with the noise variance alone; z is random too, and x = w z + noise.")
    if _close(v, _log_normal(_X, _W ** 2)):
        _not_yet(ex, "you left out the observation noise: x = w z + noise, and both parts vary.")
    if _close(v, _log_normal(_X, _W + _S2)):
        _not_yet(ex, "the variance of w z is w² Var(z), not w Var(z).")
    if _close(v, answer + 0.5 * math.log(2 * math.pi)):
        _not_yet(ex, "the right variance, but the Gaussian's normalizer 1/sqrt(2π v) is missing.")
    _not_yet(ex, "not a slip this check recognises. x = w z + noise is a sum of independent Gaussians, so "
                 "x is Gaussian: find its mean and variance, then evaluate the log-density at x.")


def linear_gaussian_posterior(mean, variance) -> None:
    """02.2: the mean and variance of p(z|x) for the same model as 02.1."""
    __tracebackhide__ = True
    ex = "02.2"
    m, v = _number(mean, "mean", ex), _number(variance, "variance", ex)
    total = _W ** 2 + _S2
    m_ok, v_ok = _close(m, _W * _X / total), _close(v, _S2 / total)
    if m_ok and v_ok:
        return _passed(ex, "The posterior is narrower than the prior and pulled towards 0 from x / w.")
    if v <= 0:
        _bad(ex, f"`variance`: expected a positive number, got {v}")
    if not m_ok:
        if _close(m, _X / _W):
            _not_yet(ex, "mean: x / w explains x with no noise, but the prior N(0, 1) pulls z towards 0.")
        _not_yet(ex, "mean: complete the square in z in log p(x|z) + log p(z); the mean is where it peaks.")
    if v >= 1:
        _not_yet(ex, "variance: seeing x can only make us more certain about z than the prior (variance 1).")
    if _close(v, 1 / _W ** 2) or _close(v, _S2 / _W ** 2):
        _not_yet(ex, "variance: that is the likelihood's alone; the prior's precision (1 / variance) counts too.")
    _not_yet(ex, "variance: read it off the z² coefficient after completing the square: -z² / (2 variance).")


def best_grayscale_log_likelihood(value) -> None:
    """02.3: the largest value of bughunts.bernoulli_log_likelihood for an image of 784 pixels equal to 0.5."""
    __tracebackhide__ = True
    ex = "02.3"
    v, answer = _number(value, "value", ex), -784 * math.log(2)
    if _close(v, answer):
        return _passed(ex, "Even a perfect decoder cannot reach 0: the number carries the pixels' own entropy.")
    if _close(v, 0.0):
        _not_yet(ex, "0 would be right for binary pixels with a certain decoder. Here x = 0.5: try the best logit for "
                     "one pixel (set the derivative to 0) and evaluate.")
    if _close(v, -answer):
        _not_yet(ex, "check the sign: the function returns a log-likelihood, minus the BCE.")
    if _close(v, answer / math.log(2)) or _close(v, answer / math.log(10)):
        _not_yet(ex, "that is in another log base; the function uses the natural logarithm (nats).")
    if _close(v, -math.log(2)):
        _not_yet(ex, "that is one pixel; the function sums over all 784.")
    _not_yet(ex, "not a slip this check recognises. Find the best logit for one pixel of value 0.5 (where the "
                 "derivative is 0), evaluate that pixel's term there, then add up the image.")


@_keeps_random_state
def bughunt_grayscale_bernoulli(fn) -> None:
    """02.3 (fix): ``fn(logits, x)`` -> (N,) a normalized Bernoulli log-likelihood of x binarized at 0.5.

    Tested on two fresh batches of random logits and gray images (no pixel at exactly 0.5)."""
    __tracebackhide__ = True
    answer = _Answer(fn, "binarized_log_likelihood", "02.3", ("logits", "x"))
    g = _fresh_generator()
    for n in _distinct(g, 3, 12, 2):
        logits = 2 * torch.randn(n, 1, 28, 28, generator=g)
        x = torch.rand(n, 1, 28, 28, generator=g)
        x = torch.where((x - 0.5).abs() < 1e-3, torch.full_like(x, 0.25), x)
        want = -_bernoulli_nll(logits, x > 0.5)
        out = answer.tensor(answer(logits, x), (n,))
        if _matches(out, want):
            continue
        if _not_finite(out):
            answer.fail(_NOT_FINITE + " Computing from logits avoids log(0).")
        if _matches(out, -_bernoulli_nll(logits, x)):
            answer.fail("that is the broken function's value: it still scores the gray pixels.")
        if _matches(out, -want):
            answer.fail("check the sign: return the log-likelihood (at most 0), not the negative log-likelihood.")
        if _is_multiple(out, want, 1 / 784):
            answer.fail("you averaged over pixels; the log-likelihood of an image sums over its pixels.")
        if _matches(out, -_bernoulli_nll(logits, x <= 0.5)):
            answer.fail("the binary image is the wrong way round: a pixel above 0.5 becomes 1.")
        if bool((out > 1e-6).any()):
            answer.fail("a log-probability of binary pixels is at most 0; some of yours are positive.")
        answer.fail("not a slip this check recognises. Test your function on a case you can work out by hand: "
                    "with every logit 0, each binary pixel has probability 1/2, whatever the image.")
    return answer.passed("A Bernoulli log-likelihood of binary data: at most 0, and 0 only for a certain, right decoder.")


# ----------------------------------------------------------------------------------------------
# 03 · The KL divergence
# ----------------------------------------------------------------------------------------------

def _kl1(m1, v1, m2, v2):
    """KL(N(m1, v1) || N(m2, v2)) in one dimension."""
    return 0.5 * (math.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)


def kl_by_hand(value) -> None:
    """03.1: KL( N(1, 0.5^2) || N(0, 1) ) in nats."""
    __tracebackhide__ = True
    ex = "03.1"
    v, answer = _number(value, "value", ex), _kl1(1.0, 0.25, 0.0, 1.0)
    if _close(v, answer):
        return _passed(ex, "The closed form ½(σ² - ln σ² - 1 + μ²) in one dimension (J = 1).")
    if v < 0:
        _not_yet(ex, "a KL divergence is never negative (Jensen). Check the signs of the log term.")
    if _close(v, _kl1(0.0, 1.0, 1.0, 0.25)):
        _not_yet(ex, "that is the reverse direction, KL(N(0,1) || N(1, 0.5²)). Here q = N(1, 0.5²) comes first.")
    if _close(v, 2 * answer) or _close(v, answer / 2):
        _not_yet(ex, "off by a factor 2: check the ½ in front.")
    if _close(v, _kl1(1.0, 0.5, 0.0, 1.0)):
        _not_yet(ex, "you used σ = 0.5 where the formula needs the variance σ².")
    if _close(v, answer / math.log(2)):
        _not_yet(ex, "that is in bits; use the natural logarithm (nats).")
    if _close(v, answer - 0.5):
        _not_yet(ex, "the mean's contribution is missing: q is centred at 1, the prior at 0.")
    if _close(v, answer + 0.5):
        _not_yet(ex, "a constant is missing: the formula must give 0 when q equals the prior.")
    _not_yet(ex, "not a slip this check recognises. Use the boxed formula in one dimension (J = 1); which numbers there are "
                 "a mean, which a variance? A check of your formula: it gives 0 when q equals the prior.")


@_keeps_random_state
def kl_diagonal(fn) -> None:
    """03.2: ``fn(mu, logvar, mu_p, logvar_p)`` -> (N,) KL between diagonal Gaussians, summed over dimensions.

    Tested on three fresh batches of new shapes: two general priors and N(0, I)."""
    __tracebackhide__ = True
    answer = _Answer(fn, "kl_diagonal", "03.2", ("mu", "logvar", "mu_p", "logvar_p"))
    g = _fresh_generator()
    # J >= 3: with J = 2, averaging over the dimensions and a factor 1/2 give the same numbers.
    for prior, n, j in zip(("general", "general", "standard"), _distinct(g, 2, 9, 3), _distinct(g, 3, 9, 3)):
        mu, logvar = torch.randn(n, j, generator=g), 1.5 * torch.randn(n, j, generator=g)
        if prior == "general":
            mu_p, logvar_p = torch.randn(n, j, generator=g), 1.5 * torch.randn(n, j, generator=g)
        else:
            mu_p, logvar_p = torch.zeros(n, j), torch.zeros(n, j)
        want = _gaussian_kl(mu, logvar, mu_p, logvar_p)
        out = answer.tensor(answer(mu, logvar, mu_p, logvar_p), (n,))
        if _matches(out, want):
            continue
        if _not_finite(out):
            answer.fail(_NOT_FINITE)
        if bool((out < -1e-6).any()):
            answer.fail("some of your KLs are negative; a KL divergence is >= 0. Check the sign of each term.")
        if _matches(out, _gaussian_kl(mu_p, logvar_p, mu, logvar)):
            answer.fail("that is KL(p || q), the reverse direction: the first Gaussian (mu, logvar) is q.")
        if _is_multiple(out, want, 1 / j):
            answer.fail("off by the number of dimensions: you averaged over the latent dimensions; sum them.")
        if _is_multiple(out, want, 2) or _is_multiple(out, want, 0.5):
            answer.fail("off by a factor 2: check the ½ in front.")
        if _matches(out, _gaussian_kl(mu, 2 * logvar, mu_p, 2 * logvar_p)):
            answer.fail("logvar is ln σ², the log of the variance, not ln σ.")
        if _matches(out, _gaussian_kl(mu, logvar, None, logvar_p)):
            answer.fail("your KL does not depend on mu_p: the prior's mean matters too.")
        answer.fail("not a slip this check recognises. Test your function where you know the answer: it gives 0 "
                    "when the two Gaussians are the same, and with mu_p = logvar_p = 0 it equals the KL "
                    "to N(0, I) of this notebook.")
    return answer.passed("It matches the closed form, for general priors and for N(0, I).")


def effective_beta(value) -> None:
    """03.3: the KL weight (beta) that the broken loss (mean over pixels) amounts to, for 28x28 images."""
    __tracebackhide__ = True
    _judge("03.3", _number(value, "beta", "03.3"), 784.0,
           "Dividing the reconstruction by the number of pixels is the same as multiplying the KL by it.",
           [(1 / 784, "upside down: divide the whole broken loss by its reconstruction's factor; which term grows?"),
            (28.0, "count all the pixels of a 28 x 28 image, not one row."),
            (1.0, "the two losses are not the same: the broken one divides one of the terms.")],
           "Write the broken loss as c * (sum over pixels) + KL and multiply it by 1/c.")


@_keeps_random_state
def bughunt_mean_over_pixels(fn) -> None:
    """03.3 (fix): ``fn(logits, x, mu, logvar)`` -> (N,) the negative ELBO per example, in nats.

    Tested on two fresh batches, with new batch sizes and latent dimensions."""
    __tracebackhide__ = True
    answer = _Answer(fn, "negative_elbo_fixed", "03.3", ("logits", "x", "mu", "logvar"))
    g = _fresh_generator()
    for n, j in zip(_distinct(g, 3, 10, 2), _distinct(g, 3, 32, 2)):   # J >= 3: 1/J is no factor 1/2
        logits, x = 2 * torch.randn(n, 1, 28, 28, generator=g), torch.rand(n, 1, 28, 28, generator=g)
        mu, logvar = torch.randn(n, j, generator=g), torch.randn(n, j, generator=g)
        reconstruction, kl = _bernoulli_nll(logits, x), _gaussian_kl(mu, logvar)
        out = answer.tensor(answer(logits, x, mu, logvar), (n,))
        if _matches(out, reconstruction + kl):
            continue
        if _not_finite(out):
            answer.fail(_NOT_FINITE + " Computing the BCE from logits avoids log(0).")
        if _matches(out, reconstruction / 784 + kl):
            answer.fail("that is still the broken loss: the reconstruction is averaged over pixels.")
        if _matches(out, (reconstruction + kl) / 784):
            answer.fail("you averaged over pixels: both terms are now divided by the pixel count. The balance is "
                        "right, but the number is no longer in nats per example; sum over pixels instead.")
        if _matches(out, reconstruction + kl / j) or _matches(out, reconstruction / 784 + kl / j):
            answer.fail("you averaged the KL over latent dimensions; sum it, as the reconstruction is summed.")
        if _matches(out, reconstruction) or _matches(out, kl):
            answer.fail("one of the two terms is missing: the negative ELBO is reconstruction + KL.")
        answer.fail("not a slip this check recognises. Compute the two terms separately, per example, and compare "
                    "each with a case you know: with all logits 0 the reconstruction is ln 2 per pixel; with "
                    "mu = logvar = 0 the KL is 0.")
    return answer.passed("Reconstruction and KL both summed, per example, in nats.")


@_keeps_random_state
def bughunt_logvar_as_logstd(fn) -> None:
    """03.4 (fix): ``fn(mu, logvar)`` -> (N,) KL( N(mu, exp(logvar)) || N(0, I) ) per example.

    Tested on two fresh batches, with new batch sizes and latent dimensions."""
    __tracebackhide__ = True
    answer = _Answer(fn, "gaussian_kl_fixed", "03.4", ("mu", "logvar"))
    g = _fresh_generator()
    for n, j in zip(_distinct(g, 3, 10, 2), _distinct(g, 3, 32, 2)):   # J >= 3: 1/J is no factor 1/2
        mu, logvar = torch.randn(n, j, generator=g), 1.5 * torch.randn(n, j, generator=g)
        want = _gaussian_kl(mu, logvar)
        out = answer.tensor(answer(mu, logvar), (n,))
        if _matches(out, want):
            continue
        if _not_finite(out):
            answer.fail(_NOT_FINITE)
        if _matches(out, _gaussian_kl(mu, 2 * logvar)):
            answer.fail("that is still the broken KL: it treats the encoder output as ln σ.")
        if _is_multiple(out, want, 1 / j):
            answer.fail("you averaged over the latent dimensions; the KL of a diagonal Gaussian sums them.")
        if _is_multiple(out, want, 2) or _is_multiple(out, want, 0.5):
            answer.fail("off by a factor 2: check the ½ in front.")
        at_one = answer.tensor(answer(mu, torch.zeros_like(logvar)), (n,))
        if _matches(at_one, _gaussian_kl(mu, torch.zeros_like(logvar))):
            answer.fail("right when logvar = 0 (σ = 1), wrong elsewhere: check how σ² and ln σ² follow from logvar.")
        answer.fail("not a slip this check recognises. The encoder outputs logvar = ln σ²: write σ² and ln σ² in "
                    "terms of logvar, and test your function with mu = 0, logvar = 0, where the KL is 0.")
    return answer.passed("σ² = exp(logvar): it matches the closed form.")


# ----------------------------------------------------------------------------------------------
# 04 · The reparameterization trick
# ----------------------------------------------------------------------------------------------

def estimator_variances(reparameterization, score_function) -> None:
    """04.1: variances of the one-sample estimators of d/dmu E[z^2] for q = N(0.5, 1).

    The reparameterization variance is accepted within 1 %; the score-function variance within half
    a unit of its third significant digit (0.05): dropping its smallest term, mu^4 = 0.0625, moves it
    by only 0.3 %, and that mistake must not pass, while the answer rounded to 3 digits does."""
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
        _not_yet(ex, "reparameterization: write the one-sample estimate g as a function of ε, then use "
                     "Var(g) = E[g²] - (E[g])².")
    if not _close(s, want_s, rel=0.0, abs_tol=0.5 * 10.0 ** (math.floor(math.log10(want_s)) - 2)):
        if _close(s, second_moment):
            _not_yet(ex, "score function: that is E[g²]; subtract the squared mean (E[g])².")
        if _close(s, want_s, rel=0.01):
            _not_yet(ex, "score function: close, but off by more than rounding to three significant digits. "
                         "A Monte Carlo estimate is not exact enough: work the value out by hand. By hand, a small "
                         "term is missing or wrong: expand g² in powers of ε and keep every term with an even "
                         "power of ε, the lowest one too.")
        _not_yet(ex, "score function: g = f(z) times the derivative of log q(z) in μ. Write it in terms of ε "
                     "(z = μ + σε) and use the moments of ε given in the statement (odd moments are 0).")
    return _passed(ex, f"The score-function estimate is {want_s / want_r:.1f}x noisier here, for the same mean.")


@_keeps_random_state
def bughunt_variance_sampling(fn) -> None:
    """04.2 (fix): ``fn(mu, logvar, eps)`` -> (N, J) a sample of N(mu, exp(logvar)) from the noise eps.

    Tested on two fresh batches of new shapes, and called twice with the same noise."""
    __tracebackhide__ = True
    answer = _Answer(fn, "reparameterize_fixed", "04.2", ("mu", "logvar", "eps"))
    g = _fresh_generator()
    for n, d in zip(_distinct(g, 20, 60, 2), _distinct(g, 2, 8, 2)):
        mu, logvar = torch.randn(n, d, generator=g), 1.5 * torch.randn(n, d, generator=g)
        eps = torch.randn(n, d, generator=g)
        want = mu.double() + (0.5 * logvar.double()).exp() * eps.double()
        out = answer.tensor(answer(mu, logvar, eps), (n, d))
        if _matches(out, want, rtol=1e-5, atol=1e-5):
            continue
        if _not_finite(out):
            answer.fail(_NOT_FINITE + " logvar can be negative.")
        if _matches(out, mu + logvar.exp() * eps):
            answer.fail("that is still the broken sampler: it scales the noise by the variance.")
        if _matches(out, mu):
            answer.fail("your z ignores the noise: a sample needs ε.")
        again = answer.tensor(answer(mu, logvar, eps), (n, d))
        if not torch.equal(again, out):
            answer.fail("two calls with the same eps gave different z: use the eps you are given, draw no new noise.")
        answer.fail("not a slip this check recognises. Test your function by hand: with logvar = 0 (σ = 1), z is "
                    "μ + ε; what should z be when σ² = 4, i.e. logvar = ln 4?")
    return answer.passed("z = μ + σ ε with σ = exp(logvar / 2).")


@_keeps_random_state
def bughunt_posterior_mean_loss(fn, model, x) -> None:
    """04.3 (fix): ``fn(model, x, eps)`` -> (N,) the one-sample negative ELBO, decoding z = mu + sigma * eps.

    ``model``: the notebook's trained VAE; ``x``: test images (N, 1, 28, 28). The check draws 64 of
    them at random, a twin of the model with slightly moved weights, and two fresh noises, and calls
    ``fn`` three times (noise 1, noise 1 again, noise 2), each time on a copy of the twin."""
    __tracebackhide__ = True
    ex = "04.3"
    answer = _Answer(fn, "test_negative_elbo", ex, ("model", "x", "eps"))
    want_model = _model_arg(model, "model", ex, conditional=False)
    _images_arg(x, model, "x", ex)
    g = _fresh_generator()
    x = x[torch.randperm(len(x), generator=g)[:64]].to(model.device)
    _encodes(model, "model", ex, want_model, x)
    notebook_model, model = model, _twin(model, g, "model", ex)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        sigma, kl = torch.exp(0.5 * logvar), _gaussian_kl(mu, logvar).cpu()

        def reconstruction(z):
            return _bernoulli_nll(model.decode(z), x).cpu()

        noises = [torch.randn(mu.shape, generator=g).to(mu.device) for _ in range(2)]
        wants = [reconstruction(mu + sigma * eps) + kl for eps in noises]
        outs = [answer.tensor(answer(model, x, eps), (len(x),)) for eps in (noises[0], noises[0], noises[1])]
    if all(_matches(out, want, rtol=1e-4, atol=1e-3) for out, want in zip(outs, [wants[0], *wants])):
        return answer.passed("One sample of z per digit, as in training: an unbiased estimate of the negative ELBO.")
    if any(_not_finite(out) for out in outs):
        answer.fail(_NOT_FINITE + " Computing the BCE from logits avoids log(0).")
    if not torch.equal(outs[0], outs[1]):
        answer.fail("two calls with the same eps gave different values: use the eps you are given, draw no new noise.")
    with torch.no_grad():
        mu_nb, logvar_nb = notebook_model.encode(x)
        notebook_wants = [_bernoulli_nll(notebook_model.decode(mu_nb + torch.exp(0.5 * logvar_nb) * eps), x).cpu()
                          + _gaussian_kl(mu_nb, logvar_nb).cpu() for eps in noises]
    if all(_matches(out, want, rtol=1e-4, atol=1e-3) for out, want in zip(outs, [notebook_wants[0], *notebook_wants])):
        answer.fail(_OTHER_MODEL.format(name="model"))
    if torch.equal(outs[0], outs[2]):
        with torch.no_grad():
            at_mean = reconstruction(mu) + kl
        if _matches(outs[0], at_mean, rtol=1e-4, atol=1e-3):
            answer.fail("that is still the broken loss: it decodes z = μ and ignores eps.")
        answer.fail("your loss does not depend on eps: build z from it.")
    out, eps = outs[0], noises[0]
    with torch.no_grad():
        variance_scaled = reconstruction(mu + sigma ** 2 * eps) + kl
    if _matches(out, wants[0] - kl, rtol=1e-4, atol=1e-3):
        answer.fail("the KL term is missing: the negative ELBO is reconstruction + KL.")
    if _matches(out, variance_scaled, rtol=1e-4, atol=1e-3):
        answer.fail("your z scales the noise by the variance: that is bug hunt 04.2 again.")
    answer.fail("not a slip this check recognises. Check the two terms separately: the KL depends only on "
                "μ and logvar; the reconstruction term decodes one sample z built from eps.")


# ----------------------------------------------------------------------------------------------
# 05 · Conditional VAE
# ----------------------------------------------------------------------------------------------

def label_information(value) -> None:
    """05.1: how many nats lower -log p(x|y) is than -log p(x), for a perfect classifier and 10 balanced classes."""
    __tracebackhide__ = True
    answer = math.log(10)
    _judge("05.1", _number(value, "value", "05.1"), answer, "log p(x|y) - log p(x) = log p(y|x) - log p(y).",
           [(-answer, "right size, wrong sign: the question asks how much *lower* -log p(x|y) is, a positive number."),
            (1.0, "that is log base 10; nats use the natural logarithm."),
            (answer / math.log(2), "that is in bits; nats use the natural logarithm."),
            (0.0, "the label is not free information: use Bayes' rule, p(x|y) = p(y|x) p(x) / p(y).")],
           "Bayes' rule links p(x|y), p(x), p(y|x) and p(y): take its logarithm, and use what the statement says "
           "about the classifier and the classes.")


@_keeps_random_state
def one_hot(fn) -> None:
    """05.2: ``fn(y, num_classes)`` -> (N, num_classes) float one-hot rows.

    Tested on three fresh batches of random labels: 10 classes, and two other class counts where
    the last class is unused (so the column count must come from ``num_classes``)."""
    __tracebackhide__ = True
    answer = _Answer(fn, "one_hot", "05.2", ("y", "num_classes"))
    g = _fresh_generator()
    for num_classes in (10, _randint(g, 3, 9), _randint(g, 11, 20)):
        n = _randint(g, 5, 30)
        n += n == num_classes                                 # never square, so a transposed answer shows
        top = num_classes if num_classes == 10 else num_classes - 1   # else the last class never occurs
        y = torch.randint(0, top, (n,), generator=g)
        want = (y[:, None] == torch.arange(num_classes)).double()
        out = answer(y, num_classes)
        if isinstance(out, Tensor) and not out.is_floating_point():
            answer.fail(f"your one-hot has dtype {out.dtype}; it is concatenated with float pixels, so return floats.")
        if isinstance(out, Tensor) and tuple(out.shape) == (num_classes, n) and n != num_classes:
            answer.fail("transposed: one row per label, one column per class.")
        if isinstance(out, Tensor) and out.dim() == 2 and len(out) == n and out.shape[1] != num_classes:
            answer.fail(f"asked for num_classes = {num_classes}, your rows have {out.shape[1]} columns: "
                        f"take the column count from `num_classes`, not from a constant or from the labels.")
        out = answer.tensor(out, (n, num_classes))
        if torch.equal(out, want):
            continue
        if not bool(((out == 0) | (out == 1)).all()) or not torch.equal(out.sum(1), torch.ones(n, dtype=out.dtype)):
            answer.fail("each row should hold exactly one 1 and zeros elsewhere.")
        answer.fail("each row has one 1, but not always in the right column: row i's 1 belongs in column y[i].")
    return answer.passed("One 1 per row, in the label's column, for any number of classes.")


@_keeps_random_state
def relabel_decode(fn, cvae, x, y) -> None:
    """05.3: ``fn(cvae, x, y_encode, y_decode)`` -> (N, 1, 28, 28) pixels: encode with one label, decode with another.

    ``cvae``, ``x``, ``y``: the notebook's trained CVAE, test images and their labels. The check draws
    20 of them at random and a twin of the CVAE with slightly moved weights, and calls ``fn`` (on a
    copy of the twin) twice (other label in the encoder, true label in the decoder, then the other
    way round) and once more to see that the result is the same."""
    __tracebackhide__ = True
    ex = "05.3"
    answer = _Answer(fn, "relabel_decode", ex, ("cvae", "x", "y_encode", "y_decode"))
    want_model = _model_arg(cvae, "cvae", ex, conditional=True)
    _images_arg(x, cvae, "x", ex)
    _labels_arg(y, len(x), cvae, "y", ex)
    g = _fresh_generator()
    pick = torch.randperm(len(x), generator=g)[:20]
    x, y = x[pick].to(cvae.device), y[pick].to(cvae.device)
    _encodes(cvae, "cvae", ex, want_model, x, y)
    notebook_cvae, cvae = cvae, _twin(cvae, g, "cvae", ex)
    other = (y + torch.randint(1, cvae.num_classes, y.shape, generator=g).to(y.device)) % cvae.num_classes

    def pixels(y_encode, y_decode, model=cvae):
        return model.to_pixels(model.decode(model.encode(x, y_encode)[0], y_decode)).cpu()

    with torch.no_grad():
        wants = [pixels(other, y), pixels(y, other)]
        outs = [answer.tensor(answer(cvae, x, y_encode, y_decode), tuple(x.shape))
                for y_encode, y_decode in ((other, y), (y, other), (other, y))]   # the third repeats the first
    if all(_matches(out, want, rtol=1e-4, atol=1e-4) for out, want in zip(outs, [*wants, wants[0]])):
        return answer.passed("Encoded with one label, decoded with another.")
    if any(_not_finite(out) for out in outs):
        answer.fail(_NOT_FINITE)
    if any(float(out.min()) < 0 or float(out.max()) > 1 for out in outs):
        answer.fail("your output has values outside [0, 1]: the decoder returns logits; convert with cvae.to_pixels.")
    if not torch.equal(outs[0], outs[2]):
        answer.fail("two calls with the same inputs gave different pictures: decode the posterior mean μ, not a sample.")
    with torch.no_grad():
        notebook_wants = [pixels(other, y, notebook_cvae), pixels(y, other, notebook_cvae)]
    if all(_matches(out, want, rtol=1e-4, atol=1e-4) for out, want in zip(outs, [*notebook_wants, notebook_wants[0]])):
        answer.fail(_OTHER_MODEL.format(name="cvae"))
    for out, (y_encode, y_decode) in zip(outs, ((other, y), (y, other))):
        with torch.no_grad():
            swapped, only_decode = pixels(y_decode, y_encode), pixels(y_decode, y_decode)
            only_encode = pixels(y_encode, y_encode)
        if _matches(out, swapped, rtol=1e-4, atol=1e-4):
            answer.fail("the labels are swapped: encode with y_encode, decode with y_decode.")
        if _matches(out, only_decode, rtol=1e-4, atol=1e-4):
            answer.fail("your encoder saw y_decode: the code z must come from encoding x with y_encode.")
        if _matches(out, only_encode, rtol=1e-4, atol=1e-4):
            answer.fail("your decoder saw y_encode: decode the code with y_decode.")
    answer.fail("not a slip this check recognises. Go through the statement's steps one at a time: which "
                "labels the encoder gets, which part of its output you keep, which labels the decoder gets, "
                "and what turns the decoder's output into pixels.")


# ----------------------------------------------------------------------------------------------
# 09 · The semi-supervised VAE (M2)
# ----------------------------------------------------------------------------------------------

def tie_entropy(value) -> None:
    """09.1: the entropy term H(q(y|x)), in nats, of a classifier torn between two labels: 1/2 each,
    0 for the other eight."""
    __tracebackhide__ = True
    answer = math.log(2)
    _judge("09.1", _number(value, "entropy_nats", "09.1"), answer,
           "A classifier torn between two labels adds the entropy of a coin toss; the eight labels it rules out add "
           "nothing (0 log 0 = 0), so the bound cannot reward them.",
           [(-answer, "right size, wrong sign: an entropy, -Σ q log q, is never negative."),
            (1.0, "that is in bits; nats use the natural logarithm."),
            (answer / math.log(10), "that is log base 10; nats use the natural logarithm."),
            (answer / 2, "that is one label's term; the entropy sums the term over the labels."),
            (math.log(10), "that is an undecided classifier, 1/10 on every label; this one splits its mass between two."),
            (0.0, "zero is the entropy of a certain classifier (all its mass on one label); this one hesitates.")],
           "Write H(q) = -Σ_y q(y) log q(y) over the ten labels; a label with q(y) = 0 contributes 0.")


def _unlabelled_elbo(elbo_xy: Tensor, logits: Tensor) -> Tensor:
    """ELBO(x) = Σ_y q(y|x) ELBO(x, y) + H(q(y|x)) (Kingma et al. 2014, eq. 7), float64."""
    log_q = torch.log_softmax(logits.double(), dim=1)
    return (log_q.exp() * (elbo_xy.double() - log_q)).sum(1)


@_keeps_random_state
def unlabelled_elbo(fn) -> None:
    """09.2: ``fn(elbo_xy, logits)`` -> (N,) the unlabelled bound ELBO(x), in nats.

    Tested on three fresh batches (new sizes, bounds and logits; one row with a classifier so
    confident that its softmax rounds to 0 for the other labels), against the formula above."""
    __tracebackhide__ = True
    answer = _Answer(fn, "unlabelled_elbo", "09.2", ("elbo_xy", "logits"))
    g = _fresh_generator()
    for _ in range(3):
        n = _randint(g, 4, 12)
        elbo_xy = -(100 + 150 * torch.rand(n, 10, generator=g))      # each label's bound, nats
        logits = 3 * torch.randn(n, 10, generator=g)
        logits[0, _randint(g, 0, 9)] = 200.0                          # one confident classifier
        want = _unlabelled_elbo(elbo_xy, logits)
        out = answer(elbo_xy, logits)
        out = answer.tensor(out, (n,))
        if _matches(out, want, rtol=1e-6, atol=1e-3):
            continue
        if _not_finite(out):
            answer.fail("a NaN or inf: with a confident classifier, the log of a softmax that rounded to 0 is -inf; "
                        "take log q from torch.log_softmax.")
        q, log_q = torch.softmax(logits.double(), 1), torch.log_softmax(logits.double(), 1)
        average, entropy = (q * elbo_xy.double()).sum(1), -(q * log_q).sum(1)
        if _matches(out, average, rtol=1e-6, atol=1e-3):
            answer.fail("the weighted average of the labels' bounds is there; a term is missing.")
        if _matches(out, average - entropy, rtol=1e-6, atol=1e-3):
            answer.fail("the entropy term has the wrong sign: an undecided classifier raises the bound.")
        if _matches(out, elbo_xy.double().mean(1) + entropy, rtol=1e-6, atol=1e-3):
            answer.fail("each label's bound is weighted equally: weight it by the classifier's probability of that label.")
        if _matches(out, -want, rtol=1e-6, atol=1e-3):
            answer.fail("the sign of the whole bound is flipped: return the bound, not its negative.")
        answer.fail("not a slip this check recognises. Check the two parts separately: the average of the labels' "
                    "bounds under q(y|x), and the entropy of q(y|x).")
    return answer.passed("Your ELBO(x) is the classifier-weighted average of the labels' bounds plus its entropy.")


@_keeps_random_state
def permuted_labels(fn, model) -> None:
    """09.3: ``fn(model, perm)`` -> a copy of an M2 model whose label ``y`` is called ``perm[y]``.

    ``model``: the notebook's trained M2. The check draws a fresh permutation, random images and
    codes, and a twin of the model with slightly moved weights; calls ``fn`` on a copy of the twin,
    and compares the result with the twin: the classifier
    gives ``perm[y]`` the probability the model gave ``y``; the encoder and decoder read ``perm[y]`` as
    the model read ``y``; the model itself is unchanged."""
    __tracebackhide__ = True
    ex = "09.3"
    if not all(callable(getattr(model, name, None)) for name in ("class_logits", "encode", "decode")):
        _bad(ex, f"`model`: expected the notebook's trained M2 (class_logits, encode and decode), got {_describe(model)}")
    answer = _Answer(fn, "permuted", ex, ("model", "perm"))
    g = _fresh_generator()
    c = model.num_classes
    perm = torch.randperm(c, generator=g)
    while bool((perm == torch.arange(c)).any()):                     # every label renamed, so no slip hides
        perm = torch.randperm(c, generator=g)
    notebook_model, model = model, _twin(model, g, "model", ex)    # a function that ignores `model` shows
    device = next(model.parameters()).device
    x = torch.rand(12, *model.image_shape, generator=g).to(device)
    z = torch.randn(12, model.latent_dim, generator=g).to(device)
    new = answer(model, perm)
    if not all(callable(getattr(new, name, None)) for name in ("class_logits", "encode", "decode")):
        answer.bad(f"`permuted` should return a model (a copy of the M2), got {_describe(new)}")
    if answer.changed:   # it renamed the labels of the model it was given: the notebook's model would be lost
        _not_yet(ex, "your function changed the model it was given (here a copy, so the notebook's model is safe): "
                     "rename the labels of a copy (copy.deepcopy) and return the copy.")
    perm_d, inverse = perm.to(device), torch.argsort(perm).to(device)
    with torch.no_grad():
        q_old, q_new = torch.softmax(model.class_logits(x), 1), torch.softmax(new.class_logits(x), 1)
        classifier_ok = _matches(q_new[:, perm_d].cpu(), q_old.cpu(), rtol=1e-4, atol=1e-5)
        q_notebook = torch.softmax(notebook_model.class_logits(x), 1)
        if not classifier_ok and _matches(q_new[:, perm_d].cpu(), q_notebook.cpu(), rtol=1e-4, atol=1e-5):
            answer.fail(_OTHER_MODEL.format(name="model"))
        if not classifier_ok and _matches(q_new[:, inverse].cpu(), q_old.cpu(), rtol=1e-4, atol=1e-5):
            answer.fail("your classifier renames the labels the other way round: label y must become perm[y], "
                        "so the new row perm[y] is the old row y.")
        if not classifier_ok and _matches(q_new.cpu(), q_old.cpu(), rtol=1e-4, atol=1e-5):
            answer.fail("the classifier is unchanged: its last layer's rows must be renamed too.")
        if not classifier_ok:
            answer.fail("the classifier does not give perm[y] what the old one gave y; look at its last layer's rows.")
        for part, run in (("decoder", lambda m, y: m.decode(z, y)), ("encoder", lambda m, y: m.encode(x, y)[0])):
            for y in range(c):
                old_y = torch.full((12,), y, dtype=torch.int64, device=device)
                if not _matches(run(new, perm_d[old_y]).cpu(), run(model, old_y).cpu(), rtol=1e-4, atol=1e-4):
                    unchanged = _matches(run(new, old_y).cpu(), run(model, old_y).cpu(), rtol=1e-4, atol=1e-4)
                    answer.fail(f"the {part} is unchanged: the columns of its first layer that read the label must be "
                                "renamed too." if unchanged else
                                f"the {part} does not read label perm[y] as the old one read y; look at the columns of "
                                "its first layer that read the label, and in which direction you rename them.")
    return answer.passed("The copy is the same model with its labels renamed: the classifier, the encoder and the "
                         "decoder all agree with the original under the new names.")


# ----------------------------------------------------------------------------------------------
# This module's names cannot be reassigned: `checks._gaussian_kl = my_kl` (or `checks._matches =
# ...`) would otherwise change what every later check compares with. The setting TIME_LIMIT_S
# stays writable, and so do the dunder attributes that Python's import machinery sets.
# ----------------------------------------------------------------------------------------------

class _ReadOnlyModule(types.ModuleType):
    _WRITABLE = frozenset({"TIME_LIMIT_S"})

    def __setattr__(self, name, value):
        if name in self._WRITABLE or (name.startswith("__") and name.endswith("__")):
            return super().__setattr__(name, value)
        raise AttributeError(f"vae_course.checks.{name} cannot be reassigned: the checks' references and "
                             f"helpers stay as written, so that every answer is checked the same way")

    def __delattr__(self, name):
        if name in self._WRITABLE or (name.startswith("__") and name.endswith("__")):
            return super().__delattr__(name)
        raise AttributeError(f"vae_course.checks.{name} cannot be deleted")


sys.modules[__name__].__class__ = _ReadOnlyModule
