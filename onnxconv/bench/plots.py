"""PNG plots of a bench report (the dict of ``onnxconv.bench_report.BenchReport.to_dict``).

Uses matplotlib's object API with the Agg canvas directly: no pyplot, no global backend switch,
so importing this module changes nothing for a caller that uses matplotlib interactively.
Every file is written to a temporary name beside its target and moved into place.

- ``latency_vs_macs.png``: p50 latency against multiply-adds, log-log, one point per variant,
  batch and backend/target. Points that share MACs but not latency are the ShuffleNet v2 lesson
  (FLOPs are an indirect metric) made visible. Zero-MAC variants (a bare channel shuffle) cannot
  sit on a log axis; they are listed in the legend title instead.
- ``speedup.png``: PyTorch p50 / ORT p50 per variant (median of per-round pairs), one bar per
  ORT target, a line at 1 (above it ORT is faster).
- ``op_breakdown.png``: stacked shares of ORT node time per variant and target: Conv,
  Reshape/Transpose (shuffle), ReorderInput/Output (NCHWc layout), other.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Mapping

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..report import write_bytes
from .stats import op_shares

GROUP_LABELS = {
    "conv": "Conv / FusedConv / NchwcConv",
    "shuffle": "Reshape / Transpose",
    "reorder": "ReorderInput / ReorderOutput",
    "other": "other",
}
GROUP_COLORS = {"conv": "#4477aa", "shuffle": "#ee6677", "reorder": "#ccbb44", "other": "#bbbbbb"}


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return write_bytes(path, buffer.getvalue())


def _title(data: Mapping[str, Any], what: str) -> str:
    m, s = data["machine"], data["settings"]
    gpus = m.get("gpus") or []
    gpu = f" · {gpus[0]['name']}" if gpus and "cuda" in s.get("eps", []) else ""
    return f"{what}\n{m.get('cpu_model')}, {s['threads']} thread(s){gpu}"


def _ok(cell: Mapping[str, Any]) -> bool:
    return cell.get("status") == "ok" and bool(cell.get("stats"))


def _where(cell: Mapping[str, Any]) -> str:
    return f"{cell['backend']} {cell['target']}"


def plot_latency_vs_macs(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    fig = Figure(figsize=(8, 5.5))
    ax = fig.add_subplot()
    series: dict[str, list[tuple[float, float, str]]] = {}
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
    markers = "osD^v<>pP*X"
    for i, (where, points) in enumerate(sorted(series.items())):
        xs, ys, names = zip(*points)
        ax.scatter(xs, ys, label=where, marker=markers[i % len(markers)], alpha=0.8)
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
    return _save(fig, Path(path))


def plot_speedup(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    pairs = [p for p in data["pairs"] if p.get("torch_over_ort") is not None]
    labels = list(dict.fromkeys(f"{p['label']} b{p['batch']}" for p in pairs))
    series = list(dict.fromkeys(f"{p['ort_target']} vs {p['torch_backend']}" for p in pairs))
    fig = Figure(figsize=(max(6.0, 0.9 * len(labels) * max(1, len(series)) ** 0.5 + 2), 5))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(series))
    for j, name in enumerate(series):
        values = {
            f"{p['label']} b{p['batch']}": p["torch_over_ort"]
            for p in pairs
            if f"{p['ort_target']} vs {p['torch_backend']}" == name
        }
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, [values.get(label, 0.0) for label in labels], width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("PyTorch p50 / ORT p50 (> 1: ORT faster)")
    if series:
        ax.legend(fontsize=7)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(
        _title(data, "PyTorch eager against ONNX Runtime (median of paired rounds)"), fontsize=9
    )
    return _save(fig, Path(path))


def plot_op_breakdown(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    shares = [(c, *op_shares(c)) for c in data["cells"] if c.get("backend") == "ort"]
    shares = [(c, fractions, basis) for c, fractions, basis in shares if fractions]
    labels = [f"{c['label']} b{c['batch']}\n{c['opt_level']} ({basis})" for c, _, basis in shares]
    cells = [c for c, _, _ in shares]
    fig = Figure(figsize=(max(6.0, 0.55 * len(cells) + 2), 5))
    ax = fig.add_subplot()
    bottom = [0.0] * len(cells)
    for group, label in GROUP_LABELS.items():
        values = [100.0 * fractions.get(group, 0.0) for _, fractions, _ in shares]
        ax.bar(
            range(len(cells)), values, 0.7, bottom=bottom, label=label, color=GROUP_COLORS[group]
        )
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("share of ORT node time (%)\nprofile / launch (CUDA host side) / nodes alone")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(_title(data, "Where ONNX Runtime spends its time"), fontsize=9)
    return _save(fig, Path(path))


PLOTS = {
    "latency_vs_macs.png": plot_latency_vs_macs,
    "speedup.png": plot_speedup,
    "op_breakdown.png": plot_op_breakdown,
}


def write_plots(data: Mapping[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """Write every plot of :data:`PLOTS` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    return [plot(data, out / name) for name, plot in PLOTS.items()]
