"""The data layer: converters reproduce the distributed arrays, the search path, the npz cache."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import shutil
import threading

import numpy as np
import pytest

from bench.core.errors import ChecksumMismatch, DatasetNotFound
from bench.engine import data


def test_registered_files_load_with_expected_shapes(data_dir):
    for name in ("binarized_mnist", "mnist", "caltech101_silhouettes_28", "uci_dna", "dataset_free"):
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


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on localhost (no network needed): yields (folder, base URL)."""
    folder = tmp_path / "upstream"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    thread.join()


def _frey_from(monkeypatch, tmp_path, url: str) -> None:
    """frey_faces with its original at `url`, nothing on the search path, data/ in tmp_path/cache."""
    spec = data.get_spec("frey_faces")
    monkeypatch.setitem(data.DATASETS, "frey_faces",
                        dataclasses.replace(spec, originals=(dataclasses.replace(spec.originals[0], url=url),)))
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("CLAIMBENCH_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(data, "PROJECT_DATA", tmp_path / "cache")


def test_download_is_verified_and_converted_into_data(tmp_path, monkeypatch, data_dir, served):
    """A missing original is downloaded (pooch) into data/orig, checked against its registered
    sha256, converted and cached; a second load reads the cache without downloading."""
    folder, base = served
    shutil.copy(data_dir / "orig" / "frey_rawface.mat", folder / "frey_rawface.mat")
    _frey_from(monkeypatch, tmp_path, base + "frey_rawface.mat")
    ds = data.load("frey_faces")
    with np.load(data_dir / "frey_faces.npz") as z:
        np.testing.assert_array_equal(ds.x["all"], z["x"])
    assert (tmp_path / "cache" / "orig" / "frey_rawface.mat").is_file()
    assert ds.path == tmp_path / "cache" / "frey_faces.npz"
    (folder / "frey_rawface.mat").unlink()
    assert data.load("frey_faces").path == ds.path


def test_corrupt_download_is_refused_and_deleted(tmp_path, monkeypatch, data_dir, served):
    folder, base = served
    blob = bytearray((data_dir / "orig" / "frey_rawface.mat").read_bytes())
    blob[1000] ^= 0xFF
    (folder / "frey_rawface.mat").write_bytes(bytes(blob))
    _frey_from(monkeypatch, tmp_path, base + "frey_rawface.mat")
    with pytest.raises(ChecksumMismatch, match=r"frey_rawface.mat from http://127.0.0.1:\d+/frey_rawface.mat: .*hash"):
        data.load("frey_faces")
    assert not list((tmp_path / "cache").rglob("frey_rawface*"))
    assert not (tmp_path / "cache" / "frey_faces.npz").exists()


def test_failed_download_names_places_urls_and_variable(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data.pooch, "retrieve", offline)
    _frey_from(monkeypatch, tmp_path, "https://cs.nyu.edu/~roweis/data/frey_rawface.mat")
    with pytest.raises(DatasetNotFound) as err:
        data.load("frey_faces")
    for needle in ("frey_faces", str(tmp_path / "empty"), str(tmp_path / "cache"), "frey_rawface.mat",
                   "https://cs.nyu.edu/~roweis/data/frey_rawface.mat", "CLAIMBENCH_DATA", "network is unreachable"):
        assert needle in str(err.value)


def test_http_error_is_dataset_not_found(tmp_path, monkeypatch, served):
    _, base = served  # the folder is empty: the server answers 404
    _frey_from(monkeypatch, tmp_path, base + "frey_rawface.mat")
    with pytest.raises(DatasetNotFound, match="404"):
        data.load("frey_faces")


def test_list_prints_every_dataset_url_and_checksum(capsys):
    """README, Data: `python -m bench list` shows each dataset's canonical URLs and checksums (users
    without the shared data folder fetch them elsewhere), and the distributed npz's sha256."""
    from bench import cli

    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    mnist = data.get_spec("binarized_mnist")
    for orig in mnist.originals:
        assert f"from {orig.url} (sha256 {orig.sha256})" in out
    assert f"binarized_mnist.npz sha256 {mnist.npz_sha256}" in out
    assert f"from {data.get_spec('omniglot').originals[0].url} (md5 " in out
