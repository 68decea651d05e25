"""The notebooks run top to bottom (on small settings)."""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

# Replaces the cell tagged "parameters" (papermill's convention): small, fast settings.
SMALL = """N_TRAIN = 40
EPOCHS = 2
AUG_EPOCHS = 2
SEED = 0
VIEW = "random"
ATTACK = dict(uae_tf.get_preset("fast"), steps=3, similarity={"name": "mine", "mine_steps": 2})
EXPORT_DIR = "quickstart_export"
"""


def _run(name, parameters, tmp_path):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{name} needs exactly one cell tagged 'parameters'"
    tagged[0].source = parameters
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    return notebook


def _output_text(notebook):
    return "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


@pytest.mark.slow
def test_quickstart_runs(tmp_path):
    notebook = _run("01_quickstart.ipynb", SMALL, tmp_path)
    text = _output_text(notebook)
    assert "attack success rate" in text
    # The figure's outcome counts add up to the digits attacked and agree with the ASR.
    outcomes = re.search(r"(\d+) success, (\d+) failed: MI ≤ 0, (\d+) failed: f > 0", text)
    assert outcomes, text
    counts = [int(count) for count in outcomes.groups()]
    assert sum(counts) == 40
    assert f"attack success rate: {counts[0] / 40:.1%}" in text
    assert "original + MINE-UAE" in text
    assert "reloaded SavedModel matches" in text
    assert (tmp_path / "quickstart_export" / "saved_model.pb").is_file()
    images = [
        o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert images, "the UAE figure was not drawn"


CONTRASTIVE_SMALL = """N_TRAIN = 32
N_TEST = 64
EPOCHS = 1
BATCH_SIZE = 16
PROBE_EPOCHS = 2
PAIRS = 2
SEED = 0
VIEW = "random"
ATTACK = dict(uae_tf.get_preset("fast"), steps=2, similarity={"name": "mine", "mine_steps": 2})
EXPORT_DIR = "simclr_encoder"
MODEL_FILE = "simclr_mine_uae.keras"
"""


@pytest.mark.slow
def test_contrastive_learning_runs(tmp_path):
    notebook = _run("03_contrastive_learning.ipynb", CONTRASTIVE_SMALL, tmp_path)
    text = _output_text(notebook)
    assert "linear-probe accuracy" in text
    assert "attack success rate" in text
    assert "original + MINE-UAE" in text
    assert "original, same steps" in text
    assert "reloaded .keras model matches" in text
    assert "reloaded SavedModel encoder matches" in text
    assert (tmp_path / "simclr_mine_uae.keras").is_file()
    assert (tmp_path / "simclr_encoder" / "saved_model.pb").is_file()
    images = [
        o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert images, "the UAE figure was not drawn"


REPRESENTATION_SMALL = """N_TRAIN = 32
FEATURES = 8
EPOCHS = 2
SEED = 0
ATTACK = dict(uae_tf.get_preset("fast"), steps=2, similarity={"name": "mine", "mine_steps": 2})
ATTACK_BATCH_SIZE = 32
MODEL_FILE = "concrete_mine_uae.keras"
"""


@pytest.mark.slow
def test_representation_learning_runs(tmp_path):
    notebook = _run("02_representation_learning.ipynb", REPRESENTATION_SMALL, tmp_path)
    text = _output_text(notebook)
    assert "ExtraTrees test accuracy" in text
    assert "attack success rate" in text
    assert "original + MINE-UAE" in text and "original, same steps" in text
    assert "reloaded .keras model keeps the selection: True" in text
