"""Filter pruning: channel groups, L1 ranking, exact surgery, the pruned model's config.

The exactness tests compare two networks on the same input in eval mode: the model with the
pruned channels masked out (soft apply: each pruned channel is exactly 0 after its BN) and the
hard-pruned model rebuilt with the new widths. Their logits must agree to float tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from builders import compressor_builder, model_builder
from core.checkpoints import checkpoint_utils
from core.pruning import FilterPruner, build_channel_graph, original_node_to_scope, ranking
from models import ICNet, PSPNet
from protos import compressor_pb2, pipeline_pb2
from runners.compress import pruned_model_config

RESNET = "dilated_resnet50"
MOBILENET = "dilated_mobilenet"


def _randomize_bn(model, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters (fresh ones are 0/1)."""
    rng = np.random.default_rng(seed)
    for name, variable in model.named_variables().items():
        shape = variable.shape
        if name.endswith("moving_mean"):
            variable.assign(rng.normal(0.0, 0.1, shape))
        elif name.endswith("moving_variance"):
            variable.assign(rng.uniform(0.5, 1.5, shape))
        elif name.endswith("gamma"):
            variable.assign(rng.uniform(0.5, 1.5, shape))
        elif name.endswith("beta"):
            variable.assign(rng.normal(0.0, 0.1, shape))


def _built(cls, backbone: str, **kwargs):
    model = cls(5, 0.25, backbone=backbone, **kwargs)
    model.build_variables()
    _randomize_bn(model)
    return model


@pytest.mark.parametrize(
    "cls,backbone,skip",
    [
        (ICNet, RESNET, ()),
        (ICNet, MOBILENET, ()),
        # PSPNet with the original prune config's skips: the pyramid branches keep their width
        # while block4 (which the fuse conv reads through the concat) is pruned.
        (PSPNet, RESNET, tuple(f"PSPModule/Conv{s}" for s in ("", "_1", "_2", "_3"))),
    ],
    ids=["icnet_resnet", "icnet_mobilenet", "pspnet_resnet"],
)
def test_hard_pruning_equals_masked_network(cls, backbone, skip):
    model = _built(cls, backbone)
    images = tf.random.stateless_uniform([1, *model.min_input_size(), 3], (1, 2), -1.0, 1.0)
    original = model(images, training=False, include_aux=True)

    soft = FilterPruner(0.5, skip_scopes=skip, soft_apply=True).prune(model)
    hard = FilterPruner(0.5, skip_scopes=skip).prune(model)
    assert soft.masks.keys() == hard.masks.keys()
    for name in soft.masks:
        np.testing.assert_array_equal(soft.masks[name], hard.masks[name])

    checkpoint_utils.assign_named_tensors(model.named_variables(), soft.tensors, "soft")
    masked = model(images, training=False, include_aux=True)
    pruned = cls(5, 0.25, backbone=backbone, layer_widths=hard.layer_widths)
    pruned.build_variables()
    assigned = checkpoint_utils.assign_named_tensors(pruned.named_variables(), hard.tensors, "hard")
    assert len(assigned) == len(pruned.named_variables())
    result = pruned(images, training=False, include_aux=True)

    assert pruned.count_parameters() < 0.6 * model.count_parameters()
    assert set(result) == set(masked)
    for key in masked:
        scale = float(tf.reduce_max(tf.abs(masked[key])))
        assert scale > 0
        # Pruning really changed the network (the test is not vacuous) ...
        assert float(tf.reduce_max(tf.abs(original[key] - masked[key]))) > 1e-3 * scale
        # ... and removing the masked channels changes nothing.
        np.testing.assert_allclose(result[key], masked[key], atol=1e-5 * scale + 1e-6)


def test_residual_and_fusion_groups_share_one_mask():
    model = ICNet(5, 0.125, backbone=RESNET)
    model.build_variables()
    graph = build_channel_graph(model)
    prefix = "SharedFeatureExtractor/resnet_v1_50/block1"
    block1 = graph.group_of[f"{prefix}/unit_1/bottleneck_v1/shortcut"]
    assert block1.producers == [
        f"{prefix}/unit_1/bottleneck_v1/shortcut",
        *(f"{prefix}/unit_{u}/bottleneck_v1/conv3" for u in (1, 2, 3)),
    ]
    consumers = {c.scope for c in block1.consumers}
    # block1 feeds the next units, block2 and (the half branch) the first CFF projection.
    assert "CascadeFeatureFusion/Conv" in consumers
    assert "SharedFeatureExtractor/resnet_v1_50/block2/unit_1/bottleneck_v1/shortcut" in consumers
    fusion = graph.group_of["CascadeFeatureFusion/DilatedConv"]
    assert fusion.producers == ["CascadeFeatureFusion/DilatedConv", "CascadeFeatureFusion/Conv"]
    assert {c.scope for c in fusion.consumers} == {
        "CascadeFeatureFusion_1/DilatedConv",
        "AuxOutput_1",
    }
    # Prediction convs are consumers only.
    assert all(head not in graph.group_of for head in ("Predictions/Conv", "AuxOutput"))


def test_psp_concat_offsets_and_depthwise_pass_through():
    model = PSPNet(5, 0.125, backbone=MOBILENET)
    model.build_variables()
    graph = build_channel_graph(model)
    final = graph.group_of["SharedFeatureExtractor/MobilenetV2/expanded_conv_16/project"]
    fuse = "PSPModule/Conv_4"
    offsets = {
        group.name: c.offset for group in graph.groups for c in group.consumers if c.scope == fuse
    }
    assert offsets[final.name] == 0
    assert offsets["PSPModule/Conv"] == final.size
    assert offsets["PSPModule/Conv_3"] == final.size + 3 * 512
    expand = graph.group_of["SharedFeatureExtractor/MobilenetV2/expanded_conv_5/expand"]
    assert expand.passthrough == ["SharedFeatureExtractor/MobilenetV2/expanded_conv_5/depthwise"]
    # expanded_conv_5 adds onto its input: its project joins expanded_conv_4's group.
    assert (
        graph.group_of["SharedFeatureExtractor/MobilenetV2/expanded_conv_5/project"]
        is (graph.group_of["SharedFeatureExtractor/MobilenetV2/expanded_conv_3/project"])
    )


def test_l1_ranking_keeps_the_largest_in_order():
    kernel = np.zeros([1, 1, 2, 5], np.float32)
    kernel[0, 0, 0] = [1.0, -5.0, 3.0, 0.5, -2.0]
    np.testing.assert_allclose(ranking.filter_l1_norms(kernel), [1.0, 5.0, 3.0, 0.5, 2.0])
    mask = ranking.keep_mask(ranking.filter_l1_norms(kernel), ranking.kept_count(5, 0.5))
    np.testing.assert_array_equal(mask, [False, True, True, False, False])
    # Ties keep the lower index; groups rank by the summed norms of their producers.
    np.testing.assert_array_equal(ranking.keep_mask(np.ones(4), 2), [True, True, False, False])
    tensors = {"a/weights": kernel, "b/weights": -kernel[..., ::-1]}
    np.testing.assert_allclose(ranking.group_scores(["a", "b"], tensors), [3.0, 5.5, 6.0, 5.5, 3.0])
    with pytest.raises(ValueError, match="fraction of filters kept"):
        ranking.kept_count(4, 1.5)


def test_unknown_skip_scope_is_named():
    model = ICNet(5, 0.125, backbone=RESNET)
    model.build_variables()
    with pytest.raises(ValueError, match="Nope/Conv"):
        FilterPruner(0.5, skip_scopes=["Nope/Conv"]).prune(model)


def test_icnet_1_0_at_half_has_the_parameters_of_filter_scale_0_5():
    full = ICNet(19, 1.0)
    full.build_variables()
    result = FilterPruner(0.5).prune(full)
    half = ICNet(19, 0.5)
    assert result.layer_widths == {
        scope: layer.filters
        for scope, layer in half.named_layers().items()
        if scope not in ("Predictions/Conv", "AuxOutput", "AuxOutput_1")
    }
    pruned = ICNet(19, 1.0, layer_widths=result.layer_widths)
    pruned.build_variables()
    checkpoint_utils.assign_named_tensors(pruned.named_variables(), result.tensors, "pruned")
    assert pruned.count_parameters() == 6_708_051
    half.build_variables()
    assert half.count_parameters() == 6_708_051


PIPELINE = """
model {
  %s {
    num_classes: 5
    filter_scale: 0.25
    feature_extractor { type: "%s" }
    hyperparams {
      batch_norm { decay: 0.9 epsilon: 0.00001 }
      initializer { variance_scaling_initializer { } }
    }
    loss { classification_loss { softmax { } } }
  }
}
"""


@pytest.mark.parametrize(
    "kind,skip,uniform", [("icnet", (), True), ("pspnet", ("PSPModule/Conv",), False)]
)
def test_pruned_model_config_builds_the_pruned_model(kind, skip, uniform):
    pipeline = text_format.Parse(PIPELINE % (kind, RESNET), pipeline_pb2.PipelineConfig())
    model = model_builder.build(pipeline.model)
    model.build_variables()
    result = FilterPruner(0.5, skip_scopes=skip).prune(model)
    config = pruned_model_config(pipeline, result.layer_widths, 0.5)
    model_config = getattr(config.model, kind)
    if uniform:
        assert model_config.filter_scale == 0.125
        assert not model_config.layer_widths
    else:
        assert model_config.filter_scale == 0.25
        assert 0 < len(model_config.layer_widths) < len(result.layer_widths)
    rebuilt = model_builder.build(config.model)
    rebuilt.build_variables()
    checkpoint_utils.assign_named_tensors(rebuilt.named_variables(), result.tensors, "pruned")
    # Round trip through text, as compress.py writes it.
    text = text_format.MessageToString(config)
    again = model_builder.build(text_format.Parse(text, pipeline_pb2.PipelineConfig()).model)
    assert {s: layer.filters for s, layer in again.named_layers().items()} == {
        s: layer.filters for s, layer in rebuilt.named_layers().items()
    }


def test_original_node_names_map_to_scopes():
    assert original_node_to_scope("...PSPModule/Conv/Conv2D", "x") == "PSPModule/Conv"
    assert (
        original_node_to_scope("block1/unit_1/bottleneck_v1/conv1/Conv2D", "Shared/resnet_v1_50")
        == "Shared/resnet_v1_50/block1/unit_1/bottleneck_v1/conv1"
    )
    model = PSPNet(5, 0.125)
    model.build_variables()
    config = compressor_pb2.CompressionConfig()
    with open("configs/compression/pspnet50_resnet_v1_pruner.prune_config") as stream:
        text_format.Parse(stream.read(), config)
    pruner = compressor_builder.build(
        config, compression_factor=0.5, known_scopes=set(model.named_layers())
    )
    assert set(pruner.skip_scopes) == {f"PSPModule/Conv{s}" for s in ("", "_1", "_2", "_3")}
    # One spec per shortcut and per conv3 of the 16 units (see tests/core/pruning/test_prune_config.py).
    assert len(pruner.node_specs) == 4 + 16
