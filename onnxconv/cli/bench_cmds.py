"""``onnxconv bench`` (ONNX Runtime against PyTorch) and ``bench-compare`` (two reports)."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..errors import ModuleUnavailable, OnnxconvError
from ..report import json_text
from .common import (
    csv_list,
    export_folder_graphs,
    format_table,
    module_arguments,
    parse_config,
    positive_int,
    positive_int_list,
    progress_printer,
    recipe_from_args,
    thread_count,
    write_reports,
)


def cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .. import variants
    from ..bench import compare as bench_compare
    from ..bench import harness as bench
    from ..bench import report as bench_report

    baseline = None
    if args.baseline:  # checked before anything is timed
        baseline = bench_report.load_report(args.baseline)
        bench_compare.check_max_slowdown(args.max_slowdown)
    # No TARGET: the graphs of the --graphs folder as they are there (each with PyTorch at the
    # config its manifest records); a folder without a manifest names zoo variants by its
    # subfolders.
    items = (
        [str(p) for t in args.targets for p in (export_folder_graphs(t) or [t])]
        or [str(p) for p in export_folder_graphs(args.graphs)]
        or [
            p.name
            for p in sorted(Path(args.graphs).glob("*"))
            if (p / "model.onnx").exists() and p.name in variants.REGISTRY
        ]
    )
    module = recipe_from_args(args, need_inputs=False)[0].to_dict() if args.module else None
    if not items:
        raise OnnxconvError(f"{args.graphs}: nothing to bench (name variants or .onnx files)")
    show: Callable[[int, int, str], None] | None = None
    if not args.quiet:
        printer = progress_printer("timing")

        def show_progress(done: int, total: int, message: str) -> None:
            printer(message if done < total else "", done, total)

        show = show_progress
    overrides: dict[str, str] = {}
    per_variant: dict[str, dict[str, str]] = {}
    for key, value in parse_config(args.config).items():
        name, dot, field = key.rpartition(".")
        if dot:
            per_variant.setdefault(name, {})[field] = value
        else:
            overrides[key] = value
    from ..runtime import ep_unavailable_reason

    for ep in args.ep or []:  # a required EP is checked before anything is timed or written
        reason = ep_unavailable_reason(ep) if ep in bench.EPS else None
        if reason is not None:
            print(f"onnxconv bench: required EP {ep} is not active: {reason}", file=sys.stderr)
            return 1
    settings = bench.BenchSettings(
        threads=args.threads,
        batches=tuple(args.batch or [1]),
        own_batches=args.batch is None,
        eps=None if args.ep is None else tuple(args.ep),
        opt_levels=bench.OPT_LEVELS if args.opt_level is None else tuple(args.opt_level),
        precisions=tuple(args.precision),
        rounds=args.rounds,
        blocks=args.blocks,
        calls=args.calls,
        compile=args.compile,
        profile=not args.no_profile,
        per_node=args.per_node,
        roofs=not args.no_roofs,
        cuda_options={
            "cudnn_conv_algo_search": args.cudnn_conv_algo_search,
            "use_tf32": "1" if args.tf32 else "0",
        },
    )
    try:
        report = bench.run_bench(
            items,
            settings,
            overrides=overrides,
            variant_overrides=per_variant,
            progress=show,
            module=module,
            manifest_modules=not args.no_module,
        )
    except ModuleUnavailable as error:
        raise OnnxconvError(f"{error}; --no-module times ONNX Runtime alone there") from None
    written = bench_report.write_report(report, args.out, plots=not args.no_plots)
    headers, rows = bench_report.summary_rows(report)
    print(format_table(headers, rows))
    for cell in report.cells:
        if cell["status"] == "undeployable":  # nothing to time, and why
            print(f"note: {cell['id']}: {cell['error']}")
    for note in report.notes:
        print(f"note: {note}")
    print(
        "\nreport: "
        + ", ".join(str(p) for p in [written["json"], written["markdown"], *written["plots"]] if p)
    )
    errors = report.errors
    missing = {
        c["ep"]: c["error"]
        for c in report.cells
        if c["status"] == "unavailable" and c["ep"] in (args.ep or [])
    }
    for cell in errors:
        print(f"onnxconv bench: {cell['id']}: {cell['error']}", file=sys.stderr)
    for ep, reason in sorted(missing.items()):
        print(f"onnxconv bench: required EP {ep} is not active: {reason}", file=sys.stderr)
    slower = 0
    if baseline is not None:
        print()
        slower = print_comparison(
            baseline, report, args.baseline, str(written["json"]), args.max_slowdown
        )
    return 1 if errors or missing or slower else 0


#: The verdicts of a cell that was compared (the others: not timed, not comparable).
JUDGED = ("slower", "faster", "unclear", "same")


def cmd_bench_compare(args: argparse.Namespace) -> int:
    from ..bench import report as bench_report

    baseline = bench_report.load_report(args.baseline)
    current = bench_report.load_report(args.current)
    return print_comparison(
        baseline, current, args.baseline, args.current, args.max_slowdown, args.json, args.markdown
    )


def print_comparison(
    baseline,
    current,
    baseline_path: str,
    current_path: str,
    max_slowdown: float,
    json_path: str | None = None,
    markdown_path: str | None = None,
) -> int:
    """Print (and write) the comparison of two bench reports; 1 when the interval of a cell
    lies wholly above the threshold (a statistically supported slowdown)."""
    from ..bench import compare as bench_compare

    comparison = bench_compare.compare_reports(baseline, current, max_slowdown)
    comparison["baseline"]["path"], comparison["current"]["path"] = baseline_path, current_path
    for line in comparison["differences"] or ["nothing (same machine, versions and settings)"]:
        print(f"differs: {line}")
    for line in comparison["warnings"]:
        print(f"warning: {line}")
    rows = [
        (*values, "SLOWER" if verdict == "slower" else verdict)
        for *values, verdict in bench_compare.cell_rows(comparison)
    ]
    print(format_table(bench_compare.CELL_HEADERS, rows))
    for line in bench_compare.only_in_lines(comparison):
        print(line)
    print(f"\n{bench_compare.tally(comparison)}\n{bench_compare.rule(comparison)}")
    judged = [r for r in comparison["cells"] if r["verdict"] in JUDGED]
    if not judged:  # a gate that compared nothing must not pass
        not_judged = sorted({r["verdict"] for r in comparison["cells"]})
        print(
            f"nothing compared: no cell of {current_path} is in {baseline_path} "
            "(the same variant, batch, backend, target and config)"
            if not comparison["cells"]
            else f"nothing compared: every cell in both runs is {' or '.join(not_judged)}",
            file=sys.stderr,
        )
    write_reports(
        {
            json_path: lambda: json_text(comparison),
            markdown_path: lambda: bench_compare.to_markdown(comparison),
        }
    )
    return 1 if comparison["slower"] or not judged else 0


def add_bench(sub: argparse._SubParsersAction) -> None:
    from ..bench.compare import DEFAULT_MAX_SLOWDOWN

    p = sub.add_parser("bench", help="time ONNX Runtime against PyTorch, side by side")
    module_arguments(
        p,
        "the PyTorch module of the one .onnx TARGET, timed beside it; graphs exported with "
        "--module bring their own",
    )
    p.add_argument(
        "--no-module",
        action="store_true",
        help="do not import the module a graph's manifest names (its code is not here): time "
        "ONNX Runtime alone for that graph",
    )
    p.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="variant names, .onnx files or folders holding model.onnx (default: the variants "
        "in --graphs); a tuned.json (or the folder tune --out wrote): the "
        "graph `onnxconv tune` chose, on its own EP, level, precision and session settings only",
    )
    p.add_argument(
        "--graphs",
        default="graphs",
        help="without TARGETs, time the graphs of this export folder as they are, PyTorch at "
        "the config its manifest records (default: graphs)",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every variant that has KEY, e.g. height=56; "
        "VARIANT.KEY=VALUE for one variant only",
    )
    p.add_argument(
        "--threads",
        type=thread_count,
        default=1,
        help="threads for both runtimes (default 1, the stable baseline)",
    )
    p.add_argument(
        "--batch",
        type=positive_int_list,
        help="comma-separated batch sizes (default: 1; a graph with a fixed batch, or a tuned "
        "folder, at its own)",
    )
    p.add_argument(
        "--ep",
        action="append",
        metavar="EP",
        help="ONNX Runtime EP (repeatable; default cpu, and cuda where active)",
    )
    p.add_argument(
        "--opt-level",
        type=csv_list,
        default=None,
        help="comma-separated optimisation levels (default: all four)",
    )
    p.add_argument(
        "--precision",
        type=csv_list,
        default=["fp32"],
        help="comma-separated deployments ORT times, e.g. fp32,fp16,int8 (see validate "
        "--precision; int8 calibrated on 16 generated inputs; PyTorch runs fp32; default fp32)",
    )
    p.add_argument(
        "--rounds",
        type=positive_int,
        default=3,
        help="alternating ORT/PyTorch process pairs (default 3: odd, so the median is a round)",
    )
    p.add_argument(
        "--blocks", type=positive_int, default=5, help="timed blocks per cell (default 5)"
    )
    p.add_argument(
        "--calls", type=positive_int, default=100, help="timed calls per block (default 100)"
    )
    p.add_argument("--compile", action="store_true", help="add a torch.compile column")
    p.add_argument("--no-profile", action="store_true", help="skip the per-op profile")
    p.add_argument(
        "--cudnn-conv-algo-search",
        choices=("EXHAUSTIVE", "HEURISTIC", "DEFAULT"),
        default="EXHAUSTIVE",
        help="CUDA EP convolution algorithm search (recorded)",
    )
    p.add_argument(
        "--tf32",
        action="store_true",
        help="allow TF32 on the CUDA EP and in PyTorch on CUDA (off by default)",
    )
    p.add_argument(
        "--per-node",
        action="store_true",
        help="also time every node alone on the EP (device time on CUDA, where ORT's "
        "profile only sees launches)",
    )
    p.add_argument("--no-roofs", action="store_true", help="skip the roofline measurement")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    p.add_argument("--out", default="reports/bench", help="report folder (default reports/bench)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--baseline",
        metavar="BENCH_JSON",
        help="compare with an earlier bench.json afterwards (see bench-compare); "
        "exit 1 when a cell is slower beyond the noise",
    )
    p.add_argument(
        "--max-slowdown",
        type=float,
        default=DEFAULT_MAX_SLOWDOWN,
        help="with --baseline: slower means the whole 95%% interval of current / baseline lies "
        f"above this (default {DEFAULT_MAX_SLOWDOWN})",
    )


def add_bench_compare(sub: argparse._SubParsersAction) -> None:
    from ..bench.compare import DEFAULT_MAX_SLOWDOWN

    p = sub.add_parser(
        "bench-compare",
        help="two bench reports side by side; exit 1 when a cell is slower beyond the noise",
    )
    p.add_argument("baseline", help="the earlier bench.json")
    p.add_argument("current", help="the later bench.json")
    p.add_argument(
        "--max-slowdown",
        type=float,
        default=DEFAULT_MAX_SLOWDOWN,
        help="a cell is slower when the whole 95%% interval of current / baseline (bootstrap "
        f"over rounds and blocks) lies above this (default {DEFAULT_MAX_SLOWDOWN})",
    )
    p.add_argument("--json", help="write the comparison as JSON")
    p.add_argument("--markdown", help="write the comparison as Markdown")
