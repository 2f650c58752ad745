"""One interface to segment an image with a checkpoint or any exported model.

Every :class:`Segmenter` runs the deploy graph of :mod:`core.deploy.deploy_graph` (uint8 images in,
class ids or palette colours out) at a fixed network input size, so the four implementations
are interchangeable:

  :class:`ModelSegmenter`        a restored Keras model (a checkpoint + its config)
  :class:`FrozenGraphSegmenter`  ``frozen_inference_graph.pb``
  :class:`SavedModelSegmenter`   a ``saved_model/`` directory
  :class:`TFLiteSegmenter`       a ``.tflite`` file (float or int8)

and :mod:`core.deploy.onnx_segmenters` runs ``model.onnx`` with ONNX Runtime or OpenVINO.
:func:`open_exported` opens an exported model by its file type; building a segmenter from a
config and a checkpoint (``inference.py --trained_checkpoint``) is ``runners.inference``'s job.

Images of another size than the network input are resized to it (bilinear) and the prediction
is resized back to the image (nearest), so any image can be segmented; the original project
instead required every image to have ``--input_shape``. Segmenters with ``any_size`` (a
checkpoint, a SavedModel's any-size ``serving_default``) pass the image to the graph as it is:
the graph resizes the image and its logits (``deploy_graph.build_any_size_function``).
"""

from __future__ import annotations

import abc
import json
import os
import time
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf
from absl import logging
from google.protobuf import message as protobuf_message
from PIL import Image

from core.deploy import tflite_export
from core.deploy.deploy_graph import (
    FIXED_SIGNATURE_KEY,
    INPUT_NAME,
    OUTPUT_NAME,
    ExportError,
    InputShape,
    build_any_size_function,
    build_serving_function,
    parse_input_shape,
)

SIGNATURE_KEY = "serving_default"
TFLITE_SUFFIX = ".tflite"
GRAPH_SUFFIX = ".pb"


class Segmenter(abc.ABC):
    """Segments single RGB images with a model of fixed input size.

    Attributes:
      input_size: (height, width) the network runs at.
      output_colours: the model outputs palette colours instead of class ids.
      num_classes: number of classes when known (from the config), else None.
      description: what is loaded, for logs.
      last_run_seconds: duration of the last network run (pre/post resizing excluded).
      any_size: the graph takes images of any size and resizes them itself.
    """

    any_size = False

    def __init__(
        self,
        input_size: Sequence[int],
        output_colours: bool,
        num_classes: int | None,
        description: str,
    ):
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.output_colours = output_colours
        self.num_classes = num_classes
        self.description = description
        self.last_run_seconds = 0.0

    @abc.abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """Runs the network: uint8 [1, H, W, 3] -> predictions [1, H, W, 1 or 3]."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Runs the network on a batch at the input size and times it.

        Args:
          batch: uint8 [1, height, width, 3] with (height, width) == ``input_size``.

        Returns:
          int32 class ids [height, width], or uint8 colours [height, width, 3].
        """
        started = time.perf_counter()
        output = np.asarray(self._run(np.ascontiguousarray(batch, dtype=np.uint8)))
        self.last_run_seconds = time.perf_counter() - started
        output = output[0]
        return output if self.output_colours else output[..., 0]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Segments one image of any size.

        Args:
          image: uint8 RGB [height, width, 3].

        Returns:
          int32 class ids [height, width], or uint8 colours [height, width, 3] when the model
          outputs colours; always at the image's own size.
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"expected an RGB image [height, width, 3], got shape {image.shape}")
        size = image.shape[:2]
        resize = size != self.input_size and not self.any_size
        if resize:
            # PIL sizes are (width, height).
            resized = Image.fromarray(image.astype(np.uint8)).resize(
                self.input_size[::-1], Image.BILINEAR
            )
            image = np.asarray(resized)
        prediction = self.run(image[np.newaxis])
        if resize:
            prediction = _resize_nearest(prediction, size)
        return prediction

    def __repr__(self) -> str:
        kind = "colours" if self.output_colours else "class ids"
        return f"{type(self).__name__}({self.description}, {self.input_size}, {kind})"


def _resize_nearest(prediction: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of ids [h, w] (values < 256) or colours [h, w, 3] to ``size``."""
    dtype = prediction.dtype
    resized = Image.fromarray(prediction.astype(np.uint8)).resize(
        (int(size[1]), int(size[0])), Image.NEAREST
    )
    return np.asarray(resized).astype(dtype)


def _static_size(shape: Iterable, source: str) -> tuple[int, int]:
    """(height, width) of an exported model's input; it must take one image at a time."""
    dims = list(shape)
    if len(dims) != 4 or dims[1] in (None, -1) or dims[2] in (None, -1):
        raise ExportError(
            f"{source}: expected an input [batch, height, width, 3] with a known height and "
            f"width, got {dims}. Was it exported by export.py?"
        )
    if dims[0] not in (None, -1, 1):
        raise ExportError(
            f"{source}: exported with batch size {dims[0]}, but images are segmented one at a "
            "time; re-export with --input_shape H,W,3 (or 1,H,W,3)."
        )
    return int(dims[1]), int(dims[2])


def _network_size(path: str) -> tuple[int, int]:
    """The network input size of an any-size export, from the ``metadata.json`` beside it."""
    metadata = os.path.join(os.path.dirname(os.path.abspath(path)), "metadata.json")
    try:
        with open(metadata, encoding="utf-8") as stream:
            height, width = json.load(stream)["input"]["network_input_size"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ExportError(
            f"{path}: takes any image size, but {metadata} (written by export.py beside it) is "
            "missing or has no input.network_input_size; keep it beside the graph."
        ) from None
    return int(height), int(width)


class ModelSegmenter(Segmenter):
    """The deploy graph traced around a restored model (what ``export.py`` would freeze).

    Args:
      model: a built ``SegmentationModel`` with its weights.
      input_shape: ``(batch or None, height, width, 3)``.
      pad_to_shape: optional (height, width) padding before the network.
      description: for logs.
      jit_compile: compile the deploy graph with XLA (optional; slower on a CPU).
    """

    any_size = True

    def __init__(
        self,
        model,
        input_shape: InputShape,
        pad_to_shape: tuple[int, int] | None = None,
        description: str = "model",
        jit_compile: bool = False,
    ):
        super().__init__(input_shape[1:3], False, model.num_classes, description)
        # One image at a time, whatever batch --input_shape named.
        self._serve = build_serving_function(
            model, (None, *input_shape[1:]), pad_to_shape, jit_compile=jit_compile
        )
        # Other sizes: the SavedModel's in-graph resizing, so both give the same ids.
        self._serve_any_size = build_any_size_function(
            model, (None, *input_shape[1:]), pad_to_shape, jit_compile=jit_compile
        )

    def _run(self, batch: np.ndarray) -> np.ndarray:
        fixed = tuple(batch.shape[1:3]) == self.input_size
        serve = self._serve if fixed else self._serve_any_size
        return serve(tf.constant(batch))[OUTPUT_NAME].numpy()


class FrozenGraphSegmenter(Segmenter):
    """A ``frozen_inference_graph.pb``: ``inputs:0`` uint8 -> ``predictions:0``."""

    def __init__(self, path: str, num_classes: int | None = None):
        graph_def = tf.compat.v1.GraphDef()
        try:
            with open(path, "rb") as stream:
                graph_def.ParseFromString(stream.read())
        except (OSError, protobuf_message.DecodeError) as error:
            raise ExportError(
                f"--model_path {path!r} is not a readable frozen graph: {error}"
            ) from None

        def import_graph():
            tf.compat.v1.import_graph_def(graph_def, name="")

        wrapped = tf.compat.v1.wrap_function(import_graph, [])
        try:
            inputs = wrapped.graph.get_tensor_by_name(INPUT_NAME + ":0")
            outputs = wrapped.graph.get_tensor_by_name(OUTPUT_NAME + ":0")
        except KeyError as error:
            raise ExportError(
                f"--model_path {path!r}: the graph has no {INPUT_NAME!r} or {OUTPUT_NAME!r} "
                f"node ({error}); export it with export.py."
            ) from None
        shape = inputs.shape.as_list()
        # export.py --dynamic_input_size: the graph resizes; metadata.json names its network size.
        self.any_size = len(shape) == 4 and shape[1] is None
        if self.any_size:
            shape = [None, *_network_size(path), 3]
        super().__init__(
            _static_size(shape, path),
            outputs.dtype == tf.uint8,
            num_classes,
            path,
        )
        self._function = wrapped.prune(inputs, outputs)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self._function(tf.constant(batch)).numpy()


class SavedModelSegmenter(Segmenter):
    """A SavedModel directory with the ``serving_default`` signature of ``export.py``."""

    def __init__(self, path: str, num_classes: int | None = None):
        loaded = tf.saved_model.load(path)
        if SIGNATURE_KEY not in loaded.signatures:
            raise ExportError(
                f"--model_path {path!r}: the SavedModel has no {SIGNATURE_KEY!r} signature "
                f"(it has {list(loaded.signatures)})."
            )
        signature = loaded.signatures[SIGNATURE_KEY]
        specs = signature.structured_input_signature[1]
        if INPUT_NAME not in specs or OUTPUT_NAME not in signature.structured_outputs:
            raise ExportError(
                f"--model_path {path!r}: the {SIGNATURE_KEY!r} signature must map "
                f"{INPUT_NAME!r} to {OUTPUT_NAME!r}; export it with export.py."
            )
        output_spec = signature.structured_outputs[OUTPUT_NAME]
        shape = specs[INPUT_NAME].shape.as_list()
        # An any-size serving_default (export.py since issue 12): the network's size is the
        # fixed-size signature's.
        self.any_size = shape[1] is None and FIXED_SIGNATURE_KEY in loaded.signatures
        if self.any_size:
            fixed = loaded.signatures[FIXED_SIGNATURE_KEY].structured_input_signature[1]
            shape = fixed[INPUT_NAME].shape.as_list()
        super().__init__(
            _static_size(shape, path),
            output_spec.dtype == tf.uint8,
            num_classes,
            path,
        )
        self._loaded = loaded  # keeps the signature's variables alive
        self._signature = signature

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self._signature(**{INPUT_NAME: tf.constant(batch)})[OUTPUT_NAME].numpy()


class TFLiteSegmenter(Segmenter):
    """A ``.tflite`` model of the deploy graph (float32 or int8)."""

    def __init__(self, path: str, num_classes: int | None = None, num_threads: int | None = None):
        try:
            self._interpreter = tflite_export.make_interpreter(path, num_threads)
        except (ValueError, RuntimeError) as error:
            raise ExportError(
                f"--model_path {path!r} is not a loadable TFLite model: {error}"
            ) from None
        detail = self._interpreter.get_input_details()[0]
        output = self._interpreter.get_output_details()[0]
        super().__init__(
            _static_size(detail["shape"].tolist(), path),
            output["dtype"] == np.uint8,
            num_classes,
            path,
        )

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return tflite_export.run_interpreter(self._interpreter, batch)


# --------------------------------------------------------------------------- loading


def open_exported(
    model_path: str,
    num_classes: int | None = None,
    input_shape: str | Sequence | None = None,
    num_threads: int | None = None,
    runtime: str | None = None,
) -> Segmenter:
    """The segmenter of an exported model file or directory, chosen by its type.

    Args:
      model_path: ``frozen_inference_graph.pb``, a SavedModel directory, a ``.tflite`` or an
        ``.onnx`` file.
      num_classes: the model's class count when known (from its config), else None.
      input_shape: if given (``H,W,3`` or ``N,H,W,3``), it must match the exported input.
      num_threads: TFLite, ONNX Runtime or OpenVINO threads (None: the runtime's default).
      runtime: for an ``.onnx`` file, ``onnxruntime`` (the default) or ``openvino``.

    Raises:
      ExportError: the path is missing, of an unknown type, not loadable, its runtime is not
        installed, or its input size differs from ``input_shape``.
    """
    from core.deploy import onnx_segmenters  # its runtimes are imported only when used

    if runtime and not model_path.endswith(onnx_segmenters.ONNX_SUFFIX):
        raise ExportError(
            f"--runtime {runtime} applies to .onnx models only; --model_path {model_path!r} "
            "runs with TensorFlow (leave --runtime out, or pass the export's model.onnx)."
        )
    if os.path.isdir(model_path):
        segmenter: Segmenter = SavedModelSegmenter(model_path, num_classes)
    elif not os.path.isfile(model_path):
        raise ExportError(
            f"--model_path {model_path!r} not found; pass frozen_inference_graph.pb, a "
            "saved_model directory, a .tflite or a .onnx file written by export.py."
        )
    elif model_path.endswith(onnx_segmenters.ONNX_SUFFIX):
        segmenter = onnx_segmenters.open_onnx(model_path, runtime, num_classes, num_threads)
    elif model_path.endswith(TFLITE_SUFFIX):
        segmenter = TFLiteSegmenter(model_path, num_classes, num_threads)
    elif model_path.endswith(GRAPH_SUFFIX):
        segmenter = FrozenGraphSegmenter(model_path, num_classes)
    else:
        raise ExportError(
            f"--model_path {model_path!r}: unknown model type; expected a .pb frozen graph, a "
            "SavedModel directory, a .tflite or a .onnx file."
        )
    if input_shape:
        wanted = parse_input_shape(input_shape)[1:3]
        if tuple(wanted) != segmenter.input_size:
            raise ExportError(
                f"--input_shape {wanted[0]}x{wanted[1]} differs from the exported model's input "
                f"{segmenter.input_size[0]}x{segmenter.input_size[1]}; leave --input_shape out "
                "(images are resized to the model's input) or re-export."
            )
    logging.info("Loaded %r", segmenter)
    return segmenter
