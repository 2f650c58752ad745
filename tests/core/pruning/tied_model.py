"""The tiny ICNet with a prune config's tie and skip, shared by the latency search and
calibration tests: block1/unit_1's conv2 takes conv1's width, FastPSPModule/Conv is skipped."""

from __future__ import annotations

import dataclasses

from builders import config_util, model_builder
from core.pruning.pruner import FilterPruner, NodeSpec
from tests.conftest import TINY_CONFIG

BLOCK1 = "SharedFeatureExtractor/resnet_v1_50/block1/unit_1/bottleneck_v1"
SKIPPED = "FastPSPModule/Conv"


@dataclasses.dataclass
class TiedModel:
    pipeline: object
    model: object
    pruner: FilterPruner
    graph: object
    tensors: dict
    prunable: object  # what compute_masks returns: the prunable group names


def tiny_tied_model() -> TiedModel:
    """Builds the model (random weights) and its channel graph under the tie and the skip."""
    pipeline = config_util.parse_pipeline_text(TINY_CONFIG.format(train="x", val="y"))
    model = model_builder.build(pipeline.model)
    model.build_variables()
    tie = NodeSpec(target=f"{BLOCK1}/conv2", source=f"{BLOCK1}/conv1", label="test tie")
    pruner = FilterPruner(1.0, skip_scopes=[SKIPPED], node_specs=[tie])
    graph = pruner.channel_graph(model)
    tensors = {name: v.numpy() for name, v in model.named_variables().items()}
    prunable, _ = pruner.compute_masks(graph, tensors)
    return TiedModel(pipeline, model, pruner, graph, tensors, prunable)
