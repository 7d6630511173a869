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
        folder = io.make_staging_dir(tmp_path, ".stage.")
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


def test_safetensors_bytes_do_not_depend_on_metadata_order(tmp_path):
    """safetensors writes metadata in a HashMap's order, new for every map: models saved by two
    processes (a SLURM job and a local run) differed in bytes only there."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(4, dtype=torch.int64)}
    metadata = {f"key{i}": f'{{"value": "é{i}"}}' for i in range(8)}
    paths = [tmp_path / f"m{i}.safetensors" for i in range(4)]
    for path in paths:
        io.save_safetensors(tensors, path, metadata=dict(reversed(metadata.items())))
    assert len({p.read_bytes() for p in paths}) == 1
    with safe_open(str(paths[0]), framework="pt") as f:
        assert f.metadata() == metadata
    loaded = load_file(str(paths[0]))
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
