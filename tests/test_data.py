"""The embedded digits loader (detdistill.data.sources.digits): scikit-learn's bundled file read without importing
`sklearn.datasets`, equal to what `load_digits` gives, and `load_digits` itself where the file is not found."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
from sklearn.datasets import load_digits

from detdistill.data.sources import digits


def _expected():
    bunch = load_digits()
    return bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int64)


def test_digits_read_from_the_bundled_file_equal_load_digits():
    images, labels = digits.digits_arrays()
    expected_images, expected_labels = _expected()
    assert images.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)
    # the point of reading the file: a job that loads digits images never imports sklearn.datasets
    code = ("import sys; from detdistill.data import load_digits_images; load_digits_images([0, 5], 16); "
            "print('sklearn.datasets' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_digits_fall_back_to_load_digits_where_the_file_is_not_found(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    images, labels = digits.digits_arrays()
    expected_images, expected_labels = _expected()
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)
