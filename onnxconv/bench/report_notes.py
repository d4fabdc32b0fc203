"""Warnings about a bench run's measurement itself (an unsteady or contended machine, a roof
measured too low, rounds that disagree), never about which runtime is faster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from ..precisions import as_is_note

if TYPE_CHECKING:
    from .report import BenchReport

#: A cell whose block medians spread more than this is flagged as unsteady.
UNSTEADY_SPREAD = 0.5
#: Paired rounds whose torch/ORT ratios differ by more than this factor are flagged.
ROUNDS_DISAGREE = 1.5
#: A timing whose p50 is this many times its fastest call was held up on most calls (threads
#: oversubscribed, a machine taken by others): its p50 says more about that than about the code.
HELD_UP = 10.0
#: A cell this far above the measured compute roof means the roof was measured too low.
ABOVE_ROOF = 1.05
#: A round in which some task waited for a CPU more than this share of its time (Linux PSI
#: ``some``, ``rounds[].cpu_pressure``) was contended: other processes competed with the worker.
CONTENDED_PRESSURE = 0.1


def was_held_up(stats: Mapping[str, Any] | None) -> bool:
    """Timing ``stats`` whose p50 is more than :data:`HELD_UP` times the fastest call: most of
    its calls were held up, and ratios built on it say little."""
    stats = stats or {}
    return bool(stats.get("min_ms")) and stats["p50_ms"] > HELD_UP * stats["min_ms"]


def measurement_notes(report: BenchReport) -> list[str]:
    """Warnings about the measurement (never about which runtime is faster)."""
    notes = []
    for roofs, on_gpu in ((report.roofs, False), (report.cuda_roofs, True)):
        if not roofs:
            continue
        above = [
            c["id"]
            for c in report.cells
            if (c.get("device") == "cuda") == on_gpu
            and c.get("gflops")
            and c["gflops"] > ABOVE_ROOF * roofs["compute_gflops"]
        ]
        if above:
            notes.append(
                f"{len(above)} cell(s) ran above the measured "
                f"{'GPU' if on_gpu else 'CPU'} compute roof "
                f"({roofs['compute_gflops']:.0f} GFLOP/s), e.g. {above[0]}: the roof was "
                "probably measured while the machine was busy, or the cell's kernels beat "
                + (
                    "torch's fp32 matmul"
                    if on_gpu
                    else "every fp32 matmul probed (numpy, torch, ONNX Runtime)"
                )
                + "; % roof is then too high"
            )
    native = {
        c["label"]: c["graph_computes_in"] for c in report.cells if c.get("graph_computes_in")
    }
    notes += [f"{label}: {as_is_note(kind, 'cells')}" for label, kind in native.items()]
    unsteady = [
        c["id"]
        for c in report.cells
        if c.get("stats") and c["stats"]["block_spread"] > UNSTEADY_SPREAD
    ]
    if unsteady:
        notes.append(
            f"{len(unsteady)} of {len(report.cells)} cell(s) have block medians that "
            f"spread more than {UNSTEADY_SPREAD:.0%} (e.g. {unsteady[0]}): the machine "
            "was not steady; trust the paired medians, rerun with more rounds"
        )
    held_up = [c["id"] for c in report.cells if was_held_up(c.get("stats"))]
    if held_up:
        notes.append(
            f"{len(held_up)} cell(s) had a p50 more than {HELD_UP:g}x their fastest call (e.g. "
            f"{held_up[0]}): most calls were held up (oversubscribed threads, or the machine "
            "taken by others); ratios built on them say little"
        )
    disagree = []
    for p in report.pairs:
        ratios = [r["torch_over_ort"] for r in p["rounds"] if r["torch_over_ort"]]
        if len(ratios) > 1 and max(ratios) / min(ratios) > ROUNDS_DISAGREE:
            disagree.append(f"{p['ort_cell']} vs {p['torch_backend']}")
    if disagree:
        even = report.settings.get("rounds", 1) % 2 == 0
        notes.append(
            f"{len(disagree)} pair(s) whose rounds disagree by more than "
            f"{ROUNDS_DISAGREE}x (e.g. {disagree[0]})"
            + (
                "; with an even number of rounds the median is the mean of the middle "
                "two: use an odd number"
                if even
                else ""
            )
        )
    loads = [
        r["loadavg_1m"]
        for c in report.cells
        for r in c["rounds"]
        if r.get("loadavg_1m") is not None
    ]
    usable = report.machine.get("usable_cores") or 1
    if loads and max(loads) > usable + 0.5:  # our own worker accounts for up to `threads`
        notes.append(
            f"1-minute load average reached {max(loads):.1f} on {usable} cores during "
            "the run: other processes competed for the CPU"
        )
    contended = [
        c["id"]
        for c in report.cells
        if any((r.get("cpu_pressure") or 0) > CONTENDED_PRESSURE for r in c["rounds"])
    ]
    if contended:
        worst = max(r.get("cpu_pressure") or 0 for c in report.cells for r in c["rounds"])
        notes.append(
            f"{len(contended)} of {len(report.cells)} cell(s) had a round in which some task "
            f"waited for a CPU more than {CONTENDED_PRESSURE:.0%} of the time (CPU pressure up "
            f"to {worst:.0%}, e.g. {contended[0]}): other processes competed, the times may be "
            "inflated, and bench-compare calls a slowdown there unclear"
        )
    no_profile = [c for c in report.cells if c.get("per_op_error")]
    if no_profile:
        notes.append(
            f"{len(no_profile)} cell(s) have no per-op breakdown: the profiled run "
            f"failed (e.g. {no_profile[0]['id']}: {no_profile[0]['per_op_error']})"
        )
    launched = [c for c in report.cells if (c.get("per_op") or {}).get("clock") == "host"]
    if launched:
        worst = max(
            launched,
            key=lambda c: c["per_op"]["run_us_per_run"] / max(c["per_op"]["node_us_per_run"], 1e-9),
        )
        op = worst["per_op"]
        notes.append(
            f"{len(launched)} CUDA cell(s): the per-op shares are host-side kernel-launch "
            "times from ORT's profile, not GPU kernel time (e.g. "
            f"{worst['id']}: nodes {op['node_us_per_run'] / 1e3:.3g} ms of a "
            f"{op['run_us_per_run'] / 1e3:.3g} ms run); time the GPU side with Nsight "
            "Systems"
        )
    return notes
