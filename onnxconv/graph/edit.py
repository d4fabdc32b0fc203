"""Edits on an ONNX model that every graph rewrite needs: a copy, a fresh name, a new
initializer, an attribute set. Used by the planted defects (:mod:`onnxconv.mutations`) and the
tuning rewrites (:mod:`onnxconv.tune.edit`)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper, numpy_helper


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def used_names(graph: onnx.GraphProto) -> set[str]:
    """Every node and tensor name of ``graph``."""
    used = {n.name for n in graph.node} | {t for n in graph.node for t in (*n.input, *n.output)}
    used |= {t.name for t in graph.initializer}
    return used | {vi.name for vi in (*graph.input, *graph.output, *graph.value_info)}


def fresh_name(graph: onnx.GraphProto, base: str, taken: Iterable[str] = ()) -> str:
    """``base``, or ``base_<k>``, unused in ``graph`` and not in ``taken``."""
    used = used_names(graph) | set(taken)
    name, k = base, 1
    while name in used:
        name, k = f"{base}_{k}", k + 1
    return name


def add_initializer(model: onnx.ModelProto, name: str, value: np.ndarray) -> str:
    """Add ``value`` as initializer ``name`` (also a graph input before IR 4); its name."""
    model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
    if model.ir_version < 4:
        elem = helper.np_dtype_to_tensor_dtype(value.dtype)
        model.graph.input.append(helper.make_tensor_value_info(name, elem, value.shape))
    return name


def set_attr(node: onnx.NodeProto, name: str, value: object) -> None:
    """Set (or replace) one attribute of a node."""
    for a in [a for a in node.attribute if a.name == name]:
        node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, value))
