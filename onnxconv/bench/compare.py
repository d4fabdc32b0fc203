"""Two bench reports side by side: which cells got slower or faster, and whether the two runs
are comparable at all.

The question a deployment engineer asks after upgrading ONNX Runtime, changing a CUDA option or
re-exporting a graph: did anything get slower? Cells are paired by id (variant, batch, backend,
target). A cell counts as *slower* only when its p50 is above ``max_slowdown`` × the baseline's
p50 **and** above the baseline's p90, so one noisy median does not fail a gate; *faster* the same
way round. What differs between the two runs (machine, GPU, thread count, library versions, CUDA
options) is listed first: a ratio between two machines compares machines, not code.

Library: :func:`compare_reports` returns a plain dict (schema in its docstring);
:func:`to_markdown` renders it. ``onnxconv bench-compare`` is the command.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import UserInputError
from .report import BenchReport

#: The default threshold of ``onnxconv bench-compare`` (20% slower p50).
DEFAULT_MAX_SLOWDOWN = 1.2

_SETTINGS_COMPARED = ("threads", "precision", "blocks", "calls", "cuda_options")


def _differences(old: BenchReport, new: BenchReport) -> list[str]:
    out = []
    for key in ("cpu_model", "logical_cores", "os"):
        a, b = old.machine.get(key), new.machine.get(key)
        if a != b:
            out.append(f"machine {key}: {a} -> {b}")
    gpus = [[g.get("name") for g in (r.machine.get("gpus") or [])] for r in (old, new)]
    if gpus[0] != gpus[1]:
        out.append(f"GPU: {', '.join(gpus[0]) or 'none'} -> {', '.join(gpus[1]) or 'none'}")
    for key in sorted(set(old.versions) | set(new.versions)):
        a, b = old.versions.get(key), new.versions.get(key)
        if isinstance(a, (str, type(None))) and isinstance(b, (str, type(None))) and a != b:
            out.append(f"{key}: {a} -> {b}")
    for key in _SETTINGS_COMPARED:
        a, b = old.settings.get(key), new.settings.get(key)
        if a != b:
            out.append(f"setting {key}: {a} -> {b}")
    return out


def _run_summary(report: BenchReport) -> dict[str, Any]:
    """When, where and with what a report was measured: the line each figure needs."""
    m, v, s = report.machine, report.versions, report.settings
    return {
        "created": report.created,
        "cpu": m.get("cpu_model"),
        "gpus": [g.get("name") for g in (m.get("gpus") or [])],
        "onnxruntime": v.get("onnxruntime"),
        "torch": v.get("torch"),
        "threads": s.get("threads"),
        "cuda_options": s.get("cuda_options"),
    }


def _describe_run(run: Mapping[str, Any]) -> str:
    gpu = f", {', '.join(run['gpus'])}" if run.get("gpus") else ""
    return (
        f"{run.get('path', '')} — created {run['created']}, {run.get('cpu')}{gpu}, "
        f"onnxruntime {run.get('onnxruntime')}, torch {run.get('torch')}, "
        f"{run.get('threads')} thread(s)"
    )


def check_max_slowdown(max_slowdown: float) -> None:
    """A threshold must be above 1.0 (1.2: 20% slower); otherwise a :class:`UserInputError`."""
    if not max_slowdown > 1.0:
        raise UserInputError(
            f"max slowdown must be above 1.0 (e.g. 1.2 for 20%), got {max_slowdown}"
        )


def cell_rows(comparison: Mapping[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """``(id, baseline p50, current p50, ratio, verdict)`` per cell, as text ("—" when absent)."""

    def fmt(value: float | None, spec: str) -> str:
        return "—" if value is None else f"{value:{spec}}"

    return [
        (
            r["id"],
            fmt(r["baseline_p50_ms"], ".4g"),
            fmt(r["current_p50_ms"], ".4g"),
            fmt(r["ratio"], ".2f"),
            r["verdict"],
        )
        for r in comparison["cells"]
    ]


def compare_reports(
    baseline: BenchReport, current: BenchReport, max_slowdown: float = DEFAULT_MAX_SLOWDOWN
) -> dict[str, Any]:
    """Pair the cells of two reports by id.

    Returns ``{"baseline": {created, cpu, gpus, onnxruntime, torch, threads, cuda_options},
    "current": {...}, "max_slowdown", "differences":
    [str], "cells": [{id, baseline_p50_ms, current_p50_ms, baseline_p90_ms, ratio, verdict}],
    "only_in_baseline": [id], "only_in_current": [id], "slower": [id], "faster": [id]}``;
    ``ratio`` is current p50 / baseline p50; ``verdict`` is ``slower``, ``faster``, ``same``,
    ``not timed`` (a cell that did not run in one of the reports) or ``not comparable (...)``
    (the same id names another graph: its source, config or multiply-adds differ).
    """
    check_max_slowdown(max_slowdown)
    old_cells = {c["id"]: c for c in baseline.cells}
    new_cells = {c["id"]: c for c in current.cells}
    rows = []
    for cell_id in [i for i in new_cells if i in old_cells]:
        old, new = (old_cells[cell_id].get("stats") or {}), (new_cells[cell_id].get("stats") or {})
        row: dict[str, Any] = {
            "id": cell_id,
            "baseline_p50_ms": old.get("p50_ms"),
            "baseline_p90_ms": old.get("p90_ms"),
            "current_p50_ms": new.get("p50_ms"),
            "current_p90_ms": new.get("p90_ms"),
            "ratio": None,
            "verdict": "not timed",
        }
        changed = [
            key
            for key in ("source", "config", "macs")
            if old_cells[cell_id].get(key) != new_cells[cell_id].get(key)
        ]
        if changed:  # same name, another graph: a ratio would mean nothing
            row["verdict"] = (
                f"not comparable ({', '.join(changed)} "
                f"{'differs' if len(changed) == 1 else 'differ'})"
            )
        elif old.get("p50_ms") and new.get("p50_ms"):
            ratio = new["p50_ms"] / old["p50_ms"]
            row["ratio"] = ratio
            if ratio > max_slowdown and new["p50_ms"] > old["p90_ms"]:
                row["verdict"] = "slower"
            elif ratio < 1 / max_slowdown and old["p50_ms"] > new["p90_ms"]:
                row["verdict"] = "faster"
            else:
                row["verdict"] = "same"
        rows.append(row)
    return {
        "baseline": _run_summary(baseline),
        "current": _run_summary(current),
        "max_slowdown": max_slowdown,
        "differences": _differences(baseline, current),
        "cells": rows,
        "only_in_baseline": [i for i in old_cells if i not in new_cells],
        "only_in_current": [i for i in new_cells if i not in old_cells],
        "slower": [r["id"] for r in rows if r["verdict"] == "slower"],
        "faster": [r["id"] for r in rows if r["verdict"] == "faster"],
    }


def to_markdown(comparison: Mapping[str, Any]) -> str:
    c = comparison
    lines = [
        "# onnxconv bench-compare",
        "",
        f"- baseline: {_describe_run(c['baseline'])}",
        f"- current: {_describe_run(c['current'])}",
        f"- slower / faster means p50 beyond ×{c['max_slowdown']:g} (or ÷) and outside the "
        "other run's p90",
        f"- verdict: {len(c['slower'])} slower, {len(c['faster'])} faster, "
        f"{sum(r['verdict'] == 'same' for r in c['cells'])} the same",
    ]
    if c["differences"]:
        lines += ["", "## The runs differ in", ""] + [f"- {d}" for d in c["differences"]]
    else:
        lines += ["", "Same machine, versions and settings."]
    lines += [
        "",
        "## Cells",
        "",
        "| cell | baseline p50 ms | current p50 ms | current / baseline | verdict |",
        "|---|---:|---:|---:|---|",
    ]
    for *values, verdict in cell_rows(c):
        lines.append(
            "| "
            + " | ".join(values)
            + " | "
            + ("**slower**" if verdict == "slower" else verdict)
            + " |"
        )
    for key, what in (
        ("only_in_baseline", "only in the baseline"),
        ("only_in_current", "only in the current run"),
    ):
        if c[key]:
            lines += ["", f"{len(c[key])} cell(s) {what}: " + ", ".join(c[key])]
    return "\n".join(lines) + "\n"
