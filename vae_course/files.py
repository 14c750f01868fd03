"""Writing files atomically: a reader sees the old file or the whole new one, never a part.

Used for everything the package writes (downloaded MNIST files, the offline subset's cache,
checkpoints and the trained-model cache). ``scripts/stamp.py`` keeps its own few lines: it runs
before the virtual environment, and so this package, exists.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "fsync_dir"]


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
