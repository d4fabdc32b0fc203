"""Opset conversion with onnx's version converter, and which operators stop it.

:func:`convert_opset` runs ``onnx.version_converter.convert_version`` and then
``onnx.checker.check_model(full_check=True)`` on the result. When either fails, the error names
at most the first operator the converter tripped on; :func:`probe_ops` then converts a one-node
model per distinct node of the graph (domain, op type, attribute values, which inputs are given),
so the result lists every operator that does not convert, as
``(op_type, from_opset, to_opset, reason)``.

A conversion can also succeed and compute something else: :func:`check_equivalent` runs both
graphs on ONNX Runtime (CPU) and reports each output that differs; :func:`convert_opset` does
so when given ``feeds``.

What the converter of onnx 1.23.2 does (tests/test_opset.py):

- Down-conversion has few adapters: none for Split 18 -> 17, Identity 16 -> 15, Pow 15 -> 14,
  BatchNormalization 15 -> 14, Relu/Reshape/Add/Mul/Sub/Div 14 -> 13 (only 13 -> 14 is
  registered), nor 13 -> 12 for most ops revised at 13 (Concat, Transpose, Gemm, MatMul,
  Flatten, ReduceMean, Sigmoid, Clip, ...), nor MaxPool/AveragePool 10 -> 9. Of the zoo, the
  six Conv-only graphs go down to opset 7, those with Relu/Reshape/Add down to 14,
  shufflenet_v2_unit (Split) not below 18. Up-conversion works (to 28 and from opset 11).
- ReduceMean 18 -> 17 keeps ``noop_with_empty_axes`` (which the dynamo exporter writes), which
  opset 17 does not know: the checker rejects the result.
- Softmax/LogSoftmax 13 -> 12 are re-stamped without an adapter: on an input of rank > 2 with
  ``axis`` not the last, the converted graph computes a different softmax (found by
  :func:`check_equivalent`, not by the checker).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, NamedTuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, version_converter

from .errors import OnnxconvError, UserInputError, one_line

#: The lowest target: onnx's converter has adapters from opset 7 on (ONNX Runtime needs >= 7).
MIN_OPSET = 7
#: ``op_type`` of a problem that concerns the whole graph, not one operator.
GRAPH = "<graph>"
_DEFAULT_DOMAINS = ("", "ai.onnx")
#: Constant inputs up to this many elements are copied into a one-node probe (shape, axes,
#: split, scales: what adapters read); larger ones (weights) become typed graph inputs.
_INLINE_MAX_ELEMENTS = 4096
_ATOL, _RTOL = 1e-5, 1e-4


class OpProblem(NamedTuple):
    """One operator (or :data:`GRAPH`) that does not survive the conversion.

    ``from_opset -> to_opset`` is the step that failed where onnx's error names one ("No
    Adapter From Version $14 for Relu": 14 -> 13), else the whole conversion.
    """

    op_type: str
    from_opset: int
    to_opset: int
    reason: str

    def __str__(self) -> str:
        return f"{self.op_type} (opset {self.from_opset} -> {self.to_opset}): {self.reason}"


@dataclass
class ConversionResult:
    """``model`` is the converted graph, None when conversion or the checker failed;
    ``problems`` lists per operator what failed (and, with feeds, outputs that differ)."""

    model: onnx.ModelProto | None
    problems: list[OpProblem]
    source_opset: int
    target_opset: int

    @property
    def ok(self) -> bool:
        return self.model is not None and not self.problems

    def summary(self) -> str:
        """One line for a user."""
        step = f"opset {self.source_opset} -> {self.target_opset}"
        if self.ok:
            return f"{step}: converted"
        return f"{step}: " + "; ".join(str(p) for p in self.problems)


def max_opset() -> int:
    """The newest default-domain opset the installed onnx knows."""
    return onnx.defs.onnx_opset_version()


def model_opset(model: onnx.ModelProto) -> int:
    """The model's default-domain (``ai.onnx``) opset."""
    for entry in model.opset_import:
        if entry.domain in _DEFAULT_DOMAINS:
            return entry.version
    raise UserInputError("model imports no ai.onnx opset; nothing to convert")


def check_target(target: int) -> None:
    """Raise :class:`UserInputError` unless ``MIN_OPSET <= target <= max_opset()``."""
    high = max_opset()
    if isinstance(target, bool) or not isinstance(target, int) or not MIN_OPSET <= target <= high:
        raise UserInputError(
            f"target opset {target!r} out of range: onnx {onnx.__version__} converts to "
            f"opsets {MIN_OPSET} to {high}"
        )


def convert_opset(
    model: onnx.ModelProto,
    target: int,
    *,
    feeds: Mapping[str, np.ndarray] | None = None,
    atol: float = _ATOL,
    rtol: float = _RTOL,
) -> ConversionResult:
    """Convert ``model`` to default-domain opset ``target`` and check the result.

    On failure ``model`` is None and ``problems`` names each operator that does not convert
    (:func:`probe_ops`), or the whole graph when no single operator fails. With ``feeds``, a
    converted graph whose ONNX Runtime output differs from the original's adds problems
    (:func:`check_equivalent`); ``model`` is then kept. Raises :class:`UserInputError` for a
    target outside ``MIN_OPSET..max_opset()`` or a model without an ``ai.onnx`` opset.
    """
    check_target(target)
    source = model_opset(model)
    converted, error = _convert(model, target)
    if converted is None:
        problems = probe_ops(model, target) or [_problem(GRAPH, error, source, target)]
        return ConversionResult(None, problems, source, target)
    problems = []
    if feeds is not None:
        problems = check_equivalent(model, converted, feeds, atol=atol, rtol=rtol)
    return ConversionResult(converted, problems, source, target)


def check_equivalent(
    original: onnx.ModelProto,
    converted: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    *,
    atol: float = _ATOL,
    rtol: float = _RTOL,
) -> list[OpProblem]:
    """Run both graphs on ONNX Runtime CPU with ``feeds``; one :data:`GRAPH` problem per output
    of ``converted`` that is missing, has another shape or dtype, or is not allclose (``atol``,
    ``rtol``) to the original's, or one problem when ORT cannot load or run ``converted``.
    Errors running ``original`` propagate (onnxconv errors, one line)."""
    from .runtime import Target, make_session, run

    source, target = model_opset(original), model_opset(converted)
    expected = run(make_session(original, Target("cpu")), feeds)
    try:
        got = run(make_session(converted, Target("cpu")), feeds)
    except OnnxconvError as exc:
        reason = f"ONNX Runtime cannot run the converted graph: {one_line(exc)}"
        return [OpProblem(GRAPH, source, target, reason)]
    problems = []
    for name, ref in expected.items():
        out = got.get(name)
        if out is None:
            reason = f"output {name!r} is missing"
        elif out.shape != ref.shape or out.dtype != ref.dtype:
            was, now = f"{ref.dtype}{list(ref.shape)}", f"{out.dtype}{list(out.shape)}"
            reason = f"output {name!r} is {now}, was {was}"
        elif not np.allclose(out, ref, atol=atol, rtol=rtol, equal_nan=True):
            err = float(np.max(np.abs(out.astype(np.float64) - ref.astype(np.float64))))
            reason = (
                f"output {name!r} differs from the original's: max abs error {err:.3g} "
                f"(atol {atol:g}, rtol {rtol:g})"
            )
        else:
            continue
        problems.append(OpProblem(GRAPH, source, target, reason))
    return problems


def probe_ops(model: onnx.ModelProto, target: int) -> list[OpProblem]:
    """Convert each distinct node of ``model`` alone (a one-node model with the node's inferred
    input/output types and its small constant inputs) to ``target``; one problem per distinct
    failure. Nodes in subgraphs are not probed separately."""
    check_target(target)
    source = model_opset(model)
    types = _value_types(model)
    constants = _constants(model)
    problems: dict[OpProblem, None] = {}
    seen: set[tuple] = set()
    for node in model.graph.node:
        key = _signature(node, constants)
        if key in seen:
            continue
        seen.add(key)
        converted, error = _convert(_one_node_model(model, node, types, constants), target)
        if converted is None:
            problems[_problem(_op_name(node), error, source, target)] = None
    return list(problems)


# ---------------------------------------------------------------------------------------------
# conversion and its errors


def _convert(model: onnx.ModelProto, target: int) -> tuple[onnx.ModelProto | None, str]:
    """(converted model, "") or (None, why): conversion, then the full checker."""
    try:
        converted = version_converter.convert_version(model, target)
    except Exception as exc:
        return None, _assertion_text(exc)
    try:
        onnx.checker.check_model(converted, full_check=True)
    except Exception as exc:
        return None, f"the converted graph fails onnx.checker: {one_line(exc)}"
    return converted, ""


_ASSERTION = re.compile(r"Assertion `.*?` failed: (?:Warning: )?(.*)", re.S)
_NO_ADAPTER = re.compile(r"No Adapter (From|To) Version \S*?\$(\d+) for (\S+)")
_NO_ADAPTER_FOR = re.compile(r"No Adapter For (\S+)")
_NO_PREVIOUS = re.compile(r"No Previous Version of (\S+) exists")


def _assertion_text(exc: BaseException) -> str:
    """The message of onnx's C++ assertion without its source location."""
    text = one_line(exc, limit=1000)
    match = _ASSERTION.search(text)
    return one_line(match.group(1)) if match else one_line(text)


def _problem(op_type: str, error: str, source: int, target: int) -> OpProblem:
    """An :class:`OpProblem` from a converter or checker message, with the failed step."""
    down = target < source
    if match := _NO_ADAPTER.search(error):
        side, version, op = match.group(1), int(match.group(2)), match.group(3)
        step = 1 if not down else -1
        frm, to = (version, version + step) if side == "From" else (version - step, version)
        op_type = op if op_type == GRAPH else op_type
        return OpProblem(op_type, frm, to, f"onnx has no adapter for {op} from opset {frm} to {to}")
    if match := _NO_PREVIOUS.search(error):
        op = match.group(1)
        op_type = op if op_type == GRAPH else op_type
        since = _since_version(op, source)
        if since is not None:
            return OpProblem(op_type, since, since - 1, f"{op} does not exist before opset {since}")
        return OpProblem(op_type, source, target, f"{op} does not exist in opset {target}")
    if match := _NO_ADAPTER_FOR.search(error):
        op_type = match.group(1) if op_type == GRAPH else op_type
        return OpProblem(op_type, source, target, f"onnx has no adapter for {match.group(1)}")
    return OpProblem(op_type, source, target, error)


def _since_version(op_type: str, opset: int) -> int | None:
    try:
        return onnx.defs.get_schema(op_type, opset).since_version
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------
# one-node probes


def _op_name(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}.{node.op_type}"


def _value_types(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """Every typed tensor of the graph, after (non-strict) shape inference."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    g = inferred.graph
    infos = list(g.input) + list(g.value_info) + list(g.output)
    return {vi.name: vi for vi in infos if vi.type.HasField("tensor_type")}


def _constants(model: onnx.ModelProto) -> dict[str, TensorProto]:
    """Initializers and the outputs of Constant nodes, by tensor name."""
    found = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Constant" or node.domain not in _DEFAULT_DOMAINS:
            continue
        for attr in node.attribute:
            if attr.name == "value":
                found[node.output[0]] = attr.t
            elif attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
                value = helper.get_attribute_value(attr)
                dtype = np.float32 if "float" in attr.name else np.int64
                found[node.output[0]] = numpy_helper.from_array(np.array(value, dtype))
    return found


def _attribute_key(attr: onnx.AttributeProto) -> tuple:
    if attr.type in (onnx.AttributeProto.INT, onnx.AttributeProto.FLOAT):
        return attr.name, helper.get_attribute_value(attr)
    if attr.type == onnx.AttributeProto.STRING:
        return attr.name, attr.s
    if attr.type in (onnx.AttributeProto.INTS, onnx.AttributeProto.FLOATS):
        return attr.name, tuple(helper.get_attribute_value(attr))
    return attr.name, attr.type


def _signature(node: onnx.NodeProto, constants: Mapping[str, TensorProto]) -> tuple:
    """What can change a node's conversion: op, attributes, which inputs are given/constant."""
    return (
        node.domain,
        node.op_type,
        tuple(sorted(_attribute_key(a) for a in node.attribute)),
        tuple((bool(name), name in constants) for name in node.input),
        len(node.output),
    )


def _numel(tensor: TensorProto) -> int:
    return int(np.prod(tensor.dims, dtype=np.int64)) if tensor.dims else 1


def _one_node_model(
    model: onnx.ModelProto,
    node: onnx.NodeProto,
    types: Mapping[str, onnx.ValueInfoProto],
    constants: Mapping[str, TensorProto],
) -> onnx.ModelProto:
    inputs, initializers = [], []
    for name in dict.fromkeys(n for n in node.input if n):
        tensor = constants.get(name)
        if tensor is not None and _numel(tensor) <= _INLINE_MAX_ELEMENTS:
            copy = TensorProto()
            copy.CopyFrom(tensor)
            copy.name = name
            initializers.append(copy)
        elif tensor is not None:
            inputs.append(helper.make_tensor_value_info(name, tensor.data_type, tensor.dims))
        else:
            inputs.append(types.get(name, onnx.ValueInfoProto(name=name)))
    outputs = [types.get(n, onnx.ValueInfoProto(name=n)) for n in node.output if n]
    graph = helper.make_graph([node], f"probe_{node.op_type}", inputs, outputs, initializers)
    probe = helper.make_model(graph, opset_imports=list(model.opset_import))
    probe.ir_version = model.ir_version
    probe.functions.extend(model.functions)
    return probe


__all__ = [
    "GRAPH",
    "MIN_OPSET",
    "ConversionResult",
    "OpProblem",
    "check_equivalent",
    "check_target",
    "convert_opset",
    "max_opset",
    "model_opset",
    "probe_ops",
]
