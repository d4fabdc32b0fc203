"""One timed backend in one fresh process: ``python -m onnxconv.bench.worker``.

The harness (:mod:`onnxconv.bench`) starts one worker per cell and round, writes a JSON job to its
stdin and reads one JSON result from its stdout. A fresh process per backend means two spinning
thread pools never share a process, and allocator state never carries over between cells.

Job (all kinds): ``{"kind": "ort" | "torch" | "roofs" | "nodes", "threads": int, ...}``

- ``ort``: ``model`` (path), ``inputs`` ({input name: .npy path}), ``ep`` (``cpu``/``cuda``),
  ``opt_level``, ``cuda_options``, ``warmup``, ``warmup_s``, ``blocks``, ``calls``, ``profile``
  (bool), ``profile_prefix``; optional ``session_config`` (session config entries) and
  ``session_options`` (``SessionOptions`` attributes), as :func:`onnxconv.runtime.make_session`
  takes them. With ``cuda_options.enable_cuda_graph == "1"`` the outputs are bound to buffers
  allocated once (CUDA graphs replay fixed addresses).
- ``torch``: ``variant``, ``config``, ``seed``, ``input`` (.npy path), ``device``
  (``cpu``/``cuda``), ``compile`` (bool), ``tf32`` (bool, CUDA), ``warmup``, ``warmup_s``,
  ``blocks``, ``calls``.
- ``roofs``: ``matmul_n``, ``copy_mb``, ``repeats``, ``device`` (``cpu``/``cuda``).
- ``nodes``: ``model``, ``inputs`` (their shapes fix dynamic dims), ``ep``, ``opt_level``,
  ``cuda_options``, ``warmup``, ``calls``: every node timed alone
  (:mod:`onnxconv.bench.node_times`).

Result: ``{"ok": true, "blocks_ns": [[int, ...], ...], "minflt": int, "majflt": int,
"page_faults_per_call": float, "outputs": [{"shape": [...], "abs_sum": float}], ...}`` or
``{"ok": false, "error": "one line"}``. Thread settings must be in the environment before numpy,
onnxruntime or torch are imported (``OMP_NUM_THREADS`` and friends): the harness sets them.

Only this JSON goes to stdout: file descriptor 1 is pointed at stderr while the job runs, so the
libraries' own prints cannot corrupt the result.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
import traceback
from typing import Any, Callable


def time_calls(
    fn: Callable[[], Any],
    *,
    warmup: int,
    warmup_s: float,
    blocks: int,
    calls: int,
    sync: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Warm up, then ``blocks`` x ``calls`` timed calls with ``perf_counter_ns`` around each call.

    Warm-up runs at least ``warmup`` calls and at least ``warmup_s`` seconds. The garbage collector
    is off during the timed calls. Page faults are ``getrusage`` deltas over the timed calls only.
    """
    end = time.perf_counter() + warmup_s
    done = 0
    while done < warmup or time.perf_counter() < end:
        fn()
        done += 1
    if sync is not None:
        sync()
    clock = time.perf_counter_ns
    out: list[list[int]] = []
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        before = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(blocks):
            block = [0] * calls
            for i in range(calls):
                t0 = clock()
                fn()
                if sync is not None:
                    sync()
                block[i] = clock() - t0
            out.append(block)
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        if gc_was_enabled:
            gc.enable()
    n = blocks * calls
    minflt = after.ru_minflt - before.ru_minflt
    return {
        "blocks_ns": out,
        "warmup_calls": done,
        "minflt": minflt,
        "majflt": after.ru_majflt - before.ru_majflt,
        "page_faults_per_call": minflt / n if n else 0.0,
        "voluntary_ctx_switches_per_call": (after.ru_nvcsw - before.ru_nvcsw) / n if n else 0.0,
        "involuntary_ctx_switches_per_call": (after.ru_nivcsw - before.ru_nivcsw) / n if n else 0.0,
    }


def _describe(arrays) -> list[dict[str, Any]]:
    import numpy as np

    return [
        {
            "shape": list(a.shape),
            "dtype": str(a.dtype),
            "abs_sum": float(np.abs(np.asarray(a, dtype=np.float64)).sum()),
        }
        for a in arrays
    ]


def _timing_args(job: dict[str, Any]) -> dict[str, Any]:
    return {k: job[k] for k in ("warmup", "warmup_s", "blocks", "calls")}


# ---------------------------------------------------------------------------------------------
# ONNX Runtime


def run_ort(job: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    from onnxconv.runtime import (
        DEFAULT_CUDA_OPTIONS,
        OPT_LEVELS,
        apply_session_settings,
        preload_cuda_libraries,
    )
    from onnxconv.runtime.inputs import ort_tensor_spec

    threads = int(job["threads"])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = OPT_LEVELS[job["opt_level"]]
    so.log_severity_level = 3
    apply_session_settings(so, job.get("session_config"), job.get("session_options"))
    if job.get("profile"):
        so.enable_profiling = True
        so.profile_file_prefix = job["profile_prefix"]
    ep = job.get("ep", "cpu")
    cuda_options: dict[str, str] = {}
    if ep == "cuda":
        preload_cuda_libraries()
        cuda_options = dict(DEFAULT_CUDA_OPTIONS)
        cuda_options.update({k: str(v) for k, v in (job.get("cuda_options") or {}).items()})
        providers: list[Any] = [("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"]
    elif ep == "cpu":
        providers = ["CPUExecutionProvider"]
    else:
        return {"ok": False, "error": f"execution provider {ep!r} is not supported by the bench"}
    t0 = time.perf_counter()
    session = ort.InferenceSession(job["model"], so, providers=providers)
    session_s = time.perf_counter() - t0
    active = session.get_providers()
    wanted = "CUDAExecutionProvider" if ep == "cuda" else "CPUExecutionProvider"
    if not active or active[0] != wanted:
        if job.get("profile"):
            os.remove(session.end_profiling())
        return {
            "ok": False,
            "status": "unavailable",
            "error": f"asked for {wanted} but ONNX Runtime runs {', '.join(active) or 'nothing'}",
        }
    feeds = {name: np.load(path) for name, path in job["inputs"].items()}
    result: dict[str, Any] = {
        "ok": True,
        "providers": active,
        "session_s": session_s,
        "session_options": {
            "intra_op_num_threads": so.intra_op_num_threads,
            "inter_op_num_threads": so.inter_op_num_threads,
            "execution_mode": str(so.execution_mode).split(".")[-1],
            "graph_optimization_level": str(so.graph_optimization_level).split(".")[-1],
            "enable_cpu_mem_arena": so.enable_cpu_mem_arena,
            "enable_mem_pattern": so.enable_mem_pattern,
            "enable_profiling": bool(job.get("profile")),
            "session_config": dict(job.get("session_config") or {}),
        },
    }
    if ep == "cuda":
        # (Ran on an H100: reports/cuda-h100.) IO binding keeps inputs and outputs on the
        # device, so the timed call excludes host<->device copies; those are timed apart.
        # run_with_iobinding returns after ORT synchronised the CUDA stream (ORT's default).
        binding = session.io_binding()
        t0 = time.perf_counter_ns()
        device_inputs = {
            n: ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0) for n, a in feeds.items()
        }
        h2d_ns = time.perf_counter_ns() - t0
        for name, value in device_inputs.items():
            binding.bind_ortvalue_input(name, value)
        cuda_graph = cuda_options.get("enable_cuda_graph") == "1"
        for out in session.get_outputs():
            if cuda_graph:
                dtype = ort_tensor_spec(out).dtype  # cuda_graph_blocker: a numpy type
                buffer = ort.OrtValue.ortvalue_from_shape_and_type(out.shape, dtype, "cuda", 0)
                binding.bind_ortvalue_output(out.name, buffer)
            else:
                binding.bind_output(out.name, "cuda", 0)

        def call() -> None:
            session.run_with_iobinding(binding)

        result.update(time_calls(call, **_timing_args(job)))
        t0 = time.perf_counter_ns()
        outputs = binding.copy_outputs_to_cpu()
        result["copies_ms"] = {
            "host_to_device": h2d_ns / 1e6,
            "device_to_host": (time.perf_counter_ns() - t0) / 1e6,
        }
        result["io_binding"] = True
        result["cuda_options"] = session.get_provider_options().get(
            "CUDAExecutionProvider", cuda_options
        )
    else:

        def call() -> None:
            session.run(None, feeds)

        result.update(time_calls(call, **_timing_args(job)))
        outputs = session.run(None, feeds)
        result["io_binding"] = False
    result["outputs"] = _describe(outputs)
    if job.get("profile"):
        from onnxconv.bench.stats import parse_ort_profile  # pure functions: no torch, no onnx

        path = session.end_profiling()
        try:
            with open(path, encoding="utf-8") as f:
                events = json.load(f)
            runs = int(job["calls"]) * int(job["blocks"])
            result["profile"] = parse_ort_profile(events, last_runs=runs)
        finally:
            try:
                os.remove(path)
            except OSError:
                pass
        result.pop("blocks_ns")  # profiled timings are not measurements
    return result


# ---------------------------------------------------------------------------------------------
# PyTorch


def _torch_subject(job: dict[str, Any]) -> tuple[Any, list[Any]]:
    """The module to time and its inputs: a zoo variant (``variant``, ``config``, ``seed``,
    ``input``) or the user's module (``module``: a recipe, ``inputs``: .npy paths in order)."""
    import numpy as np
    import torch

    if job.get("module"):
        from onnxconv.user_model import ModuleRecipe, adopt_import_path

        adopt_import_path(job.get("sys_path", []))
        module, _ = ModuleRecipe.from_dict(job["module"]).build()
        return module, [torch.from_numpy(np.load(path)) for path in job["inputs"]]
    from onnxconv import variants

    spec = variants.get(job["variant"])
    module = spec.build(job["config"], seed=int(job.get("seed", 0)))
    return module, [torch.from_numpy(np.load(job["input"]))]


def run_torch(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    threads = int(job["threads"])
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (interop pool started): recorded below
        pass
    module, xs = _torch_subject(job)
    device = job.get("device", "cpu")
    sync = None
    if device == "cuda":
        # Synchronise after every call so the timing covers the kernels, not just their launch.
        if not torch.cuda.is_available():
            return {"ok": False, "status": "unavailable", "error": "torch.cuda is not available"}
        # The same numerics as ORT's CUDA EP here (use_tf32=0) and the same kernel choice
        # (cuDNN benchmarks algorithms once per shape, like cudnn_conv_algo_search=EXHAUSTIVE).
        tf32 = bool(job.get("tf32", False))  # follows the ORT cells' use_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True
        module, xs = module.cuda(), [x.cuda() for x in xs]
        sync = torch.cuda.synchronize
    result: dict[str, Any] = {
        "ok": True,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "device": device,
        "cuda_settings": (
            {
                "allow_tf32": bool(job.get("tf32", False)),
                "cudnn_benchmark": True,
                "device_name": torch.cuda.get_device_name(),
            }
            if device == "cuda"
            else None
        ),
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
    }
    with torch.inference_mode():
        fn: Callable[[], Any] = module
        if job.get("compile"):
            try:
                compiled = torch.compile(module)
                t0 = time.perf_counter()
                compiled(*xs)
                if sync is not None:
                    sync()
                result["compile_s"] = time.perf_counter() - t0
                fn = compiled
            except Exception as error:  # any compiler failure becomes the cell's error
                return {
                    "ok": False,
                    "status": "error",
                    "error": "torch.compile failed: " + _one_line(error),
                }
        result.update(time_calls(lambda: fn(*xs), sync=sync, **_timing_args(job)))
        out = fn(*xs)
        outs = out if isinstance(out, (tuple, list)) else [out]
        result["outputs"] = _describe([o.detach().cpu().numpy() for o in outs])
    return result


# ---------------------------------------------------------------------------------------------


def run_roofs(job: dict[str, Any]) -> dict[str, Any]:
    from onnxconv.bench.roofs import measure_cuda_roofs, measure_roofs

    if job.get("device") == "cuda":
        return {
            "ok": True,
            "roofs": measure_cuda_roofs(
                matmul_n=int(job.get("matmul_n", 8192)),
                copy_mb=int(job.get("copy_mb", 1024)),
                repeats=int(job.get("repeats", 5)),
            ),
        }
    roofs = measure_roofs(
        int(job["threads"]),
        matmul_n=int(job.get("matmul_n", 2048)),
        copy_mb=int(job.get("copy_mb", 256)),
        repeats=int(job.get("repeats", 5)),
    )
    return {"ok": True, "roofs": roofs}


def _one_line(error: BaseException) -> str:
    """A library's error with its type (``RuntimeError: ...``); onnxconv's own, which are
    written for the user, as they are."""
    from onnxconv.errors import OnnxconvError

    text = " ".join(str(error).split())
    text = text[:300] + ("..." if len(text) > 300 else "")
    if isinstance(error, OnnxconvError) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def run_nodes(job: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import onnx

    from onnxconv.bench.node_times import time_nodes

    ep = job.get("ep", "cpu")
    shapes = {
        name: np.load(path, mmap_mode="r").shape for name, path in (job.get("inputs") or {}).items()
    }
    nodes = time_nodes(
        onnx.load(job["model"]),
        ep,
        job["opt_level"],
        input_shapes=shapes,
        threads=int(job["threads"]),
        cuda_options=job.get("cuda_options"),
        warmup=int(job.get("warmup", 5)),
        calls=int(job.get("calls", 30)),
    )
    return {"ok": True, "per_node": nodes}


KINDS = {"ort": run_ort, "torch": run_torch, "roofs": run_roofs, "nodes": run_nodes}


def die_with_parent() -> None:
    """On Linux, have the kernel SIGKILL this worker when the bench process that started it dies,
    even by SIGKILL, so no worker outlives its run (SIGINT/SIGTERM kill it through
    ``subprocess.run``). Elsewhere a no-op. A parent already gone when this runs (killed while
    the worker started) is seen by its pid (``ONNXCONV_BENCH_PARENT``): the worker exits."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    parent = os.environ.get("ONNXCONV_BENCH_PARENT")
    if parent and os.getppid() != int(parent):  # reparented: the bench died before the prctl
        os._exit(1)


def main() -> int:
    die_with_parent()
    result_stream = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything the libraries print goes to stderr
    sys.stdout = sys.stderr
    try:
        job = json.loads(sys.stdin.read())
        kind = job.get("kind")
        if kind not in KINDS:
            result: dict[str, Any] = {"ok": False, "error": f"unknown job kind {kind!r}"}
        else:
            t0 = time.perf_counter()
            result = KINDS[kind](job)
            result["wall_s"] = time.perf_counter() - t0
        result["pid"] = os.getpid()
    except Exception as error:
        traceback.print_exc()
        result = {"ok": False, "error": _one_line(error)}
    result_stream.write(json.dumps(result))
    result_stream.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
