"""Tests of vae_course.files.atomic_write: the final file appears whole or not at all; a failure
mid-write leaves it absent (or the old file intact) and no temporary file behind."""
from __future__ import annotations

import os

import pytest

from vae_course import files


def test_a_completed_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with files.atomic_write(path) as out:
        out.write(b"new contents")
        assert path.read_bytes() == b"old"  # not visible until the block ends
    assert path.read_bytes() == b"new contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("existing", [None, b"the old file"])
@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt, OSError])
def test_a_failure_mid_write_leaves_the_final_path_absent_or_intact(tmp_path, existing, error):
    path = tmp_path / "out.bin"
    if existing is not None:
        path.write_bytes(existing)
    with pytest.raises(error):
        with files.atomic_write(path) as out:
            out.write(b"half of it")
            assert len([p for p in tmp_path.iterdir() if p.name.endswith(".part")]) == 1  # written beside it
            raise error("disk full")
    assert (path.read_bytes() if path.exists() else None) == existing
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if existing is None else ["out.bin"])


def test_the_temporary_name_is_the_one_the_data_module_cleans_up(tmp_path):
    from vae_course import data

    pattern = data._temporary_name({"out.bin"})
    with files.atomic_write(tmp_path / "out.bin") as out:
        (tmp,) = [p for p in tmp_path.iterdir()]
        assert pattern.fullmatch(tmp.name), tmp.name
        out.write(b"x")


def test_a_missing_folder_is_an_oserror_and_writes_nothing(tmp_path):
    with pytest.raises(OSError):
        with files.atomic_write(tmp_path / "no such folder" / "out.bin") as out:
            out.write(b"x")
    assert os.listdir(tmp_path) == []
