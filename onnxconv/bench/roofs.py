"""How fast this machine can go: its compute and memory roofs.

:func:`measure_roofs` runs the two roof benchmarks in the calling process; the bench harness
calls it inside a fresh worker process with the same thread settings as the timed cells
(``python -m onnxconv.bench.worker``), never in-process.

Roofs (the roofline model, Williams et al. 2009):

- compute roof: GFLOP/s of a large fp32 matrix product (``n x n @ n x n``, 2·n³ FLOPs), the best
  of several repeats, from numpy (OpenBLAS), torch (its BLAS) and ONNX Runtime (a MatMul graph:
  MLAS, whose AVX-512 kernels can be twice OpenBLAS's here); the fastest one is the roof.
- memory roof: GB/s of a large copy (``copy_mb`` MiB source into a same-sized destination),
  counting read + write (2 x bytes), best of several; numpy's copy is single-threaded, torch's
  ``copy_`` uses the intra-op threads; the faster one is the roof.
"""

from __future__ import annotations

import time
from typing import Any


def _best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: page in buffers, spin up thread pools, pick kernels
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - t0) / 1e9)
    return best


def _numpy_roofs(n: int, n_floats: int, repeats: int) -> dict[str, float]:
    """numpy's fp32 matmul GFLOP/s and copy GB/s (read + write); the arrays die on return."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty_like(a)
    matmul = 2.0 * n**3 / _best_seconds(lambda: np.matmul(a, b, out=c), repeats) / 1e9
    src = np.ones(n_floats, dtype=np.float32)
    dst = np.zeros_like(src)
    copy = 2.0 * src.nbytes / _best_seconds(lambda: np.copyto(dst, src), repeats) / 1e9
    return {"numpy_matmul_gflops": matmul, "numpy_copy_gbps": copy}


def _torch_roofs(threads: int, n: int, n_floats: int, repeats: int) -> dict[str, float]:
    """torch's fp32 matmul GFLOP/s and copy GB/s with ``threads`` intra-op threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty_like(a)
    matmul = 2.0 * n**3 / _best_seconds(lambda: torch.mm(a, b, out=c), repeats) / 1e9
    src, dst = torch.ones(n_floats), torch.zeros(n_floats)
    copy = 2.0 * 4 * n_floats / _best_seconds(lambda: dst.copy_(src), repeats) / 1e9
    return {
        "torch_matmul_gflops": matmul,
        "torch_copy_gbps": copy,
        "torch_threads": torch.get_num_threads(),
    }


def _ort_roofs(threads: int, n: int, repeats: int) -> dict[str, float]:
    """ONNX Runtime's fp32 MatMul GFLOP/s (MLAS, the kernels ORT's Convs use) on the CPU EP
    with ``threads`` intra-op threads."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "matmul_roof",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    seconds = _best_seconds(lambda: session.run(None, {"a": a}), repeats)
    return {"ort_matmul_gflops": 2.0 * n**3 / seconds / 1e9}


def measure_roofs(
    threads: int, matmul_n: int = 2048, copy_mb: int = 256, repeats: int = 5
) -> dict[str, Any]:
    """Compute roof (GFLOP/s, fp32 matmul) and memory roof (GB/s, copy) with ``threads`` threads.

    Runs in the calling process: call it from a process whose OMP/BLAS thread variables were set
    before numpy/torch were imported (the bench worker does). Each library's figure is kept under
    ``details``; the roofs are the best of them.
    """
    n_floats = copy_mb * (1 << 20) // 4
    details: dict[str, Any] = _numpy_roofs(matmul_n, n_floats, repeats)
    try:
        details.update(_torch_roofs(threads, matmul_n, n_floats, repeats))
    except ImportError:
        details["torch_error"] = "torch not installed"
    try:
        details.update(_ort_roofs(threads, matmul_n, repeats))
    except Exception as error:  # one probe less, not a bench without roofs
        details["ort_error"] = f"{type(error).__name__}: {error}"[:300]
    compute = max(v for k, v in details.items() if k.endswith("_gflops"))
    memory = max(v for k, v in details.items() if k.endswith("_gbps"))
    return {
        "compute_gflops": compute,
        "memory_gbps": memory,
        "ridge_flops_per_byte": compute / memory,
        "threads": threads,
        "method": {
            "matmul_n": matmul_n,
            "copy_mb": copy_mb,
            "repeats": repeats,
            "dtype": "float32",
            "copy_counts": "read + write",
        },
        "details": details,
    }


def measure_cuda_roofs(
    matmul_n: int = 8192, copy_mb: int = 1024, repeats: int = 5
) -> dict[str, Any]:
    """GPU roofs through PyTorch: fp32 matmul GFLOP/s (TF32 off, as the benched cells run) and
    device-to-device copy GB/s (read + write), timed with CUDA events, best of ``repeats``."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("torch.cuda is not available")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")

    def best_seconds(fn) -> float:
        fn()
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3)
        return best

    def matmul_gflops() -> float:  # the buffers die on return
        a, b = (torch.randn(matmul_n, matmul_n, device=dev) for _ in range(2))
        c = torch.empty_like(a)
        return 2.0 * matmul_n**3 / best_seconds(lambda: torch.mm(a, b, out=c)) / 1e9

    def copy_gbps() -> float:
        n_floats = copy_mb * (1 << 20) // 4
        src, dst = torch.ones(n_floats, device=dev), torch.zeros(n_floats, device=dev)
        return 2.0 * 4 * n_floats / best_seconds(lambda: dst.copy_(src)) / 1e9

    compute, memory = matmul_gflops(), copy_gbps()
    torch.cuda.empty_cache()
    return {
        "compute_gflops": compute,
        "memory_gbps": memory,
        "ridge_flops_per_byte": compute / memory,
        "threads": None,
        "device": torch.cuda.get_device_name(),
        "method": {
            "matmul_n": matmul_n,
            "copy_mb": copy_mb,
            "repeats": repeats,
            "dtype": "float32 (TF32 off)",
            "copy_counts": "read + write",
            "timer": "CUDA events",
        },
        "details": {"torch_cuda_matmul_gflops": compute, "torch_cuda_copy_gbps": memory},
    }
