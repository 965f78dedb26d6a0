"""Shared test set-up: quiet TensorFlow, seeded randomness, the shared data path."""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import depth_motion_tf  # noqa: E402,F401  (before TensorFlow: its oneDNN setting)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data():
    """Path to ../shared/data (real sample data); skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _seed():
    import tensorflow as tf

    np.random.seed(0)
    tf.random.set_seed(0)
    yield
