"""Folding a channel shuffle into a neighbouring convolution's weight, where that is exact.

A shuffle is a channel permutation ``y[:, j] = x[:, perm[j]]``. It can disappear into a Conv:

- **backward**, into the Conv that produces ``x``: ``Conv(W, b)`` followed by the shuffle is
  ``Conv(W[perm], b[perm])`` (its output rows permuted). Each output channel is computed from
  the same numbers in the same order, so the result is bit-identical.
- **forward**, into the Conv that reads ``y``: ``Conv(shuffle(x), W)`` is ``Conv(x, W[:, inv])``
  (its input columns permuted, ``inv`` the inverse permutation). Exact in real arithmetic; the
  sum over input channels runs in another order, so equal up to fp32 rounding.

Between the shuffle and that Conv may sit per-channel operators, which the permutation passes
through with their parameters permuted (by ``perm`` going backward, by ``inv`` going forward):
elementwise activations, BatchNormalization, Mul/Add/Sub/Div/PRelu by a per-channel constant,
and depthwise Conv (group == channels, multiplier 1). No tensor on the way may be a graph output
(its values change order). Going backward every tensor must have one reader; going forward the
permutation may branch (every reader a per-channel op or a Conv that takes it, no node reached
twice).

Only a **group-1** Conv can take a permutation of its outputs or inputs: a shuffle moves
channels *across* groups, so a grouped Conv with permuted rows is no longer grouped. With
``densify`` a grouped Conv is first made dense (its block-diagonal weight, zeros off the blocks:
exact, ``g`` times the multiply-adds) and then takes the permutation; ShuffleNet units need this,
since both their neighbouring 1×1 Convs are grouped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from onnxconv.graph import GraphIndex
from onnxconv.graph.edit import set_attr

from .edit import Editor
from .sites import ShuffleSite, block_diagonal, conv_site, shuffle_sites

#: Elementwise ops without per-channel parameters: a channel permutation passes through as is.
ELEMENTWISE = frozenset(
    {
        "Identity",
        "Relu",
        "LeakyRelu",
        "Elu",
        "Selu",
        "Celu",
        "Sigmoid",
        "HardSigmoid",
        "HardSwish",
        "Tanh",
        "Softplus",
        "Softsign",
        "Mish",
        "Gelu",
        "Erf",
        "Neg",
        "Abs",
        "Exp",
        "Sqrt",
        "Reciprocal",
        "Clip",
    }
)
#: Binary ops whose constant operand may be per-channel.
PER_CHANNEL_BINARY = frozenset({"Mul", "Add", "Sub", "Div", "PRelu"})


@dataclass
class Folded:
    model: onnx.ModelProto
    changes: list[str]
    exact_permutation: bool
    densified: int


@dataclass
class _Step:
    """One node the permutation passes through or ends in, and how its constants change."""

    node: str  # label
    params: dict[int, np.ndarray]  # input index -> new constant
    what: str
    group_to_1: bool = False


def _param_axis(ix: GraphIndex, const: np.ndarray, data: str, channels: int) -> int | None:
    """Axis of ``const`` that broadcasts over the channels of ``data`` (rank-aligned right), -1
    when it does not vary by channel, None when it is not per-channel at all."""
    dims = ix.shape(data)
    if dims is None or len(dims) < 2 or const.ndim > len(dims):
        return None
    axis = 1 - (len(dims) - const.ndim)
    if any(
        size != 1 and (not isinstance(d, int) or size != d)
        for i, (size, d) in enumerate(zip(const.shape, dims[len(dims) - const.ndim :]))
        if i != axis
    ):
        return None  # broadcasts the data to a larger shape
    if axis < 0 or const.shape[axis] == 1:
        return -1
    return axis if const.shape[axis] == channels else None


def _per_channel(
    ix: GraphIndex, node: onnx.NodeProto, data: str, order: np.ndarray
) -> _Step | None:
    """``node`` as a per-channel op reading ``data``, with its constants reordered by ``order``;
    None when it is not one."""
    label, op = ix.label(node), node.op_type
    if node.domain not in ("", "ai.onnx") or node.input[0] != data:
        return None
    used_outputs = [o for o in node.output[1:] if o and ix.consumers.get(o)]
    if used_outputs:
        return None
    channels = len(order)
    if op in ELEMENTWISE:
        if any(i and ix.const(i) is None for i in node.input[1:]):
            return None  # Clip with computed bounds
        return _Step(label, {}, f"{label} ({op}) passed through")
    if op == "BatchNormalization":
        params = {i: ix.const(node.input[i]) for i in range(1, 5)}
        if any(p is None or p.shape != (channels,) for p in params.values()):
            return None
        return _Step(
            label, {i: p[order] for i, p in params.items()}, f"{label} (BN) parameters permuted"
        )
    if op in PER_CHANNEL_BINARY and len(node.input) == 2:
        const = ix.const(node.input[1])
        if const is None or ix.shape(node.output[0]) != ix.shape(data):
            return None
        axis = _param_axis(ix, const, data, channels)
        if axis is None:
            return None
        if axis < 0:
            return _Step(label, {}, f"{label} ({op}, same for every channel) passed through")
        permuted = np.take(const, order, axis=axis)
        return _Step(label, {1: permuted}, f"{label} ({op}) per-channel constant permuted")
    if op == "Conv":
        site = conv_site(ix, node)
        if site is None or site.info.group != channels or site.weight.shape[0] != channels:
            return None  # only depthwise with multiplier 1 keeps channels apart
        params = {1: site.weight[order]}
        if site.bias is not None:
            params[2] = site.bias[order]
        return _Step(label, params, f"{label} (depthwise Conv) weight and bias permuted")
    return None


def _absorb(
    ix: GraphIndex, node: onnx.NodeProto, data: str, order: np.ndarray, rows: bool, densify: bool
) -> _Step | None:
    """``node`` as the Conv that takes the permutation into its output rows (``rows``) or input
    columns; None when it cannot (grouped without ``densify``, non-constant weight)."""
    if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
        return None
    if not rows and node.input[0] != data:
        return None
    site = conv_site(ix, node)
    if site is None or (site.info.group > 1 and not densify):
        return None
    label, group = ix.label(node), site.info.group
    weight = block_diagonal(site.weight, group) if group > 1 else site.weight
    dense = f"made dense (group {group} -> 1), " if group > 1 else ""
    if rows:
        params = {1: weight[order]}
        if site.bias is not None:
            params[2] = site.bias[order]
        what = f"{label}: {dense}output rows permuted"
    else:
        params = {1: weight[:, order]}
        what = f"{label}: {dense}input columns permuted"
    return _Step(label, params, what, group_to_1=group > 1)


def _walk_back(ix: GraphIndex, site: ShuffleSite, densify: bool) -> list[_Step] | None:
    steps, tensor = [], site.input
    for _ in range(len(ix.nodes)):
        node = ix.producer.get(tensor)
        if node is None or tensor in ix.graph_outputs or len(ix.consumers[tensor]) != 1:
            return None
        data = node.input[0] if node.input else ""
        step = _per_channel(ix, node, data, site.perm)
        if step is None:
            end = _absorb(ix, node, data, site.perm, rows=True, densify=densify)
            return None if end is None else [*steps, end]
        steps.append(step)
        tensor = data
    return None


def _walk_forward(ix: GraphIndex, site: ShuffleSite, densify: bool) -> list[_Step] | None:
    """The steps that take the permutation forward into every reader of the shuffled tensor
    (ShuffleNet V2's stride-2 units read it twice: a depthwise Conv and a 1x1 Conv); None
    unless every branch ends in a Conv that absorbs it."""
    steps = _forward_from(ix, site.output, site.inverse, densify, len(ix.nodes))
    if steps is None or len({s.node for s in steps}) != len(steps):
        return None  # a node reached twice (branches that meet) would be permuted twice
    return steps


def _forward_from(
    ix: GraphIndex, tensor: str, order: np.ndarray, densify: bool, budget: int
) -> list[_Step] | None:
    readers = ix.consumers.get(tensor, [])
    if tensor in ix.graph_outputs or not readers or budget <= 0:
        return None
    steps: list[_Step] = []
    for node in readers:
        step = _per_channel(ix, node, tensor, order)
        if step is None:
            end = _absorb(ix, node, tensor, order, rows=False, densify=densify)
            if end is None:
                return None
            steps.append(end)
            continue
        rest = _forward_from(ix, node.output[0], order, densify, budget - 1)
        if rest is None:
            return None
        steps += [step, *rest]
    return steps


def _apply(ed: Editor, site: ShuffleSite, steps: list[_Step], backward: bool) -> None:
    for step in steps:
        node = ed.graph.node[ed.index_of(step.node)]
        for i, value in step.params.items():
            node.input[i] = ed.add_initializer(f"{node.input[i]}_tune_fold", value)
        if step.group_to_1:
            set_attr(node, "group", 1)
        ed.changed_tensors.update(node.output)
    shuffle = [ed.index_of(n) for n in (site.reshape_in, site.transpose, site.reshape_out)]
    ed.replace_nodes(shuffle, [])
    if backward:  # the producer's output now holds the shuffled channels: give it their name
        ed.rename_tensor(site.input, site.output)
    else:  # the reader now reads the unshuffled tensor
        ed.rename_tensor(site.output, site.input)


def _fold_one(
    model: onnx.ModelProto, densify: bool
) -> tuple[onnx.ModelProto, str, bool, bool] | None:
    """The first shuffle that folds: (model, change, exact permutation, densified)."""
    ix = GraphIndex(model)
    attempts = [(True, False), (False, False)] + ([(True, True), (False, True)] if densify else [])
    for site in shuffle_sites(ix):
        for backward, dense in attempts:
            steps = (_walk_back if backward else _walk_forward)(ix, site, dense)
            if steps is None:
                continue
            densified = any(s.group_to_1 for s in steps)
            ed = Editor(model)
            _apply(ed, site, steps, backward)
            rewrite = "shuffle_fold_dense" if densify else "shuffle_fold"
            said = "; ".join(s.what for s in steps)
            where = "backward" if backward else "forward"
            change = f"{site.transpose} ({site.groups} groups) folded {where}: {said}"
            return ed.finish(rewrite), change, backward and not densified, densified
    return None


def fold_shuffles(model: onnx.ModelProto, densify: bool) -> Folded | None:
    """Every shuffle that folds, folded (without densifying first, then backward first, where
    the result is bit-identical); None when none does."""
    result = Folded(model, [], exact_permutation=True, densified=0)
    while (step := _fold_one(result.model, densify)) is not None:
        folded, change, exact, densified = step
        result = Folded(
            folded,
            [*result.changes, change],
            result.exact_permutation and exact,
            result.densified + densified,
        )
    return result if result.changes else None
