"""Prune configs in the original's schema: source ties, following checks, names, shipped files.

The expected keep-masks are computed here with numpy from the kernels (summed filter L1 norms,
top ``int(n * factor)`` kept in order), not read back from the pruner.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from builders import compressor_builder, config_util, model_builder
from core.checkpoints import checkpoint_utils
from core.pruning import FilterPruner
from core.pruning.pruner import NodeSpec
from models import ICNet
from protos import compressor_pb2
from tests.snippets import REPO_ROOT

REPO = REPO_ROOT
RESNET = "SharedFeatureExtractor/resnet_v1_50"
UNIT1 = f"{RESNET}/block1/unit_1/bottleneck_v1"
UNIT2 = f"{RESNET}/block1/unit_2/bottleneck_v1"


def _prune_config(text: str) -> compressor_pb2.CompressionConfig:
    return text_format.Parse(text, compressor_pb2.CompressionConfig())


def _pruner(model, text: str, soft_apply: bool = False, skip_nodes=()) -> FilterPruner:
    return compressor_builder.build(
        _prune_config(text),
        compression_factor=0.5,
        known_scopes=set(model.named_layers()),
        skip_nodes=skip_nodes,
        soft_apply=soft_apply,
        source="test.prune_config",
    )


def _top(norms: np.ndarray, keep: int) -> np.ndarray:
    """Indices of the ``keep`` largest values, ascending (numpy oracle of the L1 ranking)."""
    return np.sort(np.argsort(-norms, kind="stable")[:keep])


@pytest.fixture(scope="module")
def icnet():
    model = ICNet(5, 0.125)
    model.build_variables()
    return model


# In the original's node names: ties the conv1 of block1's units 1 and 2, which the model's
# structure leaves independent (each feeds only its own conv2).
ORIGINAL_STYLE_TIE = """
compression_strategy {
  filter_pruner {
    input { name: "Preprocessor/sub" }
    output { name: "Predictions/Conv/Conv2D" }
    node_scope: "SharedFeatureExtractor/resnet_v1_50"
    node {
      target { name: "block1/unit_2/bottleneck_v1/conv1/Conv2D" }
      source { name: "block1/unit_1/bottleneck_v1/conv1/Conv2D" }
      following { name: "block1/unit_2/bottleneck_v1/conv1/BatchNorm/FusedBatchNorm" }
      following { name: "block1/unit_2/bottleneck_v1/conv2/Conv2D" }
    }
    node {
      node_scope: ""
      target { name: "CascadeFeatureFusion/DilatedConv/Conv2D" }
      source { name: "CascadeFeatureFusion/Conv/Conv2D" }
      following { name: "...AuxOutput_1/Conv2D" }
    }
  }
}
"""


def test_original_node_names_resolve_to_our_scopes(icnet):
    config = _prune_config(ORIGINAL_STYLE_TIE).compression_strategy.filter_pruner
    specs = compressor_builder.node_specs(config, set(icnet.named_layers()), "x.prune_config")
    assert [(s.target, s.source, s.following_convs, s.following_batch_norms) for s in specs] == [
        (f"{UNIT2}/conv1", f"{UNIT1}/conv1", (f"{UNIT2}/conv2",), (f"{UNIT2}/conv1",)),
        ("CascadeFeatureFusion/DilatedConv", "CascadeFeatureFusion/Conv", ("AuxOutput_1",), ()),
    ]
    assert specs[0].label == "x.prune_config, node 1"
    # The same spec in our layer names resolves identically.
    ours = _prune_config(
        """compression_strategy { filter_pruner {
             node_scope: "SharedFeatureExtractor/resnet_v1_50"
             node {
               target { name: "block1/unit_2/bottleneck_v1/conv1" }
               source { name: "SharedFeatureExtractor/resnet_v1_50/block1/unit_1/bottleneck_v1/conv1" }
               following { name: "block1/unit_2/bottleneck_v1/conv1/BatchNorm" }
               following { name: "block1/unit_2/bottleneck_v1/conv2" }
             } } }"""
    ).compression_strategy.filter_pruner
    again = compressor_builder.node_specs(ours, set(icnet.named_layers()), "x.prune_config")
    assert again == specs[:1]


def test_source_tie_makes_both_convs_keep_the_summed_l1_top_channels():
    model = ICNet(5, 0.125)
    model.build_variables()
    rng = np.random.default_rng(3)
    variables = model.named_variables()
    kernels = {}
    for scope in (f"{UNIT1}/conv1", f"{UNIT2}/conv1"):
        shape = variables[f"{scope}/weights"].shape
        kernels[scope] = rng.normal(0.0, 1.0, shape).astype(np.float32)
        variables[f"{scope}/weights"].assign(kernels[scope])
        for leaf, low in (("gamma", 0.5), ("moving_variance", 0.5)):
            variables[f"{scope}/BatchNorm/{leaf}"].assign(rng.uniform(low, 1.5, shape[-1]))
        variables[f"{scope}/BatchNorm/beta"].assign(rng.normal(0.0, 0.2, shape[-1]))
    norms1, norms2 = (np.abs(k.astype(np.float64)).sum(axis=(0, 1, 2)) for k in kernels.values())
    channels = norms1.size
    assert channels == 8  # 64 filters at filter_scale 0.125
    keep = channels // 2
    expected = _top(norms1 + norms2, keep)
    # Not vacuous: on their own the two convs would keep different channels.
    assert not np.array_equal(_top(norms1, keep), _top(norms2, keep))
    # The channels the two convs read stay whole, so their kernels are only cut along cout.
    inputs = (f"{RESNET}/conv1", f"{UNIT1}/shortcut")
    automatic = FilterPruner(0.5, skip_scopes=inputs).prune(model)
    np.testing.assert_array_equal(
        automatic.tensors[f"{UNIT2}/conv1/weights"], kernels[f"{UNIT2}/conv1"][..., _top(norms2, 4)]
    )

    tied = _pruner(model, ORIGINAL_STYLE_TIE, skip_nodes=inputs).prune(model)
    group = tied.graph.group_of[f"{UNIT2}/conv1"]
    assert group is tied.graph.group_of[f"{UNIT1}/conv1"]
    assert len(tied.graph.groups) == len(automatic.graph.groups) - 1
    np.testing.assert_array_equal(np.flatnonzero(tied.masks[group.name]), expected)
    np.testing.assert_allclose(tied.scores[group.name], norms1 + norms2, rtol=1e-6)
    for scope, kernel in kernels.items():
        np.testing.assert_array_equal(tied.tensors[f"{scope}/weights"], kernel[..., expected])
        gamma = variables[f"{scope}/BatchNorm/gamma"].numpy()
        np.testing.assert_array_equal(tied.tensors[f"{scope}/BatchNorm/gamma"], gamma[expected])
        conv2 = scope.replace("conv1", "conv2")
        assert tied.tensors[f"{conv2}/weights"].shape[2] == keep
    # Everything else is pruned exactly as without the config.
    for name, mask in automatic.masks.items():
        if name in tied.masks and name != group.name:
            np.testing.assert_array_equal(tied.masks[name], mask)

    # The tied plan is a valid network: hard pruning equals masking the pruned channels.
    images = tf.random.stateless_uniform([1, *model.min_input_size(), 3], (4, 5), -1.0, 1.0)
    soft = _pruner(model, ORIGINAL_STYLE_TIE, soft_apply=True, skip_nodes=inputs).prune(model)
    checkpoint_utils.assign_named_tensors(variables, soft.tensors, "soft")
    masked = model(images, training=False)["logits"]
    pruned = ICNet(5, 0.125, layer_widths=tied.layer_widths)
    pruned.build_variables()
    checkpoint_utils.assign_named_tensors(pruned.named_variables(), tied.tensors, "hard")
    logits = pruned(images, training=False)["logits"]
    scale = float(tf.reduce_max(tf.abs(masked)))
    np.testing.assert_allclose(logits, masked, atol=1e-5 * scale + 1e-6)


def test_mismatched_source_width_names_both_layers(icnet):
    config = """compression_strategy { filter_pruner { node {
        target { name: "FastPSPModule/Conv" }
        source { name: "SharedFeatureExtractor/resnet_v1_50/block1/unit_1/bottleneck_v1/conv1" }
    } } }"""
    with pytest.raises(ValueError, match="mismatched source") as error:
        _pruner(icnet, config).prune(icnet)
    message = str(error.value)
    assert "FastPSPModule/Conv writes 64" in message
    assert f"{UNIT1}/conv1 writes 8" in message
    assert "test.prune_config, node 1" in message


def test_prediction_conv_cannot_be_a_target(icnet):
    config = """compression_strategy { filter_pruner { node {
        target { name: "Predictions/Conv" } source { name: "CascadeFeatureFusion_1/Conv" }
    } } }"""
    with pytest.raises(ValueError, match="target Predictions/Conv is a prediction conv"):
        _pruner(icnet, config).prune(icnet)


@pytest.mark.parametrize(
    "entry",
    [
        'node { target { name: "block1/unit_1/bottleneck_v1/shortcuts" } }',
        'node { target { name: "block1/unit_1/bottleneck_v1/conv1" }'
        ' source { name: "block1/unit_1/bottleneck_v1/shortcuts/Conv2D" } }',
        'node { target { name: "block1/unit_1/bottleneck_v1/conv1" }'
        ' following { name: "block1/unit_1/bottleneck_v1/shortcuts/BatchNorm/FusedBatchNorm" } }',
        'skip_node { name: "block1/unit_1/bottleneck_v1/shortcuts" }',
    ],
    ids=["target", "source", "following", "skip_node"],
)
def test_unknown_layer_is_named_with_a_suggestion(icnet, entry):
    config = f'compression_strategy {{ filter_pruner {{ node_scope: "{RESNET}" {entry} }} }}'
    with pytest.raises(ValueError, match="names no conv") as error:
        _pruner(icnet, config)
    message = str(error.value)
    assert "block1/unit_1/bottleneck_v1/shortcuts" in message
    assert "test.prune_config" in message
    assert f"Did you mean '{UNIT1}/shortcut'?" in message


def test_following_that_does_not_read_the_target_is_an_error(icnet):
    config = f"""compression_strategy {{ filter_pruner {{ node_scope: "{RESNET}" node {{
        target {{ name: "block1/unit_1/bottleneck_v1/conv1" }}
        following {{ name: "block2/unit_1/bottleneck_v1/conv1" }}
    }} }} }}"""
    with pytest.raises(ValueError, match="does not read") as error:
        _pruner(icnet, config).prune(icnet)
    message = str(error.value)
    assert "block2/unit_1/bottleneck_v1/conv1 is listed as following" in message
    # ... and says which conv really reads conv1's channels.
    assert message.endswith(f"they are read by {UNIT1}/conv2. Fix or remove the entry.")


def test_following_batch_norm_of_another_conv_is_an_error(icnet):
    config = f"""compression_strategy {{ filter_pruner {{ node_scope: "{RESNET}" node {{
        target {{ name: "block1/unit_1/bottleneck_v1/conv1" }}
        following {{ name: "block1/unit_1/bottleneck_v1/conv2/BatchNorm" }}
    }} }} }}"""
    with pytest.raises(ValueError, match=f"{UNIT1}/conv2/BatchNorm is listed as following"):
        _pruner(icnet, config).prune(icnet)


def test_batch_norm_as_target_is_an_error(icnet):
    config = f"""compression_strategy {{ filter_pruner {{ node_scope: "{RESNET}" node {{
        target {{ name: "block1/unit_1/bottleneck_v1/conv1/BatchNorm/FusedBatchNorm" }}
    }} }} }}"""
    with pytest.raises(ValueError, match="is a batch norm; a target must be a conv"):
        _pruner(icnet, config)


def test_core_node_spec_with_unknown_following_is_named(icnet):
    spec = NodeSpec(target=f"{UNIT1}/conv1", following_convs=("Nope/Conv",), label="api")
    with pytest.raises(ValueError, match="api: following 'Nope/Conv' names no conv"):
        FilterPruner(0.5, node_specs=[spec]).prune(icnet)


@pytest.mark.parametrize(
    "config_path,prune_config_path,kind,skips",
    [
        (
            "configs/single_stage_icnet_1.0_1025_resnet_v1.config",
            "configs/compression/icnet_resnet_v1_pruner.prune_config",
            "icnet",
            (),
        ),
        (
            "configs/pspnet_1.0_713_resnet_v1.config",
            "configs/compression/pspnet50_resnet_v1_pruner.prune_config",
            "pspnet",
            ("PSPModule/Conv", "PSPModule/Conv_1", "PSPModule/Conv_2", "PSPModule/Conv_3"),
        ),
    ],
    ids=["icnet", "pspnet"],
)
def test_shipped_prune_configs_apply_and_match_the_automatic_plan(
    config_path, prune_config_path, kind, skips
):
    override = f"model {{ {kind} {{ filter_scale: 0.125 }} }}"
    config_path, prune_config_path = (
        os.path.join(REPO, path) for path in (config_path, prune_config_path)
    )
    pipeline = config_util.load_pipeline_config(config_path, override, validate=False)
    model = model_builder.build(pipeline.model)
    model.build_variables()
    prune_config = config_util.load_prune_config(prune_config_path)
    pruner = compressor_builder.build(
        prune_config,
        compression_factor=0.5,
        known_scopes=set(model.named_layers()),
        source=prune_config_path,
    )
    assert set(pruner.skip_scopes) == set(skips)
    # Every residual conv3 and (ICNet) every fusion DilatedConv names its source.
    sources = {spec.target: spec.source for spec in pruner.node_specs if spec.source}
    assert len(sources) == 16 + (2 if kind == "icnet" else 0)
    assert sources[f"{RESNET}/block3/unit_6/bottleneck_v1/conv3"] == (
        f"{RESNET}/block3/unit_1/bottleneck_v1/shortcut"
    )
    result = pruner.prune(model)
    automatic = FilterPruner(0.5, skip_scopes=skips).prune(model)
    assert [g.producers for g in result.graph.groups] == [
        g.producers for g in automatic.graph.groups
    ]
    assert result.masks.keys() == automatic.masks.keys()
    for name, mask in automatic.masks.items():
        np.testing.assert_array_equal(result.masks[name], mask)
    assert result.layer_widths == automatic.layer_widths
    assert result.tensors.keys() == automatic.tensors.keys()
    for name, value in automatic.tensors.items():
        np.testing.assert_array_equal(result.tensors[name], value)
