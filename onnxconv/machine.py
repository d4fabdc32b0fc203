"""What machine a report was made on: CPU, ISA, memory, GPUs, library versions, environment.

:func:`machine_info`, :func:`versions` and :func:`relevant_env` read the machine without running
anything heavy and without importing torch. How fast the machine can go (its roofs) is measured
by :mod:`onnxconv.bench.roofs`.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from typing import Any

#: ISA flags (from /proc/cpuinfo) that decide which kernels ONNX Runtime and PyTorch pick.
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)

#: Environment variables that change threading or allocation behaviour of the timed code.
ENV_PREFIXES = (
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "KMP_",
    "GOMP_",
    "MALLOC_",
    "ORT_",
    "TORCH_",
    "ONEDNN_",
    "DNNL_",
    "CUDA_VISIBLE_DEVICES",
    "LD_PRELOAD",
)

#: Distributions whose versions every report records (first found of each alias group).
PACKAGES = (
    ("torch",),
    ("onnx",),
    ("onnxruntime", "onnxruntime-gpu"),
    ("onnxscript",),
    ("numpy",),
    ("matplotlib",),
    ("onnxconv",),
)


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.processor(), platform.machine()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


def _meminfo_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def max_threads() -> int:
    """The most threads a session may be asked for: 8 per CPU of this machine, 64 at the least
    (more only oversubscribes; a typo of 100000 starts that many threads and stalls the host)."""
    return max(64, 8 * (os.cpu_count() or 1))


def check_threads(value: int) -> int:
    """``value``, or a :class:`UserInputError` when it is above :func:`max_threads`."""
    from .errors import UserInputError

    if value > max_threads():
        raise UserInputError(
            f"{value} threads is more than this machine can run usefully: at most "
            f"{max_threads()} here ({os.cpu_count() or 1} CPUs; the limit is 64, or 8 threads per "
            "CPU where that is more)"
        )
    return value


def machine_info() -> dict[str, Any]:
    """CPU model, cores, ISA flags of interest, memory, OS, Python; cheap, imports nothing heavy."""
    model, flags = _cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    libc = platform.libc_ver()
    return {
        "cpu_model": model,
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "isa": {flag: flag in flags for flag in ISA_FLAGS},
        "memory_bytes": _meminfo_bytes(),
        "os": platform.platform(),
        "kernel": platform.release(),
        "libc": " ".join(part for part in libc if part) or None,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "gpus": gpu_info(),
    }


def nchwc_block() -> int | None:
    """The channel block of ONNX Runtime's NCHWc CPU kernels on this machine (MLAS: 16 floats
    with AVX-512, 8 with AVX2), or None where MLAS has none (then no NCHWc transform runs)."""
    _, flags = _cpuinfo()
    if "avx512f" in flags:
        return 16
    if "avx2" in flags:
        return 8
    return None


#: What nvidia-smi is asked for, in its own field names.
GPU_FIELDS = ("name", "driver_version", "memory.total", "compute_cap")


def gpu_info(nvidia_smi: str = "nvidia-smi") -> list[dict[str, str]]:
    """The NVIDIA GPUs ``nvidia-smi`` lists (name, driver, memory, compute capability); ``[]`` when
    there is no nvidia-smi or it fails (no driver, no GPU). Imports nothing; ~0.1 s when present."""
    if shutil.which(nvidia_smi) is None:
        return []
    try:
        done = subprocess.run(
            [nvidia_smi, "--query-gpu=" + ",".join(GPU_FIELDS), "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if done.returncode != 0:
        return []
    gpus = []
    for line in done.stdout.splitlines():
        values = [v.strip() for v in line.split(",")]
        if len(values) == len(GPU_FIELDS):
            gpus.append(dict(zip(("name", "driver", "memory", "compute_capability"), values)))
    return gpus


def describe_gpus(machine: dict[str, Any]) -> str | None:
    """``"NVIDIA H100 80GB HBM3 (driver 580.159.04, 81559 MiB, compute 9.0)"``; None without
    GPUs."""
    gpus = machine.get("gpus") or []
    if not gpus:
        return None
    return "; ".join(
        f"{g['name']} (driver {g['driver']}, {g['memory']}, compute {g['compute_capability']})"
        for g in gpus
    )


def versions() -> dict[str, Any]:
    """Versions of the libraries in the timed path and the EPs ONNX Runtime offers."""
    out: dict[str, Any] = {}
    for aliases in PACKAGES:
        for dist in aliases:
            try:
                out[aliases[0]] = importlib.metadata.version(dist)
                if dist != aliases[0]:
                    out[aliases[0] + "_distribution"] = dist
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        else:
            out[aliases[0]] = None
    try:
        import onnxruntime as ort

        out["onnxruntime_providers"] = list(ort.get_available_providers())
        out["onnxruntime_device"] = ort.get_device()
    except Exception as error:  # a broken install is recorded, not fatal here
        out["onnxruntime_providers"] = []
        text = str(error).splitlines()
        out["onnxruntime_error"] = text[0] if text else type(error).__name__
    out["python"] = sys.version.split()[0]
    return out


def relevant_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables (of ``env`` or this process) that change threading/allocation."""
    env = dict(os.environ if env is None else env)
    return {k: v for k, v in sorted(env.items()) if k.startswith(ENV_PREFIXES)}
