"""Channel dependencies of a built segmentation model: which convs must share a keep-mask.

A *channel group* is one space of feature channels that several tensors share element for
element, so it must be pruned with a single keep-mask:

* its **producers** are the (non-depthwise) convs whose output channels are the group: one conv,
  or every conv whose output meets in a residual add (ResNet: a block's projection ``shortcut``
  and every unit's ``conv3``; MobileNetV2: the ``project`` convs of a residual chain) or in a
  cascade-feature-fusion sum (``DilatedConv`` and ``Conv`` of a CFF unit);
* its **pass-throughs** are depthwise convs, whose output channel ``i`` is input channel ``i``:
  they follow their input's mask (kernel, BN) and put the same channels out;
* its **consumers** are the convs that read the group as (part of) their input, with the offset
  of the group inside a concatenated input (PSPNet's ``PSPModule/Conv_4`` reads
  ``[block4, branch 0, .., branch 3]``). Resizes, pooling, the fast pyramid sum and ReLUs act per
  channel, so they are transparent.

The graph comes from the model through its contract (``models/segmentation_model.py``): the
model's ``declare_channels(graph)`` describes how its ``call`` wires its convs with the four
calls :meth:`ChannelGraph.read`, :meth:`~ChannelGraph.produce`, :meth:`~ChannelGraph.join` and
:meth:`~ChannelGraph.pass_through`, and asks its backbone to do the same for the backbone's
part. This module knows no concrete model: it only records the declarations and checks them
against the built kernels. The pieces that decide channel sharing are few and explicit, and each
is covered by the exactness tests in ``tests/core/pruning/test_pruning.py``. Prediction convs are consumers only; they are never pruned.
A prune config's ``source`` entries can tie two groups into one (:meth:`ChannelGraph.merge`).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol


class ScopedConv(Protocol):
    """What the graph needs of a conv: its slim scope and its number of output filters."""

    scope: str
    filters: int


@dataclasses.dataclass(frozen=True)
class Consumer:
    """A conv reading a group: input channels ``[offset, offset + group.size)`` of ``scope``."""

    scope: str
    offset: int


@dataclasses.dataclass
class ChannelGroup:
    """One shared channel space (see the module docstring).

    Attributes:
      name: a readable name, the scope of its first producer.
      size: number of channels.
      producers: scopes of the convs whose outputs are these channels.
      passthrough: scopes of depthwise convs that map these channels onto themselves.
      consumers: convs reading these channels.
    """

    name: str
    size: int
    producers: list[str] = dataclasses.field(default_factory=list)
    passthrough: list[str] = dataclasses.field(default_factory=list)
    consumers: list[Consumer] = dataclasses.field(default_factory=list)


class ChannelGraph:
    """The channel groups of a model plus each conv's input width, for checks.

    Attributes:
      groups: groups in model order (backbone first).
      group_of: producer or pass-through scope -> its group.
      input_channels: conv scope -> channels of its input.
    """

    def __init__(self, model_name: str):
        self.model_name = model_name
        self.groups: list[ChannelGroup] = []
        self.group_of: dict[str, ChannelGroup] = {}
        self.input_channels: dict[str, int] = {}
        self._layers: dict[str, object] = {}

    # -- construction ----------------------------------------------------------------------

    def produce(self, conv: ScopedConv) -> ChannelGroup:
        """Starts a new group produced by ``conv``."""
        group = ChannelGroup(name=conv.scope, size=conv.filters)
        self.groups.append(group)
        self.join(group, conv)
        return group

    def join(self, group: ChannelGroup, conv: ScopedConv) -> None:
        """Adds ``conv`` as one more producer of ``group`` (a residual or fusion sum)."""
        if conv.filters != group.size:
            raise ValueError(
                f"{self.model_name}: {conv.scope} has {conv.filters} filters but is summed with "
                f"{group.name} ({group.size} channels)."
            )
        group.producers.append(conv.scope)
        self.group_of[conv.scope] = group
        self._layers[conv.scope] = conv

    def pass_through(self, group: ChannelGroup | None, conv: ScopedConv) -> ChannelGroup | None:
        """Registers a depthwise conv on ``group``; returns the group (its output)."""
        if group is not None:
            group.passthrough.append(conv.scope)
            self.group_of[conv.scope] = group
        self._layers[conv.scope] = conv
        return group

    def read(self, layer, *inputs: ChannelGroup | None, channels: int | None = None) -> None:
        """Registers ``layer`` as reading the concatenation of ``inputs`` (None = the image).

        Args:
          layer: any conv with a ``scope`` (a ConvBN or a PredictionConv).
          inputs: groups concatenated in this order along channels; None stands for a fixed,
            unprunable input of ``channels`` channels (the RGB image).
          channels: width of the None input.
        """
        offset = 0
        for group in inputs:
            if group is None:
                offset += channels or 0
                continue
            group.consumers.append(Consumer(layer.scope, offset))
            offset += group.size
        self.input_channels[layer.scope] = offset
        self._layers.setdefault(layer.scope, layer)

    def merge(self, first: ChannelGroup, second: ChannelGroup) -> ChannelGroup:
        """Ties two groups to one keep-mask (a prune config's ``source``); returns the result.

        The group earlier in model order absorbs the other (its name is kept): producers,
        pass-throughs and consumers are concatenated and ``group_of`` is updated, so ranking sums
        the L1 norms of both groups' producers. Merging a group with itself changes nothing.
        A consumer of both groups keeps one entry per offset, so surgery slices each of them.

        Raises:
          ValueError: the groups have different widths.
        """
        if first is second:
            return first
        if first.size != second.size:
            raise ValueError(
                f"{self.model_name}: cannot tie group {first.name} ({first.size} channels) to "
                f"group {second.name} ({second.size} channels)."
            )
        order = {id(group): index for index, group in enumerate(self.groups)}
        keep, gone = sorted((first, second), key=lambda group: order[id(group)])
        keep.producers.extend(gone.producers)
        keep.passthrough.extend(gone.passthrough)
        keep.consumers.extend(gone.consumers)
        for scope in (*gone.producers, *gone.passthrough):
            self.group_of[scope] = keep
        self.groups = [group for group in self.groups if group is not gone]
        return keep

    def check(self, model) -> None:
        """Checks that every scoped layer is covered and input widths match the kernels.

        Raises:
          ValueError: naming the conv, if the graph and the built model disagree (a model
            change that this module does not know about yet).
        """
        variables = model.named_variables()
        for scope, layer in model.named_layers().items():
            if scope not in self.input_channels:
                raise ValueError(
                    f"{self.model_name}: conv {scope} is not in the channel graph; "
                    f"{type(model).__name__}.declare_channels must read it (say where its "
                    "input comes from)."
                )
            weights = "depthwise_weights" if getattr(layer, "depthwise", False) else "weights"
            cin = int(variables[f"{scope}/{weights}"].shape[2])
            if cin != self.input_channels[scope]:
                raise ValueError(
                    f"{self.model_name}: {scope} reads {cin} channels but the channel graph "
                    f"gives it {self.input_channels[scope]}."
                )


def build_channel_graph(model) -> ChannelGraph:
    """The channel groups a built model declares (its ``declare_channels``), checked.

    Args:
      model: a built model (``model.build_variables()`` has run) that implements the pruning
        structure of the model contract (``models/segmentation_model.py``).

    Returns:
      The :class:`ChannelGraph`, checked against the model's kernels.

    Raises:
      ValueError: the model declares no channel structure, or the declared graph disagrees
        with the kernels (naming the conv).
    """
    name = getattr(model, "name", type(model).__name__)
    declare = getattr(model, "declare_channels", None)
    if not callable(declare):
        raise ValueError(
            f"{type(model).__name__} declares no channel structure; implement declare_channels "
            "to prune it (see models/segmentation_model.py)."
        )
    graph = ChannelGraph(name)
    try:
        declare(graph)
    except NotImplementedError as error:  # the contract's default: nothing declared
        raise ValueError(str(error)) from None
    graph.check(model)
    return graph
