"""Installs depth_motion_tf (the library and CLIs) and data_prep (the converters)."""
import pathlib

import setuptools

_HERE = pathlib.Path(__file__).parent

setuptools.setup(
    name="depth_motion_tf",
    version="0.1.0",
    description=(
        "Unsupervised monocular depth and 3D motion fields from video "
        "(Li et al., CoRL 2020) in TensorFlow 2 / Keras 3."
    ),
    long_description=(_HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["depth_motion_tf*", "data_prep*"]),
    python_requires=">=3.10",
    install_requires=[
        line.strip()
        for line in (_HERE / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ],
)
