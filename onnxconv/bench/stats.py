"""The bench's statistics, pure functions on plain numbers (milliseconds unless named otherwise):
percentiles, block-median spread, round-by-round ratios, and ONNX Runtime's profile grouped by op.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

#: Per-op groups from ORT's profile; ``shuffle`` is Reshape/Transpose time (a channel shuffle is
#: Reshape -> Transpose -> Reshape), ``reorder`` is the NCHWc layout transforms.
OP_GROUPS = ("conv", "shuffle", "reorder", "other")

_KERNEL_TIME = "_kernel_time"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear interpolation between closest ranks.

    Same as ``numpy.percentile(values, q)`` (method "linear"): rank ``(n - 1) * q / 100``.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def block_spread(block_medians: Sequence[float]) -> float:
    """``(max - min) / median`` of the block medians: 0 for a perfectly steady machine."""
    if not block_medians:
        raise ValueError("block spread of no blocks")
    mid = statistics.median(block_medians)
    return (max(block_medians) - min(block_medians)) / mid if mid else 0.0


def measured_spread(stats: Mapping[str, Any]) -> float | None:
    """A cell's block spread (:attr:`LatencyStats.block_spread`) where it was measured: None for
    a single block, whose spread of 0 says nothing of how steady the machine was."""
    medians = stats.get("block_medians_ms") or []
    return stats.get("block_spread") if len(medians) > 1 else None


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one cell over all its timed calls (every round pooled), in milliseconds."""

    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    stdev_ms: float
    min_ms: float
    max_ms: float
    block_medians_ms: list[float]
    block_spread: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(blocks_ns: Sequence[Sequence[int]]) -> LatencyStats:
    """Statistics of timed calls given as blocks of nanosecond durations.

    ``stdev`` is the sample standard deviation (n - 1), 0 for a single call.
    """
    blocks = [list(b) for b in blocks_ns if len(b)]
    if not blocks:
        raise ValueError("no timed calls to summarize")
    ms = [t / 1e6 for b in blocks for t in b]
    medians = [statistics.median(b) / 1e6 for b in blocks]
    return LatencyStats(
        n=len(ms),
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        mean_ms=statistics.fmean(ms),
        stdev_ms=statistics.stdev(ms) if len(ms) > 1 else 0.0,
        min_ms=min(ms),
        max_ms=max(ms),
        block_medians_ms=medians,
        block_spread=block_spread(medians),
    )


def paired_ratios(
    numerators: Sequence[float | None], denominators: Sequence[float | None]
) -> list[float]:
    """Ratio per round, ``numerators[i] / denominators[i]``; rounds missing on either side skipped.

    Use with torch p50s over ORT p50s of the same rounds: the median of the result is the
    reported torch/ORT speedup.
    """
    if len(numerators) != len(denominators):
        raise ValueError(
            f"paired ratios need as many rounds on both sides, got "
            f"{len(numerators)} and {len(denominators)}"
        )
    return [
        a / b for a, b in zip(numerators, denominators) if a is not None and b is not None and b > 0
    ]


def median_or_none(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# ---------------------------------------------------------------------------------------------
# ORT profile -> per-op breakdown (kept free of heavy imports: the worker imports this module)


def op_group(op_type: str) -> str:
    """``conv`` (Conv, FusedConv, NchwcConv, QLinearConv, ...), ``shuffle`` (Reshape, Transpose),
    ``reorder`` (ReorderInput, ReorderOutput) or ``other``."""
    if "Conv" in op_type:
        return "conv"
    if op_type in ("Reshape", "Transpose"):
        return "shuffle"
    if op_type in ("ReorderInput", "ReorderOutput"):
        return "reorder"
    return "other"


def largest_ops(by_op_us: Mapping[str, float], shown: int = 3) -> str:
    """The op types that took the most time, largest first, as ``FusedConv 1221.9, Conv 813.9``
    (the groups are coarse: a shuffle as one Gather counts as ``other``, a network's pooling and
    Gemm too)."""
    largest = sorted(by_op_us.items(), key=lambda kv: -kv[1])[:shown]
    return ", ".join(f"{op} {us:.1f}" for op, us in largest) or "—"


def group_op_times(by_op: Mapping[str, float]) -> dict[str, Any]:
    """Op-type times -> ``{"groups": {group: time}, "fractions": {group: share of the total}}``."""
    groups = {g: 0.0 for g in OP_GROUPS}
    for op, t in by_op.items():
        groups[op_group(op)] += t
    total = sum(groups.values())
    fractions = {g: (t / total if total else 0.0) for g, t in groups.items()}
    return {"groups": groups, "fractions": fractions, "total": total}


def node_kernel_events(
    events: Iterable[Any],
) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """The node kernel events of an ORT profile (its list of Chrome-trace events), in order, as
    ``(node name, args, event)``: ``cat == "Node"`` with a name ``<node>_kernel_time``. Node
    names are those of the *optimised* graph; ``args`` (``{}`` when absent) carries ``op_name``
    and ``provider``. Pure and light, so that every reader of an ORT profile can share it
    (:func:`parse_ort_profile`; :func:`onnxconv.runtime.node_placement` reads the same events)."""
    for event in events:
        if not isinstance(event, Mapping) or event.get("cat") != "Node":
            continue
        name = str(event.get("name", ""))
        if name.endswith(_KERNEL_TIME):
            yield name[: -len(_KERNEL_TIME)], event.get("args") or {}, event


def parse_ort_profile(
    events: Sequence[Mapping[str, Any]], last_runs: int | None = None
) -> dict[str, Any]:
    """Sum node kernel time by op type from an ORT profile (the list of Chrome-trace events).

    Node events are those of :func:`node_kernel_events`, with ``args.op_name``.
    With ``last_runs``, only nodes inside the last ``last_runs`` ``model_run`` windows count (the
    warm-up runs are left out). Times are microseconds per run, means over the runs counted
    (``run_us_per_run`` is the mean ``model_run`` duration, framework overhead included).
    ``providers`` names the op types each EP ran, ``provider_nodes`` counts its nodes.
    """
    runs = sorted(
        (int(e["ts"]), int(e["ts"]) + int(e.get("dur", 0)))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    if last_runs is not None and last_runs > 0:
        runs = runs[-last_runs:]
    starts = [start for start, _ in runs]
    by_op: dict[str, float] = defaultdict(float)
    placement: dict[str, set[str]] = defaultdict(set)
    nodes_on: dict[str, set[str]] = defaultdict(set)
    nodes = set()
    for node, args, e in node_kernel_events(events):
        if runs:
            ts = int(e["ts"])
            i = bisect.bisect_right(starts, ts) - 1
            if i < 0 or ts > runs[i][1]:
                continue
        op = args.get("op_name", "?")
        provider = args.get("provider", "?")
        by_op[op] += float(e.get("dur", 0))
        placement[provider].add(op)
        nodes.add(node)
        nodes_on[provider].add(node)
    n_runs = len(runs) or 1
    per_run = {op: t / n_runs for op, t in sorted(by_op.items(), key=lambda kv: -kv[1])}
    grouped = group_op_times(per_run)
    run_us = sum(end - start for start, end in runs) / len(runs) if runs else None
    return {
        "runs": len(runs),
        "by_op_us": per_run,
        "groups_us": grouped["groups"],
        "fractions": grouped["fractions"],
        "node_us_per_run": grouped["total"],
        "run_us_per_run": run_us,
        "nodes": len(nodes),
        "providers": {p: sorted(ops) for p, ops in sorted(placement.items())},
        "provider_nodes": {p: len(names) for p, names in sorted(nodes_on.items())},
    }


def op_shares(cell: Mapping[str, Any]) -> tuple[dict[str, float] | None, str | None]:
    """The conv/shuffle/reorder/other shares of a cell and what they are made of.

    ``"nodes"``: each node timed alone (``--per-node``; device time, also on CUDA), preferred;
    ``"profile"``: ORT's profile on CPU; ``"launch"``: ORT's profile of a CUDA cell, which times
    kernel launches, not the GPU. ``(None, None)`` when the cell has neither.
    """
    per_node = cell.get("per_node")
    if per_node and per_node.get("sum_ms"):
        return per_node["fractions"], "nodes"
    per_op = cell.get("per_op")
    if per_op and per_op.get("fractions"):
        return per_op["fractions"], "launch" if per_op.get("clock") == "host" else "profile"
    return None, None
