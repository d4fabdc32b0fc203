"""The ``onnxconv`` command. The only module that parses arguments, prints and picks exit codes.

Exit codes: 0 every check passed; 1 a check failed; 2 usage or input error (one line, no
traceback unless --debug).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

from .errors import OnnxconvError

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


@command("list")
def cmd_list(args: argparse.Namespace) -> int:
    from . import variants

    entries = []
    for spec in variants.REGISTRY.values():
        config = spec.config()
        cost = spec.cost(config)
        entries.append(dict(name=spec.name, family=spec.family, paper=spec.paper,
                            summary=spec.summary, input_shape=list(spec.input_shape(config)),
                            params=cost.params, macs=cost.macs, config=config))
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    rows = [(e["name"], e["family"], "×".join(map(str, e["input_shape"])), human(e["params"]),
             human(e["macs"]), e["paper"]) for e in entries]
    print(format_table(["name", "family", "input", "params", "MACs", "paper"], rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnxconv",
        description="Convolution families from PyTorch to ONNX Runtime, with proof.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="the convolution zoo: shapes, params, multiply-adds")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except OnnxconvError as error:
        if args.debug:
            raise
        print(f"onnxconv {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("onnxconv: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
