"""One synchronous training step under a ``tf.distribute`` strategy.

Every replica runs the model on its share of the global batch, computes the weighted losses
(plus the weight-decay losses when asked), and takes the gradient of its total divided by the
number of replicas. The optimizer all-reduces (sums) the gradients, so the update is the mean of
the replicas' gradients: the gradient of the mean of their losses. With synchronised batch norm
and equal numbers of labelled pixels per replica this equals the single-device step on the whole
batch. (The original's clones did the same: each clone's mean loss, divided by the clone count.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import keras
import tensorflow as tf

from core.data.standard_fields import InputDataFields

LossFn = Callable[[Mapping[str, tf.Tensor], tf.Tensor], dict[str, tf.Tensor]]

# Inputs, labels and predictions of this many examples come back for image summaries.
MAX_SUMMARY_IMAGES = 3


class TrainStep:
    """Builds the replica computation and the compiled distributed step.

    Args:
      model: a built ``SegmentationModel``, created under ``strategy.scope()``.
      loss_fn: ``(outputs, labels) -> {key: loss, "total": weighted sum}``
        (``core.training.losses.WeightedLoss``).
      optimizer: a built Keras optimizer (``LossScaleOptimizer`` for float16 mixed precision),
        created under ``strategy.scope()``; None when only :meth:`gradients` is used.
      variables: the variables to train (the model's trainable ones, minus a frozen backbone).
      strategy: the distribution strategy.
      global_step: int64 variable incremented once per step (None with ``optimizer=None``).
      add_regularization_loss: add ``sum(model.losses)`` (weight decay) to the total.
      image_summaries: also return inputs, labels and predictions of the first replica.
      include_aux: compute the auxiliary logits (only needed when their losses are weighted).
      jit_compile: compile the step with XLA (faster on some GPUs, slower on CPU).
    """

    def __init__(
        self,
        model: keras.Model,
        loss_fn: LossFn,
        optimizer: keras.optimizers.Optimizer | None,
        variables: Sequence[tf.Variable],
        strategy: tf.distribute.Strategy,
        global_step: tf.Variable | None,
        add_regularization_loss: bool = True,
        image_summaries: bool = False,
        include_aux: bool = True,
        jit_compile: bool = False,
    ):
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.variables = list(variables)
        self.strategy = strategy
        self.global_step = global_step
        self.add_regularization_loss = add_regularization_loss
        self.image_summaries = image_summaries
        self.include_aux = include_aux
        self._loss_scaling = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self._jit_compile = jit_compile or None
        self._compiled = tf.function(self._distributed_step, jit_compile=self._jit_compile)

    def retrace(self) -> None:
        """Traces the step again on its next call, after a Python-level change of the model's
        forward pass (quantization-aware training switched on)."""
        self._compiled = tf.function(self._distributed_step, jit_compile=self._jit_compile)

    def losses(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[dict, dict]:
        """Runs the model in training mode and computes the losses of one replica.

        Args:
          images: float32 ``[batch, H, W, 3]`` in [0, 255].
          labels: int32 ``[batch, H, W, 1]``.

        Returns:
          ``(losses, outputs)``: ``{output key: loss, "regularization": .., "total": ..}``
          (float32 scalars) and the model's logits dict.
        """
        outputs = self.model(
            self.model.preprocess(images), training=True, include_aux=self.include_aux
        )
        losses = dict(self.loss_fn(outputs, labels))
        total = losses.pop("total")
        if self.add_regularization_loss and self.model.losses:
            regularization = tf.add_n([tf.cast(loss, tf.float32) for loss in self.model.losses])
            losses["regularization"] = regularization
            total = total + regularization
        losses["total"] = total
        return losses, outputs

    def _scaled_gradients(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[dict, list, dict]:
        replicas = self.strategy.num_replicas_in_sync
        with tf.GradientTape() as tape:
            losses, outputs = self.losses(images, labels)
            objective = losses["total"] / replicas
            if self._loss_scaling:
                objective = self.optimizer.scale_loss(objective)
        return losses, tape.gradient(objective, self.variables), outputs

    def gradients(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[dict, list]:
        """Replica function: this replica's losses and share of the gradients (not applied).

        Returns:
          ``(losses, gradients)``: the replica's losses (as :meth:`losses`) and the gradients of
          ``total / num_replicas_in_sync`` with respect to ``variables`` (summing them over the
          replicas gives the step's gradient), loss scaling undone.
        """
        losses, gradients, _ = self._scaled_gradients(images, labels)
        if self._loss_scaling:
            scale = self.optimizer.dynamic_scale
            gradients = [None if g is None else g / tf.cast(scale, g.dtype) for g in gradients]
        return losses, gradients

    def _replica_step(self, batch: Mapping[str, tf.Tensor], save_request: tf.Tensor):
        images = batch[InputDataFields.input_image]
        labels = batch[InputDataFields.groundtruth]
        replicas = self.strategy.num_replicas_in_sync
        losses, gradients, outputs = self._scaled_gradients(images, labels)
        # LossScaleOptimizer unscales the gradients itself (and skips non-finite steps).
        self.optimizer.apply_gradients(zip(gradients, self.variables, strict=True))
        # Every replica (and worker) leaves with the same decision to checkpoint after this step.
        context = tf.distribute.get_replica_context()
        # The identity places the flag on this replica's device; all_reduce needs one.
        save = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(save_request))
        result = {"losses": {key: value / replicas for key, value in losses.items()}, "save": save}
        if self.image_summaries:
            count = MAX_SUMMARY_IMAGES
            result["images"] = images[:count]
            result["labels"] = labels[:count]
            result["predictions"] = self.model.postprocess(
                outputs["logits"][:count], tf.shape(labels)[1:3]
            )
        return result

    def _distributed_step(self, iterator, save_request: tf.Tensor) -> dict:
        per_replica = self.strategy.run(self._replica_step, args=(next(iterator), save_request))
        sum_ = tf.distribute.ReduceOp.SUM
        result = {
            "losses": {
                key: self.strategy.reduce(sum_, value, axis=None)
                for key, value in per_replica["losses"].items()
            },
            # Already all-reduced: every replica holds the same value.
            "save": self.strategy.experimental_local_results(per_replica["save"])[0],
        }
        for key in ("images", "labels", "predictions"):
            if key in per_replica:
                result[key] = self.strategy.experimental_local_results(per_replica[key])[0]
        self.global_step.assign_add(1)
        return result

    def __call__(self, iterator, save_request: bool = False) -> dict:
        """Runs one step on the next batch of a distributed iterator.

        Args:
          iterator: ``iter(strategy.experimental_distribute_dataset(dataset))``.
          save_request: this process wants a checkpoint after the step; the returned ``save``
            is true when any worker asked.

        Returns:
          ``{"losses": {key: float32 scalar}, "save": float32 scalar}`` (losses averaged over
          replicas; ``save`` > 0 means checkpoint now) and, with image summaries, ``images``/``labels``/``predictions`` of the
          first local replica's first examples.
        """
        return self._compiled(iterator, tf.constant(float(save_request), tf.float32))
