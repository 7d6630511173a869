"""Artifacts are readable as the user's umask says (mkstemp/mkdtemp alone would make them private)."""

import os
import stat

import pytest

from detdistill import io


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)])
def test_artifacts_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        io.write_json({"a": 1}, tmp_path / "x.json")
        folder = io.make_staging_dir(tmp_path / "stage")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == file_mode
    assert stat.S_IMODE(folder.stat().st_mode) == dir_mode
    assert io.current_umask() == old  # reading the umask leaves it as it was


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), io.atomic_path(tmp_path / "y.csv") as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
