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

The graph is derived from the model's own structure (its layer objects and the way ``call``
wires them, which the model code documents), not from a traced TF graph: the pieces that decide
channel sharing are few and explicit, and each is covered by the exactness tests in
``tests/core/pruning/test_pruning.py``. Prediction convs are consumers only; they are never pruned.
A prune config's ``source`` entries can tie two groups into one (:meth:`ChannelGraph.merge`).
"""

from __future__ import annotations

import dataclasses

from models.backbones.mobilenet_v2 import DilatedMobileNetV2
from models.backbones.resnet_v1 import DilatedResNet50
from models.icnet import ICNet
from models.layers.conv_bn import ConvBN
from models.pspnet import PSPNet
from models.segmentation_model import SegmentationModel


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

    def produce(self, conv: ConvBN) -> ChannelGroup:
        """Starts a new group produced by ``conv``."""
        group = ChannelGroup(name=conv.scope, size=conv.filters)
        self.groups.append(group)
        self.join(group, conv)
        return group

    def join(self, group: ChannelGroup, conv: ConvBN) -> None:
        """Adds ``conv`` as one more producer of ``group`` (a residual or fusion sum)."""
        if conv.filters != group.size:
            raise ValueError(
                f"{self.model_name}: {conv.scope} has {conv.filters} filters but is summed with "
                f"{group.name} ({group.size} channels)."
            )
        group.producers.append(conv.scope)
        self.group_of[conv.scope] = group
        self._layers[conv.scope] = conv

    def pass_through(self, group: ChannelGroup | None, conv: ConvBN) -> ChannelGroup | None:
        """Registers a depthwise conv on ``group``; returns the group (its output)."""
        if group is not None:
            group.passthrough.append(conv.scope)
            self.group_of[conv.scope] = group
        self._layers[conv.scope] = conv
        return group

    def read(self, layer, *inputs: ChannelGroup | None, channels: int | None = None) -> None:
        """Registers ``layer`` as reading the concatenation of ``inputs`` (None = the image).

        Args:
          layer: a ConvBN or PredictionConv.
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

    def check(self, model: SegmentationModel) -> None:
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
                    "core/pruning/dependency.py must learn where its input comes from."
                )
            weights = "depthwise_weights" if getattr(layer, "depthwise", False) else "weights"
            cin = int(variables[f"{scope}/{weights}"].shape[2])
            if cin != self.input_channels[scope]:
                raise ValueError(
                    f"{self.model_name}: {scope} reads {cin} channels but the channel graph "
                    f"gives it {self.input_channels[scope]}."
                )


def _resnet(graph: ChannelGraph, backbone: DilatedResNet50) -> dict[str, ChannelGroup]:
    graph.read(backbone.root, None, channels=3)
    current = graph.produce(backbone.root)
    endpoints = {}
    for index, block_slice in enumerate(backbone._block_slices):
        for unit in backbone.units[block_slice]:
            graph.read(unit.conv1, current)
            if unit.shortcut is not None:
                graph.read(unit.shortcut, current)
                output = graph.produce(unit.shortcut)
            else:
                output = current  # identity shortcut: conv3 adds onto the input's channels
            inner = graph.produce(unit.conv1)
            graph.read(unit.conv2, inner)
            inner = graph.produce(unit.conv2)
            graph.read(unit.conv3, inner)
            graph.join(output, unit.conv3)
            current = output
        endpoints[f"block{index + 1}"] = current
    return endpoints


def _mobilenet(graph: ChannelGraph, backbone: DilatedMobileNetV2) -> dict[str, ChannelGroup]:
    from models.backbones.mobilenet_v2 import layer_name

    graph.read(backbone.stem, None, channels=3)
    current = graph.produce(backbone.stem)
    endpoints = {}
    for index, block in enumerate(backbone.blocks):
        inner = current
        if block.expand is not None:
            graph.read(block.expand, current)
            inner = graph.produce(block.expand)
        graph.read(block.depthwise, inner)
        inner = graph.pass_through(inner, block.depthwise)
        graph.read(block.project, inner)
        if block.residual:
            graph.join(current, block.project)
        else:
            current = graph.produce(block.project)
        endpoints[layer_name(index)] = current
    return endpoints


def _backbone(graph: ChannelGraph, backbone) -> dict[str, ChannelGroup]:
    if isinstance(backbone, DilatedResNet50):
        return _resnet(graph, backbone)
    if isinstance(backbone, DilatedMobileNetV2):
        return _mobilenet(graph, backbone)
    raise ValueError(f"No channel-dependency rules for backbone {type(backbone).__name__}.")


def _icnet(graph: ChannelGraph, model: ICNet) -> None:
    endpoints = _backbone(graph, model.backbone)
    final = endpoints[model.backbone.final_endpoint]
    graph.read(model.psp.conv, final)  # the fast pyramid sum keeps the channels
    quarter = graph.produce(model.psp.conv)
    if model.pretrain_single_branch_mode:
        graph.read(model.predictions, quarter)
        graph.read(model.aux_heads[0], endpoints[model.backbone.default_aux_endpoint])
        return
    full: ChannelGroup | None = None
    for conv in model.full_branch:
        graph.read(conv, full, channels=3)
        full = graph.produce(conv)
    coarse = quarter
    fines = (endpoints[model.backbone.early_endpoint], full)
    for unit, fine, aux in zip(model.cff, fines, model.aux_heads, strict=True):
        graph.read(unit.dilated_conv, coarse)
        graph.read(unit.projection_conv, fine)
        graph.read(aux, coarse)  # the aux head sees the zoomed coarse input
        fused = graph.produce(unit.dilated_conv)
        graph.join(fused, unit.projection_conv)
        coarse = fused
    graph.read(model.predictions, coarse)


def _pspnet(graph: ChannelGraph, model: PSPNet) -> None:
    endpoints = _backbone(graph, model.backbone)
    final = endpoints[model.backbone.final_endpoint]
    levels = []
    for branch in model.psp.branches:
        graph.read(branch, final)
        levels.append(graph.produce(branch))
    # The fuse conv reads concat([features, level 0, .., level n-1]) (input first).
    graph.read(model.psp.fuse, final, *levels)
    fused = graph.produce(model.psp.fuse)
    graph.read(model.predictions, fused)
    graph.read(model.aux_head, endpoints[model.aux_endpoint])


def build_channel_graph(model: SegmentationModel) -> ChannelGraph:
    """Finds the channel groups of a built ICNet or PSPNet.

    Args:
      model: a built model (``model.build_variables()`` has run).

    Returns:
      The :class:`ChannelGraph`, checked against the model's kernels.

    Raises:
      ValueError: for an unknown model or backbone, or if the graph disagrees with the kernels.
    """
    graph = ChannelGraph(model.name)
    if isinstance(model, ICNet):
        _icnet(graph, model)
    elif isinstance(model, PSPNet):
        _pspnet(graph, model)
    else:
        raise ValueError(f"No channel-dependency rules for model {type(model).__name__}.")
    graph.check(model)
    return graph
