"""ONNX export (core.deploy.onnx_export) and its runtimes (core.deploy.onnx_segmenters).

The reference is TensorFlow: the frozen deploy graph of the same tiny random-init model, run on a
synthetic street scene. ICNet runs at 128x256, a size where tf2onnx's own Resize conversion
(float32 scales) gives a cascade fusion branch one pixel short and ONNX Runtime refuses the
model; PSPNet at 65x129.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

pytest.importorskip("tf2onnx")
onnx = pytest.importorskip("onnx")

from core.deploy import (  # noqa: E402
    exporter,
    onnx_export,
    onnx_segmenters,
    segmenters,
    tflite_export,
)
from core.deploy.deploy_graph import ExportError, build_serving_function, freeze  # noqa: E402
from dataset_tools.synthetic_scene import generate_scene  # noqa: E402
from models import ICNet, PSPNet  # noqa: E402

SIZES = {"icnet": (128, 256), "pspnet": (65, 129)}
MIN_AGREEMENT = 0.999


@dataclasses.dataclass
class Converted:
    frozen: object
    path: str
    size: tuple[int, int]
    image: np.ndarray  # uint8 [1, H, W, 3]
    reference: np.ndarray  # TensorFlow's int32 ids [1, H, W, 1]


_CACHE: dict[str, Converted] = {}


def _converted(arch: str, directory) -> Converted:
    if arch not in _CACHE:
        tf.keras.utils.set_random_seed(3)
        model = ICNet(19, 0.125) if arch == "icnet" else PSPNet(19, 0.125)
        model.build_variables()
        size = SIZES[arch]
        frozen = freeze(build_serving_function(model, (None, *size, 3)))
        if arch == "icnet":  # through export.py's library call, with its staging and summary
            result = exporter.export_model(
                model, str(directory), (None, *size, 3), formats=["onnx"]
            )
            assert result.summary["files"]["model.onnx"] > 0
            path = os.path.join(str(directory), exporter.ONNX_NAME)
        else:
            path = os.path.join(str(directory), f"{arch}.onnx")
            with open(path, "wb") as stream:
                stream.write(onnx_export.convert(frozen))
        scene, _ = generate_scene(*size, np.random.default_rng(7))
        image = scene[np.newaxis].astype(np.uint8)
        reference = tflite_export.frozen_output(frozen, image)
        _CACHE[arch] = Converted(frozen, path, size, image, reference)
    return _CACHE[arch]


@pytest.fixture(params=sorted(SIZES), scope="module")
def converted(request, tmp_path_factory) -> Converted:
    return _converted(request.param, tmp_path_factory.mktemp(f"onnx_{request.param}"))


def test_graph_has_the_deploy_names_and_exact_resize_sizes(converted):
    model = onnx.load(converted.path)
    assert [i.name for i in model.graph.input] == ["inputs"]
    assert [o.name for o in model.graph.output] == ["predictions"]
    dims = [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [*converted.size, 3]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert model.opset_import[0].version == onnx_export.OPSET
    resizes = [node for node in model.graph.node if node.op_type == "Resize"]
    assert resizes
    # inputs X, roi, scales, sizes: every resize carries its output size, not a float scale.
    assert all(len(node.input) == 4 and node.input[3] for node in resizes)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    (output,) = inferred.graph.output
    assert [d.dim_value for d in output.type.tensor_type.shape.dim][1:] == [*converted.size, 1]


@pytest.mark.parametrize("runtime", onnx_segmenters.RUNTIMES)
def test_runtime_class_ids_equal_tensorflow(converted, runtime):
    pytest.importorskip(runtime)
    segmenter = segmenters.open_exported(converted.path, num_classes=19, runtime=runtime)
    assert segmenter.input_size == converted.size and not segmenter.output_colours
    ids = segmenter.run(converted.image)
    assert ids.shape == converted.size and ids.dtype == np.int32
    agreement = float(np.mean(ids == converted.reference[0, ..., 0]))
    assert agreement >= MIN_AGREEMENT, (runtime, agreement)
    # An image of another size is resized to the network and the ids back to the image.
    assert segmenter(converted.image[0, :50, :70]).shape == (50, 70)


def test_onnxruntime_is_the_default_and_shapes_are_checked(converted):
    pytest.importorskip("onnxruntime")
    segmenter = segmenters.open_exported(converted.path)
    assert isinstance(segmenter, onnx_segmenters.OnnxRuntimeSegmenter)
    height, width = converted.size
    with pytest.raises(ExportError, match=f"differs from the exported model's input {height}x"):
        segmenters.open_exported(converted.path, input_shape=f"{height + 1},{width},3")


def test_missing_runtime_is_one_clear_message(converted, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails as if not installed
    with pytest.raises(ExportError, match="--runtime openvino needs the openvino package.*pip"):
        segmenters.open_exported(converted.path, runtime="openvino")


def test_runtime_errors_name_the_flag(converted, tmp_path):
    with pytest.raises(ExportError, match="--runtime 'tensorrt' is unknown; choose from"):
        segmenters.open_exported(converted.path, runtime="tensorrt")
    graph = tmp_path / "frozen_inference_graph.pb"
    graph.write_bytes(b"")
    with pytest.raises(ExportError, match="--runtime openvino applies to .onnx models only"):
        segmenters.open_exported(str(graph), runtime="openvino")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ExportError, match="is not a model ONNX Runtime can load"):
        segmenters.open_exported(str(broken))


def test_unconvertible_graph_is_reported_before_writing():
    @tf.function(input_signature=[tf.TensorSpec([1, 4, 4, 3], tf.uint8, "inputs")])
    def serve(inputs):
        return {"other": tf.identity(tf.cast(inputs, tf.int32), name="other")}

    with pytest.raises(onnx_export.OnnxConversionError, match="no 'inputs' or 'predictions'"):
        onnx_export.convert(freeze(serve))


def test_inference_flag_choices_match_the_runtimes():
    # inference.py spells them out so a flag mistake fails before TensorFlow loads.
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    with open(os.path.join(repo, "inference.py"), encoding="utf-8") as stream:
        tree = ast.parse(stream.read())
    values = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", "") == "RUNTIMES" for t in node.targets)
    ]
    assert values == [onnx_segmenters.RUNTIMES]


def test_inference_runner_opens_the_onnx_model_of_an_export_folder(tmp_path_factory):
    pytest.importorskip("openvino")
    from runners.inference import load_segmenter

    folder = os.path.dirname(_converted("icnet", tmp_path_factory.mktemp("onnx_icnet")).path)
    segmenter = load_segmenter(model_path=folder, runtime="openvino")
    assert isinstance(segmenter, onnx_segmenters.OpenVINOSegmenter)
    with pytest.raises(ExportError, match="--runtime openvino runs an exported .onnx"):
        load_segmenter(config_path="x.config", trained_checkpoint="ckpt", runtime="openvino")


def test_plain_tf2onnx_resizes_break_icnet_and_the_check_catches_it(tmp_path_factory):
    # The failure, reproduced without the exact-size resize handler: tf2onnx's float32
    # scales give a cascade fusion branch one pixel short; the export check refuses the model.
    import tf2onnx

    frozen = _converted("icnet", tmp_path_factory.mktemp("onnx_icnet")).frozen
    model, _ = tf2onnx.convert.from_graph_def(
        frozen.graph.as_graph_def(),
        input_names=["inputs:0"],
        output_names=["predictions:0"],
        opset=onnx_export.OPSET,
    )
    with pytest.raises(onnx_export.OnnxConversionError, match="CascadeFeatureFusion.*Incompatible"):
        onnx_export.check(model)
