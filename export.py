"""Exports a trained model: frozen graph, SavedModel, TFLite (float32, int8) and a checkpoint.

Example (Cityscapes, as the original):
  python export.py --config_path configs/two_stage_icnet_1.0_1025_resnet_v1_stage_1.config \
      --trained_checkpoint train_dir/model.ckpt-100000 --output_dir exported \
      --input_shape 1024,2048,3 --pad_to_shape 1025,2049

See core/deploy/exporter.py for the files written (runners/export.py does the work) and
docs/deployment.md for loading each format. --input_shape is the network's fixed input (its
pyramid pooling sizes its kernels when the graph is built); the SavedModel still serves any
image size by resizing in the graph, and so does the frozen graph with --dynamic_input_size
(or --input_shape=-1,-1,3 --pad_to_shape=H,W).
"""

from __future__ import annotations

from absl import flags

from runners import cli, export_checks

# core.deploy.exporter.FORMATS, written out so that a flag mistake is reported before the
# TensorFlow import (tests/test_bad_inputs.py checks that they agree).
FORMATS = ("frozen_graph", "saved_model", "tflite_float32", "tflite_int8", "onnx")
# core.deploy.exporter.DEFAULT_FORMATS: onnx only when asked (it needs tf2onnx).
DEFAULT_FORMATS = ("frozen_graph", "saved_model", "tflite_float32", "tflite_int8")

flags.DEFINE_list(
    "input_shape",
    None,
    "The network's fixed input: H,W,3 or N,H,W,3 (N may be -1). -1,-1,3 asks for any-size "
    "graphs with the network at --pad_to_shape.",
)
flags.DEFINE_list(
    "pad_to_shape",
    None,
    "Zero-pad the input bottom/right to H,W before the network, e.g. "
    "1025,2049; predictions are cropped back to the input size.",
)
flags.DEFINE_string("config_path", None, "Pipeline .config the model was trained with.")
flags.DEFINE_string(
    "trained_checkpoint", None, "Checkpoint prefix (train_dir/model.ckpt-N) or training directory."
)
flags.DEFINE_string("output_dir", None, "Directory for the exported files.")
flags.DEFINE_bool("output_colours", False, "Output palette RGB colours instead of class ids.")
flags.DEFINE_list("formats", list(DEFAULT_FORMATS), f"Formats to write, from {','.join(FORMATS)}.")
flags.DEFINE_integer(
    "num_calibration_images", 100, "Eval images used to calibrate the int8 TFLite model."
)
flags.DEFINE_multi_string("config_override", None, "Text-format PipelineConfig snippets.")
flags.DEFINE_bool(
    "dynamic_input_size",
    False,
    "The frozen graph takes images of any size (resized to the network and back in the graph), "
    "as the SavedModel's serving_default always does. TFLite stays at --input_shape.",
)
flags.DEFINE_bool(
    "output_scores",
    False,
    "Every format also outputs 'scores': per-class softmax float32 [N,H,W,num_classes].",
)
flags.DEFINE_integer(
    "serving_version",
    None,
    "Write the SavedModel as <output_dir>/saved_model/<N>/ (TF Serving's model_base_path is "
    "<output_dir>/saved_model).",
    lower_bound=1,
)
flags.mark_flags_as_required(["input_shape", "config_path", "trained_checkpoint", "output_dir"])
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    # A flag mistake is one line before the TensorFlow import and the checkpoint restore.
    export_checks.check_export_flags(
        FLAGS.formats, FLAGS.input_shape, FLAGS.pad_to_shape, FLAGS.dynamic_input_size
    )
    from runners.export import export_inference_graph  # noqa: PLC0415 - after flag checks

    result = export_inference_graph(
        config_path=FLAGS.config_path,
        trained_checkpoint=FLAGS.trained_checkpoint,
        output_dir=FLAGS.output_dir,
        input_shape=FLAGS.input_shape,
        pad_to_shape=FLAGS.pad_to_shape,
        output_colours=FLAGS.output_colours,
        formats=FLAGS.formats,
        num_calibration_images=FLAGS.num_calibration_images,
        config_override=FLAGS.config_override,
        dynamic_input_size=FLAGS.dynamic_input_size,
        output_scores=FLAGS.output_scores,
        serving_version=FLAGS.serving_version,
    )
    print(f"Exported to {result.output_dir}: " + ", ".join(sorted(result.summary["files"])))


if __name__ == "__main__":
    cli.run_main(main)
