"""False alarms and power of bench-compare on repeated runs of one unchanged build.

    for i in 1 2 3 4 5; do
        onnxconv bench standard grouped channel_shuffle depthwise --config height=56,width=56 \
            --threads 2 --opt-level all --rounds 3 --quiet --out /tmp/runs/run$i
    done
    .venv/bin/python scripts/bench_false_alarms.py /tmp/runs/run*/bench.json

Every ordered pair of runs (baseline, current) is compared three ways: the rule bench-compare
used before schema 2 (p50 above 1.2 x the baseline's and above the baseline's p90), the
bootstrap interval alone, and the gate (the interval, with slowdowns measured under contention
held as unclear). Nothing changed between the runs, so every *slower* is a false alarm. Then
every cell of the current run is slowed by 1.5 (its block medians and percentiles scaled) and
the same three count what they catch. Prints the counts reports/README.md quotes.
"""

from __future__ import annotations

import copy
import itertools
import sys
from typing import Any

from onnxconv.bench import compare
from onnxconv.bench.report import BenchReport, load_report

THRESHOLD = compare.DEFAULT_MAX_SLOWDOWN
WAYS = ("old rule", "interval alone", "gate")


def old_rule(baseline: BenchReport, current: BenchReport) -> tuple[list[str], list[str]]:
    """``(slower, faster)`` cell ids under the rule of bench-compare before schema 2."""
    new = {c["id"]: c.get("stats") or {} for c in current.cells}
    slower, faster = [], []
    for cell in baseline.cells:
        a, b = cell.get("stats") or {}, new.get(cell["id"]) or {}
        if not (a.get("p50_ms") and b.get("p50_ms")):
            continue
        ratio = b["p50_ms"] / a["p50_ms"]
        if ratio > THRESHOLD and b["p50_ms"] > a["p90_ms"]:
            slower.append(cell["id"])
        elif ratio < 1 / THRESHOLD and a["p50_ms"] > b["p90_ms"]:
            faster.append(cell["id"])
    return slower, faster


def judged(way: str, baseline: BenchReport, current: BenchReport) -> tuple[list[str], list[str]]:
    if way == "old rule":
        return old_rule(baseline, current)
    c = compare.compare_reports(baseline, current, THRESHOLD, hold_contended=way == "gate")
    return c["slower"], c["faster"]


def slowed(report: BenchReport, factor: float = 1.5) -> BenchReport:
    """The report with every timing of every cell multiplied by ``factor``."""
    report = copy.deepcopy(report)
    for cell in report.cells:
        for r in cell["rounds"]:
            if r.get("block_medians_ms"):
                r["block_medians_ms"] = [x * factor for x in r["block_medians_ms"]]
        stats: dict[str, Any] = cell.get("stats") or {}
        for key in ("p50_ms", "p90_ms"):
            if stats.get(key) is not None:
                stats[key] *= factor
    return report


def main(paths: list[str]) -> int:
    if len(paths) < 2:
        print("usage: bench_false_alarms.py BENCH_JSON BENCH_JSON ...", file=sys.stderr)
        return 2
    runs = [load_report(p) for p in paths]
    pairs = list(itertools.permutations(range(len(runs)), 2))
    cells = sum(len(runs[i].cells) for i, _ in pairs)
    alarms = {w: [0, 0, 0] for w in WAYS}  # pairs failing, cells slower, cells faster
    caught = dict.fromkeys(WAYS, 0)
    for i, j in pairs:
        for way in WAYS:
            slower, faster = judged(way, runs[i], runs[j])
            alarms[way][0] += bool(slower)
            alarms[way][1] += len(slower)
            alarms[way][2] += len(faster)
            caught[way] += len(judged(way, runs[i], slowed(runs[j]))[0])
    print(f"{len(runs)} runs, {len(pairs)} ordered pairs, {cells} cell comparisons")
    for way in WAYS:
        failing, slower, faster = alarms[way]
        print(
            f"{way:15s} pairs failing {failing}/{len(pairs)}, cells slower {slower}, "
            f"faster {faster}; planted 1.5x caught {caught[way]}/{cells}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
