"""Launching workers: one job in a fresh ``python -m onnxconv.bench.worker`` process, with the
thread counts pinned in its environment. Used by the bench run and by ``tune``'s timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from ..errors import one_line as _one_line

#: glibc settings for the PyTorch worker: freed blocks up to 1 GiB stay on the heap (no
#: munmap/mmap and page faults per call) and the heap top is never trimmed back.
TORCH_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 34)}


def _package_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def worker_env(threads: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker: this one, with thread counts pinned and ``extra`` added."""
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    root = _package_root()
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def run_worker(job: Mapping[str, Any], env: Mapping[str, str], timeout_s: float) -> dict[str, Any]:
    """Run one job in a fresh ``python -m onnxconv.bench.worker``; failures come back as
    ``{"ok": False, "error": ...}``, never as exceptions."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "onnxconv.bench.worker"],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env={**env, "ONNXCONV_BENCH_PARENT": str(os.getpid())},
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "status": "error", "error": f"worker timed out after {timeout_s:g} s"}
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit status {proc.returncode}, no output"
        return {"ok": False, "status": "error", "error": f"worker failed: {_one_line(why)}"}
    if proc.returncode != 0 and result.get("ok"):
        result = {"ok": False, "error": f"worker exit status {proc.returncode}"}
    return result
