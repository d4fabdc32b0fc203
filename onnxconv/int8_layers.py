"""Per-layer error of an int8 QDQ model against its fp32 model, and the QDQ pairs it reads.

Made by :func:`onnxconv.int8.quantize_static` (ORT's QDQ format); every name here is also
importable from :mod:`onnxconv.int8`.

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

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from onnxconv.divergence import run_intermediates_ort
from onnxconv.errors import UserInputError
from onnxconv.precisions import stamp
from onnxconv.quant_metrics import sqnr_db
from onnxconv.runtime import Target


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
