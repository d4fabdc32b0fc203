"""Cost from the graph alone: parameters and multiply-adds per node and in total.

Parameters count each weight tensor once (an initializer read by two nodes is one tensor);
multiply-adds count Conv, Gemm and MatMul, from shapes that shape inference or the graph's
constants give, at a chosen batch size.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import onnx

from ..errors import UserInputError
from .index import Dim, GraphIndex, _static, attr, is_default_domain


@dataclass
class GraphCost:
    """Parameters and multiply-accumulates read from the graph alone.

    ``params`` counts constant weights and biases of Conv, Gemm and MatMul (initializers,
    Constant outputs, Identity of either), each tensor name once: a weight shared by two ops
    counts once, but an Identity alias counts on its own, because the torchscript exporter
    merges equal-valued parameters (e.g. the zero biases of folded BNs) into one initializer
    read through Identity nodes, and those are distinct parameters of the model.
    BatchNormalization gamma + beta are reported apart in ``bn_affine_params`` (the analytic
    cost in ``onnxconv.cost`` counts them; add them to compare) and running mean / variance
    are never counted. ``macs`` counts Conv (N*C_out*H_out*W_out*(C_in/group)*kH*kW) and
    Gemm / MatMul (M*K*N); bias adds, BN (folded or not), activations and pooling are not
    counted. Both exporters fold eval-mode BN into the Conv (torchscript keeps a bias, the
    dynamo exporter drops an all-zero one), so graph params differ from the analytic count.
    ``unknown_macs`` names nodes whose output shape could not be resolved (excluded).
    """

    params: int
    macs: int
    params_by_op: dict[str, int]
    macs_by_op: dict[str, int]
    bn_affine_params: int
    batch_size: int
    unknown_macs: list[str] = field(default_factory=list)
    #: Ops with constant weights that neither count counts, per op type: quantized ones
    #: (QLinearConv, ConvInteger, ...) and a Gather of a constant table (an embedding).
    uncounted: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_WEIGHT_INPUTS = {"Conv": (1, 2), "Gemm": (1, 2), "MatMul": (0, 1)}
#: Ops that carry constant weights which :func:`cost_breakdown` does not count.
_UNCOUNTED_WEIGHTED = frozenset(
    {"QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger", "Gather"}
)


def with_input_shapes(
    model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]
) -> onnx.ModelProto:
    """A copy of ``model`` whose named graph inputs have these fixed shapes (symbolic dims of a
    dynamic-batch export become the numbers actually fed), so shape inference gives every node
    static shapes. A shape of the wrong rank is a :class:`UserInputError`."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        if vi.name not in shapes:
            continue
        dims = vi.type.tensor_type.shape.dim
        shape = list(shapes[vi.name])
        if len(dims) != len(shape):
            raise UserInputError(f"input {vi.name!r} has rank {len(dims)}, got shape {shape}")
        for dim, n in zip(dims, shape):
            dim.Clear()
            dim.dim_value = int(n)
    return m


def graph_cost(model: onnx.ModelProto, batch_size: int = 1) -> tuple[int, int]:
    """``(params, macs)`` of the graph; see :class:`GraphCost` for what is counted.

    ``batch_size`` replaces a symbolic batch dimension (dim 0) of activations.
    """
    cost = cost_breakdown(model, batch_size)
    return cost.params, cost.macs


def node_macs(
    model_or_index: onnx.ModelProto | GraphIndex, batch_size: int = 1
) -> list[int | None]:
    """Multiply-adds of every node in graph order: an int for the ops :func:`graph_cost` counts
    (Conv, Gemm, MatMul) when shapes allow, ``None`` for the rest."""
    ix = _batch_index(model_or_index, batch_size)
    return [
        _node_macs(ix, node, batch_size)
        if is_default_domain(node) and node.op_type in _WEIGHT_INPUTS
        else None
        for node in ix.nodes
    ]


def cost_breakdown(model_or_index: onnx.ModelProto | GraphIndex, batch_size: int = 1) -> GraphCost:
    """Like :func:`graph_cost`, with per-op-type numbers and BN affine parameters."""
    ix = _batch_index(model_or_index, batch_size)
    params: Counter = Counter()
    macs: Counter = Counter()
    seen: set[str] = set()
    bn_affine = 0
    unknown = []
    uncounted: Counter = Counter()
    for node in ix.nodes:
        op = node.op_type
        if op in _UNCOUNTED_WEIGHTED and (op != "Gather" or ix.const_dims(node.input[0])):
            uncounted[op] += 1
        if not is_default_domain(node):
            continue
        if op == "BatchNormalization":
            for i in (1, 2):
                bn_affine += _count_once(ix, node, i, seen)
        if op not in _WEIGHT_INPUTS:
            continue
        for i in _WEIGHT_INPUTS[op]:
            params[op] += _count_once(ix, node, i, seen)
        n = _node_macs(ix, node, batch_size)
        if n is None:
            unknown.append(ix.label(node))
        else:
            macs[op] += n
    return GraphCost(
        params=sum(params.values()),
        macs=sum(macs.values()),
        params_by_op=dict(params),
        macs_by_op=dict(macs),
        bn_affine_params=bn_affine,
        batch_size=batch_size,
        unknown_macs=unknown,
        uncounted=dict(uncounted),
    )


def _count_once(ix: GraphIndex, node: onnx.NodeProto, i: int, seen: set[str]) -> int:
    """Element count of constant input ``i`` unless that name was counted; 0 for activations."""
    name = node.input[i] if i < len(node.input) else ""
    dims = ix.const_dims(name) if name and name not in seen else None
    if dims is None:
        return 0
    seen.add(name)
    return math.prod(dims)


def _batch_index(model_or_index: onnx.ModelProto | GraphIndex, batch_size: int) -> GraphIndex:
    """The index of a model whose symbolic batch (dim 0 of an input) is pinned to
    ``batch_size``: shape arithmetic on the batch (a dynamic-batch TorchScript export computes
    every Reshape target from ``Shape``) then folds, and later shapes are known. An index is
    taken as it is."""
    if isinstance(model_or_index, GraphIndex):
        return model_or_index

    def symbolic_batch(vi: onnx.ValueInfoProto) -> bool:
        dims = vi.type.tensor_type.shape.dim if vi.type.HasField("tensor_type") else []
        return bool(dims) and not dims[0].HasField("dim_value")

    if not any(symbolic_batch(vi) for vi in model_or_index.graph.input):
        return GraphIndex(model_or_index)  # nothing to pin: no copy of the weights
    pinned = onnx.ModelProto()
    pinned.CopyFrom(model_or_index)
    for vi in pinned.graph.input:
        if symbolic_batch(vi):
            vi.type.tensor_type.shape.dim[0].dim_value = batch_size
    return GraphIndex(pinned)


def _numel(dims: tuple[Dim, ...] | None, batch_size: int) -> int | None:
    if dims is None:
        return None
    total = 1
    for i, d in enumerate(dims):
        if isinstance(d, int):
            total *= d
        elif i == 0:
            total *= batch_size
        else:
            return None
    return total


def _node_macs(ix: GraphIndex, node: onnx.NodeProto, batch_size: int) -> int | None:
    out = _numel(ix.shape(node.output[0]), batch_size)
    if out is None:
        return None
    if node.op_type == "Conv":
        w = ix.shape(node.input[1])
        if not _static(w) or len(w) < 2:
            return None
        return out * math.prod(w[1:])  # (C_in/group) * kH * kW per output element
    a = ix.shape(node.input[0])
    if not a:
        return None
    transposed = node.op_type == "Gemm" and attr(node, "transA", 0)
    k = a[0] if transposed else a[-1]  # A is (M, K), (K, M) with transA, or (..., M, K)
    return out * k if isinstance(k, int) else None
