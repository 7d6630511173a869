"""The decoded-pixel store (detdistill.pixel_cache): a hit gives decoding's bytes in the asked
order, a changed file or size is a miss, a broken entry is replaced, small requests bypass it."""

import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

from detdistill import data, pixel_cache


def write_jpegs(folder, count, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        h, w = rng.integers(20, 40, size=2)
        path = folder / f"{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=85)
        paths.append(str(path))
    return paths


@pytest.fixture
def store(tmp_path):
    pixel_cache.configure(tmp_path / "store", min_images=4)
    yield tmp_path / "store"
    pixel_cache.configure(None)


def counting_decoder(image_size):
    calls = []

    def decode(names):
        calls.append(list(names))
        return data.decode_image_files(names, image_size)

    return decode, calls


def test_hit_returns_decodings_bytes_in_the_asked_order(tmp_path, store, caplog):
    paths = write_jpegs(tmp_path / "img", 6)
    asked = [paths[3], paths[0], paths[5], paths[3], paths[1], paths[2], paths[4]]  # unsorted, a duplicate
    direct = data.decode_image_files(asked, 12)
    decode, calls = counting_decoder(12)
    first = pixel_cache.load(asked, 12, decode)
    assert len(calls) == 1 and calls[0] == sorted(set(asked))  # one entry for the sorted unique files
    with caplog.at_level(logging.INFO, logger="detdistill"):
        second = pixel_cache.load(asked, 12, decode)
    assert len(calls) == 1, "the second load decoded again"
    assert "read 6 images at 12 px" in caplog.text
    assert torch.equal(first, direct) and torch.equal(second, direct)
    assert len(list(store.glob("12px-*.safetensors"))) == 1
    # the same files at another size are another entry, decoded once
    assert torch.equal(pixel_cache.load(paths, 10, counting_decoder(10)[0]), data.decode_image_files(paths, 10))
    assert len(list(store.glob("*.safetensors"))) == 2


def test_a_file_replaced_in_place_is_a_miss(tmp_path, store):
    paths = write_jpegs(tmp_path / "img", 5)
    before = data.load_image_files(paths, 8)
    Image.fromarray(np.full((30, 30, 3), 255, np.uint8)).save(paths[2], quality=85)
    stat = os.stat(paths[2])
    os.utime(paths[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later modification time
    after = data.load_image_files(paths, 8)
    assert not torch.equal(after[2], before[2]) and torch.equal(after[[0, 1, 3, 4]], before[[0, 1, 3, 4]])
    assert torch.equal(after, data.decode_image_files(paths, 8))
    assert len(list(store.glob("8px-*.safetensors"))) == 2


def test_an_unreadable_entry_is_decoded_again_and_replaced(tmp_path, store, caplog):
    paths = write_jpegs(tmp_path / "img", 5)
    expected = data.load_image_files(paths, 8)
    (entry,) = store.glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # a disk that filled up
    decode, calls = counting_decoder(8)
    with caplog.at_level(logging.WARNING, logger="detdistill"):
        assert torch.equal(pixel_cache.load(paths, 8, decode), expected)
    assert len(calls) == 1 and "unreadable" in caplog.text
    assert torch.equal(pixel_cache.load(paths, 8, decode), expected) and len(calls) == 1


def test_small_requests_and_no_folder_bypass_the_store(tmp_path, store):
    paths = write_jpegs(tmp_path / "img", 5)
    data.load_image_files(paths[:3], 8)  # below min_images (4)
    assert not store.exists() or not list(store.glob("*"))
    pixel_cache.configure(None)
    data.load_image_files(paths, 8)
    assert not store.exists() or not list(store.glob("*"))


def test_a_missing_file_is_named_as_without_the_store(tmp_path, store):
    paths = write_jpegs(tmp_path / "img", 5)
    os.remove(paths[1])
    with pytest.raises(data.DataError, match=r"001\.jpg"):
        data.load_image_files(paths, 8)


def test_threaded_decoding_gives_the_same_bytes(tmp_path):
    paths = write_jpegs(tmp_path / "img", 130)  # two workers' worth (64 files each)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = data.decode_image_files(paths, 16)
        torch.set_num_threads(2)
        two = data.decode_image_files(paths, 16)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_streamed_loads_read_and_store_entries_chunk_by_chunk(tmp_path, store):
    from safetensors.torch import load_file

    paths = write_jpegs(tmp_path / "img", 7)
    decode, calls = counting_decoder(8)
    # out of the entry's order: decoded chunk by chunk, nothing stored
    order = [paths[i] for i in (4, 0, 6, 2, 1, 5, 3)]
    streamed = list(pixel_cache.chunks(order, 8, 3, decode))
    assert [len(c) for c in calls] == [3, 3, 1] and not list(store.glob("*"))
    assert torch.equal(torch.cat(streamed), data.decode_image_files(order, 8))
    # in the entry's order (sorted, as a manifest's split): stored as the chunks come
    calls.clear()
    streamed = torch.cat(list(pixel_cache.chunks(paths, 8, 3, decode)))
    assert [len(c) for c in calls] == [3, 3, 1]
    (entry,) = store.glob("*.safetensors")
    assert torch.equal(load_file(entry)["pixels"], streamed)  # a well-formed safetensors file
    assert torch.equal(streamed, data.decode_image_files(paths, 8))
    # a whole load and a streamed load in another order now read it
    calls.clear()
    assert torch.equal(pixel_cache.load(order, 8, decode), data.decode_image_files(order, 8))
    again = list(pixel_cache.chunks(order, 8, 3, decode))
    assert not calls, "a load decoded although the entry exists"
    assert torch.equal(torch.cat(again), data.decode_image_files(order, 8))


def test_a_streamed_load_stopped_early_leaves_no_entry(tmp_path, store):
    paths = write_jpegs(tmp_path / "img", 7)
    stream = pixel_cache.chunks(paths, 8, 3, counting_decoder(8)[0])
    next(stream)
    stream.close()  # the job stopped after its first chunk
    assert not list(store.glob("*.safetensors")) and not list(store.glob(".*tmp-*"))


def test_a_store_that_cannot_be_written_costs_only_time(tmp_path, store, caplog, monkeypatch):
    paths = write_jpegs(tmp_path / "img", 5)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pixel_cache.tempfile, "mkstemp", full_disk)
    with caplog.at_level(logging.WARNING, logger="detdistill"):
        assert torch.equal(data.load_image_files(paths, 8), data.decode_image_files(paths, 8))
        assert torch.equal(torch.cat(list(data.image_chunks(_frame(paths), {"kind": "imagefolder"}, 8, 2))),
                           data.decode_image_files(paths, 8))
    assert caplog.text.count("cannot store") == 2 and not list(store.glob("*.safetensors"))


def _frame(paths):
    import pandas as pd

    return pd.DataFrame({"source": paths})
