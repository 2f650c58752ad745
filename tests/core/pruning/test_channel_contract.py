"""The pruning structure comes from the models' contract (``declare_channels``).

The expected groups are written out by hand from the architectures (filter_scale 0.125, where
a conv of nominal width ``n`` has ``n // 8`` filters), and were checked to equal the graph the
pruner built before the structure moved into the models:

* ResNet-50: the root conv, per block one residual group (its projection ``shortcut`` plus
  every unit's ``conv3``: 1 + 3/4/6/3 producers of 4 x 64/128/256/512 channels) and per unit two
  inner groups (``conv1``, ``conv2``): 1 + 4 + 2 * 16 = 37 groups.
* MobileNetV2: the stem, 16 ``expand`` groups (blocks 1..16) and one group per stage of
  residual blocks (0 | 1-2 | 3-5 | 6-9 | 10-12 | 13-15 | 16): 1 + 16 + 7 = 24 groups.
* ICNet adds the fast PSP conv, the four full-branch convs and the two CFF sums (+7; +1 in
  pretrain mode); PSPNet adds the four pyramid levels and the fuse conv (+5).
"""

from __future__ import annotations

import pytest

from core.pruning import FilterPruner, build_channel_graph
from models import ICNet, PSPNet
from tests.models.toy_net import PrunableToyNet, ToyNet

RESNET = "SharedFeatureExtractor/resnet_v1_50"
MOBILENET = "SharedFeatureExtractor/MobilenetV2"


def _graph(cls, backbone: str, **kwargs):
    model = cls(3, 0.125, backbone=backbone, **kwargs)
    model.build_variables()
    return model, build_channel_graph(model)


def _groups(graph):
    return {group.name: group for group in graph.groups}


@pytest.mark.parametrize(
    "cls, backbone, kwargs, count",
    [
        (ICNet, "dilated_resnet50", {}, 37 + 7),
        (ICNet, "dilated_resnet50", {"pretrain_single_branch_mode": True}, 37 + 1),
        (ICNet, "dilated_mobilenet", {}, 24 + 7),
        (ICNet, "dilated_mobilenet", {"pretrain_single_branch_mode": True}, 24 + 1),
        (PSPNet, "dilated_resnet50", {}, 37 + 5),
        (PSPNet, "dilated_mobilenet", {}, 24 + 5),
    ],
)
def test_group_counts(cls, backbone, kwargs, count):
    _, graph = _graph(cls, backbone, **kwargs)
    assert len(graph.groups) == count


def test_icnet_resnet_groups():
    _, graph = _graph(ICNet, "dilated_resnet50")
    groups = _groups(graph)
    # Residual groups: (size, producers).
    for block, (size, units) in enumerate(((32, 3), (64, 4), (128, 6), (256, 3)), start=1):
        group = groups[f"{RESNET}/block{block}/unit_1/bottleneck_v1/shortcut"]
        assert group.size == size
        assert group.producers == [f"{RESNET}/block{block}/unit_1/bottleneck_v1/shortcut"] + [
            f"{RESNET}/block{block}/unit_{u}/bottleneck_v1/conv3" for u in range(1, units + 1)
        ]
    assert groups[f"{RESNET}/conv1"].size == 8
    assert groups[f"{RESNET}/block3/unit_4/bottleneck_v1/conv2"].size == 32
    # Head: (size, producers, consumers with offsets).
    expected = {
        "FastPSPModule/Conv": (64, 1, [("CascadeFeatureFusion/DilatedConv", 0), ("AuxOutput", 0)]),
        "Conv": (8, 1, [("Conv_1", 0)]),
        "Conv_1": (8, 1, [("Conv_2", 0)]),
        "Conv_2": (16, 1, [("Conv_3", 0)]),
        "Conv_3": (32, 1, [("CascadeFeatureFusion_1/Conv", 0)]),
        "CascadeFeatureFusion/DilatedConv": (
            32,
            2,
            [("CascadeFeatureFusion_1/DilatedConv", 0), ("AuxOutput_1", 0)],
        ),
        "CascadeFeatureFusion_1/DilatedConv": (32, 2, [("Predictions/Conv", 0)]),
    }
    for name, (size, producers, consumers) in expected.items():
        group = groups[name]
        assert (group.size, len(group.producers)) == (size, producers), name
        assert [(c.scope, c.offset) for c in group.consumers] == consumers, name
    assert groups["CascadeFeatureFusion/DilatedConv"].producers == [
        "CascadeFeatureFusion/DilatedConv",
        "CascadeFeatureFusion/Conv",
    ]
    # The early endpoint (block1) feeds the first CFF's projection; block4 the fast PSP conv.
    block1 = groups[f"{RESNET}/block1/unit_1/bottleneck_v1/shortcut"]
    assert ("CascadeFeatureFusion/Conv", 0) in [(c.scope, c.offset) for c in block1.consumers]
    block4 = groups[f"{RESNET}/block4/unit_1/bottleneck_v1/shortcut"]
    assert [c.scope for c in block4.consumers][-1] == "FastPSPModule/Conv"
    # Prediction convs are read, never produced; the image is 3 channels.
    assert graph.input_channels["Predictions/Conv"] == 32
    assert graph.input_channels["Conv"] == graph.input_channels[f"{RESNET}/conv1"] == 3
    assert "Predictions/Conv" not in graph.group_of


def test_pspnet_concat_offsets_and_aux_source():
    _, graph = _graph(PSPNet, "dilated_resnet50")
    groups = _groups(graph)
    # Conv_4 reads concat([block4 (256), level 0..3 (512 each, never scaled)]).
    for level, offset in enumerate((256, 768, 1280, 1792)):
        name = "PSPModule/Conv" + (f"_{level}" if level else "")
        assert groups[name].size == 512
        assert [(c.scope, c.offset) for c in groups[name].consumers] == [
            ("PSPModule/Conv_4", offset)
        ]
    assert graph.input_channels["PSPModule/Conv_4"] == 256 + 4 * 512
    assert groups["PSPModule/Conv_4"].size == 64
    block2 = groups[f"{RESNET}/block2/unit_1/bottleneck_v1/shortcut"]
    assert [c.scope for c in block2.consumers][-1] == "AuxPredictions/AuxOutput"


def test_mobilenet_stages_and_depthwise_pass_through():
    _, graph = _graph(ICNet, "dilated_mobilenet")
    groups = _groups(graph)
    # Stage output groups: first block's project, (size, number of project producers).
    stages = {1: (8, 2), 3: (8, 3), 6: (8, 4), 10: (16, 3), 13: (24, 3), 16: (40, 1)}
    for first, (size, producers) in stages.items():
        group = groups[f"{MOBILENET}/expanded_conv_{first}/project"]
        assert (group.size, len(group.producers)) == (size, producers), first
    # The stem (32, unscaled) passes through expanded_conv's depthwise conv; an expand group
    # through its own block's depthwise conv.
    assert groups[f"{MOBILENET}/Conv"].size == 32
    assert groups[f"{MOBILENET}/Conv"].passthrough == [f"{MOBILENET}/expanded_conv/depthwise"]
    expand = groups[f"{MOBILENET}/expanded_conv_14/expand"]
    assert expand.size == 6 * 24  # make_divisible(6 * input width)
    assert expand.passthrough == [f"{MOBILENET}/expanded_conv_14/depthwise"]


def test_icnet_pruning_units_in_model_order():
    model, _ = _graph(ICNet, "dilated_resnet50")
    units = model.pruning_units()
    assert list(units) == [
        "stem",
        "block1",
        "block2",
        "block3",
        "block4",
        "FastPSPModule",
        "full_branch",
        "CascadeFeatureFusion",
        "CascadeFeatureFusion_1",
    ]
    assert units["full_branch"] == ("Conv", "Conv_1", "Conv_2", "Conv_3")
    assert len(units["block2"]) == 4 * 3 + 1  # 4 units x conv1..3, one projection
    assert model.prediction_scopes() == ("Predictions/Conv", "AuxOutput", "AuxOutput_1")


def test_a_model_without_the_contract_is_a_clear_error():
    model = ToyNet(2)
    model.build_variables()
    with pytest.raises(
        ValueError,
        match="ToyNet declares no channel structure; implement declare_channels to prune it",
    ):
        build_channel_graph(model)

    class Plain:  # not even a model
        name = "plain"

    with pytest.raises(ValueError, match="Plain declares no channel structure"):
        build_channel_graph(Plain())


def test_a_model_declaring_its_channels_is_pruned():
    model = PrunableToyNet(2, width=8)
    model.build_variables()
    result = FilterPruner(0.5).prune(model)
    # Two groups of 8 channels, int(8 * 0.5) kept each; the classifier keeps its 2 filters and
    # reads 4 channels.
    assert [(g.name, g.size) for g in result.graph.groups] == [("Toy/conv1", 8), ("Toy/conv2", 8)]
    assert result.layer_widths == {"Toy/conv1": 4, "Toy/conv2": 4}
    assert result.tensors["Toy/conv2/weights"].shape == (3, 3, 4, 4)
    assert result.tensors["Toy/Predictions/weights"].shape == (1, 1, 4, 2)


def test_an_undeclared_conv_is_named():
    class Forgetful(PrunableToyNet):
        def declare_channels(self, graph):
            graph.read(self.conv1, None, channels=3)
            graph.read(self.predictions, graph.produce(self.conv1))

    model = Forgetful(2)
    model.build_variables()
    with pytest.raises(
        ValueError,
        match="Toy/conv2 is not in the channel graph; Forgetful.declare_channels must read it",
    ):
        build_channel_graph(model)
