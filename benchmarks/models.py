"""The benchmarked models, built from the repository's configs with random weights.

Speed does not depend on the weights, so no trained checkpoint is needed: every model is built
from its config with a fixed seed. ``icnet_0.5_compressed`` is what ``compress.py`` makes of
ICNet 1.0: a random ICNet 1.0 checkpoint is written and pruned with
``runners.compress.compress`` (compress.py's runner) at factor 0.5, and the pruned checkpoint and config it
writes are loaded back, as a user would after ``compress.py``.

``--quick`` shrinks every model (``QUICK_FILTER_SCALE``) so that the whole harness runs in
seconds; the configs and code paths stay the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
from collections.abc import Iterator

from absl import logging

from benchmarks.machine import REPO_ROOT

ICNET_CONFIG = "configs/single_stage_icnet_1.0_1025_resnet_v1.config"
MOBILENET_CONFIG = "configs/single_stage_icnet_1.0_1025_mobilenet_v2.config"
PSPNET_CONFIG = "configs/pspnet_1.0_713_resnet_v1.config"
DEMO_CONFIG = "configs/icnet_synthetic_demo.config"
COMPRESSION_FACTOR = 0.5
SEED = 0


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One benchmarked model.

    Attributes:
      key: short name used in the result keys.
      title: name in the tables.
      config_path: the pipeline config, relative to the repository root.
      filter_scale: overrides the config's (None keeps it).
      quick_filter_scale: the filter_scale of ``--quick`` runs.
      compressed_from: key of the model this one is pruned from by compress.py (None: built).
      exported: whether its exported formats are timed (all formats), or the checkpoint model
        only.
      heavy: seconds per forward pass at 1024x2048 on a 2-core CPU; few timed runs.
    """

    key: str
    title: str
    config_path: str
    filter_scale: float | None = None
    quick_filter_scale: float = 0.125
    compressed_from: str | None = None
    exported: bool = False
    heavy: bool = False


MODEL_SPECS = (
    ModelSpec("icnet_1.0", "ICNet 1.0 (ResNet50)", ICNET_CONFIG, exported=True),
    ModelSpec("icnet_0.5", "ICNet 0.5 (built, filter_scale 0.5)", ICNET_CONFIG, 0.5, 0.0625),
    ModelSpec(
        "icnet_0.5_compressed",
        "ICNet 0.5 (ICNet 1.0 compressed by compress.py)",
        ICNET_CONFIG,
        compressed_from="icnet_1.0",
        exported=True,
    ),
    ModelSpec("pspnet50", "PSPNet50", PSPNET_CONFIG, heavy=True),
    ModelSpec("icnet_mobilenet_v2", "ICNet 1.0 (MobileNetV2)", MOBILENET_CONFIG, None, 0.25),
)
SPECS_BY_KEY = {spec.key: spec for spec in MODEL_SPECS}


def config_override(spec: ModelSpec, quick: bool) -> str | None:
    """The ``--config_override`` text that gives the benchmarked variant of the config."""
    scale = spec.quick_filter_scale if quick else spec.filter_scale
    if spec.compressed_from:
        return None  # its config is the one compress.py writes
    if scale is None:
        return None
    return f"model {{ {model_kind(spec.config_path)} {{ filter_scale: {scale} }} }}"


def model_kind(config_path: str) -> str:
    """The model message a config sets (``icnet``, ``pspnet``, ``architecture``), read from it."""
    from builders import config_util, model_builder

    config = config_util.load_pipeline_config(repo_path(config_path), validate=False)
    kind, _ = model_builder.model_config(config)
    return kind


def repo_path(path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)


def precision_policy(mixed_precision: bool) -> str | None:
    """The Keras policy of ``--mixed_precision``, as training picks it (float16 on GPU, else bf16)."""
    from core.training import precision  # imports TensorFlow: only when a model is built

    return precision.precision_policy(mixed_precision)


@contextlib.contextmanager
def dtype_policy(policy: str | None) -> Iterator[None]:
    """Builds models under a Keras dtype policy (None: float32), restoring the previous one."""
    from core.training import precision

    with precision.dtype_policy(policy):
        yield


class ModelStore:
    """Builds each model once (per dtype policy) and remembers why one could not be built.

    Args:
      work_dir: where the compress.py inputs and outputs go.
      quick: build the ``--quick`` variants.
    """

    def __init__(self, work_dir: str, quick: bool = False):
        self.work_dir = work_dir
        self.quick = quick
        self._models: dict[tuple[str, str | None], object] = {}
        self._configs: dict[str, object] = {}
        self._config_paths: dict[str, str] = {}
        self._checkpoints: dict[str, str] = {}
        self.compression_summaries: dict[str, dict] = {}

    def spec(self, key: str) -> ModelSpec:
        return SPECS_BY_KEY[key]

    def config_path(self, key: str) -> str:
        """Path of the effective pipeline config of a model (compressed: compress.py's output)."""
        if key not in self._config_paths:
            spec = self.spec(key)
            if spec.compressed_from:
                self._compress(spec)
            else:
                self._config_paths[key] = repo_path(spec.config_path)
        return self._config_paths[key]

    def config(self, key: str):
        """The model's ``PipelineConfig``, overrides applied."""
        if key not in self._configs:
            from builders import config_util

            spec = self.spec(key)
            override = config_override(spec, self.quick)
            self._configs[key] = config_util.load_pipeline_config(
                self.config_path(key), override, validate=False
            )
        return self._configs[key]

    def model(self, key: str, policy: str | None = None):
        """The built model with its variables (random, or pruned from a random ICNet 1.0)."""
        cache_key = (key, policy)
        if cache_key not in self._models:
            import keras

            from core.checkpoints import checkpoint_utils
            from runners.common import build_model

            config = self.config(key)
            keras.utils.set_random_seed(SEED)
            with dtype_policy(policy):
                model = build_model(config)
            spec = self.spec(key)
            if spec.compressed_from:
                checkpoint_utils.restore_model(model, self._checkpoints[key])
            self._models[cache_key] = model
        return self._models[cache_key]

    def release(self) -> None:
        """Drops every built model (frees memory between sections)."""
        self._models.clear()
        gc.collect()

    # ------------------------------------------------------------------------- compress.py

    def _compress(self, spec: ModelSpec) -> None:
        """Writes a random checkpoint of the parent and prunes it with compress.py's runner."""
        from builders import config_util
        from core.checkpoints import checkpoint_utils
        from runners import compress as compression

        parent = spec.compressed_from
        parent_dir = os.path.join(self.work_dir, f"{parent}_checkpoint")
        os.makedirs(parent_dir, exist_ok=True)
        # compress() reads its config from a file: write the effective (quick) one.
        parent_config = config_util.write_pipeline_config(self.config(parent), parent_dir)
        prefix = os.path.join(parent_dir, "model.ckpt")
        checkpoint_utils.make_checkpoint(self.model(parent)).write(prefix)
        output = compression.compress(
            config_path=parent_config,
            input_checkpoint=prefix,
            output_dir=os.path.join(self.work_dir, f"{spec.key}_pruned"),
            compression_factor=COMPRESSION_FACTOR,
            flops_input_size=None,  # the params section counts FLOPs itself
        )
        logging.info("compress.py: %s", output.summary)
        self.compression_summaries[spec.key] = output.summary
        self._config_paths[spec.key] = output.pipeline_config
        self._checkpoints[spec.key] = output.checkpoint
