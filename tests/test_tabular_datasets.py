"""The Table 6 datasets: parsed from small fake files in the real formats, no network.

``keras.utils.get_file`` is replaced by a function that writes the fake file into the
cache, and the reachability check by one that passes, so every loader runs offline.
"""

import csv
import hashlib
import io
import shutil
import subprocess
import zipfile

import keras
import numpy as np
import pytest
from PIL import Image

from uae_tf import _tabular, datasets


def compress_z(data, max_bits=12):
    """Unix ``compress`` (.Z) of ``data``, block mode, without CLEAR codes."""
    table = {bytes([i]): i for i in range(256)}
    free, n_bits, limit, max_code = 257, 9, 511, 1 << max_bits
    acc = length = region = 0

    def emit(code):
        nonlocal acc, length
        acc |= code << length
        length += n_bits

    word = data[:1]
    for byte in data[1:]:
        extended = word + bytes([byte])
        if extended in table:
            word = extended
            continue
        emit(table[word])
        if free > limit and n_bits < max_bits:
            group = 8 * n_bits
            length = region = region + -(-(length - region) // group) * group
            n_bits += 1
            limit = max_code if n_bits == max_bits else (1 << n_bits) - 1
        if free < max_code:
            table[extended] = free
            free += 1
        word = bytes([byte])
    emit(table[word])
    return bytes([0x1F, 0x9D, 0x80 | max_bits]) + acc.to_bytes((length + 7) // 8, "little")


def test_uncompress_z_inverts_compress_and_agrees_with_gzip(tmp_path):
    rng = np.random.default_rng(0)
    # Long enough to widen the codes from 9 to 12 bits and fill the table.
    text = ",".join(f"{v:.4f}" for v in rng.uniform(-1, 1, 6000)).encode()
    packed = compress_z(text)
    assert len(packed) < len(text)
    assert _tabular.uncompress_z(packed) == text
    if shutil.which("gzip"):  # gzip decompresses .Z: the reference implementation.
        assert subprocess.run(["gzip", "-dc"], input=packed, capture_output=True,
                              check=True).stdout == text
    with pytest.raises(ValueError, match="magic"):
        _tabular.uncompress_z(b"PK\x03\x04")


def _isolet_rows(rng, n):
    rows = np.concatenate([rng.uniform(-1, 1, (n, 617)), (np.arange(n) % 26 + 1)[:, None]], 1)
    return "\n".join(", ".join(f"{v:.4f}" for v in row[:-1]) + f", {int(row[-1])}."
                     for row in rows).encode()


def _mice_csv(rng):
    header = (["MouseID"] + [f"P{j}_N" for j in range(77)]
              + ["Genotype", "Treatment", "Behavior", "class"])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for i in range(1080):
        c = i % 8
        genotype = ("Control", "Ts65Dn")[c & 1 == 0]
        treatment = ("Memantine", "Saline")[c & 2 == 0]
        behavior = ("C/S", "S/C")[c & 4 == 0]
        values = [f"{v:.5f}" for v in rng.uniform(0, 3, 77) + c]
        if i % 50 == 0:
            values[3] = ""  # A missing value, filled with its class's mean.
        writer.writerow([f"{i}_1", *values, genotype, treatment, behavior, f"c{c}"])
    return out.getvalue().encode()


def _coil_zip(rng):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for obj in range(1, 21):
            for view in range(72):
                png = io.BytesIO()
                pixels = rng.integers(0, 256, (32, 32), dtype=np.uint8)
                Image.fromarray(pixels, "L").save(png, format="PNG")
                archive.writestr(f"coil-20-proc/obj{obj}__{view}.png", png.getvalue())
    return out.getvalue()


def _har_files(rng):
    def table(n):
        return "\n".join(",".join(f"{v:.6f}" for v in row)
                         for row in rng.uniform(-1, 1, (n, 561))).encode()

    def labels(n):
        return "\n".join(str(v % 6 + 1) for v in range(n)).encode()

    return {"final_X_train.txt": table(30), "final_X_test.txt": table(12),
            "final_y_train.txt": labels(30), "final_y_test.txt": labels(12)}


@pytest.fixture
def fake_downloads(monkeypatch):
    """Replaces the network: returns the dict of fake file contents by name."""
    rng = np.random.default_rng(0)
    contents = {
        "isolet1+2+3+4.data.Z": compress_z(_isolet_rows(rng, 52), max_bits=16),
        "isolet5.data.Z": compress_z(_isolet_rows(rng, 26), max_bits=16),
        "Data_Cortex_Nuclear.csv": _mice_csv(rng),
        "coil-20-proc.zip": _coil_zip(rng),
        **_har_files(rng),
    }
    downloads = []

    def get_file(fname, origin, cache_dir, cache_subdir):
        path = datasets.Path(cache_dir) / cache_subdir / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents[fname])
        downloads.append(origin)
        return str(path)

    # The fake files stand for the real ones: pin them as the real ones are pinned.
    sources = {}
    for name, source in _tabular.SOURCES.items():
        files = tuple(
            _tabular.File(f.name, f.url,
                          sha256=hashlib.sha256(contents[f.name]).hexdigest() if f.sha256 else None,
                          git_blob=_tabular.git_blob_id(contents[f.name]) if f.git_blob else None)
            for f in source.files)
        sources[name] = _tabular.Source(files, source.parse, source.pinned, source.options)
    monkeypatch.setattr(_tabular, "SOURCES", sources)
    monkeypatch.setattr(keras.utils, "get_file", get_file)
    monkeypatch.setattr(datasets, "_check_reachable", lambda url: None)
    datasets._load_downloaded.cache_clear()
    yield contents, downloads
    datasets._load_downloaded.cache_clear()


def test_isolet_parsed_scaled_and_split(fake_downloads, tmp_path, monkeypatch):
    monkeypatch.setitem(_tabular.SOURCES, "isolet", _tabular.Source(
        _tabular.SOURCES["isolet"].files,
        lambda files: _tabular.parse_isolet(files, expected=(52, 26)), False))
    x_train, y_train = datasets.load("isolet", "train", data_dir=tmp_path)
    x_test, y_test = datasets.load("isolet", "test", data_dir=tmp_path)
    assert x_train.shape == (52, 617) and x_test.shape == (26, 617)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    both = np.concatenate([x_train, x_test])
    assert both.min() == 0.0 and both.max() == 1.0  # Min-max over train and test.
    assert set(y_train) == set(range(26)) and y_test[0] == 0
    assert (tmp_path / "uae_tf" / "isolet" / "isolet5.data.Z").is_file()


def test_mice_protein_observed_mean_fill(fake_downloads, tmp_path):
    contents, _ = fake_downloads
    x_train, y_train = datasets.load("mice_protein", "train", data_dir=tmp_path,
                                     fill="observed_mean")
    x_test, y_test = datasets.load("mice_protein", "test", data_dir=tmp_path,
                                   fill="observed_mean")
    assert x_train.shape == (864, 77) and x_test.shape == (216, 77)
    assert set(np.concatenate([y_train, y_test])) == set(range(8))
    assert not np.isnan(x_train).any() and x_train.min() >= 0 and x_train.max() <= 1
    # Raw column 3 of the fake rows: class c has values c + U(0, 3), so the observed
    # means keep the scaled column spread over [0, 1] (a placeholder fill would
    # squeeze every observed value into a sliver next to 1).
    rows = list(csv.reader(io.StringIO(contents["Data_Cortex_Nuclear.csv"].decode())))[1:]
    raw = np.array([float(r[4]) if r[4] else np.nan for r in rows])
    assert np.isnan(raw).sum() == 1080 // 50 + 1
    both = np.concatenate([x_train, x_test])[:, 3]
    assert np.ptp(both) == 1.0 and both.min() == 0.0 and np.median(both) < 0.9
    # The split is a fixed permutation: loading twice gives the same rows.
    datasets._load_downloaded.cache_clear()
    again, _ = datasets.load("mice_protein", "train", data_dir=tmp_path, fill="observed_mean")
    np.testing.assert_array_equal(again, x_train)


def _published_mice(data):
    """IBM/UAE setup_concrete.py's MICE loader, as published (before its shuffle)."""
    from sklearn.preprocessing import MinMaxScaler

    text = io.StringIO(data.decode("utf-8"))
    x = np.genfromtxt(text, delimiter=",", skip_header=1, usecols=range(1, 78),
                      filling_values=-100000, encoding="UTF-8")
    text.seek(0)
    classes = np.genfromtxt(text, delimiter=",", skip_header=1, usecols=range(78, 81),
                            dtype=None, encoding="UTF-8")
    for i, row in enumerate(x):
        for j, value in enumerate(row):
            if value == -100000:
                x[i, j] = np.mean([x[k, j] for k in range(classes.shape[0])
                                   if np.all(classes[i] == classes[k])])
    return MinMaxScaler(feature_range=(0, 1)).fit_transform(x)


def _unshuffle(x_train, x_test):
    order = np.random.default_rng(_tabular.SPLIT_SEED).permutation(len(x_train) + len(x_test))
    rows = np.empty((len(order), x_train.shape[1]), np.float64)
    rows[order] = np.concatenate([x_train, x_test])
    return rows


def test_mice_protein_published_fill_is_the_published_loaders(fake_downloads, tmp_path):
    contents, _ = fake_downloads
    x_train, _ = datasets.load("mice_protein", "train", data_dir=tmp_path)  # the default
    x_test, _ = datasets.load("mice_protein", "test", data_dir=tmp_path)
    expected = _published_mice(contents["Data_Cortex_Nuclear.csv"])
    np.testing.assert_allclose(_unshuffle(x_train, x_test), expected, rtol=0, atol=1e-6)
    # The placeholder drags column 3's filled values far below the observed ones.
    column = _unshuffle(x_train, x_test)[:, 3]
    assert np.sort(column)[1080 // 50 + 1] > 0.99


def test_mice_protein_ships_with_the_package(tmp_path, monkeypatch):
    # No network, no cache: the packaged copy, checked against the pin.
    monkeypatch.setattr(datasets, "_check_reachable", lambda url: pytest.fail("downloaded"))
    datasets._load_downloaded.cache_clear()
    x_train, y_train = datasets.load("mice_protein", "train", data_dir=tmp_path,
                                     download=False)
    x_test, _ = datasets.load("mice_protein", "test", data_dir=tmp_path, download=False)
    assert x_train.shape == (864, 77) and x_test.shape == (216, 77)
    assert np.bincount(y_train, minlength=8).min() > 80
    file = _tabular.SOURCES["mice_protein"].files[0]
    data = _tabular.read_embedded(file)
    assert hashlib.sha256(data).hexdigest() == file.sha256
    np.testing.assert_allclose(_unshuffle(x_train, x_test), _published_mice(data),
                               rtol=0, atol=1e-6)
    # The published fill turns the columns with missing values into near-binary
    # "a value of this class was missing" indicators: their observed values span
    # almost nothing. The observed-mean fill leaves no such column.
    missing = np.array([[not v.strip() for v in row[1:78]]
                        for row in csv.reader(io.StringIO(data.decode()))][1:])
    observed = _unshuffle(*(datasets.load("mice_protein", split, data_dir=tmp_path,
                                          fill="observed_mean")[0]
                            for split in ("train", "test")))
    for x, squeezed in ((_unshuffle(x_train, x_test), 49), (observed, 0)):
        spans = [np.ptp(x[~missing[:, j], j]) for j in range(77)]
        assert sum(span < 0.0031 for span in spans) == squeezed
    datasets._load_downloaded.cache_clear()


def test_mice_protein_without_its_packaged_copy_downloads(fake_downloads, tmp_path,
                                                          monkeypatch):
    def absent(file):
        raise FileNotFoundError(file.embedded)

    monkeypatch.setattr(_tabular, "read_embedded", absent)
    with pytest.raises(datasets.DatasetUnavailableError, match="download=False"):
        datasets.load("mice_protein", "test", data_dir=tmp_path, download=False)
    _, downloads = fake_downloads
    datasets.load("mice_protein", "test", data_dir=tmp_path)
    assert downloads == [_tabular.SOURCES["mice_protein"].files[0].url]


def test_dataset_options_are_checked():
    assert datasets.options("mice_protein") == {"fill": ("published", "observed_mean")}
    assert datasets.options("coil20") == {"resample": ("bicubic", "nearest")}
    assert datasets.options("mnist5k") == {}
    assert datasets.resolve_options("mice_protein") == {"fill": "published"}
    with pytest.raises(ValueError, match="option 'fill' of dataset 'mice_protein' must be one "
                       "of .*Received: fill='median'"):
        datasets.load("mice_protein", fill="median")
    with pytest.raises(ValueError, match="'mnist5k' takes no option 'fill'.*none"):
        datasets.load("mnist5k", fill="published")
    with pytest.raises(ValueError, match="takes no option 'resample' \\(its options: fill\\)"):
        datasets.load("mice_protein", resample="nearest")
    # Records made before options existed: the Mice fill was the observed mean.
    assert datasets.recorded_options("mice_protein", None) == {"fill": "observed_mean"}
    assert datasets.recorded_options("coil20", None) == {"resample": "bicubic"}


def test_coil20_is_20x20_images_split_1152_288(fake_downloads, tmp_path):
    x_train, y_train = datasets.load("coil20", "train", data_dir=tmp_path)
    x_test, y_test = datasets.load("coil20", "test", data_dir=tmp_path)
    assert x_train.shape == (1152, 20, 20, 1) and x_test.shape == (288, 20, 20, 1)
    assert np.bincount(np.concatenate([y_train, y_test])).tolist() == [72] * 20
    both = np.concatenate([x_train, x_test])
    assert both.min() == 0.0 and both.max() == 1.0
    # The resize filter is an option (nearest: Pillow's default before 7.0).
    nearest, _ = datasets.load("coil20", "train", data_dir=tmp_path, resample="nearest")
    assert nearest.shape == x_train.shape and not np.array_equal(nearest, x_train)


def test_har_keeps_the_published_split(fake_downloads, tmp_path):
    x_train, y_train = datasets.load("har", "train", data_dir=tmp_path)
    x_test, y_test = datasets.load("har", "test", data_dir=tmp_path)
    assert x_train.shape == (30, 561) and x_test.shape == (12, 561)
    assert y_train[:7].tolist() == [0, 1, 2, 3, 4, 5, 0]  # File order, labels 1..6 -> 0..5.


def test_cached_files_are_reused_and_changed_ones_refused(fake_downloads, tmp_path):
    _, downloads = fake_downloads
    datasets.load("har", "train", data_dir=tmp_path)
    assert len(downloads) == 4
    datasets._load_downloaded.cache_clear()
    datasets.load("har", "test", data_dir=tmp_path, download=False)
    assert len(downloads) == 4
    cached = tmp_path / "uae_tf" / "har" / "final_X_train.txt"
    cached.write_bytes(cached.read_bytes() + b"\n")
    datasets._load_downloaded.cache_clear()
    with pytest.raises(datasets.DatasetUnavailableError, match="git blob id.*Delete it"):
        datasets.load("har", "train", data_dir=tmp_path)


def test_offline_and_not_cached_says_how_to_get_the_data(tmp_path, monkeypatch):
    def unreachable(url):
        raise OSError("cannot connect to archive.ics.uci.edu:443: network is unreachable")

    monkeypatch.setattr(datasets, "_check_reachable", unreachable)
    datasets._load_downloaded.cache_clear()
    with pytest.raises(datasets.DatasetUnavailableError) as error:
        datasets.load("isolet", "train", data_dir=tmp_path)
    message = str(error.value)
    assert "unreachable" in message and str(tmp_path / "uae_tf" / "isolet") in message
    assert "isolet5.data.Z" in message and "datasets.load('isolet'" in message
    with pytest.raises(datasets.DatasetUnavailableError, match="download=False"):
        datasets.load("har", "test", data_dir=tmp_path, download=False)


def test_the_real_pins_are_in_place():
    pinned = {name: all(f.sha256 or f.git_blob for f in source.files)
              for name, source in _tabular.SOURCES.items()}
    assert pinned == {"isolet": False, "coil20": False, "mice_protein": True, "har": True}
    assert all(f.url.startswith("https://") for s in _tabular.SOURCES.values() for f in s.files)
    assert _tabular.git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
