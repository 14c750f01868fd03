"""Writing files safely: atomically (a reader sees the old file or the whole new one, never a
part), and under an inter-process lock (two processes do not do the same work at once).

Used for everything the package writes (downloaded MNIST files, the offline subset's cache,
checkpoints and the trained-model cache). ``scripts/stamp.py`` keeps its own few lines: it runs
before the virtual environment, and so this package, exists.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

try:  # inter-process file locks exist on Linux and macOS, not on Windows
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["atomic_write", "fsync_dir", "lock"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Write ``path`` all or nothing: ``with atomic_write(path) as out: out.write(...)``.

    The block writes to a new temporary file beside ``path``, named ``.<name>.<8 random
    characters>.part`` (``tempfile.mkstemp``: created with O_EXCL, so never a file reached through
    a symbolic link). When the block ends without an error the file is flushed and fsynced (its
    bytes are on disk before the name points at them), made readable (0o644) and renamed over
    ``path`` with ``os.replace``, which is atomic within one folder (POSIX ``rename``); then the
    folder is fsynced, so the rename survives a crash. If the block raises (a full disk, a failed
    check, Ctrl-C), the temporary file is removed, ``path`` is left as it was (absent, or the old
    file intact), and the exception propagates. A process killed mid-write leaves only the
    ``.part`` file.

    Args:
        path: the final file; its folder must exist.

    Yields:
        The temporary file, open for binary writing.

    Raises:
        OSError: the temporary file cannot be created or renamed (a read-only folder, for example),
            and whatever the block raises.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the data is not
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def lock(path: str | os.PathLike, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive inter-process lock (``fcntl.flock``) on the file ``path``, created if
    missing: ``with lock(folder / ".name.lock") as held: ...``. Yields True once held; the lock
    ends with the block (closing the file releases it, also when the process dies).

    Yields False, without locking, where no lock can be had: Windows, a missing or read-only
    folder, a symbolic link or anything but a regular file at ``path`` (never followed), or, with
    ``wait=False``, another process holding it. Callers stay correct without it (atomic renames
    keep every file whole); the lock only spares them doing the same work twice.
    """
    fd = None
    if fcntl is not None:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        with contextlib.suppress(OSError):
            fd = os.open(path, flags, 0o644)
    if fd is not None and not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        fd = None
    if fd is None:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            held = False
        yield held
    finally:
        os.close(fd)
