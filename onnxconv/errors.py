"""Errors that the CLI turns into one line and an exit code.

Library code raises these; only :mod:`onnxconv.cli` catches them and chooses the exit code
(see shared design: 0 pass, 1 a check failed, 2 usage or input error).
"""

from __future__ import annotations

import difflib
import re
from typing import Iterable, Sequence

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class OnnxconvError(Exception):
    """Base class: a problem a user can act on, printed as one line."""

    exit_code = 2


class UserInputError(OnnxconvError, ValueError):
    """Bad input: missing/corrupt file, wrong shape or dtype, impossible config, unknown name."""

    exit_code = 2


class CheckFailed(OnnxconvError):
    """A check ran and failed (parity, graph structure, EP not active)."""

    exit_code = 1


class ModuleUnavailable(UserInputError):
    """The module a manifest names cannot be imported or built here (its code is elsewhere):
    ``validate --no-module`` lets the folder's stored outputs decide instead."""


class NoDeployment(CheckFailed):
    """There is no deployment of a graph at some precision (nothing to quantize, or the graph
    already computes at a lower one): that cell is unavailable, not failed."""


def conversion_status(error: CheckFailed) -> str:
    """The status of a deployment that could not be made: ``unavailable`` when there is no such
    deployment (:class:`NoDeployment`), ``fail`` when a converter or quantizer failed."""
    return "unavailable" if isinstance(error, NoDeployment) else "fail"


def reraise_interrupt(error: BaseException) -> None:
    """Raise the :class:`Interrupted` or KeyboardInterrupt that ``error`` wraps (as its cause or
    context, at any depth), if any: libraries that catch everything must not turn a Ctrl-C into
    their own failure."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (Interrupted, KeyboardInterrupt)):
            raise error
        error = error.__cause__ or error.__context__


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived (see ``cli.main``). A BaseException, like KeyboardInterrupt, so
    ``except Exception`` never swallows it and every ``finally`` block runs on the way out."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(signal.Signals(signum).name)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'cuda'?)`` for a near miss of one of ``known``, else ``""``."""
    return near_misses([name], known)


def near_misses(names: Sequence[str], known: Iterable[str]) -> str:
    """`` (did you mean 'cuda'?)`` for one name; for several, each near miss with the name it
    is for: `` ('grups': did you mean 'groups'?)``; ``""`` where nothing is near."""
    known = list(known)
    close = {n: difflib.get_close_matches(n, known, n=1, cutoff=0.6) for n in names}
    if len(names) == 1:
        return "".join(f" (did you mean {c[0]!r}?)" for c in close.values() if c)
    return "".join(f" ({n!r}: did you mean {c[0]!r}?)" for n, c in close.items() if c)


def unknown_name(what: str, names: str | Sequence[str], known: Iterable[str]) -> UserInputError:
    """The one-line error for names that are not among ``known``:
    ``unknown execution provider 'cdua' (did you mean 'cuda'?); known: cpu, cuda``."""
    names = [names] if isinstance(names, str) else list(names)
    known = list(known)
    return UserInputError(
        f"unknown {what} {', '.join(map(repr, names))}{near_misses(names, known)}; "
        f"known: {', '.join(known)}"
    )


def strip_colour(text: str) -> str:
    """``text`` without ANSI colour codes (ONNX Runtime colours its log lines)."""
    return _ANSI.sub("", text)


#: Where a C++ library says where it failed: a source path and line, then the function's whole
#: signature (ONNX Runtime: ``/onnxruntime_src/.../model.cc:256 onnxruntime::Model::Model(...)``),
#: which can fill a line before the reason comes.
_CXX_LOCATION = re.compile(r"/\S+\.(?:h|hpp|cc|cpp|cu):\d+ [^\n]*?\)\s+(?=\S)")


def one_line(error: BaseException | str, limit: int = 300) -> str:
    """The first non-empty line of an error's text, whitespace collapsed, colour codes, C++
    source locations and excess length cut: what a user sees of a library's multi-line
    error."""
    text = _CXX_LOCATION.sub("", strip_colour(str(error)))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__ if isinstance(error, BaseException) else "(no message)"
    line = " ".join(lines[0].split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
