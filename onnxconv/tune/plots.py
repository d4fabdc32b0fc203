"""The PNG of a tune report (the dict of :meth:`.candidates.TuneReport.to_dict`), drawn like
bench's plots: matplotlib's object API on the Agg canvas, no pyplot, written whole by
:func:`onnxconv.bench.plots.save_figure`.

One figure, because a tune run answers one question (which deployment, and why):

- top: p50 of every timed candidate as a horizontal bar with a whisker to p90, in stage order and
  coloured by stage (stages are timed in separate rounds, so only bars of one stage compare
  exactly); the winner outlined and labelled, each bar labelled with its speedup over the
  default, a dashed line at the default's p50 and a dotted one at PyTorch eager's. Disqualified
  candidates were never timed: the subtitle counts them and the Markdown says why.
- bottom, when ORT profiled the default and the winner: their µs per run by op group, stacked,
  in bench's op-group colours, so a win can be read as the time it removed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from onnxconv.bench.plots import GROUP_COLORS, GROUP_LABELS, figure_png, save_figure
from onnxconv.bench.stats import OP_GROUPS, median_or_none

#: Stage colours by order of appearance (Paul Tol's "vibrant"): apart from bench's level colours
#: on purpose, since a tune stage mixes levels.
STAGE_COLORS = ("#0077bb", "#ee7733", "#009988", "#cc3311", "#33bbee", "#ee3377", "#bbbbbb")
WINNER_EDGE, WINNER_LINEWIDTH = "black", 2.0


def stats_of(c: Mapping[str, Any]) -> Mapping[str, Any]:
    """A candidate's pooled timing statistics in a report's JSON ({} when it was not timed)."""
    return (c.get("timing") or {}).get("stats") or {}


def timed_candidates(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The candidates with a pooled p50, grouped by stage in the order the stages appear."""
    stages = list(dict.fromkeys(c["stage"] for c in data["candidates"]))
    timed = [c for c in data["candidates"] if stats_of(c).get("p50_ms") is not None]
    return sorted(timed, key=lambda c: stages.index(c["stage"]))


def _default_p50(data: Mapping[str, Any]) -> float | None:
    """The default's p50 in the first stage that has it (the reference every speedup names)."""
    default = next((c for c in data["candidates"] if c["name"] == data["default"]), None)
    return stats_of(default).get("p50_ms") if default else None


def _torch_p50(data: Mapping[str, Any]) -> tuple[float | None, int]:
    """PyTorch eager's p50, the median over the stages that timed it, and how many did."""
    p50s = [
        t["stats"]["p50_ms"]
        for t in (data.get("torch") or {}).values()
        if t and t.get("stats") and t["stats"].get("p50_ms") is not None
    ]
    return median_or_none(p50s), len(p50s)


def _title(data: Mapping[str, Any]) -> str:
    m, v = data.get("machine") or {}, data.get("versions") or {}
    return (
        f"onnxconv tune: {data['subject']['label']}\n{data['ep']}, batch {data['batch']}, "
        f"{data['threads']} thread(s) · {m.get('cpu_model')} · "
        f"onnxruntime {v.get('onnxruntime')}"
    )


def _subtitle(data: Mapping[str, Any], timed: int) -> str:
    disqualified = sum(1 for c in data["candidates"] if c["proof"]["disqualified"])
    untimed = len(data["candidates"]) - timed - disqualified
    said = [f"{disqualified} disqualified, see the Markdown"] if disqualified else []
    said += [f"{untimed} not timed"] if untimed > 0 else []
    title = "p50 per timed candidate, whisker to p90, coloured by stage"
    return title + (f"\n{'; '.join(said)}" if said else "")


def _candidates_panel(ax: Any, data: Mapping[str, Any]) -> None:
    timed = timed_candidates(data)
    stages = list(dict.fromkeys(c["stage"] for c in data["candidates"]))
    color = {s: STAGE_COLORS[i % len(STAGE_COLORS)] for i, s in enumerate(stages)}
    p50 = [stats_of(c)["p50_ms"] for c in timed]
    p90 = [stats_of(c).get("p90_ms") or p for c, p in zip(timed, p50)]
    ys = list(range(len(timed)))
    ax.barh(
        ys,
        p50,
        0.7,
        xerr=[[0.0] * len(timed), [max(0.0, hi - lo) for lo, hi in zip(p50, p90)]],
        color=[color[c["stage"]] for c in timed],
        edgecolor=[WINNER_EDGE if c["winner"] else "none" for c in timed],
        linewidth=[WINNER_LINEWIDTH if c["winner"] else 0.0 for c in timed],
        error_kw={"ecolor": "black", "elinewidth": 0.8, "capsize": 2},
    )
    _label_bars(ax, timed, p90)
    ax.set_yticks(ys, [c["name"] + (" (winner)" if c["winner"] else "") for c in timed])
    for label, c in zip(ax.get_yticklabels(), timed):
        label.set_fontsize(7)
        label.set_fontweight("bold" if c["winner"] else "normal")
    ax.invert_yaxis()
    lines = _reference_lines(ax, data)
    ax.set_xlim(0, max([*p90, *(x for x, _ in lines)], default=1.0) * 1.3)
    shown = [s for s in stages if any(c["stage"] == s for c in timed)]
    handles = [Patch(color=color[s], label=s) for s in shown]
    handles.append(
        Patch(facecolor="white", edgecolor=WINNER_EDGE, lw=WINNER_LINEWIDTH, label="winner")
    )
    handles += [line for _, line in lines]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_xlabel("latency (ms)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(_subtitle(data, len(timed)), fontsize=8)
    if not timed:
        ax.text(0.5, 0.5, "no candidate was timed", ha="center", transform=ax.transAxes)


def _label_bars(ax: Any, timed: list[Mapping[str, Any]], p90: list[float]) -> None:
    """Each bar's speedup over the default past its whisker, and a line between stages (each
    stage is timed in its own rounds)."""
    for y, (c, hi) in enumerate(zip(timed, p90)):
        if c.get("speedup_vs_default") is not None:
            said = f"{c['speedup_vs_default']:.2f}× default"
            ax.annotate(
                said, (hi, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=6
            )
    for y, (a, b) in enumerate(zip(timed, timed[1:])):
        if a["stage"] != b["stage"]:
            ax.axhline(y + 0.5, color="grey", linewidth=0.5)


def _reference_lines(ax: Any, data: Mapping[str, Any]) -> list[tuple[float, Line2D]]:
    """The default's p50 (dashed) and PyTorch eager's (dotted), where they were timed."""
    lines = []
    default = _default_p50(data)
    if default is not None:
        label = f"default p50 ({default:.3g} ms)"
        lines.append((default, ax.axvline(default, color="black", ls="--", lw=0.9, label=label)))
    torch, stages = _torch_p50(data)
    if torch is not None:
        label = f"PyTorch eager p50 ({torch:.3g} ms, median of {stages} stage(s))"
        lines.append((torch, ax.axvline(torch, color="#555555", ls=":", lw=1.2, label=label)))
    return lines


def _profiles(data: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {name: p for name, p in (data.get("per_op") or {}).items() if p}


def _per_op_panel(ax: Any, data: Mapping[str, Any]) -> None:
    profiles = _profiles(data)
    names = list(profiles)
    left = [0.0] * len(names)
    for group in OP_GROUPS:
        values = [profiles[n]["groups_us"].get(group, 0.0) for n in names]
        ax.barh(
            range(len(names)),
            values,
            0.5,
            left=left,
            color=GROUP_COLORS[group],
            label=GROUP_LABELS[group],
        )
        left = [a + b for a, b in zip(left, values)]
    for y, (name, total) in enumerate(zip(names, left)):
        run = profiles[name].get("run_us_per_run")
        said = f"{total:.1f} µs in nodes" + (f", {run:.1f} µs per run" if run else "")
        ax.annotate(
            said, (total, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=6
        )
    roles = {data["default"]: "default", data["winner"]: "winner"}
    if data["default"] == data["winner"]:
        roles[data["default"]] = "default, winner"
    ax.set_yticks(
        range(len(names)), [f"{n} ({roles[n]})" if n in roles else n for n in names], fontsize=7
    )
    ax.invert_yaxis()
    ax.set_xlim(0, max([*left, 1e-3]) * 1.8)
    ax.set_xlabel("µs per run by op group (ORT profile, node time)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title("Where the time goes", fontsize=8)


def tune_figure(data: Mapping[str, Any]) -> Figure:
    """The candidates (top) and, when profiled, where the default's and winner's time goes."""
    top = 0.24 * max(1, len(timed_candidates(data))) + 1.2
    profiles = _profiles(data)
    bottom = 0.4 * len(profiles) + 1.2 if profiles else 0.0
    fig = Figure(figsize=(10, top + bottom + 0.8), layout="constrained")
    grid = fig.add_gridspec(
        2 if profiles else 1, 1, height_ratios=[top, bottom] if profiles else [1]
    )
    _candidates_panel(fig.add_subplot(grid[0]), data)
    if profiles:
        _per_op_panel(fig.add_subplot(grid[1]), data)
    fig.suptitle(_title(data), fontsize=9)
    return fig


def write_plot(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Draw :func:`tune_figure` and write it as a PNG at ``path``; returns the path."""
    return save_figure(tune_figure(data), Path(path))


def plot_png(data: Mapping[str, Any]) -> bytes:
    """:func:`tune_figure` as PNG bytes."""
    return figure_png(tune_figure(data))
