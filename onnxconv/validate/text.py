"""The report in words: a cell's headline, one row per graph and EP, the Markdown report."""

from __future__ import annotations

import textwrap
from typing import Iterable

from .. import quant_check
from ..machine import describe_gpus
from .cells import Cell
from .run import ValidationReport


def headline_text(cell: Cell) -> str:
    """``1.23e-06 vs torch``: the worst error against the opinion that decided; for an int8
    cell its quantization metrics (``sqnr 37.2 dB, cos 0.99991 vs torch``); ``shapes differ``
    when no element could be compared."""
    if cell.quant:
        return f"{quant_check.headline(cell.quant)} vs {cell.quant['against']}"
    headline = cell.headline()
    if headline:
        return f"{headline[1]['max_abs']:.2e} vs {headline[0]}{tol_used(headline[1])}"
    return "shapes differ" if "shape mismatch" in cell.reason else ""


def tol_used(worst: dict) -> str:
    """`` (64% of tol)``: how much of its tolerance the worst element took ("" unknown)."""
    used = worst.get("tol_used")
    return "" if used is None else f" ({used:.0%} of tol)"


def brief_rows(cells: Iterable[Cell], width: int = 110) -> list[tuple[str, ...]]:
    """One row per graph and EP: how its cells ended, the worst error, the first problem."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.subject, cell.target.split("/")[0]), []).append(cell)
    rows = []
    for (subject, ep), group in groups.items():
        counts: dict[str, int] = {}
        for cell in group:
            counts[cell.status] = counts.get(cell.status, 0) + 1
        judged = [c for c in group if c.headline()]
        worst = max(judged, key=lambda c: c.headline()[1]["max_abs"], default=None)
        problem = next((f"{c.target}: {c.reason}" for c in group if c.status != "pass"), "")
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        rows.append(
            (
                subject,
                ep,
                summary,
                headline_text(worst) if worst else "",
                textwrap.shorten(problem, width, placeholder=" …"),
            )
        )
    return rows


def to_markdown(report: ValidationReport) -> str:
    env = report.environment
    summary = ", ".join(f"{n} {status}" for status, n in sorted(report.summary().items()))
    lines = [
        "# onnxconv validate",
        "",
        f"- machine: {env['machine']['cpu_model']}, {env['machine']['logical_cores']} "
        f"logical cores; created {env['created']}",
        f"- GPU: {describe_gpus(env['machine']) or 'none seen by nvidia-smi'}",
        "- versions: "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if isinstance(v, str)),
        f"- stored outputs: {report.settings['stored_outputs']}",
        f"- summary: {summary}",
    ]
    lines += [
        f"- {ep} is not in the matrix: {reason}"
        for ep, reason in report.settings.get("eps_left_out", {}).items()
    ]
    lines += [f"- note: {note}" for s in report.subjects for note in s["notes"]]
    lines += [
        "",
        "## Per graph and EP",
        "",
        "| graph | ep | cells | worst max abs | first problem |",
        "|---|---|---|---|---|",
    ]
    lines += [
        "| " + " | ".join(v.replace("|", "/") for v in row) + " |"
        for row in brief_rows(report.cells, width=400)
    ]
    lines += [
        "",
        "## Every cell",
        "",
        "| graph | target | status | kind | worst max abs per opinion | placement | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for cell in report.cells:
        worst = ", ".join(f"{op} {w['max_abs']:.3g}{tol_used(w)}" for op, w in cell.worst.items())
        if cell.quant:
            worst = headline_text(cell)
        lines.append(
            f"| {cell.subject} | {cell.target} | {cell.status} | {cell.kind} | "
            f"{worst} | {cell.placement} | {cell.reason.replace('|', '/')} |"
        )
    quant_cells = [c for c in report.cells if c.quant]
    if quant_cells:
        int8 = dict(report.settings.get("int8", {}))
        int8["tolerances"] = report.settings.get("quant_bounds") or int8.get("tolerances")
        lines += ["", *quant_check.markdown_section(quant_cells, int8)]
    return "\n".join(lines) + "\n"
