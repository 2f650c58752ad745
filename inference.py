"""Segments an image, a folder of images or a video with a checkpoint or an exported model.

Examples:
  python inference.py --input_path demo.png --output_dir out \
      --config_path configs/two_stage_icnet_1.0_1025_resnet_v1_stage_1.config \
      --trained_checkpoint train_dir/model.ckpt-100000
  python inference.py --input_path frames/ --model_path exported/model_float32.tflite \
      --output_dir out --label_ids

Images of another size than the network input are resized to it and the prediction is resized
back (nearest) to the image size. With a checkpoint the network input is --input_shape
(default 1024,2048,3, padded to 1025,2049 as the original when neither flag is given); an
exported model has its own.
"""

from __future__ import annotations

from absl import flags

from runners import cli

# core.deploy.inference_runner.OVERLAYS, written out so that a flag mistake is reported before
# the TensorFlow import (tests/test_bad_inputs.py checks that they agree).
OVERLAYS = ("side_by_side", "blend")
# core.deploy.onnx_segmenters.RUNTIMES, likewise (tests/core/deploy/test_onnx_export.py).
RUNTIMES = ("onnxruntime", "openvino")

flags.DEFINE_string("input_path", None, "An image, a video, or a folder of .jpg/.jpeg/.png.")
flags.DEFINE_list(
    "input_shape", None, "Network input H,W,3 for a checkpoint (default 1024,2048,3)."
)
flags.DEFINE_list(
    "pad_to_shape", None, "Pad the network input to H,W (checkpoints only), e.g. 1025,2049."
)
flags.DEFINE_string("config_path", None, "Pipeline .config (required with a checkpoint).")
flags.DEFINE_string("trained_checkpoint", None, "Checkpoint prefix or training directory.")
flags.DEFINE_string(
    "model_path", None, "Exported model instead of a checkpoint: .pb, saved_model dir or .tflite."
)
flags.DEFINE_string("output_dir", "./", "Where the results are written.")
flags.DEFINE_bool(
    "label_ids", False, "Write label-id PNGs (the dataset's official ids) instead of overlays."
)
flags.DEFINE_enum("overlay", "side_by_side", list(OVERLAYS), "How overlays are drawn.")
flags.DEFINE_integer("warmup", 2, "Untimed network runs before latency is measured.")
flags.DEFINE_integer("num_threads", None, "TFLite interpreter threads (default: its own).")
flags.DEFINE_enum(
    "runtime", None, list(RUNTIMES), "Runtime of a .onnx --model_path (default onnxruntime)."
)
flags.DEFINE_bool(
    "jit_compile", False, "Compile a checkpoint's graph with XLA (optional; slower on a CPU)."
)
flags.mark_flag_as_required("input_path")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    # Imported here: a flag or config mistake is reported before the TensorFlow import.
    from builders import dataset_metadata_builder  # noqa: PLC0415
    from core.deploy import inference_runner  # noqa: PLC0415
    from runners.inference import load_segmenter  # noqa: PLC0415

    # The inputs are listed before the model is loaded: a wrong path fails in a second.
    inference_runner.find_inputs(FLAGS.input_path)
    segmenter = load_segmenter(
        model_path=FLAGS.model_path,
        config_path=FLAGS.config_path,
        trained_checkpoint=FLAGS.trained_checkpoint,
        input_shape=FLAGS.input_shape,
        pad_to_shape=FLAGS.pad_to_shape,
        num_threads=FLAGS.num_threads,
        jit_compile=FLAGS.jit_compile,
        runtime=FLAGS.runtime,
    )
    report = inference_runner.run_inference(
        segmenter,
        FLAGS.input_path,
        FLAGS.output_dir,
        overlay=FLAGS.overlay,
        label_ids=FLAGS.label_ids,
        warmup=FLAGS.warmup,
        metadata=dataset_metadata_builder.build_for_model(FLAGS.config_path, FLAGS.model_path),
    )
    print(report.summary())


if __name__ == "__main__":
    cli.run_main(main)
