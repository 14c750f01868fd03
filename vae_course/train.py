"""The one training loop of the course, for all the models (``vae_course.models``).

``fit`` reads like the plain PyTorch loop it is (notebook 04 runs that loop by hand and checks
that ``fit`` gives the same weights)::

    for each step:                       # _train_step
        x = a batch of a shuffled pass over the data
        loss = model's loss on x (mean over the batch)
        optimizer.zero_grad(); loss.backward(); optimizer.step()

around it, named pieces do the rest once: ``_check_arguments`` (every argument, before anything
changes), ``_prepare_data`` (the data on the device), ``_DataOrder`` (the batches of shuffled
passes), ``_train_window`` (the steps between two history entries), the held-out evaluation and
``save_checkpoint``.

The whole dataset sits in memory (on the training device) and each batch is the rows at a slice of a
random permutation, so there is no per-sample Python work: the 784-400-20 VAE trains at tens of
thousands of digits per second on a 2-core CPU. Each step calls the model's unchecked
``_loss`` (the data and options were checked once) and waits for the device once, for the
finiteness guard.
"""
from __future__ import annotations

import inspect
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from tqdm import tqdm

from vae_course import files, validate
from vae_course.config import settings
from vae_course.models import MODELS

PARTS = ("total", "reconstruction", "kl")


@dataclass
class History:
    """Loss parts (nats per example) and timing, one entry per pass over the data (epoch).

    ``history.train["total"][e]`` is the mean training loss over the examples of entry e (the
    loss of each batch at the moment it was trained on); ``history.test`` the same on the held-out
    images at the end of the entry, when ``fit`` got them; ``history.steps[e]`` the optimizer
    steps taken by the end of entry e (counted over the whole run).

    Entries: one per full pass over the data, and the last pass, when the step budget ends
    inside it, is an entry of its own (over the examples it saw). A run shorter than two passes
    is recorded in two halves (``steps // 2`` steps, then the rest), so every loss curve has at
    least two points whenever ``steps >= 2``.
    """

    train: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in PARTS})
    test: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in PARTS})
    steps: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    samples_per_second: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        """How many entries the history holds (passes over the data, the last one possibly partial)."""
        return len(self.train["total"])

    def as_dict(self) -> dict:
        return {"train": self.train, "test": self.test, "steps": self.steps, "seconds": self.seconds,
                "samples_per_second": self.samples_per_second}


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (used for z ~ q(z|x) during training) and return a generator for
    the data order."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


MAX_PASSES = 40  # the most passes a course budget makes over the training digits (see capped_steps)


def capped_steps(steps: int, n_examples: int, batch_size: int = 128, max_passes: int = MAX_PASSES) -> int:
    """A training budget of ``steps`` optimizer steps, capped at ``max_passes`` passes over
    ``n_examples`` digits. On the 4,500-digit offline subset the full-mode budgets would pass well
    over 100 times over the same few digits, fitting them rather than digits in general; the cap
    keeps every budget of the course under 40 passes there (1,440 steps of 128), and never binds on
    full MNIST for the course's budgets (40 passes of 60,000 digits = 18,760 steps).

    Raises:
        ValueError: an argument that is not a positive integer (the message names it)."""
    steps, max_passes = validate.positive_int(steps, "steps"), validate.positive_int(max_passes, "max_passes")
    return min(steps, max_passes * steps_per_pass(n_examples, batch_size))


def steps_per_pass(n_examples: int, batch_size: int = 128) -> int:
    """Optimizer steps in one pass over ``n_examples`` (the last batch may be smaller): ``ceil(n / batch_size)``."""
    n_examples = validate.positive_int(n_examples, "n_examples")
    batch_size = validate.positive_int(batch_size, "batch_size")
    return -(-n_examples // batch_size)


def record_points(steps: int, per_pass: int) -> list[int]:
    """After which optimizer steps (1-based, counted over the run) ``fit`` records a history
    entry: the end of every pass over the data and the last step; a run shorter than two passes
    is recorded in two halves (``History``)."""
    if steps >= 2 * per_pass:
        return sorted({*range(per_pass, steps + 1, per_pass), steps})
    return sorted({max(1, steps // 2), steps})


def _check_model(model, name: str = "model") -> None:
    if not isinstance(model, nn.Module) or not callable(getattr(model, "_loss", None)):
        raise TypeError(f"{name}: expected a model with a loss method (one of {tuple(MODELS)}), "
                        f"got {type(model).__name__}")


def linear_warmup(steps: int, start: float = 0.0, end: float = 1.0) -> Callable[[int], float]:
    """A KL-annealing schedule for ``fit(beta=...)``: beta rises linearly from ``start`` at step 0
    to ``end`` at step ``steps``, then stays at ``end``.

    Warming the KL weight up from 0 lets the decoder learn to use z before the KL pulls q(z|x)
    onto the prior (Bowman et al. 2016, "Generating Sentences from a Continuous Space", Sec. 3.1;
    Sonderby et al. 2016, "Ladder Variational Autoencoders", Sec. 2.3).

    Args:
        steps: optimizer steps of the warm-up (a positive int).
        start, end: beta at the first and after the last warm-up step (finite, >= 0).

    Returns:
        ``schedule(step) -> beta`` for a 0-based global optimizer step.
    """
    steps = validate.positive_int(steps, "steps")
    start = validate.positive_float(start, "start", allow_zero=True)
    end = validate.positive_float(end, "end", allow_zero=True)

    def schedule(step: int) -> float:
        return start + (end - start) * min(step / steps, 1.0)

    schedule.__doc__ = f"beta from {start} to {end} over the first {steps} optimizer steps, then {end}"
    return schedule


def _check_beta(beta) -> tuple[Callable[[int], float], float]:
    """``beta`` (a number, or ``step -> number``) as a checked schedule ``step -> float``, and its
    value at step 0 (a schedule that fails at once fails before any training)."""
    if callable(beta):
        def schedule(step: int) -> float:
            return validate.positive_float(beta(step), f"beta (the schedule's value at step {step})", allow_zero=True)
        return schedule, schedule(0)
    constant = validate.positive_float(beta, "beta", allow_zero=True)  # numpy and 0-d tensor scalars too
    return (lambda step: constant), constant


@dataclass
class _Run:
    """``fit``'s arguments, checked (``_check_arguments``)."""

    steps: int
    batch_size: int
    lr: float
    beta_at: Callable[[int], float]
    free_bits: float
    seed: int
    device: torch.device
    labels: Tensor | None
    test_images: Tensor | None
    test_labels: Tensor | None
    corrupt: Callable[[Tensor], Tensor] | None
    checkpoint: Path | None
    resume: dict | None


def _check_arguments(model, images, labels, steps, batch_size, lr, beta, free_bits, seed, device,
                     test_images, test_labels, corrupt, checkpoint, resume_from) -> _Run:
    """Every argument of ``fit``, checked once, before anything changes (the message names the
    argument); the checkpoint to resume from is read and checked whole."""
    _check_model(model)
    steps = validate.positive_int(steps, "steps")
    batch_size = validate.positive_int(batch_size, "batch_size")
    lr = validate.positive_float(lr, "lr")
    beta_at, first_beta = _check_beta(beta)
    _, free_bits = model.check_loss_options(first_beta, free_bits)  # the model says which it takes
    images = model.check_images(images, "images")
    labels = model.check_labels(labels, images.shape[0], "labels")
    if test_images is not None:
        test_images = model.check_images(test_images, "test_images")
        test_labels = model.check_labels(test_labels, test_images.shape[0], "test_labels")
    elif test_labels is not None:
        raise ValueError("test_labels: expected None without test_images (they label the test images), got a tensor")
    if corrupt is not None:
        validate.callable_(corrupt, "corrupt")
    device = validate.device(device, "device") if device is not None else settings().device
    seed = validate.seed(seed, "seed")
    if checkpoint is not None:
        checkpoint = _check_writable(validate.path(checkpoint, "checkpoint"), "checkpoint")
    # A refused resume changes nothing: the whole checkpoint is read once and checked (kind,
    # configuration, shapes, counters, optimizer state, requested steps) before the model, the
    # optimizer or any random number generator is touched.
    resume = _read_resume(validate.path(resume_from, "resume_from"), model, steps) if resume_from is not None else None
    return _Run(steps, batch_size, lr, beta_at, free_bits, seed, device, labels, test_images, test_labels,
                corrupt, checkpoint, resume)


def _prepare_data(model, images: Tensor, labels: Tensor | None, device) -> tuple[Tensor, Tensor | None]:
    """The training data on the device, in the weights' dtype, detached (never a graph to
    backpropagate into: a second backward through the caller's graph is impossible)."""
    x_all = images.detach().to(device=device, dtype=model.dtype)
    return x_all, labels.to(device) if labels is not None else None


class _DataOrder:
    """The batches of shuffled passes over ``n`` examples: each pass is a new permutation drawn
    from ``generator``; batch ``i`` of a pass is its slice ``[i * batch_size, (i + 1) * batch_size)``.

    ``state()`` is what a checkpoint saves: the generator's state before the current pass's
    permutation, so a run resumed at any step draws that permutation again and continues it."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, device, step: int = 0):
        self.n, self.batch_size, self.generator, self.device = n, batch_size, generator, device
        self.per_pass = steps_per_pass(n, batch_size)
        self.position = step % self.per_pass  # batch index within the current pass
        self.pass_start = generator.get_state()
        if self.position:  # resumed inside a pass: the generator holds that pass's starting state
            self.order = torch.randperm(n, generator=generator).to(device)

    def next_batch(self) -> Tensor:
        """The indices of the next batch."""
        if self.position == 0:
            self.pass_start = self.generator.get_state()
            self.order = torch.randperm(self.n, generator=self.generator).to(self.device)
        start = self.position * self.batch_size
        self.position = (self.position + 1) % self.per_pass
        return self.order[start:start + self.batch_size]

    def state(self) -> Tensor:
        return self.pass_start if self.position else self.generator.get_state()


def _train_step(model, optimizer, params: list[Tensor], x: Tensor, y: Tensor | None, x_in: Tensor | None,
                beta: float, free_bits: float) -> Tensor:
    """One optimizer step on one batch; returns the batch's summed loss parts, a ``(3,)`` tensor
    on the device (total, reconstruction, kl; nats).

    The loss and the gradient norm are checked together, with one wait for the device: a NaN or
    inf in either raises FloatingPointError *before* ``optimizer.step()``, so the parameters
    stay those of the last good step."""
    parts = model._loss(x, y, beta, free_bits, x_in)  # checked once by fit, not at every step
    loss = parts.total.mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    # NaN or inf in either makes the sum non-finite; float() is the one wait for the device of the step
    if not math.isfinite(float(loss.detach() + grad_norm)):
        what = f"loss ({loss.item()})" if not torch.isfinite(loss) else f"gradient (norm {grad_norm.item()})"
        raise FloatingPointError(f"non-finite {what}: training stopped before the optimizer step "
                                 f"(beta={beta}); parameters are from the last good step")
    optimizer.step()
    return torch.stack([parts.total, parts.reconstruction, parts.kl]).detach().sum(dim=1)


def _train_window(model, optimizer, data: _DataOrder, x_all: Tensor, y_all: Tensor | None, run: _Run,
                  first_step: int, last_step: int) -> tuple[list[float], int]:
    """Optimizer steps ``first_step + 1 .. last_step`` (1-based); returns the mean loss parts over
    the examples they saw (nats per example) and how many examples that was."""
    # Loss sums stay on the device (float64): no float() per step, which on a GPU would wait for
    # every step to finish before queuing the next.
    sums = torch.zeros(3, dtype=torch.float64, device=x_all.device)
    seen = 0
    params = [p for p in model.parameters() if p.requires_grad]
    for step in range(first_step, last_step):
        idx = data.next_batch()
        # index_select gathers whole rows; x_all[idx] gives the same batch through general indexing,
        # measured 60-70 us slower per step (about 2 % of a step of the 784-400-20 VAE, 2-core CPU).
        x = x_all.index_select(0, idx)
        y = y_all.index_select(0, idx) if y_all is not None else None
        x_in = _corrupted(model, run.corrupt, x, check=step == first_step) if run.corrupt is not None else None
        try:
            sums += _train_step(model, optimizer, params, x, y, x_in, run.beta_at(step), run.free_bits)
        except FloatingPointError as err:
            raise FloatingPointError(f"step {step + 1} of {run.steps}: {err} (lr={run.lr})") from None
        seen += x.shape[0]
    return [v / seen for v in sums.tolist()], seen


def _corrupted(model, corrupt, x: Tensor, check: bool) -> Tensor:
    """``corrupt(x)``: checked fully on a window's first batch, by shape on the others."""
    x_in = corrupt(x)
    if check:
        model.check_images(x_in, "corrupt(x)")
    if not isinstance(x_in, Tensor) or x_in.shape != x.shape:
        raise ValueError(f"corrupt(x): expected a tensor of shape {tuple(x.shape)}, got "
                         f"{tuple(x_in.shape) if isinstance(x_in, Tensor) else type(x_in).__name__}")
    return x_in.detach().to(x.dtype)


def fit(
    model: nn.Module,
    images: Tensor,
    labels: Tensor | None = None,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    beta: float | Callable[[int], float] = 1.0,
    free_bits: float = 0.0,
    seed: int = 0,
    device: str | torch.device | None = None,
    test_images: Tensor | None = None,
    test_labels: Tensor | None = None,
    corrupt: Callable[[Tensor], Tensor] | None = None,
    checkpoint: str | Path | None = None,
    resume_from: str | Path | None = None,
    progress: bool = True,
) -> History:
    """Train ``model`` with Adam for exactly ``steps`` optimizer steps on in-memory ``images``
    and return the history (one entry per pass over the data, see ``History``).

    Args:
        model: any model of ``vae_course.models`` (Autoencoder, VAE, CVAE, MixturePriorVAE, ConvVAE).
        images: ``(N, *model.image_shape)`` float in [0, 1] (any float dtype: converted to the
            weights' dtype; a graph behind them is ignored).
        labels: ``(N,)`` int64 for a model that takes labels (a CVAE); None otherwise (labels
            given to a model that takes none are refused).
        steps: optimizer steps in all (a positive int). The data are walked in shuffled passes
            of ``ceil(N / batch_size)`` batches (the last batch of a pass may be smaller); the
            budget may end inside a pass.
        batch_size, lr: the usual.
        beta: KL weight (1 = the ELBO; beta-VAE otherwise), or a schedule ``step -> beta`` called
            with the 0-based global optimizer step before each step (KL annealing, e.g.
            ``linear_warmup(1000)``); the test loss of an entry uses the beta of its last step.
            An Autoencoder has no KL: only 1 is accepted.
        free_bits: lambda, nats per latent dimension (Kingma et al. 2016, Appendix C.8): the KL
            term of the objective becomes ``sum_j max(lambda, batch mean of KL_j)``
            (``losses.free_bits_kl``); 0 (default) is the plain KL. VAE, CVAE and ConvVAE. The
            history's ``kl`` stays the true KL.
        seed: seeds the data order and the z samples drawn during training. The weights are
            initialised when the model is built, from torch's global RNG: call
            ``torch.manual_seed`` before building it for a fully repeatable run. Same model
            weights, seed and device: the same result, bit for bit on CPU.
        device: default ``settings().device`` (CUDA when present).
        test_images, test_labels: evaluated at the end of every history entry (``history.test``).
        corrupt: ``x -> corrupted x`` for a denoising model: the encoder sees ``corrupt(x)``,
            the loss scores the clean x (``model.loss(x, x_in=...)``).
        checkpoint: a path; the model, the optimizer and the training state (steps done, RNG
            states, history) are saved there (atomically) at the end of every history entry.
        resume_from: a checkpoint written by ``fit(checkpoint=...)``: restores the weights, the
            optimizer's state, the random number generators, the step counter and the history,
            then trains up to ``steps`` steps in all. 2 passes straight and 1 pass, then a
            resume for the second, give the same weights bit for bit on CPU (same data, seed,
            batch size); a checkpoint taken inside a pass resumes inside it. ``lr`` is taken
            from this call. The resumed history is the checkpoint's entries, then this call's.
        progress: show the progress (``epoch_progress``): in Jupyter a line updated in place and
            removed when training ends; elsewhere a tqdm bar on stderr.

    Returns:
        ``History`` with mean loss parts in nats per example for every entry.

    Raises:
        ValueError / TypeError: bad data or arguments (the message names the argument).
        FloatingPointError: at the first non-finite loss or gradient, raised *before* the
            optimizer step, so the parameters are those of the last good step.
    """
    run = _check_arguments(model, images, labels, steps, batch_size, lr, beta, free_bits, seed, device,
                           test_images, test_labels, corrupt, checkpoint, resume_from)
    generator = seed_everything(run.seed)
    model.to(run.device)
    x_all, y_all = _prepare_data(model, images, run.labels, run.device)
    # fused=True: one kernel updates every parameter (instead of a Python loop over them); the same
    # Adam, about 15 % more digits per second for the 784-400-20 VAE on a 2-core CPU.
    optimizer = torch.optim.Adam(model.parameters(), lr=run.lr, fused=True)
    history, done = History(), 0  # done: optimizer steps taken, over the whole run
    if run.resume is not None:
        done = _resume(run.resume, model, optimizer, generator, history, run.lr)
    data = _DataOrder(x_all.shape[0], run.batch_size, generator, run.device, step=done)

    points = [p for p in record_points(run.steps, data.per_pass) if p > done]
    bar = epoch_progress(points, initial=0, total=len(points), desc=f"training {type(model).__name__}",
                         disable=not progress)
    for point in bar:
        model.train()
        start = time.perf_counter()
        means, seen = _train_window(model, optimizer, data, x_all, y_all, run, done, point)
        done = point
        seconds = time.perf_counter() - start
        _record(history, means, done, seconds, seen)
        if run.test_images is not None:
            from vae_course.evaluate import loss_parts  # local import: evaluate imports the models
            history_test = loss_parts(model, run.test_images, run.test_labels, beta=run.beta_at(done - 1))
            for key, value in zip(PARTS, history_test):
                history.test[key].append(value)
        bar.set_postfix({"step": done, "loss": f"{history.train['total'][-1]:.2f}",
                         **({"test": f"{history.test['total'][-1]:.2f}"} if history.test["total"] else {})})
        if run.checkpoint is not None:
            save_checkpoint(model, run.checkpoint, optimizer=optimizer, history=history,
                            training=_training_state(history.epochs, done, data, run.device))
    model.eval()
    return history


def _record(history: History, means: list[float], steps_done: int, seconds: float, seen: int) -> None:
    for key, value in zip(PARTS, means):
        history.train[key].append(value)
    history.steps.append(steps_done)
    history.seconds.append(seconds)
    history.samples_per_second.append(seen / seconds)


def _in_jupyter_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


class _JupyterProgress:
    """tqdm's progress line for a Jupyter kernel: one text output updated in place (a display with
    an id), emptied when the loop ends. A learner in JupyterLab sees the epochs tick by; a notebook
    saved after execution keeps no stale bar (tqdm's widget would leave a "0%" text behind, since an
    executed notebook has no live widget frontend) and no stderr."""

    def __init__(self, iterable, initial: int, total: int, desc: str):
        from IPython.display import display

        self.iterable, self.n, self.total, self.desc, self.postfix = iterable, initial, total, desc, ""
        self.initial, self.start = initial, time.perf_counter()
        self.handle = display({"text/plain": self._line()}, raw=True, display_id=True)

    def _line(self) -> str:
        return tqdm.format_meter(self.n, self.total, time.perf_counter() - self.start, prefix=self.desc,
                                 unit="epoch", postfix=self.postfix or None, initial=self.initial)

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.n += 1
                self.handle.update({"text/plain": self._line()}, raw=True)
        finally:
            self.handle.update({}, raw=True)  # nothing left behind once training is over

    def set_postfix(self, values: dict) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())


def epoch_progress(iterable, initial: int, total: int, desc: str, disable: bool = False):
    """Progress over epochs: ``_JupyterProgress`` in a Jupyter kernel, a tqdm bar on stderr elsewhere.
    Both iterate like ``iterable`` and take ``set_postfix(dict)``."""
    if not disable and _in_jupyter_kernel():
        return _JupyterProgress(iterable, initial, total, desc)
    return tqdm(iterable, initial=initial, total=total, desc=desc, disable=disable, unit="epoch")


def _training_state(entries: int, global_step: int, data: _DataOrder, device: torch.device) -> dict:
    """What ``fit(resume_from=...)`` needs besides weights and optimizer: the counters (history
    entries, optimizer steps) and the states of the random number generators (z samples: torch's
    global RNG; data order: the state before the current pass's permutation, ``_DataOrder.state``)."""
    state = {"epoch": entries, "global_step": global_step, "torch_rng": torch.get_rng_state(),
             "data_order_rng": data.state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def _check_writable(path: Path, name: str) -> Path:
    """Refuse, before any training, a checkpoint path that cannot be written: a folder, or a path
    whose nearest existing parent is a file or a folder this process may not write to."""
    if path.is_dir():
        raise ValueError(f"{name}: expected a file path, got the folder {str(path)!r}")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: expected a path that can be written, got {str(path)!r} "
                         f"({str(parent)!r} is {'not a folder' if not parent.is_dir() else 'not writable'})")
    return path


def _read_resume(path: Path, model: nn.Module, steps: int) -> dict:
    """Read a ``fit`` checkpoint once and check everything ``fit(resume_from=...)`` will use, without
    changing ``model`` or any random number generator. Returns the checked state."""
    state = _read_checkpoint(path)
    _check_against_model(state, model)
    training = state.get("training")
    if not training or state.get("optimizer") is None or state.get("history") is None:
        raise ValueError(f"resume_from: {path} holds weights only (saved by save_checkpoint without the "
                         "training state); load it with load_checkpoint and train afresh instead")
    if not isinstance(training, dict):
        raise ValueError(f"training: expected a dict of counters and RNG states, got {type(training).__name__}")
    entries, done = training.get("epoch"), training.get("global_step")
    for field_name, value in (("training.epoch", entries), ("training.global_step", done)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{field_name}: expected a positive int, got {value!r}")
    if done >= steps:
        raise ValueError(f"steps: {path} has already taken {done} optimizer steps; "
                         f"ask for more than that (steps counts all of them), got {steps}")
    for key, reference in (("torch_rng", torch.get_rng_state()), ("data_order_rng", torch.Generator().get_state())):
        value = training.get(key)
        if not isinstance(value, Tensor) or value.dtype != torch.uint8 or value.shape != reference.shape:
            got = f"{value.dtype} {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"training.{key}: expected a uint8 RNG state of shape {tuple(reference.shape)}, got {got}")
    _check_optimizer_state(state["optimizer"], model)
    _check_history(state["history"], entries, done)
    return state


def _check_optimizer_state(saved, model: nn.Module) -> None:
    """An Adam state dict whose moments have the shapes of ``model``'s parameters, in order."""
    params = list(model.parameters())
    if not isinstance(saved, dict) or not isinstance(saved.get("param_groups"), list) or not saved["param_groups"] \
            or not isinstance(saved.get("state"), dict):
        raise ValueError("optimizer: expected an Adam state dict (state, param_groups)")
    ids = [i for group in saved["param_groups"] for i in (group.get("params") if isinstance(group, dict) else None) or []]
    if ids != list(range(len(params))):
        raise ValueError(f"optimizer: expected state for the model's {len(params)} parameters, got {len(ids)}")
    for index, moments in saved["state"].items():
        if not isinstance(index, int) or not 0 <= index < len(params) or not isinstance(moments, dict):
            raise ValueError(f"optimizer.state[{index!r}]: expected moments of parameter 0..{len(params) - 1}")
        for key in ("exp_avg", "exp_avg_sq"):
            moment = moments.get(key)
            if not isinstance(moment, Tensor) or moment.shape != params[index].shape or not moment.is_floating_point():
                got = tuple(moment.shape) if isinstance(moment, Tensor) else type(moment).__name__
                raise ValueError(f"optimizer.state[{index}].{key}: expected a float tensor of shape "
                                 f"{tuple(params[index].shape)}, got {got}")


def _check_history(saved, entries: int, steps_done: int) -> None:
    """The saved history has ``entries`` entries of every list, and its step counts rise to ``steps_done``."""
    if not isinstance(saved, dict):
        raise ValueError(f"history: expected a dict, got {type(saved).__name__}")
    for split in ("train", "test"):
        parts = saved.get(split)
        if not isinstance(parts, dict) or set(parts) != set(PARTS):
            raise ValueError(f"history.{split}: expected the loss parts total, reconstruction, kl")
        for key, values in parts.items():
            allowed = (entries,) if split == "train" else (0, entries)
            if not isinstance(values, list) or len(values) not in allowed:
                raise ValueError(f"history.{split}.{key}: expected a list of {entries} values (one per entry), "
                                 f"got {len(values) if isinstance(values, list) else type(values).__name__}")
    for key in ("steps", "seconds", "samples_per_second"):
        if not isinstance(saved.get(key), list) or len(saved[key]) != entries:
            raise ValueError(f"history.{key}: expected a list of {entries} values (one per entry)")
    counts = saved["steps"]
    if any(isinstance(c, bool) or not isinstance(c, int) for c in counts) or counts != sorted(set(counts)) \
            or counts[-1] != steps_done:
        raise ValueError(f"history.steps: expected increasing step counts ending at {steps_done}, got {counts}")


def _resume(state: dict, model, optimizer, generator, history: History, lr: float) -> int:
    """Restore a checkpoint checked by ``_read_resume`` into the objects ``fit`` built; returns
    the optimizer steps already taken."""
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    for group in optimizer.param_groups:
        group["lr"] = lr  # this call's learning rate
    training = state["training"]
    torch.set_rng_state(training["torch_rng"])
    generator.set_state(training["data_order_rng"])
    if "cuda_rng" in training and model.device.type == "cuda":
        torch.cuda.set_rng_state(training["cuda_rng"], model.device)
    saved = state["history"]
    for split in ("train", "test"):
        for key, values in saved[split].items():
            getattr(history, split)[key] = list(values)
    for key in ("steps", "seconds", "samples_per_second"):
        getattr(history, key)[:] = saved[key]
    return training["global_step"]


def save_checkpoint(model: nn.Module, path: str | Path, optimizer: torch.optim.Optimizer | None = None,
                    history: History | None = None, training: dict | None = None) -> Path:
    """Save model (class, config, weights), optimizer state, history and ``training`` (the state
    ``fit`` needs to resume: epochs done, RNG states) to ``path``.

    Written atomically (``files.atomic_write``: a temporary file in the same folder, flushed to
    disk, then renamed over ``path``), so a crash mid-save leaves the previous checkpoint intact,
    never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model_class": type(model).__name__,
        "config": model.config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "history": history.as_dict() if history is not None else None,
        "training": training,
    }
    with files.atomic_write(path) as f:
        torch.save(state, f)
    return path


# Sizes a course model never exceeds: a checkpoint asking for more is refused before anything is
# allocated (a hostile file cannot make the loader build a model of billions of parameters).
MAX_DIM = 1 << 16          # hidden units, channels, image side, latent dimensions, classes
MAX_LAYERS = 16


def _read_checkpoint(path: Path) -> dict:
    """``torch.load(weights_only=True)`` of ``path`` (a pickle that would run code is refused) and
    the checkpoint's outer structure."""
    if not path.is_file():
        raise FileNotFoundError(f"path: no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a refused or corrupt pickle: say which file
        raise ValueError(f"path: {path} is not a loadable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or not {"model_class", "config", "state_dict"} <= set(state):
        raise ValueError(f"path: {path} is not a vae_course checkpoint (missing model_class/config/state_dict)")
    if state["model_class"] not in MODELS:
        raise ValueError(f"model_class: expected one of {tuple(MODELS)}, got {state['model_class']!r}")
    if not isinstance(state["config"], dict):
        raise ValueError(f"config: expected a dict of constructor arguments, got {type(state['config']).__name__}")
    if not isinstance(state["state_dict"], dict):
        raise ValueError(f"state_dict: expected a dict of tensors, got {type(state['state_dict']).__name__}")
    return state


def _check_size(key: str, value) -> None:
    """Every int (or list of ints) in a config field within [1, MAX_DIM], lists at most MAX_LAYERS long."""
    values = value if isinstance(value, (list, tuple)) else [value]
    if isinstance(value, (list, tuple)) and len(value) > MAX_LAYERS:
        raise ValueError(f"config field {key!r}: expected at most {MAX_LAYERS} entries, got {len(value)}")
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool) and not 1 <= v <= MAX_DIM:
            raise ValueError(f"config field {key!r}: expected sizes in [1, {MAX_DIM}], got {value!r}")


def _shape_model(state: dict) -> nn.Module:
    """The saved configuration, checked field by field, built on the meta device (shapes only, no
    memory): the reference for the saved tensors."""
    cls = MODELS[state["model_class"]]
    accepted = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
    for key, value in state["config"].items():
        if key not in accepted:
            raise ValueError(f"config field {key!r}: not an argument of {cls.__name__} (expected some of {accepted})")
        _check_size(key, value)
    try:
        with torch.device("meta"):
            return cls(**state["config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"config: {cls.__name__} cannot be built from the saved configuration ({err})") from err


def _check_tensors(saved: dict, reference: nn.Module) -> None:
    """Every saved tensor present, of the reference's shape and dtype; nothing else."""
    expected = reference.state_dict()
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    if missing or unexpected:
        raise ValueError(f"state_dict: expected the tensors of the saved model; missing {missing}, unexpected {unexpected}")
    for key, want in expected.items():
        got = saved[key]
        if not isinstance(got, Tensor) or got.shape != want.shape or got.dtype != want.dtype:
            desc = f"{got.dtype} {tuple(got.shape)}" if isinstance(got, Tensor) else type(got).__name__
            raise ValueError(f"state_dict[{key!r}]: expected {want.dtype} {tuple(want.shape)}, got {desc}")


def _check_against_model(state: dict, model: nn.Module) -> None:
    """The checkpoint fits ``model``: same class, every config field equal (both ways), tensors."""
    if type(model).__name__ != state["model_class"]:
        raise ValueError(f"model_class: checkpoint holds a {state['model_class']}, model is a {type(model).__name__}")
    saved, mine = state["config"], model.config
    for key in sorted(set(saved) | set(mine)):
        if saved.get(key) != mine.get(key):
            raise ValueError(f"config field {key!r}: checkpoint has {saved.get(key)!r}, model has {mine.get(key)!r}")
    _check_tensors(state["state_dict"], model)


def load_checkpoint(path: str | Path, model: nn.Module | None = None, map_location="cpu") -> nn.Module:
    """Load a checkpoint written by ``save_checkpoint``; returns the model (built from the saved
    config when ``model`` is None).

    Loaded with ``torch.load(weights_only=True)`` onto the CPU (``map_location`` is kept for
    compatibility; the tensors are copied into the model on its device): a file whose pickle would
    run code is refused. Everything is checked before a model is built or changed: the class, every configuration field
    (against ``model``'s, both ways; sizes within sane bounds), every tensor's name, shape and dtype.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a checkpoint of this course, or a field or tensor is wrong or
            differs from ``model``'s (the message names it).
    """
    path = validate.path(path, "path")
    if model is not None:
        _check_model(model)
    state = _read_checkpoint(path)
    if model is None:
        _check_tensors(state["state_dict"], _shape_model(state))
        model = MODELS[state["model_class"]](**state["config"])
    else:
        _check_against_model(state, model)
    model.load_state_dict(state["state_dict"])
    return model