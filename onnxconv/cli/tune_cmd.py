"""``onnxconv tune``: the fastest proven-equal formulation of one graph on one EP."""

from __future__ import annotations

import argparse
import sys
import textwrap

from ..errors import OnnxconvError
from ..quant_metrics import TOLERANCES
from ..report import check_destinations, write_files
from .common import (
    COMMITTED_GRAPHS,
    attach_cli_module,
    csv_list,
    format_table,
    graphs_parent,
    module_arguments,
    positive_int,
    report_arguments,
    thread_count,
)


def cmd_tune(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from .. import runtime, validate
    from ..errors import CheckFailed
    from ..locking import work_folder
    from ..quant_metrics import parse_budget
    from ..tune import report as tune_report
    from ..tune.options import BUDGET_PRECISIONS, TuneOptions
    from ..tune.rewrites import REWRITES, check_names
    from ..tune.search import tune
    from ..tune.timing import Method

    started = time.monotonic()  # the time budget counts loading (or exporting) the graph too
    if args.markdown:  # main checked the page's path; its plot goes beside it
        check_destinations([tune_report.plot_path(args.markdown)])
    if args.retries < 0:
        raise OnnxconvError(f"--retries must be 0 or more, got {args.retries}")
    if args.ep not in ("cpu", "cuda"):
        runtime.Target(args.ep)  # an unknown EP name is a usage error
        raise OnnxconvError(f"tune times the cpu and cuda EPs only, not {args.ep!r}")
    rewrites = list(REWRITES) if args.rewrites is None else args.rewrites
    rewrites = [] if rewrites == ["none"] else rewrites
    check_names(rewrites)
    if args.ep != "cpu" and (reason := runtime.ep_unavailable_reason(args.ep)) is not None:
        raise CheckFailed(f"{args.ep} EP unavailable: {reason}")
    budget = None if args.accuracy_budget is None else parse_budget(args.accuracy_budget)
    precisions = args.precision or (list(BUDGET_PRECISIONS) if budget else [])
    options = TuneOptions(
        precisions=tuple(precisions),
        budget=budget,
        calibration=args.calibration,
        time_budget_s=args.time_budget,
        explain=args.explain,
        ep=args.ep,
        batch=args.batch,
        rewrites=tuple(rewrites),
        search_settings=not args.no_settings,
        profile=not args.no_profile,
        method=Method(
            threads=args.threads,
            rounds=args.rounds,
            blocks=args.blocks,
            calls=args.calls,
            retries=args.retries,
        ),
    )
    subject = validate.load_subject(args.target, args.graphs)
    if args.module:
        attach_cli_module(args, subject)
    if not subject.model_path.is_file() and not args.out:
        raise OnnxconvError(
            f"{args.target}: exported now, so there is nothing to write beside; name --out DIR"
        )
    out = Path(args.out) if args.out else subject.model_path.parent
    if not args.out and out.resolve().parent == COMMITTED_GRAPHS:
        raise OnnxconvError(
            f"{out}: a folder of this checkout's committed graphs/, which the tests check "
            "against a fresh export; name --out DIR for the tuned deployment"
        )
    if out.exists() and not out.is_dir():
        raise OnnxconvError(f"{out}: not a folder (--out)")

    def say(message: str) -> None:
        if not args.quiet:
            print(f"tune: {message}", file=sys.stderr, flush=True)

    with work_folder("tune") as tmp:
        report = tune(subject, options, tmp, say, started)
    rows = []
    for c in report.candidates:
        stats = (c.timing.stats if c.timing else None) or {}
        proof = c.proof
        rows.append(
            (
                c.stage,
                c.name + ("  <- winner" if c is report.winner else ""),
                tune_report.proof_word(proof.to_dict()).replace("no:", "NO", 1),
                "—" if proof.bit_identical is None else "yes" if proof.bit_identical else "no",
                f"{stats['p50_ms']:.4g}" if stats else "—",
                f"{stats['p90_ms']:.4g}" if stats else "—",
                f"{c.speedup:.2f}" if c.speedup is not None else "—",
                f"{c.torch_over_ort:.2f}" if c.torch_over_ort is not None else "—",
                tune_report.beats_text(c.reference, c.beats_reference),
            )
        )
    print(
        format_table(
            [
                "stage",
                "candidate",
                "proof",
                "bit-identical",
                "p50 ms",
                "p90 ms",
                "x default",
                "torch/ORT",
                "beats ref",
            ],
            rows,
        )
    )
    print(f"({tune_report.WIN_RULE})")
    for c in report.candidates:
        if c.proof.disqualified:
            print(f"disqualified {c.name}: {textwrap.shorten(c.proof.disqualified, 200)}")
    # One write: the tuned pair and the reports together, under the folders' locks with signals
    # held off, so that neither an interrupt nor a second tune into --out leaves a mixed pair.
    tuned = tune_report.tuned_files(report, out)
    write_files({**tuned, **tune_report.report_files(report, args.json, args.markdown)})
    model_path, json_path = tuned
    print(f"\n{report.decision}")
    if report.bound:
        print(f"bound: {report.bound.get('sentence') or report.bound.get('error')}")
    for note in report.notes:
        print(f"note: {note}")
    if report.winner.torch_over_ort is not None:
        doubt = {"PyTorch eager", report.winner.name} & set(report.held_up)
        print(
            f"PyTorch eager p50 / {report.winner.name} p50: {report.winner.torch_over_ort:.2f} "
            + (
                f"(held up: {', '.join(sorted(doubt))}, see the note; it says little)"
                if doubt
                else "(> 1: ORT faster)"
            )
        )
    print(f"wrote {model_path}, {json_path}")
    return 0


def add_tune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        parents=[graphs_parent()],
        help="the fastest proven-equal formulation and session settings of one graph on one EP",
    )
    p.add_argument("target", metavar="TARGET", help="variant name, test-data folder or .onnx file")
    module_arguments(
        p, "the PyTorch module TARGET should compute: it decides the proofs and is timed beside"
    )
    p.add_argument("--ep", default="cpu", help="execution provider: cpu (default) or cuda")
    p.add_argument(
        "--threads", type=thread_count, default=1, help="threads for ORT and PyTorch (default 1)"
    )
    p.add_argument(
        "--batch",
        type=positive_int,
        help="batch size (default: the graph's; any when it is dynamic)",
    )
    p.add_argument(
        "--rewrites",
        type=csv_list,
        help="comma-separated rewrites to try, or none (default: all: "
        "shuffle_rank4, shuffle_gather, shuffle_fold, shuffle_fold_dense, grouped_split, "
        "grouped_dense, grouped_merge, grouped_pad)",
    )
    p.add_argument("--no-settings", action="store_true", help="keep the default session settings")
    p.add_argument(
        "--accuracy-budget",
        metavar="BOUNDS",
        help="let tune choose a lower precision, proven within these bounds of the fp32 source: "
        f"metric=value,... over {', '.join(TOLERANCES)} (unnamed metrics keep validate's int8 "
        "tolerances), or 'default' for those tolerances. Without it tune stays at fp32",
    )
    p.add_argument(
        "--precision",
        type=csv_list,
        help="lower precisions to try under --accuracy-budget: fp16, fp16-onnxconv, int8, "
        "int8-tensor, int8-dynamic (default with a budget: fp16,int8)",
    )
    p.add_argument(
        "--calibration",
        choices=("minmax", "entropy", "percentile"),
        default="minmax",
        help="int8 calibration method (default minmax; 16 generated inputs)",
    )
    p.add_argument(
        "--rounds", type=positive_int, default=3, help="alternating rounds per stage (default 3)"
    )
    p.add_argument(
        "--blocks", type=positive_int, default=5, help="timed blocks per process (default 5)"
    )
    p.add_argument(
        "--calls", type=positive_int, default=100, help="timed calls per block (default 100)"
    )
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="run a timing again when other processes contended for the CPU (pressure above "
        "10%%), after waiting up to 60 s for quiet, up to this many times (default 2)",
    )
    p.add_argument("--no-profile", action="store_true", help="skip the per-op profile")
    p.add_argument(
        "--explain",
        action="store_true",
        help="time every node of the winner alone and the machine's roofs, and say what bounds "
        "it, also when it beats PyTorch eager (done anyway when it does not)",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        metavar="SECONDS",
        help="end within about this many seconds: a candidate, profile or analysis starts "
        "only while its proof and timing are projected (from this run's measured costs) to end "
        "within it; the original's proof and the first timing stage always run, what is "
        "skipped is named in the report, and the choice is made from what was timed "
        "(default: no limit)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where model.tuned.onnx and tuned.json go (default: beside the original)",
    )
    report_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
