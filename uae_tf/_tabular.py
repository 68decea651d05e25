"""The feature-selection datasets of Table 6: where they come from, how they are read.

Private to :mod:`uae_tf.datasets`, which loads them through ``datasets.load``. Each
dataset is a :class:`Source`: the files ``keras.utils.get_file`` downloads once (with
what pins their content) and a ``parse`` function from those files to the full,
scaled and split ``(x_train, y_train, x_test, y_test)``.

Pinning. The Mice Protein and Human Activity files are fetched from Hsu et al.'s
repository (IBM/UAE) at a fixed commit, the copies their experiments read. Their
content is pinned: by sha256 where the file was available to hash, by the git blob id
the repository's tree records for it otherwise (the same identity git itself checks).
ISOLET (UCI) and COIL-20 (Columbia CAVE) could not be hashed when this loader was
written (no network); their content is checked structurally instead (row and column
counts, classes, value ranges), and a file that fails the checks is refused.

Embedding. The Mice Protein file (1 MB, CC BY 4.0) also ships in the package,
gzip-compressed (``uae_tf/data/Data_Cortex_Nuclear.csv.gz``; provenance and licence in
``uae_tf/data/README.md``), so that dataset loads offline; its content is checked
against the same pin.

Splits and scaling follow the published loaders (Balın et al.'s
``generate_comparison_figures.py``, copied into IBM/UAE's ``setup_concrete.py``), with
one fix: the published loaders of COIL-20 and Mice Protein shuffle with the global
NumPy state, unseeded; here the permutation is ``numpy.random.default_rng(0)``'s.

Options. Where the published loader made a choice that matters, the choice is an
option of the dataset (``Source.options``, the first value the default), passed as
``datasets.load(name, split, **options)``:

* ``mice_protein``, ``fill``: ``"published"`` (default) fills a missing value as the
  published loader does, with the mean of its class's column computed over the
  column as it stands, *including* the -100000 placeholders of the entries not yet
  filled (and the values already filled), row by row; after min-max scaling, 49 of
  the 77 columns are then near-binary "was a value of this class missing"
  indicators. It is the data of the paper's numbers. ``"observed_mean"`` fills with
  the class mean of the observed values only.
* ``coil20``, ``resample``: the filter that resizes the 128x128 images to 20x20,
  ``"bicubic"`` (default; Pillow's default since 7.0, January 2020) or
  ``"nearest"`` (Pillow's default before). The published loaders call
  ``Image.resize`` with Pillow's default, so Balın et al.'s 2019 numbers likely used
  ``nearest``; which Pillow Hsu et al. ran is unknown: unverified.
"""

import csv
import dataclasses
import gzip
import hashlib
import io
import zipfile
from typing import Callable

import numpy as np

_UAE_COMMIT = "e493de6142ec519fbabfed2e89f718fdd1415a4b"
_UAE_DATA = f"https://raw.githubusercontent.com/IBM/UAE/{_UAE_COMMIT}/Unsupversied/data"
_UCI_ISOLET = "https://archive.ics.uci.edu/ml/machine-learning-databases/isolet"
_COIL20 = "https://www.cs.columbia.edu/CAVE/databases/SLAM_coil-20_coil-100/coil-20"
SPLIT_SEED = 0
COIL_SIZE = 20


@dataclasses.dataclass(frozen=True)
class File:
    """One downloaded file.

    Attributes:
        name: Its name in the cache.
        url: Where it is downloaded from.
        sha256: Hex sha256 of its content, or ``None``.
        git_blob: Hex git blob id of its content (sha1 of ``b"blob <size>\\0"`` and
            the content), or ``None``.
        embedded: File name of a gzip-compressed copy shipped in ``uae_tf/data``, read
            instead of the cache and the download, or ``None``.
    """

    name: str
    url: str
    sha256: str = None
    git_blob: str = None
    embedded: str = None


@dataclasses.dataclass(frozen=True)
class Source:
    """A downloaded dataset: its files, how they become arrays, and the options of that.

    Attributes:
        files: Its :class:`File` s.
        parse: ``parse(files, **options)``: ``{name: bytes}`` to ``(x_train, y_train,
            x_test, y_test)``.
        pinned: Whether every file's content is pinned.
        options: ``((option, (value, ...)), ...)``: the options ``parse`` takes and
            their values, the first the default.
    """

    files: tuple
    parse: Callable
    pinned: bool
    options: tuple = ()


def read_embedded(file):
    """The bytes of ``file``'s copy shipped in ``uae_tf/data`` (gzip-compressed)."""
    from importlib import resources  # noqa: PLC0415

    with (resources.files("uae_tf") / "data" / file.embedded).open("rb") as handle:
        return gzip.decompress(handle.read())


def git_blob_id(data):
    """Returns the git blob id of ``data`` (bytes), as ``git hash-object`` computes it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def check_content(file, data):
    """Raises ValueError if ``data`` is not the pinned content of ``file``."""
    if file.sha256 is not None and hashlib.sha256(data).hexdigest() != file.sha256:
        raise ValueError(f"{file.name}: sha256 {hashlib.sha256(data).hexdigest()} is not the "
                         f"pinned {file.sha256}")
    if file.git_blob is not None and git_blob_id(data) != file.git_blob:
        raise ValueError(f"{file.name}: git blob id {git_blob_id(data)} is not the pinned "
                         f"{file.git_blob}")


def _minmax(x, axis=0):
    """Scales ``x`` to [0, 1] per column (``axis=0``) or globally (``axis=None``)."""
    keepdims = axis is not None
    low, high = x.min(axis=axis, keepdims=keepdims), x.max(axis=axis, keepdims=keepdims)
    scale = np.where(high > low, high - low, 1.0)
    return ((x - low) / scale).astype(np.float32)


def _check(condition, what):
    if not condition:
        raise ValueError(f"unexpected content: {what}")


def _split_shuffled(x, y, n_train):
    """The published 4/5 split after a permutation, seeded here."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    x, y = x[order], y[order]
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def uncompress_z(data):
    """Decompresses the Unix ``compress`` (.Z, LZW) format, as ``gzip -d`` does.

    Codes are little-endian bit strings of 9 to ``max_bits`` bits, read in groups of
    eight: when the code width changes (or a CLEAR code resets the table), the rest
    of the current group is skipped.
    """
    if data[:2] != b"\x1f\x9d":
        raise ValueError("not a .Z (compress) file: bad magic number")
    max_bits, block_mode = data[2] & 0x1F, bool(data[2] & 0x80)
    if not 9 <= max_bits <= 16:
        raise ValueError(f"unsupported .Z code width {max_bits}")
    body, max_code = data[3:], 1 << max_bits
    total_bits = 8 * len(body)
    table = [bytes([i]) for i in range(256)] + [b""] * (max_code - 256)
    free = 257 if block_mode else 256
    n_bits, limit = 9, (1 << 9) - 1
    pos = region = 0
    previous = None
    out = bytearray()

    def align(pos, region, n_bits):
        group = 8 * n_bits
        return region + -(-(pos - region) // group) * group

    while True:
        if free > limit and n_bits < max_bits:
            pos = region = align(pos, region, n_bits)
            n_bits += 1
            limit = max_code if n_bits == max_bits else (1 << n_bits) - 1
        if pos + n_bits > total_bits:
            break
        start = pos >> 3
        code = (int.from_bytes(body[start:start + 3], "little") >> (pos & 7)) & ((1 << n_bits) - 1)
        pos += n_bits
        if previous is None:
            out += table[code]
            previous = code
            continue
        if block_mode and code == 256:
            free = 256
            pos = region = align(pos, region, n_bits)
            n_bits, limit = 9, (1 << 9) - 1
            continue
        if code < free:
            entry = table[code]
        elif code == free:
            entry = table[previous] + table[previous][:1]
        else:
            raise ValueError("corrupt .Z file: code beyond the table")
        out += entry
        if free < max_code:
            table[free] = table[previous] + entry[:1]
            free += 1
        previous = code
    return bytes(out)


def _isolet_rows(data):
    rows = np.loadtxt(io.StringIO(uncompress_z(data).decode("ascii")), delimiter=",",
                      dtype=np.float64)
    _check(rows.ndim == 2 and rows.shape[1] == 618, f"ISOLET rows of {rows.shape[-1]} values")
    return rows[:, :617], rows[:, 617].astype(np.int64) - 1


def parse_isolet(files, expected=(6238, 1559)):
    """ISOLET: isolet1-4 train, isolet5 test; min-max scaled over both; labels 0..25."""
    x_train, y_train = _isolet_rows(files["isolet1+2+3+4.data.Z"])
    x_test, y_test = _isolet_rows(files["isolet5.data.Z"])
    if expected is not None:
        _check((len(x_train), len(x_test)) == expected, f"{len(x_train)}/{len(x_test)} rows")
    labels = np.concatenate([y_train, y_test])
    _check(labels.min() == 0 and labels.max() == 25, "ISOLET labels outside 1..26")
    x = _minmax(np.concatenate([x_train, x_test]))
    return x[:len(x_train)], y_train, x[len(x_train):], y_test


RESAMPLE = ("bicubic", "nearest")


def parse_coil20(files, objects=20, views=72, resample="bicubic"):
    """COIL-20 (processed): 20 x 72 views resized to 20x20, min-max over all, 1152/288.

    ``resample``: the resize filter, ``"bicubic"`` or ``"nearest"`` (module docstring).
    """
    # Pillow is imported here, not at the top: only this loader needs it (it comes
    # with matplotlib, a dependency).
    from PIL import Image

    filter_ = {"bicubic": Image.Resampling.BICUBIC,
               "nearest": Image.Resampling.NEAREST}[resample]
    images, labels = [], []
    with zipfile.ZipFile(io.BytesIO(files["coil-20-proc.zip"])) as archive:
        names = {name.rsplit("/", 1)[-1]: name for name in archive.namelist()}
        for obj in range(1, objects + 1):
            for view in range(views):
                name = f"obj{obj}__{view}.png"
                _check(name in names, f"{name} missing from coil-20-proc.zip")
                with Image.open(io.BytesIO(archive.read(names[name]))) as image:
                    _check(image.mode == "L", f"{name} is not grayscale")
                    small = image.resize((COIL_SIZE, COIL_SIZE), filter_)
                    images.append(np.asarray(small, dtype=np.float64))
                labels.append(obj - 1)
    x = _minmax(np.stack(images)[..., None], axis=None)
    y = np.asarray(labels, dtype=np.int64)
    return _split_shuffled(x, y, len(x) * 4 // 5)


FILLS = ("published", "observed_mean")
_PLACEHOLDER = -100000.0  # the published loader's genfromtxt filling value


def parse_mice_protein(files, fill="published"):
    """Mice Protein: 77 expression levels, missing ones filled per class; 8 classes; 864/216.

    ``fill``: ``"published"`` or ``"observed_mean"`` (see the module docstring).
    """
    reader = csv.reader(io.StringIO(files["Data_Cortex_Nuclear.csv"].decode("utf-8")))
    header = next(reader)
    _check(header[0] == "MouseID" and len(header) == 82, "Data_Cortex_Nuclear.csv header")
    rows = [row for row in reader if row]
    _check(len(rows) == 1080, f"{len(rows)} mice rows, expected 1080")
    x = np.array([[float(v) if v.strip() else np.nan for v in row[1:78]] for row in rows])
    # Class as published: bit j set when column 78 + j is the first of its two values.
    firsts = ("Control", "Memantine", "C/S")
    y = np.array([sum(2 ** j * (row[78 + j] == first) for j, first in enumerate(firsts))
                  for row in rows], dtype=np.int64)
    _check(len(np.unique(y)) == 8, "Mice Protein classes")
    missing = np.isnan(x)
    if fill == "published":
        # setup_concrete.py: for i, for j, if X[i, j] is the placeholder, X[i, j] =
        # the mean of column j over the rows of i's class, as X stands then.
        x[missing] = _PLACEHOLDER
        for i, j in zip(*np.nonzero(missing)):
            x[i, j] = x[y == y[i], j].mean()
    else:
        for label in np.unique(y):
            members = y == label
            means = np.nanmean(x[members], axis=0)
            x[members] = np.where(np.isnan(x[members]), means, x[members])
        _check(not np.isnan(x).any(), "a feature missing from a whole class")
    return _split_shuffled(_minmax(x), y, len(x) * 4 // 5)


def parse_har(files):
    """Human Activity Recognition, the concrete-AE papers' 4,252 / 1,492 split; 6 classes."""
    def table(name):
        return np.loadtxt(io.StringIO(files[name].decode("ascii")), delimiter=",", ndmin=2)

    x_train, x_test = table("final_X_train.txt"), table("final_X_test.txt")
    y_train = table("final_y_train.txt")[:, 0].astype(np.int64) - 1
    y_test = table("final_y_test.txt")[:, 0].astype(np.int64) - 1
    _check(x_train.shape[1] == x_test.shape[1] == 561, "HAR rows of 561 features")
    _check(len(x_train) == len(y_train) and len(x_test) == len(y_test), "HAR label counts")
    _check(min(y_train.min(), y_test.min()) == 0 and max(y_train.max(), y_test.max()) == 5,
           "HAR labels outside 1..6")
    x = _minmax(np.concatenate([x_train, x_test]))
    return x[:len(x_train)], y_train, x[len(x_train):], y_test


SOURCES = {
    "isolet": Source(
        files=(File("isolet1+2+3+4.data.Z", f"{_UCI_ISOLET}/isolet1+2+3+4.data.Z"),
               File("isolet5.data.Z", f"{_UCI_ISOLET}/isolet5.data.Z")),
        parse=parse_isolet, pinned=False),
    "coil20": Source(
        files=(File("coil-20-proc.zip", f"{_COIL20}/coil-20-proc.zip"),),
        parse=parse_coil20, pinned=False, options=(("resample", RESAMPLE),)),
    "mice_protein": Source(
        files=(File("Data_Cortex_Nuclear.csv", f"{_UAE_DATA}/Data_Cortex_Nuclear.csv",
                    sha256="1d6722b089db85dccfcb84d62e7299dcffd17b41223c3da54321890b63fff7ad",
                    embedded="Data_Cortex_Nuclear.csv.gz"),),
        parse=parse_mice_protein, pinned=True, options=(("fill", FILLS),)),
    "har": Source(
        files=(File("final_X_train.txt", f"{_UAE_DATA}/dataset_uci/final_X_train.txt",
                    git_blob="1c42a17a3d4b53065c7ed2e02340aa676748706b"),
               File("final_X_test.txt", f"{_UAE_DATA}/dataset_uci/final_X_test.txt",
                    git_blob="9b73d5bda064b8f115e2c9f989cdfe5af36e8f8c"),
               File("final_y_train.txt", f"{_UAE_DATA}/dataset_uci/final_y_train.txt",
                    sha256="38194d3b461e5f9d06ddd2551b3d24c8783b04e7a67a1f1228da336af4f23caf"),
               File("final_y_test.txt", f"{_UAE_DATA}/dataset_uci/final_y_test.txt",
                    sha256="2fc806d0d96ac3373e2b9dd4d5481edc2c0e367db02c7be104b9e24616119269")),
        parse=parse_har, pinned=True),
}
