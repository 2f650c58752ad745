"""The sensitivity tests' oracle: block1 soft-pruned with numpy, scored by eval.py's own path.

Independent of :mod:`core.pruning`: the block1 groups are listed by hand from the ResNet-50
layout, ranked by summed filter L1 norms (top ``int(n * ratio)`` kept), and the mIoU comes from
``runners.eval_loop.evaluate_checkpoint`` on a checkpoint written here.
"""

from __future__ import annotations

import numpy as np

from builders import dataset_builder, model_builder
from core.checkpoints import checkpoint_utils
from core.data.standard_fields import InputDataFields
from core.evaluation.evaluator import EvalOptions
from core.training.recalibration import recalibrate_batch_norm
from runners import eval_loop

RESNET = "SharedFeatureExtractor/resnet_v1_50"


def soft_prune_block1(tensors: dict[str, np.ndarray], ratio: float) -> dict[str, np.ndarray]:
    """Zeroes the pruned channels of every block1 group, ranked by summed filter L1 norms."""
    unit = f"{RESNET}/block1/unit_{{}}/bottleneck_v1"
    groups = [[f"{RESNET}/block1/unit_1/bottleneck_v1/shortcut"]]
    groups[0] += [unit.format(u) + "/conv3" for u in (1, 2, 3)]  # one residual add
    groups += [[unit.format(u) + f"/{conv}"] for u in (1, 2, 3) for conv in ("conv1", "conv2")]
    pruned = {name: value.copy() for name, value in tensors.items()}
    for producers in groups:
        scores = sum(np.abs(tensors[f"{p}/weights"]).sum(axis=(0, 1, 2)) for p in producers)
        keep = int(scores.size * ratio)
        dropped = np.argsort(-scores, kind="stable")[keep:]
        for scope in producers:
            pruned[f"{scope}/weights"][..., dropped] = 0
            for leaf in ("gamma", "beta", "moving_mean"):
                pruned[f"{scope}/BatchNorm/{leaf}"][dropped] = 0
    return pruned


def evaluate_tensors(
    pipeline, tensors, folder, name: str, num_examples: int, recalibrate: bool = False
) -> dict:
    """eval.py's metrics of a fresh model holding ``tensors``.

    With ``recalibrate`` the batch-norm statistics are first recomputed over the first seeded
    training batch (2 images), as ``--recalibrate_bn_batches=1`` does.
    """
    model = model_builder.build(pipeline.model)
    model.build_variables()
    checkpoint_utils.assign_named_tensors(model.named_variables(), tensors, "test tensors")
    if recalibrate:
        dataset = dataset_builder.build_train_dataset(pipeline, 2, 255, 0)
        batch = next(iter(dataset))
        images = recalibrate_batch_norm(
            model, [{InputDataFields.input_image: batch[InputDataFields.input_image]}]
        )
        assert images == 2
    prefix = str(folder / name / "model.ckpt-1")
    checkpoint_utils.make_checkpoint(model).write(prefix)
    options = EvalOptions(num_examples=num_examples)
    return eval_loop.evaluate_checkpoint(pipeline, prefix, str(folder / f"{name}_eval"), options)
