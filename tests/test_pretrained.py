"""vae_course.pretrained: the shared trained VAEs, trained once and loaded after (the cache's rules
are in the module's docstring). Tiny data and a few steps: each training takes milliseconds."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from helpers import gen
from vae_course import pretrained, train
from vae_course.config import Mnist, Settings

N_STEPS = 3


def _mnist(seed: int) -> Mnist:
    g = gen(seed)
    return Mnist(train=(torch.rand(48, 1, 28, 28, generator=g), torch.randint(0, 10, (48,), generator=g)),
                 test=(torch.rand(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)),
                 source="random test digits")


@pytest.fixture
def cfg(tmp_path) -> Settings:
    return Settings(mode="fast", device=torch.device("cpu"), data_dir=tmp_path / "data", offline=True,
                    cache_dir=tmp_path / "cache")


def _entry(cfg: Settings, latent_dim: int = 2) -> Path:
    return cfg.cache_dir / f"vae-784-400-{latent_dim}-{cfg.mode}.pt"


def _trained(mnist: Mnist, cfg: Settings, latent_dim: int = 2, n_steps: int = N_STEPS):
    """What training gives, the cache off."""
    return pretrained.vae(latent_dim, mnist, dataclasses.replace(cfg, cache_dir=None), n_steps=n_steps)


def _same(model_a, model_b) -> bool:
    a, b = model_a.state_dict(), model_b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_hit_returns_what_training_gives(cfg, capsys):
    mnist = _mnist(0)
    reference, reference_history = _trained(mnist, cfg)
    first, _ = pretrained.vae(2, mnist, cfg, n_steps=N_STEPS)
    assert "trained the 784-400-2 VAE (3 steps) and saved it to" in capsys.readouterr().out
    assert _entry(cfg).is_file()
    loaded, history = pretrained.vae(2, mnist, cfg, n_steps=N_STEPS)
    assert "pretrained: loaded the 784-400-2 VAE from" in capsys.readouterr().out
    assert _same(loaded, reference) and _same(first, reference)
    assert not _same(loaded, pretrained.untrained_vae(2, cfg)), "the entry holds trained weights"
    assert (history.train, history.test) == (reference_history.train, reference_history.test)
    assert not loaded.training, "returned in eval mode, like a model fit() trained"


def test_the_global_generator_is_the_same_after_a_hit_or_a_training(cfg):
    mnist = _mnist(0)
    draws = []
    for _ in range(2):   # the first call trains, the second loads
        torch.manual_seed(5)
        pretrained.vae(2, mnist, cfg, n_steps=N_STEPS)
        draws.append(torch.rand(4))
    torch.manual_seed(5)
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0], torch.rand(4)), "no random number used up"


def _plant(cfg: Settings, mnist: Mnist, change: dict | None = None, weights=None) -> Path:
    """An entry at the final path with zero weights (a used entry would show), its key changed."""
    model = pretrained.untrained_vae(2, cfg)
    key = {**pretrained.cache_key(model, mnist, cfg, N_STEPS), **(change or {})}
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.0 if weights is None else weights)
    history = train.History()
    history.train["total"].append(1.0)
    return train.save_checkpoint(model, _entry(cfg), history=history, training={"cache_key": key})


def _retrained(cfg: Settings, mnist: Mnist, capsys, why: str):
    reference, _ = _trained(mnist, cfg)
    capsys.readouterr()
    model, _ = pretrained.vae(2, mnist, cfg, n_steps=N_STEPS)
    out = capsys.readouterr().out
    assert why in out and "trained the 784-400-2 VAE" in out and "saved it to" in out, out
    assert len([line for line in out.splitlines() if line.startswith("pretrained:")]) == 1, "one line says what happened"
    assert _same(model, reference), "the stale entry is not used: the model is what training gives"
    again, _ = pretrained.vae(2, mnist, cfg, n_steps=N_STEPS)
    assert "loaded" in capsys.readouterr().out and _same(again, reference), "the entry was overwritten"


def test_the_planted_entry_is_used_when_its_key_matches(cfg, capsys):
    """The control for the tests below: an entry with the right key is used as it is."""
    mnist = _mnist(0)
    _plant(cfg, mnist, weights=0.5)
    model, history = pretrained.vae(2, mnist, cfg, n_steps=N_STEPS)
    assert "loaded" in capsys.readouterr().out
    assert all(bool((p == 0.5).all()) for p in model.parameters()) and history.train["total"] == [1.0]


@pytest.mark.parametrize("field, why", [("model", "model settings"), ("recipe", "training settings"),
                                        ("device", "device type"), ("data", "data"), ("code", "package code"),
                                        ("torch", "torch version")])
def test_an_entry_with_another_key_is_retrained(cfg, capsys, field, why):
    mnist = _mnist(0)
    _plant(cfg, mnist, {field: "something else"})
    _retrained(cfg, mnist, capsys, f"was made with other {why}")


def test_other_steps_other_data_or_changed_code_retrain(cfg, capsys, monkeypatch):
    mnist, other = _mnist(0), _mnist(1)
    pretrained.vae(2, mnist, cfg, n_steps=N_STEPS + 1)          # another budget
    _retrained(cfg, mnist, capsys, "was made with other training settings")
    pretrained.vae(2, other, cfg, n_steps=N_STEPS)               # other digits
    _retrained(cfg, mnist, capsys, "was made with other data")
    monkeypatch.setattr(pretrained, "code_hash", lambda: "the package as it was before an edit")
    pretrained.vae(2, mnist, cfg, n_steps=N_STEPS)
    monkeypatch.undo()
    _retrained(cfg, mnist, capsys, "was made with other package code")


def test_code_hash_follows_every_package_file(tmp_path, monkeypatch):
    package = tmp_path / "vae_course"
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")
    (package / "b.py").write_text("y = 2\n")
    monkeypatch.setattr(pretrained, "PACKAGE", package)
    before = pretrained.code_hash()
    (package / "b.py").write_text("y = 3\n")
    assert pretrained.code_hash() != before
    assert pretrained.code_hash() == pretrained.code_hash()
    (package / "c.py").write_text("")
    assert pretrained.code_hash() != before


def test_corrupt_and_truncated_entries_are_retrained(cfg, capsys):
    mnist = _mnist(0)
    pretrained.vae(2, mnist, cfg, n_steps=N_STEPS)
    whole = _entry(cfg).read_bytes()
    _entry(cfg).write_bytes(whole[: len(whole) // 2])
    _retrained(cfg, mnist, capsys, "could not be read")
    _entry(cfg).write_bytes(os.urandom(2000))
    _retrained(cfg, mnist, capsys, "could not be read")
    torch.save({"state_dict": {}}, _entry(cfg))
    _retrained(cfg, mnist, capsys, "is not a model cache entry")
    _plant(cfg, mnist, weights=float("nan"))
    _retrained(cfg, mnist, capsys, "non-finite")


class _Payload:
    """A pickle that would run code when loaded without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_an_entry_that_needs_pickle_is_refused_and_never_run(cfg, capsys, tmp_path):
    mnist = _mnist(0)
    marker = tmp_path / "the payload ran"
    cfg.cache_dir.mkdir()
    torch.save({"training": {"cache_key": _Payload(marker)}}, _entry(cfg))
    _retrained(cfg, mnist, capsys, "could not be read")
    assert not marker.exists(), "weights_only=True: the payload never ran"


def test_the_cache_can_be_switched_off(cfg, capsys, tmp_path):
    mnist = _mnist(0)
    model, _ = pretrained.vae(2, mnist, dataclasses.replace(cfg, cache_dir=None), n_steps=N_STEPS)
    assert "the model cache is off" in capsys.readouterr().out
    assert not cfg.cache_dir.exists(), "nothing written"
    assert not _same(model, pretrained.untrained_vae(2, cfg))


_RACER = """
import sys, time
from pathlib import Path
import torch
from vae_course import pretrained
from vae_course.config import Mnist, Settings
g = torch.Generator().manual_seed(0)
mnist = Mnist(train=(torch.rand(48, 1, 28, 28, generator=g), torch.randint(0, 10, (48,), generator=g)),
              test=(torch.rand(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)), source="random")
cfg = Settings(mode="fast", device=torch.device("cpu"), data_dir=Path(sys.argv[1]) / "data", offline=True,
               cache_dir=Path(sys.argv[1]) / "cache")
Path(sys.argv[2]).touch()                      # imported: ready
while not (Path(sys.argv[1]) / "go").exists():
    time.sleep(0.01)
model, _ = pretrained.vae(2, mnist, cfg, n_steps=int(sys.argv[3]))
torch.save(model.state_dict(), sys.argv[2])
"""


def test_two_processes_asking_at_once_train_the_model_once(cfg, tmp_path):
    """Notebooks run side by side (scripts/build_course.py --jobs): both start together, one trains
    (long enough for the other to ask meanwhile), the other waits for it and loads the same weights."""
    import subprocess
    import sys
    import time

    n_steps = 300
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    racers = [subprocess.Popen([sys.executable, "-c", _RACER, str(tmp_path), str(r), str(n_steps)],
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}) for r in ready]
    while not all(r.exists() for r in ready) and all(p.poll() is None for p in racers):
        time.sleep(0.01)
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=300)[0] for p in racers]
    assert all(p.returncode == 0 for p in racers), outs
    said = sorted("trained" if "and saved it to" in out else "loaded" if "loaded the 784-400-2 VAE" in out else out
                  for out in outs)
    assert said == ["loaded", "trained"], outs
    weights = [torch.load(r, weights_only=True) for r in ready]
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_failed_save_leaves_no_partial_file_and_returns_the_model(cfg, capsys, monkeypatch):
    mnist = _mnist(0)
    reference, _ = _trained(mnist, cfg)
    save = torch.save

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    model, _ = pretrained.vae(2, mnist, cfg, n_steps=N_STEPS)
    monkeypatch.setattr(torch, "save", save)
    assert "could not save it to" in capsys.readouterr().out
    assert _same(model, reference)
    left = [p.name for p in cfg.cache_dir.iterdir() if p.name != f".{_entry(cfg).name}.lock"]   # the lock file stays
    assert left == [], "neither a partial entry nor a temporary file is left"


def test_arguments_are_checked(cfg):
    with pytest.raises(TypeError, match="mnist: expected the Mnist"):
        pretrained.vae(2, (torch.rand(4, 1, 28, 28), None), cfg)
    with pytest.raises(ValueError, match="latent_dim"):
        pretrained.vae(0, _mnist(0), cfg, n_steps=N_STEPS)
    with pytest.raises(ValueError, match="n_steps"):
        pretrained.vae(2, _mnist(0), cfg, n_steps=0)



def _digits(n: int) -> Mnist:
    """n training digits (of one pixel each: only their number matters to the budget)."""
    return Mnist(train=(torch.zeros(n, 1, 1, 1), torch.zeros(n, dtype=torch.int64)),
                 test=(torch.zeros(1, 1, 1, 1), torch.zeros(1, dtype=torch.int64)), source="counted digits")


@pytest.mark.parametrize("n, fast, full", [(60_000, 250, 4000), (4_500, 250, 1440), (1_000, 250, 320), (100, 40, 40)])
def test_the_budget_is_capped_at_40_passes_over_the_training_digits(cfg, n, fast, full):
    """250 / 4,000 optimizer steps, at most train.MAX_PASSES passes of batch 128 over the digits:
    the cap binds on the offline subset (4,500 digits: 36 steps a pass) and never on full MNIST."""
    full_cfg = dataclasses.replace(cfg, mode="full")
    assert pretrained.steps(cfg, _digits(n)) == fast and pretrained.steps(full_cfg, _digits(n)) == full
    assert train.capped_steps(4000, n) == min(4000, 40 * -(-n // 128))
    with pytest.raises(ValueError, match="max_passes"):
        train.capped_steps(4000, n, max_passes=0)
