"""Tests of vae_course.config.settings: the one place that reads the environment."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import vae_course
from vae_course import config

VARS = ("VAE_COURSE_MODE", "VAE_COURSE_DEVICE", "VAE_COURSE_DATA_DIR", "VAE_COURSE_OFFLINE", "VAE_COURSE_CACHE_DIR")


@pytest.fixture
def env(monkeypatch):
    """A clean environment: none of the course's variables set."""
    for name in VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults(env):
    s = config.settings()
    assert s.mode == "full" and not s.fast
    assert s.offline is False
    assert s.device == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # run from a checkout (pyproject.toml beside the package): data/ in the repository
    assert s.data_dir == Path(__file__).resolve().parent.parent / "data"
    assert s.cache_dir == Path(__file__).resolve().parent.parent / "build" / "cache"
    assert vae_course.settings is config.settings


@pytest.mark.parametrize("value, mode", [("fast", "fast"), ("full", "full"), ("", "full")])
def test_mode(env, value, mode):
    env.setenv("VAE_COURSE_MODE", value)
    s = config.settings()
    assert s.mode == mode
    assert s.fast is (mode == "fast")
    assert s.pick(1, 50) == (1 if mode == "fast" else 50)


# Settings are parsed strictly: every variable accepts its documented values only, and the error
# names the variable and the value (issue 11, class 2).
BAD_SETTINGS = [
    ("VAE_COURSE_MODE", value) for value in ["bad", "fastest", "ci", "0", " fast", "FAST", "Full", "fast\n"]
] + [
    ("VAE_COURSE_OFFLINE", value) for value in ["on", "2", "ture", "offline", " 1", "-1", "Y"]
] + [
    ("VAE_COURSE_DEVICE", value) for value in ["gpu", "cuda:abc", "nonsense", "meta", "CPU", "cpu:0x", "cuda:-1",
                                               "xla", "cpu ", "cuda:0:1", "mps:0"]
]


@pytest.mark.parametrize("name, value", BAD_SETTINGS, ids=[f"{n[11:]}={v!r}" for n, v in BAD_SETTINGS])
def test_bad_settings_name_the_variable_and_the_value(env, name, value):
    env.setenv(name, value)
    with pytest.raises(ValueError) as info:
        config.settings()
    assert str(info.value).startswith(f"{name}: expected"), info.value
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("name", ["VAE_COURSE_DATA_DIR", "VAE_COURSE_CACHE_DIR"])
def test_a_folder_that_is_a_file_is_refused(env, tmp_path, name):
    (tmp_path / "file").write_text("x")
    env.setenv(name, str(tmp_path / "file"))
    with pytest.raises(ValueError, match=f"^{name}: expected a directory, got '.*file', which is a file"):
        config.settings()


@pytest.mark.parametrize("value", ["off", "", "~/models", "relative/models"])
def test_cache_dir(env, tmp_path, value):
    """``off`` switches the model cache off; a path (``~`` expanded) moves it; empty is the default."""
    env.setenv("HOME", str(tmp_path))
    env.setenv("VAE_COURSE_CACHE_DIR", value)
    expected = {"off": None, "": config.REPO_ROOT / "build" / "cache", "~/models": tmp_path / "models",
                "relative/models": Path("relative/models")}[value]
    assert config.settings().cache_dir == expected


@pytest.mark.parametrize("value", ["OFF", "Off", "off ", "none"])
def test_only_off_switches_the_cache_off(env, value):
    """Strict: anything but exactly ``off`` is a folder name, never a silent switch."""
    env.setenv("VAE_COURSE_CACHE_DIR", value)
    assert config.settings().cache_dir == Path(value)


def test_setup_seeds_loads_and_says_so_in_one_line(env, capsys):
    import numpy as np

    env.setenv("VAE_COURSE_MODE", "fast")
    env.setenv("VAE_COURSE_OFFLINE", "1")
    env.setenv("VAE_COURSE_DEVICE", "cpu")
    cfg, mnist = vae_course.setup(seed=3)
    drawn = torch.rand(3), np.random.rand(2)
    torch.manual_seed(3), np.random.seed(3)
    assert torch.equal(drawn[0], torch.rand(3)) and (drawn[1] == np.random.rand(2)).all(), "seeded torch and NumPy"
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fast mode, device cpu; MNIST "), lines
    assert cfg == config.settings()
    (x_train, y_train), (x_test, y_test) = mnist.train, mnist.test
    assert x_train.shape[1:] == x_test.shape[1:] == (1, 28, 28) and x_train.dtype == torch.float32
    assert y_train.shape == (len(x_train),) and y_test.shape == (len(x_test),)
    assert f"{len(x_train):,} train and {len(x_test):,} test digits" in mnist.source and mnist.source in lines[0]
    assert len(mnist.checksum) == 64 and mnist.checksum == vae_course.Mnist(mnist.train, mnist.test, "").checksum
    changed = x_train.clone()
    changed[0, 0, 0, 0] += 0.5
    assert vae_course.Mnist((changed, y_train), mnist.test, "").checksum != mnist.checksum, "one pixel changes it"

    cfg, none = vae_course.setup(seed=0, mnist=False)
    assert none is None and capsys.readouterr().out == "fast mode, device cpu\n"
    for bad in (-1, 1.5, "0"):
        with pytest.raises((TypeError, ValueError), match="^seed"):
            vae_course.setup(seed=bad)


def test_cuda_index_beyond_the_visible_gpus_is_refused(env):
    env.setattr(torch.cuda, "is_available", lambda: True)
    env.setattr(torch.cuda, "device_count", lambda: 2)
    env.setenv("VAE_COURSE_DEVICE", "cuda:1")
    assert config.settings().device == torch.device("cuda:1")
    env.setenv("VAE_COURSE_DEVICE", "cuda:2")
    with pytest.raises(ValueError, match=r"^VAE_COURSE_DEVICE: expected a GPU index below 2.*'cuda:2'"):
        config.settings()


def test_settings_are_read_afresh_each_call(env):
    env.setenv("VAE_COURSE_MODE", "fast")
    assert config.settings().fast
    env.setenv("VAE_COURSE_MODE", "full")
    assert not config.settings().fast


def test_data_dir(env, tmp_path):
    env.setenv("VAE_COURSE_DATA_DIR", str(tmp_path / "cache"))
    assert config.settings().data_dir == tmp_path / "cache"
    env.setenv("HOME", str(tmp_path))
    env.setenv("VAE_COURSE_DATA_DIR", "~/mnist")
    assert config.settings().data_dir == tmp_path / "mnist"


def test_default_data_dir_outside_a_checkout(env, tmp_path):
    env.setattr(config, "REPO_ROOT", tmp_path)  # no pyproject.toml there: an installed package
    env.setenv("HOME", str(tmp_path / "home"))
    assert config.settings().data_dir == tmp_path / "home" / ".cache" / "vae_course"


def test_device_cpu(env):
    env.setenv("VAE_COURSE_DEVICE", "cpu")
    assert config.settings().device == torch.device("cpu")


@pytest.mark.parametrize("value", ["cuda", "cuda:1"])
def test_device_cuda_without_cuda_names_the_variable(env, value):
    env.setattr(torch.cuda, "is_available", lambda: False)
    env.setenv("VAE_COURSE_DEVICE", value)
    with pytest.raises(ValueError) as info:
        config.settings()
    assert "VAE_COURSE_DEVICE" in str(info.value)


def test_default_device_follows_cuda_availability(env):
    env.setattr(torch.cuda, "is_available", lambda: False)
    assert config.settings().device == torch.device("cpu")
    env.setattr(torch.cuda, "is_available", lambda: True)
    assert config.settings().device == torch.device("cuda")


@pytest.mark.parametrize("value", ["gpu", "cuda:abc", "nonsense"])
def test_unknown_device_names_the_variable(env, value):
    env.setenv("VAE_COURSE_DEVICE", value)
    with pytest.raises(ValueError) as info:
        config.settings()
    assert "VAE_COURSE_DEVICE" in str(info.value)


@pytest.mark.parametrize("value, offline", [("1", True), ("true", True), ("yes", True), ("0", False),
                                            ("", False), ("no", False), ("false", False)])
def test_offline(env, value, offline):
    env.setenv("VAE_COURSE_OFFLINE", value)
    assert config.settings().offline is offline


def test_settings_are_frozen(env):
    s = config.settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.mode = "fast"
