"""What bounds a tuned deployment: where its time goes, measured node by node, against what the
machine can do (issue 14: where no formulation reaches PyTorch eager, the report shows the best
found and the bound that stops it: the memory roof of a copy, launch overhead, a kernel).

Measured in two fresh worker processes, as ``onnxconv bench`` measures them:

- every node of the winner's graph timed alone on its EP (:func:`onnxconv.bench.node_times.
  time_nodes`: on CUDA with IO binding, so a node's time is its device time plus one launch);
- the machine's roofs (:mod:`onnxconv.bench.roofs`: the fp32 matrix-product GFLOP/s and the copy
  GB/s of the CPU, or of the GPU when tuning for CUDA).

The deployment's p50 then splits into four parts: the convolutions, the nodes that only move data
(:data:`MOVES_DATA`), the other nodes, and the overhead (the p50 less the sum of the nodes alone:
launches, synchronisation, the framework; zero where fusion makes the whole faster than its
parts). The largest part is the bound. Beside it: the bytes the data-moving nodes read and write
and the time the measured copy roof would take for them, and the convolutions' GFLOP/s against
the compute roof. When that part alone takes longer than PyTorch eager's whole run, no change to
the rest of the graph can reach PyTorch, and the analysis says so.

Nodes alone are not the graph: no fusion with neighbours, their own layout transforms on CPU. The
parts are therefore each node's own time, set beside the whole graph's p50, never summed into it.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import onnx

from onnxconv.graph import node_macs, with_input_shapes

#: Op types that only move or reshape data: their cost is bytes, not arithmetic.
MOVES_DATA = frozenset(
    (
        "Reshape",
        "Transpose",
        "Gather",
        "Concat",
        "Split",
        "Slice",
        "Pad",
        "ReorderInput",
        "ReorderOutput",
        "Identity",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
    )
)
PARTS = ("convolutions", "data movement", "other nodes", "overhead")


def part_of(op_type: str) -> str:
    if "Conv" in op_type:
        return "convolutions"
    return "data movement" if op_type in MOVES_DATA else "other nodes"


def moved_bytes(model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]]) -> list[int]:
    """Bytes each node reads and writes (its inputs and outputs with known shapes, constants
    included), in node order, at ``input_shapes``."""
    inferred = onnx.shape_inference.infer_shapes(with_input_shapes(model, input_shapes))
    sizes: dict[str, int] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        t = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        if t.HasField("shape") and all(d >= 0 for d in dims) and t.elem_type:
            itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).itemsize
            sizes[vi.name] = int(np.prod(dims, dtype=np.int64)) * itemsize
    for init in inferred.graph.initializer:
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
        sizes[init.name] = int(np.prod(init.dims, dtype=np.int64)) * itemsize
    return [
        sum(sizes.get(name, 0) for name in [*node.input, *node.output] if name)
        for node in inferred.graph.node
    ]


def conv_macs(model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]]) -> int:
    """The multiply-adds of a graph's convolutions at ``input_shapes``."""
    model = with_input_shapes(model, input_shapes)
    return sum(
        m or 0 for node, m in zip(model.graph.node, node_macs(model)) if "Conv" in node.op_type
    )


def analyse(
    p50_ms: float,
    torch_p50_ms: float | None,
    per_node: Mapping[str, Any],
    roofs: Mapping[str, Any] | None,
    node_bytes: list[int],
    useful_conv_macs: int | None = None,
) -> dict[str, Any]:
    """The bound of a deployment whose p50 is ``p50_ms`` from its nodes timed alone
    (``per_node``: :func:`~onnxconv.bench.node_times.time_nodes`' result), the machine's
    ``roofs`` (``compute_gflops``, ``memory_gbps``; None when not measured) and each node's
    :func:`moved_bytes`.

    ``useful_conv_macs``: the convolutions' multiply-adds in the graph the user gave
    (:func:`conv_macs`). A rewrite can execute more (``grouped_dense`` multiplies the zeros of
    a block-diagonal weight): GFLOP/s and the compute roof's time count the useful work only,
    ``conv_macs_executed`` what the kernels ran."""
    timed = [n for n in per_node["nodes"] if n.get("ms") is not None]
    parts = dict.fromkeys(PARTS, 0.0)
    for n in timed:
        parts[part_of(n["op_type"])] += n["ms"]
    nodes_ms = sum(parts.values())
    parts["overhead"] = max(0.0, p50_ms - nodes_ms)
    convs = [n for n in timed if part_of(n["op_type"]) == "convolutions"]
    movers = [n for n in timed if part_of(n["op_type"]) == "data movement"]
    executed = sum(n["macs"] or 0 for n in convs)
    macs = executed if useful_conv_macs is None else min(useful_conv_macs, executed)
    moved = sum(node_bytes[n["index"]] for n in movers if n["index"] < len(node_bytes))
    compute_gflops = (roofs or {}).get("compute_gflops")
    memory_gbps = (roofs or {}).get("memory_gbps")
    bound = max(PARTS, key=lambda p: parts[p])
    slowest = max(
        (n for n in timed if part_of(n["op_type"]) == bound), key=lambda n: n["ms"], default=None
    )
    return {
        "p50_ms": p50_ms,
        "torch_p50_ms": torch_p50_ms,
        "parts_ms": parts,
        "nodes": len(per_node["nodes"]),
        "nodes_timed": len(timed),
        "nodes_sum_ms": nodes_ms,
        "bound": bound,
        "alone_slower_than_torch": bool(torch_p50_ms is not None and parts[bound] >= torch_p50_ms),
        "slowest_node": None
        if slowest is None
        else {k: slowest.get(k) for k in ("name", "op_type", "ms", "macs", "gflops")},
        "conv_macs": macs,
        "conv_macs_executed": executed,
        "conv_gflops": 2 * macs / (parts["convolutions"] / 1e3) / 1e9
        if parts["convolutions"] > 0
        else None,
        "compute_roof_gflops": compute_gflops,
        "conv_roof_ms": 2 * macs / (compute_gflops * 1e9) * 1e3 if compute_gflops else None,
        "moved_bytes": moved,
        "memory_roof_gbps": memory_gbps,
        "copy_roof_ms": moved / (memory_gbps * 1e9) * 1e3 if memory_gbps else None,
        "clock": per_node.get("clock"),
    }


def sentence(b: Mapping[str, Any] | None) -> str | None:
    """The bound's sentence as this version words it (a report's JSON keeps the one its run
    wrote: re-rendering a page rewords it from the same figures); None without a bound."""
    if not b or "error" in b:
        return None
    try:
        return describe(b)
    except (KeyError, TypeError):  # a report from before a field existed
        return b.get("sentence")


def describe(b: Mapping[str, Any]) -> str:
    """The bound in one sentence."""
    part, ms, p50 = b["bound"], b["parts_ms"][b["bound"]], b["p50_ms"]
    share = f"{ms:.3g} ms of the deployment's p50 {p50:.3g} ms"
    if part == "overhead":
        said = (
            f"launch and framework overhead: the p50 exceeds the sum of its {b['nodes_timed']} "
            f"nodes, each timed alone ({b['nodes_sum_ms']:.3g} ms), by {ms:.3g} ms"
        )
    elif part == "convolutions":
        said = f"the convolution kernels: alone they take {share}"
        if b["conv_gflops"] is not None:
            said += f", at {b['conv_gflops']:.4g} GFLOP/s of useful work"
        executed = b.get("conv_macs_executed", b["conv_macs"])
        if executed > b["conv_macs"]:
            said += (
                f" (they execute {executed:,} multiply-adds for the graph's {b['conv_macs']:,}: "
                "the rest multiply zeros)"
            )
        if b["compute_roof_gflops"]:
            said += (
                f" (at the measured compute roof, {b['compute_roof_gflops']:.4g} GFLOP/s, "
                f"{b['conv_roof_ms']:.3g} ms)"
            )
    elif part == "data movement":
        said = f"data movement: the nodes that only move data take {share}, moving "
        said += f"{b['moved_bytes'] / 1e6:.4g} MB"
        if b["memory_roof_gbps"]:
            said += (
                f" (at the copy roof measured on a large buffer, {b['memory_roof_gbps']:.4g} GB/s, "
                f"{b['copy_roof_ms']:.3g} ms)"
            )
    else:
        said = f"the other nodes: alone they take {share}"
    slowest = b["slowest_node"]
    if slowest is not None:
        said += f"; the slowest is {slowest['name']} ({slowest['op_type']}, {slowest['ms']:.3g} ms)"
    if b["alone_slower_than_torch"]:  # the part, not its slowest node
        said += (
            f"; this part alone ({ms:.3g} ms) is slower than PyTorch eager's whole run "
            f"({b['torch_p50_ms']:.3g} ms), so no change to the rest of the graph reaches it"
        )
    return said
