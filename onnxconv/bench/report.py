"""A bench run's report: the :class:`BenchReport` record, warnings about the measurement, and its
JSON / Markdown / PNG files."""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import UserInputError
from ..errors import one_line as _one_line
from ..machine import describe_gpus
from ..report import staged_folder, write_text
from .stats import OP_GROUPS, op_shares

SCHEMA = "onnxconv.bench"
#: 2 added cuda_roofs, per_op.clock, per_node and settings.cuda_options (absent in 1: reads fine).
#: 3 added cells[].input_shapes, rounds[].cpu_pressure and per_op.provider_nodes (absent in 1
#: and 2: reads fine).
SCHEMA_VERSION = 3


@dataclass
class BenchReport:
    """Everything one bench run measured; :meth:`to_dict` is the JSON written to disk.

    Schema ``onnxconv.bench`` version 3 (see :data:`SCHEMA_VERSION`), top-level keys:

    - ``schema`` ("onnxconv.bench"), ``schema_version`` (int), ``created`` (ISO 8601, UTC).
    - ``machine``: CPU model, arch, logical/usable cores, ``isa`` {flag: bool}, memory_bytes, OS,
      kernel, libc, Python (:func:`onnxconv.machine.machine_info`).
    - ``versions``: torch, onnx, onnxruntime (+ ``onnxruntime_providers``), onnxscript, numpy,
      matplotlib, onnxconv, python.
    - ``settings``: :class:`BenchSettings` as a dict (threads, batches, eps, opt_levels, rounds,
      blocks, calls, warm-up, profile, torch malloc env, roof sizes, ...), plus ``env`` (the
      threading/allocation environment variables each worker kind ran with) and ``sources``.
    - ``roofs``: ``compute_gflops``, ``memory_gbps``, ``ridge_flops_per_byte``, ``threads``,
      ``method``, ``details`` (numpy and torch figures of the first measurement),
      ``measurements[]`` (start and end, each with its own figures); ``null`` if the roof
      worker failed or roofs were off (``roofs_error`` then says why). These are the CPU's.
    - ``cuda_roofs``: the GPU's, when CUDA cells ran (fp32 matmul with TF32 off and a
      device-to-device copy through PyTorch, CUDA events; same keys plus ``device``); CUDA cells'
      % of roof are against these. ``null`` otherwise (``cuda_roofs_error`` says why if measured).
    - ``cells[]``: one per (source, batch, backend, target). Keys: ``id``, ``label``,
      ``source`` (variant name or model path), ``kind`` ("variant" | "onnx"), ``config``,
      ``batch``, ``backend`` ("ort" | "torch" | "torch_compile"), ``target`` ("cpu/all/fp32" for
      ORT, the device for torch), ``ep``, ``device``, ``opt_level``, ``precision``, ``threads``,
      ``status`` ("ok" | "error" | "unavailable" | "undeployable": no graph at that
      precision), ``error``; cost: ``macs`` and ``flops``
      (2·MACs, for the whole batch), ``params``, ``bytes`` (fp32 weights + input + output),
      ``macs_source`` ("analytic" | "graph"), ``input_shapes`` ({input name: shape} fed to the
      cell); timing: ``stats`` (:class:`LatencyStats`: n, p50/
      p90/p99/mean/stdev/min/max in ms, block medians, block spread, pooled over rounds),
      ``rounds[]`` (per process: round, pid, p50_ms, block_medians_ms, page_faults_per_call,
      major_faults, involuntary_ctx_switches_per_call, warmup_calls, wall_s, loadavg_1m,
      cpu_pressure (the share of the worker's life in which some task waited for a CPU, Linux
      PSI; null where the kernel has none), error), ``page_faults_per_call`` (median over rounds),
      ``throughput_per_s`` (batch / p50), ``gflops`` (flops / p50), ``arithmetic_intensity``
      (flops / bytes), ``roof_bound_gflops`` (min(compute roof, AI x memory roof)),
      ``roof_fraction`` (gflops / bound), ``compute_roof_fraction``, ``achieved_gbps`` (bytes /
      p50) and ``memory_roof_fraction``; ``per_op`` (ORT only, from the profiled run: by_op_us,
      groups_us, fractions {conv, shuffle, reorder, other}, node_us_per_run, run_us_per_run,
      nodes, providers {EP: op types}, provider_nodes {EP: nodes it ran}, clock: "cpu", or
      "host" for CUDA cells, whose node times are kernel launches, not GPU time) or null
      (``per_op_error`` says why when the profiled run failed);
      ``per_node`` (ORT only, with ``--per-node``: every node timed alone on the device, see
      :func:`onnxconv.bench.node_times.time_nodes`: nodes[] {index, name, op_type, group, macs, ms,
      p90_ms, gflops, skipped}, sum_ms, groups_ms, fractions, clock, ep, opt_level, calls) or null
      (``per_node_error`` says why when it failed);
      ``session`` (ORT session options and providers, CUDA options, IO binding and copy times;
      torch threads, malloc env, compile_s); ``outputs`` (shape, dtype, abs_sum).
    - ``pairs[]``: one per (source, batch, ORT cell, torch cell on the same device): ``label``,
      ``batch``, ``ort_cell``, ``torch_cell`` (cell ids), ``ort_target``, ``torch_backend``,
      ``rounds[]`` {round, ort_p50_ms, torch_p50_ms, torch_over_ort}, ``torch_over_ort`` (median
      of the per-round ratios: > 1 means ORT is faster), ``ort_over_torch`` (median of the
      inverse ratios), ``n_pairs``, ``outputs_match`` (abs-sum of outputs agree to 1e-3).
    - ``notes[]``: plain-text warnings about the measurement itself (a cell above the measured
      compute roof, unsteady block medians, rounds that disagree, load average during a round).
    """

    machine: dict[str, Any]
    versions: dict[str, Any]
    settings: dict[str, Any]
    roofs: dict[str, Any] | None
    cells: list[dict[str, Any]] = field(default_factory=list)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    roofs_error: str | None = None
    notes: list[str] = field(default_factory=list)
    cuda_roofs: dict[str, Any] | None = None
    cuda_roofs_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "machine": self.machine,
            "versions": self.versions,
            "settings": self.settings,
            "roofs": self.roofs,
            "roofs_error": self.roofs_error,
            "cuda_roofs": self.cuda_roofs,
            "cuda_roofs_error": self.cuda_roofs_error,
            "cells": self.cells,
            "pairs": self.pairs,
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BenchReport":
        if data.get("schema") != SCHEMA:
            raise UserInputError(f"not an onnxconv bench report (schema {data.get('schema')!r})")
        return cls(
            machine=data["machine"],
            versions=data["versions"],
            settings=data["settings"],
            roofs=data.get("roofs"),
            cells=list(data["cells"]),
            pairs=list(data["pairs"]),
            created=data["created"],
            roofs_error=data.get("roofs_error"),
            notes=list(data.get("notes", [])),
            cuda_roofs=data.get("cuda_roofs"),
            cuda_roofs_error=data.get("cuda_roofs_error"),
        )

    @property
    def ok(self) -> bool:
        """True when every cell that was available ran (timings are never judged)."""
        return all(c["status"] != "error" for c in self.cells)


#: A cell whose block medians spread more than this is flagged as unsteady.
UNSTEADY_SPREAD = 0.5
#: Paired rounds whose torch/ORT ratios differ by more than this factor are flagged.
ROUNDS_DISAGREE = 1.5
#: A cell this far above the measured compute roof means the roof was measured too low.
ABOVE_ROOF = 1.05
#: A round in which some task waited for a CPU more than this share of its time (Linux PSI
#: ``some``, ``rounds[].cpu_pressure``) was contended: other processes competed with the worker.
CONTENDED_PRESSURE = 0.1


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
                "probably measured while the machine was busy, or the cell's kernels "
                "beat the fp32 matmul; % roof is then too high"
            )
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


# ---------------------------------------------------------------------------------------------
# writing


def _fmt(value: Any, spec: str = ".3g", scale: float = 1.0, suffix: str = "") -> str:
    if value is None:
        return "—"
    return f"{value * scale:{spec}}{suffix}"


def _ep_short(provider: str) -> str:
    """``CUDAExecutionProvider`` -> ``cuda`` (as :func:`onnxconv.runtime.short_name`, without
    importing onnxruntime)."""
    return provider.removesuffix("ExecutionProvider").lower() or provider


def placement(cell: Mapping[str, Any]) -> str:
    """Where a cell's nodes ran: ``"cpu:3"``, ``"cuda:12, cpu:2"`` (ORT, from its profile),
    ``"cpu"`` / ``"cuda"`` for PyTorch (its device), ``"—"`` for an ORT cell without a profile.

    Reports before schema 3 name each EP's op types, not its node count: with one EP every
    node ran there; with several the op types are shown (``"cuda: Conv, Relu; cpu: Reshape"``).
    """
    if cell.get("backend") != "ort":
        return str(cell.get("device") or "—")
    per_op = cell.get("per_op") or {}
    counts = per_op.get("provider_nodes")
    if counts:
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return ", ".join(f"{_ep_short(p)}:{n}" for p, n in ordered)
    providers = per_op.get("providers") or {}
    if len(providers) == 1 and per_op.get("nodes"):
        return f"{_ep_short(next(iter(providers)))}:{per_op['nodes']}"
    if providers:
        return "; ".join(f"{_ep_short(p)}: {', '.join(ops)}" for p, ops in providers.items())
    return "—"


def _variant_input_shape(cell: Mapping[str, Any]) -> list[int] | None:
    """The input shape of a variant cell from its config (reports before schema 3)."""
    if cell.get("kind") != "variant" or not cell.get("config"):
        return None
    from .. import variants

    try:
        return list(variants.get(cell["source"]).input_shape(cell["config"]))
    except (UserInputError, KeyError, TypeError):
        return None


def input_text(cell: Mapping[str, Any]) -> str:
    """The input shape(s) a cell was fed, e.g. ``1×64×56×56`` (``"—"`` when unknown)."""
    shapes = list((cell.get("input_shapes") or {}).values())
    if not shapes:
        shape = _variant_input_shape(cell)
        shapes = [shape] if shape else []
    return ", ".join("×".join(str(d) for d in shape) for shape in shapes) or "—"


def _config_text(config: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (config or {}).items() if k != "batch") or "—"


def describe_inputs(data: Mapping[str, Any]) -> list[str]:
    """One line per source: its label, the input shape at every batch, and its full config
    (a bare graph: its path)."""
    first: dict[str, list[Mapping[str, Any]]] = {}
    for c in data["cells"]:
        batches = first.setdefault(c["label"], [])
        if all(b["batch"] != c["batch"] for b in batches):
            batches.append(c)
    lines = []
    for label, cells in first.items():
        shapes = " and ".join(input_text(c) for c in cells)
        what = (
            f"config {_config_text(cells[0].get('config'))}"
            if cells[0].get("kind") == "variant"
            else f"graph {cells[0].get('source')}"
        )
        lines.append(f"{label}: input {shapes}; {what}")
    return lines


def _variant_defaults(source: Mapping[str, Any]) -> dict[str, Any]:
    if source.get("kind") != "variant" or not source.get("variant"):
        return {}
    from .. import variants

    try:
        return variants.get(source["variant"]).config()
    except UserInputError:
        return {}


def _overrides_text(sources: list[Mapping[str, Any]]) -> str:
    """What the run set: the overrides every source shares, then each source's own, leaving out
    values equal to the variant's default (reports before schema 3 recorded those too)."""
    given = [
        {
            k: v
            for k, v in (s.get("overrides") or {}).items()
            if str(_variant_defaults(s).get(k, object())) != str(v)
        }
        for s in sources
    ]
    common = dict(given[0]) if given else {}
    for overrides in given[1:]:
        common = {k: v for k, v in common.items() if str(overrides.get(k)) == str(v)}
    own = [
        f"{s.get('label')}: {_config_text({k: v for k, v in g.items() if k not in common})}"
        for s, g in zip(sources, given)
        if set(g) - set(common)
    ]
    return "; ".join([_config_text(common) if common else "defaults", *own])


def run_caption(data: Mapping[str, Any]) -> str:
    """The input shapes and config overrides of a run in a few words, for plot captions."""
    by_shape: dict[str, list[str]] = {}  # "64×56×56" (batch left out) -> the labels fed it
    batches: list[int] = []
    for c in data["cells"]:
        text = input_text(c)
        prefix = f"{c['batch']}×"
        labels = by_shape.setdefault(text.removeprefix(prefix) if "," not in text else text, [])
        if c["label"] not in labels:
            labels.append(c["label"])
        batches += [] if c["batch"] in batches else [c["batch"]]
    inputs = "; ".join(f"{shape} ({', '.join(labels)})" for shape, labels in by_shape.items())
    inputs = f"batch {', '.join(str(b) for b in batches)} × {inputs}"
    config = _overrides_text(data["settings"].get("sources") or [])
    return f"inputs: {inputs} · config set: {config}"


def to_markdown(report: BenchReport | Mapping[str, Any]) -> str:
    """A Markdown page: machine / threads / versions / roofs header, the cell table, the pairs."""
    data = report.to_dict() if isinstance(report, BenchReport) else dict(report)
    m, v, s, roofs = data["machine"], data["versions"], data["settings"], data.get("roofs")
    isa = ", ".join(flag for flag, on in m.get("isa", {}).items() if on) or "—"
    lines = [
        "# onnxconv bench",
        "",
        f"- created: {data['created']}",
        f"- machine: {m.get('cpu_model')} — {m.get('usable_cores')} usable / "
        f"{m.get('logical_cores')} logical cores, "
        f"{_fmt(m.get('memory_bytes'), '.1f', 2**-30, ' GiB')}"
        f", {m.get('os')}",
        f"- ISA: {isa}",
        f"- GPU: {describe_gpus(m) or 'none seen by nvidia-smi'}",
        f"- versions: torch {v.get('torch')}, onnxruntime {v.get('onnxruntime')} "
        f"({', '.join(v.get('onnxruntime_providers', []))}), onnx {v.get('onnx')}, numpy "
        f"{v.get('numpy')}, Python {v.get('python')}",
        f"- threads: {s['threads']} (ORT intra-op {s['threads']}, inter-op 1; torch "
        f"set_num_threads({s['threads']}), interop 1; OMP_NUM_THREADS={s['threads']})",
        f"- method: warm-up ≥ {s['warmup']} calls and ≥ {s['warmup_s']} s, then {s['blocks']} "
        f"blocks × {s['calls']} calls per process, {s['rounds']} rounds alternating ORT and "
        "torch, each in a fresh process; ratios paired by round, medians quoted",
        *(
            [_cuda_line(s["cuda_options"])]
            if "cuda" in s.get("eps", []) and "cuda_options" in s
            else []
        ),
        "- torch malloc env: "
        + (", ".join(f"{k}={x}" for k, x in s.get("torch_malloc_env", {}).items()) or "default"),
        "- inputs and configs:",
        *(f"  - {line}" for line in describe_inputs(data)),
    ]
    if roofs:
        lines.append(
            f"- roofs ({roofs['threads']} threads): compute {roofs['compute_gflops']:.1f} "
            f"GFLOP/s (fp32 matmul {roofs['method']['matmul_n']}²), memory "
            f"{roofs['memory_gbps']:.1f} GB/s (copy {roofs['method']['copy_mb']} MiB, "
            f"read+write); ridge {roofs['ridge_flops_per_byte']:.1f} FLOP/byte"
        )
    else:
        lines.append(f"- roofs: not measured ({data.get('roofs_error')})")
    cuda_roofs = data.get("cuda_roofs")
    if cuda_roofs:
        lines.append(
            f"- GPU roofs ({cuda_roofs.get('device')}, for CUDA cells): compute "
            f"{cuda_roofs['compute_gflops']:.0f} GFLOP/s (fp32 matmul "
            f"{cuda_roofs['method']['matmul_n']}², TF32 off), memory "
            f"{cuda_roofs['memory_gbps']:.0f} GB/s (device copy "
            f"{cuda_roofs['method']['copy_mb']} MiB, read+write)"
        )
    elif data.get("cuda_roofs_error"):
        lines.append(f"- GPU roofs: not measured ({data['cuda_roofs_error']})")
    ratio_of = {}
    for p in data["pairs"]:
        if p["torch_backend"] == "torch":
            ratio_of[p["ort_cell"]] = p
    lines += [
        "",
        "## Cells",
        "",
        "Latencies in ms (p50 over every timed call of every round). ORT/torch is ORT p50 "
        "over PyTorch eager p50 and torch/ORT its inverse (median of per-round pairs; "
        "torch/ORT > 1: ORT faster). % peak is GFLOP/s over the compute roof; % roof over "
        "the cell's roofline bound min(compute roof, arithmetic intensity × memory roof). "
        "Shares: conv, Reshape/Transpose (shuffle), ReorderInput/Output (reorder), other; "
        "`shares from` says how they were measured: `profile` (ORT's profile, CPU), "
        "`launch` (ORT's profile of a CUDA cell: kernel launches, not GPU time), `nodes` "
        "(every node timed alone on the device, `--per-node`). `ran on`: the nodes each EP "
        "ran, from ORT's profile (`—`: not profiled); PyTorch's device.",
        "",
        "| variant | batch | input | backend/target | ran on | p50 ms | p90 | p99 | spread "
        "| GFLOP/s | % peak | % roof | ORT/torch | torch/ORT | conv % | shuffle % | reorder % "
        "| other % | shares from | faults/call |",
        "|---|---:|---|---|---|" + "---:|" * 13 + "---|---:|",
    ]
    for c in data["cells"]:
        st = c.get("stats") or {}
        where = f"{c['backend']} {c['target']}"
        if c["status"] != "ok":
            lines.append(
                f"| {c['label']} | {c['batch']} | {input_text(c)} | {where} | — | {c['status']}: "
                f"{(c.get('error') or '').replace('|', '/')} |" + " |" * 14
            )
            continue
        pair = ratio_of.get(c["id"])
        fr, basis = op_shares(c)
        lines.append(
            f"| {c['label']} | {c['batch']} | {input_text(c)} | {where} | {placement(c)} | "
            f"{_fmt(st.get('p50_ms'), '.4g')} | "
            f"{_fmt(st.get('p90_ms'), '.4g')} | {_fmt(st.get('p99_ms'), '.4g')} | "
            f"{_fmt(st.get('block_spread'), '.1f', 100, '%')} | {_fmt(c.get('gflops'), '.1f')} | "
            f"{_fmt(c.get('compute_roof_fraction'), '.0f', 100)} | "
            f"{_fmt(c.get('roof_fraction'), '.0f', 100)} | "
            f"{_fmt(pair and pair['ort_over_torch'], '.2f')} | "
            f"{_fmt(pair and pair['torch_over_ort'], '.2f')} | "
            + " | ".join(_fmt(fr.get(g), ".0f", 100) if fr else "—" for g in OP_GROUPS)
            + f" | {basis or '—'} | {_fmt(c.get('page_faults_per_call'), '.3g')} |"
        )
    if data.get("notes"):
        lines += ["", "## Notes on this measurement", ""] + [f"- {n}" for n in data["notes"]]
    if data["pairs"]:
        lines += [
            "",
            "## ORT against PyTorch, pair by pair",
            "",
            "| variant | batch | ORT target | torch | torch p50 / ORT p50 per round | "
            "median torch/ORT | outputs match |",
            "|---|---:|---|---|---|---:|---|",
        ]
        for p in data["pairs"]:
            per_round = ", ".join(_fmt(r["torch_over_ort"], ".2f") for r in p["rounds"]) or "—"
            lines.append(
                f"| {p['label']} | {p['batch']} | {p['ort_target']} | "
                f"{p['torch_backend']} | {per_round} | {_fmt(p['torch_over_ort'], '.2f')} "
                f"| {p['outputs_match']} |"
            )
    lines += _deployment_section(data["cells"])
    lines += _per_node_section(data["cells"], data.get("roofs"), data.get("cuda_roofs"))
    return "\n".join(lines) + "\n"


def deployment_speedups(cells: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each ORT cell of a precision other than fp32 against the fp32 cell of the same graph,
    batch, EP and level: ``fp32 p50 / its p50`` (> 1: the deployment is faster)."""
    fp32 = {
        (c["label"], c["batch"], c.get("ep"), c.get("opt_level")): c
        for c in cells
        if c["backend"] == "ort" and c.get("precision", "fp32") == "fp32" and c["status"] == "ok"
    }
    rows = []
    for c in cells:
        if c["backend"] != "ort" or c.get("precision", "fp32") == "fp32" or c["status"] != "ok":
            continue
        base = fp32.get((c["label"], c["batch"], c.get("ep"), c.get("opt_level")))
        if base is None:
            continue
        mine, theirs = (c.get("stats") or {}).get("p50_ms"), (base.get("stats") or {}).get("p50_ms")
        rows.append(
            {
                "label": c["label"],
                "batch": c["batch"],
                "target": c["target"],
                "p50_ms": mine,
                "fp32_p50_ms": theirs,
                "fp32_over_this": theirs / mine if mine and theirs else None,
            }
        )
    return rows


def _deployment_section(cells: list[Mapping[str, Any]]) -> list[str]:
    rows = deployment_speedups(cells)
    if not rows:
        return []
    lines = [
        "",
        "## Deployments against fp32 (same graph, batch, EP and level)",
        "",
        "| variant | batch | ORT target | p50 ms | fp32 p50 ms | fp32 / this (> 1: faster) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['batch']} | {r['target']} | {_fmt(r['p50_ms'], '.4g')} | "
            f"{_fmt(r['fp32_p50_ms'], '.4g')} | {_fmt(r['fp32_over_this'], '.2f')} |"
        )
    return lines


def _cuda_line(cuda_options: Mapping[str, str]) -> str:
    from ..runtime import DEFAULT_CUDA_OPTIONS  # imports onnxruntime: only for CUDA reports

    options = {**DEFAULT_CUDA_OPTIONS, **cuda_options}
    tf32 = "on" if options.get("use_tf32") == "1" else "off"
    return (
        "- CUDA: ORT EP "
        + ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
        + f", IO binding; PyTorch cudnn.benchmark on, TF32 {tf32}, synchronised after every call"
    )


def by_op_type(per_node: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-node times summed by op type, most time first: ``op_type``, ``nodes`` (timed),
    ``ms``, ``share`` (of the timed sum), ``macs``, ``gflops`` (None where no multiply-adds)."""
    ops: dict[str, dict[str, Any]] = {}
    for n in per_node["nodes"]:
        if n["ms"] is None:
            continue
        op = ops.setdefault(
            n["op_type"], {"op_type": n["op_type"], "nodes": 0, "ms": 0.0, "macs": 0}
        )
        op["nodes"] += 1
        op["ms"] += n["ms"]
        op["macs"] += n.get("macs") or 0
    total = per_node.get("sum_ms") or 0.0
    for op in ops.values():
        op["share"] = op["ms"] / total if total else 0.0
        op["gflops"] = 2 * op["macs"] / op["ms"] / 1e6 if op["macs"] and op["ms"] > 0 else None
    return sorted(ops.values(), key=lambda op: -op["ms"])


def _per_node_section(
    cells: list[Mapping[str, Any]],
    roofs: Mapping[str, Any] | None,
    cuda_roofs: Mapping[str, Any] | None,
) -> list[str]:
    """Markdown for the cells that have ``per_node`` (``bench --per-node``); a node's % peak is
    against the compute roof of the cell's device."""
    timed = [c for c in cells if c.get("per_node") or c.get("per_node_error")]
    if not timed:
        return []
    lines = [
        "",
        "## Per node, each timed alone",
        "",
        "Every node in a one-node model of its own on the cell's EP and level (CUDA: IO "
        "binding, the call returns after the stream synchronised), median of "
        f"{(timed[0].get('per_node') or {}).get('calls', '?')} calls. No fusion with "
        "neighbours, so the sum is compared with the whole graph, not substituted for it.",
    ]
    for c in timed:
        pn = c.get("per_node")
        lines += ["", f"### {c['id']}", ""]
        if not pn:
            lines.append(f"not measured: {c.get('per_node_error')}")
            continue
        whole = (c.get("stats") or {}).get("p50_ms")
        lines.append(
            f"sum of nodes {pn['sum_ms']:.4g} ms; whole graph p50 {_fmt(whole, '.4g')} ms; "
            + ", ".join(f"{g} {100 * f:.0f}%" for g, f in pn["fractions"].items())
        )
        roof = cuda_roofs if c.get("device") == "cuda" else roofs
        peak = roof["compute_gflops"] if roof else None
        lines += [
            "",
            "| op | nodes | ms | share | M MACs | GFLOP/s | % peak |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for op in by_op_type(pn):
            pct = op["gflops"] / peak if op["gflops"] and peak else None
            lines.append(
                f"| {op['op_type']} | {op['nodes']} | {op['ms']:.4g} | "
                f"{100 * op['share']:.0f}% | {_fmt(op['macs'] or None, '.4g', 1e-6)} | "
                f"{_fmt(op['gflops'], '.1f')} | {_fmt(pct, '.0f', 100)} |"
            )
        lines += [
            "",
            "| # | node | op | ms | p90 ms | share | M MACs | GFLOP/s | % peak |",
            "|---:|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for n in pn["nodes"]:
            macs = _fmt(n.get("macs"), ".4g", 1e-6)
            if n["ms"] is None:
                lines.append(
                    f"| {n['index']} | {n['name']} | {n['op_type']} | — | — | "
                    f"skipped: {n['skipped']} | {macs} | — | — |"
                )
                continue
            share = n["ms"] / pn["sum_ms"] if pn["sum_ms"] else 0.0
            gflops = n.get("gflops")
            lines.append(
                f"| {n['index']} | {n['name']} | {n['op_type']} | {n['ms']:.4g} | "
                f"{n['p90_ms']:.4g} | {100 * share:.0f}% | {macs} | "
                f"{_fmt(gflops, '.1f')} | "
                f"{_fmt(gflops / peak if gflops and peak else None, '.0f', 100)} |"
            )
    return lines


def summary_rows(report: BenchReport | Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """``(headers, rows)`` for a console table: one row per cell, strings only."""
    data = report.to_dict() if isinstance(report, BenchReport) else report
    pairs = {p["ort_cell"]: p for p in data["pairs"] if p["torch_backend"] == "torch"}
    headers = [
        "variant",
        "batch",
        "backend/target",
        "ran on",
        "p50 ms",
        "p90 ms",
        "spread",
        "GFLOP/s",
        "% peak",
        "torch/ORT",
        "conv/shuffle/reorder/other %",
    ]
    rows = []
    for c in data["cells"]:
        st = c.get("stats") or {}
        fr, basis = op_shares(c)
        pair = pairs.get(c["id"])
        rows.append(
            [
                c["label"],
                str(c["batch"]),
                f"{c['backend']} {c['target']}",
                placement(c) if c["status"] == "ok" else "—",
                _fmt(st.get("p50_ms"), ".4g") if c["status"] == "ok" else c["status"],
                _fmt(st.get("p90_ms"), ".4g"),
                _fmt(st.get("block_spread"), ".0f", 100, "%"),
                _fmt(c.get("gflops"), ".1f"),
                _fmt(c.get("compute_roof_fraction"), ".0f", 100),
                _fmt(pair and pair["torch_over_ort"], ".2f"),
                "/".join(f"{100 * fr[g]:.0f}" for g in OP_GROUPS) + f" ({basis})" if fr else "—",
            ]
        )
    return headers, rows


def write_report(
    report: BenchReport,
    out_dir: str | os.PathLike,
    *,
    markdown: bool = True,
    plots: bool = True,
    stem: str = "bench",
) -> dict[str, Any]:
    """Write ``<stem>.json`` (+ ``<stem>.md``, + PNG plots) into ``out_dir``, all of them whole:
    built in a staging folder beside it and swapped in under a lock (:func:`staged_folder`), so
    of two runs the last wins whole and an interrupted one leaves the old report.

    Returns ``{"json": Path, "markdown": Path | None, "plots": [Path, ...]}``.
    """
    from .plots import PLOTS, write_plots

    out = Path(out_dir)
    data = report.to_dict()
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    with staged_folder(out, [f"{stem}.json", f"{stem}.md", *PLOTS]) as stage:
        written: dict[str, Any] = {
            "json": write_text(stage / f"{stem}.json", text),
            "markdown": write_text(stage / f"{stem}.md", to_markdown(data)) if markdown else None,
            "plots": write_plots(data, stage) if plots else [],
        }
    moved = {k: out / v.name if isinstance(v, Path) else v for k, v in written.items()}
    return {**moved, "plots": [out / p.name for p in written["plots"]]}


def load_report(path: str | os.PathLike) -> BenchReport:
    """Read a report JSON written by :func:`write_report` (e.g. to re-render Markdown/plots)."""
    path = Path(path)
    try:
        return BenchReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, KeyError) as error:
        raise UserInputError(f"{path}: not a readable bench report ({_one_line(error)})") from None


def rerender(path: str | os.PathLike, *, plots: bool = True) -> list[Path]:
    """Write ``bench.md`` (and the plots) again beside a ``bench.json``, from its data and with
    today's renderer; the JSON itself is left as it is. Returns the files written."""
    path = Path(path)
    data = load_report(path).to_dict()
    written = [write_text(path.with_suffix(".md"), to_markdown(data))]
    if plots:
        from .plots import write_plots

        written += write_plots(data, path.parent)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m onnxconv.bench.report BENCH_JSON ...``: re-render committed reports."""
    import sys

    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m onnxconv.bench.report BENCH_JSON ...", file=sys.stderr)
        return 2
    try:
        for p in paths:
            print(", ".join(str(f) for f in rerender(p)))
    except UserInputError as error:
        print(f"onnxconv.bench.report: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
