"""Edits on an ONNX model that every graph rewrite needs: a copy, a fresh name, a new
initializer, an attribute set, an input pointed at a new constant, a node inserted after a
tensor. Used by the planted defects (:mod:`onnxconv.mutations`) and the
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


def fresh_in(model: onnx.ModelProto, base: str) -> str:
    """A name no node, tensor or initializer of ``model`` uses yet, from ``base``."""
    return fresh_name(model.graph, base)


def add_fresh_initializer(model: onnx.ModelProto, base: str, value: np.ndarray) -> str:
    """Add an initializer under a fresh name (also as a graph input before IR 4); its name."""
    return add_initializer(model, fresh_in(model, base), value)


def replace_input(
    model: onnx.ModelProto, node_index: int, input_index: int, value: np.ndarray, tag: str
) -> None:
    """Point one input of one node at a new initializer (named ``{tag}_{old name}``); other
    readers keep the old tensor, an old initializer left without readers is removed."""
    g = model.graph
    node = g.node[node_index]
    old = node.input[input_index]
    node.input[input_index] = add_fresh_initializer(model, f"{tag}_{old}", value)
    read = any(old in n.input for n in g.node) or any(o.name == old for o in g.output)
    if not read and any(t.name == old for t in g.initializer):
        for seq in (g.initializer, g.input):  # graph inputs name initializers before IR 4
            for item in [t for t in seq if t.name == old]:
                seq.remove(item)


def insert_after(
    model: onnx.ModelProto,
    tensor: str,
    op_type: str,
    extra_inputs: list[str],
    tag: str,
    **attrs,
) -> str:
    """Make ``op_type(tensor, *extra_inputs)`` produce ``tensor``, its producer now writing a
    fresh name, so readers and graph outputs keep the name; the new node's name (``tag``)."""
    g = model.graph
    at = next(i for i, n in enumerate(g.node) if tensor in n.output)
    producer = g.node[at]
    before = fresh_in(model, f"{tensor}_{tag}")
    name = fresh_in(model, tag)
    producer.output[list(producer.output).index(tensor)] = before
    node = helper.make_node(op_type, [before, *extra_inputs], [tensor], name, **attrs)
    g.node.insert(at + 1, node)
    return name


def forget_shapes(model: onnx.ModelProto, tensors: list[str]) -> None:
    """Drop the value_info of tensors whose shape the mutation changes."""
    for vi in [vi for vi in model.graph.value_info if vi.name in tensors]:
        model.graph.value_info.remove(vi)
