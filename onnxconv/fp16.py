"""float32 -> float16 conversion of an ONNX graph, I/O kept float32 (the ``fp16`` precision).

Written here rather than taken from a converter package: the graphs of the zoo need only a
small, checkable subset (initializers, Constant values, Cast/dtype attributes, value_info), and
callers then feed the same fp32 arrays and compare against the same fp32 references.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxconv.errors import UserInputError

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
