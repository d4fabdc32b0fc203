"""Per-node times measured on the device: every node of a graph timed alone, in its own model.

Why: ONNX Runtime's profile times a CUDA node's host side (its kernel launch), not the GPU
kernel, so on CUDA it cannot say where the time goes (``bench`` marks those shares ``clock:
host``). Cutting the graph into one-node models and timing each with IO binding (``run_with_
iobinding`` returns after ORT synchronised the stream) measures each node's own device time,
on any EP. On H100 this found the ShuffleNet unit's 7× gap to PyTorch in its two grouped 1×1
convolutions (reports/cuda-h100/).

What a node alone is not: no fusion with its neighbours (Conv+Relu), and its own layout
transforms at level ``all`` on CPU; the sum of node times is therefore compared with the whole
graph's time, never substituted for it.

Library: :func:`split_nodes` (pure onnx), :func:`time_nodes` (ORT sessions).
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from onnxconv.bench.stats import group_op_times, op_group, percentile
from onnxconv.errors import UserInputError
from onnxconv.errors import one_line as _one_line
from onnxconv.feeds import generate
from onnxconv.graph import node_macs, with_input_shapes
from onnxconv.runtime import EpUnavailable, Target, ep_unavailable_reason, make_session


@dataclass(frozen=True)
class NodeModel:
    """One node of a graph as a model of its own, or why it cannot be timed alone."""

    index: int
    name: str
    op_type: str
    model: onnx.ModelProto | None
    skipped: str | None = None


def _constant_values(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializers and the outputs of ``Constant`` nodes (``value`` form), by tensor name."""
    values = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value":
                    tensor = onnx.TensorProto()
                    tensor.CopyFrom(attr.t)
                    tensor.name = node.output[0]
                    values[node.output[0]] = tensor
    return values


def _static(vi: onnx.ValueInfoProto) -> bool:
    t = vi.type.tensor_type
    return (
        vi.type.HasField("tensor_type")
        and t.elem_type != 0
        and t.HasField("shape")
        and all(d.HasField("dim_value") and d.dim_value > 0 for d in t.shape.dim)
    )


def split_nodes(model: onnx.ModelProto) -> list[NodeModel]:
    """Every node of ``model``'s graph as a one-node model, in graph order.

    A node's inputs that are initializers or ``Constant`` outputs travel with it as initializers;
    the others become float graph inputs of the shape inference found. A node is skipped (with
    the reason) when it is a ``Constant``, has subgraphs, or has an input computed at run time
    that is not floating point (a shape) or whose shape is not static.
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:
        raise UserInputError(f"shape inference failed: {_one_line(exc)}") from exc
    graph = inferred.graph
    types = {vi.name: vi for vi in [*graph.input, *graph.value_info, *graph.output]}
    constants = _constant_values(graph)
    out: list[NodeModel] = []
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{index}"

        def skip(reason: str) -> None:
            out.append(NodeModel(index, name, node.op_type, None, reason))

        if node.op_type == "Constant":
            skip("a constant: no computation")
            continue
        if any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for a in node.attribute
        ):
            skip("has subgraphs")
            continue
        inputs, initializers, problem, seen = [], [], None, set()
        for tensor in node.input:
            if not tensor or tensor in seen:  # optional input left out, or fed twice
                continue
            seen.add(tensor)
            if tensor in constants:
                initializers.append(constants[tensor])
                continue
            vi = types.get(tensor)
            if vi is None or not _static(vi):
                problem = f"input {tensor!r} has no static shape"
                break
            if vi.type.tensor_type.elem_type not in (
                onnx.TensorProto.FLOAT,
                onnx.TensorProto.FLOAT16,
                onnx.TensorProto.DOUBLE,
            ):
                problem = f"input {tensor!r} is computed at run time and is not floating point"
                break
            inputs.append(vi)
        outputs = [types.get(t) for t in node.output if t]
        if problem is None and any(vi is None or not _static(vi) for vi in outputs):
            problem = "an output has no static shape"
        if problem is not None:
            skip(problem)
            continue
        one = helper.make_graph([node], f"node_{index}", inputs, outputs, initializers)
        m = helper.make_model(one, opset_imports=model.opset_import, ir_version=model.ir_version)
        m.functions.extend(model.functions)
        out.append(NodeModel(index, name, node.op_type, m))
    return out


def time_nodes(
    model: onnx.ModelProto,
    ep: str = "cpu",
    opt_level: str = "all",
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    threads: int | None = 1,
    cuda_options: Mapping[str, Any] | None = None,
    warmup: int = 5,
    calls: int = 30,
    seed: int = 0,
) -> dict[str, Any]:
    """Time every node of ``model`` alone on ``ep``: ``{"nodes": [...], "sum_ms", "groups_ms",
    "fractions", "clock"}``; a node row has ``macs`` (Conv, Gemm, MatMul) and then ``gflops``.

    Each node gets a strict session (the EP must run it; see :func:`onnxconv.runtime.make_session`),
    random float inputs, and on CUDA IO binding with inputs and outputs on the device, so the
    time of a call is the node's device time plus one launch. ``ms`` is the median of ``calls``
    timed calls after ``warmup``, ``p90_ms`` the 90th percentile. A node that cannot be timed
    alone carries ``skipped`` (the reason) instead. ``input_shapes`` fixes dynamic input dims to
    what is fed (see :func:`with_input_shapes`).
    """
    if input_shapes:
        model = with_input_shapes(model, input_shapes)
    if ep != "cpu":
        reason = ep_unavailable_reason(ep)
        if reason is not None:
            raise EpUnavailable(ep, reason)
    rows: list[dict[str, Any]] = []
    macs = node_macs(model)
    for part in split_nodes(model):
        row: dict[str, Any] = {
            "index": part.index,
            "name": part.name,
            "op_type": part.op_type,
            "group": op_group(part.op_type),
            "macs": macs[part.index],
            "ms": None,
            "p90_ms": None,
            "gflops": None,
            "skipped": part.skipped,
        }
        rows.append(row)
        if part.model is None:
            continue
        try:
            info = make_session(
                part.model, Target(ep, opt_level), threads=threads, cuda_options=cuda_options
            )
        except EpUnavailable as exc:
            row["skipped"] = f"{ep} cannot run it alone: {exc.reason}"
            continue
        feeds = generate(  # split_nodes gives float inputs of static, positive shapes
            part.model,
            part.name,
            batch=1,
            spatial={},
            distribution="normal",
            seed=seed + part.index,
            max_bytes=sys.maxsize,  # the inputs the whole graph computes: no limit of its own
        )
        call = _bound_call(info, feeds, ep)
        for _ in range(warmup):
            call()
        times = []
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            call()
            times.append((time.perf_counter_ns() - t0) / 1e6)
        row["ms"] = statistics.median(times)
        row["p90_ms"] = percentile(times, 90)
        if row["macs"] is not None and row["ms"] > 0:
            row["gflops"] = 2 * row["macs"] / (row["ms"] / 1e3) / 1e9
    by_op: dict[str, float] = {}
    for r in rows:
        if r["ms"] is not None:
            by_op[r["op_type"]] = by_op.get(r["op_type"], 0.0) + r["ms"]
    grouped = group_op_times(by_op)
    return {
        "nodes": rows,
        "sum_ms": grouped["total"],
        "groups_ms": grouped["groups"],
        "fractions": grouped["fractions"],
        "clock": "each node alone, wall time of a synchronised call",
        "ep": ep,
        "opt_level": opt_level,
        "calls": calls,
    }


def _bound_call(info, feeds: Mapping[str, np.ndarray], ep: str):
    """A zero-argument call running the session once; on CUDA with inputs/outputs on the GPU."""
    session = info.session
    if ep != "cuda":
        return lambda: session.run(None, dict(feeds))
    import onnxruntime as ort

    binding = session.io_binding()
    device_inputs = [ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0) for a in feeds.values()]
    for name, value in zip(feeds, device_inputs):
        binding.bind_ortvalue_input(name, value)
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda", 0)

    def call() -> None:
        session.run_with_iobinding(binding)

    call.keep = device_inputs  # the bound device buffers must outlive the binding
    return call
