"""The ``onnxconv`` command. The only module that parses arguments, prints and picks exit codes.

Exit codes: 0 every check passed; 1 a check failed; 2 usage or input error (one line, no
traceback unless --debug); 130 / 143 interrupted by SIGINT / SIGTERM (one line; nothing
half-written).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import textwrap
import threading
from typing import Any, Callable, Sequence

from .errors import Interrupted, OnnxconvError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def decorate(function: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = function
        return function

    return decorate


def parse_config(items: Sequence[str]) -> dict[str, str]:
    """``--config key=value`` (repeatable, or comma-separated) -> dict of strings."""
    config: dict[str, str] = {}
    for item in items:
        for pair in item.split(","):
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise OnnxconvError(f"--config {pair!r}: expected key=value")
            config[key.strip()] = value.strip()
    return config


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def json_text(data: Any) -> str:
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def write_reports(files: dict[str | None, Callable[[], str]]) -> None:
    """Write the report files asked for (paths that are not None), together: of two runs
    writing the same files the last wins whole (:func:`onnxconv.report.write_files`)."""
    from .report import write_files

    wanted = {path: render() for path, render in files.items() if path}
    if wanted:
        write_files(wanted)


@command("list")
def cmd_list(args: argparse.Namespace) -> int:
    from . import variants

    if args.name:
        spec = variants.get(args.name)
        config = spec.config()
        cost = spec.cost(config)
        print(f"{spec.name}: {spec.summary or spec.family} ({spec.paper})")
        print(f"params {human(cost.params)}, MACs {human(cost.macs)} at the defaults")
        print("config keys (set with --config KEY=VALUE):")
        print(format_table(["key", "default"], [(k, v) for k, v in config.items()]))
        return 0
    entries = []
    for spec in variants.REGISTRY.values():
        config = spec.config()
        cost = spec.cost(config)
        entries.append(
            dict(
                name=spec.name,
                family=spec.family,
                paper=spec.paper,
                summary=spec.summary,
                input_shape=list(spec.input_shape(config)),
                params=cost.params,
                macs=cost.macs,
                config=config,
            )
        )
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    rows = [
        (
            e["name"],
            "×".join(map(str, e["input_shape"])),
            human(e["params"]),
            human(e["macs"]),
            e["paper"],
        )
        for e in entries
    ]
    print(format_table(["name", "input", "params", "MACs", "paper"], rows))
    print("\nonnxconv list NAME: a variant's config keys and defaults")
    return 0


def progress_printer(verb: str) -> Callable[[str, int, int], None]:
    """A one-line progress bar on a terminal; one line per step otherwise."""
    tty = sys.stderr.isatty()

    def show(name: str, done: int, total: int) -> None:
        width = 24
        bar = "#" * (width * done // max(total, 1))
        text = (
            f"[{bar:<{width}}] {done}/{total} {verb} {name}"
            if name
            else f"[{bar:<{width}}] {done}/{total} done"
        )
        if tty:
            print("\r" + text.ljust(78), end="" if name else "\n", file=sys.stderr, flush=True)
        elif name:
            print(f"{verb} {name} ({done + 1}/{total})", file=sys.stderr, flush=True)

    return show


@command("export")
def cmd_export(args: argparse.Namespace) -> int:
    from . import variants
    from .export import export_variants

    if args.module:
        return export_user_module(args)
    if args.name or args.input or args.input_from or args.module_args:
        raise OnnxconvError("--name, --input, --input-from and --module-args go with --module")
    if args.all:
        names = variants.names()
    elif args.committed:
        names = [n for n in variants.names() if variants.get(n).commit_graph]
    else:
        names = args.variant or []
    overrides: dict[str, object] = dict(parse_config(args.config))
    if args.shuffle_rank is not None:  # export_variants refuses it when no variant shuffles
        overrides["shuffle_rank"] = args.shuffle_rank
    options = export_options(args)
    results = export_variants(
        names,
        args.out,
        options,
        overrides,
        progress=None if args.quiet else progress_printer("exporting"),
    )
    for result in results:
        entry = result.entry
        defaults = variants.get(entry["variant"]).config()
        changed = {k: v for k, v in entry["config"].items() if defaults.get(k) != v}
        print(
            f"{result.model_path}  opset {entry['opset']}  {entry['exporter']}  "
            f"params {human(entry['params'])}  MACs {human(entry['macs'])}"
            + ("  config " + ",".join(f"{k}={v}" for k, v in changed.items()) if changed else "")
        )
        if changed and variants.get(entry["variant"]).commit_graph and _is_committed(args.out):
            print(
                f"note: {result.model_path.parent} now holds a non-default config; "
                "./scripts/export_graphs restores the committed graph",
                file=sys.stderr,
            )
    return 0


def export_folder_graphs(target: str) -> list:
    """The graph folders of an export folder (manifest.json, no model.onnx), else []."""
    from pathlib import Path

    from .export import MANIFEST, graph_folders

    path = Path(target)
    if path.is_dir() and (path / MANIFEST).exists() and not (path / "model.onnx").exists():
        from . import validate

        validate.check_graphs_dir(path)
        return graph_folders(path)
    return []


def recipe_from_args(args: argparse.Namespace, need_inputs: bool = True):
    """The user's module named by --module / --module-args / --input / --input-from, and the
    example inputs (None when generated from the recipe's shapes)."""
    from .user_model import InputSpec, ModuleRecipe, inputs_from_npz, parse_module_args

    examples = None
    given, given_npz = getattr(args, "input", None), getattr(args, "input_from", None)
    if given and given_npz:
        raise OnnxconvError("give --input or --input-from, not both")
    if given_npz:
        specs, examples = inputs_from_npz(given_npz)
    elif given:
        specs = tuple(InputSpec.parse(text) for text in given)
    elif need_inputs:
        raise OnnxconvError(
            f"--module {args.module}: say what the module takes with --input 1,3,224,224 "
            "(repeatable) or --input-from inputs.npz"
        )
    else:
        specs = ()
    recipe = ModuleRecipe(args.module, parse_module_args(args.module_args), specs)
    return recipe, examples


def attach_cli_module(args: argparse.Namespace, subject: Any) -> None:
    """--module: the user's module speaks for ``subject`` (validate, tune)."""
    from . import validate

    recipe, _ = recipe_from_args(args, need_inputs=False)
    module, notes = recipe.build()
    validate.attach_module(subject, module, recipe.path, recipe.to_dict())
    subject.notes += notes


def export_options(args: argparse.Namespace):
    from .export import ExportOptions

    return ExportOptions(
        opset=args.opset,
        exporter=args.exporter,
        dynamic_batch=args.dynamic_batch,
        dynamic_hw=args.dynamic_hw,
        verbose=args.verbose,
    )


def export_user_module(args: argparse.Namespace) -> int:
    from .export_module import describe, export_recipe

    if args.config or args.shuffle_rank is not None:
        raise OnnxconvError("--config and --shuffle-rank are for zoo variants, not --module")
    recipe, examples = recipe_from_args(args)
    options = export_options(args)
    result = export_recipe(recipe, args.out, args.name, options, examples)
    entry = result.entry
    for note in entry["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"{result.model_path}  opset {entry['opset']}  {entry['exporter']}  "
        f"params {human(entry['params'])}  MACs {human(entry['macs'])}  {describe(entry)}"
    )
    return 0


def module_arguments(
    p: argparse.ArgumentParser, role: str, inputs: bool = False, group: Any = None
) -> None:
    """--module (in ``group`` when given) saying its ``role``, --module-args, and for export
    --input / --input-from. Every help says that the import path's code runs."""
    (group or p).add_argument(
        "--module", metavar="PKG.MOD:FACTORY", help=f"{role} (imported, so its code runs)"
    )
    p.add_argument(
        "--module-args",
        metavar="KEY=VALUE,...",
        help="keyword arguments for the --module factory (Python literals, e.g. num_classes=10)",
    )
    if inputs:
        p.add_argument(
            "--input",
            action="append",
            metavar="SHAPE[:DTYPE]",
            help="an input of the --module, e.g. 1,3,224,224 (repeatable; dtype float32 "
            "unless given: float16, float64, int64, int32, bool)",
        )
        p.add_argument("--input-from", metavar="NPZ", help="the --module's inputs, from a .npz")


def _is_committed(out: str) -> bool:
    """Whether ``out`` is this checkout's committed graphs/ folder."""
    from pathlib import Path

    return Path(out).resolve() == (Path(__file__).resolve().parents[1] / "graphs")


@command("inspect")
def cmd_inspect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import graph
    from .graph import checks as graph_checks

    path = Path(args.model)
    if path.is_dir():
        if not (path / "model.onnx").exists():
            raise OnnxconvError(f"{path}: no model.onnx in this folder")
        path = path / "model.onnx"
    model = graph.load_model(path)
    report = graph.inspect_model(model)
    index = graph.GraphIndex(model)
    cost = graph.cost_breakdown(index, batch_size=args.batch)
    findings = graph_checks.lint_model(model, target_opset=args.target_opset)
    macs_of = {
        node.name: m
        for node, m in zip(index.nodes, graph.node_macs(index, batch_size=args.batch))
        if m is not None and node.name
    }
    if args.json:
        print(
            json.dumps(
                {
                    "model": str(path),
                    **report.to_dict(),
                    "cost": cost.to_dict(),
                    "node_macs": macs_of,
                    "lint": [f.to_dict() for f in findings],
                },
                indent=2,
            )
        )
        return 0
    opsets = ", ".join(f"{d} {v}" for d, v in report.opsets.items())
    print(
        f"{path}: IR {report.ir_version}, opset {opsets}, producer "
        f"{report.producer_name} {report.producer_version}".rstrip()
    )
    print(f"inputs  {report.inputs}\noutputs {report.outputs}")
    print("ops     " + ", ".join(f"{op} {n}" for op, n in report.op_counts.items()))
    print(
        f"cost    params {human(cost.params)} (+{human(cost.bn_affine_params)} BatchNorm "
        f"affine), MACs {human(cost.macs)} at batch {cost.batch_size}\n"
        "        (params as stored in the graph: where the exporter folded BatchNorm into the "
        "Conv,\n        its scale and shift became Conv weights and biases, so `onnxconv list`, "
        "which counts\n        the module's BatchNorm affine, can differ)"
    )
    if report.convs:
        print()

        def share(name: str) -> str:
            m = macs_of.get(name)
            if m is None:
                return "—"
            return f"{human(m)} ({100 * m / cost.macs:.0f}%)" if cost.macs else human(m)

        rows = [
            (
                c.name,
                c.kind + (f" x{c.depth_multiplier}" if c.depth_multiplier else ""),
                f"{c.in_channels}->{c.out_channels}",
                "x".join(map(str, c.kernel)),
                c.group,
                "x".join(map(str, c.stride)),
                ",".join(map(str, c.pads)),
                share(c.name),
            )
            for c in report.convs
        ]
        print(
            format_table(
                ["conv", "kind", "channels", "kernel", "group", "stride", "pads", "MACs"], rows
            )
        )
    for pair in report.flattened_pairs:
        print(
            f"flattened pair: {pair.vertical} ({pair.kernel}x1) -> {pair.horizontal} "
            f"(1x{pair.kernel})"
        )
    for s in report.shuffles:
        state = "exact" if s.exact else "NOT exact: " + "; ".join(s.problems)
        print(
            f"channel shuffle: {s.reshape_in} -> {s.transpose} -> {s.reshape_out}, rank "
            f"{s.rank}, groups {s.groups}, perm {s.perm}, {state}"
        )
    if findings:
        print()
        for line in lint_lines(findings):
            print(line)
    return 0


def lint_lines(findings: Sequence[Any], shown: int = 2) -> list[str]:
    """Each kind of finding at most ``shown`` times, the rest counted, then a summary line."""
    by_code: dict[str, list[Any]] = {}
    for finding in findings:
        by_code.setdefault(f"{finding.severity} {finding.code}", []).append(finding)
    lines = []
    for group in by_code.values():
        lines += [f"lint: {finding}" for finding in group[:shown]]
        if len(group) > shown:
            more = ", ".join(f.node for f in group[shown:])
            lines.append(
                textwrap.shorten(
                    f"lint: ... {len(group) - shown} more {group[0].code} at {more}",
                    100,
                    placeholder=" …",
                )
            )
    summary = ", ".join(f"{len(group)} {code}" for code, group in by_code.items())
    return lines + [f"lint summary: {len(findings)} finding(s): {summary}"]


def int_list(text: str) -> list[int]:
    """Comma-separated integers >= 0 (seeds)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected integers >= 0, got {text!r}")
    return values


def positive_int(text: str) -> int:
    """A size: an integer >= 1 (batch sizes, threads, counts); 0 and below are refused."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be a positive integer")
    return value


def positive_int_list(text: str) -> list[int]:
    """Comma-separated sizes, each >= 1."""
    values = [positive_int(v) for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}"
        )
    return values


class OneLineParser(argparse.ArgumentParser):
    """argparse with usage errors on one line (prog: error: message), exit 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def csv_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def read_npz(path: str) -> dict:
    """The arrays of a ``.npz`` by name; a user error (one line) when it cannot be read."""
    import numpy as np

    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as error:
        raise OnnxconvError(f"{path}: not a readable .npz file ({error})") from None


@command("validate")
def cmd_validate(args: argparse.Namespace) -> int:
    from . import feeds, precisions, runtime, validate
    from .export import graph_folders
    from .parity import Tolerance, default_tolerance

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
        if level not in runtime.OPT_LEVELS:
            raise OnnxconvError(
                f"unknown optimisation level {level!r} "
                f"(choose from {', '.join(runtime.OPT_LEVELS)})"
            )
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
    if args.int8_samples < 1:
        raise OnnxconvError(f"--int8-samples must be at least 1, got {args.int8_samples}")
    if args.max_input_gb <= 0:
        raise OnnxconvError(f"--max-input-gb must be positive, got {args.max_input_gb}")
    for precision in args.precision:
        precisions.get(precision)  # an unknown name is a usage error, before any work
    if args.target_opset is not None:
        from .opset import check_target

        check_target(args.target_opset)
    subjects = [validate.load_subject(t, args.graphs) for t in targets]
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
    )
    for subject in report.subjects:
        for note in subject["notes"]:
            print(f"note: {note}")
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
    summary = report.summary()
    print("\n" + ", ".join(f"{n} {status}" for status, n in sorted(summary.items())))
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
    return 1 if summary.get("fail") else 0


@command("detect")
def cmd_detect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import detection

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
    print(format_table(["graph", "mutation", "layout", "", "verdict", "margin", "tight"], rows))
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


@command("bench")
def cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import variants
    from .bench import compare as bench_compare
    from .bench import harness as bench
    from .bench import report as bench_report

    baseline = None
    if args.baseline:  # checked before anything is timed
        baseline = bench_report.load_report(args.baseline)
        bench_compare.check_max_slowdown(args.max_slowdown)
    items = [str(p) for t in args.targets for p in (export_folder_graphs(t) or [t])] or [
        p.name
        for p in sorted(Path(args.graphs).glob("*"))
        if (p / "model.onnx").exists() and p.name in variants.REGISTRY
    ]
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
    from .runtime import ep_unavailable_reason

    for ep in args.ep or []:  # a required EP is checked before anything is timed or written
        reason = ep_unavailable_reason(ep) if ep in bench.EPS else None
        if reason is not None:
            print(f"onnxconv bench: required EP {ep} is not active: {reason}", file=sys.stderr)
            return 1
    report = bench.run_bench(
        items,
        overrides=overrides,
        variant_overrides=per_variant,
        threads=args.threads,
        batches=args.batch,
        eps=args.ep,
        opt_levels=args.opt_level,
        precisions=args.precision,
        rounds=args.rounds,
        blocks=args.blocks,
        calls=args.calls,
        compile=args.compile,
        profile=not args.no_profile,
        per_node=args.per_node,
        roofs=not args.no_roofs,
        progress=show,
        cuda_options={
            "cudnn_conv_algo_search": args.cudnn_conv_algo_search,
            "use_tf32": "1" if args.tf32 else "0",
        },
        module=module,
    )
    written = bench_report.write_report(report, args.out, plots=not args.no_plots)
    headers, rows = bench_report.summary_rows(report)
    print(format_table(headers, rows))
    for note in bench_report.measurement_notes(report):
        print(f"note: {note}")
    print(
        "\nreport: "
        + ", ".join(str(p) for p in [written["json"], written["markdown"], *written["plots"]] if p)
    )
    cells = report.to_dict()["cells"]
    errors = [c for c in cells if c["status"] == "error"]
    missing = {
        c["ep"]: c["error"]
        for c in cells
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


@command("tune")
def cmd_tune(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from . import runtime, validate
    from .errors import CheckFailed
    from .quant_metrics import parse_budget
    from .tune import report as tune_report
    from .tune.rewrites import REWRITES, check_names
    from .tune.search import BUDGET_PRECISIONS, TuneOptions, tune
    from .tune.timing import Method

    for flag, value in (
        ("--threads", args.threads),
        ("--rounds", args.rounds),
        ("--blocks", args.blocks),
        ("--calls", args.calls),
    ):
        if value < 1:
            raise OnnxconvError(f"{flag} must be a positive integer, got {value}")
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
    budget = parse_budget(args.accuracy_budget) if args.accuracy_budget else None
    precisions = args.precision or (list(BUDGET_PRECISIONS) if budget else [])
    options = TuneOptions(
        precisions=tuple(precisions),
        budget=budget,
        calibration=args.calibration,
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
    if out.exists() and not out.is_dir():
        raise OnnxconvError(f"{out}: not a folder (--out)")

    def say(message: str) -> None:
        if not args.quiet:
            print(f"tune: {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="onnxconv-tune-") as tmp:
        report = tune(subject, options, Path(tmp), say)
    rows = []
    for c in report.candidates:
        stats = (c.timing.stats if c.timing else None) or {}
        proof = c.proof
        rows.append(
            (
                c.stage,
                c.name + ("  <- winner" if c is report.winner else ""),
                f"NO {proof.status} {proof.kind}"
                if proof.disqualified
                else "within budget"
                if proof.quant
                else "pass",
                "—" if proof.bit_identical is None else "yes" if proof.bit_identical else "no",
                f"{stats['p50_ms']:.4g}" if stats else "—",
                f"{stats['p90_ms']:.4g}" if stats else "—",
                f"{c.speedup:.2f}" if c.speedup is not None else "—",
                f"{c.torch_over_ort:.2f}" if c.torch_over_ort is not None else "—",
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
            ],
            rows,
        )
    )
    for c in report.candidates:
        if c.proof.disqualified:
            print(f"disqualified {c.name}: {textwrap.shorten(c.proof.disqualified, 200)}")
    model_path, json_path = tune_report.write_tuned(report, out)
    tune_report.write_report(report, args.json, args.markdown)
    print(f"\n{report.decision}")
    if report.winner.torch_over_ort is not None:
        print(
            f"PyTorch eager p50 / {report.winner.name} p50: {report.winner.torch_over_ort:.2f} "
            "(> 1: ORT faster)"
        )
    print(f"wrote {model_path}, {json_path}")
    return 0


@command("bench-compare")
def cmd_bench_compare(args: argparse.Namespace) -> int:
    from .bench import report as bench_report

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
    from .bench import compare as bench_compare

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
    write_reports(
        {
            json_path: lambda: json_text(comparison),
            markdown_path: lambda: bench_compare.to_markdown(comparison),
        }
    )
    return 1 if comparison["slower"] else 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="onnxconv",
        description="Convolution families from PyTorch to ONNX Runtime, with proof.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )

    p = sub.add_parser("list", help="the convolution zoo: shapes, params, multiply-adds")
    p.add_argument("name", nargs="?", help="one variant: its config keys and defaults")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    from .bench.compare import DEFAULT_MAX_SLOWDOWN
    from .export import DEFAULT_OPSET, EXPORTERS

    p = sub.add_parser("export", help="export variants to ONNX in the ONNX test-data layout")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--variant", action="append", metavar="NAME", help="a variant to export (repeatable)"
    )
    which.add_argument("--all", action="store_true", help="every variant, networks included")
    which.add_argument(
        "--committed",
        action="store_true",
        help="the variants committed under graphs/ (no whole networks)",
    )
    module_arguments(
        p,
        "your own model: a class or a function returning an nn.Module, by import path, e.g. "
        "torchvision.models:shufflenet_v2_x1_0",
        inputs=True,
        group=which,
    )
    p.add_argument("--name", help="graph folder name for --module (default: the factory's name)")
    p.add_argument("--out", default="graphs", help="output folder (default: graphs)")
    p.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
    )
    p.add_argument("--exporter", choices=EXPORTERS, default="dynamo")
    p.add_argument("--dynamic-batch", action="store_true", help="make the batch axis dynamic")
    p.add_argument("--dynamic-hw", action="store_true", help="make height and width dynamic")
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every variant that has KEY (repeatable)",
    )
    p.add_argument(
        "--shuffle-rank",
        type=int,
        choices=(4, 5),
        help="channel shuffle through rank-4 tensors (N, g, C/g, H*W) or rank 5",
    )
    p.add_argument("--verbose", action="store_true", help="show the exporters' own output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("inspect", help="what any ONNX graph holds: convs, shuffles, cost, lint")
    p.add_argument("model", help="an .onnx file, or a folder holding model.onnx")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--batch", type=positive_int, default=1, help="batch size for dynamic batch axes"
    )
    p.add_argument("--target-opset", type=int, help="flag ops newer than this opset")

    p = sub.add_parser("validate", help="parity PyTorch <-> ONNX Runtime per EP, level, precision")
    p.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="variant name, test-data folder or .onnx file (default: all in --graphs)",
    )
    p.add_argument("--graphs", default="graphs", help="where variant graphs live")
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
        default=["fp32", "fp16"],
        help="comma-separated deployments: fp32, fp16 (onnxconverter-common, fp32 I/O), fp16-io "
        "(fp16 I/O), fp16-onnxconv (onnxconv's converter), int8 (static QDQ, per-channel), "
        "int8-tensor (per-tensor weights), int8-dynamic (default: fp32,fp16)",
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
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
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
    p.add_argument("--json", metavar="PATH", help="write the JSON report here")
    p.add_argument("--markdown", metavar="PATH", help="write the Markdown report here")
    p.add_argument(
        "--brief", action="store_true", help="one line per graph and EP instead of one per cell"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("bench", help="time ONNX Runtime against PyTorch, side by side")
    module_arguments(
        p,
        "the PyTorch module of the one .onnx TARGET, timed beside it; graphs exported with "
        "--module bring their own",
    )
    p.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="variant names or .onnx files (default: the variants in --graphs)",
    )
    p.add_argument("--graphs", default="graphs", help="where variant graphs live (default: graphs)")
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
        type=int,
        default=1,
        help="threads for both runtimes (default 1, the stable baseline)",
    )
    p.add_argument(
        "--batch", type=positive_int_list, default=[1], help="comma-separated batch sizes"
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
    p.add_argument("--blocks", type=int, default=5, help="timed blocks per cell (default 5)")
    p.add_argument("--calls", type=int, default=100, help="timed calls per block (default 100)")
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
        help="only this mutation (repeatable; default all that apply)",
    )
    p.add_argument("--ep", default="cpu", help="the EP every mutant is validated on (default cpu)")
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
    p.add_argument("--json", metavar="PATH", help="write the JSON report here")
    p.add_argument("--markdown", metavar="PATH", help="write the Markdown report here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "tune",
        help="the fastest proven-equal formulation and session settings of one graph on one EP",
    )
    p.add_argument("target", metavar="TARGET", help="variant name, test-data folder or .onnx file")
    p.add_argument("--graphs", default="graphs", help="where variant graphs live")
    module_arguments(
        p, "the PyTorch module TARGET should compute: it decides the proofs and is timed beside"
    )
    p.add_argument("--ep", default="cpu", help="execution provider: cpu (default) or cuda")
    p.add_argument("--threads", type=int, default=1, help="threads for ORT and PyTorch (default 1)")
    p.add_argument(
        "--batch", type=int, help="batch size (default: the graph's; any when it is dynamic)"
    )
    p.add_argument(
        "--rewrites",
        type=csv_list,
        help="comma-separated rewrites to try, or none (default: all: "
        "shuffle_rank4, shuffle_gather, shuffle_fold, shuffle_fold_dense, grouped_split, "
        "grouped_dense)",
    )
    p.add_argument("--no-settings", action="store_true", help="keep the default session settings")
    p.add_argument(
        "--accuracy-budget",
        metavar="BOUNDS",
        help="let tune choose a lower precision, proven within these bounds of the fp32 source: "
        "metric=value,... over sqnr_db, cosine, max_abs_over_range, mean_abs_over_range, top1, "
        "top5 (unnamed metrics keep validate's int8 tolerances), or 'default' for those "
        "tolerances. Without it tune stays at fp32",
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
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per stage (default 3)")
    p.add_argument("--blocks", type=int, default=5, help="timed blocks per process (default 5)")
    p.add_argument("--calls", type=int, default=100, help="timed calls per block (default 100)")
    p.add_argument(
        "--retries",
        type=int,
        default=2,
        help="run a timing again when other processes contended for the CPU (pressure above "
        "10%%), after waiting up to 60 s for quiet, up to this many times (default 2)",
    )
    p.add_argument("--no-profile", action="store_true", help="skip the per-op profile")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where model.tuned.onnx and tuned.json go (default: beside the original)",
    )
    p.add_argument("--json", metavar="PATH", help="write the JSON report here")
    p.add_argument("--markdown", metavar="PATH", help="write the Markdown report here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")

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
    for subparser in sub.choices.values():  # --debug after the command works too
        subparser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return parser


def _interrupt(signum: int, frame: object) -> None:
    """SIGINT/SIGTERM: unwind (``finally`` blocks remove staging files; bench's workers are
    killed); a second signal while that runs is ignored so the cleanup finishes."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def _catch_signals() -> dict[int, Any]:
    """Install :func:`_interrupt` (main thread only); returns the handlers it replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = _catch_signals()
    try:
        if not args.debug:
            # ORT's own logger warns once per CUDA session ("No registered plugin EP device
            # found ...") and would bury the table; errors still show, --debug shows everything.
            from onnxconv.runtime import set_ort_log_severity

            set_ort_log_severity(3)
        return COMMANDS[args.command](args)
    except OnnxconvError as error:
        if args.debug:
            raise
        print(f"onnxconv {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except (Interrupted, KeyboardInterrupt) as error:
        signum = error.signum if isinstance(error, Interrupted) else signal.SIGINT
        print(
            f"onnxconv {args.command}: interrupted by {signal.Signals(signum).name}; "
            "nothing was left half-written",
            file=sys.stderr,
        )
        return 128 + signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
