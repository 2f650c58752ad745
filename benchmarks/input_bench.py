"""Input pipeline throughput: the demo's training input on synthetic records.

The demo config's ``train_input_reader`` and preprocessing (random scale, 257x257 crop, flip,
batch 8) read synthetic street scenes written by ``dataset_tools/create_synthetic_dataset.py``
(256x512 PNGs, the demo's size). The throughput is ``batch / median time per batch`` over
batches drawn after warm-up, with nothing else running, and is compared with the training
images/s of the demo config (``train/demo``): the pipeline is not the bottleneck when the ratio is
well above 1. (In training both share the CPU, so a ratio near 1 would already slow it down.)
"""

from __future__ import annotations

import os

from benchmarks.models import DEMO_CONFIG, repo_path
from benchmarks.plan import Results

INPUT_KEY = "input/demo"
RECORD_SIZE = (256, 512)
QUICK_RECORD_SIZE = (128, 256)


def measure_input(results: Results, work_dir: str, quick: bool, warmup: int, batches: int) -> None:
    """Times batches of the demo's training input pipeline."""
    from builders import config_util, dataset_builder, preprocessor_builder
    from builders.model_builder import model_config
    from core.analysis import latency
    from dataset_tools.create_synthetic_dataset import write_synthetic_dataset

    height, width = QUICK_RECORD_SIZE if quick else RECORD_SIZE
    directory = os.path.join(work_dir, "input_records")
    paths = write_synthetic_dataset(
        directory, num_train=8 if quick else 32, num_val=1, height=height, width=width, seed=0
    )
    override = (
        f'train_input_reader {{ tf_record_input_reader {{ input_path: "{paths["train"]}" }} }}'
    )
    config = config_util.load_pipeline_config(repo_path(DEMO_CONFIG), override, validate=False)
    ignore_label = model_config(config)[1].loss.ignore_label
    preprocess = preprocessor_builder.build(config.train_config.preprocessor_step, ignore_label)
    batch_size = config.train_config.batch_size
    dataset = dataset_builder.build(
        config.train_input_reader,
        batch_size,
        preprocess,
        is_training=True,
        ignore_label=ignore_label,
    )
    iterator = iter(dataset)
    stats = latency.measure(lambda: next(iterator), warmup=warmup, runs=batches)
    examples_per_s = batch_size / (stats.median_ms / 1000.0)
    values = {
        "config": DEMO_CONFIG,
        "record_size": [height, width],
        "batch_size": batch_size,
        "examples_per_s": examples_per_s,
        "batch": stats.as_dict(),
    }
    train = results.get("train/demo")
    if train:
        values["train_images_per_s"] = train["images_per_s"]
        values["ratio_to_training"] = examples_per_s / train["images_per_s"]
    results.set(INPUT_KEY, **values)
