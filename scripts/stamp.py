"""Set-up stamps for the shell scripts, in Python so that the scripts need nothing but bash and
Python (no sha256sum, which a stock macOS lacks).

A stamp is a small file holding the SHA-256 of the files an install step depends on; the step
runs again only when they change.

    python scripts/stamp.py check STAMP FILE...   # exit 0 when STAMP holds the files' hash, 1 otherwise
    python scripts/stamp.py write STAMP FILE...   # write it (atomically: temp file + rename)
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path


def digest(files: list[str]) -> str:
    h = hashlib.sha256()
    for name in files:
        h.update(Path(name).read_bytes())
    return h.hexdigest()


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in ("check", "write"):
        print("usage: stamp.py check|write STAMP FILE...", file=sys.stderr)
        return 2
    command, stamp, files = argv[0], Path(argv[1]), argv[2:]
    want = digest(files)
    if command == "check":
        try:
            return 0 if stamp.read_text().strip() == want else 1
        except OSError:
            return 1
    tmp = stamp.with_name(stamp.name + f".{os.getpid()}.tmp")
    tmp.write_text(want + "\n")
    os.replace(tmp, stamp)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
