"""``onnxconv list``, ``export`` and ``inspect``: the zoo, its export to ONNX, any graph's
contents."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any, Sequence

from ..errors import OnnxconvError
from .common import (
    COMMITTED_GRAPHS,
    format_table,
    graphs_parent,
    human,
    module_arguments,
    parse_config,
    positive_int,
    progress_printer,
    recipe_from_args,
)


def cmd_list(args: argparse.Namespace) -> int:
    from .. import variants

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


def cmd_export(args: argparse.Namespace) -> int:
    from .. import variants
    from ..export import export_variants

    if args.out is not None and not args.out.strip():
        raise OnnxconvError("--out: an empty path; name a folder")
    if args.module:
        return export_user_module(args)
    if args.name or args.input or args.input_from or args.module_args or args.module_seed:
        raise OnnxconvError(
            "--name, --input, --input-from, --module-args and --module-seed go with --module"
        )
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
    out = args.out or "graphs"
    if args.out is None and Path(out).resolve() == COMMITTED_GRAPHS:
        from dataclasses import replace

        from ..export import ExportOptions

        extra = [n for n in names if not variants.get(n).commit_graph]
        changed = bool(overrides) or replace(options, verbose=False) != ExportOptions()
        if extra or (names and changed):
            what = (
                f"{extra[0]} is not one of its committed variants"
                if extra
                else f"{names[0]} with another config or option than committed"
            )
            raise OnnxconvError(
                f"{COMMITTED_GRAPHS}: this checkout's committed graphs, which the tests check "
                f"against a fresh export of its variants with the default settings, and {what}: "
                "name --out DIR (or --out graphs to write there anyway)"
            )
    results = export_variants(
        names,
        out,
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
        committed = Path(out).resolve() == COMMITTED_GRAPHS
        if changed and variants.get(entry["variant"]).commit_graph and committed:
            print(
                f"note: {result.model_path.parent} now holds a non-default config; "
                "./scripts/export_graphs restores the committed graph",
                file=sys.stderr,
            )
    return 0


def export_options(args: argparse.Namespace):
    from ..export import ExportOptions

    return ExportOptions(
        opset=args.opset,
        exporter=args.exporter,
        dynamic_batch=args.dynamic_batch,
        dynamic_hw=args.dynamic_hw,
        verbose=args.verbose,
    )


def export_user_module(args: argparse.Namespace) -> int:
    from ..export_module import describe, export_recipe

    if args.config or args.shuffle_rank is not None:
        raise OnnxconvError("--config and --shuffle-rank are for zoo variants, not --module")
    recipe, examples = recipe_from_args(args)
    options = export_options(args)
    if args.out is None:
        raise OnnxconvError(
            f"--module {args.module}: name --out DIR (graphs/ holds this checkout's committed "
            "zoo graphs, which the tests check)"
        )
    before = _manifest_module(Path(args.out), args.name or recipe.name)
    result = export_recipe(recipe, args.out, args.name, options, examples)
    entry = result.entry
    for note in entry["notes"]:
        print(f"note: {note}", file=sys.stderr)
    if before and before != json.loads(json.dumps(entry["module"])):  # as the manifest has it
        print(
            f"note: replaced {result.model_path.parent}, which held {before['path']} "
            f"{_inputs_text(before)}; --name NAME keeps both",
            file=sys.stderr,
        )
    print(
        f"{result.model_path}  opset {entry['opset']}  {entry['exporter']}  "
        f"params {human(entry['params'])}  MACs {human(entry['macs'])}  {describe(entry)}"
    )
    return 0


def _manifest_module(out: Path, name: str) -> dict[str, Any] | None:
    """The module recipe that ``out``'s manifest records for graph ``name``, if any (an
    unreadable manifest stops the export here, as it would before any work)."""
    from ..export_layout import read_manifest

    entry = read_manifest(out, check_entries=False)["graphs"].get(name)
    module = entry.get("module") if isinstance(entry, dict) else None
    return module if isinstance(module, dict) else None


def _inputs_text(recipe: dict[str, Any]) -> str:
    """``(inputs 1×3×320×320 float32, 1×10 int64; args width=2; seed 1)``."""
    inputs = ", ".join(
        "×".join(map(str, i.get("shape", []))) + f" {i.get('dtype', '')}"
        for i in recipe.get("inputs", [])
    )
    args = ",".join(f"{k}={v}" for k, v in (recipe.get("args") or {}).items())
    seed = recipe.get("seed", 0)
    return (
        f"(inputs {inputs}"
        + (f"; args {args}" if args else "")
        + (f"; seed {seed})" if seed else ")")
    )


def _sized_by_stored_inputs(model: Any, path: Any, batch: int) -> tuple[Any, str]:
    """``model`` with a symbolic height, width or other non-batch size pinned to its test-data
    folder's stored inputs (an ``export --dynamic-hw`` folder), the batch to ``batch``, and what
    sized it ("" when nothing did: the cost then leaves those nodes uncounted)."""
    from .. import feeds, graph
    from ..validate.subjects import first_stored_inputs

    inputs = feeds.graph_inputs(model)
    symbolic = any(
        not d.HasField("dim_value") for i in inputs for d in i.type.tensor_type.shape.dim[1:]
    )
    if not symbolic:
        return model, ""
    stored = [array for _, array in first_stored_inputs(path, len(inputs))]
    if any(array is None for array in stored):
        return model, ""
    shapes = {i.name: (batch, *array.shape[1:]) for i, array in zip(inputs, stored)}
    said = ", ".join("x".join(map(str, s)) for s in shapes.values())
    return graph.with_input_shapes(model, shapes), f"at the stored inputs' size ({said})"


def _at_batch(model, batch: int) -> str:
    """Say "at batch N", unless the inputs' fixed leading sizes differ: then they are no batch."""
    from ..feeds import graph_inputs

    leading = {
        dims[0].dim_value
        for dims in (i.type.tensor_type.shape.dim for i in graph_inputs(model))
        if dims and dims[0].HasField("dim_value")
    }
    return "at the inputs' fixed sizes" if len(leading) > 1 else f"at batch {batch}"


def cmd_inspect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .. import graph, variants
    from ..graph import checks as graph_checks
    from ..validate import fixed_batch

    path = Path(args.model)
    if not path.exists() and args.model in variants.REGISTRY:  # a zoo name, as validate takes
        path = Path(args.graphs) / args.model
        if not path.is_dir():
            raise OnnxconvError(
                f"{path}: not exported (onnxconv export --variant {args.model} --out "
                f"{args.graphs} writes it)"
            )
    if path.is_dir():
        if not (path / "model.onnx").exists():
            raise OnnxconvError(f"{path}: no model.onnx in this folder")
        path = path / "model.onnx"
    if not path.exists() and not args.model.endswith(".onnx"):
        raise OnnxconvError(f"{path}: no such file or folder{variants.did_you_mean(args.model)}")
    model = graph.load_model(path)
    report = graph.inspect_model(model)
    batch = fixed_batch(model) or args.batch  # --batch sizes a symbolic batch only
    sized, sized_by = _sized_by_stored_inputs(model, path, batch)
    index = graph.GraphIndex(sized)
    cost = graph.cost_breakdown(index, batch_size=batch)
    findings = graph_checks.lint_model(model, target_opset=args.target_opset)
    macs_of = {  # by the name inspect gives a Conv: its own, or OpType(first output)
        index.label(node): m
        for node, m in zip(index.nodes, graph.node_macs(index, batch_size=batch))
        if m is not None
    }
    if args.json:
        print(
            json.dumps(
                {
                    "model": str(path),
                    **report.to_dict(),
                    "cost": {**cost.to_dict(), "sized_by": sized_by or None},
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
    print("dtypes  " + ", ".join(f"{name} {t}" for name, t in report.dtypes.items()))
    print("ops     " + ", ".join(f"{op} {n}" for op, n in report.op_counts.items()))
    print(
        f"cost    params {human(cost.params)} (+{human(cost.bn_affine_params)} BatchNorm "
        f"affine), MACs {human(cost.macs)} {_at_batch(model, cost.batch_size)}"
        + (f" {sized_by}" if sized_by else "")
        + (
            f" (not counted: {len(cost.unknown_macs)} node(s) whose shapes depend on a symbolic "
            "dimension other than the batch; `onnxconv export` records them at the example's "
            "size)"
            if cost.unknown_macs
            else ""
        )
        + (
            " (not counted: the weights and MACs of "
            + ", ".join(f"{n} {op}" for op, n in sorted(cost.uncounted.items()))
            + ")"
            if cost.uncounted
            else ""
        )
        + "\n"
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


def add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="the convolution zoo: shapes, params, multiply-adds")
    p.add_argument("name", nargs="?", help="one variant: its config keys and defaults")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_export(sub: argparse._SubParsersAction) -> None:
    from ..export import DEFAULT_OPSET, EXPORTERS

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
    p.add_argument(
        "--out",
        help="output folder (default: graphs, where another config or option than the "
        "committed graphs' must be named: --out graphs)",
    )
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


def add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="what any ONNX graph holds: convs, shuffles, cost, lint",
        parents=[graphs_parent()],
    )
    p.add_argument(
        "model", help="an .onnx file, a folder holding model.onnx, or a variant name in --graphs"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--batch", type=positive_int, default=1, help="batch size for dynamic batch axes"
    )
    p.add_argument("--target-opset", type=int, help="flag ops newer than this opset")
