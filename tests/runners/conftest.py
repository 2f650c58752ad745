"""Fixtures of the trainer tests (test_trainer.py, test_trainer_hooks.py)."""

from __future__ import annotations

import pytest
import tensorflow as tf

from tests.conftest import TINY_CONFIG


@pytest.fixture(scope="module")
def eager_steps():
    """Runs the compiled steps eagerly for the module: the same results, no ~15 s trace."""
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


@pytest.fixture(scope="module")
def config_path(synthetic_records, tmp_path_factory) -> str:
    """A tiny ICNet config on the synthetic records, shared by a test module."""
    path = tmp_path_factory.mktemp("config") / "tiny_icnet.config"
    path.write_text(TINY_CONFIG.format(**synthetic_records))
    return str(path)
