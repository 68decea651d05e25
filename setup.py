"""Installs uae-tf: the library `uae_tf`, the model package `autoencoders`, and the `uae` CLI."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
RAY = "ray[data]>=2.60"


def _version():
    """``uae_tf.__version__``, read without importing the package (one place to bump it)."""
    text = (HERE / "uae_tf" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"$', text, re.M).group(1)


def _requirements():
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="uae-tf",
    version=_version(),
    description=(
        "Unsupervised adversarial examples (MINE + MinMax) and their use as data "
        "augmentation, in Keras 3 / TensorFlow 2."
    ),
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["uae_tf", "uae_tf.*", "autoencoders", "autoencoders.*"]),
    package_data={"uae_tf": ["data/*.npz", "data/*.gz", "data/*.md", "_native/*.cc", "_native/*.h"]},
    include_package_data=True,
    install_requires=_requirements(),
    extras_require={
        # The Ray engine of `uae generate --engine ray` (uae_tf.runs.ray_engine).
        "ray": [RAY],
        # The tests run the Ray engine on a local Ray cluster, so they need it too.
        "test": ["pytest>=7", "nbclient>=0.9", "nbformat>=5.9", "ipykernel>=6", RAY],
    },
    entry_points={"console_scripts": ["uae=uae_tf.cli:main"]},
    license="Apache-2.0",
)
