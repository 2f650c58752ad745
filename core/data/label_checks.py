"""The ground-truth range check shared by the loss and the evaluation metric."""

from __future__ import annotations

import tensorflow as tf


def assert_labels_in_range(
    labels: tf.Tensor, num_classes: int, ignore_label: int, ignore_field: str
) -> tuple[tf.Tensor, tf.Operation]:
    """Checks that every ground-truth id is a class or the ignore label.

    Works eagerly and inside ``tf.function``; the failure message lists the
    offending values and says what to fix.

    Args:
      labels: integer class ids, any shape.
      num_classes: valid ids are ``[0, num_classes)``.
      ignore_label: the id excluded from the loss and the metric.
      ignore_field: the config field holding ``ignore_label``, named in the message.

    Returns:
      ``(counted, check)``: bool mask of the non-ignored pixels, and the assertion
      op to run before using the labels.
    """
    counted = tf.not_equal(labels, ignore_label)
    bad = tf.logical_and(counted, tf.logical_or(labels < 0, labels >= num_classes))
    check = tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(bad)),
        [
            f"Ground truth holds class ids outside [0, {num_classes}) that are not the ignore "
            f"label {ignore_label}. Check num_classes and {ignore_field} in the config, or the "
            "label mapping used to write the records. Offending values:",
            tf.unique(tf.boolean_mask(labels, bad))[0],
        ],
        summarize=20,
    )
    return counted, check
