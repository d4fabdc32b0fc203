"""Helpers every command shares: argument types, shared options, tables, reports, progress,
and the user's --module."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import OnnxconvError

#: This checkout's committed graphs/ folder (the tests check it against a fresh export).
COMMITTED_GRAPHS = Path(__file__).resolve().parents[2] / "graphs"


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


def write_reports(files: dict[str | None, Callable[[], str]]) -> None:
    """Write the report files asked for (paths that are not None), together: of two runs
    writing the same files the last wins whole (:func:`onnxconv.report.write_files`)."""
    from ..report import write_files

    wanted = {path: render() for path, render in files.items() if path}
    if wanted:
        write_files(wanted)


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
            print(f"{verb} {name} ({done}/{total} done)", file=sys.stderr, flush=True)

    return show


def export_folder_graphs(target: str) -> list:
    """The graph folders of an export folder (manifest.json, no model.onnx), else []."""
    from pathlib import Path

    from ..export import MANIFEST, graph_folders

    path = Path(target)
    if path.is_dir() and (path / MANIFEST).exists() and not (path / "model.onnx").exists():
        from .. import validate

        validate.check_graphs_dir(path)
        return graph_folders(path)
    return []


def recipe_from_args(args: argparse.Namespace, need_inputs: bool = True):
    """The user's module named by --module / --module-args / --input / --input-from, and the
    example inputs (None when generated from the recipe's shapes)."""
    from ..user_model import InputSpec, ModuleRecipe, inputs_from_npz, parse_module_args

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
    seed = getattr(args, "module_seed", None) or 0
    recipe = ModuleRecipe(args.module, parse_module_args(args.module_args), specs, seed)
    return recipe, examples


def attach_cli_module(args: argparse.Namespace, subject: Any) -> None:
    """--module: the user's module speaks for ``subject`` (validate, tune)."""
    from .. import validate

    recipe, _ = recipe_from_args(args, need_inputs=False)
    module, notes = recipe.build()
    validate.attach_module(subject, module, recipe.path, recipe.to_dict())
    subject.notes += notes


def seed_number(text: str) -> int:
    """A seed torch.manual_seed takes: an integer from 0 to 2**63 - 1."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed (an integer 0 to 2**63-1)")
    return value


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
    p.add_argument(
        "--module-seed",
        type=seed_number,
        metavar="N",
        help="torch.manual_seed(N) before the --module factory runs, so its random weights "
        "are drawn as they were when the graph was exported (default 0)",
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


def graphs_parent() -> argparse.ArgumentParser:
    """--graphs as validate and tune take it, as an argparse parent. A parent's options come
    first in its children's help, so only options that lead every child's list are parents."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--graphs", default="graphs", help="where variant graphs live")
    return parent


def report_arguments(p: argparse.ArgumentParser) -> None:
    """--json PATH and --markdown PATH, where validate, detect and tune write their reports
    (added in place, not as a parent: they come late in each command's help)."""
    p.add_argument("--json", metavar="PATH", help="write the JSON report here")
    p.add_argument("--markdown", metavar="PATH", help="write the Markdown report here")


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


def thread_count(text: str) -> int:
    """``--threads``: a positive integer up to :func:`onnxconv.machine.max_threads`."""
    from ..errors import UserInputError
    from ..machine import check_threads

    try:
        return check_threads(positive_int(text))
    except UserInputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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
        import re

        from ..errors import did_you_mean

        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice is not None:  # a mistyped command or option value: the nearest, as elsewhere
            known = re.findall(r"'([^']*)'", choice[2]) or choice[2].split(", ")
            message += did_you_mean(choice[1], known)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def csv_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]
