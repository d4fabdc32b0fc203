"""The ``onnxconv`` command. The only package that parses arguments, prints and picks exit codes.

Here: :func:`main`, the table of commands and the signal handling. :mod:`.common` holds the
helpers and options the commands share; each command family its commands with their argparse
definitions: :mod:`.export_cmds` (list, export, inspect), :mod:`.validate_cmds` (validate,
detect), :mod:`.bench_cmds` (bench, bench-compare), :mod:`.tune_cmd` (tune). Commands import
torch, onnxruntime and the library inside their functions; list and bench-compare never load
onnxruntime.

Exit codes: 0 every check passed; 1 a check failed; 2 usage or input error (one line, no
traceback unless --debug); 130 / 143 interrupted by SIGINT / SIGTERM (one line; nothing
half-written).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import sys
import threading
from typing import Any, Callable, NamedTuple, Sequence

from ..errors import Interrupted, OnnxconvError
from .common import OneLineParser


class Command(NamedTuple):
    """A subcommand: the module of this package that defines it, the names there of what adds
    its parser and of what runs it, and whether :func:`main` sets ONNX Runtime's log level
    first (which loads onnxruntime). The module is imported when the parser is built, after
    :func:`main` has taken SIGINT and SIGTERM: importing them all takes a tenth of a second."""

    module: str
    add_parser: str
    run: str
    uses_ort: bool = True

    def function(self, name: str) -> Callable[..., Any]:
        return getattr(importlib.import_module(f"{__name__}.{self.module}"), name)


# in the order `onnxconv --help` lists them
COMMANDS: dict[str, Command] = {
    "list": Command("export_cmds", "add_list", "cmd_list", uses_ort=False),
    "export": Command("export_cmds", "add_export", "cmd_export"),
    "inspect": Command("export_cmds", "add_inspect", "cmd_inspect"),
    "validate": Command("validate_cmds", "add_validate", "cmd_validate"),
    "bench": Command("bench_cmds", "add_bench", "cmd_bench"),
    "detect": Command("validate_cmds", "add_detect", "cmd_detect"),
    "tune": Command("tune_cmd", "add_tune", "cmd_tune"),
    "bench-compare": Command("bench_cmds", "add_bench_compare", "cmd_bench_compare", False),
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="onnxconv",
        description="Convolution families from PyTorch to ONNX Runtime, with proof.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )
    for command in COMMANDS.values():
        command.function(command.add_parser)(sub)
    for subparser in sub.choices.values():  # --debug after the command works too
        subparser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    parser.commands = sub.choices  # each command's parser, for its own usage errors
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


#: A write that fails for want of room or of a writable file system: the place, not onnxconv.
_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def _interrupted_by(error: BaseException) -> int | None:
    """The signal behind ``error``: an :class:`Interrupted` or KeyboardInterrupt, itself or
    anywhere in its chain of causes (a library that catches the interrupt raises its own error:
    ONNX Runtime's import turns it into ``ImportError: initialization failed``); None if
    none is."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, Interrupted):
            return error.signum
        if isinstance(error, KeyboardInterrupt):
            return signal.SIGINT
        error = error.__cause__ or error.__context__
    return None


def main(argv: Sequence[str] | None = None) -> int:
    # Signals first: building the parser imports torch (a second or two), and a Ctrl-C there is
    # an interrupt like any other, not a 40-line traceback through torch's imports.
    previous = _catch_signals()
    prog, debug = "onnxconv", False
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:  # said by the command's own parser: "onnxconv tune: error: ..."
            parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
        prog, debug = f"onnxconv {args.command}", args.debug
        if not debug and COMMANDS[args.command].uses_ort:
            # ORT's own logger warns once per CUDA session ("No registered plugin EP device
            # found ...") and would bury the table; errors still show, --debug shows everything.
            from onnxconv.runtime import set_ort_log_severity

            set_ort_log_severity(3)
        if args.command != "export" and not getattr(args, "module", None):
            given = [
                f"--{name.replace('_', '-')}"
                for name in ("module_args", "module_seed")
                if getattr(args, name, None) is not None
            ]
            if given:
                verb = "goes" if len(given) == 1 else "go"
                raise OnnxconvError(f"{' and '.join(given)} {verb} with --module")
        from ..report import check_destinations

        # Where reports go (paths, not the flags of list/inspect --json), checked before the run.
        files = [getattr(args, name, None) for name in ("json", "markdown")]
        folder = getattr(args, "out", None)
        check_destinations(
            [f for f in files if isinstance(f, str) and f],
            [folder] if isinstance(folder, str) and folder else [],
        )
        command = COMMANDS[args.command]
        return command.function(command.run)(args)
    except OnnxconvError as error:
        if debug:
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return error.exit_code
    except BrokenPipeError:  # the reader went away (`onnxconv list | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit's flush cannot raise again
        return 128 + signal.SIGPIPE
    except OSError as error:
        if debug or error.errno not in _DISK_ERRORS:
            raise
        where = error.filename or "a file"
        print(f"{prog}: error: {where}: cannot write there ({error.strerror})", file=sys.stderr)
        return 2
    except BaseException as error:
        signum = _interrupted_by(error)
        if signum is None:
            raise
        print(
            f"{prog}: interrupted by {signal.Signals(signum).name}; nothing was left half-written",
            file=sys.stderr,
        )
        return 128 + signum
    finally:
        for sig, handler in previous.items():
            # argv None: the program itself (the console script, python -m onnxconv), which
            # exits next; the work is done or undone, and a signal while Python shuts down must
            # not turn a finished run into 130/143 (nor print a traceback). A caller's own
            # handlers come back.
            signal.signal(sig, signal.SIG_IGN if argv is None else handler)
