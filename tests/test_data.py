"""The data layer: converters reproduce the distributed arrays, the search path, the npz cache."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bench.core.errors import ChecksumMismatch
from bench.engine import data


def test_registered_files_load_with_expected_shapes(data_dir):
    for name in ("binarized_mnist", "mnist", "caltech101_silhouettes_28", "uci_dna"):
        ds = data.load(name, download=False)
        assert {s: x.shape for s, x in ds.x.items()} == data.DATASETS[name].shapes


@pytest.mark.parametrize("name, original, converter", [
    ("caltech101_silhouettes_28", "caltech101_silhouettes_28_split1.mat", data._convert_caltech),
    ("frey_faces", "frey_rawface.mat", data._convert_frey),
])
def test_converters_reproduce_distributed_arrays(data_dir, name, original, converter):
    arrays = converter({original: data_dir / "orig" / original})
    with np.load(data_dir / f"{name}.npz") as z:
        for key, value in arrays.items():
            np.testing.assert_array_equal(value, z[key])


def test_idx_reader_reproduces_mnist_test_split(data_dir):
    images = data._idx(data_dir / "orig" / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784)
    labels = data._idx(data_dir / "orig" / "t10k-labels-idx1-ubyte.gz", 8)
    with np.load(data_dir / "mnist.npz") as z:
        np.testing.assert_array_equal(images, z["x_test"])
        np.testing.assert_array_equal(labels, z["y_test"])


def test_build_from_verified_original_then_cache(tmp_path, monkeypatch, data_dir):
    """With only the upstream .mat on the search path, load() verifies it, converts it into the
    data/ cache with a recorded hash, and later refuses a tampered cache."""
    src = tmp_path / "originals"
    src.mkdir()
    shutil.copy(data_dir / "orig" / "frey_rawface.mat", src / "frey_rawface.mat")
    monkeypatch.setenv("CLAIMBENCH_DATA", str(src))
    monkeypatch.setattr(data, "PROJECT_DATA", tmp_path / "cache")
    ds = data.load("frey_faces", download=False)
    with np.load(data_dir / "frey_faces.npz") as z:
        np.testing.assert_array_equal(ds.x["all"], z["x"])
    cached = tmp_path / "cache" / "frey_faces.npz"
    assert ds.path == cached and (tmp_path / "cache" / "frey_faces.npz.sha256").exists()
    cached.write_bytes(cached.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ChecksumMismatch):
        data.load("frey_faces", download=False)


def test_search_path_env_entries_first(monkeypatch, tmp_path):
    monkeypatch.setenv("CLAIMBENCH_DATA", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert data.search_path() == [tmp_path / "a", tmp_path / "b", data.PROJECT_DATA]


def test_omniglot_is_registered_with_url_and_checksum():
    spec = data.get_spec("omniglot")
    assert spec.originals[0].url.endswith("chardata.mat") and spec.originals[0].md5
