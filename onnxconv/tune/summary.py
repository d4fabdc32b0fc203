"""One Markdown table over several tune reports: per graph, the default, PyTorch eager and the
winner, from the last stage (where the three ran in the same rounds), with what bounds the
winner and the time budget's note. What a ``reports/tune-*/README.md`` opens with.

    python -m onnxconv.tune.summary REPORT_JSON ... [--title TITLE] [--out README.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from onnxconv.errors import UserInputError
from onnxconv.machine import describe_gpus

from .bounds import sentence
from .plots import stats_of
from .report import load_report

HEADER = (
    "| graph | EP | batch | default ORT p50 ms | PyTorch eager p50 ms | winner | winner p50 ms "
    "| × default | torch/ORT (winner) | what bounds the winner |"
)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def row(path: Path, data: dict[str, Any]) -> str:
    """The report's line of the table."""
    try:
        candidates = data["candidates"]
        last = candidates[-1]["stage"]
        default = next(c for c in candidates if c["stage"] == last and c["name"] == data["default"])
        winner = next(c for c in candidates if c["winner"])
        torch = ((data["torch"].get(last) or {}).get("stats") or {}).get("p50_ms")
        kept = winner["name"] == data["default"]
        cells = [
            f"`{data['subject']['label']}`",
            data["ep"],
            str(data["batch"]),
            _ms(stats_of(default).get("p50_ms")),
            _ms(torch),
            "default kept" if kept else f"`{winner['name']}`",
            _ms(stats_of(winner).get("p50_ms")),
            "—"
            if kept or winner["speedup_vs_default"] is None
            else f"{winner['speedup_vs_default']:.2f}",
            "—" if winner["torch_over_ort"] is None else f"{winner['torch_over_ort']:.2f}",
            sentence(data.get("bound")) or "—",
        ]
    except (KeyError, IndexError, StopIteration, TypeError, AttributeError) as error:
        raise UserInputError(f"{path}: not a complete tune report ({error!r})") from None
    return "| " + " | ".join(cells) + " |"


def _setup(data: dict[str, Any]) -> str:
    """Where and how a report ran, in one line."""
    m, v = data.get("machine") or {}, data.get("versions") or {}
    gpus = describe_gpus(m) if data.get("ep") == "cuda" else None
    return (
        f"{gpus or m.get('cpu_model', '?')} ({m.get('usable_cores', '?')} CPU cores), "
        f"{data.get('threads', '?')} threads, onnxruntime {v.get('onnxruntime', '?')}, torch "
        f"{v.get('torch', '?')}, {str(data.get('created', '?'))[:10]}"
    )


def summarise(paths: list[Path], title: str) -> str:
    """The Markdown: the title, each distinct set-up, the table, and every time-budget note."""
    reports = [(path, load_report(path)) for path in paths]
    rows = [row(path, data) for path, data in reports]
    setups = list(dict.fromkeys(_setup(data) for _, data in reports))
    budget_notes = [
        f"- `{data['subject']['label']}` b{data['batch']}: {note}"
        for _, data in reports
        for note in data.get("notes", [])
        if "time budget" in note
    ]
    lines = [f"# {title}", "", *(f"- {s}" for s in setups), ""]
    lines += [
        "p50s from each report's last stage, where the default, the winner and PyTorch eager ran "
        "in the same rounds; × default: the median of the paired rounds; torch/ORT > 1: ORT "
        "faster.",
        "",
        HEADER,
        "|---|---|---:|---:|---:|---|---:|---:|---:|---|",
        *rows,
    ]
    if budget_notes:
        lines += ["", "Time budgets:", "", *budget_notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m onnxconv.tune.summary",
        description="one Markdown table over several tune reports",
    )
    parser.add_argument("reports", nargs="+", type=Path, metavar="REPORT_JSON")
    parser.add_argument("--title", default="onnxconv tune", help="the Markdown's heading")
    parser.add_argument("--out", type=Path, help="write it here (default: stdout)")
    args = parser.parse_args(argv)
    try:
        text = summarise(args.reports, args.title)
    except UserInputError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        args.out.write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"{parser.prog}: error: {args.out}: cannot write ({error.strerror})", file=sys.stderr)
        return 2
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
