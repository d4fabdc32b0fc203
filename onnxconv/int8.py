"""int8 quantization with ONNX Runtime's quantizer, and per-layer localisation of its error.

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
  shufflenet). ``preprocess=False`` skips it for a graph it cannot handle.
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

Per-layer localisation (:func:`layer_errors`)
--------------------------------------------
Runs the fp32 and the int8 model once on the same feeds with every node output exposed
(:func:`onnxconv.divergence.run_intermediates_ort`) and pairs each ``QuantizeLinear ->
DequantizeLinear`` of the int8 model with the fp32 tensor it stands for (see
:func:`activation_pairs` for ORT's naming). Two errors per pair:

- ``sqnr_db``: the dequantized tensor against the fp32 model's tensor. Cumulative: it carries
  the error of every quantized layer upstream, so on a correct model it falls with depth and
  the last layers rank worst; it says how wrong a tensor is, not where the error entered.
- ``local_sqnr_db``: the dequantized tensor against the float tensor entering the same
  ``QuantizeLinear`` in the int8 model: the error this pair alone adds. A correct pair's
  rounding gives ~35-50 dB (measured on the zoo) whatever lies upstream; a wrong scale or zero
  point in one pair shows up there and nowhere else. Where ORT folded a Relu/Clip into the
  pair (see :func:`activation_pairs`), the float input is taken through that Relu/Clip first.

:func:`layer_errors` sorts by ``local_sqnr_db`` (lowest first), which names the pair a defect
lives in; ``by="sqnr"`` sorts by the cumulative error instead. Only activations are paired
(weights and int32 biases have no QuantizeLinear in the graph). Exposing every tensor prevents
ORT's QDQ fusions (see :mod:`onnxconv.runtime`), so the localisation runs the fake-quantized
float graph (DequantizeLinear -> float Conv -> QuantizeLinear) instead of the integer kernels
a plain ``cpu/all`` session fuses it into (QLinearConv, QLinearAdd, QLinearConcat, ...). Their
outputs agree: identical on 9 of the 10 committed conv graphs, one step apart on 0.002 % of
separable's elements (float rounding landing on the other side of a .5).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from onnxconv.divergence import run_intermediates_ort
from onnxconv.errors import CheckFailed, UserInputError, one_line
from onnxconv.precisions import stamp
from onnxconv.quant_metrics import sqnr_db
from onnxconv.runtime import Target, check_feeds, input_specs

METHODS = ("minmax", "entropy", "percentile")
ACTIVATION_TYPES = ("uint8", "int8")
#: Ops ``quantize_dynamic`` quantizes by default: those of ORT's dynamic registry a conv zoo has.
DYNAMIC_OP_TYPES = ("Conv", "MatMul")
#: Ops whose presence shows that dynamic quantization did something.
_DYNAMIC_INTEGER_OPS = ("ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul")


class NothingToQuantize(CheckFailed):
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


def _preprocessed(model: onnx.ModelProto, tmp: str, label: str) -> onnx.ModelProto:
    q = _quantization()
    path = os.path.join(tmp, "preprocessed.onnx")
    try:
        q.quant_pre_process(model, path)
        return onnx.load(path)
    except Exception as exc:  # symbolic shape inference and ORT's optimizer raise many types
        raise CheckFailed(
            f"{label}: ONNX Runtime's quantization pre-processing failed "
            f"(pass preprocess=False to skip it): {one_line(exc)}"
        ) from exc


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
    with tempfile.TemporaryDirectory(prefix="onnxconv-int8-") as tmp, _contained(tmp):
        source = _preprocessed(model, tmp, label) if preprocess else model
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
            raise CheckFailed(
                f"{label}: ONNX Runtime's static quantizer failed: {one_line(exc)}"
            ) from exc
    if not any(n.op_type == "QuantizeLinear" for n in result.graph.node):
        present = sorted({n.op_type for n in model.graph.node})
        raise NothingToQuantize(
            f"{label}: nothing to quantize: ORT's static quantizer left no QuantizeLinear in a "
            f"graph of {', '.join(present)}"
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


# ---------------------------------------------------------------------------------------------
# QDQ pairs and per-layer error


@dataclass(frozen=True)
class QdqPair:
    """One ``QuantizeLinear -> DequantizeLinear`` of an activation in an int8 QDQ model."""

    tensor: str
    """The fp32 model's name of the activation."""
    float_input: str
    """The int8 model's float tensor entering the QuantizeLinear."""
    dequantized: str
    """The DequantizeLinear's output."""
    quantize_node: str
    dequantize_node: str


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output if out}


def activation_pairs(int8_model: onnx.ModelProto, fp32_tensors: set[str]) -> list[QdqPair]:
    """Every ``Q -> DQ`` of an activation, paired with its fp32 name (graph order).

    ORT 1.32's QDQ quantizer names them ``t -> t_QuantizeLinear -> t_QuantizeLinear_Output ->
    t_DequantizeLinear -> t_DequantizeLinear_Output`` for an inner tensor ``t``. For a graph
    output ``y`` the graph output keeps its name, so the producer now writes
    ``y_QuantizeLinear_Input`` and the DequantizeLinear writes ``y``. A Relu after a quantized
    op is dropped and the op writes the Relu's name (``Conv -> relu``, the pre-Relu ``getitem``
    is gone), so ``relu`` is paired although the float behind it is pre-Relu. A chain of
    Reshape/Transpose gets one pair per tensor sharing the first pair's scale and zero point
    initializers. A quantized bias is ``DequantizeLinear(int32)`` writing the fp32 bias's own
    name. Rather than parse
    suffixes, the pair is found by structure (a DequantizeLinear fed by a QuantizeLinear) and
    named by whichever of its two ends, the QuantizeLinear's input or the DequantizeLinear's
    output, exists in the fp32 model (``fp32_tensors``: its graph inputs and node outputs);
    a pair whose float input is itself dequantized (a requantization) is followed back to the
    first such name. Pairs with no fp32 counterpart are left out.
    """
    producers = _producers(int8_model.graph)
    pairs = []
    for dq in int8_model.graph.node:
        if dq.op_type != "DequantizeLinear":
            continue
        qnode = producers.get(dq.input[0])
        if qnode is None or qnode.op_type != "QuantizeLinear":
            continue
        name = None
        for candidate in (qnode.input[0], dq.output[0]):
            if candidate in fp32_tensors:
                name = candidate
                break
        back = producers.get(qnode.input[0])
        while name is None and back is not None and back.op_type == "DequantizeLinear":
            upstream = producers.get(back.input[0])
            if upstream is None or upstream.op_type != "QuantizeLinear":
                break
            if upstream.input[0] in fp32_tensors:
                name = upstream.input[0]
            back = producers.get(upstream.input[0])
        if name is None:
            continue
        pairs.append(
            QdqPair(
                tensor=name,
                float_input=qnode.input[0],
                dequantized=dq.output[0],
                quantize_node=qnode.name,
                dequantize_node=dq.name,
            )
        )
    return pairs


@dataclass(frozen=True)
class LayerError:
    """Quantization error of one activation of the int8 model (see module docstring)."""

    tensor: str
    """fp32 tensor name."""
    node: str
    """The fp32 node producing it (``""`` for a graph input)."""
    op_type: str
    """Its op type (``"input"`` for a graph input)."""
    sqnr_db: float
    """Dequantized int8 tensor vs the fp32 model's tensor (includes upstream error)."""
    local_sqnr_db: float
    """Dequantized tensor vs the float tensor entering its own QuantizeLinear (this pair only)."""
    max_abs: float
    """``max |dequantized - fp32|``."""
    quantize_node: str
    dequantize_node: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("sqnr_db", "local_sqnr_db"):
            if not math.isfinite(d[key]):
                d[key] = str(d[key])
        return d


def _constant(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t) if node.attribute else None
    return None


def _removed_activation(
    fp32_model: onnx.ModelProto, fp32_producer: onnx.NodeProto | None, int8_producer: Any
) -> Any:
    """The Relu/Clip that ORT's QDQ quantizer folded into the pair's QuantizeLinear, as a numpy
    function; ``None`` when the pair's float input already is the fp32 tensor's value.

    With asymmetric activations ORT drops a Relu or Clip after a quantized op and lets the
    QuantizeLinear's range ``[0, max]`` do the clipping; the producer's output takes the
    activation's name (``Conv -> relu``), so the float entering ``relu_QuantizeLinear`` is the
    value *before* the Relu although it is called ``relu``."""
    if fp32_producer is None or fp32_producer.op_type not in ("Relu", "Clip"):
        return None
    if int8_producer is not None and int8_producer.op_type == fp32_producer.op_type:
        return None
    if fp32_producer.op_type == "Relu":
        return lambda x: np.maximum(x, 0)
    bounds = []
    for index, attr in ((1, "min"), (2, "max")):
        value = None
        if len(fp32_producer.input) > index and fp32_producer.input[index]:
            value = _constant(fp32_model, fp32_producer.input[index])
        else:  # opset < 11 keeps the bounds as attributes
            value = next((a.f for a in fp32_producer.attribute if a.name == attr), None)
        bounds.append(None if value is None else float(np.asarray(value)))
    return lambda x: np.clip(x, bounds[0], bounds[1])


def _fp32_tensors(model: onnx.ModelProto) -> dict[str, tuple[str, str]]:
    """fp32 tensor -> (producing node, op type); graph inputs -> ("", "input")."""
    weights = {i.name for i in model.graph.initializer}
    found = {vi.name: ("", "input") for vi in model.graph.input if vi.name not in weights}
    for index, node in enumerate(model.graph.node):
        for out in node.output:
            if out:
                found[out] = (node.name or f"{node.op_type}#{index}", node.op_type)
    return found


def layer_errors(
    fp32_model: onnx.ModelProto,
    int8_model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    *,
    by: str = "local",
    target: Target | None = None,
) -> list[LayerError]:
    """Each quantized activation's error on ``feeds``, worst first.

    ``by="local"`` (default) sorts by ``local_sqnr_db``, the error each QDQ pair adds by itself
    (it names the pair a defect is in); ``by="sqnr"`` by the cumulative ``sqnr_db``. Ties keep
    graph order. Both models run on ``target`` (default ``cpu/all/fp32``: the graph as given).
    Raises :class:`UserInputError` when no QDQ pair matches a fp32 tensor.
    """
    target = target or Target("cpu", "all", "fp32")
    if by not in ("local", "sqnr"):
        raise UserInputError(f"unknown sort key {by!r}; expected 'local' or 'sqnr'")
    names = _fp32_tensors(fp32_model)
    pairs = activation_pairs(int8_model, set(names))
    if not pairs:
        raise UserInputError(
            "the int8 model has no QuantizeLinear -> DequantizeLinear pair on a tensor of the "
            "fp32 model"
        )
    fp32 = dict(feeds) | run_intermediates_ort(fp32_model, feeds, target)
    # the int8 model runs as the deployment it is (precisions.deploy stamps it)
    int8_target = Target(target.ep, target.opt_level, stamp(int8_model))
    int8 = dict(feeds) | run_intermediates_ort(int8_model, feeds, int8_target)
    fp32_producers = _producers(fp32_model.graph)
    int8_producers = _producers(int8_model.graph)
    errors = []
    for pair in pairs:
        if pair.tensor not in fp32 or pair.dequantized not in int8 or pair.float_input not in int8:
            continue
        ref = fp32[pair.tensor]
        got = int8[pair.dequantized]
        local_ref = int8[pair.float_input]
        folded = _removed_activation(
            fp32_model, fp32_producers.get(pair.tensor), int8_producers.get(pair.float_input)
        )
        if folded is not None:
            local_ref = folded(local_ref)
        node, op_type = names[pair.tensor]
        errors.append(
            LayerError(
                tensor=pair.tensor,
                node=node,
                op_type=op_type,
                sqnr_db=sqnr_db(ref, got),
                local_sqnr_db=sqnr_db(local_ref, got),
                max_abs=float(np.max(np.abs(ref.astype(np.float64) - got))),
                quantize_node=pair.quantize_node,
                dequantize_node=pair.dequantize_node,
            )
        )
    key = "local_sqnr_db" if by == "local" else "sqnr_db"
    # NaN (a non-finite tensor) sorts as the worst error
    return sorted(errors, key=lambda e: -math.inf if math.isnan(v := getattr(e, key)) else v)


def qdq_params(model: onnx.ModelProto) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{DequantizeLinear node: (scale, zero point)}`` of a QDQ model, for inspection."""
    inits = {i.name: i for i in model.graph.initializer}
    params = {}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 2:
            continue
        scale = inits.get(node.input[1])
        zero = inits.get(node.input[2]) if len(node.input) > 2 else None
        if scale is None:
            continue
        params[node.name] = (
            numpy_helper.to_array(scale),
            numpy_helper.to_array(zero) if zero is not None else np.zeros((), np.uint8),
        )
    return params
