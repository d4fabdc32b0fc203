"""Timing harness: ONNX Runtime against PyTorch, side by side, with roofline and per-op breakdown.

Library code: plain values in, a :class:`~onnxconv.bench.report.BenchReport` out; nothing is
printed (pass ``progress`` to hear about each step). :mod:`onnxconv.cli` wires ``onnxconv bench`` to
:func:`run_bench` and :func:`onnxconv.bench.report.write_report`. This module is the run itself
(:func:`run_bench` and its loop); the settings live in :mod:`onnxconv.bench.settings`, the sources
and their inputs in :mod:`onnxconv.bench.sources`, launching workers in
:mod:`onnxconv.bench.launch`, the cells in :mod:`onnxconv.bench.cells`, the statistics in
:mod:`onnxconv.bench.stats`, the report and its files in :mod:`onnxconv.bench.report`, the timed
process in :mod:`onnxconv.bench.worker`.

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

import dataclasses
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import UserInputError
from ..user_model import torch_job
from .cells import cell_base, combine_roofs, finish_cell, pair, record_round
from .launch import TORCH_MALLOC_ENV, run_worker, worker_env
from .pressure import cpu_pressure_since, cpu_stall
from .report import BenchReport, measurement_notes
from .settings import BACKENDS, CUDNN_SEARCH, EPS, OPT_LEVELS, BenchSettings, Progress
from .sources import Prepared, Source, deploy_all, prepare, recipe_of, resolve_sources

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
    "recipe_of",
    "resolve_sources",
    "run_bench",
    "run_worker",
    "worker_env",
]


def default_eps() -> tuple[str, ...]:
    """``cpu``, plus ``cuda`` where the CUDA EP is active (:func:`runtime.default_eps`)."""
    from ..runtime import default_eps as active_eps

    return tuple(ep for ep in active_eps()[0] if ep in ("cpu", "cuda"))


def run_bench(
    items: Sequence[str | os.PathLike],
    *,
    overrides: Mapping[str, Any] | None = None,
    variant_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    threads: int = 1,
    batches: Sequence[int] = (1,),
    eps: Sequence[str] | None = None,
    opt_levels: Sequence[str] | None = None,
    precisions: Sequence[str] = ("fp32",),
    rounds: int = 2,
    blocks: int = 5,
    calls: int = 100,
    warmup: int = 10,
    warmup_s: float = 0.3,
    compile: bool = False,
    profile: bool = True,
    profile_calls: int = 50,
    per_node: bool = False,
    per_node_calls: int = 30,
    cuda_options: Mapping[str, Any] | None = None,
    roofs: bool = True,
    seed: int = 0,
    opset: int = 18,
    exporter: str = "dynamo",
    roof_matmul_n: int = 2048,
    roof_copy_mb: int = 256,
    roof_repeats: int = 5,
    torch_malloc_env: Mapping[str, str] | None = None,
    timeout_s: float = 600.0,
    work_dir: str | os.PathLike | None = None,
    module: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> BenchReport:
    """Bench ``items`` (variant names, ``.onnx`` paths or test-data folders) on ORT and PyTorch.

    Raises :class:`UserInputError` (one line) for bad input before anything is timed: unknown
    variant, missing or non-ONNX file, threads < 1, empty batch list, unknown EP or level.
    Failures while timing (a worker crash, torch.compile failing, an EP not active) are
    recorded in the cell (``status``, ``error``) instead. ``work_dir`` keeps the exported graphs
    and inputs (a temporary folder otherwise). ``torch_malloc_env`` replaces
    :data:`TORCH_MALLOC_ENV` for the PyTorch workers (``{}``: glibc's defaults, for an A/B).
    """
    settings = BenchSettings(
        threads=threads,
        batches=tuple(batches),
        eps=tuple(eps) if eps is not None else (),
        opt_levels=tuple(opt_levels) if opt_levels is not None else OPT_LEVELS,
        precisions=tuple(precisions),
        rounds=rounds,
        blocks=blocks,
        calls=calls,
        warmup=warmup,
        warmup_s=warmup_s,
        compile=compile,
        profile=profile,
        profile_calls=profile_calls,
        per_node=per_node,
        per_node_calls=per_node_calls,
        cuda_options={k: str(v) for k, v in (cuda_options or {}).items()},
        roofs=roofs,
        seed=seed,
        opset=opset,
        exporter=exporter,
        roof_matmul_n=roof_matmul_n,
        roof_copy_mb=roof_copy_mb,
        roof_repeats=roof_repeats,
        timeout_s=timeout_s,
        torch_malloc_env=dict(TORCH_MALLOC_ENV if torch_malloc_env is None else torch_malloc_env),
    )
    if eps is None:
        settings = BenchSettings(**{**settings.__dict__, "eps": default_eps()})
    settings.validate()
    sources = resolve_sources(items, overrides, variant_overrides)
    if module is not None:  # the user's module (a recipe) speaks for the one graph benched
        if len(sources) != 1 or sources[0].kind != "onnx":
            raise UserInputError("a module goes with exactly one .onnx file or graph folder")
        sources[0].module = dict(module)
    if any(s.kind == "variant" for s in sources):
        from ..export import ExportOptions

        ExportOptions(opset=opset, exporter=exporter, seed=seed).validate()
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="onnxconv-bench-") as tmp:
            return _run(sources, settings, Path(tmp), progress)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    return _run(sources, settings, work, progress)


def _torch_devices(settings: BenchSettings) -> list[str]:
    devices = ["cpu"] if "cpu" in settings.eps else []
    if "cuda" in settings.eps:
        import torch

        if torch.cuda.is_available():
            devices.append("cuda")
    return devices


def _run(
    sources: list[Source], settings: BenchSettings, work: Path, progress: Progress | None
) -> BenchReport:
    return _Harness(sources, settings, work, progress).run()


class _Harness:
    """One bench run: the worker environments, the targets, the progress count, the report."""

    def __init__(
        self, sources: list[Source], settings: BenchSettings, work: Path, progress: Progress | None
    ) -> None:
        from ..runtime import ep_unavailable_reason

        self.sources, self.settings, self.work, self.progress = sources, settings, work, progress
        self.env = worker_env(settings.threads)
        self.torch_env = worker_env(settings.threads, settings.torch_malloc_env)
        self.ort_targets = [
            (ep, level, precision)
            for ep in settings.eps
            for precision in settings.precisions
            for level in settings.opt_levels
        ]
        self.torch_backends = ["torch"] + (["torch_compile"] if settings.compile else [])
        self.devices = _torch_devices(settings)
        eps = {*settings.eps, *(s.tuned.ep for s in sources if s.tuned)}
        self.unavailable_eps = {
            ep: reason
            for ep in eps
            if ep != "cpu" and (reason := ep_unavailable_reason(ep)) is not None
        }
        per_target = settings.rounds + settings.profile + settings.per_node
        per_variant = settings.rounds * len(self.torch_backends) * len(self.devices)
        self.total = (2 if settings.roofs else 1) + len(settings.batches) * sum(
            len(self.targets_of(s)) * per_target + 1 + per_variant * s.has_torch for s in sources
        )
        self.done = 0
        self.roof_results: list[dict[str, Any]] = []
        self.cuda_roof_results: list[dict[str, Any]] = []

    def targets_of(self, source: Source) -> list[tuple[str, str, str]]:
        """``(ep, level, precision)`` of every ORT cell of ``source``: a tuned graph has its one."""
        t = source.tuned
        return [(t.ep, t.opt_level, t.precision)] if t else self.ort_targets

    def session_job(self, source: Source) -> dict[str, Any]:
        """The session part of an ORT worker job: the run's CUDA options, and a tuned graph's
        own settings over them."""
        t = source.tuned
        if t is None:
            return {"cuda_options": self.settings.cuda_options}
        return {
            "cuda_options": {**self.settings.cuda_options, **t.cuda_options},
            "session_config": t.session_config,
            "session_options": t.session_options,
        }

    def step(self, message: str) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total, message)
        self.done += 1

    def worker(self, job: dict[str, Any], torch_side: bool = False) -> dict[str, Any]:
        before = cpu_stall()
        result = run_worker(
            {"threads": self.settings.threads, **job},
            self.torch_env if torch_side else self.env,
            self.settings.timeout_s,
        )
        return {**result, "cpu_pressure": cpu_pressure_since(before)}

    def measure_roofs(self, when: str) -> None:
        """The CPU's roofs, and the GPU's when CUDA cells run (what their % of roof is against)."""
        s = self.settings
        self.step(f"measuring roofs ({when})")
        if not s.roofs:
            self.roof_results.append({"ok": False, "error": "not measured (roofs=False)"})
            return
        if "cuda" in s.eps and "cuda" in self.devices:
            self.cuda_roof_results.append(
                self.worker(
                    {"kind": "roofs", "device": "cuda", "threads": 1, "repeats": s.roof_repeats},
                    torch_side=True,
                )
            )
        self.roof_results.append(
            self.worker(
                {
                    "kind": "roofs",
                    "matmul_n": s.roof_matmul_n,
                    "copy_mb": s.roof_copy_mb,
                    "repeats": s.roof_repeats,
                },
                torch_side=True,
            )
        )

    def run(self) -> BenchReport:
        from ..machine import machine_info, relevant_env, versions

        self.measure_roofs("start")
        report = BenchReport(
            machine=machine_info(),
            versions=versions(),
            settings={
                **self.settings.to_dict(),
                "env": {"ort": relevant_env(self.env), "torch": relevant_env(self.torch_env)},
                "sources": [
                    {
                        "label": s.label,
                        "kind": s.kind,
                        "variant": s.variant,
                        "path": str(s.path) if s.path else None,
                        "overrides": s.overrides,
                        "tuned": dataclasses.asdict(s.tuned) if s.tuned else None,
                    }
                    for s in self.sources
                ],
                "order": "per round: every ORT target, then every torch backend",
            },
            roofs=None,
        )
        finishing: list[tuple[dict[str, Any], Prepared, list]] = []
        for source in self.sources:
            for batch in self.settings.batches:
                prep = prepare(source, batch, self.settings, self.work)
                names = [p for _, _, p in self.targets_of(source)]
                names = list(dict.fromkeys(names))
                self.step(f"{source.label} b{batch}: deploying {', '.join(names)}")
                prep.deployed = deploy_all(prep, names, self.settings.seed)
                ort_cells, torch_cells = self.cells_of(source, prep)
                blocks = self.time_rounds(source, prep, ort_cells, torch_cells)
                self.extra_passes(prep, ort_cells)
                for cell in [*ort_cells.values(), *torch_cells.values()]:
                    finishing.append((cell, prep, blocks.get(cell["id"], [])))
                    report.cells.append(cell)
                report.pairs += [
                    pair(ort_cell, torch_cell)
                    for (ep, _level, _precision), ort_cell in ort_cells.items()
                    for (_backend, device), torch_cell in torch_cells.items()
                    if device == ep
                ]
        if self.settings.roofs:
            self.measure_roofs("end")
        report.roofs, report.roofs_error = combine_roofs(self.roof_results)
        if self.cuda_roof_results:
            report.cuda_roofs, report.cuda_roofs_error = combine_roofs(self.cuda_roof_results)
        for cell, prep, blocks_of_cell in finishing:
            finish_cell(
                cell,
                prep,
                blocks_of_cell,
                report.cuda_roofs if cell.get("device") == "cuda" else report.roofs,
            )
        report.notes = measurement_notes(report)
        if self.progress is not None:
            self.progress(self.total, self.total, "done")
        return report

    def cells_of(self, source: Source, prep: Prepared) -> tuple[dict, dict]:
        """The empty cells of one source at one batch: ``{(ep, level): cell}``, and
        ``{(backend, device): cell}`` for PyTorch (variants only: a bare graph has no module)."""
        s = self.settings
        tuned = {}
        if source.tuned:
            t = source.tuned
            tuned = {"tuned": t.record, "tuned_settings": t.settings, "tuned_threads": t.threads}
        ort_cells = {
            (ep, level, precision): cell_base(
                prep,
                "ort",
                f"{ep}/{level}/{precision}",
                s,
                ep=ep,
                device=ep,
                opt_level=level,
                precision=precision,
                **tuned,
            )
            for ep, level, precision in self.targets_of(source)
        }
        torch_cells = {}
        if source.has_torch:
            torch_cells = {
                (backend, device): cell_base(prep, backend, device, s, device=device)
                for device in self.devices
                for backend in self.torch_backends
            }
        return ort_cells, torch_cells

    def time_rounds(
        self, source: Source, prep: Prepared, ort_cells: dict, torch_cells: dict
    ) -> dict[str, list]:
        """``rounds`` × (every ORT target, then every torch backend), each in a fresh worker."""
        s = self.settings
        blocks: dict[str, list] = defaultdict(list)
        inputs = {k: str(v) for k, v in prep.inputs.items()}
        for r in range(s.rounds):
            for (ep, level, precision), cell in ort_cells.items():
                self.step(f"{cell['id']} round {r + 1}/{s.rounds}")
                deployed = prep.deployed.get(precision)
                if prep.error:
                    result = {"ok": False, "error": prep.error}
                elif isinstance(deployed, str):  # no such graph: nothing to time, not a failure
                    result = {"ok": False, "status": "undeployable", "error": deployed}
                elif ep in self.unavailable_eps:
                    result = {
                        "ok": False,
                        "status": "unavailable",
                        "error": self.unavailable_eps[ep],
                    }
                else:
                    result = self.worker(
                        {
                            "kind": "ort",
                            **deployed.job(),
                            "ep": ep,
                            "opt_level": level,
                            **self.session_job(source),
                            **_timing(s),
                        }
                    )
                record_round(cell, r, result, blocks)
            for (backend, device), cell in torch_cells.items():
                self.step(f"{cell['id']} round {r + 1}/{s.rounds}")
                result = self.worker(
                    {
                        "kind": "torch",
                        "variant": source.variant,
                        "config": prep.config,
                        "seed": s.seed,
                        "input": inputs[next(iter(inputs))],
                        **(
                            torch_job(source.module, list(inputs.values())) if source.module else {}
                        ),
                        "device": device,
                        "compile": backend == "torch_compile",
                        "tf32": s.cuda_options.get("use_tf32") == "1",
                        **_timing(s),
                    },
                    torch_side=True,
                )
                record_round(cell, r, result, blocks)
        return blocks

    def each_ort_cell(self, prep: Prepared, ort_cells: dict, what: str, job: dict[str, Any]):
        """One more worker per ORT cell that ran: ``(ep, cell, result)``."""
        s = self.settings
        for (ep, level, precision), cell in ort_cells.items():
            self.step(f"{cell['id']} {what}")
            if cell["status"] == "ok":
                yield (
                    ep,
                    cell,
                    self.worker(
                        {
                            **prep.deployed[precision].job(),
                            "ep": ep,
                            "opt_level": level,
                            **self.session_job(prep.source),
                            "warmup": s.warmup,
                            **job,
                        }
                    ),
                )

    def extra_passes(self, prep: Prepared, ort_cells: dict) -> None:
        """ORT's per-op profile and the per-node times: separate workers, never the timed one."""
        s = self.settings
        if s.profile:
            for ep, cell, result in self.each_ort_cell(
                prep,
                ort_cells,
                "profile",
                {
                    "kind": "ort",
                    "profile": True,
                    "profile_prefix": str(self.work / "profile"),
                    "warmup_s": s.warmup_s,
                    "blocks": 1,
                    "calls": s.profile_calls,
                },
            ):
                cell["per_op"] = result.get("profile") if result.get("ok") else None
                if cell["per_op"] is not None:
                    # ORT's release builds time a CUDA node's host side (its kernel launch), not
                    # the GPU kernel: the shares then say where launch time goes.
                    cell["per_op"]["clock"] = "host" if ep == "cuda" else "cpu"
                if not result.get("ok"):
                    cell["per_op_error"] = result.get("error")
        if s.per_node:
            for _ep, cell, result in self.each_ort_cell(
                prep, ort_cells, "per node", {"kind": "nodes", "calls": s.per_node_calls}
            ):
                cell["per_node"] = result.get("per_node") if result.get("ok") else None
                if not result.get("ok"):
                    cell["per_node_error"] = result.get("error")


def _timing(settings: BenchSettings) -> dict[str, Any]:
    return {
        "warmup": settings.warmup,
        "warmup_s": settings.warmup_s,
        "blocks": settings.blocks,
        "calls": settings.calls,
    }
