"""The shared fixtures produce a valid config and readable records."""

from builders import config_util, dataset_builder


def test_tiny_config_loads_and_its_records_read(tiny_config_path):
    config = config_util.load_pipeline_config(tiny_config_path)
    dataset = dataset_builder.build_eval_dataset(config.eval_input_reader, config.eval_config)
    batches = list(dataset)
    assert len(batches) == 3
    assert batches[0]["input_image"].shape == (1, 97, 129, 3)
