"""Mixed precision of a training run: which Keras dtype policy, and building under it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import tensorflow as tf


def precision_policy(enabled: bool) -> str | None:
    """The Keras policy of ``--mixed_precision``: None when off.

    float16 needs loss scaling and pays off on GPUs; CPUs have fast bfloat16 instead, so this
    is ``"mixed_float16"`` when a GPU is visible and ``"mixed_bfloat16"`` otherwise.
    """
    if not enabled:
        return None
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


@contextlib.contextmanager
def dtype_policy(policy: str | None) -> Iterator[None]:
    """Layers built inside use ``policy`` (None: the current one); the previous one is restored."""
    previous = keras.config.dtype_policy()
    if policy:
        keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
