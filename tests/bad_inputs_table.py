"""The bad inputs of tests/test_bad_inputs.py: one row per user mistake, with what the line names.

``args`` may hold placeholders filled by the test: ``{config}`` a valid tiny ICNet config,
``{train}``/``{val}`` its records, ``{out}`` the case's own output directory (it must stay empty),
``{root}`` the shared input folder, and the prepared bad inputs: ``{truncated_config}``,
``{notrecord_config}``, ``{badlabels_config}`` (configs reading a truncated record, a text file,
labels 40 for 19 classes), ``{garbage_config}`` (binary bytes), ``{placeholder_config}`` (an unfilled MODIFY_THIS_FIELD), ``{empty_dir}``, ``{export_dir}``
(an export folder holding no model), ``{model_pb}``, ``{model_tflite}`` (corrupt models),
``{model_onnx}`` (an unknown type), ``{notes_txt}``, and image/label folders
``{nonimage_*}`` (an image of text bytes), ``{zerosize_*}`` (an empty image file),
``{rgblabel_*}`` (an RGB label) and ``{bigvalue_*}`` (label value 9, classes 3).

``imports_tf`` marks the cases that get as far as importing TensorFlow (seconds each); the rest
must fail at flag, config or record checking, before it (the test checks that TensorFlow was
not imported).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: run ``script`` with ``args``; its one ``error:`` line contains ``expect``."""

    id: str
    script: str
    args: tuple[str, ...]
    expect: str
    imports_tf: bool = False


def _case(id_, script, args, expect, imports_tf=False):
    return Case(id_, script, tuple(args), expect, imports_tf)


_EVAL = ["--train_dir={out}/train", "--eval_dir={out}/eval"]
_EXPORT = ["--trained_checkpoint={out}/ckpt", "--output_dir={out}", "--input_shape=97,129,3"]
_COMPRESS = ["--input_checkpoint={out}/ckpt", "--output_dir={out}"]
_INFER = ["--output_dir={out}"]
_SENS = ["--input_checkpoint={out}/ckpt", "--output_dir={out}"]
_RECAL = ["--input_checkpoint={out}/ckpt", "--output_dir={out}"]
_DEMO = ["--output_dir={out}"]
_TRAIN = ["--logdir={out}"]
_FOLDERS = "dataset_tools/create_tfrecord_from_folders.py"

# One row per case, so that the table reads as one.
# fmt: off
CASES = [
    # -------- flags (no TensorFlow)
    _case("eval-missing-flag", "eval.py", ["--config_path={config}", "--eval_dir={out}"], "train_dir"),
    _case("eval-int-flag", "eval.py", ["--config_path={config}", *_EVAL, "--num_examples=abc"], "num_examples"),
    _case("eval-unknown-flag", "eval.py", ["--config_path={config}", *_EVAL, "--num_exmples=3"], "num_exmples"),
    _case("eval-positional", "eval.py", ["--config_path={config}", *_EVAL, "extra"], "unexpected arguments: extra"),
    _case("eval-float-flag", "eval.py", ["--config_path={config}", *_EVAL, "--eval_timeout_secs=soon"], "eval_timeout_secs"),
    _case("export-missing-shape", "export.py", ["--config_path={config}", "--trained_checkpoint=x", *_INFER], "input_shape"),
    _case("export-calib-int", "export.py", ["--config_path={config}", *_EXPORT, "--num_calibration_images=many"], "num_calibration_images"),
    _case("export-bool-flag", "export.py", ["--config_path={config}", *_EXPORT, "--output_colours=maybe"], "output_colours"),
    _case("compress-factor-float", "compress.py", ["--config_path={config}", *_COMPRESS, "--compression_factor=half"], "compression_factor"),
    _case("compress-flops-size", "compress.py", ["--config_path={config}", *_COMPRESS, "--flops_input_size=a,b"], "--flops_input_size must be integers"),
    _case("compress-missing-output", "compress.py", ["--config_path={config}", "--input_checkpoint=x"], "output_dir"),
    _case("inference-overlay-enum", "inference.py", ["--input_path={root}", *_INFER, "--overlay=fancy"], "overlay"),
    _case("inference-missing-input", "inference.py", ["--model_path={model_pb}", *_INFER], "input_path"),
    _case("inference-warmup-int", "inference.py", ["--input_path={root}", *_INFER, "--warmup=x"], "warmup"),
    _case("sensitivity-granularity", "sensitivity.py", ["--config_path={config}", *_SENS, "--granularity=layer"], "granularity"),
    _case("sensitivity-examples-int", "sensitivity.py", ["--config_path={config}", *_SENS, "--num_examples=1.5"], "num_examples"),
    _case("recalibrate-batches-int", "recalibrate_bn.py", ["--config_path={config}", *_RECAL, "--num_batches=x"], "num_batches"),
    _case("recalibrate-missing-ckpt", "recalibrate_bn.py", ["--config_path={config}", *_INFER], "input_checkpoint"),
    _case("demo-negative-steps", "demo.py", [*_DEMO, "--num_steps=-3"], "num_steps"),
    _case("demo-zero-height", "demo.py", [*_DEMO, "--height=0"], "height"),
    _case("demo-train-int", "demo.py", [*_DEMO, "--num_train=many"], "num_train"),
    _case("demo-positional", "demo.py", [*_DEMO, "go"], "unexpected arguments: go"),
    _case("demo-negative-images", "demo.py", [*_DEMO, "--num_images=-1"], "num_images"),
    _case("eval-bool-flag", "eval.py", ["--config_path={config}", *_EVAL, "--image_summaries=maybe"], "image_summaries"),
    _case("inference-threads-int", "inference.py", ["--input_path={root}", *_INFER, "--num_threads=two"], "num_threads"),
    _case("inference-bool-flag", "inference.py", ["--input_path={root}", *_INFER, "--label_ids=perhaps"], "label_ids"),
    _case("compress-latency-size", "compress.py", ["--config_path={config}", *_COMPRESS, "--latency_input_size=1,x"], "--latency_input_size must be integers"),
    _case("compress-runs-int", "compress.py", ["--config_path={config}", *_COMPRESS, "--latency_runs=x"], "latency_runs"),
    _case("recalibrate-batch-size-int", "recalibrate_bn.py", ["--config_path={config}", *_RECAL, "--batch_size=big"], "batch_size"),
    _case("sensitivity-positional", "sensitivity.py", ["--config_path={config}", *_SENS, "now"], "unexpected arguments: now"),
    _case("export-unknown-flag", "export.py", ["--config_path={config}", *_EXPORT, "--out_dir=x"], "out_dir"),
    _case("export-shape-letters", "export.py", ["--config_path={config}", "--trained_checkpoint=x", *_INFER, "--input_shape=a,b,3"], "--input_shape"),
    _case("export-unknown-format", "export.py", ["--config_path={config}", *_EXPORT, "--formats=saved_model,tflite"], "--formats: unknown ['tflite']; choose from frozen_graph"),
    _case("export-pad-letters", "export.py", ["--config_path={config}", *_EXPORT, "--pad_to_shape=1025,x"], "--pad_to_shape='1025,x' is not a comma-separated list of integers"),
    _case("export-pad-too-small", "export.py", ["--config_path={config}", *_EXPORT, "--pad_to_shape=64,64"], "is smaller than the input 97x129"),
    # -------- config files: parsed before the runner is imported (no TensorFlow)
    _case("recalibrate-config-binary", "recalibrate_bn.py", ["--config_path={garbage_config}", *_RECAL], "not a text file"),
    _case("compress-config-placeholder", "compress.py", ["--config_path={placeholder_config}", *_COMPRESS], "MODIFY_THIS_FIELD"),
    _case("eval-override-no-value", "eval.py", ["--config_path={config}", *_EVAL, "--config_override=eval_config {{ num_examples: }}"], "--config_override #1"),
    _case("eval-config-missing", "eval.py", ["--config_path={root}/nope.config", *_EVAL], "config file not found"),
    _case("eval-config-dir", "eval.py", ["--config_path={empty_dir}", *_EVAL], "config file not found"),
    _case("export-config-binary", "export.py", ["--config_path={garbage_config}", *_EXPORT], "garbage.config"),
    _case("export-override-syntax", "export.py", ["--config_path={config}", *_EXPORT, "--config_override=model {{"], "--config_override #1"),
    _case("eval-override-unknown-field", "eval.py", ["--config_path={config}", *_EVAL, "--config_override=model {{ icnet {{ num_clases: 3 }} }}"], 'Did you mean "num_classes"'),
    _case("export-override-type", "export.py", ["--config_path={config}", *_EXPORT, '--config_override=model {{ icnet {{ num_classes: "x" }} }}'], "num_classes"),
    _case("sensitivity-config-placeholder", "sensitivity.py", ["--config_path={placeholder_config}", *_SENS], "placeholder"),
    _case("recalibrate-config-missing", "recalibrate_bn.py", ["--config_path={root}/nope.config", *_RECAL], "nope.config"),
    _case("demo-config-missing", "demo.py", ["--config_path={root}/nope.config", *_DEMO], "config file not found"),
    _case("inference-config-missing", "inference.py", ["--input_path={root}", "--config_path={root}/nope.config", "--trained_checkpoint=x", *_INFER], "config file not found"),
    # -------- train.py flags, and records of every script that reads them: before TensorFlow
    _case("train-unknown-flag", "train.py", ["--config_path={config}", *_TRAIN, "--num_clonez=2"], "num_clonez"),
    _case("train-int-flag", "train.py", ["--config_path={config}", *_TRAIN, "--num_clones=two"], "num_clones"),
    _case("train-positional", "train.py", ["--config_path={config}", *_TRAIN, "go"], "unexpected arguments: go"),
    _case("train-mem-saving-missing-logdir", "train_mem_saving.py", ["--config_path={config}"], "logdir"),
    _case("train-config-missing", "train.py", ["--config_path={root}/nope.config", *_TRAIN], "config file not found"),
    _case("eval-truncated-record", "eval.py", ["--config_path={truncated_config}", *_EVAL], "truncated.record"),
    _case("eval-not-a-record", "eval.py", ["--config_path={notrecord_config}", *_EVAL], "text.record"),
    _case("eval-label-out-of-range", "eval.py", ["--config_path={badlabels_config}", *_EVAL], "label value 40"),
    _case("eval-records-missing", "eval.py", ["--config_path={config}", *_EVAL, '--config_override=eval_input_reader {{ tf_record_input_reader {{ input_path: "/no/val-*.record" }} }}'], "matches no files"),
    _case("sensitivity-not-a-record", "sensitivity.py", ["--config_path={notrecord_config}", *_SENS], "text.record"),
    _case("sensitivity-label-out-of-range", "sensitivity.py", ["--config_path={badlabels_config}", *_SENS], "label value 40"),
    _case("recalibrate-truncated-record", "recalibrate_bn.py", ["--config_path={truncated_config}", *_RECAL], "truncated.record"),
    _case("recalibrate-label-out-of-range", "recalibrate_bn.py", ["--config_path={badlabels_config}", *_RECAL], "label value 40"),
    # -------- dataset tools' flags and folders: before TensorFlow
    _case("folders-missing-flag", _FOLDERS, ["--image_dir={root}", "--output_path={out}/x.record"], "label_dir"),
    _case("folders-missing-dir", _FOLDERS, ["--image_dir={root}/nope", "--label_dir={root}", "--output_path={out}/x.record"], "nope"),
    _case("folders-unknown-palette", _FOLDERS, ["--image_dir={rgblabel_images}", "--label_dir={rgblabel_labels}", "--output_path={out}/x.record", "--label_palette=citiscapes"], "citiscapes"),
    _case("folders-classes-int", _FOLDERS, ["--image_dir={root}", "--label_dir={root}", "--output_path={out}/x.record", "--num_classes=few"], "num_classes"),
    _case("cityscapes-unknown-flag", "dataset_tools/create_cityscapes_tfrecord.py", ["--output_dir={out}", "--split=val"], "split"),
    _case("synthetic-int-flag", "dataset_tools/create_synthetic_dataset.py", ["--output_dir={out}", "--num_train=many"], "num_train"),
    # -------- values, records, checkpoints, models (TensorFlow imported)
    _case("train-missing-logdir", "train.py", ["--config_path={config}"], "logdir"),
    _case("train-bad-num-classes", "train.py", ["--config_path={config}", *_TRAIN, "--config_override=model {{ icnet {{ num_classes: 0 }} }}"], "num_classes", True),
    _case("train-records-missing", "train.py", ["--config_path={config}", *_TRAIN, '--config_override=train_input_reader {{ tf_record_input_reader {{ input_path: "/no/such-*.record" }} }}'], "matches no files"),
    _case("train-truncated-record", "train.py", ["--config_path={truncated_config}", *_TRAIN], "truncated.record"),
    _case("train-not-a-record", "train.py", ["--config_path={notrecord_config}", *_TRAIN], "text.record"),
    _case("train-label-out-of-range", "train.py", ["--config_path={badlabels_config}", *_TRAIN], "label value 40"),
    _case("eval-no-checkpoint", "eval.py", ["--config_path={config}", *_EVAL, "--evaluate_all_from_checkpoint=model.ckpt-5"], "does not exist", True),
    _case("export-no-checkpoint", "export.py", ["--config_path={config}", *_EXPORT], "ckpt", True),
    _case("compress-no-checkpoint", "compress.py", ["--config_path={config}", *_COMPRESS], "ckpt", True),
    _case("inference-export-folder", "inference.py", ["--input_path={root}", "--model_path={export_dir}", *_INFER], "export", True),
    _case("inference-model-corrupt-pb", "inference.py", ["--input_path={root}", "--model_path={model_pb}", *_INFER], "model.pb", True),
    _case("inference-input-text", "inference.py", ["--input_path={notes_txt}", "--model_path={model_pb}", *_INFER], "unsupported file type", True),
    _case("demo-override-classes", "demo.py", [*_DEMO, "--config_override=model {{ icnet {{ num_classes: 0 }} }}"], "model.icnet.num_classes", True),
    # -------- dataset tools (TensorFlow imported)
    _case("folders-image-not-image", _FOLDERS, ["--image_dir={nonimage_images}", "--label_dir={nonimage_labels}", "--output_path={out}/x.record"], "a.png", True),
    _case("folders-label-rgb", _FOLDERS, ["--image_dir={rgblabel_images}", "--label_dir={rgblabel_labels}", "--output_path={out}/x.record"], "a.png", True),
    _case("folders-label-value", _FOLDERS, ["--image_dir={bigvalue_images}", "--label_dir={bigvalue_labels}", "--output_path={out}/x.record", "--num_classes=3"], "9", True),
]
# fmt: on
