"""Tests of uae_tf.datasets: the shipped datasets for real, tensorflow-datasets mocked.

No test touches the network: ``socket.create_connection`` (the loader's reachability
check) fails in every test unless the test replaces it.
"""

import hashlib
import socket
from importlib import resources

import numpy as np
import pytest
import tensorflow_datasets as tfds

from uae_tf import datasets

EMBEDDED_SIZES = {
    ("mnist5k", "train"): 4000,
    ("mnist5k", "test"): 1000,
    ("digits", "train"): 1437,
    ("digits", "test"): 360,
}
EMBEDDED_SHAPES = {"mnist5k": (28, 28, 1), "digits": (8, 8, 1)}
TFDS_SHAPES = {
    "mnist": (28, 28, 1),
    "fashion_mnist": (28, 28, 1),
    "svhn_cropped": (32, 32, 3),
    "cifar10": (32, 32, 3),
}
# The arrays' digest recorded in uae_tf/data/README.md.
MNIST5K_CONTENT_SHA256 = "0a1fa09b8daeea106fcff6057bbda0782d8bbe31172654045519853afa7efe36"


class _Connection:
    """Stands for an open socket: the reachability check only opens and closes it."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Makes every connection attempt of the loader fail at once."""

    def refuse(address, *args, **kwargs):
        raise OSError(f"network disabled in tests: {address}")

    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def reachable(monkeypatch):
    """Makes the loader's reachability check succeed without a network."""
    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: _Connection())


@pytest.fixture
def prepared_cache(tmp_path):
    """Returns a tfds data_dir holding the metadata of a prepared dataset, no records.

    With it, ``builder.is_prepared()`` is true, so the loader reads without trying to
    download, and ``tfds.testing.mock_data`` supplies the examples.
    """

    def make(name):
        builder = tfds.builder(name, data_dir=str(tmp_path))
        variant_dir = tmp_path.joinpath(name, str(builder.version))
        variant_dir.mkdir(parents=True)
        builder.info.write_to_directory(variant_dir)
        return str(tmp_path)

    return make


def _row_digests(x):
    return {hashlib.sha256(row.tobytes()).hexdigest() for row in x}


@pytest.mark.parametrize("name, split", sorted(EMBEDDED_SIZES))
def test_embedded_shape_dtype_range(name, split):
    x, y = datasets.load(name, split)
    assert x.shape == (EMBEDDED_SIZES[name, split],) + EMBEDDED_SHAPES[name]
    assert y.shape == (x.shape[0],)
    assert x.dtype == np.float32
    assert y.dtype == np.int64
    assert x.min() == 0.0
    assert x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))


@pytest.mark.parametrize("split, per_class", [("train", 400), ("test", 100)])
def test_mnist5k_split_is_stratified(split, per_class):
    _, y = datasets.load("mnist5k", split)
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, per_class))


def test_mnist5k_first_rows_mix_classes():
    for split in datasets.SPLITS:
        _, y = datasets.load("mnist5k", split)
        assert len(np.unique(y[:50])) >= 8


def test_mnist5k_npz_is_the_documented_one():
    with (resources.files("uae_tf") / "data" / "mnist5k.npz").open("rb") as f:
        with np.load(f) as npz:
            arrays = {key: npz[key] for key in npz.files}
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    assert digest.hexdigest() == MNIST5K_CONTENT_SHA256
    assert arrays["images"].dtype == np.uint8
    assert not set(arrays["train_index"]) & set(arrays["test_index"])
    assert len(set(arrays["train_index"]) | set(arrays["test_index"])) == 5000


@pytest.mark.parametrize("name", sorted(EMBEDDED_SHAPES))
def test_embedded_train_and_test_share_no_image(name):
    x_train, _ = datasets.load(name, "train")
    x_test, _ = datasets.load(name, "test")
    train_rows = _row_digests(x_train)
    test_rows = _row_digests(x_test)
    assert not train_rows & test_rows
    if name == "mnist5k":  # Every digit of the sample is a distinct image.
        assert len(train_rows) == len(x_train) and len(test_rows) == len(x_test)


@pytest.mark.parametrize("name", sorted(EMBEDDED_SHAPES))
def test_embedded_is_deterministic(name):
    datasets._load_embedded.cache_clear()
    x1, y1 = datasets.load(name, "train")
    datasets._load_embedded.cache_clear()
    x2, y2 = datasets.load(name, "train")
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize("name", sorted(EMBEDDED_SHAPES))
def test_embedded_returns_copies(name):
    x, y = datasets.load(name, "test")
    expected_x, expected_y = x.copy(), y.copy()
    x[:] = -1.0
    y[:] = -1
    x_again, y_again = datasets.load(name, "test")
    np.testing.assert_array_equal(x_again, expected_x)
    np.testing.assert_array_equal(y_again, expected_y)
    assert x_again.flags.writeable and y_again.flags.writeable


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="name='mnist6k'") as info:
        datasets.load("mnist6k")
    for name in datasets.DATASETS:
        assert name in str(info.value)


@pytest.mark.parametrize("name", ["mnist5k", "mnist"])
def test_bad_split(name):
    with pytest.raises(ValueError, match="split must be 'train' or 'test'. Received: split='val'"):
        datasets.load(name, split="val")


def test_datasets_names():
    table6 = {"isolet", "coil20", "mice_protein", "har"}  # tests/test_tabular_datasets.py
    assert set(datasets.DATASETS) == set(EMBEDDED_SHAPES) | set(TFDS_SHAPES) | table6
    assert issubclass(datasets.DatasetUnavailableError, RuntimeError)


@pytest.mark.parametrize("name", sorted(TFDS_SHAPES))
@pytest.mark.parametrize("split", ["train", "test"])
def test_tfds_reads_prepared_cache(name, split, prepared_cache):
    data_dir = prepared_cache(name)
    with tfds.testing.mock_data(num_examples=6, data_dir=data_dir):
        x, y = datasets.load(name, split, data_dir=data_dir, download=False)
    assert x.shape == (6,) + TFDS_SHAPES[name]
    assert x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert x.max() > 0.5  # Scaled from 0..255, not 0..255 clipped or divided twice.
    assert y.shape == (6,) and y.dtype == np.int64
    assert set(y) <= set(range(10))


def test_tfds_downloads_when_missing(reachable):
    # mock_data turns download_and_prepare into a no-op and supplies the examples.
    with tfds.testing.mock_data(num_examples=3):
        x, y = datasets.load("mnist", "test")
    assert x.shape == (3, 28, 28, 1) and y.shape == (3,)


def test_tfds_missing_without_download_says_how_to_fetch(tmp_path):
    with pytest.raises(datasets.DatasetUnavailableError) as info:
        datasets.load("fashion_mnist", "train", data_dir=str(tmp_path), download=False)
    message = str(info.value)
    assert "'fashion_mnist'" in message
    assert str(tmp_path) in message
    assert f"tfds build fashion_mnist --data_dir {tmp_path}" in message
    assert "download=False" in message
    assert not any(tmp_path.iterdir())


def test_tfds_offline_fails_fast_without_downloading(tmp_path, monkeypatch):
    def download_and_prepare(self, *args, **kwargs):
        pytest.fail("download_and_prepare ran although the server is unreachable")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", download_and_prepare)
    with pytest.raises(datasets.DatasetUnavailableError) as info:
        datasets.load("cifar10", "test", data_dir=str(tmp_path))
    message = str(info.value)
    assert "'cifar10'" in message and str(tmp_path) in message and "tfds build" in message
    assert "www.cs.toronto.edu:443" in message
    assert isinstance(info.value.__cause__, OSError)


def test_tfds_download_failure_is_chained(tmp_path, monkeypatch, reachable):
    failure = ConnectionError("connection reset")

    def download_and_prepare(self, *args, **kwargs):
        raise failure

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", download_and_prepare)
    with pytest.raises(datasets.DatasetUnavailableError, match="connection reset") as info:
        datasets.load("svhn_cropped", "train", data_dir=str(tmp_path))
    assert info.value.__cause__ is failure
    assert "tfds build svhn_cropped" in str(info.value)


def test_reachability_check_uses_configured_proxy(monkeypatch):
    addresses = []

    def record(address, *args, **kwargs):
        addresses.append(address)
        return _Connection()

    monkeypatch.setattr(socket, "create_connection", record)
    for variable in ("HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    datasets._check_reachable("https://storage.googleapis.com/cvdf-datasets/mnist/")
    monkeypatch.delenv("https_proxy")
    datasets._check_reachable("https://storage.googleapis.com/cvdf-datasets/mnist/")
    assert addresses == [("proxy.internal", 3128), ("storage.googleapis.com", 443)]
