"""``onnxconv validate`` (the parity matrix) and ``detect`` (the mutation suite through it)."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

from ..errors import ModuleUnavailable, OnnxconvError
from ..quant_metrics import TOLERANCES, parse_budget
from ..report import json_text
from .common import (
    attach_cli_module,
    csv_list,
    export_folder_graphs,
    format_table,
    graphs_parent,
    int_list,
    module_arguments,
    positive_int_list,
    progress_printer,
    report_arguments,
    thread_count,
    write_reports,
)


def read_npz(path: str) -> dict:
    """The arrays of a ``.npz`` by name; a user error (one line) when it cannot be read."""
    import numpy as np

    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as error:
        raise OnnxconvError(f"{path}: not a readable .npz file ({error})") from None


#: validate's precisions when --precision is not given.
DEFAULT_PRECISIONS = ["fp32", "fp16"]


def _validate_matrix(args: argparse.Namespace) -> tuple[Any, list[str], dict[str, str]]:
    """validate's matrix over the TARGETs (or the graphs folder): the report, the EPs in it and
    those left out with their reasons."""
    from .. import feeds, precisions, runtime, validate
    from ..export import graph_folders
    from ..parity import Tolerance, default_tolerance

    if not args.targets:  # the folder's own list: its manifest must match what is on disk
        from pathlib import Path

        validate.check_graphs_dir(Path(args.graphs))
    targets = [str(p) for t in args.targets for p in (export_folder_graphs(t) or [t])] or [
        str(p) for p in graph_folders(args.graphs)
    ]
    if not targets:
        raise OnnxconvError(
            f"{args.graphs}: no graphs to validate (run: onnxconv export "
            f"--committed --out {args.graphs})"
        )
    eps, left_out = args.ep, {}
    if not eps:
        eps, left_out = runtime.default_eps()
    for level in args.opt_level:
        runtime.check_opt_level(level)
    for ep in eps:
        runtime.Target(ep)  # unknown EP names fail here, as usage errors
    tol = None
    if args.atol is not None or args.rtol is not None:
        base = default_tolerance("fp32", "cpu")
        tol = Tolerance(
            base.atol if args.atol is None else args.atol,
            base.rtol if args.rtol is None else args.rtol,
        )
    extra = read_npz(args.inputs) if args.inputs else None
    for name, array in (extra or {}).items():
        validate.check_finite_input(f"{args.inputs}, array {name!r}", array)
    if args.int8_samples < 1:
        raise OnnxconvError(f"--int8-samples must be at least 1, got {args.int8_samples}")
    if args.max_input_gb <= 0:
        raise OnnxconvError(f"--max-input-gb must be positive, got {args.max_input_gb}")
    unrequested = () if args.precision else ("fp16",)
    args.precision = args.precision or list(DEFAULT_PRECISIONS)
    for precision in args.precision:
        precisions.get(precision)  # an unknown name is a usage error, before any work
    if args.target_opset is not None:
        from ..opset import check_target

        check_target(args.target_opset)
    subjects = [validate.load_subject(t, args.graphs, not args.no_module) for t in targets]
    if args.module:
        if len(subjects) != 1:
            raise OnnxconvError("--module speaks for one graph: name exactly one TARGET")
        attach_cli_module(args, subjects[0])
    calibration = None
    if args.calibration_data:
        if len(subjects) != 1:
            raise OnnxconvError("--calibration-data is for one graph: name exactly one TARGET")
        calibration = feeds.samples(
            subjects[0].model, read_npz(args.calibration_data), args.calibration_data
        )
    report = validate.validate(
        subjects,
        eps,
        args.opt_level,
        args.precision,
        unrequested=unrequested,
        seeds=args.seeds,
        batches=args.batch,
        extra_inputs=extra,
        tol=tol,
        threads=args.threads,
        localise_failures=not args.no_localise,
        cuda_options={
            "cudnn_conv_algo_search": args.cudnn_conv_algo_search,
            "use_tf32": "1" if args.tf32 else "0",
        },
        trust_stored=args.stored == "trusted",
        max_input_bytes=int(args.max_input_gb * 2**30),
        progress=None if args.quiet else progress_printer("validating"),
        calibration=calibration,
        calibration_method=args.calibration,
        int8_samples=args.int8_samples,
        target_opset=args.target_opset,
        accuracy_budget=None
        if args.accuracy_budget is None
        else parse_budget(args.accuracy_budget),
    )
    return report, eps, left_out


def cmd_validate(args: argparse.Namespace) -> int:
    from .. import validate
    from ..tune import recheck

    tuned = [t for t in args.targets if recheck.is_tuned_record(t)]
    try:
        if tuned:
            if len(args.targets) != 1:
                raise OnnxconvError("a tuned.json is validated alone: name it as the only TARGET")
            if args.accuracy_budget is not None:
                raise OnnxconvError(
                    "--accuracy-budget: a tuned.json is checked again within the budget it was "
                    "tuned with"
                )
            deployment = recheck.load_tuned(
                tuned[0], rebuild_modules=not args.no_module, recorded_module=not args.module
            )
            if args.module:
                attach_cli_module(args, deployment.original)
            report = recheck.recheck(deployment, args.threads)
            eps, left_out = [deployment.record.ep], {}
        else:
            report, eps, left_out = _validate_matrix(args)
    except ModuleUnavailable as error:
        raise OnnxconvError(
            f"{error}; --no-module lets the folder's stored outputs decide"
        ) from None
    for line in subject_note_lines(report.subjects):
        print(line)
    for ep, reason in left_out.items():
        print(f"note: {ep} is not in the matrix: {reason} (name it with --ep {ep} to require it)")
    if args.brief:
        print(
            format_table(
                ["graph", "ep", "cells", "worst max abs", "note"], validate.brief_rows(report.cells)
            )
        )
    else:
        rows = []
        for cell in report.cells:
            placement = ", ".join(f"{ep}:{n}" for ep, n in cell.placement.items())
            status = (
                cell.status
                if cell.status == "pass"
                else f"{cell.status.upper()} {cell.kind}".strip()
            )
            rows.append(
                (
                    cell.subject,
                    cell.target,
                    status,
                    validate.headline_text(cell),
                    placement,
                    textwrap.shorten(cell.reason, 110, placeholder=" …"),
                )
            )
        print(format_table(["graph", "target", "status", "worst max abs", "nodes", "note"], rows))
    cut = next((c for c in report.cells if c.status != "pass" and len(c.reason) > 110), None)
    if cut is not None:  # the table cuts notes to fit: the first problem in full
        print(f"\n{cut.subject} {cut.target}: {cut.reason}")
        if not (args.json or args.markdown):
            print("(the table cuts notes to fit; --json or --markdown keeps every one whole)")
    summary = report.summary()
    print("\n" + ", ".join(f"{n} {status}" for status, n in sorted(summary.items())))
    if args.accuracy_budget is not None and not any(c.quant for c in report.cells):
        print(
            "note: --accuracy-budget judged nothing: it bounds int8 cells (--precision int8...) "
            "and graphs that came quantized, and there were none"
        )
    report.settings["eps_left_out"] = left_out
    write_reports(
        {
            args.json: lambda: json_text(report.to_dict()),
            args.markdown: lambda: validate.to_markdown(report),
        }
    )
    required = set(args.ep or []) if not args.require_ep else set(eps) | set(left_out)
    reasons = {
        **left_out,
        **{
            c.target.split("/")[0]: c.reason
            for c in report.cells
            if c.status == "unavailable" and c.kind != "conversion"  # not the EP: no deployment
        },
    }
    missing = sorted(ep for ep in required if ep in reasons)
    if missing:
        for ep in missing:
            print(
                f"onnxconv validate: required EP {ep} is not active: {reasons[ep]}", file=sys.stderr
            )
        return 1
    if report.cells and all(c.status == "unavailable" for c in report.cells):
        print(
            "onnxconv validate: nothing was validated: every cell is unavailable "
            f"({report.cells[0].target}: {report.cells[0].reason})",
            file=sys.stderr,
        )
        return 1
    if args.strict and summary.get("warn"):
        first = next(c for c in report.cells if c.status == "warn")
        print(
            f"onnxconv validate: --strict: {summary['warn']} cell(s) warn, e.g. {first.subject} "
            f"{first.target}: {first.kind}",
            file=sys.stderr,
        )
        return 1
    return 1 if summary.get("fail") else 0


def cmd_detect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .. import detection

    originals = detection.zoo_originals(Path(args.graphs), args.graph or None)
    for folder in args.folder:
        originals.append(detection.load_original(Path(folder)))
    report = detection.run_suite(
        originals,
        ep=args.ep,
        layouts=args.layout,
        names=args.mutation or None,
        levels=args.opt_level,
        seeds=args.seeds,
        clean_seeds=args.clean_seeds,
        precision=args.precision,
        progress=None if args.quiet else progress_printer("planting"),
    )
    rows = [
        (
            p.graph,
            p.mutation + (" (subtle)" if p.subtle else ""),
            p.layout,
            "caught" if p.caught else "MISSED",
            f"{p.status} {p.kind}".strip(),
            f"{p.margin:.3g}x" if p.margin is not None else "",
            f"{p.tight_status} (clean {p.tight_clean})" if p.tight_status else "",
        )
        for p in report.planted
    ]
    print(
        format_table(
            ["graph", "mutation", "layout", "result", "verdict", "margin", "tight tolerance"], rows
        )
    )
    if any(p.subtle and p.caught and p.status != "fail" for p in report.planted):
        print(
            "(subtle: planted below the default tolerance by design, so they pass there; "
            "caught: they fail at the tight tolerance, where the unmutated graph passes)"
        )
    for clean in report.clean:
        if clean.false_alarm:
            print(
                f"FALSE ALARM {clean.graph} ({clean.layout}, {clean.tolerance}): "
                f"{textwrap.shorten(clean.reason, 200, placeholder=' …')}"
            )
    s = report.summary()
    print(
        f"\ncaught {s['caught']} of {s['planted']} planted defects "
        f"({s['subtle_caught_only_at_tight']} subtle ones at the tight tolerance); "
        f"false alarms {s['false_alarms']} of {s['clean_checks']} clean checks"
    )
    write_reports(
        {
            args.json: lambda: json_text(report.to_dict()),
            args.markdown: lambda: detection.to_markdown(report),
        }
    )
    return 0 if report.ok else 1


def add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        parents=[graphs_parent()],
        help="parity PyTorch <-> ONNX Runtime per EP, level, precision",
    )
    p.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="variant name, test-data folder or .onnx file (default: all in --graphs); or a "
        "tuned.json (or the folder tune --out wrote) alone: the deployment `onnxconv tune` "
        "chose, checked again with its recorded EP, settings, precision and budget (the "
        "--ep/--opt-level/--precision matrix does not apply)",
    )
    module_arguments(
        p,
        "the PyTorch module the one TARGET graph should compute: adds the PyTorch opinion to a "
        "bare .onnx or a folder without a manifest",
    )
    p.add_argument(
        "--ep",
        action="append",
        metavar="EP",
        help="execution provider (repeatable; default: cpu and every other EP active "
        "here, the others named in one line); naming one makes it required",
    )
    p.add_argument(
        "--opt-level",
        type=csv_list,
        default=["disabled", "basic", "extended", "all"],
        help="comma-separated: disabled,basic,extended,all (default: all four)",
    )
    p.add_argument(
        "--precision",
        type=csv_list,
        default=None,
        help="comma-separated deployments: fp32, fp16 (onnxconverter-common, fp32 I/O), fp16-io "
        "(fp16 I/O), fp16-onnxconv (onnxconv's converter), int8 (static QDQ, per-channel), "
        "int8-tensor (per-tensor weights), int8-dynamic (default: fp32,fp16, where a graph "
        "the fp16 converter cannot convert is unavailable, not failed)",
    )
    p.add_argument(
        "--target-opset",
        type=int,
        metavar="N",
        help="validate each graph as converted to opset N (onnx's version converter, else "
        "exported again by the TorchScript exporter where a PyTorch module speaks for it)",
    )
    p.add_argument(
        "--calibration",
        choices=("minmax", "entropy", "percentile"),
        default="minmax",
        help="int8 calibration method (default minmax)",
    )
    p.add_argument(
        "--calibration-data",
        metavar="NPZ",
        help="int8 calibration inputs: a .npz with one array per model input, samples on the "
        "batch axis (default: 16 generated inputs)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when any cell warns (insensitive, stale stored outputs, a suspect reference "
        "evaluator...), not only when one fails: for a CI gate that must prove something",
    )
    p.add_argument(
        "--accuracy-budget",
        metavar="BOUNDS",
        help="judge int8 cells, and a graph that came quantized, within these bounds of the "
        f"fp32 source: metric=value,... over {', '.join(TOLERANCES)} (unnamed metrics keep the "
        "default int8 tolerances)",
    )
    p.add_argument(
        "--int8-samples",
        type=int,
        default=48,
        help="generated inputs an int8 deployment is judged on, besides the stored ones "
        "(default 48)",
    )
    p.add_argument(
        "--seeds", type=int_list, default=[0, 1], help="comma-separated seeds (default 0,1)"
    )
    p.add_argument(
        "--batch",
        type=positive_int_list,
        help="batch sizes for generated inputs (default: "
        "1, and 2 too when the batch axis is dynamic)",
    )
    p.add_argument("--inputs", help=".npz of inputs by name (one more case)")
    p.add_argument("--atol", type=float, help="absolute tolerance for every target")
    p.add_argument("--rtol", type=float, help="relative tolerance for every target")
    p.add_argument("--threads", type=thread_count, help="ONNX Runtime intra-op threads")
    p.add_argument(
        "--cudnn-conv-algo-search",
        choices=("EXHAUSTIVE", "HEURISTIC", "DEFAULT"),
        default="EXHAUSTIVE",
        help="CUDA EP convolution algorithm search",
    )
    p.add_argument(
        "--tf32",
        action="store_true",
        help="allow TF32 on the CUDA EP (off by default: it changes fp32 numerics)",
    )
    p.add_argument(
        "--require-ep",
        action="store_true",
        help="exit 1 when any EP of the matrix, or one left out of the default "
        "matrix (e.g. cuda without a GPU), is not active",
    )
    p.add_argument(
        "--no-localise",
        action="store_true",
        help="do not search for the first divergent node of a failure",
    )
    p.add_argument(
        "--no-module",
        action="store_true",
        help="do not import the module a folder's manifest names (its code is not here): "
        "the folder's stored outputs decide",
    )
    p.add_argument(
        "--stored",
        choices=("trusted", "untrusted"),
        default="trusted",
        help="whether stored test outputs decide where no PyTorch module does "
        "(default trusted; 'untrusted': shown, never deciding, for outputs "
        "known to be stale)",
    )
    p.add_argument(
        "--max-input-gb",
        type=float,
        default=4.0,
        help="refuse generated inputs above this size per case (default 4 GiB)",
    )
    report_arguments(p)
    p.add_argument(
        "--brief", action="store_true", help="one line per graph and EP instead of one per cell"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_detect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="the mutation suite: plant defects in graphs, count what "
        "validate catches and its false alarms",
    )
    p.add_argument("--graphs", default="graphs", help="a folder written by onnxconv export")
    p.add_argument(
        "--graph",
        action="append",
        metavar="NAME",
        help="only this graph of --graphs (repeatable; default all)",
    )
    p.add_argument(
        "--folder",
        action="append",
        default=[],
        metavar="PATH",
        help="also a test-data folder without a manifest (repeatable)",
    )
    p.add_argument(
        "--mutation",
        action="append",
        metavar="NAME",
        help="only this mutation (repeatable; default all that apply): shuffle_perm_identity, "
        "shuffle_groups_swapped, transpose_hw, weight_sign_flip, weight_nudge, conv_dilation, "
        "conv_pads, bn_epsilon, bn_scale, add_to_sub, output_scaled, fp16_overflow, "
        "int8_weight_sign_flip, weight_scale_doubled, zero_point_shift (int8 only), "
        "stale_output",
    )
    p.add_argument("--ep", default="cpu", help="the EP every mutant is validated on (default cpu)")
    p.add_argument(
        "--precision",
        choices=["fp32", "int8"],
        default="fp32",
        help="int8: plant the defects in each graph's int8 deployment (QDQ, as validate "
        "--precision int8 makes it), judged by the int8 bounds (default fp32)",
    )
    p.add_argument(
        "--layout",
        type=csv_list,
        default=["folder", "module"],
        help="folder (test data, no manifest), module (bare graph beside its "
        "PyTorch module); default both",
    )
    p.add_argument(
        "--opt-level",
        type=csv_list,
        default=["all"],
        help="levels each mutant is validated at (default all)",
    )
    p.add_argument("--seeds", type=int_list, default=[0], help="seeds for each mutant")
    p.add_argument(
        "--clean-seeds",
        type=int_list,
        default=[0, 1, 2, 3, 4],
        help="seeds for the false-alarm check of the unmutated graphs",
    )
    report_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def subject_note_lines(subjects: list[dict[str, Any]]) -> list[str]:
    """Each distinct note once, prefixed with the graphs it is about when there are several."""
    labels: dict[str, list[str]] = {}
    for subject in subjects:
        for note in subject["notes"]:
            labels.setdefault(note, []).append(subject["label"])
    if len(subjects) < 2:
        return [f"note: {note}" for note in labels]
    return [f"note: {', '.join(names)}: {note}" for note, names in labels.items()]
