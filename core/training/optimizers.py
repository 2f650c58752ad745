"""Momentum SGD with TF1 ``tf.train.MomentumOptimizer`` semantics, as a Keras 3 optimizer.

TF1 keeps an accumulator of raw gradients and multiplies it by the *current*
learning rate::

    a <- momentum * a + g
    w <- w - lr_t * a

Keras ``SGD(momentum=...)`` instead folds each step's rate into its velocity::

    v <- momentum * v - lr_t * g
    w <- w + v

With a constant rate the two are the same trajectory. Under a decaying rate
(the poly schedule the original trained with) they are not: after the rate
drops, TF1 also scales the momentum built up at the earlier, larger rates down,
while Keras keeps applying it at full size. Reproducing the original's training
therefore needs the TF1 rule, which :class:`TF1MomentumOptimizer` implements
(``use_nesterov=False``, the only mode the original used).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="fast_semantic_segmentation")
class TF1MomentumOptimizer(keras.optimizers.Optimizer):
    """Momentum optimizer whose update matches TF1's ``MomentumOptimizer``.

    Works eagerly, inside ``tf.function`` and under ``tf.distribute``
    strategies (the accumulators are created next to their variables, and
    the base class all-reduces the gradients). Under ``MirroredStrategy``,
    call ``optimizer.build(variables)`` inside ``strategy.scope()`` before the
    first distributed step, as for any Keras optimizer.

    Args:
      learning_rate: a float, a ``keras.optimizers.schedules.LearningRateSchedule``
        (called with ``iterations``, the number of updates applied so far, as
        TF1 called its schedule with ``global_step``) or a no-argument callable.
      momentum: the accumulator decay, in ``[0, 1]``.
      name: the optimizer's name.
      **kwargs: the base ``keras.optimizers.Optimizer`` keyword arguments
        (``clipnorm``, ``global_clipnorm``, ``weight_decay``, ...).
    """

    def __init__(
        self,
        learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 0.01,
        momentum: float = 0.9,
        name: str = "tf1_momentum",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.momentum = float(momentum)

    def build(self, variables: list) -> None:
        """Creates one zero-initialised accumulator per trainable variable."""
        if self.built:
            return
        super().build(variables)
        self._accumulators = [
            self.add_variable_from_reference(variable, name="accumulator") for variable in variables
        ]

    def update_step(self, gradient, variable, learning_rate) -> None:
        """Applies ``a <- m * a + g; w <- w - lr * a`` to one variable.

        Args:
          gradient: the (all-reduced) gradient, the variable's shape.
          variable: the model variable to update.
          learning_rate: the rate for this step (the schedule at ``iterations``).
        """
        if isinstance(gradient, tf.IndexedSlices):
            # TF1 updated only the touched rows for sparse gradients; dense
            # conv/BN models never produce them, so densify rather than keep
            # a second code path.
            gradient = tf.convert_to_tensor(gradient)
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        accumulator = self._accumulators[self._get_variable_index(variable)]
        # Compute the new accumulator once and reuse it rather than re-reading
        # the variable after the assign.
        new_accumulator = ops.add(
            ops.multiply(accumulator, ops.cast(self.momentum, variable.dtype)), gradient
        )
        self.assign(accumulator, new_accumulator)
        self.assign_sub(variable, ops.multiply(new_accumulator, learning_rate))

    def _all_reduce_sum_gradients(self, grads_and_vars):
        """Sums the gradients over the replicas; with one replica, returns them unchanged.

        Keras all-reduces through one identity over the whole gradient list (its custom
        gradient), so no variable is updated, and no gradient freed, before the last gradient
        of the step exists: every weight gradient is alive at once at the end of backprop. With
        one replica the sum is the gradient itself; skipping it lets each variable's update run,
        and free its gradient, as soon as that gradient is computed, which lowers the step's
        memory peak (most under ``train_mem_saving.py``, whose peak comes late in backprop).
        """
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync == 1:
            return list(grads_and_vars)
        return super()._all_reduce_sum_gradients(grads_and_vars)

    def get_config(self) -> dict:
        config = super().get_config()
        config["momentum"] = self.momentum
        return config
