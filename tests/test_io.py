"""Artifacts are readable as the user's umask says (mkstemp/mkdtemp alone would make them private)."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from detdistill import io

REPO = Path(__file__).resolve().parents[1]


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


def test_killed_writers_leftovers_are_removed_by_the_next_owner(tmp_path):
    # what SIGKILL leaves: a temp file beside an output, a staging folder and an old copy beside a folder output
    leftovers = [tmp_path / ".x.parquet.tmp-abc.parquet", tmp_path / ".part1.staging-abc", tmp_path / ".part1.old-abc"]
    leftovers[0].write_text("partial")
    for folder in leftovers[1:]:
        (folder / "d").mkdir(parents=True)
    keep = [tmp_path / ".part10.staging-abc", tmp_path / "part1"]  # another output's, and the output itself
    for folder in keep:
        folder.mkdir()
    io.write_text("done", tmp_path / "x.parquet")
    staging = io.make_staging_dir(tmp_path / "part1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x.parquet", staging.name, *(p.name for p in keep)])
    # a shared store's writer (owner=False) leaves other writers' temporary files alone
    (tmp_path / ".y.png.tmp-other.png").write_text("in flight")
    io.write_png(torch.zeros(3, 2, 2), tmp_path / "y.png", owner=False)
    assert (tmp_path / ".y.png.tmp-other.png").exists()


SAVE_MODEL = """
import sys, torch
from detdistill.models import build_model
from detdistill.train import save_model
torch.manual_seed(0)
save_model(build_model("convnet", 3, 16, 8), sys.argv[1], {"dataset": "toy", "role": "detector", "ipc": 2})
"""


def test_saved_model_bytes_equal_across_processes(tmp_path):
    """A model saved by two processes gives the same bytes (safetensors' metadata order is per
    process; save_safetensors sorts it, and save_model packs its fields into one key)."""
    paths = [tmp_path / f"{i}.safetensors" for i in range(2)]
    for path in paths:
        subprocess.run([sys.executable, "-c", SAVE_MODEL, str(path)], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert len({p.read_bytes() for p in paths}) == 1
    with safe_open(str(paths[0]), framework="pt") as f:
        assert list(f.metadata()) == ["detdistill"]
