"""Train once, use everywhere: the course's shared trained VAEs.

Two models come back in several notebooks: the 784-400-2 VAE (notebooks 04, 05, 08) and the
784-400-20 VAE (02, 03, 04, 08), each trained on MNIST's training digits by one recipe: weights
initialised from ``SEED``, ``steps(cfg, mnist)`` Adam steps of batch ``BATCH_SIZE`` at learning rate ``LR``
(``train.fit``, data order and z samples from ``SEED``), the test loss recorded in the history.
``vae(latent_dim, mnist, cfg)`` returns the trained model and its ``History``; the first notebook
that needs a model trains it and saves it, the next ones load it. Each notebook still runs alone
on a fresh kernel: it trains what the cache lacks.

The cache's rules:

* Where: ``cfg.cache_dir`` (``VAE_COURSE_CACHE_DIR``; default ``build/cache/`` in a checkout), one
  file per model and mode, ``vae-784-400-J-MODE.pt``. ``VAE_COURSE_CACHE_DIR=off``: every call
  trains and nothing is kept.
* Key, stored in the file and compared field by field: the model's class and configuration, the
  recipe (steps, batch size, learning rate, seed), the device type, the data's SHA-256
  (``Mnist.checksum``: train and test digits, so the mode's and the data source's), the SHA-256 of
  the package's code (every ``vae_course/*.py``) and torch's version.
* Read with ``torch.load(weights_only=True)``: a file whose unpickling would run code is refused.
  An entry that cannot be read, is not a cache entry, holds non-finite weights or whose key
  differs is never used: one line says why, the model is retrained and the entry overwritten.
* Written atomically (``train.save_checkpoint``: a temporary file renamed over the entry), so an
  interrupted save leaves no partial file; a folder that cannot be written is said in one line,
  and the trained model is returned all the same.
* Trained once at a time: reading, training and saving an entry happen under an inter-process lock
  (``files.lock`` on ``.vae-784-400-J-MODE.pt.lock`` beside it), so notebooks running side by side
  that need the same model wait for the first one and load what it saved.
* Random numbers: training runs inside ``torch.random.fork_rng`` with its own seed, so torch's
  global generator is left as it was: a notebook's later cells draw the same numbers whether the
  model was loaded or trained.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
from pathlib import Path

import torch

from vae_course import files, train, validate
from vae_course.config import REPO_ROOT, Mnist, Settings, settings
from vae_course.models import VAE

SEED = 0            # the initial weights, the data order and the z samples of training
BATCH_SIZE = 128
LR = 1e-3
STEPS = {"fast": 250, "full": 4000}   # optimizer steps, by mode (VAE_COURSE_MODE)
PACKAGE = Path(__file__).resolve().parent


def steps(cfg: Settings | None, mnist: Mnist) -> int:
    """The shared models' training budget in optimizer steps on ``mnist``'s training digits: 250 in
    fast mode, 4,000 in full mode, capped at ``train.MAX_PASSES`` passes over the digits
    (``train.capped_steps``: 1,440 steps on the 4,500-digit offline subset in full mode; on full
    MNIST the cap does not bind). Models compared with the shared ones train for as many steps."""
    return train.capped_steps(STEPS[(cfg or settings()).mode], len(mnist.train[0]), BATCH_SIZE)


def untrained_vae(latent_dim: int, cfg: Settings | None = None) -> VAE:
    """The 784-400-``latent_dim`` VAE as the shared one starts training: weights from ``SEED``,
    on ``cfg.device``. Torch's global random generator is left as it was."""
    latent_dim = validate.positive_int(latent_dim, "latent_dim")
    cfg = cfg or settings()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = VAE(latent_dim=latent_dim)
    return model.to(cfg.device)


def code_hash() -> str:
    """SHA-256 (hex) of every ``vae_course/*.py`` file, names and bytes: the code that trains."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_key(model: VAE, mnist: Mnist, cfg: Settings, n_steps: int) -> dict:
    """What a cache entry must match, field by field, to be used."""
    return {"model": f"{type(model).__name__} {sorted(model.config.items())}",
            "recipe": f"steps={n_steps} batch_size={BATCH_SIZE} lr={LR} seed={SEED}",
            "device": cfg.device.type, "data": mnist.checksum, "code": code_hash(), "torch": str(torch.__version__)}


def vae(latent_dim: int, mnist: Mnist, cfg: Settings | None = None, *,
        n_steps: int | None = None) -> tuple[VAE, train.History]:
    """The shared 784-400-``latent_dim`` VAE trained on ``mnist``'s training digits, and its history.

    Loaded from the cache (module doc) when an entry with the same key is there; otherwise trained
    (``steps(cfg, mnist)`` optimizer steps, or ``n_steps``), saved, and returned. One line says which.

    Args:
        latent_dim: J, the latent dimensions (the course shares J = 2 and J = 20).
        mnist: the digits from ``vae_course.setup``: trains on ``mnist.train``, records the test
            loss on ``mnist.test`` (nats per example, ``history.test``).
        cfg: the settings (mode, device, cache folder); default ``settings()``.
        n_steps: optimizer steps; default ``steps(cfg, mnist)`` (250 fast, 4,000 full, at most 40 passes).

    Returns:
        ``(model, history)``: the VAE on ``cfg.device`` in eval mode, and ``train.fit``'s history.
        A loaded model equals the trained one bit for bit (same device type, data, code, torch).
    """
    if not isinstance(mnist, Mnist):
        raise TypeError(f"mnist: expected the Mnist that vae_course.setup returns, got {type(mnist).__name__}")
    cfg = cfg or settings()
    n_steps = steps(cfg, mnist) if n_steps is None else validate.positive_int(n_steps, "n_steps")
    model = untrained_vae(latent_dim, cfg)
    key = cache_key(model, mnist, cfg, n_steps)
    name = f"784-400-{model.latent_dim} VAE"
    if cfg.cache_dir is None:
        history = _train(model, mnist, cfg, n_steps)
        print(f"pretrained: trained the {name} ({n_steps:,} steps); the model cache is off (VAE_COURSE_CACHE_DIR=off)")
        return model, history
    path = Path(cfg.cache_dir) / f"vae-784-400-{model.latent_dim}-{cfg.mode}.pt"
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
    # Notebooks run side by side (scripts/build_course.py --jobs): one trains, the others wait and load.
    with files.lock(path.with_name(f".{path.name}.lock")):
        found, problem = _read(path, key, model)
        if found is not None:
            model.load_state_dict(found[0])
            print(f"pretrained: loaded the {name} from {_shown(path)} (delete it, or set VAE_COURSE_CACHE_DIR=off, to retrain)")
            return model.eval(), found[1]
        history = _train(model, mnist, cfg, n_steps)
        try:
            train.save_checkpoint(model, path, history=history, training={"cache_key": key})
            saved = f"saved it to {_shown(path)}"
        except (OSError, RuntimeError) as err:  # a read-only folder, a full disk: the model is still good
            saved = f"could not save it to {_shown(path)} ({type(err).__name__}: {err}); the next notebook trains it again"
    why = f"{_shown(path)} {problem}; " if problem else ""
    print(f"pretrained: {why}trained the {name} ({n_steps:,} steps) and {saved}")
    return model, history


def _train(model: VAE, mnist: Mnist, cfg: Settings, n_steps: int) -> train.History:
    """``train.fit`` by the recipe, inside a fork of torch's global random generator."""
    devices = [cfg.device.index or 0] if cfg.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        history = train.fit(model, mnist.train[0], steps=n_steps, batch_size=BATCH_SIZE, lr=LR, seed=SEED,
                            device=cfg.device, test_images=mnist.test[0])
    return history


def _read(path: Path, key: dict, model: VAE) -> tuple[tuple[dict, train.History] | None, str | None]:
    """``((state_dict, history), None)`` for a usable entry at ``path`` (tensors of ``model``'s
    names, shapes and dtypes, finite); ``(None, why not)`` otherwise, ``(None, None)`` when there is no file."""
    if not path.exists():
        return None, None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated, corrupt, or a pickle that would run code
        return None, f"could not be read by torch.load(weights_only=True) ({type(err).__name__})"
    saved = state.get("training") if isinstance(state, dict) else None
    saved = saved.get("cache_key") if isinstance(saved, dict) else None
    if not isinstance(saved, dict):
        return None, "is not a model cache entry"
    differ = [field for field in key if saved.get(field) != key[field]]
    if differ:
        return None, f"was made with other {', '.join(_WHAT[field] for field in differ)}"
    weights, expected = state.get("state_dict"), model.state_dict()
    if not isinstance(weights, dict) or set(weights) != set(expected) or not all(
            isinstance(weights[k], torch.Tensor) and weights[k].dtype == t.dtype and weights[k].shape == t.shape
            and bool(torch.isfinite(weights[k]).all()) for k, t in expected.items()):
        return None, "holds weights of other names, shapes or types, or non-finite ones"
    try:
        history = train.History(**state["history"])
        if not all(math.isfinite(v) for v in history.train["total"]):
            raise ValueError("a non-finite loss")
    except (TypeError, ValueError, KeyError) as err:
        return None, f"holds a damaged history ({type(err).__name__}: {err})"
    return (weights, history), None


_WHAT = {"model": "model settings", "recipe": "training settings", "device": "device type", "data": "data",
         "code": "package code", "torch": "torch version"}


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (shorter to read)."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
