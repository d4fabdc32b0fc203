"""Small ONNX graphs built by hand, shared by the runtime, fp16 and divergence tests."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def make_init(name: str, arr: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(arr, name)


def make_model(nodes, inputs, outputs, inits, opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def sabotaged(model: onnx.ModelProto, init_name: str) -> onnx.ModelProto:
    """A copy with the sign of one element of one initializer flipped."""
    bad = onnx.ModelProto()
    bad.CopyFrom(model)
    for i, init in enumerate(bad.graph.initializer):
        if init.name == init_name:
            arr = numpy_helper.to_array(init).copy()
            arr.flat[0] = -arr.flat[0] if arr.flat[0] != 0 else 1.0
            bad.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, init_name))
            return bad
    raise AssertionError(init_name)


def run_cpu(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Every output of ``model`` on ORT's CPU EP (quiet log)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, inputs)
