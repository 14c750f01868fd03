"""Tests of vae_course.train: the loss falls, the history, seeding, the non-finite guard,
checkpoints (atomic, safe to load, config-checked), beta and denoising."""
from __future__ import annotations

import copy
import functools
import math
import os
import pickle

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from vae_course import evaluate, losses, models, train
from helpers import gen

SHAPE = (1, 4, 4)


_gen = gen  # one seeded generator per call (tests/helpers.py)


def _dataset(n=64, seed=0):
    """Binary 4x4 images: noisy copies of two prototypes (learnable), labels = prototype."""
    g = _gen(seed)
    protos = torch.tensor([[1.0] * 8 + [0.0] * 8, [0.0, 1.0] * 8]).view(2, *SHAPE)
    y = torch.randint(0, 2, (n,), generator=g)
    flip = torch.rand(n, *SHAPE, generator=g) < 0.05
    x = torch.where(flip, 1 - protos[y], protos[y])
    return x, y


def _model(cls=models.VAE, seed=0, **kw):
    torch.manual_seed(seed)
    kw = {"image_shape": SHAPE, "hidden_dims": (16,), "latent_dim": 2, **kw}
    return cls(**kw)


def _fit(model, x, y=None, passes=3, **kw):
    """``fit`` for ``passes`` passes over ``x`` (``steps`` = passes x batches per pass), unless ``steps`` is given."""
    kw = {"batch_size": 16, "lr": 1e-2, "device": "cpu", "progress": False, **kw}
    if "steps" not in kw:
        bs = kw["batch_size"]
        per_pass = math.ceil(len(x) / bs) if isinstance(bs, int) and bs > 0 and hasattr(x, "__len__") else 1
        kw["steps"] = passes * per_pass if isinstance(passes, int) else passes
    return train.fit(model, x, y, **kw)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- learning and history

@pytest.mark.parametrize("cls", [models.Autoencoder, models.VAE, models.CVAE])
def test_loss_decreases_on_a_learnable_dataset(cls):
    x, y = _dataset()
    model = _model(cls, num_classes=2) if cls is models.CVAE else _model(cls)
    history = _fit(model, x, y if cls is models.CVAE else None, passes=12, batch_size=32, lr=2e-2)
    first, last = history.train["total"][0], history.train["total"][-1]
    assert last < 0.75 * first, history.train["total"]
    assert not model.training  # fit leaves the model in eval mode


def test_history_has_every_part_every_epoch():
    x, y = _dataset()
    tx, ty = _dataset(20, seed=1)
    model = _model(models.VAE)
    history = _fit(model, x, passes=4, beta=2.0, test_images=tx)
    assert history.epochs == 4
    for split in (history.train, history.test):
        assert set(split) == {"total", "reconstruction", "kl"}
        assert all(len(v) == 4 for v in split.values())
        for total, recon, kl in zip(split["total"], split["reconstruction"], split["kl"]):
            assert total == pytest.approx(recon + 2.0 * kl, rel=1e-5)
            assert kl >= 0 and recon > 0
    assert len(history.seconds) == len(history.samples_per_second) == 4
    assert all(s > 0 for s in history.seconds)
    # the last test entry is the held-out loss of the final model
    final = evaluate.loss_parts(model, tx, beta=2.0)
    assert history.test["total"][-1] == pytest.approx(final.total, rel=1e-6)
    d = history.as_dict()
    assert d["train"] is history.train and d["test"] is history.test


def test_history_without_test_images_has_empty_test_lists():
    x, _ = _dataset()
    history = _fit(_model(), x, passes=2)
    assert all(v == [] for v in history.test.values())
    assert all(len(v) == 2 for v in history.train.values())


def test_train_epoch_mean_is_over_all_examples_with_a_short_last_batch():
    """Epoch mean = sum over all examples / n, also when the last batch is smaller."""
    x, _ = _dataset(10)
    model = _model(models.Autoencoder)
    snapshot = copy.deepcopy(model)
    history = _fit(model, x, passes=2, batch_size=4, lr=1e-12)  # lr ~ 0: weights barely move
    expected = snapshot.loss(x).total.mean().item()
    assert history.steps == [3, 6]  # 3 steps per pass: batches of 4, 4 and 2
    assert history.train["total"][0] == pytest.approx(expected, rel=1e-4)
    assert history.train["total"][1] == pytest.approx(expected, rel=1e-4)


def test_same_seed_same_result_different_seed_different_result():
    x, _ = _dataset()
    a, b, c = _model(seed=1), _model(seed=1), _model(seed=1)
    ha = _fit(a, x, seed=5)
    hb = _fit(b, x, seed=5)
    hc = _fit(c, x, seed=6)
    assert ha.train == hb.train
    assert _same_weights(a, b)
    assert ha.train != hc.train
    assert not _same_weights(a, c)


def test_beta_zero_does_not_penalize_kl():
    x, _ = _dataset()
    free, tied = _model(seed=2), _model(seed=2)
    h0 = _fit(free, x, beta=0.0, passes=8, batch_size=32, lr=2e-2)
    h1 = _fit(tied, x, beta=1.0, passes=8, batch_size=32, lr=2e-2)
    assert h0.train["total"] == h0.train["reconstruction"]
    assert h1.train["total"] != h1.train["reconstruction"]
    # without the KL penalty q(z|x) drifts away from the prior; with it, it stays closer
    assert h0.train["kl"][-1] > 2 * h1.train["kl"][-1]


def test_beta_zero_gives_the_kl_no_gradient():
    x, _ = _dataset(8)
    model = _model()
    torch.manual_seed(0)
    model.loss(x, beta=0.0).total.mean().backward()
    g0 = model.logvar_head.weight.grad.clone()
    model.zero_grad()
    torch.manual_seed(0)
    model.loss(x, beta=0.0).reconstruction.mean().backward()
    assert torch.equal(g0, model.logvar_head.weight.grad)


def test_cvae_trains_with_labels():
    x, y = _dataset()
    model = _model(models.CVAE, num_classes=2)
    history = _fit(model, x, y, passes=2, test_images=x[:10], test_labels=y[:10])
    assert len(history.test["total"]) == 2


@pytest.mark.parametrize("cls", [models.Autoencoder, models.VAE])
def test_a_model_without_labels_refuses_them_in_fit(cls):
    x, y = _dataset()
    model = _model(cls)
    before = copy.deepcopy(model)
    _raises(ValueError, "labels: ", _fit, model, x, y)
    _raises(ValueError, "test_labels: ", _fit, model, x, test_images=x[:4], test_labels=y[:4])
    _raises(ValueError, "test_labels", _fit, model, x, test_labels=y[:4])  # labels without test images
    assert _same_weights(model, before)


def test_corrupt_denoising_autoencoder():
    x, _ = _dataset(32)
    calls = []

    def corrupt(batch):
        calls.append(batch.clone())
        return batch * (torch.rand(batch.shape) > 0.3)

    model = _model(models.Autoencoder)
    history = _fit(model, x, passes=2, batch_size=8, corrupt=corrupt)
    assert len(calls) == 2 * 4  # once per step
    seen = torch.cat(calls)
    assert seen.shape == (64, *SHAPE)
    # it corrupts clean training images: every batch row is one of the images, each once per epoch
    rows = {tuple(r.flatten().tolist()) for r in seen}
    assert rows == {tuple(r.flatten().tolist()) for r in x}
    assert all(torch.isfinite(torch.tensor(v)).all() for v in history.train.values())


@pytest.mark.parametrize("cls", [models.VAE, models.CVAE])
def test_corrupt_trains_a_denoising_vae_on_the_clean_target(cls):
    """Every model takes x_in: the encoder sees corrupt(x), the loss scores x."""
    x, y = _dataset(8)
    model = _model(cls, **({"num_classes": 2} if cls is models.CVAE else {}))
    labels = y if cls is models.CVAE else None
    plain, denoise = copy.deepcopy(model), copy.deepcopy(model)
    _fit(plain, x, labels, steps=2, batch_size=4, corrupt=lambda b: b)  # the identity: plain training
    _fit(model, x, labels, steps=2, batch_size=4)
    assert _same_weights(plain, model)
    _fit(denoise, x, labels, steps=2, batch_size=4, corrupt=lambda b: b * 0.5)
    assert not _same_weights(denoise, model)


@pytest.mark.parametrize("corrupt, exc, name", [
    ("noise", TypeError, "corrupt"),
    (lambda b: b * 2, ValueError, "corrupt(x)"),
    (lambda b: b[:1], ValueError, "corrupt(x)"),
    (lambda b: b.numpy(), TypeError, "corrupt(x)"),
])
def test_a_bad_corrupt_is_refused_by_name_before_a_step(corrupt, exc, name):
    x, _ = _dataset(8)
    model = _model()
    before = copy.deepcopy(model)
    _raises(exc, name, _fit, model, x, corrupt=corrupt)
    assert _same_weights(model, before)


# ---------------------------------------------------------------- non-finite loss

class _Snapshots:
    """Forward pre-hook keeping a copy of the weights at every forward pass."""

    def __init__(self, model):
        self.model, self.last = model, None
        model.encoder.register_forward_pre_hook(self)  # fit calls the model's parts, not model()

    def __call__(self, module, args):
        self.last = copy.deepcopy(self.model.state_dict())


def test_blowup_raises_before_the_optimizer_step():
    x, _ = _dataset()
    model = _model()
    snaps = _Snapshots(model)
    with pytest.raises(FloatingPointError, match="non-finite"):
        _fit(model, x, lr=1e10, passes=5)
    assert snaps.last is not None
    now = model.state_dict()
    # weights equal those used in the failing forward pass: no step was taken after it
    assert all(torch.equal(now[k], snaps.last[k]) for k in now)
    assert all(torch.isfinite(v).all() for v in now.values())


def test_nan_weights_raise_and_leave_parameters_unchanged():
    x, _ = _dataset()
    model = _model()
    with torch.no_grad():
        model.decoder[0].weight[0, 0] = float("nan")
    before = copy.deepcopy(model)
    with pytest.raises(FloatingPointError):
        _fit(model, x, passes=2)
    for (name, p), q in zip(model.named_parameters(), before.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, equal_nan=True, msg=name)


def test_nonfinite_gradient_with_finite_loss_is_caught(monkeypatch):
    """A finite loss whose gradient is not finite also stops training before the step."""
    x, _ = _dataset(16)
    model = _model(models.Autoencoder)
    before = copy.deepcopy(model)

    class InfGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return t.clone()

        @staticmethod
        def backward(ctx, g):
            return g * float("inf")

    original = models.Autoencoder._loss

    def loss(self, *args):
        parts = original(self, *args)
        return parts._replace(total=InfGrad.apply(parts.total))

    monkeypatch.setattr(models.Autoencoder, "_loss", loss)  # fit's per-step loss
    with pytest.raises(FloatingPointError, match="gradient"):
        _fit(model, x, passes=1)
    assert _same_weights(model, before)


# ---------------------------------------------------------------- checkpoints

def _outputs(model, x, y=None):
    cond = (y,) if model.num_classes else ()
    z = torch.randn(x.shape[0], model.latent_dim, generator=_gen(3))
    enc = model.encode(x, *cond)
    enc = enc if isinstance(enc, tuple) else (enc,)
    return (*enc, model.decode(z, *cond))


@pytest.mark.parametrize("cls", [models.Autoencoder, models.VAE, models.CVAE])
def test_checkpoint_roundtrip(cls, tmp_path):
    x, y = _dataset()
    model = _model(cls, num_classes=2) if cls is models.CVAE else _model(cls)
    path = tmp_path / "sub" / "model.pt"
    history = _fit(model, x, y if model.num_classes else None, passes=2, checkpoint=path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]  # no *.part left
    loaded = train.load_checkpoint(path)
    assert type(loaded) is cls and loaded.config == model.config
    for a, b in zip(_outputs(model, x, y), _outputs(loaded, x, y)):
        assert torch.equal(a, b)
    # loading into a fresh model of the same config gives the same weights
    into = _model(cls, seed=9, num_classes=2) if cls is models.CVAE else _model(cls, seed=9)
    assert not _same_weights(into, model)
    assert train.load_checkpoint(path, into) is into
    assert _same_weights(into, model)
    state = torch.load(path, weights_only=True)
    assert state["history"]["train"] == history.train
    assert state["optimizer"] is not None


def test_save_checkpoint_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    x, _ = _dataset()
    model = _model()
    path = train.save_checkpoint(model, tmp_path / "m.pt")
    good = path.read_bytes()
    real_save = torch.save

    def failing_save(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    other = _model(seed=4)
    with pytest.raises(OSError):
        train.save_checkpoint(other, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    assert _same_weights(train.load_checkpoint(path), model)


def test_load_into_a_different_config_names_the_field(tmp_path):
    path = train.save_checkpoint(_model(), tmp_path / "m.pt")
    for field, kw in [("latent_dim", {"latent_dim": 3}), ("hidden_dims", {"hidden_dims": (8,)}),
                      ("likelihood", {"likelihood": "gaussian"}), ("image_shape", {"image_shape": (1, 2, 8)})]:
        with pytest.raises(ValueError, match=field):
            train.load_checkpoint(path, _model(**kw))
    with pytest.raises(ValueError, match="model_class"):
        train.load_checkpoint(path, _model(models.Autoencoder))
    with pytest.raises(FileNotFoundError):
        train.load_checkpoint(tmp_path / "missing.pt")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("via", ["torch", "pickle"])
def test_checkpoint_that_would_run_code_is_refused(tmp_path, via):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    state = {"model_class": "VAE", "config": _model().config, "state_dict": {}, "payload": _Evil(marker)}
    if via == "torch":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state, protocol=2))
    with pytest.raises(ValueError, match="evil.pt"):
        train.load_checkpoint(path)
    assert not marker.exists()
    # the file really is malicious: an unsafe load runs the payload
    if via == "pickle":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


def test_corrupt_or_foreign_checkpoint_raises_value_error(tmp_path):
    good = train.save_checkpoint(_model(), tmp_path / "good.pt").read_bytes()
    cases = {
        "truncated.pt": good[: len(good) // 2],
        "empty.pt": b"",
        "garbage.pt": bytes(range(256)) * 8,
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match="path"):
            train.load_checkpoint(tmp_path / name)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="checkpoint"):
        train.load_checkpoint(tmp_path / "foreign.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError):
        train.load_checkpoint(tmp_path / "list.pt")
    torch.save({"model_class": "Evil", "config": {}, "state_dict": {}}, tmp_path / "cls.pt")
    with pytest.raises(ValueError, match="model_class"):
        train.load_checkpoint(tmp_path / "cls.pt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_evaluate_and_checkpoint_on_cuda(tmp_path):
    x, y = _dataset()
    model = _model(models.CVAE, num_classes=2)
    history = _fit(model, x, y, device="cuda", checkpoint=tmp_path / "m.pt", test_images=x[:8], test_labels=y[:8])
    assert model.device.type == "cuda"
    assert all(math.isfinite(v) for v in history.train["total"] + history.test["total"])
    est = evaluate.negative_elbo(model, x[:8], y[:8])
    assert math.isfinite(est.total)
    assert model.sample(3, 1).device.type == "cuda"
    loaded = train.load_checkpoint(tmp_path / "m.pt")  # map_location="cpu"
    assert loaded.device.type == "cpu"
    z = torch.randn(4, 2, generator=_gen(0))
    torch.testing.assert_close(loaded.decode(z, y[:4]), model.decode(z.cuda(), y[:4].cuda()).cpu(),
                               rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- bad arguments

def _raises(exc, name, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert name in str(info.value), str(info.value)


def test_fit_bad_arguments_name_the_argument():
    x, y = _dataset(8)
    model = _model()
    for field, bad in [("steps", 0), ("steps", -1), ("steps", 1.5), ("steps", "3"), ("batch_size", 0),
                       ("lr", -1), ("lr", 0), ("lr", float("nan")), ("lr", float("inf")),
                       ("beta", float("nan")), ("beta", -0.5), ("beta", float("inf"))]:
        _raises(ValueError, field, _fit, model, x, **{field: bad})
    _raises(TypeError, "images", _fit, model, (x * 255).to(torch.uint8))
    _raises(TypeError, "images", _fit, model, x.numpy())
    _raises(ValueError, "images", _fit, model, x.view(8, 16))
    _raises(ValueError, "images", _fit, model, x * 3)
    nan = x.clone()
    nan[2, 0, 1, 1] = float("nan")
    _raises(ValueError, "images", _fit, model, nan)
    _raises(ValueError, "test_images", _fit, model, x, test_images=torch.rand(3, 1, 4, 5))
    for labels in (y, y.int(), y.tolist(), y[:5], y - 5):  # a VAE takes no labels, good or bad
        _raises(ValueError, "labels", _fit, model, x, labels)


def test_fit_cvae_label_checks():
    x, y = _dataset(8)
    model = _model(models.CVAE, num_classes=2)
    _raises(ValueError, "labels", _fit, model, x)  # a CVAE without labels
    _raises(TypeError, "labels", _fit, model, x, y.float())
    _raises(TypeError, "labels", _fit, model, x, y.to(torch.int32))
    _raises(ValueError, "labels", _fit, model, x, y + 1)  # 2 is out of range for 2 classes
    _raises(ValueError, "labels", _fit, model, x, y[:7])
    _raises(ValueError, "test_labels", _fit, model, x, y, test_images=x)
    _raises(ValueError, "test_labels", _fit, model, x, y, test_images=x, test_labels=y[:3])


def test_bad_arguments_leave_the_model_untouched():
    x, _ = _dataset(8)
    model = _model()
    before = copy.deepcopy(model)
    with pytest.raises(ValueError):
        _fit(model, x, lr=-1)
    assert _same_weights(model, before)


def test_steps_is_a_required_keyword():
    x, _ = _dataset(8)
    with pytest.raises(TypeError, match="steps"):
        train.fit(_model(), x, progress=False)


def test_steps_per_pass_and_record_points():
    assert train.steps_per_pass(4500, 128) == 36 and train.steps_per_pass(60000, 128) == 469
    assert train.steps_per_pass(128, 128) == 1 and train.steps_per_pass(129, 128) == 2
    assert train.record_points(108, 36) == [36, 72, 108]          # whole passes
    assert train.record_points(100, 36) == [36, 72, 100]          # the last pass partial
    assert train.record_points(250, 469) == [125, 250]            # shorter than two passes: two halves
    assert train.record_points(500, 469) == [250, 500]
    assert train.record_points(1, 36) == [1]
    with pytest.raises(ValueError, match="batch_size"):
        train.steps_per_pass(10, 0)


class _StepCounter:
    """Counts optimizer steps (a hook on Adam.step) and the examples of each batch."""

    def __init__(self, model):
        self.steps, self.batch_sizes = 0, []
        model.encoder.register_forward_pre_hook(lambda m, args: self.batch_sizes.append(args[0].shape[0]))

    def __call__(self, optimizer, args, kwargs):
        self.steps += 1


@pytest.mark.parametrize("n, batch_size, steps", [(64, 16, 8), (64, 16, 11), (10, 4, 5), (64, 16, 1), (10, 32, 3)])
def test_fit_takes_exactly_steps_optimizer_steps_in_shuffled_passes(n, batch_size, steps, monkeypatch):
    x, _ = _dataset(n)
    model = _model()
    counter = _StepCounter(model)
    handle = register_optimizer_step_post_hook(counter)
    try:
        history = _fit(model, x, steps=steps, batch_size=batch_size)
    finally:
        handle.remove()
    assert counter.steps == steps
    per_pass = math.ceil(n / batch_size)
    assert history.steps == train.record_points(steps, per_pass) and history.steps[-1] == steps
    # each pass is a permutation: batches of batch_size, the last one of a pass smaller
    expected = [min(batch_size, n - (i % per_pass) * batch_size) for i in range(steps)]
    assert counter.batch_sizes == expected
    # an entry's mean is over the examples it saw: the entries' sample counts add up
    seen = [sum(expected[a:b]) for a, b in zip([0, *history.steps[:-1]], history.steps)]
    assert len(history.train["total"]) == len(seen) == history.epochs


def test_fit_is_the_plain_loop():
    """fit == encode, reparameterize, decode, loss, backward, Adam step on batches of a permutation
    drawn from a generator seeded with ``seed`` (the loop of notebook 04), bit for bit on CPU."""
    x, _ = _dataset()
    by_fit, by_hand = _model(seed=2), _model(seed=2)
    _fit(by_fit, x, steps=6, batch_size=16, lr=1e-2, seed=4)
    torch.manual_seed(4)
    order_rng = torch.Generator().manual_seed(4)
    optimizer = torch.optim.Adam(by_hand.parameters(), lr=1e-2, fused=True)
    step = 0
    while step < 6:
        order = torch.randperm(len(x), generator=order_rng)
        for i in range(0, len(x), 16):
            if step == 6:
                break
            xb = x[order[i:i + 16]]
            mu, logvar = by_hand.encode(xb)
            z = by_hand.reparameterize(mu, logvar)
            loss = losses.negative_elbo(by_hand.decode(z), xb, mu, logvar).total.mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
    assert _same_weights(by_fit, by_hand)


def test_the_step_checks_loss_and_gradient_with_one_host_sync(monkeypatch):
    """The per-step guard reads one value from the device (Tensor.__bool__ once), and the
    per-step loss is the model's unchecked _loss (the data were checked once by fit)."""
    x, _ = _dataset()
    model = _model()
    calls = {"bool": 0, "item": 0, "public loss": 0}
    original_bool, original_item = torch.Tensor.__bool__, torch.Tensor.item
    monkeypatch.setattr(type(model), "loss", lambda *a, **k: calls.__setitem__("public loss", 1))

    def counting_bool(self):
        calls["bool"] += 1
        return original_bool(self)

    def counting_item(self):
        calls["item"] += 1
        return original_item(self)

    data = train._DataOrder(len(x), 16, torch.Generator().manual_seed(0), "cpu")

    class Optimizer:  # Adam's own bookkeeping (CPU step counters) is not the step's guard
        steps = 0

        def zero_grad(self, set_to_none=True):
            model.zero_grad(set_to_none=set_to_none)

        def step(self):
            self.steps += 1

    optimizer = Optimizer()
    params = list(model.parameters())
    xb = x[data.next_batch()]
    monkeypatch.setattr(torch.Tensor, "__bool__", counting_bool)
    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    train._train_step(model, optimizer, params, xb, None, None, 1.0, 0.0)
    monkeypatch.undo()
    assert calls["public loss"] == 0 and optimizer.steps == 1
    assert calls["bool"] + calls["item"] <= 1, calls


# ---------------------------------------------------------------- resume, and faults around checkpoints

def _optimizer_state(path):
    return torch.load(path, weights_only=True)["optimizer"]["state"]


@pytest.mark.parametrize("cls", [models.VAE, models.CVAE])
def test_resume_equals_training_straight_through_bit_for_bit(cls, tmp_path):
    """3 passes straight == 2 passes, a save, a resume (in a fresh model) and 1 more pass."""
    x, y = _dataset()
    tx, ty = _dataset(20, seed=1)
    make = lambda seed: _model(cls, seed=seed, **({"num_classes": 2} if cls is models.CVAE else {}))  # noqa: E731
    labels = y if cls is models.CVAE else None
    fit_kw = {"seed": 5, "test_images": tx, "test_labels": ty if cls is models.CVAE else None}

    straight = make(1)
    h_straight = _fit(straight, x, labels, passes=3, checkpoint=tmp_path / "straight.pt", **fit_kw)

    first = make(1)
    _fit(first, x, labels, passes=2, checkpoint=tmp_path / "half.pt", **fit_kw)
    resumed = make(7)  # other initial weights: everything must come from the checkpoint
    h_resumed = _fit(resumed, x, labels, passes=3, resume_from=tmp_path / "half.pt",
                     checkpoint=tmp_path / "resumed.pt", **fit_kw)

    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name
    assert h_resumed.train == h_straight.train and h_resumed.test == h_straight.test
    assert h_resumed.epochs == 3 and len(h_resumed.seconds) == 3 and h_resumed.steps == h_straight.steps
    adam_a, adam_b = _optimizer_state(tmp_path / "straight.pt"), _optimizer_state(tmp_path / "resumed.pt")
    assert adam_a.keys() == adam_b.keys()
    for k in adam_a:
        assert all(torch.equal(adam_a[k][s], adam_b[k][s]) for s in adam_a[k]), k

    # The test can fail: continuing from the same weights without the saved RNG and optimizer
    # states (a fresh fit) gives other weights.
    naive = make(7)
    train.load_checkpoint(tmp_path / "half.pt", naive)
    _fit(naive, x, labels, passes=1, **fit_kw)
    assert not _same_weights(naive, straight)


@pytest.mark.parametrize("first_steps", [1, 3, 6, 9])
def test_a_resume_inside_a_pass_continues_that_pass_bit_for_bit(first_steps, tmp_path):
    """A checkpoint taken after any number of steps (inside a pass too) resumes as if never stopped."""
    x, _ = _dataset()  # 4 steps per pass
    straight, first, resumed = _model(seed=1), _model(seed=1), _model(seed=8)
    _fit(straight, x, steps=10, seed=2)
    _fit(first, x, steps=first_steps, seed=2, checkpoint=tmp_path / "part.pt")
    history = _fit(resumed, x, steps=10, seed=2, resume_from=tmp_path / "part.pt")
    assert _same_weights(straight, resumed)
    assert history.steps[-1] == 10 and history.steps == sorted(set(history.steps))


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    x, _ = _dataset()
    path = tmp_path / "m.pt"
    _fit(_model(), x, passes=2, checkpoint=path)
    with pytest.raises(ValueError, match="steps: .*already taken 8 optimizer steps"):
        _fit(_model(), x, passes=2, resume_from=path)
    with pytest.raises(ValueError, match="latent_dim"):  # a checkpoint of another configuration
        _fit(_model(latent_dim=3), x, passes=3, resume_from=path)
    weights_only = train.save_checkpoint(_model(), tmp_path / "w.pt")
    with pytest.raises(ValueError, match="resume_from: .*weights only"):
        _fit(_model(), x, passes=3, resume_from=weights_only)
    with pytest.raises(FileNotFoundError):
        _fit(_model(), x, passes=3, resume_from=tmp_path / "missing.pt")


class _NaNAtCall:
    """Forward hook making the decoder's output NaN at its ``n``-th call: a NaN batch mid-training."""

    def __init__(self, module, n):
        self.calls, self.n = 0, n
        self.handle = module.register_forward_hook(self)

    def __call__(self, module, args, output):
        self.calls += 1
        return output * float("nan") if self.calls == self.n else output


@pytest.mark.parametrize("fault", ["nan batch", "lr=1e6"])
def test_a_blow_up_keeps_the_parameters_and_the_last_good_checkpoint(fault, tmp_path):
    x, _ = _dataset()
    path = tmp_path / "m.pt"
    model = _model()
    _fit(model, x, passes=1, checkpoint=path)  # the last good checkpoint (4 steps of batch 16)
    good_bytes = path.read_bytes()
    good_weights = copy.deepcopy(model.state_dict())
    snaps = _Snapshots(model)
    with pytest.raises(FloatingPointError, match="non-finite") as info:
        if fault == "nan batch":  # the 2nd batch of epoch 2
            hook = _NaNAtCall(model.decoder, 2)
            _fit(model, x, passes=3, checkpoint=path, resume_from=path)
        else:
            _fit(model, x, passes=3, lr=1e6, checkpoint=path, resume_from=path)
    assert "before the optimizer step" in str(info.value)
    # no step after the failing forward pass, and the weights are finite
    now = model.state_dict()
    assert all(torch.equal(now[k], snaps.last[k]) for k in now)
    assert all(torch.isfinite(v).all() for v in now.values())
    if fault == "nan batch":  # it failed at the 2nd step of epoch 2: one step was taken
        assert hook.calls == 2 and not _same_weights(model, _model())
    # the checkpoint of epoch 1 is intact: same bytes, loads, equals the weights saved then
    assert path.read_bytes() == good_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    loaded = train.load_checkpoint(path)
    assert all(torch.equal(loaded.state_dict()[k], good_weights[k]) for k in good_weights)
    # and training resumes from it
    if fault == "nan batch":
        hook.handle.remove()
    history = _fit(_model(seed=3), x, passes=2, resume_from=path)
    # the checkpoint's run (4 steps, shorter than two passes) was recorded in halves; then one pass
    assert history.steps == [2, 4, 8] and all(math.isfinite(v) for v in history.train["total"])


_KILLED_SAVE = """
import sys, time, torch
from pathlib import Path
from vae_course import models, train
path, marker = Path(sys.argv[1]), Path(sys.argv[2])
torch.manual_seed(0)
good = models.VAE(image_shape=(1, 4, 4), hidden_dims=(16,), latent_dim=2)
train.save_checkpoint(good, path)
real_save = torch.save

def slow_save(obj, f, *args, **kwargs):  # half the bytes, then the process is killed
    import io
    buffer = io.BytesIO()
    real_save(obj, buffer)
    f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    f.flush()
    marker.touch()
    time.sleep(60)

torch.save = slow_save
torch.manual_seed(1)
train.save_checkpoint(models.VAE(image_shape=(1, 4, 4), hidden_dims=(16,), latent_dim=2), path)
"""


def test_a_save_killed_halfway_leaves_the_previous_checkpoint_loadable(tmp_path):
    import subprocess
    import sys

    from helpers import kill_when

    path, marker = tmp_path / "m.pt", tmp_path / "halfway"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_SAVE, str(path), str(marker)])
    kill_when(proc, marker.exists)  # killed halfway through writing the second checkpoint
    partial = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert len(partial) == 1 and partial[0].stat().st_size > 0  # the half-written file, beside it
    loaded = train.load_checkpoint(path)  # the previous checkpoint, whole
    assert _same_weights(loaded, _model(seed=0))


# ---------------------------------------------------------------- a refused call changes nothing (issue 11, class 1)

def _tampered(tmp_path, change):
    """A real fit checkpoint (2 epochs), changed by ``change(state)``, saved as a new file."""
    x, _ = _dataset()
    good = tmp_path / "good.pt"
    if not good.exists():
        _fit(_model(), x, passes=2, checkpoint=good)
    state = torch.load(good, weights_only=True)
    change(state)
    path = tmp_path / "tampered.pt"
    torch.save(state, path)
    return path


def _set(keys, value):
    def change(state):
        target = state
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return change


REFUSED_RESUMES = {
    "class": (_set(["model_class"], "CVAE"), "model_class"),
    "unknown class": (_set(["model_class"], "Transformer"), "model_class"),
    "config value": (_set(["config", "hidden_dims"], [17]), "config field 'hidden_dims'"),
    "config field missing": (lambda s: s["config"].pop("activation"), "config field 'activation'"),
    "config field extra": (_set(["config", "decoder_variance"], "learned"), "config field 'decoder_variance'"),
    "tensor shape": (lambda s: s["state_dict"].update({"decoder.0.weight": torch.zeros(3, 3)}), "state_dict"),
    "tensor dtype": (lambda s: s["state_dict"].update({k: v.double() for k, v in s["state_dict"].items()}), "state_dict"),
    "tensor missing": (lambda s: s["state_dict"].pop(next(iter(s["state_dict"]))), "state_dict"),
    "epoch counter": (_set(["training", "epoch"], -1), "training.epoch"),
    "step counter": (_set(["training", "global_step"], "many"), "training.global_step"),
    "rng state": (_set(["training", "torch_rng"], torch.zeros(3, dtype=torch.uint8)), "training.torch_rng"),
    "data order rng": (_set(["training", "data_order_rng"], torch.zeros(5)), "training.data_order_rng"),
    "optimizer moments": (lambda s: s["optimizer"]["state"][0].update({"exp_avg": torch.zeros(2)}), "optimizer.state"),
    "optimizer params": (lambda s: s["optimizer"]["param_groups"][0].update({"params": [0]}), "optimizer"),
    "history length": (lambda s: s["history"]["train"]["total"].append(1.0), "history.train.total"),
    "history parts": (lambda s: s["history"].update({"test": {}}), "history.test"),
    "steps already done": (lambda s: None, "steps"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_RESUMES))
def test_a_refused_resume_changes_nothing(tmp_path, case):
    change, field = REFUSED_RESUMES[case]
    path = _tampered(tmp_path, change)
    x, _ = _dataset()
    model = _model(seed=5)
    before = copy.deepcopy(model.state_dict())
    torch.manual_seed(1234)
    rng = torch.get_rng_state()
    with pytest.raises(ValueError) as info:
        _fit(model, x, passes=2 if case == "steps already done" else 3, resume_from=path)
    assert field in str(info.value), str(info.value)
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before), "the weights changed"
    assert torch.equal(torch.get_rng_state(), rng), "the global RNG changed"


@pytest.mark.parametrize("config, field", [
    ({"hidden_dims": [10**9]}, "hidden_dims"),
    ({"latent_dim": 10**8}, "latent_dim"),
    ({"image_shape": [1, 4, 4], "hidden_dims": list(range(1, 40))}, "hidden_dims"),
    ({"bogus": 1}, "bogus"),
    ({"latent_dim": "two"}, "config"),
])
def test_load_checkpoint_refuses_a_config_before_building_a_model(tmp_path, config, field, monkeypatch):
    path = _tampered(tmp_path, lambda s: s["config"].update(config))
    built, original = [], models.VAE.__init__

    @functools.wraps(original)
    def spy(self, *args, **kwargs):
        built.append(torch.empty(0).device.type)  # "meta" inside the loader's shape check
        original(self, *args, **kwargs)

    monkeypatch.setattr(models.VAE, "__init__", spy)
    with pytest.raises(ValueError, match=field):
        train.load_checkpoint(path)
    assert "cpu" not in built, "a model with real weights was built from a refused configuration"


@pytest.mark.parametrize("case", ["tensor shape", "tensor dtype", "tensor missing", "config value"])
def test_load_checkpoint_checks_every_tensor_and_field(tmp_path, case):
    change, field = REFUSED_RESUMES[case]
    path = _tampered(tmp_path, change)
    with pytest.raises(ValueError, match=field.split()[0]):
        train.load_checkpoint(path, _model())
    if case != "config value":
        with pytest.raises(ValueError, match="state_dict"):
            train.load_checkpoint(path)


def test_an_unwritable_checkpoint_path_is_refused_before_the_first_epoch(tmp_path):
    x, _ = _dataset()
    (tmp_path / "a_file").write_text("x")
    for bad in (tmp_path / "a_file" / "m.pt", tmp_path):
        model = _model()
        before = copy.deepcopy(model.state_dict())
        with pytest.raises(ValueError, match="^checkpoint: expected"):
            _fit(model, x, passes=1, checkpoint=bad)
        assert all(torch.equal(model.state_dict()[k], before[k]) for k in before)
    # a folder that does not exist yet is fine: it is created on the first save
    _fit(_model(), x, passes=1, checkpoint=tmp_path / "new" / "m.pt")
    assert (tmp_path / "new" / "m.pt").is_file()


@pytest.mark.parametrize("device", ["meta", "cuda:99", "xla", "mps:0" if not torch.backends.mps.is_available() else "meta"])
def test_a_device_that_cannot_hold_the_weights_is_refused_before_anything_moves(device):
    x, _ = _dataset()
    model = _model()
    with pytest.raises(ValueError, match="^device: expected"):
        _fit(model, x, passes=1, device=device)
    assert model.device == torch.device("cpu")


@pytest.mark.parametrize("seed", [np.int64(3), torch.tensor(3)])
def test_numpy_and_tensor_seeds_are_accepted(seed):
    x, _ = _dataset()
    a, b = _model(), _model()
    _fit(a, x, passes=1, seed=seed)
    _fit(b, x, passes=1, seed=3)
    assert _same_weights(a, b)


@pytest.mark.parametrize("seed", [-1, 2.5, "0", True, torch.tensor(1.0), 2**64])
def test_bad_seeds_are_refused_by_name(seed):
    x, _ = _dataset()
    with pytest.raises(ValueError, match="^seed: expected"):
        _fit(_model(), x, passes=1, seed=seed)


def test_images_carrying_an_autograd_graph_train_without_a_second_backward():
    """Issue 11 class 3: fit trains on the images' values; a graph behind them is never backpropagated."""
    x, _ = _dataset()
    w = torch.tensor(0.5, requires_grad=True)
    with_graph = x * w * 2  # values of x, but a non-leaf tensor with a graph
    a, b = _model(), _model()
    _fit(a, with_graph, passes=3)
    _fit(b, x, passes=3)
    assert _same_weights(a, b) and w.grad is None
