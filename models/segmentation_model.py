"""The model contract (DESIGN.md rule 4) and the common base of ICNet and PSPNet.

The trainer, evaluator, exporter and pruner use a model only through the methods below; none of
them looks at a concrete class or a private attribute. A new architecture subclasses
:class:`SegmentationModel` (or implements the same methods), registers itself in
:data:`models.registry.ARCHITECTURES` and is then built from ``model { architecture { name:
"..." } }``. What each method must do:

Running:
  ``preprocess(images)``: float32 RGB [batch, H, W, 3] in [0, 255] -> the network's input
    (normalised the way its backbone was pretrained). Pure; no variables.
  ``predict(preprocessed, training)``: dict of logits keyed by ``models.outputs`` constants,
    float32 [batch, h, w, num_classes]; ``outputs.LOGITS`` is always present, auxiliary
    logits only when ``training`` is True. ``training`` is a Python bool (BN mode).
  ``postprocess(logits, output_size)``: int32 class ids [batch, out_h, out_w].
  ``output_specs(training)``: one :class:`models.outputs.OutputSpec` per ``predict`` output:
    its scale relative to the input, and its loss weight (a config field name, read by
    ``builders/losses_builder.py`` from the model's config message, or a fixed default).
  ``min_input_size()``: smallest (height, width) the network accepts.
  ``build_variables(input_size)``: creates every variable (auxiliary heads included).

Names (checkpoints, fine-tuning, export):
  ``scoped_layers()`` / ``named_layers()``: every conv block with its slim scope.
  ``named_variables()``: slim variable name -> variable, as in the original's checkpoints.
  ``aux_scopes()``: scopes of the training-only classifiers (not counted, not exported).

Pruning structure (``core/pruning``; ``compress.py`` and ``sensitivity.py``):
  ``declare_channels(graph)``: describes the channel flow on a
    :class:`core.pruning.dependency.ChannelGraph` with its four calls. ``graph.read(conv,
    *groups)`` for every conv: the groups it reads, concatenated in this order (``None`` with
    ``channels=3`` for the image); ``graph.produce(conv)`` when a conv's output starts a new
    channel space; ``graph.join(group, conv)`` when a conv's output is summed onto an existing
    group (residual adds, fusion sums: they must keep one mask); ``graph.pass_through(group,
    conv)`` for a depthwise conv. Resizes, pooling and activations are transparent. The model
    calls ``self.backbone.declare_channels(graph)`` for the backbone's part, which returns the
    endpoints' groups. Every conv of ``named_layers()`` must be read (the pruner checks it
    against the kernels). Prediction convs are read, never produced: they are not pruned.
  ``pruning_units()``: ordered unit name -> conv scopes, the parts that sensitivity analysis
    prunes alone (``stem``, ``block1``, ``FastPSPModule``, ``full_branch``, ...).
  ``prediction_scopes()``: scopes of every classifier conv (main and auxiliary), whose width is
    the number of classes and which are never pruned.
  A model that does not implement ``declare_channels`` cannot be pruned; the pruner says so.

Losses live in ``core/training/losses.py``.

``predict`` deliberately overrides ``keras.Model.predict`` (the batch-inference loop, unused here):
the contract's name wins. Calling the model (``model(x, training=...)``) is the same as predict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from models import outputs, quantization, recompute
from models.backbones import build_backbone
from models.backbones.base import Backbone
from models.layers.conv_bn import ConvBN, PredictionConv
from models.layers.interp import resize_bilinear
from models.widths import WidthResolver

if TYPE_CHECKING:  # only for hints: core.pruning imports the models at run time
    from core.pruning.dependency import ChannelGraph

ScopedLayer = ConvBN | PredictionConv


class SegmentationModel(keras.Model):
    """Base class; subclasses build their heads and implement ``call`` and friends.

    The base builds what ICNet and PSPNet share: the width resolver, the backbone and the checks
    of the common arguments. Subclasses create their head layers from ``self.widths``.

    Args:
      num_classes: number of classes of the logits, >= 1.
      filter_scale: fraction of filters kept in every compressible conv, in (0, 1].
      layer_widths: conv scope -> number of filters, overriding ``filter_scale``'s widths.
      backbone: the feature extractor's name (``models.registry.BACKBONES``).
      backbone_weight_decay: L2 weight of the backbone convs (0: none, as the original).
      atrous_rates: dilation of the last two backbone stages.
      sync_batch_norm: synchronise batch-norm statistics across replicas.
      pooling_factors: pyramid pooling bins, positive (empty: the head pools nothing).
      upsample_logits: training logits at the input size instead of the network's.
      name: Keras model name.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        backbone: str,
        name: str,
        filter_scale: float = 1.0,
        layer_widths: Mapping[str, int] | None = None,
        backbone_weight_decay: float = 0.0,
        atrous_rates: Sequence[int] = (2, 4),
        sync_batch_norm: bool = False,
        pooling_factors: Sequence[float] = (),
        upsample_logits: bool = False,
    ):
        super().__init__(name=name)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
        # Empty for a head without pyramid pooling; ICNet and PSPNet pass their own levels.
        if any(f <= 0 for f in pooling_factors):
            raise ValueError(f"pooling_factors must be positive numbers, got {pooling_factors!r}.")
        self.num_classes = num_classes
        self.widths = WidthResolver(filter_scale, layer_widths)
        self.backbone: Backbone = build_backbone(
            backbone, self.widths, backbone_weight_decay, atrous_rates, sync_batch_norm
        )
        self.filter_scale = self.widths.filter_scale
        self.pooling_factors = tuple(pooling_factors)
        self.upsample_logits = upsample_logits
        # Head segments run under tf.recompute_grad; see set_recompute_scopes.
        self.recompute_scopes: frozenset[str] = frozenset()
        self.recompute_groups: frozenset[tuple[str, ...]] = frozenset()

    def build(self, input_shape) -> None:
        # Sub-layers build themselves on the first call; there is nothing to create up front.
        del input_shape

    # -- contract -------------------------------------------------------------------------------

    def preprocess(self, images: tf.Tensor) -> tf.Tensor:
        """float32 RGB [batch, H, W, 3] in [0, 255] -> the backbone's input range."""
        return self.backbone.preprocess(images)

    def predict(self, preprocessed: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:
        """Runs the network; see the subclass's ``call`` for the keys and shapes."""
        return self(preprocessed, training=training)

    def postprocess(self, logits: tf.Tensor, output_size: Sequence[int] | tf.Tensor) -> tf.Tensor:
        """Resizes logits to ``output_size`` (bilinear, aligned corners) and takes the argmax.

        Args:
          logits: float32 [batch, h, w, num_classes].
          output_size: (height, width) as ints or an int32 tensor [2].

        Returns:
          int32 class ids [batch, height, width] in [0, num_classes).
        """
        resized = resize_bilinear(logits, output_size)
        return tf.argmax(resized, axis=-1, output_type=tf.int32)

    def output_specs(self, training: bool = True) -> tuple[outputs.OutputSpec, ...]:
        """The outputs ``predict(.., training)`` returns, with scales and loss weights."""
        raise NotImplementedError

    # -- building and names ---------------------------------------------------------------------

    def min_input_size(self) -> tuple[int, int]:
        """Smallest (height, width) whose pyramid-pooling map fits every pooling factor."""
        raise NotImplementedError

    def build_variables(self, input_size: Sequence[int] | None = None) -> None:
        """Creates all variables (auxiliary heads included) with one small inference pass.

        Runs in inference mode, so BN moving statistics are not touched; safe after restoring.

        Args:
          input_size: (height, width) of the dummy batch; defaults to ``min_input_size()``.
        """
        height, width = input_size or self.min_input_size()
        self(tf.zeros([1, height, width, 3]), training=False, include_aux=True)

    def scoped_layers(self) -> list[ScopedLayer]:
        """Every conv block with a slim scope, backbone first."""
        raise NotImplementedError

    def named_layers(self) -> dict[str, ScopedLayer]:
        """Map from each conv's slim scope (e.g. ``FastPSPModule/Conv``) to its block."""
        return {layer.scope: layer for layer in self.scoped_layers()}

    def named_variables(self) -> dict[str, tf.Variable]:
        """Map from slim variable names to variables, exactly as in the original's checkpoints.

        E.g. ``SharedFeatureExtractor/resnet_v1_50/block1/unit_1/bottleneck_v1/conv1/weights``,
        ``.../conv1/BatchNorm/moving_mean``, ``Predictions/Conv/biases``.

        Raises:
          RuntimeError: if the model has not been built (call ``build_variables()`` first).
        """
        layers = self.scoped_layers()
        if not all(layer.built for layer in layers):
            raise RuntimeError(
                f"{self.name} is not fully built; call model.build_variables() (or run predict "
                "in training mode) before named_variables()."
            )
        names: dict[str, tf.Variable] = {}
        for layer in layers:
            names.update(layer.slim_variables())
        return names

    def count_parameters(self, include_aux: bool = False, include_bn: bool = False) -> int:
        """Number of parameters under the model zoo's convention (see docs/models.md).

        Quantization-aware training's range variables (``<scope>/act_quant/min`` ...) are never
        counted: they become the int8 model's quantization parameters, not weights, so a QAT
        model counts what the same model without QAT does.

        Args:
          include_aux: count the training-only auxiliary classifiers.
          include_bn: count BN gamma/beta and moving statistics.
        """
        aux_scopes = set(self.aux_scopes())
        ranges = set(quantization.range_variables(self))
        total = 0
        for name, variable in self.named_variables().items():
            if name in ranges:
                continue
            if not include_aux and name.rsplit("/", 1)[0] in aux_scopes:
                continue
            if not include_bn and "/BatchNorm/" in name:
                continue
            total += int(np.prod(variable.shape))
        return total

    def aux_scopes(self) -> tuple[str, ...]:
        """Scopes of the training-only classifier convs."""
        raise NotImplementedError

    # -- pruning structure (module docstring) ----------------------------------------------------

    def declare_channels(self, graph: ChannelGraph) -> None:
        """Describes the model's channel flow on ``graph`` (see the module docstring)."""
        raise NotImplementedError(
            f"{type(self).__name__} declares no channel structure; implement declare_channels "
            "to prune it (see models/segmentation_model.py)."
        )

    def pruning_units(self) -> dict[str, tuple[str, ...]]:
        """Unit name -> conv scopes, in model order: the backbone's units, then the head's."""
        return dict(self.backbone.pruning_units())

    def prediction_scopes(self) -> tuple[str, ...]:
        """Scopes of every classifier conv, main and auxiliary (never pruned)."""
        raise NotImplementedError

    # -- gradient checkpointing -----------------------------------------------------------------

    def head_segments(self) -> tuple[str, ...]:
        """Scopes of the head sub-blocks that can be recomputed in backprop."""
        return ()

    def recompute_segments(self) -> tuple[str, ...]:
        """The coarse segments (the original's), backbone first: each backbone block, the
        pyramid pooling module and the fusion units."""
        return self.backbone.recompute_segments() + self.head_segments()

    def head_chains(self) -> tuple[tuple[str, ...], ...]:
        """The head's chains of recomputable steps (see :meth:`recompute_chains`)."""
        return tuple((scope,) for scope in self.head_segments())

    def recompute_chains(self) -> tuple[tuple[str, ...], ...]:
        """Chains of recomputable steps, in model order: a run of consecutive steps of one
        chain can be recomputed as one segment (``models.recompute_plan`` picks the runs)."""
        return self.backbone.recompute_chains() + self.head_chains()

    def default_recompute_scopes(self) -> tuple[str, ...]:
        """The original ``train_mem_saving.py`` defaults: each backbone block and the fusion units."""
        return self.recompute_segments()

    def set_recompute_scopes(self, names: Sequence[str]) -> tuple[str, ...]:
        """Runs the named segments under ``tf.recompute_grad`` from the next trace on.

        Args:
          names: segments (see :meth:`recompute_segments`), steps of a chain (see
            :meth:`recompute_chains`, e.g. ``.../block1/unit_2`` or ``Conv_1``) or the original's
            checkpoint node names inside a segment (``.../block1/unit_3/bottleneck_v1/Relu``,
            ``FastPSPModule/Conv/Relu6``, ``CascadeFeatureFusion/Relu``); empty turns it off.

        Returns:
          The selected segments.

        Raises:
          ValueError: a name is not in (or under) any segment.
        """
        chains = self.recompute_chains()
        steps = tuple(step for chain in chains for step in chain)
        known = tuple(dict.fromkeys(self.recompute_segments() + steps))
        selected = recompute.resolve_scopes(names, known, self.name)
        # A coarse segment (a block) is the run of its steps (units) under it.
        groups = []
        for name in selected:
            run = tuple(step for step in steps if step.startswith(name + "/"))
            groups.append(run if run and name not in steps else (name,))
        self._set_groups(groups, selected)
        return selected

    def set_recompute_groups(self, groups: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], ...]:
        """Recomputes each group, a run of consecutive steps of one chain, as one segment.

        Raises:
          ValueError: a group is not a run of consecutive steps of one chain.
        """
        chains = self.recompute_chains()
        checked = []
        for group in groups:
            group = tuple(group)
            if not any(
                chain[i : i + len(group)] == group for chain in chains for i in range(len(chain))
            ):
                raise ValueError(
                    f"{group!r} is not a run of consecutive steps of one chain of {self.name}; "
                    f"the chains are {chains!r}."
                )
            checked.append(group)
        labels = [g[0] if len(g) == 1 else f"{g[0]}..{g[-1].rsplit('/', 1)[-1]}" for g in checked]
        self._set_groups(checked, labels)
        return tuple(checked)

    def _set_groups(self, groups: Sequence[tuple[str, ...]], labels: Sequence[str]) -> None:
        self.recompute_scopes = frozenset(labels)
        self.recompute_groups = frozenset(groups)
        self.backbone.recompute_scopes = frozenset(labels)
        self.backbone.recompute_groups = frozenset(groups)

    def run_segment(self, scope: str, fn, *inputs: tf.Tensor):
        """``fn(*inputs)``, recomputed in backprop when the one-step group ``(scope,)`` was selected."""
        return recompute.call_step(scope, fn, *inputs, recompute=(scope,) in self.recompute_groups)
