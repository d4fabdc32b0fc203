"""Shared pieces of every report: the environment record and atomic file writes.

One file is written whole or not at all (:func:`write_bytes`). Several files that belong together
(a JSON report and its Markdown) are written under their folders' locks (:func:`write_files`), and
a report folder is built beside its old self and swapped in whole (:func:`staged_folder`), so that
of two runs aimed at the same place the last one wins whole and an interrupted one leaves the
previous report as it was.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from . import machine
from .errors import UserInputError
from .locking import clean_leftovers, folder_lock, replace_folder, signals_deferred, staging_dir


def environment() -> dict[str, Any]:
    """When, where and with what: machine, library versions, the env vars that matter."""
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine.machine_info(),
        "versions": machine.versions(),
        "env": machine.relevant_env(),
    }


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` whole or not at all: a temporary file beside ``path``, fsync, rename.

    The file gets the usual permissions (0666 less the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the pid in its name lets a later writer remove it if this process is killed (SIGKILL)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def json_text(data: Any) -> str:
    """How every onnxconv JSON file reads: indented, a final newline, and strict JSON: a NaN or
    infinite float (a metric of a NaN output, an SQNR of nothing) is written as null."""
    return json.dumps(_finite(data), indent=2, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float inside it (dict values, list and tuple items)
    replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json_text(data))


def check_destinations(
    files: Iterable[str | os.PathLike], folders: Iterable[str | os.PathLike] = ()
) -> None:
    """Refuse, with one line naming it, a report file that is a folder, a report folder that is
    a file, or either where an existing parent cannot be written: before a run, so that it does
    not end in a traceback with part of its reports written."""
    for path, want_folder in [
        *((Path(f), False) for f in files),
        *((Path(f), True) for f in folders),
    ]:
        if want_folder and path.exists() and not path.is_dir():
            raise UserInputError(f"{path}: exists and is not a folder")
        if not want_folder and path.is_dir():
            raise UserInputError(f"{path}: is a folder; name a file to write")
        # The nearest folder that exists is where the new files or folders get made.
        existing = next((p for p in path.parents if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise UserInputError(f"{path}: {existing} is a file, not a folder")
        # A folder of reports is staged beside itself and swapped in: both must be writable.
        for where in (existing, path if want_folder and path.is_dir() else None):
            if where is not None and not os.access(where, os.W_OK | os.X_OK):
                raise UserInputError(f"{path}: cannot write there (permission denied on {where})")


def write_files(files: Mapping[str | os.PathLike, bytes | str]) -> list[Path]:
    """Write several files, each atomically, holding the lock of every folder they go to (and
    with SIGINT/SIGTERM held off), so that of two runs writing the same files neither leaves a
    mix: the last one wins whole."""
    paths = {
        Path(p): data.encode("utf-8") if isinstance(data, str) else data
        for p, data in files.items()
    }
    check_destinations(paths)
    folders = sorted({p.parent.resolve() for p in paths})  # one order for everyone: no deadlock
    with contextlib.ExitStack() as stack:
        for folder in folders:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise UserInputError(f"{folder}: cannot write there ({error.strerror})") from None
            stack.enter_context(folder_lock(folder))
            clean_leftovers(folder)
        stack.enter_context(signals_deferred())
        return [write_bytes(path, data) for path, data in paths.items()]


@contextlib.contextmanager
def staged_folder(out_dir: str | os.PathLike, owned: Iterable[str]) -> Iterator[Path]:
    """Yield an empty staging folder beside ``out_dir``; when the block ends without an exception,
    its files replace ``out_dir``'s whole, under the parent folder's lock.

    ``owned`` names the files this kind of report consists of. When ``out_dir`` holds nothing
    else, the staging folder takes its place (two renames, the old folder set aside as
    ``.old-<name>-<pid>`` for that instant). When it also holds other files (``--out`` aimed at a
    folder shared with other things), those are kept: the new files are renamed in one by one
    and the owned files the new report lacks are removed. On an exception nothing changes.
    """
    out = Path(out_dir)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if out.exists() and not out.is_dir():
            raise UserInputError(f"{out}: exists and is not a folder")
        stage = staging_dir(parent)
    except OSError as error:
        raise UserInputError(f"{out}: cannot write there ({error.strerror})") from None
    try:
        yield stage
        with folder_lock(parent), signals_deferred():
            clean_leftovers(parent)
            _swap_in(stage, out, set(owned))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _swap_in(stage: Path, out: Path, owned: set[str]) -> None:
    if not out.is_dir() or all(p.name in owned for p in out.iterdir()):
        replace_folder(stage, out)
        return
    new = {p.name for p in stage.iterdir()}
    for name in sorted(new):
        os.replace(stage / name, out / name)
    for name in sorted(owned - new):
        (out / name).unlink(missing_ok=True)


def rerender_main(
    argv: list[str] | None, prog: str, what: str, rerender: Callable[[str], list[Path]]
) -> int:
    """The ``python -m PROG WHAT ...`` entry that writes reports again from their JSON with
    today's renderer: each report's files on one line, or one error line and exit 2."""
    import sys

    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print(f"usage: python -m {prog} {what} ...", file=sys.stderr)
        return 2
    try:
        for path in paths:
            print(", ".join(str(f) for f in rerender(path)))
    except UserInputError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    return 0
