"""The one training loop of the course, for the Autoencoder, the VAE and the CVAE.

The whole dataset sits in memory (on the training device) and each batch is a slice of a
random permutation, so there is no per-sample Python work: the 784-400-20 VAE trains at tens of
thousands of digits per second on a 2-core CPU.
"""
from __future__ import annotations

import inspect
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from tqdm import tqdm

from vae_course import validate
from vae_course.config import settings
from vae_course.models import MODELS, Autoencoder


@dataclass
class History:
    """Per-epoch means of every loss part (nats per example), plus timing.

    ``history.train["total"][e]`` is epoch e's mean training loss; ``history.test`` the same on
    the held-out images when ``fit`` got them.
    """

    train: dict[str, list[float]] = field(default_factory=lambda: {"total": [], "reconstruction": [], "kl": []})
    test: dict[str, list[float]] = field(default_factory=lambda: {"total": [], "reconstruction": [], "kl": []})
    seconds: list[float] = field(default_factory=list)
    samples_per_second: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.train["total"])

    def as_dict(self) -> dict:
        return {"train": self.train, "test": self.test, "seconds": self.seconds,
                "samples_per_second": self.samples_per_second}


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (used for z ~ q(z|x) during training) and return a generator for
    the data order."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def epochs_for_steps(steps: int, n_examples: int, batch_size: int = 128) -> int:
    """How many epochs give about ``steps`` optimizer steps on ``n_examples`` (at least 1).

    Sample quality follows the number of optimizer steps more than the number of epochs, so the
    notebooks set a step budget and derive epochs from the size of the data they got (the
    4,500-digit offline subset or the 60,000 digits of full MNIST).
    """
    steps = validate.positive_int(steps, "steps")
    n_examples = validate.positive_int(n_examples, "n_examples")
    batch_size = validate.positive_int(batch_size, "batch_size")
    steps_per_epoch = -(-n_examples // batch_size)  # ceil: the last batch may be smaller
    return max(1, round(steps / steps_per_epoch))


def _check_data(model: nn.Module, images: Tensor, labels: Tensor | None, name: str) -> None:
    validate.images(images, name, model.image_shape)
    label_name = name.replace("images", "labels")
    if model.conditional:
        if labels is None:
            raise ValueError(f"{label_name}: a conditional model needs labels, got None")
        validate.labels(labels, label_name, images.shape[0], model.num_classes)
    elif labels is not None:  # unused, but still checked (a tensor first: .max() needs one)
        validate.tensor(labels, label_name)
        num_classes = int(labels.max()) + 1 if labels.dtype == torch.int64 and labels.numel() else 1
        validate.labels(labels, label_name, images.shape[0], max(num_classes, 1))


def _check_model(model, name: str = "model") -> None:
    if not isinstance(model, nn.Module) or not callable(getattr(model, "loss", None)):
        raise TypeError(f"{name}: expected a model with a loss method (one of {tuple(MODELS)}), "
                        f"got {type(model).__name__}")


def _batch_loss(model, x, y, beta, corrupt=None, free_bits=0.0):
    """Mean loss over the batch and its parts (the model's own ``loss``, per example)."""
    if corrupt is not None:  # denoising: encode a corrupted input, score the clean target
        return model.loss(x, x_in=corrupt(x))
    if free_bits:  # only models whose loss takes it (checked in fit)
        return model.loss(x, y, beta=beta, free_bits=free_bits)
    return model.loss(x, y, beta=beta)


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


def _check_beta(beta) -> Callable[[int], float]:
    """``beta`` (a number, or ``step -> number``) as a checked schedule ``step -> float``."""
    if callable(beta):
        def schedule(step: int) -> float:
            return validate.positive_float(beta(step), f"beta (the schedule's value at step {step})", allow_zero=True)
        schedule(0)  # a schedule that fails at once fails before any training
        return schedule
    constant = validate.positive_float(beta, "beta (a number, or a callable step -> beta)", allow_zero=True)
    return lambda step: constant


def fit(
    model: nn.Module,
    images: Tensor,
    labels: Tensor | None = None,
    *,
    epochs: int = 10,
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
    """Train ``model`` with Adam on in-memory ``images`` and return the per-epoch history.

    Args:
        model: an ``Autoencoder``, ``VAE`` or ``CVAE`` (anything with ``loss(x, y, beta)``).
        images: ``(N, *model.image_shape)`` float in [0, 1].
        labels: ``(N,)`` int64; required for a CVAE, otherwise unused.
        epochs, batch_size, lr: the usual; the last batch of an epoch may be smaller.
        beta: KL weight (1 = the ELBO; beta-VAE otherwise), or a schedule ``step -> beta`` called
            with the 0-based global optimizer step before each step (KL annealing, e.g.
            ``linear_warmup(1000)``); the test loss of an epoch uses the last step's beta.
        free_bits: lambda, nats per latent dimension (Kingma et al. 2016, Appendix C.8): the KL
            term of the objective becomes ``sum_j max(lambda, batch mean of KL_j)``
            (``losses.free_bits_kl``); 0 (default) is the plain KL. VAE and CVAE only. The
            history's ``kl`` stays the true KL.
        seed: seeds the data order and the z samples drawn during training. The weights are
            initialised when the model is built, from torch's global RNG: call
            ``torch.manual_seed`` before building it for a fully repeatable run. Same model
            weights, seed and device: the same result, bit for bit on CPU.
        device: default ``settings().device`` (CUDA when present).
        test_images, test_labels: evaluated after every epoch (loss parts in ``history.test``).
        corrupt: for a denoising autoencoder, ``x -> corrupted x``; the loss scores the clean x.
        checkpoint: a path; the model, the optimizer and the training state (epochs done, RNG
            states, history) are saved there (atomically) after each epoch.
        resume_from: a checkpoint written by ``fit(checkpoint=...)``: restores the weights, the
            optimizer's state, the random number generators, the epoch counter and the history,
            then trains on up to ``epochs`` epochs in all. 2 epochs straight and 1 epoch, then a
            resume for the second, give the same weights bit for bit on CPU (same data, seed,
            batch size). ``lr`` is taken from this call.
        progress: show the progress (``epoch_progress``): in Jupyter a line updated in place and
            removed when training ends; elsewhere a tqdm bar on stderr.

    Returns:
        ``History`` with mean loss parts in nats per example for every epoch.

    Raises:
        ValueError / TypeError: bad data or arguments (the message names the argument).
        FloatingPointError: at the first non-finite loss or gradient, raised *before* the
            optimizer step, so the parameters are those of the last good step.
    """
    _check_model(model)
    epochs = validate.positive_int(epochs, "epochs")
    batch_size = validate.positive_int(batch_size, "batch_size")
    lr = validate.positive_float(lr, "lr")
    beta_at = _check_beta(beta)
    free_bits = validate.positive_float(free_bits, "free_bits", allow_zero=True)
    if free_bits and "free_bits" not in inspect.signature(model.loss).parameters:
        raise ValueError(f"free_bits: {type(model).__name__}.loss takes no free bits (a VAE or CVAE does), got {free_bits}")
    _check_data(model, images, labels, "images")
    if test_images is not None:
        _check_data(model, test_images, test_labels, "test_images")
    if corrupt is not None and not isinstance(model, Autoencoder):
        raise ValueError(f"corrupt: only an Autoencoder can be trained to denoise, got a {type(model).__name__}")
    if corrupt is not None:
        validate.callable_(corrupt, "corrupt")
    device = validate.device(device, "device") if device is not None else settings().device
    seed = validate.seed(seed, "seed")
    if checkpoint is not None:
        checkpoint = _check_writable(validate.path(checkpoint, "checkpoint"), "checkpoint")
    # A refused resume changes nothing: the whole checkpoint is read once and checked (kind,
    # configuration, shapes, counters, optimizer state, requested epochs) before the model, the
    # optimizer or any random number generator is touched.
    resume = _read_resume(validate.path(resume_from, "resume_from"), model, epochs) if resume_from is not None else None

    generator = seed_everything(seed)
    model.to(device)
    x_all = images.detach().to(device)  # training data, never a graph to backpropagate into
    y_all = labels.to(device) if labels is not None else None
    # fused=True: one kernel updates every parameter (instead of a Python loop over them); the same
    # Adam, about 15 % more digits per second for the 784-400-20 VAE on a 2-core CPU.
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    history = History()
    n = x_all.shape[0]
    global_step = 0  # optimizer steps taken, over all epochs (what a beta schedule is called with)
    first_epoch = 0
    if resume is not None:
        first_epoch, global_step = _resume(resume, model, optimizer, generator, history, lr)

    bar = epoch_progress(range(first_epoch, epochs), initial=first_epoch, total=epochs,
                         desc=f"training {type(model).__name__}", disable=not progress)
    for epoch in bar:
        model.train()
        start = time.perf_counter()
        # Loss sums stay on the device (float64): no float() per step, which on a GPU would wait
        # for every step to finish before queuing the next.
        sums = torch.zeros(3, dtype=torch.float64, device=device)
        order = torch.randperm(n, generator=generator).to(device)
        for step, i in enumerate(range(0, n, batch_size)):
            idx = order[i:i + batch_size]
            x = x_all[idx]
            y = y_all[idx] if y_all is not None else None
            step_beta = beta_at(global_step)
            parts = _batch_loss(model, x, y, step_beta, corrupt, free_bits)
            loss = parts.total.mean()
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, step {step + 1}: training stopped "
                    f"before the optimizer step (lr={lr}, beta={step_beta}); parameters are from the last good step")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
            if not torch.isfinite(grad_norm):
                raise FloatingPointError(
                    f"non-finite gradient at epoch {epoch + 1}, step {step + 1}: training stopped before the "
                    f"optimizer step; parameters are from the last good step")
            optimizer.step()
            global_step += 1
            sums += torch.stack([parts.total.detach().sum(), parts.reconstruction.detach().sum(),
                                 parts.kl.detach().sum()]).double()
        seconds = time.perf_counter() - start
        for key, value in zip(("total", "reconstruction", "kl"), sums.tolist()):
            history.train[key].append(value / n)
        history.seconds.append(seconds)
        history.samples_per_second.append(n / seconds)
        if test_images is not None:
            from vae_course.evaluate import loss_parts  # local import: evaluate imports train's helpers
            for key, value in loss_parts(model, test_images, test_labels, beta=step_beta)._asdict().items():
                history.test[key].append(value)
        postfix = {"loss": f"{history.train['total'][-1]:.2f}"}
        if history.test["total"]:
            postfix["test"] = f"{history.test['total'][-1]:.2f}"
        bar.set_postfix(postfix)
        if checkpoint is not None:
            save_checkpoint(model, checkpoint, optimizer=optimizer, history=history,
                            training=_training_state(epoch + 1, global_step, generator, device))
    model.eval()
    return history


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


def _training_state(epochs_done: int, global_step: int, generator: torch.Generator, device: torch.device) -> dict:
    """What ``fit(resume_from=...)`` needs besides weights and optimizer: the counters and the
    states of the random number generators (z samples: torch's global RNG; data order: ``generator``)."""
    state = {"epoch": epochs_done, "global_step": global_step, "torch_rng": torch.get_rng_state(),
             "data_order_rng": generator.get_state()}
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


def _read_resume(path: Path, model: nn.Module, epochs: int) -> dict:
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
    done, steps = training.get("epoch"), training.get("global_step")
    for field_name, value in (("training.epoch", done), ("training.global_step", steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{field_name}: expected a positive int, got {value!r}")
    if done >= epochs:
        raise ValueError(f"epochs: {path} has already trained {done} epochs; "
                         f"ask for more than that (epochs counts all of them), got {epochs}")
    for key, reference in (("torch_rng", torch.get_rng_state()), ("data_order_rng", torch.Generator().get_state())):
        value = training.get(key)
        if not isinstance(value, Tensor) or value.dtype != torch.uint8 or value.shape != reference.shape:
            got = f"{value.dtype} {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"training.{key}: expected a uint8 RNG state of shape {tuple(reference.shape)}, got {got}")
    _check_optimizer_state(state["optimizer"], model)
    _check_history(state["history"], done)
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


def _check_history(saved, epochs_done: int) -> None:
    if not isinstance(saved, dict):
        raise ValueError(f"history: expected a dict, got {type(saved).__name__}")
    for split in ("train", "test"):
        parts = saved.get(split)
        if not isinstance(parts, dict) or set(parts) != {"total", "reconstruction", "kl"}:
            raise ValueError(f"history.{split}: expected the loss parts total, reconstruction, kl")
        for key, values in parts.items():
            allowed = (epochs_done,) if split == "train" else (0, epochs_done)
            if not isinstance(values, list) or len(values) not in allowed:
                raise ValueError(f"history.{split}.{key}: expected a list of {epochs_done} values (one per epoch done), "
                                 f"got {len(values) if isinstance(values, list) else type(values).__name__}")
    for key in ("seconds", "samples_per_second"):
        if not isinstance(saved.get(key), list) or len(saved[key]) != epochs_done:
            raise ValueError(f"history.{key}: expected a list of {epochs_done} values (one per epoch done)")


def _resume(state: dict, model, optimizer, generator, history: History, lr: float) -> tuple[int, int]:
    """Restore a checkpoint checked by ``_read_resume`` into the objects ``fit`` built; returns
    (epochs done, global step)."""
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
    history.seconds[:] = saved["seconds"]
    history.samples_per_second[:] = saved["samples_per_second"]
    return training["epoch"], training["global_step"]


def save_checkpoint(model: nn.Module, path: str | Path, optimizer: torch.optim.Optimizer | None = None,
                    history: History | None = None, training: dict | None = None) -> Path:
    """Save model (class, config, weights), optimizer state, history and ``training`` (the state
    ``fit`` needs to resume: epochs done, RNG states) to ``path``.

    Written atomically: to a temporary file in the same folder, flushed to disk, then renamed over
    ``path``, so a crash mid-save leaves the previous checkpoint intact, never a partial file.
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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