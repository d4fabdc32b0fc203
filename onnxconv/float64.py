"""The float64 result of a case: how far fp32 rounding alone moves this computation.

A fixed fp32 tolerance fits a block of a few layers. Deep networks, trained-scale weights and
inputs far from the data (validate's ``wide`` ones) are computed less accurately in fp32: a
correct MobileNetV2's stored outputs (PyTorch, fp32) were 3.4e-4 from the exact result, ONNX
Runtime's 3.9e-4, so the two fp32 results differ by more than the tolerance and the verdict blamed
ONNX Runtime; on EfficientNet-B0 with wide inputs PyTorch itself was 4.9 off.

The same function computed in float64 measures that rounding. Where a PyTorch module speaks for
the graph, the module in float64 gives the source's exact function, and PyTorch's fp32 output
(its *twin*) is that function rounded by fp32 alone. Without one, the graph in float64 on the
reference evaluator gives the graph's exact function, and the reference evaluator's fp32 output
is its twin. The twin's distance from the float64 result is this case's own fp32 rounding; the
verdict (:func:`onnxconv.verdict.judge`) lets a departure no larger than a few times that pass,
saying so: it is rounding, not a defect. Computed only for a case that would otherwise fail.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import one_line
from .graph.edit import copy_model
from .reference import run_reference
from .verdict import REFERENCE, TORCH, Float64

#: What each route to the float64 result is called in a verdict's note.
FROM_TORCH = "PyTorch in float64"
FROM_GRAPH = "the graph in float64 on the reference evaluator"


def graph_in_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` that computes in float64 where it computed in float32: its float
    initializers, constants, inputs, outputs and casts (intermediate types are inferred anew;
    the bodies of If and Loop are left as they are, and such a graph may then not run)."""
    double = copy_model(model)
    graph = double.graph

    def widen(tensor: TensorProto) -> None:
        if tensor.data_type == TensorProto.FLOAT:
            wide = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float64))
            wide.name = tensor.name
            tensor.CopyFrom(wide)

    for tensor in graph.initializer:
        widen(tensor)
    for info in [*graph.input, *graph.output]:
        if info.type.tensor_type.elem_type == TensorProto.FLOAT:
            info.type.tensor_type.elem_type = TensorProto.DOUBLE
    del graph.value_info[:]
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR:
                widen(attribute.t)
            elif node.op_type == "Cast" and attribute.name == "to":
                if attribute.i == TensorProto.FLOAT:
                    attribute.i = TensorProto.DOUBLE
            elif node.op_type == "Constant" and attribute.name in ("value_float", "value_floats"):
                values = [attribute.f] if attribute.name == "value_float" else attribute.floats
                shape = () if attribute.name == "value_float" else (len(values),)
                value = np.array(values, np.float64).reshape(shape)
                attribute.CopyFrom(helper.make_attribute("value", numpy_helper.from_array(value)))
    return double


def _widened(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``feeds`` with their float32 arrays in float64."""
    return {
        name: np.asarray(value, np.float64) if value.dtype == np.float32 else value
        for name, value in feeds.items()
    }


def torch_in_float64(
    module: Any, inputs: list[np.ndarray], names: list[str], copies: dict[int, Any] | None = None
):
    """``module`` (left untouched: a float64 copy runs, kept in ``copies`` by the module's id
    where given) on ``inputs`` (float ones already float64); its outputs by ``names``."""
    import torch

    from .user_model import flatten_outputs

    copies = {} if copies is None else copies
    if id(module) not in copies:  # the module is kept beside its copy: its id stays its own
        copies[id(module)] = (module, copy.deepcopy(module).double())
    double = copies[id(module)][1]
    tensors = [torch.from_numpy(np.array(v)) for v in inputs]
    with torch.no_grad():
        outputs = flatten_outputs(double(*tensors))
    return {name: out.detach().numpy() for name, out in zip(names, outputs)}


def float64_outputs(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    opinions: Mapping[str, Mapping[str, np.ndarray]],
    module: Any = None,
    input_names: list[str] | None = None,
    copies: dict[int, Any] | None = None,
) -> tuple[dict[str, np.ndarray], str, str] | str:
    """``(outputs, twin, what)``: the float64 result of the case whose ``feeds`` and fp32
    ``opinions`` are given, the opinion that is its fp32 twin and how it was computed; or why
    there is none (a string). ``copies``: where the module's float64 copy is kept between
    cases."""
    names = [o.name for o in model.graph.output]
    wide = _widened(feeds)
    try:
        if module is not None and TORCH in opinions:
            inputs = [wide[n] for n in (input_names or list(wide))]
            return torch_in_float64(module, inputs, names, copies), TORCH, FROM_TORCH
        if REFERENCE in opinions:
            return run_reference(graph_in_float64(model), wide), REFERENCE, FROM_GRAPH
    except Exception as error:  # no float64 result is no excuse: the verdict stands as it was
        return f"no float64 result: {one_line(error)}"
    return "no float64 result: no fp32 twin to measure its rounding by"


def for_output(
    computed: tuple[dict[str, np.ndarray], str, str] | str, name: str, generated: bool
) -> Float64 | None:
    """One output's :class:`~onnxconv.verdict.Float64`, where the case has a float64 result
    (``generated``: its inputs are onnxconv's own, not the user's data)."""
    if isinstance(computed, str) or name not in computed[0]:
        return None
    outputs, twin, what = computed
    return Float64(outputs[name], twin, what, generated)


__all__ = ["FROM_GRAPH", "FROM_TORCH", "float64_outputs", "for_output", "graph_in_float64"]
