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

A float16 deployment is held to the same idea one precision down: PyTorch's module in float16
(:func:`torch_in_float16`) is the source's function rounded by float16, and its distance from the
fp32 source is this case's own float16 rounding. Only a module can give it: the graph in float16
would be the deployment itself, converter and all.
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


def torch_in(
    module: Any,
    dtype: Any,
    inputs: list[np.ndarray],
    names: list[str],
    copies: dict[Any, Any] | None = None,
) -> dict[str, np.ndarray]:
    """``module`` (left untouched: a copy in the torch ``dtype`` runs, kept in ``copies`` by the
    module's id and the dtype where given) on ``inputs`` (float ones already in that dtype); its
    outputs by ``names``."""
    import torch

    from .user_model import flatten_outputs

    copies = {} if copies is None else copies
    key = (id(module), str(dtype))
    if key not in copies:  # the module is kept beside its copy: its id stays its own
        copies[key] = (module, copy.deepcopy(module).to(dtype))
    typed = copies[key][1]
    tensors = [torch.from_numpy(np.array(v)) for v in inputs]
    with torch.no_grad():
        outputs = flatten_outputs(typed(*tensors))
    return {name: out.detach().numpy() for name, out in zip(names, outputs)}


def torch_in_float16(
    module: Any,
    feeds: Mapping[str, np.ndarray],
    input_names: list[str],
    names: list[str],
    copies: dict[Any, Any] | None = None,
) -> dict[str, np.ndarray] | str:
    """PyTorch's own float16 result of a case: ``module`` in float16 on the case's inputs
    rounded to float16 (a float16 deployment's first Cast does the same), its outputs in float32;
    or why there is none (a string)."""
    import torch

    half = {
        name: value.astype(np.float16) if value.dtype == np.float32 else value
        for name, value in feeds.items()
    }
    try:
        outputs = torch_in(module, torch.float16, [half[n] for n in input_names], names, copies)
    except Exception as error:  # no float16 result is no excuse: the verdict stands as it was
        return f"no float16 result from PyTorch: {one_line(error)}"
    return {name: np.asarray(value, np.float32) for name, value in outputs.items()}


def float64_outputs(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    opinions: Mapping[str, Mapping[str, np.ndarray]],
    module: Any = None,
    input_names: list[str] | None = None,
    copies: dict[Any, Any] | None = None,
) -> tuple[dict[str, np.ndarray], str, str] | str:
    """``(outputs, twin, what)``: the float64 result of the case whose ``feeds`` and fp32
    ``opinions`` are given, the opinion that is its fp32 twin and how it was computed; or why
    there is none (a string). ``copies``: where the module's float64 copy is kept between
    cases."""
    import torch

    names = [o.name for o in model.graph.output]
    wide = _widened(feeds)
    try:
        if module is not None and TORCH in opinions:
            inputs = [wide[n] for n in (input_names or list(wide))]
            outputs = torch_in(module, torch.float64, inputs, names, copies)
            return outputs, TORCH, FROM_TORCH
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


__all__ = [
    "FROM_GRAPH",
    "FROM_TORCH",
    "float64_outputs",
    "for_output",
    "graph_in_float64",
    "torch_in",
    "torch_in_float16",
]
