"""int8 quantization of a graph with ONNX Runtime's quantizer (static QDQ and dynamic).

The per-layer localisation of its error lives in :mod:`onnxconv.int8_layers`; its names
(:func:`layer_errors`, :class:`LayerError`, :func:`activation_pairs`, :class:`QdqPair`,
:func:`qdq_params`) are importable from here as well.

Static quantization (:func:`quantize_static`)
--------------------------------------------
``onnxruntime.quantization.quantize_static`` in **QDQ** format: every quantized tensor ``t``
becomes ``t -> QuantizeLinear -> DequantizeLinear -> consumer`` and ORT's graph optimizer fuses
``DQ -> Conv -> Q`` into integer kernels at session creation (``QuantFormat.QDQ`` is ORT's
recommended format for CPU since 1.11; ``QOperator`` is legacy).

- Weights: ``QInt8``, symmetric (ORT's default ``WeightSymmetric=True``: zero point 0, so the
  integer GEMM needs no weight zero-point correction), per output channel when
  ``per_channel=True`` (the default: depthwise and grouped convs have one filter per channel
  whose ranges differ, and a per-tensor scale set by the widest filter leaves the narrow ones
  a handful of levels).
- Activations: ``QUInt8`` (asymmetric, ``activation_type="uint8"``), as ORT 1.32's own guidance
  in ``quantize_static``'s docstring says for x86-64: MLAS's fast int8 GEMM/conv kernels are
  u8 x s8 (VNNI's ``vpdpbusd`` multiplies unsigned by signed bytes), and a ReLU output, which
  is non-negative, uses all 256 levels with zero point 0. ``activation_type="int8"`` (what the
  same guidance suggests for ARM) is available. ``reduce_range=True`` (7-bit weights) is ORT's
  advice for x86 *without* VNNI, where ``vpmaddubsw`` can saturate int16 pair sums; it costs a
  bit of accuracy and is off by default.
- Calibration: a list of feed dicts (the caller makes them, e.g. :func:`onnxconv.feeds.generate`)
  read in order; ``method`` is ``minmax``, ``entropy`` or ``percentile``
  (ORT's ``CalibrationMethod``).
- Determinism: the calibrators are plain numpy reductions over the feeds in list order and the
  quantizer walks the graph in node order, so the same model and feeds give byte-identical
  output (same scales and zero points), also across processes. ORT builds its default list of
  op types with ``list(set(...))`` (ordered by string hashing); it is only used for membership
  and the output was identical under four ``PYTHONHASHSEED`` values, but a sorted list is
  passed anyway so nothing can depend on it.
- ``method="entropy"`` is ORT's ``CalibrationMethod.Entropy`` as ``quantize_static`` runs it,
  and in ORT 1.32 that is byte-identical to ``minmax``: the entropy calibrator's defaults
  (``num_bins=128``, ``num_quantized_bins=128``) leave exactly one candidate threshold, the
  full histogram range, and ``quantize_static`` passes no option that changes them. A real
  KL search (``create_calibrator`` with 2048 bins and a calibration cache) took 3-19 s per
  model here and *lowered* SQNR on the zoo (shuffle_unit 37.7 -> 27.3 dB: KL clips tails that
  SQNR counts), so it is not worked around. ``percentile`` (99.999th, symmetric ranges) differs.
- Pre-processing: ORT asks for ``quant_pre_process`` (symbolic shape inference, ORT's basic
  graph optimizations such as Conv+BatchNormalization folding, ONNX shape inference) and warns
  on every call without it. It runs by default; on the zoo it changes no node or tensor name
  (the exporter already folds BatchNormalization), so per-layer localisation still pairs every
  tensor with the fp32 model (checked on every committed graph, mobilenet_v1 and
  shufflenet). Where it fails (its symbolic shape inference gives up on some contrib ops, e.g.
  ``com.microsoft.ExpandDims``), the quantizer runs without it and the result's metadata
  (:data:`onnxconv.precisions.CONVERTER_CHANGES`) says why; ``preprocess=False`` skips it.
- Side effects: ORT's quantizer writes the model, the calibration-augmented model and the
  output to files. Every path it gets from here is inside a ``TemporaryDirectory`` (its own
  internal temporaries are ``tempfile`` directories as well). One write is relative: when
  symbolic shape inference gives up, ORT saves ``sym_shape_infer_temp.onnx`` to the working
  directory, so the quantizer runs with the temporary directory as working directory (a
  process-wide change for the duration of the call, restored afterwards). Its
  ``logging.warning`` lines and the entropy/percentile calibrators' ``print`` progress are
  kept off the terminal.
- Errors from ORT's quantizer become one-line :class:`CheckFailed`.

Dynamic quantization (:func:`quantize_dynamic`)
----------------------------------------------
``onnxruntime.quantization.quantize_dynamic``: weights are quantized offline (``QInt8``, ORT's
default), activations at run time (``DynamicQuantizeLinear``, uint8) into ``ConvInteger`` /
``MatMulInteger`` (QOperator format, the only one dynamic mode has); ORT 1.32's CPU EP runs
``ConvInteger`` with int8 and with uint8 weights alike. ORT ignores ``per_channel`` for Conv in
dynamic mode (one weight scale per tensor; the output is byte-identical either way), so
:func:`quantize_dynamic` does not offer it. ``Gemm`` is not in ORT's dynamic registry; a graph
with no Conv or MatMul of constant weights has nothing to quantize, which is reported as
:class:`NothingToQuantize` (a :class:`CheckFailed`) rather than returned as an unchanged "int8"
model.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from typing import Iterator, Mapping, Sequence

import numpy as np
import onnx

from onnxconv.errors import CheckFailed, NoDeployment, UserInputError, one_line
from onnxconv.int8_layers import (
    LayerError,
    QdqPair,
    activation_pairs,
    layer_errors,
    qdq_params,
)
from onnxconv.precisions import CONVERTER_CHANGES
from onnxconv.runtime import check_feeds, input_specs

METHODS = ("minmax", "entropy", "percentile")
ACTIVATION_TYPES = ("uint8", "int8")
#: Ops ``quantize_dynamic`` quantizes by default: those of ORT's dynamic registry a conv zoo has.
DYNAMIC_OP_TYPES = ("Conv", "MatMul")
#: Ops whose presence shows that dynamic quantization did something.
_DYNAMIC_INTEGER_OPS = ("ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul")


class NothingToQuantize(NoDeployment):
    """The quantizer found no op it quantizes: there is no int8 deployment of this graph."""


# ---------------------------------------------------------------------------------------------
# ORT's quantizer, quietly and in a temporary directory


class _OrtQuantizerLogs(logging.Filter):
    """Drop the root-logger records ``onnxruntime.quantization`` writes with
    ``logging.warning(...)`` (e.g. "Please consider to run pre-processing" on every call)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return f"onnxruntime{os.sep}quantization" not in record.pathname


@contextlib.contextmanager
def _contained(tmp: str) -> Iterator[None]:
    """Run ORT's quantizer quietly and with ``tmp`` as the working directory.

    ORT's symbolic shape inference (inside ``quant_pre_process``) saves
    ``sym_shape_infer_temp.onnx`` to the *working directory* before it raises "Incomplete
    symbolic shape inference"; every other path it writes is absolute. Changing directory is
    process-wide, so it lasts only for the quantizer call and is restored in ``finally``.
    """
    root = logging.getLogger()
    flt = _OrtQuantizerLogs()
    root.addFilter(flt)
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        os.chdir(cwd)
        root.removeFilter(flt)


def _quantization():
    from onnxruntime import quantization  # imported when first used, not by ``import onnxconv``

    return quantization


class _FeedReader:
    """ORT's ``CalibrationDataReader`` protocol over a list of feed dicts, in list order."""

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> None:
        self._feeds = [dict(f) for f in feeds]
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._feeds):
            return None
        self._next += 1
        return self._feeds[self._next - 1]

    def rewind(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return len(self._feeds)


def _check_calibration(
    model: onnx.ModelProto, calibration: Sequence[Mapping[str, np.ndarray]], label: str
) -> list[dict[str, np.ndarray]]:
    if isinstance(calibration, Mapping) or not isinstance(calibration, Sequence):
        raise UserInputError(
            f"{label}: calibration must be a list of feed dicts, got {type(calibration).__name__}"
        )
    if not calibration:
        raise UserInputError(f"{label}: calibration needs at least one feed dict")
    specs = input_specs(model)
    return [
        check_feeds(f"{label}: calibration feed {i}", specs, f) for i, f in enumerate(calibration)
    ]


def _preprocessed(model: onnx.ModelProto, tmp: str) -> tuple[onnx.ModelProto, str]:
    """``model`` through ORT's quantization pre-processing, and ``""``; where the pre-processing
    fails, ``model`` as it is and why it failed (the quantizer then runs without it, and the
    verdict judges what it makes)."""
    q = _quantization()
    path = os.path.join(tmp, "preprocessed.onnx")
    try:
        q.quant_pre_process(model, path)
        return onnx.load(path), ""
    except Exception as exc:  # symbolic shape inference and ORT's optimizer raise many types
        return model, (
            "ONNX Runtime's quantization pre-processing (quant_pre_process, its symbolic shape "
            f"inference) failed inside onnxruntime: {type(exc).__name__}: {one_line(exc)}"
        )


#: Per-axis QuantizeLinear/DequantizeLinear (``axis``) start at opset 13; ORT's quantizer writes
#: them into a graph of an older opset as they are, and ONNX Runtime then refuses to load it.
PER_CHANNEL_OPSET = 13


def _per_channel_opset(model: onnx.ModelProto, label: str) -> onnx.ModelProto:
    """``model`` at opset 13 or above (onnx's version converter) for per-channel weights."""
    from onnxconv.opset import convert_opset, model_opset

    if model_opset(model) >= PER_CHANNEL_OPSET:
        return model
    result = convert_opset(model, PER_CHANNEL_OPSET)
    if result.model is None:
        raise CheckFailed(
            f"{label}: per-channel int8 needs opset {PER_CHANNEL_OPSET}, and onnx's version "
            f"converter cannot take this opset-{model_opset(model)} graph there: "
            f"{result.problems[0]}"
        )
    return result.model


def quantize_static(
    model: onnx.ModelProto,
    calibration: Sequence[Mapping[str, np.ndarray]],
    *,
    method: str = "minmax",
    per_channel: bool = True,
    activation_type: str = "uint8",
    reduce_range: bool = False,
    preprocess: bool = True,
    op_types: Sequence[str] | None = None,
    label: str = "<in-memory model>",
) -> onnx.ModelProto:
    """QDQ int8 model of ``model``, calibrated on ``calibration`` (feed dicts, in order).

    ``op_types`` limits the quantized op types (default: every op type ORT's QDQ quantizer
    handles). Raises :class:`UserInputError` for a bad method, type or feed,
    :class:`CheckFailed` when ORT's quantizer fails and :class:`NothingToQuantize` when it
    quantizes nothing (a graph of data movement only). ``model`` is not modified.
    """
    if method not in METHODS:
        raise UserInputError(
            f"unknown calibration method {method!r}; expected one of: {', '.join(METHODS)}"
        )
    if activation_type not in ACTIVATION_TYPES:
        raise UserInputError(
            f"unknown activation type {activation_type!r}; expected one of: "
            f"{', '.join(ACTIVATION_TYPES)}"
        )
    feeds = _check_calibration(model, calibration, label)
    q = _quantization()
    calibrate = {
        "minmax": q.CalibrationMethod.MinMax,
        "entropy": q.CalibrationMethod.Entropy,
        "percentile": q.CalibrationMethod.Percentile,
    }[method]
    act = q.QuantType.QUInt8 if activation_type == "uint8" else q.QuantType.QInt8
    if op_types is None:
        op_types = sorted(set(q.registry.QLinearOpsRegistry) | set(q.registry.QDQRegistry))
    if per_channel:
        model = _per_channel_opset(model, label)
    with tempfile.TemporaryDirectory(prefix="onnxconv-int8-") as tmp, _contained(tmp):
        source, skipped = _preprocessed(model, tmp) if preprocess else (model, "")
        out = os.path.join(tmp, "int8.onnx")
        try:
            q.quantize_static(
                source,
                out,
                _FeedReader(feeds),
                quant_format=q.QuantFormat.QDQ,
                op_types_to_quantize=list(op_types),
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=act,
                weight_type=q.QuantType.QInt8,
                calibrate_method=calibrate,
                extra_options={"WeightSymmetric": True},
            )
            result = onnx.load(out)
        except Exception as exc:  # ORT's quantizer raises ValueError, RuntimeError, ORT errors
            before = f"; before it, {skipped}" if skipped else ""
            raise CheckFailed(
                f"{label}: ONNX Runtime's static quantizer failed: {one_line(exc)}{before}"
            ) from exc
    if not any(n.op_type == "QuantizeLinear" for n in result.graph.node):
        present = sorted({n.op_type for n in model.graph.node})
        raise NothingToQuantize(
            f"{label}: nothing to quantize: ORT's static quantizer left no QuantizeLinear in a "
            f"graph of {', '.join(present)}"
        )
    if skipped:
        props = {p.key: p.value for p in result.metadata_props}
        onnx.helper.set_model_props(
            result, {**props, CONVERTER_CHANGES: f"{skipped}; quantized without it"}
        )
    return result


def quantize_dynamic(
    model: onnx.ModelProto,
    *,
    op_types: Sequence[str] = DYNAMIC_OP_TYPES,
    label: str = "<in-memory model>",
) -> onnx.ModelProto:
    """Dynamically quantized model (int8 weights, activations quantized at run time).

    Raises :class:`CheckFailed` when ORT's quantizer fails or quantizes nothing (no Conv or
    MatMul with constant weights among ``op_types``).
    """
    q = _quantization()
    with tempfile.TemporaryDirectory(prefix="onnxconv-int8-") as tmp, _contained(tmp):
        out = os.path.join(tmp, "dynamic.onnx")
        try:
            q.quantize_dynamic(
                model, out, op_types_to_quantize=list(op_types), weight_type=q.QuantType.QInt8
            )
            result = onnx.load(out)
        except Exception as exc:
            raise CheckFailed(
                f"{label}: ONNX Runtime's dynamic quantizer failed: {one_line(exc)}"
            ) from exc
    if not any(n.op_type in _DYNAMIC_INTEGER_OPS for n in result.graph.node):
        present = sorted({n.op_type for n in model.graph.node})
        raise NothingToQuantize(
            f"{label}: nothing to quantize dynamically: ORT's dynamic quantizer takes "
            f"{'/'.join(op_types)} with constant weights; the graph has {', '.join(present)}"
        )
    return result


__all__ = [
    "ACTIVATION_TYPES",
    "DYNAMIC_OP_TYPES",
    "METHODS",
    "LayerError",
    "NothingToQuantize",
    "QdqPair",
    "activation_pairs",
    "layer_errors",
    "qdq_params",
    "quantize_dynamic",
    "quantize_static",
]
