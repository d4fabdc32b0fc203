"""Two bench reports side by side: which cells got slower or faster, with the interval that
decided, and whether the two runs are comparable at all.

The question a deployment engineer asks after upgrading ONNX Runtime, changing a CUDA option or
re-exporting a graph: did anything get slower? Cells are paired by id (variant, batch, backend,
target).

The verdict is statistical, over what both runs recorded: every cell keeps the median of each
timed block, round by round (``rounds[].block_medians_ms``; a round is one fresh process). The
statistic is the ratio of the medians of those block medians, current over baseline. Its
interval comes from a two-level bootstrap (resample the rounds with replacement, then the blocks
within each drawn round, independently for both runs; :data:`RESAMPLES` draws from a NumPy
generator seeded from the cell id, so the same two files always give the same interval). Blocks
of one process share that process's luck (its memory layout, its neighbours on the machine), so
resampling the rounds first keeps the process-to-process noise in the interval instead of
treating 15 blocks of 3 processes as 15 independent samples.

- *slower*: the whole interval lies above ``max_slowdown`` (the data support a slowdown of more
  than, by default, 20%);
- *faster*: the whole interval lies below ``1 / max_slowdown``;
- *same*: the whole interval lies within ``[1 / max_slowdown, max_slowdown]``;
- *unclear*: the interval reaches beyond a threshold but not wholly: the runs cannot tell (more
  rounds narrow it). Only *slower* fails a gate.

Contention only ever slows a cell, and on a shared machine it does so for minutes at a time: a
whole run can sit in a slow mode (measured here: ORT at 2 threads up to 2x, PyTorch's OpenMP
threads up to 50x when another process holds a core), which no statistic over that run's own
rounds can tell from a regression. So a cell that would be *slower* is held as *unclear* when a
round of the current run was contended (CPU pressure, recorded per round, above
:data:`BUSY_PRESSURE`; the load average above the cores in older reports), and one that would be
*faster* when a round of the baseline was: the row says why. A contended baseline cannot fake a
slowdown, nor a contended current run a speed-up, so those verdicts stand.

What differs between the two runs (machine, GPU, versions, every setting: rounds, blocks,
calls, threads, levels, batches, CUDA options, ...) is listed first: a ratio between two machines
compares machines, not code.

Library: :func:`compare_reports` returns a plain dict (schema in its docstring);
:func:`to_markdown` renders it. ``onnxconv bench-compare`` is the command. The statistic lives in
:mod:`.compare_stats`, the rendering in :mod:`.compare_text`; their public names are importable
from here as well.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Mapping, Sequence

from .compare_stats import (
    BUSY_PRESSURE,
    CONFIDENCE,
    RESAMPLES,
    SEED,
    block_medians_by_round,
    busy,
    cell_seed,
    check_max_slowdown,
    median_of_pooled,
    ratio_interval,
    verdict,
)
from .compare_text import CELL_HEADERS, cell_rows, only_in_lines, rule, tally, to_markdown
from .report import BenchReport

SCHEMA = "onnxconv.bench-compare"
#: 2: the bootstrap verdict (interval, rounds and blocks per cell, ``unclear``, ``method``), every
#: settings difference, ``schema``/``schema_version`` keys. 1 (unversioned): p50 against p90.
SCHEMA_VERSION = 2

#: The default threshold of ``onnxconv bench-compare`` (a slowdown of more than 20%).
DEFAULT_MAX_SLOWDOWN = 1.2
#: A median ratio over all cells beyond this (or its inverse) is worth a warning.
MACHINE_SHIFT = 1.1

_MACHINE_KEYS = (
    "cpu_model",
    "arch",
    "logical_cores",
    "usable_cores",
    "memory_bytes",
    "os",
    "kernel",
    "libc",
    "python",
    "python_implementation",
)
_SETTINGS_FIRST = (
    "rounds",
    "blocks",
    "calls",
    "warmup",
    "warmup_s",
    "threads",
    "batches",
    "eps",
    "opt_levels",
    "precision",
    "cuda_options",
    "compile",
)
#: Settings keys that describe the run rather than set it.
_SETTINGS_IGNORED = ("order",)


# ---------------------------------------------------------------------------------------------
# what differs between the runs


def _show(value: Any) -> str:
    if value is None:
        return "absent"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_show(v)}" for k, v in sorted(value.items())) or "none"
    if isinstance(value, (list, tuple)):
        return ",".join(_show(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _changed(what: str, a: Any, b: Any) -> list[str]:
    return [] if a == b else [f"{what}: {_show(a)} -> {_show(b)}"]


def _machine_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    rest = sorted((set(old) | set(new)) - set(_MACHINE_KEYS) - {"isa", "gpus"})
    for key in (*_MACHINE_KEYS, *rest):
        a, b = old.get(key), new.get(key)
        if key == "memory_bytes" and a != b:
            a, b = (f"{x / 2**30:.1f} GiB" if x else x for x in (a, b))
        out += _changed(f"machine {key}", a, b)
    isa_a, isa_b = old.get("isa") or {}, new.get("isa") or {}
    flags = sorted(set(isa_a) | set(isa_b))
    gained = [f for f in flags if isa_b.get(f) and not isa_a.get(f)]
    lost = [f for f in flags if isa_a.get(f) and not isa_b.get(f)]
    if gained or lost:
        out.append("machine isa: " + ", ".join([f"+{f}" for f in gained] + [f"-{f}" for f in lost]))
    gpus = [[g.get("name") for g in (m.get("gpus") or [])] for m in (old, new)]
    if gpus[0] != gpus[1]:
        out.append(f"GPU: {', '.join(gpus[0]) or 'none'} -> {', '.join(gpus[1]) or 'none'}")
    return out


def _sources(settings: Mapping[str, Any]) -> list[str]:
    return [
        f"{s.get('label')}" + (f" ({_show(s['overrides'])})" if s.get("overrides") else "")
        for s in settings.get("sources") or []
    ]


def _settings_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    rest = sorted((set(old) | set(new)) - set(_SETTINGS_FIRST) - set(_SETTINGS_IGNORED))
    for key in (*_SETTINGS_FIRST, *rest):
        if key == "sources":
            a, b = _sources(old), _sources(new)
            removed, added = [s for s in a if s not in b], [s for s in b if s not in a]
            if removed or added:
                out.append(
                    "setting sources: "
                    + "; ".join([f"-{s}" for s in removed] + [f"+{s}" for s in added])
                )
            continue
        out += _changed(f"setting {key}", old.get(key), new.get(key))
    return out


def differences(old: BenchReport, new: BenchReport) -> list[str]:
    """Every difference between two runs but the timings: machine, GPU, versions, settings."""
    out = _machine_differences(old.machine, new.machine)
    for key in sorted(set(old.versions) | set(new.versions)):
        out += _changed(key, old.versions.get(key), new.versions.get(key))
    return out + _settings_differences(old.settings, new.settings)


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
        "rounds": s.get("rounds"),
        "blocks": s.get("blocks"),
        "calls": s.get("calls"),
        "cuda_options": s.get("cuda_options"),
    }


# ---------------------------------------------------------------------------------------------
# pairing the cells


def _judge(
    row: dict[str, Any], low: float, high: float, max_slowdown: float, hold_contended: bool
) -> None:
    """The verdict from the interval; a slowdown measured on a busy machine (or a speed-up
    against a busy baseline) is only ``unclear`` with ``hold_contended``: contention alone does
    that."""
    row["verdict"] = verdict(low, high, max_slowdown)
    side = {"slower": "current", "faster": "baseline"}.get(row["verdict"])
    if hold_contended and side and row[f"{side}_busy"]:
        row["verdict"] = "unclear"
        row["why"] = (
            f"the {side} run was contended ({row[f'{side}_busy']}): other processes slow a cell "
            "this much"
        )


def _compare_cell(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    max_slowdown: float,
    cores: tuple[int | None, int | None],
    hold_contended: bool,
) -> dict:
    old_stats, new_stats = old.get("stats") or {}, new.get("stats") or {}
    base, cur = block_medians_by_round(old), block_medians_by_round(new)
    row: dict[str, Any] = {
        "id": old["id"],
        "baseline_ms": None,
        "current_ms": None,
        "ratio": None,
        "interval": None,
        "verdict": "not timed",
        "baseline_rounds": len(base),
        "current_rounds": len(cur),
        "baseline_blocks": sum(len(r) for r in base),
        "current_blocks": sum(len(r) for r in cur),
        "baseline_p50_ms": old_stats.get("p50_ms"),
        "current_p50_ms": new_stats.get("p50_ms"),
        "baseline_p90_ms": old_stats.get("p90_ms"),
        "current_p90_ms": new_stats.get("p90_ms"),
        "baseline_busy": busy(old, cores[0]),
        "current_busy": busy(new, cores[1]),
        "why": None,
    }
    changed = [key for key in ("source", "config", "macs") if old.get(key) != new.get(key)]
    sha = old.get("graph_sha256"), new.get("graph_sha256")
    if all(sha) and sha[0] == sha[1] and "source" in changed:
        changed.remove("source")  # the same graph, its folder moved (a tuned folder copied)
    elif all(sha) and sha[0] != sha[1] and "source" not in changed:
        changed.insert(0, "graph")  # the file at the same path holds another graph
    if changed:  # same name, another graph: a ratio would mean nothing
        row["verdict"] = (
            f"not comparable ({', '.join(changed)} {'differs' if len(changed) == 1 else 'differ'})"
        )
    elif base and cur and min(min(r) for r in base) > 0:  # 0 ms: below the clock, no ratio
        ratio, low, high = ratio_interval(base, cur, seed=cell_seed(old["id"]))
        row.update(
            baseline_ms=median_of_pooled(base),
            current_ms=median_of_pooled(cur),
            ratio=ratio,
            interval=[low, high],
        )
        _judge(row, low, high, max_slowdown, hold_contended)
    return row


def _warnings(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """What limits the verdicts: runs of one round, and a shift that most cells share."""
    out = []
    judged = [r for r in rows if r["interval"]]
    single = [s for s in ("baseline", "current") if any(r[f"{s}_rounds"] == 1 for r in judged)]
    if single:
        out.append(
            f"the {' and the '.join(single)} timed each cell in one round (one process): the "
            "interval then holds the noise of blocks within that process only, not the larger "
            "noise from process to process; gate on runs of 3 rounds or more"
        )
    held = [r for r in judged if r["why"]]
    if held:
        out.append(
            f"{len(held)} cell(s) beyond the threshold were left unclear because the run that "
            f"looked slower was contended (e.g. {held[0]['id']}: {held[0]['why']}); rerun both "
            "on an idle machine to judge them"
        )
    ratios = [r["ratio"] for r in judged]
    if len(ratios) >= 4 and any(r["verdict"] in ("slower", "faster") for r in judged):
        mid = statistics.median(ratios)
        along = sum((x > 1) == (mid > 1) for x in ratios) / len(ratios)
        if abs(math.log(mid)) > math.log(MACHINE_SHIFT) and along >= 0.75:
            out.append(
                f"{along:.0%} of the cells moved the same way (median ratio {mid:.2f}): a "
                "machine busier or idler during one run does that as well as a code change"
            )
    return out


def compare_reports(
    baseline: BenchReport,
    current: BenchReport,
    max_slowdown: float = DEFAULT_MAX_SLOWDOWN,
    *,
    hold_contended: bool = True,
) -> dict[str, Any]:
    """Pair the cells of two reports by id and judge each by its bootstrap interval.

    Returns (schema ``onnxconv.bench-compare`` version 2) ``{"schema", "schema_version",
    "baseline": {created, cpu, gpus, onnxruntime, torch, threads, rounds, blocks, calls,
    cuda_options}, "current": {...}, "max_slowdown", "method": {statistic, interval,
    confidence, resamples, seed, contended_held, busy_pressure}, "differences": [str],
    "warnings": [str], "cells": [{id, baseline_ms, current_ms (medians of the block medians),
    ratio (current_ms / baseline_ms), interval ([low, high] of the ratio), verdict, why (null,
    or why a verdict beyond the threshold was held as unclear), baseline_busy, current_busy
    (null, or the contention seen: "pressure 85%", "load 4.2/2"), baseline_rounds,
    current_rounds, baseline_blocks, current_blocks, baseline_p50_ms, current_p50_ms,
    baseline_p90_ms, current_p90_ms}], "only_in_baseline": [id], "only_in_current": [id],
    "slower": [id], "faster": [id], "unclear": [id]}``. ``verdict`` is ``slower``, ``faster``,
    ``same``, ``unclear`` (module doc), ``not timed`` (a cell that did not run in one of the
    reports) or ``not comparable (...)`` (the same id names another graph: its source, config
    or multiply-adds differ); ``ratio`` and ``interval`` are null then. ``hold_contended=False``
    judges by the interval alone (to measure what the contention rule adds).
    """
    check_max_slowdown(max_slowdown)
    old_cells = {c["id"]: c for c in baseline.cells}
    new_cells = {c["id"]: c for c in current.cells}
    cores = (baseline.machine.get("usable_cores"), current.machine.get("usable_cores"))
    rows = [
        _compare_cell(old_cells[i], new_cells[i], max_slowdown, cores, hold_contended)
        for i in new_cells
        if i in old_cells
    ]
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "baseline": _run_summary(baseline),
        "current": _run_summary(current),
        "max_slowdown": max_slowdown,
        "method": {
            "statistic": "current / baseline median of the per-block medians",
            "interval": "percentile bootstrap: rounds drawn with replacement, then the blocks "
            "of each drawn round, both runs independently",
            "confidence": CONFIDENCE,
            "resamples": RESAMPLES,
            "seed": f"crc32(cell id) xor {SEED}",
            "contended_held": hold_contended,
            "busy_pressure": BUSY_PRESSURE,
        },
        "differences": differences(baseline, current),
        "warnings": _warnings(rows),
        "cells": rows,
        "only_in_baseline": [i for i in old_cells if i not in new_cells],
        "only_in_current": [i for i in new_cells if i not in old_cells],
        **{
            v: [r["id"] for r in rows if r["verdict"] == v] for v in ("slower", "faster", "unclear")
        },
    }


__all__ = [
    "BUSY_PRESSURE",
    "CELL_HEADERS",
    "CONFIDENCE",
    "DEFAULT_MAX_SLOWDOWN",
    "MACHINE_SHIFT",
    "RESAMPLES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SEED",
    "block_medians_by_round",
    "busy",
    "cell_rows",
    "cell_seed",
    "check_max_slowdown",
    "compare_reports",
    "differences",
    "only_in_lines",
    "ratio_interval",
    "rule",
    "tally",
    "to_markdown",
    "verdict",
]
