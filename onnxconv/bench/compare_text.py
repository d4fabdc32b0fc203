"""A bench comparison (:func:`onnxconv.bench.compare.compare_reports`) as text: the cell table
rows the CLI prints, the decision rule, the tally, and the Markdown page."""

from __future__ import annotations

from typing import Any, Mapping

from .compare_stats import BUSY_PRESSURE, CONFIDENCE, RESAMPLES

CELL_HEADERS = (
    "cell",
    "baseline ms",
    "current ms",
    "current / baseline",
    f"{CONFIDENCE:.0%} interval",
    "rounds×blocks",
    "contended",
    "verdict",
)


def cell_rows(comparison: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """One row of :data:`CELL_HEADERS` per cell, as text ("—" when absent)."""

    def fmt(value: float | None, spec: str) -> str:
        return "—" if value is None else f"{value:{spec}}"

    def ratio(value: float) -> str:
        return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"

    rows = []
    for r in comparison["cells"]:
        interval = r.get("interval")
        rows.append(
            (
                r["id"],
                fmt(r.get("baseline_ms"), ".4g"),
                fmt(r.get("current_ms"), ".4g"),
                ratio(r["ratio"]) if r["ratio"] is not None else "—",
                f"{ratio(interval[0])}–{ratio(interval[1])}" if interval else "—",
                f"{r.get('baseline_rounds', '?')}×{_per_round(r, 'baseline')} / "
                f"{r.get('current_rounds', '?')}×{_per_round(r, 'current')}",
                f"{r.get('baseline_busy') or '—'} / {r.get('current_busy') or '—'}",
                r["verdict"],
            )
        )
    return rows


def _per_round(row: Mapping[str, Any], side: str) -> str:
    rounds, blocks = row.get(f"{side}_rounds"), row.get(f"{side}_blocks")
    if not rounds or blocks is None:
        return "0"
    return f"{blocks // rounds}" if blocks % rounds == 0 else f"{blocks / rounds:.1f}"


def rule(comparison: Mapping[str, Any]) -> str:
    """The decision rule in one sentence, with this comparison's threshold."""
    t = comparison["max_slowdown"]
    m = comparison.get("method") or {}
    return (
        f"slower: the whole {m.get('confidence', CONFIDENCE):.0%} interval of current / baseline "
        f"is above ×{t:g}; faster: below ×{1 / t:.3g}; same: within both; unclear: it crosses "
        f"one, or the slower (faster) side was contended (CPU pressure above "
        f"{BUSY_PRESSURE:.0%} in a round, or load above the cores): contention only slows "
        f"(bootstrap over rounds, then blocks; {m.get('resamples', RESAMPLES)} draws, seeded)"
    )


def tally(comparison: Mapping[str, Any]) -> str:
    """``"1 slower, 0 faster, 2 unclear, 5 the same"``."""
    same = sum(r["verdict"] == "same" for r in comparison["cells"])
    c = comparison
    return (
        f"{len(c['slower'])} slower, {len(c['faster'])} faster, "
        f"{len(c.get('unclear', []))} unclear, {same} the same"
    )


def only_in_lines(comparison: Mapping[str, Any]) -> list[str]:
    """One line per side that holds cells the other lacks."""
    lines = []
    for key, what in (
        ("only_in_baseline", "only in the baseline"),
        ("only_in_current", "only in the current run"),
    ):
        if comparison[key]:
            lines.append(f"{len(comparison[key])} cell(s) {what}: " + ", ".join(comparison[key]))
    return lines


def _describe_run(run: Mapping[str, Any]) -> str:
    gpu = f", {', '.join(run['gpus'])}" if run.get("gpus") else ""
    return (
        f"{run.get('path', '')} — created {run['created']}, {run.get('cpu')}{gpu}, "
        f"onnxruntime {run.get('onnxruntime')}, torch {run.get('torch')}, "
        f"{run.get('threads')} thread(s), {run.get('rounds')} round(s) × {run.get('blocks')} "
        f"blocks × {run.get('calls')} calls"
    )


def to_markdown(comparison: Mapping[str, Any]) -> str:
    c = comparison
    lines = [
        "# onnxconv bench-compare",
        "",
        f"- baseline: {_describe_run(c['baseline'])}",
        f"- current: {_describe_run(c['current'])}",
        f"- rule: {rule(c)}",
        f"- verdict: {tally(c)}",
    ]
    if c["differences"]:
        lines += ["", "## The runs differ in", ""] + [f"- {d}" for d in c["differences"]]
    else:
        lines += ["", "Same machine, versions and settings."]
    if c.get("warnings"):
        lines += ["", "## Read the verdicts with care", ""] + [f"- {w}" for w in c["warnings"]]
    lines += [
        "",
        "## Cells",
        "",
        "ms: the median of the per-block medians (all rounds); rounds×blocks and contended "
        "(the worst round's CPU pressure, or load / cores): baseline / current.",
        "",
        "| " + " | ".join(CELL_HEADERS) + " |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for *values, cell_verdict in cell_rows(c):
        shown = "**slower**" if cell_verdict == "slower" else cell_verdict
        lines.append("| " + " | ".join([*values, shown]) + " |")
    only = only_in_lines(c)
    if only:
        lines += [""] + only
    return "\n".join(lines) + "\n"
