"""Mutation suite: defects planted in any ONNX graph, to measure what validation catches.

Each mutation is a function ``ModelProto -> Mutant | None`` (None: not applicable to the graph).
It copies the model, plants one defect on the first applicable node in graph order and keeps
every graph output's shape, so a check that looks only at the graph's structure or output
shapes passes and only a numerical comparison can tell. Each stands for a defect that export or
conversion does produce:

- ``shuffle_perm_identity``: the channel shuffle's Transpose perm becomes the identity, as when
  a pass folds the shuffle away as a no-op transpose; channels are no longer mixed.
- ``shuffle_groups_swapped``: the shuffle's first Reshape to (N, g, C/g, H, W) becomes
  (N, C/g, g, H, W), the classic ``view`` mistake of a hand-ported ShuffleNet.
- ``transpose_hw``: H and W swapped (the shuffle's perm becomes [0, 2, 1, 4, 3], or a
  Transpose inserted after the first Conv), a layout-conversion (NCHW / NHWC) mistake that
  shapes never show while H == W.
- ``weight_sign_flip``: one output channel of the first Conv's weight negated: a weight
  mis-converted by a layout or kernel-flip rewrite (correlation vs convolution).
- ``weight_nudge`` (subtle): the first Conv's largest weight times (1 + 1e-3), the size of a
  rounding slip in constant folding or re-quantisation.
- ``conv_dilation``: a Conv's dilation +1 with pads grown to keep the shape: a dilation
  attribute dropped or misread by an exporter.
- ``conv_pads``: a Conv's pads shifted by one pixel (begin +1, end -1): asymmetric "SAME"
  padding imported on the wrong side.
- ``bn_epsilon`` / ``bn_scale``: the first BatchNormalization's epsilon times 1000 (a framework
  default taken for another's: 1e-5 vs 1e-3 / 1e-2) or one scale element times 1.5 (a wrong
  parameter folded).
- ``add_to_sub``: the first residual Add (both inputs activations) becomes Sub: an op mapped
  to the wrong ONNX op.
- ``output_scaled`` (subtle): the first graph output times (1 + 1e-4), a mis-folded
  normalisation constant.
- ``fp16_overflow``: the first Conv's weight and bias times 2**16 and its output times 2**-16
  (exact in fp32), then the graph converted by :func:`onnxconv.fp16.to_fp16`: unnormalised
  activations beyond 65504 overflow to inf in an fp16-converted graph. Only where fp16 is
  computed in fp16: ONNX Runtime's CPU EP on x86 has no fp16 Conv / Mul kernels and runs them
  in fp32 (it inserts Casts and drops the fp32 -> fp16 -> fp32 pairs), so there it stays finite.
- ``stale_output``: the model untouched, one element of the stored expected outputs changed:
  test data left over from an earlier export.

In a quantized (QDQ) graph, whose Conv weights are integers behind a DequantizeLinear, the
first weight DequantizeLinear in graph order carries these instead (``detect --precision
int8``):

- ``int8_weight_sign_flip``: one output channel of its integer weight negated.
- ``weight_scale_doubled``: one output channel's scale x2 (the tensor's, for per-tensor
  weights): a scale taken from the channel beside it.
- ``zero_point_shift``: the activation DequantizeLinear nearest the output reads a zero point
  one above its QuantizeLinear's: every element moves one step, an off-by-one zero point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxconv.errors import UserInputError
from onnxconv.fp16 import to_fp16
from onnxconv.graph import SHUFFLE_PERM, ConvInfo, ShuffleInfo, conv_info, find_channel_shuffles
from onnxconv.graph.edit import (
    add_fresh_initializer,
    copy_model,
    forget_shapes,
    insert_after,
    replace_input,
    set_attr,
)
from onnxconv.graph.index import GraphIndex, attr, is_default_domain


@dataclass
class Mutant:
    """One planted defect: the mutated model (a copy) and where the defect sits.

    ``node`` is the node's name (``OpType(output)`` for an unnamed node, as
    :meth:`GraphIndex.label` says), an inserted node's name, or None for ``stale_output``.
    """

    name: str
    description: str
    model: onnx.ModelProto
    node: str | None
    subtle: bool = False
    stored_outputs: dict[str, np.ndarray] | None = None


_FLOAT_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.BFLOAT16,
}

# --------------------------------------------------------------------------------------------
# finding nodes


def _nodes(ix: GraphIndex, op_type: str) -> list[int]:
    """Indices of the default-domain nodes of one op type, in graph order."""
    return [i for i, n in enumerate(ix.nodes) if n.op_type == op_type and is_default_domain(n)]


def _at(ix: GraphIndex, label: str) -> int:
    """Index of the node with this label (see :meth:`GraphIndex.label`)."""
    return next(i for i, n in enumerate(ix.nodes) if ix.label(n) == label)


def _convs(ix: GraphIndex) -> Iterator[tuple[int, ConvInfo]]:
    for i in _nodes(ix, "Conv"):
        yield i, conv_info(ix, ix.nodes[i])


def _first_conv(ix: GraphIndex) -> tuple[int, np.ndarray] | None:
    """The first Conv with a constant float weight: its index and weight."""
    for i in _nodes(ix, "Conv"):
        weight = ix.const(ix.nodes[i].input[1])
        if weight is not None and weight.dtype.kind == "f" and weight.size:
            return i, weight
    return None


def _shuffles(ix: GraphIndex) -> list[ShuffleInfo]:
    """Channel shuffles whose Transpose has the shuffle perm."""
    return [s for s in find_channel_shuffles(ix) if s.perm == SHUFFLE_PERM[s.rank]]


def _shuffle_inner(ix: GraphIndex, shuffle: ShuffleInfo) -> list[str]:
    """The tensors between a shuffle's two Reshapes."""
    labels = (shuffle.reshape_in, shuffle.transpose, *shuffle.between)
    return [ix.nodes[_at(ix, label)].output[0] for label in labels]


def _is_float(ix: GraphIndex, name: str) -> bool:
    """Whether shape inference types ``name`` as a floating-point tensor."""
    infos = (*ix.graph.input, *ix.graph.value_info, *ix.graph.output)
    return any(vi.name == name and vi.type.tensor_type.elem_type in _FLOAT_TYPES for vi in infos)


# --------------------------------------------------------------------------------------------
# editing a copy


def _attr_mutant(
    model: onnx.ModelProto,
    ix: GraphIndex,
    index: int,
    mutation: str,
    changes: dict[str, tuple[object, object]],
) -> Mutant:
    """A copy with attributes of one node set; ``changes``: name -> (old value, new value)."""
    mutant = copy_model(model)
    for name, (_, new) in changes.items():
        set_attr(mutant.graph.node[index], name, new)
    label = ix.label(ix.nodes[index])
    said = ", ".join(f"{name} {old} -> {new}" for name, (old, new) in changes.items())
    return Mutant(mutation, f"{label}: {said}", mutant, label)


# --------------------------------------------------------------------------------------------
# mutations


def shuffle_perm_identity(model: onnx.ModelProto) -> Mutant | None:
    ix = GraphIndex(model)
    shuffles = _shuffles(ix)
    if not shuffles:
        return None
    s = shuffles[0]
    identity = list(range(s.rank))
    mutant = _attr_mutant(
        model, ix, _at(ix, s.transpose), "shuffle_perm_identity", {"perm": (s.perm, identity)}
    )
    forget_shapes(mutant.model, _shuffle_inner(ix, s))
    return mutant


def shuffle_groups_swapped(model: onnx.ModelProto) -> Mutant | None:
    ix = GraphIndex(model)
    for s in _shuffles(ix):
        index = _at(ix, s.reshape_in)
        dims = ix.reshape_dims(ix.nodes[index])
        if dims is None or None in dims[1:] or dims[1] == dims[2]:
            continue
        target = [-1, dims[2], dims[1], *dims[3:]]
        mutant = copy_model(model)
        node = mutant.graph.node[index]
        if attr(node, "shape") is not None:  # Reshape-1: the shape is an attribute
            set_attr(node, "shape", target)
        else:
            replace_input(
                mutant, index, 1, np.array(target, np.int64), "mutant_shuffle_groups_swapped"
            )
        forget_shapes(mutant, _shuffle_inner(ix, s))
        old = ix.reshape_target(ix.nodes[index])
        said = f"{s.reshape_in}: reshape target {old} -> {target}"
        return Mutant("shuffle_groups_swapped", said, mutant, s.reshape_in)
    return None


def transpose_hw(model: onnx.ModelProto) -> Mutant | None:
    ix = GraphIndex(model)
    for s in _shuffles(ix):
        index = _at(ix, s.transpose)
        dims = ix.shape(ix.nodes[index].input[0])
        if _square(dims, 5):
            swapped = [0, 2, 1, 4, 3]
            mutant = _attr_mutant(model, ix, index, "transpose_hw", {"perm": (s.perm, swapped)})
            forget_shapes(mutant.model, _shuffle_inner(ix, s))
            return mutant
    for _, conv in _convs(ix):
        if _square(ix.shape(conv.output), 4):
            mutant = copy_model(model)
            node = insert_after(
                mutant, conv.output, "Transpose", [], "mutant_transpose_hw", perm=[0, 1, 3, 2]
            )
            said = f"{conv.name}: Transpose(perm [0, 1, 3, 2]) {node} inserted on {conv.output}"
            return Mutant("transpose_hw", said, mutant, node)
    return None


def _square(dims: tuple | None, rank: int) -> bool:
    """Whether ``dims`` has this rank and its last two dims (H, W) are known and equal."""
    return (
        dims is not None
        and len(dims) == rank
        and isinstance(dims[-1], int)
        and (dims[-1] == dims[-2])
    )


def _weight_mutant(
    model: onnx.ModelProto,
    name: str,
    change: Callable[[np.ndarray, str], tuple[np.ndarray, str]],
    subtle: bool = False,
) -> Mutant | None:
    """The first Conv's weight replaced by ``change(weight, weight_name)`` -> (new, what)."""
    ix = GraphIndex(model)
    found = _first_conv(ix)
    if found is None:
        return None
    index, weight = found
    changed, what = change(weight, ix.nodes[index].input[1])
    mutant = copy_model(model)
    replace_input(mutant, index, 1, changed, f"mutant_{name}")
    label = ix.label(ix.nodes[index])
    return Mutant(name, f"{label}: weight {what}", mutant, label, subtle=subtle)


def weight_sign_flip(model: onnx.ModelProto) -> Mutant | None:
    def flip(weight: np.ndarray, name: str) -> tuple[np.ndarray, str]:
        channel = 1 if weight.shape[0] > 1 else 0
        flipped = weight.copy()
        flipped[channel] = -flipped[channel]
        return flipped, f"{name}[{channel}] (output channel) sign-flipped"

    return _weight_mutant(model, "weight_sign_flip", flip)


def weight_nudge(model: onnx.ModelProto) -> Mutant | None:
    def nudge(weight: np.ndarray, name: str) -> tuple[np.ndarray, str]:
        at = np.unravel_index(int(np.argmax(np.abs(weight))), weight.shape)
        nudged = weight.copy()
        nudged[at] *= 1 + 1e-3
        return nudged, f"{name}{list(map(int, at))} {weight[at]:.6g} -> {nudged[at]:.6g}"

    return _weight_mutant(model, "weight_nudge", nudge, subtle=True)


def conv_dilation(model: onnx.ModelProto) -> Mutant | None:
    ix = GraphIndex(model)
    for index, conv in _convs(ix):
        axes = [a for a, k in enumerate(conv.kernel) if k > 1]
        if not axes or conv.auto_pad != "NOTSET":
            continue
        axis, rank = axes[0], len(conv.kernel)
        grow = conv.kernel[axis] - 1  # the dilated kernel's extent grows by k - 1
        dilations, pads = list(conv.dilations), list(conv.pads)
        dilations[axis] += 1
        pads[axis] += grow // 2
        pads[axis + rank] += grow - grow // 2
        return _attr_mutant(
            model,
            ix,
            index,
            "conv_dilation",
            {"dilations": (list(conv.dilations), dilations), "pads": (list(conv.pads), pads)},
        )
    return None


def conv_pads(model: onnx.ModelProto) -> Mutant | None:
    ix = GraphIndex(model)
    for index, conv in _convs(ix):
        rank = len(conv.kernel)
        axes = [a for a in range(rank) if conv.kernel[a] > 1 and conv.pads[a + rank] > 0]
        if not axes or conv.auto_pad != "NOTSET":
            continue
        pads = list(conv.pads)
        pads[axes[0]] += 1
        pads[axes[0] + rank] -= 1
        return _attr_mutant(model, ix, index, "conv_pads", {"pads": (list(conv.pads), pads)})
    return None


def bn_epsilon(model: onnx.ModelProto) -> Mutant | None:
    ix = GraphIndex(model)
    bns = _nodes(ix, "BatchNormalization")
    if not bns:
        return None
    epsilon = attr(ix.nodes[bns[0]], "epsilon", 1e-5)
    return _attr_mutant(model, ix, bns[0], "bn_epsilon", {"epsilon": (epsilon, epsilon * 1000)})


def bn_scale(model: onnx.ModelProto) -> Mutant | None:
    ix = GraphIndex(model)
    for index in _nodes(ix, "BatchNormalization"):
        scale = ix.const(ix.nodes[index].input[1])
        if scale is None or scale.dtype.kind != "f" or not scale.size:
            continue
        at = int(np.argmax(np.abs(scale.reshape(-1))))
        scaled = scale.copy()
        scaled.flat[at] *= 1.5
        mutant = copy_model(model)
        replace_input(mutant, index, 1, scaled, "mutant_bn_scale")
        label = ix.label(ix.nodes[index])
        where = f"{ix.nodes[index].input[1]}[{at}]"
        said = f"{label}: scale {where} {scale.flat[at]:.6g} -> {scaled.flat[at]:.6g}"
        return Mutant("bn_scale", said, mutant, label)
    return None


def add_to_sub(model: onnx.ModelProto) -> Mutant | None:
    ix = GraphIndex(model)
    for index in _nodes(ix, "Add"):
        node = ix.nodes[index]
        if all(ix.const_root(i) is None for i in node.input) and _is_float(ix, node.output[0]):
            mutant = copy_model(model)
            mutant.graph.node[index].op_type = "Sub"
            label = ix.label(node)
            said = f"{label}: Add({', '.join(node.input)}) -> Sub"
            return Mutant("add_to_sub", said, mutant, label)
    return None


def output_scaled(model: onnx.ModelProto) -> Mutant | None:
    ix = GraphIndex(model)
    if not model.graph.output:
        return None
    output = model.graph.output[0]
    elem = output.type.tensor_type.elem_type
    if output.name not in ix.producer or elem not in _FLOAT_TYPES:
        return None
    factor = 1 + 1e-4
    mutant = copy_model(model)
    scale = np.array(factor, helper.tensor_dtype_to_np_dtype(elem))
    scale_name = add_fresh_initializer(mutant, "mutant_output_scaled_factor", scale)
    node = insert_after(mutant, output.name, "Mul", [scale_name], "mutant_output_scaled")
    said = f"graph output {output.name}: Mul by {factor} ({node}) appended"
    return Mutant("output_scaled", said, mutant, node, subtle=True)


def fp16_overflow(model: onnx.ModelProto) -> Mutant | None:
    ix = GraphIndex(model)
    found = _first_conv(ix)
    if found is None or found[1].dtype != np.float32:
        return None
    index, weight = found
    conv = ix.nodes[index]
    up, down = np.float32(2.0**16), np.float32(2.0**-16)
    has_bias = len(conv.input) > 2 and bool(conv.input[2])
    bias = ix.const(conv.input[2]) if has_bias else None
    if has_bias and (bias is None or bias.dtype != np.float32):
        return None
    mutant = copy_model(model)
    replace_input(mutant, index, 1, weight * up, "mutant_fp16_overflow")
    if bias is not None:
        replace_input(mutant, index, 2, bias * up, "mutant_fp16_overflow")
    factor = add_fresh_initializer(mutant, "mutant_fp16_overflow_factor", np.array(down))
    insert_after(mutant, conv.output[0], "Mul", [factor], "mutant_fp16_overflow")
    try:
        half = to_fp16(mutant)
    except UserInputError:  # subgraphs: not supported by the converter
        return None
    label = ix.label(conv)
    said = (
        f"{label}: weight and bias x 2**16, output x 2**-16, graph converted to fp16: "
        f"{conv.output[0]} 2**16 times larger, inf where it passes 65504"
    )
    return Mutant("fp16_overflow", said, half, label)


def stale_output(
    model: onnx.ModelProto, stored_outputs: dict[str, np.ndarray] | None = None
) -> Mutant | None:
    if not stored_outputs:
        return None
    name = next(iter(stored_outputs))
    stale = {k: np.array(v, copy=True) for k, v in stored_outputs.items()}
    flat = stale[name].reshape(-1)
    if not flat.size:
        return None
    at = flat.size // 3
    old = flat[at]
    flat[at] = old + max(1, abs(old))
    said = f"stored output {name}: element {at} {old:.6g} -> {flat[at]:.6g}"
    return Mutant("stale_output", said, copy_model(model), None, stored_outputs=stale)


# --------------------------------------------------------------------------------------------
# quantized graphs (QDQ): the defects a quantizer or a hand edit of its tensors makes


def _weight_dequantize(ix: GraphIndex) -> int | None:
    """The first DequantizeLinear of a constant integer weight that a Conv reads."""
    for i in _nodes(ix, "DequantizeLinear"):
        node = ix.nodes[i]
        weight = ix.initializers.get(node.input[0])
        readers = ix.consumers.get(node.output[0], [])
        if weight is None or weight.data_type not in _INT8_TYPES:
            continue
        if any(r.op_type == "Conv" and r.input[1] == node.output[0] for r in readers):
            return i
    return None


_INT8_TYPES = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}


def _dequantized_weight_mutant(
    model: onnx.ModelProto,
    name: str,
    operand: int,
    change: Callable[[np.ndarray, str], tuple[np.ndarray, str]],
) -> Mutant | None:
    """Operand ``operand`` (0 the integer weight, 1 its scale) of the first weight
    DequantizeLinear replaced by ``change(value, its name)`` -> (new, what)."""
    ix = GraphIndex(model)
    index = _weight_dequantize(ix)
    if index is None:
        return None
    node = ix.nodes[index]
    value = numpy_helper.to_array(ix.initializers[node.input[operand]])
    changed, what = change(value, node.input[operand])
    mutant = copy_model(model)
    replace_input(mutant, index, operand, changed, f"mutant_{name}")
    label = ix.label(node)
    return Mutant(name, f"{label}: {what}", mutant, label)


def int8_weight_sign_flip(model: onnx.ModelProto) -> Mutant | None:
    """One output channel of the first weight DequantizeLinear's integers negated."""

    def flip(weight: np.ndarray, name: str) -> tuple[np.ndarray, str]:
        channel = 1 if weight.shape[0] > 1 else 0
        flipped = weight.copy()
        flipped[channel] = np.clip(-weight[channel].astype(np.int16), -127, 127)
        return flipped, f"{name}[{channel}] (output channel) sign-flipped"

    return _dequantized_weight_mutant(model, "int8_weight_sign_flip", 0, flip)


def weight_scale_doubled(model: onnx.ModelProto) -> Mutant | None:
    """The first weight DequantizeLinear's scale x2: one output channel's, where the scales
    are per channel (a scale taken from the channel beside it), else the tensor's."""

    def double(scale: np.ndarray, name: str) -> tuple[np.ndarray, str]:
        changed = scale.copy()
        if scale.ndim:
            channel = 1 if scale.size > 1 else 0
            changed[channel] *= 2
            return changed, f"weight scale {name}[{channel}] x2 (one output channel)"
        return changed * 2, f"weight scale {name} x2"

    return _dequantized_weight_mutant(model, "weight_scale_doubled", 1, double)


def zero_point_shift(model: onnx.ModelProto) -> Mutant | None:
    """The last activation DequantizeLinear (the one nearest the output) reads a zero point
    one above the QuantizeLinear's: every element it passes moves one step, an off-by-one
    zero point."""
    ix = GraphIndex(model)
    found = [
        i
        for i in _nodes(ix, "DequantizeLinear")
        if ix.nodes[i].input[0] not in ix.initializers and len(ix.nodes[i].input) > 2
    ]
    if not found:
        return None
    index = found[-1]
    node = ix.nodes[index]
    zero = ix.initializers.get(node.input[2])
    if zero is None:
        return None
    value = numpy_helper.to_array(zero)
    info = np.iinfo(value.dtype)
    shifted = (value.astype(np.int32) + 1).clip(info.min, info.max).astype(value.dtype)
    if np.array_equal(shifted, value):
        shifted = value - 1
    mutant = copy_model(model)
    replace_input(mutant, index, 2, shifted, "mutant_zero_point_shift")
    label = ix.label(node)
    what = f"{label}: zero point {node.input[2]} {value.ravel()[0]} -> {shifted.ravel()[0]}"
    return Mutant("zero_point_shift", what, mutant, label)


_PLANTED: tuple[Callable[[onnx.ModelProto], Mutant | None], ...] = (
    shuffle_perm_identity,
    shuffle_groups_swapped,
    transpose_hw,
    weight_sign_flip,
    weight_nudge,
    conv_dilation,
    conv_pads,
    bn_epsilon,
    bn_scale,
    add_to_sub,
    output_scaled,
    fp16_overflow,
    int8_weight_sign_flip,
    weight_scale_doubled,
    zero_point_shift,
)

QUANTIZED_ONLY = ("int8_weight_sign_flip", "weight_scale_doubled", "zero_point_shift")
"""The mutations that apply only to a quantized (QDQ) graph's integer weights and zero points."""

MUTATIONS: dict[str, Callable[..., Mutant | None]] = {
    fn.__name__: fn for fn in (*_PLANTED, stale_output)
}
"""Every mutation by name, in the documented order."""


def mutants(
    model: onnx.ModelProto, stored_outputs: dict[str, np.ndarray] | None = None
) -> list[Mutant]:
    """Every applicable mutant of model (stale_output only when stored_outputs are given)."""
    found = [fn(model) for fn in _PLANTED] + [stale_output(model, stored_outputs)]
    return [m for m in found if m is not None]
