"""Several writers, one folder: an advisory lock, signals held off while files are swapped in, and
the leftovers of writers that were killed.

Every onnxconv command that replaces entries of a folder (export: the graph folders and
``manifest.json``; bench: its report folder; validate, detect, bench-compare: their report files)
does it while holding ``<folder>/.onnxconv.lock`` (``flock``, exclusive, released by the kernel
when the holder dies), so two runs never interleave their swaps. The lock is held only for the
swap itself, never while exporting or timing.

A writer stages its new files beside the old ones under a name that carries its pid
(``.staging-<pid>-*``; the folder it replaces is set aside as ``.old-<name>-<pid>`` for the
instant of the swap). A writer killed with SIGKILL can leave those behind; the next writer in the
same folder removes them, or puts an ``.old-`` folder back when its replacement never arrived
(:func:`clean_leftovers`). Readers skip every name that starts with a dot.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Iterator

from .errors import OnnxconvError, UserInputError

LOCK_NAME = ".onnxconv.lock"
#: An export's commit journal (see ``onnxconv.export.commit``): while one is in a folder, the
#: staging folders it names are kept for the export that rolls it forward.
JOURNAL = ".onnxconv-commit.json"
#: How long a writer waits for another one to finish its swap before it gives up (seconds);
#: the environment variable overrides it.
LOCK_TIMEOUT_S = 60.0
LOCK_TIMEOUT_ENV = "ONNXCONV_LOCK_TIMEOUT_S"
_POLL_S = 0.05

STAGING_RE = re.compile(r"^\.staging-(?P<pid>\d+)-")
OLD_RE = re.compile(r"^\.old-(?P<name>.+)-(?P<pid>\d+)$")
#: A file being written by :func:`onnxconv.report.write_bytes`: ``.<name>.<pid>-<random>.tmp``.
TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[^.]+\.tmp$")


class LockTimeout(OnnxconvError):
    """Another writer held a folder's lock for longer than the timeout (exit 2)."""


def lock_timeout() -> float:
    text = os.environ.get(LOCK_TIMEOUT_ENV, "")
    try:
        return float(text) if text else LOCK_TIMEOUT_S
    except ValueError:
        raise UserInputError(f"{LOCK_TIMEOUT_ENV}={text!r}: expected seconds") from None


def _holder(fd: int) -> str:
    """The pid the current holder wrote into the lock file, as text ("unknown" if none yet)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, timeout_s: float | None = None) -> Iterator[None]:
    """Hold ``folder``'s lock while the block runs; :class:`LockTimeout` names the folder and the
    holder's pid when another writer keeps it past ``timeout_s``. ``folder`` must exist."""
    folder = Path(folder)
    timeout_s = lock_timeout() if timeout_s is None else timeout_s
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise UserInputError(f"{folder}: cannot write there ({error.strerror})") from None
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"{folder}: another onnxconv run (pid {_holder(fd)}) has held "
                        f"{LOCK_NAME} for over {timeout_s:g} s; try again when it has finished"
                    ) from None
                time.sleep(_POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done (then they act as their handlers say), so
    a swap of several entries is never cut in half by them. A no-op outside the main thread.

    The handlers are swapped for a recorder rather than the signals blocked: a signal mask is
    per thread, and torch's or ONNX Runtime's threads would take the signal instead."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def record(signum: int, frame: object) -> None:
        caught.append(signum)

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if caught:
            signal.raise_signal(caught[0])  # handled now, as it would have been then


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def staging_dir(folder: Path) -> Path:
    """A new, empty staging folder in ``folder`` named after this process, with the usual
    permissions (not mkdtemp's private 0700: it may become the published folder)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=f".staging-{os.getpid()}-", dir=folder))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o777 & ~mask)
    return path


def old_name(target: Path) -> Path:
    """Where ``target`` is set aside for the instant it is replaced."""
    return target.with_name(f".old-{target.name}-{os.getpid()}")


def replace_folder(new: Path, target: Path) -> None:
    """Swap ``new`` into ``target``'s place; the old folder is removed only after the swap."""
    old = None
    if target.exists():
        old = old_name(target)
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old)


#: A work folder in $TMPDIR (:func:`work_folder`): ``onnxconv-<kind>-<pid>-<random>``.
WORK_RE = re.compile(r"^onnxconv-[a-z0-9]+-(?P<pid>\d+)-")


@contextlib.contextmanager
def work_folder(kind: str) -> Iterator[Path]:
    """A temporary folder for one run's work (bench's worker files, tune's candidates), named
    by this process; first the work folders of dead runs (a SIGKILL skips every cleanup) are
    removed from the same place."""
    import tempfile

    base = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            found = WORK_RE.match(entry.name)
            if found and entry.is_dir() and not pid_alive(int(found["pid"])):
                shutil.rmtree(entry, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"onnxconv-{kind}-{os.getpid()}-") as tmp:
        yield Path(tmp)


def clean_leftovers(folder: Path) -> list[str]:
    """Remove the staging folders and half-written temporary files of dead writers in
    ``folder``; an ``.old-<name>-<pid>`` folder of a dead writer goes back to ``<name>`` when
    nothing took its place, else it is removed. Call it holding ``folder``'s lock. Returns what
    was done, one phrase per leftover."""
    done: list[str] = []
    if (folder / JOURNAL).exists():
        return done  # an export's recovery rolls it forward first, then cleans
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        temp = TEMP_RE.match(entry.name)
        if temp is not None and entry.is_file() and not pid_alive(int(temp["pid"])):
            entry.unlink(missing_ok=True)
            done.append(f"removed {entry.name}")
            continue
        staging, old = STAGING_RE.match(entry.name), OLD_RE.match(entry.name)
        match = staging or old
        if match is None or pid_alive(int(match["pid"])) or not entry.is_dir():
            continue
        if old is not None and not (folder / old["name"]).exists():
            os.replace(entry, folder / old["name"])
            done.append(f"restored {old['name']} from {entry.name}")
        else:
            shutil.rmtree(entry, ignore_errors=True)
            done.append(f"removed {entry.name}")
    return done
