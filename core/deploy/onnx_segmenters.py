"""Segmenters that run an exported ``model.onnx`` with ONNX Runtime or OpenVINO.

Both runtimes are optional packages (``requirements-dev.txt``, the ``onnx`` extra); a missing
one is reported as one :class:`~core.deploy.deploy_graph.ExportError` line saying what to
install. The model is the deploy graph of :mod:`core.deploy.onnx_export`: ``inputs`` uint8
[N, H, W, 3] -> ``predictions`` int32 [N, H, W, 1] (or uint8 colours [N, H, W, 3]).

OpenVINO runs in float32 (``INFERENCE_PRECISION_HINT=f32``): on CPUs with bf16 instructions
its default is bfloat16, faster but with class ids that drift from TensorFlow's where two
classes score nearly alike; pass ``precision="bf16"`` (or None for OpenVINO's default) to
trade that for speed.
"""

from __future__ import annotations

import numpy as np

from core.deploy.deploy_graph import INPUT_NAME, OUTPUT_NAME, ExportError
from core.deploy.segmenters import Segmenter, _static_size

ONNX_SUFFIX = ".onnx"
ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
# Runtimes of an .onnx model, the default first.
RUNTIMES = (ONNXRUNTIME, OPENVINO)
_PIP_NAMES = {ONNXRUNTIME: "onnxruntime", OPENVINO: "openvino"}


def _import_runtime(runtime: str, path: str):
    """The runtime's module, or an ExportError naming the package to install."""
    try:
        if runtime == ONNXRUNTIME:
            import onnxruntime as module
        else:
            import openvino as module
    except ImportError as error:
        raise ExportError(
            f"--model_path {path!r} with --runtime {runtime} needs the {_PIP_NAMES[runtime]} "
            f"package ({error}); install it with `pip install {_PIP_NAMES[runtime]}` (or "
            "`pip install -r requirements-dev.txt`), or pick another --runtime."
        ) from None
    return module


class OnnxRuntimeSegmenter(Segmenter):
    """A ``model.onnx`` run by ONNX Runtime's CPU execution provider.

    Args:
      path: the ``.onnx`` file written by ``export.py``.
      num_classes: the model's class count when known, else None.
      num_threads: intra-op threads (None: ONNX Runtime's default, one per core).
    """

    def __init__(self, path: str, num_classes: int | None = None, num_threads: int | None = None):
        ort = _import_runtime(ONNXRUNTIME, path)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its graph-optimizer notes are noise
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        try:
            self._session = ort.InferenceSession(
                path, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # ONNX Runtime raises its own exception types
            raise ExportError(
                f"--model_path {path!r} is not a model ONNX Runtime can load: {error}"
            ) from None
        inputs = {item.name: item for item in self._session.get_inputs()}
        outputs = {item.name: item for item in self._session.get_outputs()}
        if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
            raise ExportError(
                f"--model_path {path!r}: the ONNX model must map {INPUT_NAME!r} to "
                f"{OUTPUT_NAME!r} (it has {list(inputs)} -> {list(outputs)}); export it with "
                "export.py --formats=onnx."
            )
        super().__init__(
            # Symbolic dimensions (a free batch) come as names, not numbers.
            _static_size([d if isinstance(d, int) else -1 for d in inputs[INPUT_NAME].shape], path),
            outputs[OUTPUT_NAME].type == "tensor(uint8)",
            num_classes,
            f"{path} (ONNX Runtime {ort.__version__})",
        )

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]


class OpenVINOSegmenter(Segmenter):
    """A ``model.onnx`` compiled by OpenVINO for the CPU, reshaped to batch 1.

    Args:
      path: the ``.onnx`` file written by ``export.py``.
      num_classes: the model's class count when known, else None.
      num_threads: inference threads (None: OpenVINO's default).
      precision: ``INFERENCE_PRECISION_HINT`` (``"f32"``, ``"bf16"``, ...); None keeps
        OpenVINO's default for the CPU.
    """

    def __init__(
        self,
        path: str,
        num_classes: int | None = None,
        num_threads: int | None = None,
        precision: str | None = "f32",
    ):
        ov = _import_runtime(OPENVINO, path)
        core = ov.Core()
        try:
            model = core.read_model(path)
        except Exception as error:  # OpenVINO raises RuntimeError subclasses of its own
            raise ExportError(
                f"--model_path {path!r} is not a model OpenVINO can read: {error}"
            ) from None
        names = {name for port in model.inputs for name in port.get_names()}
        outputs = {name for port in model.outputs for name in port.get_names()}
        if INPUT_NAME not in names or OUTPUT_NAME not in outputs:
            raise ExportError(
                f"--model_path {path!r}: the ONNX model must map {INPUT_NAME!r} to "
                f"{OUTPUT_NAME!r}; export it with export.py --formats=onnx."
            )
        shape = model.input(INPUT_NAME).get_partial_shape()
        dims = [dim.get_length() if dim.is_static else -1 for dim in shape]
        size = _static_size(dims, path)
        # One image at a time: a static batch lets OpenVINO plan its memory once.
        model.reshape({INPUT_NAME: [1, *size, 3]})
        config = {}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        if num_threads:
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._output = self._compiled.output(OUTPUT_NAME)
        super().__init__(
            size,
            self._output.get_element_type() == ov.Type.u8,
            num_classes,
            f"{path} (OpenVINO {ov.__version__}, {precision or 'default'} precision)",
        )

    def _run(self, batch: np.ndarray) -> np.ndarray:
        results = self._request.infer({INPUT_NAME: batch})
        return np.asarray(results[self._output])


def open_onnx(
    path: str,
    runtime: str | None,
    num_classes: int | None = None,
    num_threads: int | None = None,
) -> Segmenter:
    """The segmenter of an ``.onnx`` file for ``runtime`` (None: ONNX Runtime).

    Raises:
      ExportError: an unknown runtime, a runtime that is not installed, or an unloadable model.
    """
    runtime = runtime or ONNXRUNTIME
    if runtime == ONNXRUNTIME:
        return OnnxRuntimeSegmenter(path, num_classes, num_threads)
    if runtime == OPENVINO:
        return OpenVINOSegmenter(path, num_classes, num_threads)
    raise ExportError(f"--runtime {runtime!r} is unknown; choose from {', '.join(RUNTIMES)}.")
