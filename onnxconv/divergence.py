"""Intermediate tensors: expose every node output, and find the first node whose output departs.

Exposing a tensor as a graph output forces ONNX Runtime to materialise it, which prevents the
fusions that would have consumed it; :func:`first_divergence` therefore localises defects of the
unfused computation (see :mod:`onnxconv.runtime`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import onnx

from onnxconv.errors import CheckFailed, UserInputError
from onnxconv.errors import one_line as _one_line
from onnxconv.parity import ParityResult, Tolerance, compare
from onnxconv.reference import run_reference
from onnxconv.runtime import ModelSource, Target, load_model_proto, make_session, run


def with_all_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose graph outputs are every node output (types by shape inference).

    Outputs keep their original order first; each further tensor is appended in node order.
    A tensor whose type shape inference cannot tell is exposed with its element type only
    when known, and skipped otherwise.
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:
        raise UserInputError(f"shape inference failed: {_one_line(exc)}") from exc
    types = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    present = {vi.name for vi in m.graph.output}
    for node in m.graph.node:
        for out in node.output:
            if not out or out in present:
                continue
            vi = types.get(out)
            if (
                vi is None
                or not vi.type.HasField("tensor_type")
                or vi.type.tensor_type.elem_type == 0
            ):
                continue
            new = onnx.ValueInfoProto()
            new.CopyFrom(vi)
            m.graph.output.append(new)
            present.add(out)
    return m


def _node_outputs_in_order(model: onnx.ModelProto) -> list[str]:
    return [o for node in model.graph.node for o in node.output if o]


def run_intermediates_ort(
    model: ModelSource,
    feeds: Mapping[str, np.ndarray],
    target: Target,
    *,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Every node output as computed by ORT on ``target``, ``{tensor: array}`` in node order."""
    proto, _ = load_model_proto(model)
    exposed = with_all_outputs(proto)
    info = make_session(exposed, target, threads=threads)
    got = run(info, feeds)
    return {name: got[name] for name in _node_outputs_in_order(proto) if name in got}


def run_intermediates_reference(
    model: ModelSource, feeds: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Every node output as computed by the reference evaluator (slow, exact; onnxconv's fixes
    of :mod:`onnxconv.reference` applied)."""
    proto, label = load_model_proto(model)
    exposed = with_all_outputs(proto)
    try:
        got = run_reference(exposed, feeds, [vi.name for vi in exposed.graph.output])
    except CheckFailed as exc:
        raise CheckFailed(f"{label}: {exc}") from None
    return {name: got[name] for name in _node_outputs_in_order(proto) if name in got}


@dataclass
class Divergence:
    """The first node (in topological order) whose output departs from the reference."""

    node_name: str
    op_type: str
    node_index: int
    output_name: str
    result: ParityResult
    checked: int
    """How many tensors were compared up to and including this one."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_name": self.node_name,
            "op_type": self.op_type,
            "node_index": self.node_index,
            "output_name": self.output_name,
            "checked": self.checked,
            "result": self.result.to_dict(),
        }


def first_divergence(
    model: ModelSource,
    feeds: Mapping[str, np.ndarray],
    target: Target,
    tol: Tolerance,
    *,
    reference_model: ModelSource | None = None,
) -> Divergence | None:
    """First node whose ORT output on ``target`` departs (beyond ``tol``) from the reference.

    The reference is ``onnx.reference.ReferenceEvaluator`` on ``reference_model`` (default: the
    same ``model``). Passing a known-good model as ``reference_model`` localises a defect planted
    in ``model``; tensors are matched by name. ``None`` when every tensor agrees.
    """
    proto, label = load_model_proto(model)
    ref_proto = proto if reference_model is None else load_model_proto(reference_model)[0]
    actual = run_intermediates_ort(proto, feeds, target)
    reference = run_intermediates_reference(ref_proto, feeds)
    checked = 0
    for index, node in enumerate(proto.graph.node):
        for out in node.output:
            if out not in actual or out not in reference:
                continue
            checked += 1
            result = compare(actual[out], reference[out], tol, name=out)
            if not result.passed:
                return Divergence(
                    node_name=node.name or f"{node.op_type}#{index}",
                    op_type=node.op_type,
                    node_index=index,
                    output_name=out,
                    result=result,
                    checked=checked,
                )
    if checked == 0:
        raise UserInputError(
            f"{label}: no intermediate tensor names in common with the reference model"
        )
    return None
