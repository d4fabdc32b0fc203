"""Read any ONNX graph: convolution kinds, flattened pairs, channel shuffles, op counts.

A library module: plain values in, dataclasses out, no printing. Loading and the graph index
(producers, consumers, constant folding, shapes) live in :mod:`onnxconv.graph.index`, cost in
:mod:`onnxconv.graph.cost`, checks that judge a graph (lint, family structure) in
:mod:`onnxconv.graph.checks`.

Everything works on graphs from any exporter: weights may be initializers, ``Constant`` nodes or
an ``Identity`` of an initializer; reshape shapes may be initializers, constants, a ``shape``
attribute (Reshape before opset 5) or computed at run time (``Shape -> Gather -> Unsqueeze ->
Concat``). What cannot be folded statically is read from ONNX shape inference.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import onnx

from .index import Dim, GraphIndex, _static, as_index, attr, is_default_domain

SHUFFLE_PERM = {5: [0, 2, 1, 3, 4], 4: [0, 2, 1, 3]}
"""Transpose perm of an exact channel shuffle, by rank of the grouped tensor."""

# Ops that may sit between the three nodes of a channel shuffle without hiding it: the chain is
# still found (and reported as not exact). Anything else breaks the chain.
_PASS_THROUGH = {
    "Identity",
    "Cast",
    "Dropout",
    "Relu",
    "LeakyRelu",
    "Clip",
    "Sigmoid",
    "Tanh",
    "HardSigmoid",
    "HardSwish",
    "Neg",
    "Abs",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "QuantizeLinear",
    "DequantizeLinear",
}
_MAX_BETWEEN = 4


# --------------------------------------------------------------------------------------------
# convolutions


@dataclass
class ConvInfo:
    """One ``Conv`` node. ``kind``: standard | pointwise | depthwise | grouped | unknown.

    ``depthwise`` means group == in_channels > 1 (out_channels = depth_multiplier * in_channels);
    ``pointwise`` a 1x1 Conv with group 1; ``grouped`` any other group > 1; ``unknown`` when
    the channel counts cannot be read (no weight shape, no inferred input shape).
    """

    name: str
    input: str
    output: str
    in_channels: int | None
    out_channels: int | None
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pads: tuple[int, ...]
    dilations: tuple[int, ...]
    group: int
    kind: str
    depth_multiplier: int | None = None
    bias: bool = False
    auto_pad: str = "NOTSET"
    kernel_from: str = "attribute"  # "attribute" | "weight" | "unknown"


@dataclass
class FlattenedPair:
    """A k x 1 Conv whose output feeds a 1 x k Conv directly (flattened convolution)."""

    vertical: str
    horizontal: str
    kernel: int


def conv_info(ix: GraphIndex, node: onnx.NodeProto) -> ConvInfo:
    """Describe one Conv node (attributes first, else weight / inferred shapes)."""
    w = ix.shape(node.input[1]) if len(node.input) > 1 else None
    w = w if _static(w) and len(w) >= 2 else None
    x = ix.shape(node.input[0])
    y = ix.shape(node.output[0])
    group = int(attr(node, "group", 1))
    kernel = attr(node, "kernel_shape")
    kernel_from = "attribute"
    if kernel is None:
        kernel, kernel_from = (list(w[2:]), "weight") if w is not None else ([], "unknown")
    spatial = len(kernel)
    in_ch = w[1] * group if w is not None else _dim(x, 1)
    out_ch = w[0] if w is not None else _dim(y, 1)
    kind, multiplier = _conv_kind(in_ch, out_ch, group, kernel)
    return ConvInfo(
        name=ix.label(node),
        input=node.input[0],
        output=node.output[0],
        in_channels=in_ch,
        out_channels=out_ch,
        kernel=tuple(int(k) for k in kernel),
        stride=tuple(attr(node, "strides", [1] * spatial)),
        pads=tuple(attr(node, "pads", [0] * 2 * spatial)),
        dilations=tuple(attr(node, "dilations", [1] * spatial)),
        group=group,
        kind=kind,
        depth_multiplier=multiplier,
        bias=len(node.input) > 2 and bool(node.input[2]),
        auto_pad=_as_str(attr(node, "auto_pad", "NOTSET")),
        kernel_from=kernel_from,
    )


def _dim(dims: tuple[Dim, ...] | None, i: int) -> int | None:
    return dims[i] if dims is not None and i < len(dims) and isinstance(dims[i], int) else None


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _conv_kind(in_ch: int | None, out_ch: int | None, group: int, kernel) -> tuple[str, int | None]:
    if group == 1:
        return ("pointwise" if kernel and all(k == 1 for k in kernel) else "standard"), None
    if in_ch is None:
        return "unknown", None
    if group == in_ch:
        multiplier = out_ch // in_ch if out_ch is not None and out_ch % in_ch == 0 else None
        return "depthwise", multiplier
    return "grouped", None


def find_convs(model_or_index: onnx.ModelProto | GraphIndex) -> list[ConvInfo]:
    """All default-domain Conv nodes, in graph order."""
    ix = as_index(model_or_index)
    return [conv_info(ix, n) for n in ix.nodes if n.op_type == "Conv" and is_default_domain(n)]


def find_flattened_pairs(convs: list[ConvInfo]) -> list[FlattenedPair]:
    """k x 1 Conv -> 1 x k Conv (same k > 1), the first's output read directly by the second."""
    by_input: dict[str, list[ConvInfo]] = defaultdict(list)
    for c in convs:
        by_input[c.input].append(c)
    pairs = []
    for v in convs:
        if len(v.kernel) != 2 or v.kernel[1] != 1 or v.kernel[0] < 2:
            continue
        for h in by_input.get(v.output, []):
            if h.kernel == (1, v.kernel[0]):
                pairs.append(FlattenedPair(vertical=v.name, horizontal=h.name, kernel=v.kernel[0]))
    return pairs


# --------------------------------------------------------------------------------------------
# channel shuffles


@dataclass
class ShuffleInfo:
    """A Reshape -> Transpose -> Reshape chain that regroups the channel axis.

    ``exact`` is True when the three nodes form a direct chain (nothing between them, no other
    reader of the intermediate tensors) and ``perm`` is the shuffle perm for ``rank``
    (``[0,2,1,3,4]`` for the rank-5 form, ``[0,2,1,3]`` for the rank-4 form). ``problems``
    says why a chain is not exact. ``batch`` holds the raw batch entry of each reshape's shape
    (0 / -1 copy or infer it; a positive value fixes it; None when computed at run time).
    """

    reshape_in: str
    transpose: str
    reshape_out: str
    rank: int
    perm: list[int]
    groups: int | None
    channels_per_group: int | None
    between: list[str] = field(default_factory=list)
    exact: bool = False
    problems: list[str] = field(default_factory=list)
    batch: tuple[int | None, int | None] = (None, None)


def find_channel_shuffles(model_or_index: onnx.ModelProto | GraphIndex) -> list[ShuffleInfo]:
    """Every Reshape -> Transpose -> Reshape chain on a rank-4/5 grouped tensor, exact or not.

    Ops from a small pass-through set (Identity, Cast, activations, ...) between the nodes are
    walked over and listed in ``between``; the chain is then reported but not exact.
    """
    ix = as_index(model_or_index)
    found = []
    for t in ix.nodes:
        if t.op_type == "Transpose" and is_default_domain(t):
            info = _shuffle_at(ix, t)
            if info is not None:
                found.append(info)
    return found


def _shuffle_at(ix: GraphIndex, t: onnx.NodeProto) -> ShuffleInfo | None:
    first, before, shared_before = _walk_back(ix, t.input[0])
    second, after, shared_after = _walk_forward(ix, t.output[0])
    if first is None or second is None:
        return None
    dims = ix.reshape_dims(first)
    perm = attr(t, "perm")
    rank = len(dims) if dims is not None else (len(perm) if perm else None)
    if rank not in SHUFFLE_PERM:
        return None
    perm = [int(p) for p in perm] if perm is not None else list(range(rank))[::-1]
    if sorted(perm) != list(range(rank)):
        return None
    groups = dims[1] if dims else None
    per_group = dims[2] if dims else None
    channels = _dim(ix.shape(first.input[0]), 1)
    if None not in (channels, groups, per_group) and groups * per_group != channels:
        return None  # regroups something other than the channel axis
    raw_in, raw_out = ix.reshape_target(first), ix.reshape_target(second)
    between = [ix.label(n) for n in (*before, *after)]
    problems = []
    if between:
        problems.append(f"{', '.join(between)} between the shuffle nodes")
    if shared_before or shared_after or t.output[0] in ix.graph_outputs:
        problems.append("an intermediate tensor of the shuffle is also read elsewhere")
    if perm != SHUFFLE_PERM[rank]:
        problems.append(f"Transpose perm {perm} is not {SHUFFLE_PERM[rank]}")
    regrouping = _regrouping_problem(ix, first, second, rank)
    if regrouping:
        problems.append(regrouping)
    return ShuffleInfo(
        reshape_in=ix.label(first),
        transpose=ix.label(t),
        reshape_out=ix.label(second),
        rank=rank,
        perm=perm,
        groups=groups,
        channels_per_group=per_group,
        between=between,
        exact=not problems,
        problems=problems,
        batch=(raw_in[0] if raw_in else None, raw_out[0] if raw_out else None),
    )


def _regrouping_problem(
    ix: GraphIndex, first: onnx.NodeProto, second: onnx.NodeProto, rank: int
) -> str | None:
    """Why the chain may not shuffle the channels of its input at every size the graph accepts,
    or None. Its input (N, C, H, W) must have a known C; the first Reshape must give (N, g, C/g,
    H, W) (rank 5) or (N, g, C/g, H*W) (rank 4) and the second (N, C, H, W) again, each target
    made of constants and the graph's own shapes, none read from a graph input (a target of
    [1, ...] on a dynamic batch regroups the batch with the channels beyond batch 1)."""
    src = ix.shape(first.input[0])
    if src is None or len(src) != 4:
        return "the shuffle's input is not known to be 4-D"
    n, c, h, w = src
    if not isinstance(c, int):
        return "the shuffle's channel count is unknown to shape inference"
    dims = ix.reshape_dims(first)
    groups, per_group = (dims[1], dims[2]) if dims and len(dims) == rank else (None, None)
    if not (isinstance(groups, int) and isinstance(per_group, int) and groups * per_group == c):
        return f"{ix.label(first)} is not proven to split the {c} channels into groups"
    hw = h * w if isinstance(h, int) and isinstance(w, int) else None
    grouped = [n, groups, per_group, h, w] if rank == 5 else [n, groups, per_group, hw]
    for node, want in ((first, grouped), (second, [n, c, h, w])):
        if len(node.input) > 1 and _reads_a_graph_input(ix, node.input[1]):
            return f"{ix.label(node)} reads its target shape from a graph input"
        if not _reshapes_to(ix, node, want):
            shown = "x".join("?" if d is None else str(d) for d in want)
            return f"{ix.label(node)} is not proven to give {shown} at every input size"
    return None


def _reshapes_to(ix: GraphIndex, node: onnx.NodeProto, want: list[Dim | None]) -> bool:
    """Whether the Reshape ``node`` gives ``want`` (ints, the input's symbolic dims) for every
    input it accepts: each dim shape inference gives as wanted, a 0 copying the batch, a
    literal equal to a static dim or a Shape's element equal to a symbolic one, and at most one
    -1, which the rest then fix."""
    raw, out = ix.symbolic_target(node), ix.shape(node.output[0])
    if (raw is not None and len(raw) != len(want)) or (out is not None and len(out) != len(want)):
        return False
    raw = raw or [None] * len(want)
    copies = not attr(node, "allowzero", 0)
    unproven = [
        i
        for i, wanted in enumerate(want)
        if not (
            (wanted is not None and out is not None and out[i] == wanted)
            or (i == 0 and raw[0] == 0 and copies)
            or (wanted is not None and raw[i] == wanted)
        )
    ]
    return not unproven or (len(unproven) == 1 and raw[unproven[0]] == -1)


def _reads_a_graph_input(ix: GraphIndex, name: str) -> bool:
    """Whether the tensor ``name`` depends on a graph input's values (an input's shape, through
    Shape, does not count; an initializer a feed may override does)."""
    inputs = {vi.name for vi in ix.graph.input}
    stack, seen = [name], set()
    while stack:
        tensor = stack.pop()
        if not tensor or tensor in seen:
            continue
        seen.add(tensor)
        if ix.const(tensor) is not None:
            continue
        if tensor in inputs:
            return True
        node = ix.producer.get(tensor)
        if node is None:
            return True  # read from an enclosing graph, or nowhere
        if node.op_type != "Shape":
            stack.extend(node.input)
    return False


def _walk_back(ix: GraphIndex, name: str):
    """From a tensor back through pass-through ops to a Reshape: (reshape, between, shared)."""
    between, shared = [], False
    for _ in range(_MAX_BETWEEN + 1):
        node = ix.producer.get(name)
        if node is None or not is_default_domain(node):
            return None, [], False
        shared = shared or len(ix.consumers.get(name, [])) > 1 or name in ix.graph_outputs
        if node.op_type == "Reshape":
            return node, between[::-1], shared
        data = _data_input(ix, node)
        if node.op_type not in _PASS_THROUGH or data is None:
            return None, [], False
        between.append(node)
        name = data
    return None, [], False


def _walk_forward(ix: GraphIndex, name: str):
    """From a tensor forward through pass-through ops to a Reshape: (reshape, between, shared)."""
    between, shared = [], False
    for _ in range(_MAX_BETWEEN + 1):
        users = ix.consumers.get(name, [])
        if not users:
            return None, [], False
        shared = shared or len(users) > 1 or name in ix.graph_outputs
        node = (
            users[0]
            if len(users) == 1
            else next((u for u in users if u.op_type == "Reshape"), None)
        )
        if node is None or not is_default_domain(node):
            return None, [], False
        if node.op_type == "Reshape" and node.input[0] == name:
            return node, between, shared
        if node.op_type not in _PASS_THROUGH or _data_input(ix, node) != name:
            return None, [], False
        between.append(node)
        name = node.output[0]
    return None, [], False


def _data_input(ix: GraphIndex, node: onnx.NodeProto) -> str | None:
    """The one non-constant input of a node, or None if there are zero or several."""
    data = [i for i in node.input if i and ix.const_root(i) is None]
    return data[0] if len(data) == 1 else None


# --------------------------------------------------------------------------------------------
# report


@dataclass
class GraphReport:
    """What a graph holds. ``to_dict()`` gives plain JSON-ready values."""

    ir_version: int
    producer_name: str
    producer_version: str
    opsets: dict[str, int]
    graph_name: str
    inputs: dict[str, list[Dim] | None]
    outputs: dict[str, list[Dim] | None]
    #: Element type of every input and output (``float32``, ``float16``, ``int64``, ...).
    dtypes: dict[str, str]
    node_count: int
    op_counts: dict[str, int]
    convs: list[ConvInfo]
    flattened_pairs: list[FlattenedPair]
    shuffles: list[ShuffleInfo]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _type_name(elem_type: int) -> str:
    """``float32`` for TensorProto.FLOAT, ``int64``, ``float16``, ... (``undefined`` if unset)."""
    name = onnx.TensorProto.DataType.Name(elem_type).lower()
    return {"float": "float32", "double": "float64"}.get(name, name)


def inspect_model(model: onnx.ModelProto) -> GraphReport:
    """Opsets, producer, op counts (top-level graph only), Convs, flattened pairs, shuffles."""
    ix = GraphIndex(model)
    counts = Counter(
        n.op_type if is_default_domain(n) else f"{n.domain}:{n.op_type}" for n in ix.nodes
    )
    convs = find_convs(ix)

    def dims(name: str) -> list[Dim] | None:
        d = ix.shape(name)
        return None if d is None else list(d)

    return GraphReport(
        ir_version=model.ir_version,
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        opsets={(op.domain or "ai.onnx"): op.version for op in model.opset_import},
        graph_name=model.graph.name,
        inputs={vi.name: dims(vi.name) for vi in ix.graph_inputs()},
        outputs={vi.name: dims(vi.name) for vi in ix.graph.output},
        dtypes={
            vi.name: _type_name(vi.type.tensor_type.elem_type)
            for vi in [*ix.graph_inputs(), *ix.graph.output]
        },
        node_count=len(ix.nodes),
        op_counts=dict(sorted(counts.items())),
        convs=convs,
        flattened_pairs=find_flattened_pairs(convs),
        shuffles=find_channel_shuffles(ix),
    )


def structure_summary(model_or_index: onnx.ModelProto | GraphIndex) -> dict[str, Any]:
    """What ``inspect`` finds, in brief: Convs per kind, the groups of the grouped ones, the
    flattened pairs, and the channel shuffles with their groups (what a user model's export
    records instead of a family's expectations)."""
    ix = as_index(model_or_index)
    convs = find_convs(ix)
    shuffles = find_channel_shuffles(ix)
    return {
        "convs": dict(sorted(Counter(c.kind for c in convs).items())),
        "grouped_groups": sorted({c.group for c in convs if c.kind == "grouped"}),
        "flattened_pairs": len(find_flattened_pairs(convs)),
        "shuffles": len(shuffles),
        "shuffle_groups": sorted({s.groups for s in shuffles if s.groups is not None}),
        "exact_shuffles": sum(s.exact for s in shuffles),
    }
