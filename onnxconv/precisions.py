"""The precisions a graph is deployed at, and how each deployment is made from the fp32 graph.

==============  =========  ====================================================================
name            family     the deployed graph
==============  =========  ====================================================================
fp32            float      the graph as given (as exported)
fp16            float      onnxconverter-common's ``convert_float_to_float16`` with
                           ``keep_io_types=True`` (what users run): float16 inside, float32
                           I/O through Casts
fp16-io         float      the same converter with ``keep_io_types=False``: float16 inputs and
                           outputs, no Cast at the boundary (callers feed float16)
fp16-onnxconv   float      onnxconv's own converter (:func:`onnxconv.fp16.to_fp16`); kept because
                           it converts six graph forms the standard one breaks (tests/
                           test_fp16_standard.py)
int8            int8       ORT static quantization, QDQ, per-channel int8 weights, uint8
                           activations, calibrated (``minmax`` by default) on calibration feeds
int8-tensor     int8       the same with one weight scale per tensor (shows what per-channel buys
                           on depthwise and grouped convs)
int8-dynamic    int8       ORT dynamic quantization: int8 weights, activations quantized at
                           run time (ConvInteger / MatMulInteger); needs no calibration
==============  =========  ====================================================================

Float precisions are judged element by element (:mod:`onnxconv.parity`), int8 ones by
quantization metrics against the fp32 source (:mod:`onnxconv.quant_metrics`,
:mod:`onnxconv.quant_check`). A deployment that cannot be made (a converter that writes an
invalid graph, a quantizer that fails, nothing to quantize) raises :class:`CheckFailed`: the
graph cannot be shipped at that precision, which is a finding, never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto

from onnxconv.errors import NoDeployment, UserInputError, unknown_name


@dataclass(frozen=True)
class Precision:
    name: str
    family: str  # "float" | "int8"
    summary: str
    needs_calibration: bool = False


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("fp32", "float", "the graph as exported"),
        Precision("fp16", "float", "onnxconverter-common, float32 I/O through Casts"),
        Precision("fp16-io", "float", "onnxconverter-common, float16 inputs and outputs"),
        Precision("fp16-onnxconv", "float", "onnxconv's own fp16 converter, float32 I/O"),
        Precision("int8", "int8", "static QDQ, per-channel weights", needs_calibration=True),
        Precision("int8-tensor", "int8", "static QDQ, per-tensor weights", needs_calibration=True),
        Precision("int8-dynamic", "int8", "dynamic quantization (ConvInteger/MatMulInteger)"),
    )
}
NAMES = tuple(PRECISIONS)

#: Metadata key :func:`deploy` writes, so a session can check it runs what its target names.
STAMP = "onnxconv.precision"
#: Metadata key of a deployment: what its converter or quantizer changed or had to leave out
#: (validate notes it under the precision's name).
CONVERTER_CHANGES = "onnxconv.converter_changes"

#: Calibration inputs made by default: seeded ``normal`` feeds, seeds disjoint from the
#: validation cases (0, 1, ...) and the evaluation inputs (:data:`EVALUATION_SEED`).
CALIBRATION_SAMPLES = 16
CALIBRATION_SEED = 100


def get(name: str) -> Precision:
    if name not in PRECISIONS:
        raise unknown_name("precision", name, NAMES)
    return PRECISIONS[name]


def is_int8(name: str) -> bool:
    return get(name).family == "int8"


def deploy(
    model: onnx.ModelProto,
    precision: str,
    calibration: Sequence[Mapping[str, np.ndarray]] | None = None,
    *,
    method: str = "minmax",
    label: str = "<in-memory model>",
) -> onnx.ModelProto:
    """The graph a user ships at ``precision``, made from the fp32 ``model`` (left untouched).

    ``calibration`` (a list of feed dicts) is required by the static int8 precisions;
    ``method`` is their calibration method. A graph already stamped ``precision`` is returned as
    it is. Raises :class:`NoDeployment` when the graph is already another deployment or
    computes at a lower precision, :class:`CheckFailed` when the converter or quantizer fails,
    and :class:`UserInputError` for a missing calibration or an unknown name.
    """
    spec = get(precision)
    if precision == "fp32" or stamp(model) == precision:
        return model  # the graph as given, or already that deployment
    if stamp(model) != "fp32":
        raise NoDeployment(
            f"{label}: already deployed at {stamp(model)} (metadata {STAMP}); {precision} is "
            "made from the fp32 graph"
        )
    native = computes_in(model)
    if native != "fp32":
        raise NoDeployment(
            f"{label}: the graph already computes in {native}; {precision} is made from an "
            "fp32 graph"
        )
    if spec.needs_calibration and not calibration:
        raise UserInputError(f"{label}: precision {precision} needs calibration feeds")
    deployed = _convert(model, precision, calibration, method, label)
    props = {p.key: p.value for p in deployed.metadata_props}
    onnx.helper.set_model_props(deployed, {**props, STAMP: precision})
    return deployed


#: Ops that only a quantized graph holds.
_QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "ConvInteger",
        "MatMulInteger",
        "DynamicQuantizeLinear",
    }
)


def computes_in(model: onnx.ModelProto) -> str:
    """What a graph brought from elsewhere already is: ``int8`` for a quantized graph (QDQ or
    integer ops); ``fp16`` where most of its float weight elements are float16 (float32 inputs
    and outputs through Casts included, and the float32 tensors the spec requires, such as
    Resize's scales, which a converter keeps), or, without float weights, its float inputs and
    outputs are all float16; else ``fp32``."""
    if any(n.op_type in _QUANTIZED_OPS for n in model.graph.node):
        return "int8"
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
    elements: dict[int, int] = {}
    for t in model.graph.initializer:
        if t.data_type in floats:
            elements[t.data_type] = elements.get(t.data_type, 0) + int(np.prod(t.dims))
    if elements:
        half = elements.get(TensorProto.FLOAT16, 0)
        return "fp16" if half > sum(elements.values()) - half else "fp32"
    io = [*model.graph.input, *model.graph.output]
    found = {vi.type.tensor_type.elem_type for vi in io} & floats
    return "fp16" if found == {TensorProto.FLOAT16} else "fp32"


def as_is_note(native: str, runs: str) -> str:
    """The note for a graph that already computes in ``native`` (:func:`computes_in`), whose
    fp32 ``runs`` (cells, candidates) run it as it is."""
    return f"the graph already computes in {native}: its fp32 {runs} run it as it is"


def stamp(model: onnx.ModelProto) -> str:
    """The precision :func:`deploy` made ``model`` at (``fp32`` for a graph it did not make)."""
    return next((p.value for p in model.metadata_props if p.key == STAMP), "fp32")


def _convert(
    model: onnx.ModelProto,
    precision: str,
    calibration: Sequence[Mapping[str, np.ndarray]] | None,
    method: str,
    label: str,
) -> onnx.ModelProto:
    if precision == "fp16":
        from .fp16 import to_fp16_standard

        return to_fp16_standard(model)
    if precision == "fp16-io":
        from .fp16 import to_fp16_io16

        return to_fp16_io16(model)
    if precision == "fp16-onnxconv":
        from .fp16 import to_fp16

        return to_fp16(model)
    from . import int8

    if precision == "int8-dynamic":
        return int8.quantize_dynamic(model, label=label)
    return int8.quantize_static(
        model,
        list(calibration or ()),
        method=method,
        per_channel=precision == "int8",
        label=label,
    )


def feeds_for(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``feeds`` cast to the element types ``model`` declares where they differ only in float
    width (float32 feeds of a ``fp16-io`` graph become float16); others pass unchanged."""
    declared = {
        vi.name: vi.type.tensor_type.elem_type
        for vi in model.graph.input
        if vi.type.HasField("tensor_type")
    }
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE}
    cast = {}
    for name, array in feeds.items():
        elem = declared.get(name)
        want = onnx.helper.tensor_dtype_to_np_dtype(elem) if elem in floats else None
        is_float = np.issubdtype(array.dtype, np.floating)
        cast[name] = array.astype(want) if want is not None and is_float else array
    return cast


__all__ = [
    "CONVERTER_CHANGES",
    "CALIBRATION_SAMPLES",
    "CALIBRATION_SEED",
    "NAMES",
    "PRECISIONS",
    "Precision",
    "deploy",
    "feeds_for",
    "get",
    "is_int8",
    "stamp",
]
