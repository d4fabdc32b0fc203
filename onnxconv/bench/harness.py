"""Timing harness: ONNX Runtime against PyTorch, side by side, with roofline and per-op breakdown.

Library code: plain values in, a :class:`~onnxconv.bench.report.BenchReport` out; nothing is
printed (pass ``progress`` to hear about each step). :mod:`onnxconv.cli` wires ``onnxconv bench``
to :func:`run_bench` and :func:`onnxconv.bench.report.write_report`. This module is the entry
(:func:`run_bench`) and the method; the loop is :mod:`onnxconv.bench.loop`, the settings live in
:mod:`onnxconv.bench.settings`, the sources and their inputs in :mod:`onnxconv.bench.sources`,
launching workers in :mod:`onnxconv.bench.launch`, the cells in :mod:`onnxconv.bench.cells`, the
statistics in :mod:`onnxconv.bench.stats`, the report and its files in
:mod:`onnxconv.bench.report`, the timed process in :mod:`onnxconv.bench.worker`.

Method (why the numbers can be trusted on a shared 2-core machine)
------------------------------------------------------------------
- A *cell* is one thing timed: (source, batch, backend, target), e.g. ``grouped``, batch 1, ORT
  ``cpu/all/fp32``; or PyTorch eager on ``cpu``. Sources are registry variants (ORT runs the graph
  exported from the very module PyTorch runs, both fed the same saved input) or bare ``.onnx``
  files / test-data folders (ORT only: there is no module to run in PyTorch).
- Every cell runs in its own fresh process (:mod:`onnxconv.bench.worker`), with the thread count
  set explicitly and equal for both runtimes (ORT ``intra_op_num_threads`` + inter-op 1,
  sequential; torch ``set_num_threads`` + ``set_num_interop_threads(1)``; ``OMP_NUM_THREADS``,
  ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` in the child's environment).
- Processes alternate ORT, torch, ORT, torch ... for ``rounds`` rounds (per round: every ORT
  target, then every torch backend). Ratios are computed pair by pair (round i's ORT p50 against
  round i's torch p50) and the median ratio is reported, so drift hits both sides equally.
- Each process warms up, then times ``blocks`` x ``calls`` calls, ``time.perf_counter_ns``
  around each call, GC off. Quoted figures are medians; the spread of block medians says how
  steady the machine was.
- PyTorch's worker gets ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` so glibc keeps
  freed activations on the heap instead of unmapping and faulting them in again every call;
  page faults per timed call are reported for every cell.
- Roofs (compute from a large fp32 matmul, memory from a large copy) are measured at start-up,
  in a worker with the same threads (:mod:`onnxconv.machine`), and once more at the end; the
  higher of the two is used (a roof disturbed by another process only reads low). The memory
  roof is DRAM bandwidth: a cell whose bytes fit in cache (the bare channel shuffle) can exceed
  it.
- The per-op breakdown comes from a separate, profiled ORT run (``enable_profiling``) per ORT
  cell, never from the timed one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import UserInputError
from ..locking import work_folder
from .cells import combine_roofs
from .launch import TORCH_MALLOC_ENV, run_worker, worker_env
from .loop import run_sources
from .report import BenchReport
from .settings import (
    BACKENDS,
    CUDNN_SEARCH,
    EPS,
    OPT_LEVELS,
    BenchSettings,
    Progress,
    default_eps,
)
from .sources import Source, resolve_sources, torch_of

__all__ = [
    "BACKENDS",
    "CUDNN_SEARCH",
    "EPS",
    "OPT_LEVELS",
    "TORCH_MALLOC_ENV",
    "BenchSettings",
    "Progress",
    "Source",
    "combine_roofs",
    "default_eps",
    "resolve_sources",
    "run_bench",
    "run_worker",
    "torch_of",
    "worker_env",
]


def run_bench(
    items: Sequence[str | os.PathLike],
    settings: BenchSettings | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    variant_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    work_dir: str | os.PathLike | None = None,
    module: Mapping[str, Any] | None = None,
    manifest_modules: bool = True,
    progress: Progress | None = None,
) -> BenchReport:
    """Bench ``items`` (variant names, ``.onnx`` paths or test-data folders) on ORT and PyTorch.

    ``settings`` say how to time (``BenchSettings()`` when None; run as
    :meth:`BenchSettings.resolved`, so ``eps=None`` means the active EPs). ``overrides`` apply to
    every variant that has the key, ``variant_overrides`` to one variant by name; ``module`` is
    the user's module (a recipe) for the one ``.onnx`` file benched; ``manifest_modules``
    False leaves the modules that export folders' manifests name unimported (ONNX Runtime alone
    is timed for those graphs, and the report's notes say so). ``work_dir`` keeps the exported
    graphs and inputs (a temporary folder otherwise).

    Raises :class:`UserInputError` (one line) for bad input before anything is timed: unknown
    variant, missing or non-ONNX file, threads < 1, empty batch list, unknown EP or level.
    Failures while timing (a worker crash, torch.compile failing, an EP not active) are
    recorded in the cell (``status``, ``error``) instead.
    """
    settings = (BenchSettings() if settings is None else settings).resolved()
    settings.validate()
    # a module given here replaces the one the graph's manifest names: that one is not imported
    sources = resolve_sources(
        items, overrides, variant_overrides, manifest_modules and module is None
    )
    if module is not None:  # the user's module (a recipe) speaks for the one graph benched
        if len(sources) != 1 or sources[0].kind != "onnx":
            raise UserInputError("a module goes with exactly one .onnx file or graph folder")
        sources[0].module = dict(module)
    if any(s.kind == "variant" for s in sources):
        from ..export import ExportOptions

        ExportOptions(
            opset=settings.opset, exporter=settings.exporter, seed=settings.seed
        ).validate()
    if work_dir is None:
        with work_folder("bench") as tmp:
            report = run_sources(sources, settings, tmp, progress)
    else:
        work = Path(work_dir)
        work.mkdir(parents=True, exist_ok=True)
        report = run_sources(sources, settings, work, progress)
    report.notes += [
        f"PyTorch is not timed beside {s.label}: {s.torch_left_out}"
        for s in sources
        if s.torch_left_out and not s.has_torch
    ]
    return report
