"""PNG plots of a bench report (the dict of ``onnxconv.bench.report.BenchReport.to_dict``).

Uses matplotlib's object API with the Agg canvas directly: no pyplot, no global backend switch,
so importing this module changes nothing for a caller that uses matplotlib interactively.
Every file is written to a temporary name beside its target and moved into place.

One colour per optimisation level in every plot (:data:`LEVEL_COLORS`; PyTorch in greys), the
EP by marker or hatching; every title says the machine, the threads, the input shapes and the
config the run set.

- ``latency_vs_macs.png``: p50 latency against multiply-adds, log-log, one point per variant,
  batch and backend/target. Points that share MACs but not latency are the ShuffleNet v2 lesson
  (FLOPs are an indirect metric) made visible. Zero-MAC variants (a bare channel shuffle) cannot
  sit on a log axis; they are listed in the legend title instead.
- ``speedup.png``: PyTorch p50 / ORT p50 per variant (median of per-round pairs), one bar per
  ORT target, each labelled with its value, a line at 1 (above it ORT is faster).
- ``op_breakdown.png``: stacked shares of ORT node time per variant and target: Conv,
  Reshape/Transpose (shuffle), ReorderInput/Output (NCHWc layout), other; segments labelled with
  their share, the y-label naming what the shares were measured from in this run.
"""

from __future__ import annotations

import io
import os
import textwrap
from pathlib import Path
from typing import Any, Callable, Mapping

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..report import write_bytes
from .report_text import run_caption
from .stats import op_shares

GROUP_LABELS = {
    "conv": "Conv / FusedConv / NchwcConv",
    "shuffle": "Reshape / Transpose",
    "reorder": "ReorderInput / ReorderOutput",
    "other": "other",
}
#: Op groups (op_breakdown only), in light tones so they are not read as levels.
GROUP_COLORS = {"conv": "#99ddff", "shuffle": "#ee8866", "reorder": "#eedd88", "other": "#dddddd"}
#: The one colour map of optimisation levels (Paul Tol's "bright"), used by every plot.
LEVEL_COLORS = {
    "all": "#4477aa",
    "extended": "#66ccee",
    "basic": "#228833",
    "disabled": "#ee6677",
}
#: PyTorch backends, in greys.
TORCH_COLORS = {"torch": "#333333", "torch_compile": "#999999"}
UNKNOWN_COLOR = "#aa3377"
#: Hatching of a bar whose ORT cell ran on CUDA, or which compares with torch.compile.
CUDA_HATCH, COMPILE_HATCH = "//", ".."
#: Markers in latency_vs_macs: (backend family, device).
MARKERS = {("ort", "cpu"): "o", ("ort", "cuda"): "s", ("torch", "cpu"): "^", ("torch", "cuda"): "v"}
#: What op shares were measured from, for the op_breakdown y-label.
BASIS_LABELS = {
    "profile": "ORT's profile (CPU node time)",
    "launch": "ORT's CUDA profile (host-side launch time, not GPU time)",
    "nodes": "each node timed alone on its EP (--per-node)",
}


def color_of(backend: str, opt_level: str | None) -> str:
    """The colour of a cell in every plot: its level for ORT, its backend for PyTorch."""
    if backend == "ort":
        return LEVEL_COLORS.get(opt_level or "", UNKNOWN_COLOR)
    return TORCH_COLORS.get(backend, UNKNOWN_COLOR)


def figure_png(fig: Figure) -> bytes:
    """``fig`` as PNG bytes, rendered in memory on its own Agg canvas (no pyplot, so no global
    backend). Shared with tune's plot so that every PNG onnxconv writes looks the same."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG at ``path``, whole (:func:`onnxconv.report.write_bytes`)."""
    return write_bytes(path, figure_png(fig))


def _title(data: Mapping[str, Any], what: str, width_in: float = 8.0) -> str:
    m, s = data["machine"], data["settings"]
    gpus = m.get("gpus") or []
    gpu = f" · {gpus[0]['name']}" if gpus and "cuda" in s.get("eps", []) else ""
    caption = textwrap.fill(run_caption(data), width=max(60, int(width_in * 15)))
    return f"{what}\n{m.get('cpu_model')}, {s['threads']} thread(s){gpu}\n{caption}"


def _ok(cell: Mapping[str, Any]) -> bool:
    return cell.get("status") == "ok" and bool(cell.get("stats"))


def _where(cell: Mapping[str, Any]) -> str:
    return f"{cell['backend']} {cell['target']}"


def _marker(cell: Mapping[str, Any]) -> str:
    family = "ort" if cell["backend"] == "ort" else "torch"
    return MARKERS.get((family, cell.get("device") or "cpu"), "D")


def _order(where: str) -> tuple[int, int, str]:
    """Legend order: ORT by level (as :data:`LEVEL_COLORS`), then PyTorch."""
    backend, _, target = where.partition(" ")
    levels = list(LEVEL_COLORS)
    level = _target_level(target)
    return (backend != "ort", levels.index(level) if level in levels else len(levels), where)


def latency_vs_macs_figure(data: Mapping[str, Any]) -> Figure:
    fig = Figure(figsize=(8, 5.5))
    ax = fig.add_subplot()
    series: dict[str, list[tuple[float, float, str]]] = {}
    style: dict[str, tuple[str, str]] = {}
    zero_macs: set[str] = set()
    for cell in data["cells"]:
        if not _ok(cell):
            continue
        if not cell.get("macs"):
            zero_macs.add(cell["label"])
            continue
        series.setdefault(_where(cell), []).append(
            (cell["macs"], cell["stats"]["p50_ms"], f"{cell['label']} b{cell['batch']}")
        )
        style[_where(cell)] = (color_of(cell["backend"], cell.get("opt_level")), _marker(cell))
    for i, (where, points) in enumerate(sorted(series.items(), key=lambda kv: _order(kv[0]))):
        xs, ys, names = zip(*points)
        color, marker = style[where]
        ax.scatter(xs, ys, label=where, marker=marker, color=color, alpha=0.85)
        if i == 0:
            for x, y, name in points:
                ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if series:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("multiply-adds (whole batch)")
    ax.set_ylabel("p50 latency (ms)")
    ax.grid(True, which="both", alpha=0.3)
    legend_title = f"0 MACs, not shown: {', '.join(sorted(zero_macs))}" if zero_macs else None
    if series:
        ax.legend(fontsize=7, title=legend_title, title_fontsize=7)
    ax.set_title(_title(data, "Latency against multiply-adds"), fontsize=9)
    return fig


def _target_level(target: str) -> str | None:
    """``cpu/all/fp32`` -> ``all``."""
    parts = target.split("/")
    return parts[1] if len(parts) > 1 else None


def speedup_figure(data: Mapping[str, Any]) -> Figure:
    pairs = [p for p in data["pairs"] if p.get("torch_over_ort") is not None]
    labels = list(dict.fromkeys(f"{p['label']} b{p['batch']}" for p in pairs))
    series = list(dict.fromkeys((p["ort_target"], p["torch_backend"]) for p in pairs))
    width_in = max(6.0, 0.9 * len(labels) * max(1, len(series)) ** 0.5 + 2)
    fig = Figure(figsize=(width_in, 5))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(series))
    for j, (target, backend) in enumerate(series):
        values = {
            f"{p['label']} b{p['batch']}": p["torch_over_ort"]
            for p in pairs
            if (p["ort_target"], p["torch_backend"]) == (target, backend)
        }
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(labels))]
        hatch = (CUDA_HATCH if target.startswith("cuda/") else "") + (
            COMPILE_HATCH if backend == "torch_compile" else ""
        )
        bars = ax.bar(
            xs,
            [values.get(label, 0.0) for label in labels],
            width,
            label=f"{target} vs {backend}",
            color=color_of("ort", _target_level(target)),
            hatch=hatch or None,
            edgecolor="black" if hatch else None,
            linewidth=0.4 if hatch else 0,
        )
        ax.bar_label(
            bars,
            labels=[f"{values[label]:.2f}" if label in values else "" for label in labels],
            fontsize=6,
            padding=1,
        )
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("PyTorch p50 / ORT p50 (> 1: ORT faster)")
    if series:
        ax.legend(fontsize=7)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(
        _title(data, "PyTorch eager against ONNX Runtime (median of paired rounds)", width_in),
        fontsize=9,
    )
    return fig


def shares_label(bases: list[str]) -> str:
    """The op_breakdown y-label: what this run's shares are made of."""
    if len(bases) == 1:
        return f"share of ORT node time (%)\nfrom {BASIS_LABELS.get(bases[0], bases[0])}"
    return "share of ORT node time (%)\nfrom " + "; ".join(
        f"({b}) {BASIS_LABELS.get(b, b)}" for b in bases
    )


def op_breakdown_figure(data: Mapping[str, Any]) -> Figure:
    shares = [(c, *op_shares(c)) for c in data["cells"] if c.get("backend") == "ort"]
    shares = [(c, fractions, basis) for c, fractions, basis in shares if fractions]
    bases = list(dict.fromkeys(basis for _, _, basis in shares))
    mixed = len(bases) > 1  # name the basis under each bar only when it varies
    labels = [
        f"{c['label']} b{c['batch']}\n{c['opt_level']}" + (f" ({basis})" if mixed else "")
        for c, _, basis in shares
    ]
    cells = [c for c, _, _ in shares]
    width_in = max(6.0, 0.55 * len(cells) + 2)
    fig = Figure(figsize=(width_in, 5))
    ax = fig.add_subplot()
    bottom = [0.0] * len(cells)
    for group, label in GROUP_LABELS.items():
        values = [100.0 * fractions.get(group, 0.0) for _, fractions, _ in shares]
        bars = ax.bar(
            range(len(cells)), values, 0.7, bottom=bottom, label=label, color=GROUP_COLORS[group]
        )
        ax.bar_label(
            bars,
            labels=[f"{v:.0f}" if v >= 6 else "" for v in values],
            label_type="center",
            fontsize=6,
        )
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(shares_label(bases) if bases else "share of ORT node time (%)", fontsize=8)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(_title(data, "Where ONNX Runtime spends its time", width_in), fontsize=9)
    return fig


#: file name -> the function that draws it from a report dict.
PLOTS: dict[str, Callable[[Mapping[str, Any]], Figure]] = {
    "latency_vs_macs.png": latency_vs_macs_figure,
    "speedup.png": speedup_figure,
    "op_breakdown.png": op_breakdown_figure,
}


def write_plots(data: Mapping[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """Write every plot of :data:`PLOTS` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    return [save_figure(draw(data), out / name) for name, draw in PLOTS.items()]
