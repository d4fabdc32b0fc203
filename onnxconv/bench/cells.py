"""The cells of a run: a cell's record while the run fills it (:class:`BenchCell`, made empty by
:func:`cell_base`), each worker's result added to it (:func:`record_round`), its statistics and
roofline figures once the run is over (:func:`finish_cell`), an ORT cell against a PyTorch cell
round by round (:func:`pair`), and the start and end roof measurements combined
(:func:`combine_roofs`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Sequence

from .settings import BenchSettings
from .sources import Prepared
from .stats import median_or_none, paired_ratios, summarize

#: The fields :meth:`BenchCell.to_dict` leaves out (or, ``outputs``, moves last) while ``None``.
_OPTIONAL = (
    "graph_sha256",
    "graph_computes_in",
    "tuned",
    "tuned_settings",
    "tuned_threads",
    "outputs",
    "per_op_error",
    "per_node_error",
)


@dataclass(kw_only=True)
class BenchCell:
    """One source at one batch on one backend and target, as the run builds and fills it; the
    report holds :meth:`to_dict`."""

    id: str
    label: str
    source: str
    kind: str  # "variant" or "onnx"
    #: The sha256 of an ``onnx`` source's graph file: bench-compare knows the same graph by it
    #: where its folder moved, and another graph where the file changed in place (optional).
    graph_sha256: str | None = None
    config: dict[str, Any] | None
    batch: int
    backend: str  # "ort", "torch" or "torch_compile"
    target: str
    ep: str | None = None
    device: str | None = None
    opt_level: str | None = None
    precision: str = "fp32"  # an ORT cell names its deployment
    #: A graph brought already at a lower precision (``fp16``, ``int8``): its ``fp32`` cells
    #: run it as it is (:func:`onnxconv.precisions.computes_in`; optional).
    graph_computes_in: str | None = None
    threads: int
    status: str = "ok"
    error: str | None = None
    macs: int | None = None
    params: int | None = None
    macs_source: str | None = None
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    per_op: dict[str, Any] | None = None
    per_node: dict[str, Any] | None = None
    session: dict[str, Any] = field(default_factory=dict)
    #: A tuned graph's record, settings' name and threads (optional, all three or none).
    tuned: str | None = None
    tuned_settings: str | None = None
    tuned_threads: int | None = None
    #: ``[{"shape", "abs_sum", ...}]`` from a round that ran; ``None`` when none did.
    outputs: list[dict[str, Any]] | None = None
    #: Why the profile or per-node pass failed (optional).
    per_op_error: str | None = None
    per_node_error: str | None = None
    # Filled by :func:`finish_cell`.
    stats: dict[str, Any] | None = None
    throughput_per_s: float | None = None
    gflops: float | None = None
    arithmetic_intensity: float | None = None
    roof_bound_gflops: float | None = None
    roof_fraction: float | None = None
    compute_roof_fraction: float | None = None
    achieved_gbps: float | None = None
    memory_roof_fraction: float | None = None
    page_faults_per_call: float | None = None
    bytes: int | None = None
    flops: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report's dict of a finished cell, keys in the fields' order. The optional fields
        are left out while ``None``, except ``outputs``: ``None`` and last when no round ran."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in _OPTIONAL:
            if d[key] is None:
                del d[key]
        if self.outputs is None:
            d["outputs"] = None
        return d


def cell_base(
    prep: Prepared, backend: str, target: str, settings: BenchSettings, **extra: Any
) -> BenchCell:
    """The empty cell of ``prep`` on ``backend`` and ``target``; ``extra`` sets more fields."""
    s = prep.source
    return BenchCell(
        id=f"{s.label}/b{prep.batch}/{backend}/{target}",
        label=s.label,
        source=s.variant if s.kind == "variant" else str(s.path),
        kind=s.kind,
        graph_sha256=s.graph_sha256,
        config=prep.config,
        batch=prep.batch,
        backend=backend,
        target=target,
        threads=settings.threads,
        macs=prep.macs,
        params=prep.params,
        macs_source=prep.macs_source,
        graph_computes_in=prep.computes_in if backend == "ort" else None,
        input_shapes=_input_shapes(prep),
        **extra,
    )


def _input_shapes(prep: Prepared) -> dict[str, list[int]]:
    """``{input name: shape}`` of the arrays the cell is fed (read from the saved .npy header)."""
    import numpy as np

    return {
        name: list(np.load(path, mmap_mode="r").shape)
        for name, path in prep.inputs.items()
        if path.is_file()
    }


def record_round(
    cell: BenchCell, index: int, result: Mapping[str, Any], blocks: dict[str, list]
) -> None:
    """Add round ``index``'s worker ``result`` to ``cell`` and its timed blocks to ``blocks``."""
    entry: dict[str, Any] = {
        "round": index,
        "pid": result.get("pid"),
        "wall_s": result.get("wall_s"),
        "loadavg_1m": _loadavg(),
        "cpu_pressure": result.get("cpu_pressure"),
    }
    if result.get("ok"):
        stats = summarize(result["blocks_ns"])
        blocks[cell.id].extend(result["blocks_ns"])
        entry.update(
            p50_ms=stats.p50_ms,
            block_medians_ms=stats.block_medians_ms,
            page_faults_per_call=result.get("page_faults_per_call"),
            major_faults=result.get("majflt"),
            warmup_calls=result.get("warmup_calls"),
            involuntary_ctx_switches_per_call=result.get("involuntary_ctx_switches_per_call"),
            error=None,
        )
        for key in (
            "providers",
            "session_options",
            "cuda_options",
            "io_binding",
            "copies_ms",
            "torch_threads",
            "torch_interop_threads",
            "malloc_env",
            "compile_s",
            "device",
            "cuda_settings",
        ):
            if key in result:
                cell.session[key] = result[key]
        cell.outputs = result.get("outputs")
    else:
        entry.update(p50_ms=None, error=result.get("error"))
        if cell.status == "ok":
            cell.status = result.get("status", "error")
            cell.error = result.get("error")
    cell.rounds.append(entry)


def finish_cell(cell: BenchCell, prep: Prepared, blocks: list, roofs: Mapping | None) -> None:
    """``cell``'s statistics over all its ``blocks``, its rates, and its share of ``roofs``."""
    out_elems = sum(math.prod(o["shape"]) for o in cell.outputs or [])
    cell.bytes = 4 * ((prep.params or 0) + prep.input_elems + out_elems) if cell.outputs else None
    cell.flops = 2 * prep.macs if prep.macs is not None else None
    faults = [
        r["page_faults_per_call"] for r in cell.rounds if r.get("page_faults_per_call") is not None
    ]
    cell.page_faults_per_call = median_or_none(faults)
    if not blocks:
        return
    stats = summarize(blocks)
    cell.stats = stats.to_dict()
    seconds = stats.p50_ms / 1e3
    if seconds <= 0:  # below the clock's resolution: no rates
        return
    cell.throughput_per_s = prep.batch / seconds
    if cell.flops:  # a graph without multiply-adds (a bare shuffle) has no GFLOP/s: "—"
        cell.gflops = cell.flops / seconds / 1e9
    if cell.bytes:
        cell.achieved_gbps = cell.bytes / seconds / 1e9
        if cell.flops:
            cell.arithmetic_intensity = cell.flops / cell.bytes
    if roofs:
        if cell.achieved_gbps is not None:
            cell.memory_roof_fraction = cell.achieved_gbps / roofs["memory_gbps"]
        if cell.gflops is not None:
            cell.compute_roof_fraction = cell.gflops / roofs["compute_gflops"]
        if cell.arithmetic_intensity is not None:
            bound = min(roofs["compute_gflops"], cell.arithmetic_intensity * roofs["memory_gbps"])
            cell.roof_bound_gflops = bound
            cell.roof_fraction = cell.gflops / bound if bound > 0 else None


#: How far the sum of |output| of an ORT cell may be from PyTorch's for the pair to count as the
#: same computation (a sanity check that both timed the same function; accuracy is validate's
#: job): fp32 summation order, fp16 rounding, int8 quantization noise.
ABS_SUM_RTOL = {"fp32": 1e-3, "fp16": 1e-2, "int8": 5e-2}


def pair(ort_cell: BenchCell, torch_cell: BenchCell) -> dict[str, Any]:
    """The report's pair of an ORT cell and a PyTorch cell: their p50s round by round."""
    rounds = min(len(ort_cell.rounds), len(torch_cell.rounds))
    ort_p50 = [r.get("p50_ms") for r in ort_cell.rounds[:rounds]]
    torch_p50 = [r.get("p50_ms") for r in torch_cell.rounds[:rounds]]
    ratios = paired_ratios(torch_p50, ort_p50)
    inverse = paired_ratios(ort_p50, torch_p50)
    match = None
    if ort_cell.outputs and torch_cell.outputs:
        a = [o["abs_sum"] for o in ort_cell.outputs]
        b = [o["abs_sum"] for o in torch_cell.outputs]
        rel = ABS_SUM_RTOL.get(ort_cell.precision.split("-")[0], 1e-3)
        match = len(a) == len(b) and all(
            abs(x - y) <= rel * max(abs(x), abs(y), 1e-12) for x, y in zip(a, b)
        )
    return {
        "label": ort_cell.label,
        "batch": ort_cell.batch,
        "ort_cell": ort_cell.id,
        "torch_cell": torch_cell.id,
        "ort_target": ort_cell.target,
        "torch_backend": torch_cell.backend,
        "rounds": [
            {
                "round": i,
                "ort_p50_ms": o,
                "torch_p50_ms": t,
                "torch_over_ort": (t / o if o and t else None),
            }
            for i, (o, t) in enumerate(zip(ort_p50, torch_p50))
        ],
        "torch_over_ort": median_or_none(ratios),
        "ort_over_torch": median_or_none(inverse),
        "n_pairs": len(ratios),
        "outputs_match": match,
    }


def combine_roofs(
    results: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, Any] | None, str | None]:
    """Roof measurements (start and end of the run) -> the roofs used, best of each figure.

    A roof is what the machine *can* do, so a measurement disturbed by another process only ever
    reads low: the higher figure is the better estimate. Every measurement is kept under
    ``measurements``.
    """
    good = [r["roofs"] for r in results if r.get("ok")]
    if not good:
        errors = [r.get("error") for r in results if r.get("error")]
        return None, (errors[0] if errors else "roofs not measured")
    compute = max(r["compute_gflops"] for r in good)
    memory = max(r["memory_gbps"] for r in good)
    when = ["start", "end"]
    return {
        "compute_gflops": compute,
        "memory_gbps": memory,
        "ridge_flops_per_byte": compute / memory,
        "threads": good[0]["threads"],
        **({"device": good[0]["device"]} if "device" in good[0] else {}),
        "method": {**good[0]["method"], "combined": "best of the start and end measurements"},
        "details": good[0]["details"],
        "measurements": [{"when": when[i] if i < 2 else str(i), **r} for i, r in enumerate(good)],
    }, None


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
