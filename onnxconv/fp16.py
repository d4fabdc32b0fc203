"""float32 -> float16 conversion of an ONNX graph: onnxconv's own converter and the standard one.

:func:`to_fp16` (the ``fp16`` precision of :mod:`onnxconv.runtime`) is written here: weights and
activations in float16, graph I/O kept float32 with one Cast per input and output, so callers
feed the same fp32 arrays and compare against the same fp32 references. It covers a small,
checkable subset (initializers, Constant values, Cast/dtype attributes, value_info) and refuses
subgraphs.

:func:`to_fp16_standard` runs what users run, onnxconverter-common's
``float16.convert_float_to_float16``, and checks its result (``onnx.checker`` and the promised
I/O element types) so that a bad conversion is a one-line :class:`CheckFailed`, not a graph that
fails later. :func:`to_fp16_io16` is its float16-I/O form (``keep_io_types=False``): inputs and
outputs are float16, with no Cast at the boundary.

What tests/test_fp16_standard.py measured (onnxconverter-common 1.16.0, onnx 1.23.2, ORT 1.32
CPU): on every committed zoo graph and on ShuffleNet v1 / MobileNet v1 both converters give
valid graphs with the same outputs (bitwise on the zoo; max error <= 4e-3 of the output RMS).
The standard one adds one input Cast per consumer (Inception: 5 Casts, ours 2), clamps weights
to ±1e4 instead of the fp16 range ±65504, lifts |w| < 1e-7 to ±1e-7, refuses a graph that
already holds float16, and produces invalid graphs for ``Constant(value_float[s])``,
``Cast(to=FLOAT)``, ``ConstantOfShape`` without ``value``, a graph output read by another node
or unnamed nodes sharing an input; with ``keep_io_types=True`` a Resize/Upsample that produces
a graph output leaves that output float16. It keeps ``Range`` float32, which :func:`to_fp16`
makes float16 (invalid: Range has no float16 type). Neither handles If/Loop subgraphs.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxconv.errors import CheckFailed, UserInputError, one_line
from onnxconv.precisions import CONVERTER_CHANGES

_FP32 = TensorProto.FLOAT
_FP16 = TensorProto.FLOAT16
_FP16_MAX = float(np.finfo(np.float16).max)

# Inputs that the ONNX spec types as tensor(float) regardless of T: they get a Cast back to fp32.
_FLOAT32_ONLY_INPUTS: dict[str, tuple[int, ...]] = {"Resize": (2,), "Upsample": (1,)}
# Attributes that name an output element type.
_DTYPE_ATTRS: dict[str, str] = {
    "Cast": "to",
    "EyeLike": "dtype",
    "RandomNormal": "dtype",
    "RandomUniform": "dtype",
    "RandomNormalLike": "dtype",
    "RandomUniformLike": "dtype",
}


def _tensor_to_fp16(t: TensorProto) -> TensorProto:
    arr = numpy_helper.to_array(t).astype(np.float64)
    arr = np.where(np.isfinite(arr), np.clip(arr, -_FP16_MAX, _FP16_MAX), arr)  # no new infs
    return numpy_helper.from_array(arr.astype(np.float16), t.name)


def _set_elem_type(vi: onnx.ValueInfoProto, elem: int) -> None:
    if vi.type.HasField("tensor_type"):
        vi.type.tensor_type.elem_type = elem


def _is_float(vi: onnx.ValueInfoProto) -> bool:
    return vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type == _FP32


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """float32 -> float16 everywhere inside the graph, graph I/O kept float32 via Cast nodes.

    Converts float32 initializers (values beyond the fp16 range are clipped to +-65504),
    float tensor attributes (``Constant``, ``ConstantOfShape``, ...), ``Constant``'s
    ``value_float(s)``, element-type attributes (``Cast(to=FLOAT)`` and the like) and
    ``value_info``. Each float32 graph input gets a ``Cast(to=FLOAT16)`` in front of its
    consumers; each float32 graph output is produced by a ``Cast(to=FLOAT)`` of the renamed fp16
    tensor. Inputs typed float-only by the spec (Resize/Upsample scales) get a Cast back to fp32.
    Subgraphs (If/Loop/Scan) are not supported.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for node in g.node:
        for attr in node.attribute:
            if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise UserInputError(
                    f"to_fp16: node {node.name or node.op_type!r} ({node.op_type}) has a "
                    "subgraph; not supported"
                )

    used: set[str] = set()
    for node in g.node:
        used.update(node.input)
        used.update(node.output)
        used.add(node.name)
    used.update(i.name for i in g.initializer)
    used.update(v.name for v in list(g.input) + list(g.output) + list(g.value_info))

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        return name

    init_names = {i.name for i in g.initializer}

    # 1. initializers (and legacy graph inputs that merely declare an initializer)
    for i, init in enumerate(g.initializer):
        if init.data_type == _FP32:
            g.initializer[i].CopyFrom(_tensor_to_fp16(init))
    for vi in g.input:
        if vi.name in init_names and _is_float(vi):
            _set_elem_type(vi, _FP16)

    # 2. node attributes
    for node in g.node:
        if node.op_type == "Constant":
            for attr in list(node.attribute):
                if attr.name == "value_float":
                    t = numpy_helper.from_array(np.array(attr.f, dtype=np.float16))
                elif attr.name == "value_floats":
                    t = numpy_helper.from_array(np.array(list(attr.floats), dtype=np.float16))
                else:
                    continue
                node.attribute.remove(attr)
                node.attribute.append(helper.make_attribute("value", t))
        if node.op_type == "ConstantOfShape" and not any(a.name == "value" for a in node.attribute):
            # the default fill value is float32 zero
            node.attribute.append(
                helper.make_attribute("value", numpy_helper.from_array(np.zeros(1, np.float16)))
            )
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == _FP32:
                attr.t.CopyFrom(_tensor_to_fp16(attr.t))
            elif attr.type == onnx.AttributeProto.TENSORS:
                for j, t in enumerate(attr.tensors):
                    if t.data_type == _FP32:
                        attr.tensors[j].CopyFrom(_tensor_to_fp16(t))
            elif (
                attr.type == onnx.AttributeProto.INT
                and _DTYPE_ATTRS.get(node.op_type) == attr.name
                and attr.i == _FP32
            ):
                attr.i = _FP16

    # 3. value_info of intermediate tensors
    for vi in g.value_info:
        if _is_float(vi):
            _set_elem_type(vi, _FP16)

    input_names = {vi.name for vi in g.input}
    head: list[onnx.NodeProto] = []
    tail: list[onnx.NodeProto] = []

    # 4. float32 graph inputs -> Cast to fp16 in front of every consumer
    for vi in g.input:
        if vi.name in init_names or not _is_float(vi):
            continue
        cast_out = fresh(f"{vi.name}_fp16")
        head.append(
            helper.make_node(
                "Cast", [vi.name], [cast_out], name=fresh(f"{vi.name}_to_fp16"), to=_FP16
            )
        )
        for node in g.node:
            for j, name in enumerate(node.input):
                if name == vi.name:
                    node.input[j] = cast_out

    # 5. float32 graph outputs -> rename the fp16 producer, Cast back to fp32
    for vi in g.output:
        if vi.name in input_names or not _is_float(vi):
            continue
        inner = fresh(f"{vi.name}_fp16")
        for node in g.node:
            for j, name in enumerate(node.output):
                if name == vi.name:
                    node.output[j] = inner
            for j, name in enumerate(node.input):
                if name == vi.name:
                    node.input[j] = inner
        for init in g.initializer:
            if init.name == vi.name:
                init.name = inner
        for v in g.value_info:
            if v.name == vi.name:
                v.name = inner
        tail.append(
            helper.make_node("Cast", [inner], [vi.name], name=fresh(f"{vi.name}_to_fp32"), to=_FP32)
        )

    # 6. float-only inputs -> Cast back to fp32 right before the consumer
    body: list[onnx.NodeProto] = []
    for node in g.node:
        for j in _FLOAT32_ONLY_INPUTS.get(node.op_type, ()):
            if j < len(node.input) and node.input[j]:
                src = node.input[j]
                dst = fresh(f"{src}_fp32")
                body.append(
                    helper.make_node("Cast", [src], [dst], name=fresh(f"{src}_to_fp32"), to=_FP32)
                )
                node.input[j] = dst
        body.append(node)

    del g.node[:]
    g.node.extend(head + body + tail)
    onnx.helper.set_model_props(
        m, {**{p.key: p.value for p in m.metadata_props}, "onnxconv.precision": "fp16"}
    )
    return m


# ---------------------------------------------------------------------------------------------
# the standard converter: onnxconverter-common


def _standard_float16():
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise UserInputError(
            "to_fp16_standard needs onnxconverter-common (pip install onnxconverter-common)"
        ) from exc
    return float16


def _float_io(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(``input``/``output``, name) of every float32 graph input (not an initializer) and output."""
    weights = {i.name for i in model.graph.initializer}
    io = [("input", vi) for vi in model.graph.input if vi.name not in weights]
    io += [("output", vi) for vi in model.graph.output]
    return [(kind, vi.name) for kind, vi in io if _is_float(vi)]


def _check_standard_result(
    original: onnx.ModelProto, converted: onnx.ModelProto, keep_io_types: bool
) -> None:
    """The converted graph passes ``onnx.checker`` and its I/O has the promised element type."""
    try:
        onnx.checker.check_model(converted, full_check=True)
    except Exception as exc:
        raise CheckFailed(
            f"onnxconverter-common produced an invalid fp16 graph: {one_line(exc)}"
        ) from exc
    want = _FP32 if keep_io_types else _FP16
    types = {
        vi.name: vi.type.tensor_type.elem_type
        for vi in list(converted.graph.input) + list(converted.graph.output)
    }
    for kind, name in _float_io(original):
        if types.get(name) != want:
            got = _dtype_name(types[name]) if name in types else "missing"
            raise CheckFailed(
                f"onnxconverter-common left graph {kind} {name!r} {got}, expected "
                f"{_dtype_name(want)} (keep_io_types={keep_io_types})"
            )


def _dtype_name(elem_type: int) -> str:
    try:
        return str(helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        return TensorProto.DataType.Name(elem_type)


def to_fp16_standard(model: onnx.ModelProto, keep_io_types: bool = True) -> onnx.ModelProto:
    """float32 -> float16 by onnxconverter-common's ``convert_float_to_float16`` (its defaults:
    weights clamped to ±1e4, non-zero magnitudes below 1e-7 raised to 1e-7, Resize, Range, Min,
    Max, TopK... kept float32 between Casts; it warns about every clamped tensor).

    ``keep_io_types=True``: float32 graph inputs/outputs stay float32 via Cast nodes (one per
    consumer of an input). ``False``: they become float16, with no Cast at the boundary.
    ``model`` is left untouched. The converter's ``UserWarning`` per moved weight extreme is
    not printed; their count is kept in the metadata entry :data:`CONVERTER_CHANGES`.
    Raises :class:`CheckFailed` (one line) when the converter raises (e.g. on a graph that
    already holds float16), when its result fails ``onnx.checker`` (full check), or when an
    I/O tensor does not have the promised type.
    """
    float16 = _standard_float16()
    source = onnx.ModelProto()
    source.CopyFrom(model)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        try:
            converted = float16.convert_float_to_float16(source, keep_io_types=keep_io_types)
        except Exception as exc:
            raise CheckFailed(
                f"onnxconverter-common fp16 conversion failed: {one_line(exc)}"
            ) from exc
    _check_standard_result(model, converted, keep_io_types)
    props = {p.key: p.value for p in converted.metadata_props}
    props["onnxconv.precision"] = "fp16"
    props["onnxconv.fp16_io"] = "float32" if keep_io_types else "float16"
    moved = [str(w.message) for w in said if "will be truncated" in str(w.message)]
    if moved:  # one warning per tensor extreme it moved: kept as a count, not printed
        props[CONVERTER_CHANGES] = (
            f"onnxconverter-common moved {len(moved)} weight extremes into its range "
            f"(|w| < 1e-7 raised to 1e-7, |w| > 1e4 clamped), e.g. {moved[0]}"
        )
    onnx.helper.set_model_props(converted, props)
    return converted


def to_fp16_io16(model: onnx.ModelProto) -> onnx.ModelProto:
    """:func:`to_fp16_standard` with float16 graph inputs and outputs (callers feed float16)."""
    return to_fp16_standard(model, keep_io_types=False)
