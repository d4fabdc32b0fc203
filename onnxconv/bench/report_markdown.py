"""A bench report as a Markdown page (:func:`to_markdown`): the run's header, the cell table,
ORT against PyTorch pair by pair, deployments against fp32, and every node timed alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from ..machine import describe_gpus
from .report_text import describe_inputs, fmt, input_text, placement
from .stats import OP_GROUPS, largest_ops, measured_spread, op_shares

if TYPE_CHECKING:
    from .report import BenchReport


def to_markdown(report: BenchReport | Mapping[str, Any]) -> str:
    """A Markdown page: machine / threads / versions / roofs header, the cell table, the pairs."""
    data = dict(report) if isinstance(report, Mapping) else report.to_dict()
    m, v, s, roofs = data["machine"], data["versions"], data["settings"], data.get("roofs")
    isa = ", ".join(flag for flag, on in m.get("isa", {}).items() if on) or "—"
    lines = [
        "# onnxconv bench",
        "",
        f"- created: {data['created']}",
        f"- machine: {m.get('cpu_model')} — {m.get('usable_cores')} usable / "
        f"{m.get('logical_cores')} logical cores, "
        f"{fmt(m.get('memory_bytes'), '.1f', 2**-30, ' GiB')}"
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
        "Shares: conv, Reshape/Transpose (the channel shuffle in the zoo's graphs, any "
        "Reshape or Transpose in others), ReorderInput/Output (reorder), other; "
        "`shares from` says how they were measured: `profile` (ORT's profile, CPU), "
        "`launch` (ORT's profile of a CUDA cell: kernel launches, not GPU time), `nodes` "
        "(every node timed alone on the device, `--per-node`). `ran on`: the nodes each EP "
        "ran, from ORT's profile (`—`: not profiled); PyTorch's device.",
        "",
        "| variant | batch | input | backend/target | ran on | p50 ms | p90 | p99 | spread "
        "| GFLOP/s | % peak | % roof | ORT/torch | torch/ORT | conv % | Reshape/Transpose % "
        "| reorder % | other % | shares from | faults/call |",
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
            f"{fmt(st.get('p50_ms'), '.4g')} | "
            f"{fmt(st.get('p90_ms'), '.4g')} | {fmt(st.get('p99_ms'), '.4g')} | "
            f"{fmt(measured_spread(st), '.1f', 100, '%')} | {fmt(c.get('gflops'), '.1f')} | "
            f"{fmt(c.get('compute_roof_fraction'), '.0f', 100)} | "
            f"{fmt(c.get('roof_fraction'), '.0f', 100)} | "
            f"{fmt(pair and pair['ort_over_torch'], '.2f')} | "
            f"{fmt(pair and pair['torch_over_ort'], '.2f')} | "
            + " | ".join(fmt(fr.get(g), ".0f", 100) if fr else "—" for g in OP_GROUPS)
            + f" | {basis or '—'} | {fmt(c.get('page_faults_per_call'), '.3g')} |"
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
            per_round = ", ".join(fmt(r["torch_over_ort"], ".2f") for r in p["rounds"]) or "—"
            lines.append(
                f"| {p['label']} | {p['batch']} | {p['ort_target']} | "
                f"{p['torch_backend']} | {per_round} | {fmt(p['torch_over_ort'], '.2f')} "
                f"| {p['outputs_match']} |"
            )
    lines += _largest_ops_section(data["cells"])
    lines += _deployment_section(data["cells"])
    lines += _per_node_section(data["cells"], data.get("roofs"), data.get("cuda_roofs"))
    return "\n".join(lines) + "\n"


def _largest_ops_section(cells: list[Mapping[str, Any]]) -> list[str]:
    """The op types each profiled ORT cell spent most time in: the shares above group them
    (``launch``: a CUDA cell's profile times kernel launches, not the GPU)."""
    profiled = [c for c in cells if ((c.get("per_op") or {}).get("by_op_us"))]
    if not profiled:
        return []
    lines = [
        "",
        "## Largest op types (ORT profile, µs per run)",
        "",
        "| variant | batch | ORT target | timed | largest op types |",
        "|---|---:|---|---|---|",
    ]
    for c in profiled:
        timed = "launch" if c["per_op"].get("clock") == "host" else "profile"
        lines.append(
            f"| {c['label']} | {c['batch']} | {c['target']} | {timed} | "
            f"{largest_ops(c['per_op']['by_op_us'], shown=4)} |"
        )
    return lines


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
            f"| {r['label']} | {r['batch']} | {r['target']} | {fmt(r['p50_ms'], '.4g')} | "
            f"{fmt(r['fp32_p50_ms'], '.4g')} | {fmt(r['fp32_over_this'], '.2f')} |"
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
            f"sum of nodes {pn['sum_ms']:.4g} ms; whole graph p50 {fmt(whole, '.4g')} ms; "
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
                f"{100 * op['share']:.0f}% | {fmt(op['macs'] or None, '.4g', 1e-6)} | "
                f"{fmt(op['gflops'], '.1f')} | {fmt(pct, '.0f', 100)} |"
            )
        lines += [
            "",
            "| # | node | op | ms | p90 ms | share | M MACs | GFLOP/s | % peak |",
            "|---:|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for n in pn["nodes"]:
            macs = fmt(n.get("macs"), ".4g", 1e-6)
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
                f"{fmt(gflops, '.1f')} | "
                f"{fmt(gflops / peak if gflops and peak else None, '.0f', 100)} |"
            )
    return lines
