"""Shared fixtures: tiny synthetic records, a tiny ICNet pipeline config, and its export.

The records hold 96x128 synthetic street scenes; the config trains an ICNet
at filter_scale 0.125 on 97x97 crops (the smallest size its 1/32 pyramid
pooling with bins up to 4 accepts), so a training step takes well under a
second on 2 CPU cores.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY_CONFIG = """
model {{
  icnet {{
    num_classes: 19
    filter_scale: 0.125
    pooling_factors: 1
    pooling_factors: 2
    pooling_factors: 4
    feature_extractor {{ type: "dilated_resnet50" }}
    hyperparams {{
      batch_norm {{ decay: 0.9 epsilon: 0.00001 }}
      regularizer {{ l2_regularizer {{ weight: 0.0001 }} }}
      initializer {{ variance_scaling_initializer {{ }} }}
    }}
    loss {{
      classification_loss {{ softmax {{ }} }}
      use_auxiliary_loss: true
    }}
  }}
}}
train_config {{
  batch_size: 2
  num_steps: 4
  optimizer {{
    momentum_optimizer {{
      learning_rate {{
        polynomial_decay_learning_rate {{ initial_learning_rate: 0.01 decay_steps: 4 power: 0.9 }}
      }}
      momentum_optimizer_value: 0.9
    }}
  }}
  preprocessor_step {{ random_image_scale {{ min_scale_ratio: 0.75 max_scale_ratio: 1.25 }} }}
  preprocessor_step {{ random_image_crop {{ crop_height: 97 crop_width: 97 }} }}
  preprocessor_step {{ random_horizontal_flip {{ }} }}
}}
train_input_reader {{
  num_readers: 1
  shuffle_buffer: 8
  tf_record_input_reader {{ input_path: "{train}" }}
}}
eval_config {{
  num_examples: 3
  eval_input_type {{ padded_eval_input {{ height: 97 width: 129 }} }}
}}
eval_input_reader {{
  shuffle: false
  num_readers: 1
  tf_record_input_reader {{ input_path: "{val}" }}
}}
"""


@pytest.fixture(scope="session")
def synthetic_records(tmp_path_factory) -> dict[str, str]:
    """``{"train": path, "val": path}``: 6 + 3 synthetic 96x128 scenes."""
    from dataset_tools.create_synthetic_dataset import write_synthetic_dataset

    directory = tmp_path_factory.mktemp("synthetic_records")
    return write_synthetic_dataset(str(directory), num_train=6, num_val=3, height=96, width=128)


@pytest.fixture()
def tiny_config_path(synthetic_records, tmp_path) -> str:
    """Path of a pipeline config training a tiny ICNet on the synthetic records."""
    path = tmp_path / "tiny_icnet.config"
    path.write_text(TINY_CONFIG.format(**synthetic_records))
    return str(path)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, synthetic_records):
    """The session's one export of a tiny ICNet (:class:`tests.runners.export_fixtures.Exported`)."""
    # Imported here: it loads TensorFlow, which the TensorFlow-free tests must not pay for.
    from tests.runners.export_fixtures import exported_model

    return exported_model(tmp_path_factory, synthetic_records)
