"""Timing harness: ONNX Runtime against PyTorch, side by side, with roofline and per-op breakdown.

Library code: plain values in, a :class:`BenchReport` out; nothing is printed (pass ``progress``
to hear about each step). ``cli.py`` wires ``onnxconv bench`` to :func:`run_bench` and
:func:`write_report`.

Method (why the numbers can be trusted on a shared 2-core machine)
------------------------------------------------------------------
- A *cell* is one thing timed: (source, batch, backend, target), e.g. ``grouped``, batch 1, ORT
  ``cpu/all/fp32``; or PyTorch eager on ``cpu``. Sources are registry variants (ORT runs the graph
  exported from the very module PyTorch runs, both fed the same saved input) or bare ``.onnx``
  files / test-data folders (ORT only: there is no module to run in PyTorch).
- Every cell runs in its own fresh process (:mod:`onnxconv.bench_worker`), with the thread count
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

import bisect
import datetime as _dt
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .errors import UserInputError
from .errors import one_line as _one_line
from .report import write_text

SCHEMA = "onnxconv.bench"
SCHEMA_VERSION = 1

OPT_LEVELS = ("all", "extended", "basic", "disabled")
EPS = ("cpu", "cuda")
BACKENDS = ("ort", "torch", "torch_compile")

#: glibc settings for the PyTorch worker: freed blocks up to 1 GiB stay on the heap (no
#: munmap/mmap and page faults per call) and the heap top is never trimmed back.
TORCH_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 34)}

#: Per-op groups from ORT's profile; ``shuffle`` is Reshape/Transpose time (a channel shuffle is
#: Reshape -> Transpose -> Reshape), ``reorder`` is the NCHWc layout transforms.
OP_GROUPS = ("conv", "shuffle", "reorder", "other")

Progress = Callable[[int, int, str], None]
"""``progress(done, total, message)``: called before each worker starts and once at the end."""


# ---------------------------------------------------------------------------------------------
# statistics (pure functions, in milliseconds unless named otherwise)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear interpolation between closest ranks.

    Same as ``numpy.percentile(values, q)`` (method "linear"): rank ``(n - 1) * q / 100``.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def block_spread(block_medians: Sequence[float]) -> float:
    """``(max - min) / median`` of the block medians: 0 for a perfectly steady machine."""
    if not block_medians:
        raise ValueError("block spread of no blocks")
    mid = statistics.median(block_medians)
    return (max(block_medians) - min(block_medians)) / mid if mid else 0.0


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one cell over all its timed calls (every round pooled), in milliseconds."""

    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    stdev_ms: float
    min_ms: float
    max_ms: float
    block_medians_ms: list[float]
    block_spread: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(blocks_ns: Sequence[Sequence[int]]) -> LatencyStats:
    """Statistics of timed calls given as blocks of nanosecond durations.

    ``stdev`` is the sample standard deviation (n - 1), 0 for a single call.
    """
    blocks = [list(b) for b in blocks_ns if len(b)]
    if not blocks:
        raise ValueError("no timed calls to summarize")
    ms = [t / 1e6 for b in blocks for t in b]
    medians = [statistics.median(b) / 1e6 for b in blocks]
    return LatencyStats(
        n=len(ms), p50_ms=percentile(ms, 50), p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99), mean_ms=statistics.fmean(ms),
        stdev_ms=statistics.stdev(ms) if len(ms) > 1 else 0.0, min_ms=min(ms), max_ms=max(ms),
        block_medians_ms=medians, block_spread=block_spread(medians))


def paired_ratios(numerators: Sequence[float | None],
                  denominators: Sequence[float | None]) -> list[float]:
    """Ratio per round, ``numerators[i] / denominators[i]``; rounds missing on either side skipped.

    Use with torch p50s over ORT p50s of the same rounds: the median of the result is the
    reported torch/ORT speedup.
    """
    if len(numerators) != len(denominators):
        raise ValueError(f"paired ratios need as many rounds on both sides, got "
                         f"{len(numerators)} and {len(denominators)}")
    return [a / b for a, b in zip(numerators, denominators)
            if a is not None and b is not None and b > 0]


def median_or_none(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# ---------------------------------------------------------------------------------------------
# ORT profile -> per-op breakdown (kept free of heavy imports: the worker imports this module)


def op_group(op_type: str) -> str:
    """``conv`` (Conv, FusedConv, NchwcConv, QLinearConv, ...), ``shuffle`` (Reshape, Transpose),
    ``reorder`` (ReorderInput, ReorderOutput) or ``other``."""
    if "Conv" in op_type:
        return "conv"
    if op_type in ("Reshape", "Transpose"):
        return "shuffle"
    if op_type in ("ReorderInput", "ReorderOutput"):
        return "reorder"
    return "other"


def group_op_times(by_op: Mapping[str, float]) -> dict[str, Any]:
    """Op-type times -> ``{"groups": {group: time}, "fractions": {group: share of the total}}``."""
    groups = {g: 0.0 for g in OP_GROUPS}
    for op, t in by_op.items():
        groups[op_group(op)] += t
    total = sum(groups.values())
    fractions = {g: (t / total if total else 0.0) for g, t in groups.items()}
    return {"groups": groups, "fractions": fractions, "total": total}


def parse_ort_profile(events: Sequence[Mapping[str, Any]],
                      last_runs: int | None = None) -> dict[str, Any]:
    """Sum node kernel time by op type from an ORT profile (the list of Chrome-trace events).

    Node events are ``cat == "Node"`` with a name ending ``_kernel_time`` and ``args.op_name``.
    With ``last_runs``, only nodes inside the last ``last_runs`` ``model_run`` windows count (the
    warm-up runs are left out). Times are microseconds per run, means over the runs counted
    (``run_us_per_run`` is the mean ``model_run`` duration, framework overhead included).
    """
    runs = sorted((int(e["ts"]), int(e["ts"]) + int(e.get("dur", 0))) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    if last_runs is not None and last_runs > 0:
        runs = runs[-last_runs:]
    starts = [start for start, _ in runs]
    by_op: dict[str, float] = defaultdict(float)
    placement: dict[str, set[str]] = defaultdict(set)
    nodes = set()
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        if runs:
            ts = int(e["ts"])
            i = bisect.bisect_right(starts, ts) - 1
            if i < 0 or ts > runs[i][1]:
                continue
        args = e.get("args", {})
        op = args.get("op_name", "?")
        by_op[op] += float(e.get("dur", 0))
        placement[args.get("provider", "?")].add(op)
        nodes.add(e["name"][: -len("_kernel_time")])
    n_runs = len(runs) or 1
    per_run = {op: t / n_runs for op, t in sorted(by_op.items(), key=lambda kv: -kv[1])}
    grouped = group_op_times(per_run)
    run_us = sum(end - start for start, end in runs) / len(runs) if runs else None
    return {
        "runs": len(runs),
        "by_op_us": per_run,
        "groups_us": grouped["groups"],
        "fractions": grouped["fractions"],
        "node_us_per_run": grouped["total"],
        "run_us_per_run": run_us,
        "nodes": len(nodes),
        "providers": {p: sorted(ops) for p, ops in sorted(placement.items())},
    }


# ---------------------------------------------------------------------------------------------
# settings and sources


@dataclass(frozen=True)
class BenchSettings:
    threads: int = 1
    batches: tuple[int, ...] = (1,)
    eps: tuple[str, ...] = ("cpu",)
    opt_levels: tuple[str, ...] = OPT_LEVELS
    precision: str = "fp32"
    rounds: int = 2
    blocks: int = 5
    calls: int = 100
    warmup: int = 10
    warmup_s: float = 0.3
    compile: bool = False
    profile: bool = True
    profile_calls: int = 50
    roofs: bool = True
    seed: int = 0
    opset: int = 18
    exporter: str = "dynamo"
    torch_malloc_env: dict[str, str] = field(default_factory=lambda: dict(TORCH_MALLOC_ENV))
    roof_matmul_n: int = 2048
    roof_copy_mb: int = 256
    roof_repeats: int = 5
    timeout_s: float = 600.0

    def validate(self) -> None:
        def positive(name: str, value: Any) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserInputError(f"{name} must be an integer >= 1, got {value!r}")

        positive("threads", self.threads)
        if not self.batches:
            raise UserInputError("batch list is empty: give at least one batch size, e.g. 1")
        for b in self.batches:
            positive("batch size", b)
        for name in ("rounds", "blocks", "calls", "profile_calls", "roof_matmul_n",
                     "roof_copy_mb", "roof_repeats"):
            positive(name, getattr(self, name))
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise UserInputError(f"warmup must be an integer >= 0, got {self.warmup!r}")
        if self.warmup_s < 0 or self.timeout_s <= 0:
            raise UserInputError("warmup_s must be >= 0 and timeout_s > 0")
        if not self.eps:
            raise UserInputError("no execution provider to bench (eps is empty)")
        for ep in self.eps:
            if ep not in EPS:
                raise UserInputError(f"unknown execution provider {ep!r} (bench knows: "
                                     f"{', '.join(EPS)})")
        if not self.opt_levels:
            raise UserInputError("no optimisation level to bench (opt_levels is empty)")
        for level in self.opt_levels:
            if level not in OPT_LEVELS:
                raise UserInputError(f"unknown optimisation level {level!r} (expected one of: "
                                     f"{', '.join(OPT_LEVELS)})")
        if self.precision != "fp32":
            raise UserInputError(f"precision {self.precision!r} is not benchmarked yet "
                                 "(only fp32)")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("batches", "eps", "opt_levels"):
            d[key] = list(d[key])
        return d


@dataclass
class Source:
    """What to bench: a registry variant, or a bare ONNX file."""

    label: str
    kind: str  # "variant" or "onnx"
    variant: str | None = None
    path: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


def resolve_sources(items: Sequence[str | os.PathLike],
                    overrides: Mapping[str, Any] | None = None,
                    variant_overrides: Mapping[str, Mapping[str, Any]] | None = None,
                    ) -> list[Source]:
    """Variant names and ``.onnx`` paths (or folders holding ``model.onnx``) -> sources.

    ``overrides`` apply to every variant whose config has the key (a key no variant knows is an
    error); ``variant_overrides[name]`` apply to that variant only, strictly.
    """
    from . import variants

    items = list(dict.fromkeys(items))  # the same name twice is benched once
    if not items:
        raise UserInputError("nothing to bench: name at least one variant or .onnx file")
    sources: list[Source] = []
    for item in items:
        text = str(item)
        if isinstance(item, str) and text in variants.REGISTRY:
            sources.append(Source(label=text, kind="variant", variant=text))
            continue
        path = Path(item)
        looks_like_path = (not isinstance(item, str) or path.suffix == ".onnx" or os.sep in text
                           or path.exists())
        if not looks_like_path:
            variants.get(text)  # raises the one-line "unknown variant ... (known: ...)"
        if path.is_dir():
            if not (path / "model.onnx").is_file():
                raise UserInputError(f"{path}: folder without model.onnx (expected an .onnx file "
                                     "or a test-data folder)")
            path = path / "model.onnx"
        if not path.exists():
            raise UserInputError(f"{path}: no such file")
        _load_onnx(path)  # fails early, with one line, on anything that is not ONNX
        label = path.parent.name if path.name == "model.onnx" else path.stem
        sources.append(Source(label=label, kind="onnx", path=path.resolve()))
    common = dict(overrides or {})
    per_variant = {k: dict(v) for k, v in (variant_overrides or {}).items()}
    names = [s.variant for s in sources if s.kind == "variant"]
    for name in per_variant:
        if name not in names:
            raise UserInputError(f"overrides given for {name!r}, which is not benched")
    used: set[str] = set()
    for source in sources:
        if source.kind != "variant":
            continue
        spec = variants.get(source.variant)
        known = spec.config()
        applicable = {k: v for k, v in common.items() if k in known and k != "batch"}
        used.update(applicable)
        source.overrides = {**applicable, **per_variant.get(source.variant, {})}
        if "batch" in source.overrides:
            raise UserInputError("set batch sizes with batches, not in the config overrides")
        spec.build(spec.config(source.overrides))  # impossible configs fail here, up front
    unknown = set(common) - used - {"batch"}
    if unknown:
        raise UserInputError(f"config key(s) {', '.join(sorted(unknown))} fit none of the "
                             f"variants benched ({', '.join(names) or 'none'})")
    if "batch" in common:
        raise UserInputError("set batch sizes with batches, not in the config overrides")
    return sources


def _load_onnx(path: Path):
    import onnx
    from google.protobuf.message import DecodeError

    if path.stat().st_size == 0:
        raise UserInputError(f"{path}: empty file, not an ONNX model")
    try:
        model = onnx.load(str(path))
    except (DecodeError, OSError, ValueError, RuntimeError) as error:
        raise UserInputError(f"{path}: not an ONNX model ({_one_line(error)})") from None
    if len(model.graph.node) == 0 or len(model.opset_import) == 0:
        raise UserInputError(f"{path}: not an ONNX model (no graph nodes or no opset_import)")
    return model


# ---------------------------------------------------------------------------------------------
# report


@dataclass
class BenchReport:
    """Everything one bench run measured; :meth:`to_dict` is the JSON written to disk.

    Schema ``onnxconv.bench`` version 1, top-level keys:

    - ``schema`` ("onnxconv.bench"), ``schema_version`` (int), ``created`` (ISO 8601, UTC).
    - ``machine``: CPU model, arch, logical/usable cores, ``isa`` {flag: bool}, memory_bytes, OS,
      kernel, libc, Python (:func:`onnxconv.machine.machine_info`).
    - ``versions``: torch, onnx, onnxruntime (+ ``onnxruntime_providers``), onnxscript, numpy,
      matplotlib, onnxconv, python.
    - ``settings``: :class:`BenchSettings` as a dict (threads, batches, eps, opt_levels, rounds,
      blocks, calls, warm-up, profile, torch malloc env, roof sizes, ...), plus ``env`` (the
      threading/allocation environment variables each worker kind ran with) and ``sources``.
    - ``roofs``: ``compute_gflops``, ``memory_gbps``, ``ridge_flops_per_byte``, ``threads``,
      ``method``, ``details`` (numpy and torch figures of the first measurement),
      ``measurements[]`` (start and end, each with its own figures); ``null`` if the roof
      worker failed or roofs were off (``roofs_error`` then says why).
    - ``cells[]``: one per (source, batch, backend, target). Keys: ``id``, ``label``,
      ``source`` (variant name or model path), ``kind`` ("variant" | "onnx"), ``config``,
      ``batch``, ``backend`` ("ort" | "torch" | "torch_compile"), ``target`` ("cpu/all/fp32" for
      ORT, the device for torch), ``ep``, ``device``, ``opt_level``, ``precision``, ``threads``,
      ``status`` ("ok" | "error" | "unavailable"), ``error``; cost: ``macs`` and ``flops``
      (2·MACs, for the whole batch), ``params``, ``bytes`` (fp32 weights + input + output),
      ``macs_source`` ("analytic" | "graph"); timing: ``stats`` (:class:`LatencyStats`: n, p50/
      p90/p99/mean/stdev/min/max in ms, block medians, block spread, pooled over rounds),
      ``rounds[]`` (per process: round, pid, p50_ms, block_medians_ms, page_faults_per_call,
      major_faults, involuntary_ctx_switches_per_call, warmup_calls, wall_s, loadavg_1m,
      error), ``page_faults_per_call`` (median over rounds),
      ``throughput_per_s`` (batch / p50), ``gflops`` (flops / p50), ``arithmetic_intensity``
      (flops / bytes), ``roof_bound_gflops`` (min(compute roof, AI x memory roof)),
      ``roof_fraction`` (gflops / bound), ``compute_roof_fraction``, ``achieved_gbps`` (bytes /
      p50) and ``memory_roof_fraction``; ``per_op`` (ORT only, from the profiled run: by_op_us,
      groups_us, fractions {conv, shuffle, reorder, other}, node_us_per_run, run_us_per_run,
      nodes, providers) or null (``per_op_error`` says why when the profiled run failed);
      ``session`` (ORT session options and providers, CUDA options, IO binding and copy times;
      torch threads, malloc env, compile_s); ``outputs`` (shape, dtype, abs_sum).
    - ``pairs[]``: one per (source, batch, ORT cell, torch cell on the same device): ``label``,
      ``batch``, ``ort_cell``, ``torch_cell`` (cell ids), ``ort_target``, ``torch_backend``,
      ``rounds[]`` {round, ort_p50_ms, torch_p50_ms, torch_over_ort}, ``torch_over_ort`` (median
      of the per-round ratios: > 1 means ORT is faster), ``ort_over_torch`` (median of the
      inverse ratios), ``n_pairs``, ``outputs_match`` (abs-sum of outputs agree to 1e-3).
    - ``notes[]``: plain-text warnings about the measurement itself (a cell above the measured
      compute roof, unsteady block medians, rounds that disagree, load average during a round).
    """

    machine: dict[str, Any]
    versions: dict[str, Any]
    settings: dict[str, Any]
    roofs: dict[str, Any] | None
    cells: list[dict[str, Any]] = field(default_factory=list)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc)
                         .isoformat(timespec="seconds"))
    roofs_error: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "created": self.created,
                "machine": self.machine, "versions": self.versions, "settings": self.settings,
                "roofs": self.roofs, "roofs_error": self.roofs_error, "cells": self.cells,
                "pairs": self.pairs, "notes": self.notes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BenchReport":
        if data.get("schema") != SCHEMA:
            raise UserInputError(f"not an onnxconv bench report (schema {data.get('schema')!r})")
        return cls(machine=data["machine"], versions=data["versions"], settings=data["settings"],
                   roofs=data.get("roofs"), cells=list(data["cells"]), pairs=list(data["pairs"]),
                   created=data["created"], roofs_error=data.get("roofs_error"),
                   notes=list(data.get("notes", [])))

    @property
    def ok(self) -> bool:
        """True when every cell that was available ran (timings are never judged)."""
        return all(c["status"] != "error" for c in self.cells)


# ---------------------------------------------------------------------------------------------
# running workers


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
    """Run one job in a fresh ``python -m onnxconv.bench_worker``; failures come back as
    ``{"ok": False, "error": ...}``, never as exceptions."""
    try:
        proc = subprocess.run([sys.executable, "-m", "onnxconv.bench_worker"],
                              input=json.dumps(job), capture_output=True, text=True,
                              env=dict(env), timeout=timeout_s)
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


# ---------------------------------------------------------------------------------------------
# preparing inputs and graphs (parent process: never timed)


@dataclass
class _Prepared:
    source: Source
    batch: int
    config: dict[str, Any] | None
    model_path: Path
    inputs: dict[str, Path]
    input_elems: int
    macs: int | None  # whole batch
    params: int | None
    macs_source: str
    error: str | None = None


def _prepare_variant(source: Source, batch: int, settings: BenchSettings, work: Path) -> _Prepared:
    import numpy as np

    from . import variants
    from .export import ExportOptions, to_onnx

    spec = variants.get(source.variant)
    config = spec.config({**source.overrides, "batch": batch})
    folder = work / f"{source.label}-b{batch}"
    folder.mkdir(parents=True, exist_ok=True)
    module = spec.build(config, seed=settings.seed)
    example = spec.example_input(config, seed=settings.seed)
    x_path = folder / "input_0.npy"
    np.save(x_path, example.numpy())
    model_path = folder / "model.onnx"
    cost = spec.cost(config)
    prepared = _Prepared(source, batch, config, model_path, {"input": x_path},
                         int(example.numel()), cost.macs * batch, cost.params, "analytic")
    try:
        options = ExportOptions(opset=settings.opset, exporter=settings.exporter,
                                seed=settings.seed)
        model = to_onnx(module, example, {}, options)
    except Exception as error:  # the exporters raise many types: the cell records one line
        prepared.error = f"export failed: {_one_line(error)}"
        return prepared
    names = [i.name for i in model.graph.input]
    prepared.inputs = {names[0]: x_path}
    model_path.write_bytes(model.SerializeToString())
    return prepared


_NP_DTYPES = {1: "float32", 10: "float16", 11: "float64", 6: "int32", 7: "int64", 9: "bool"}


def _prepare_onnx(source: Source, batch: int, settings: BenchSettings, work: Path) -> _Prepared:
    import numpy as np

    model = _load_onnx(source.path)
    initializers = {i.name for i in model.graph.initializer}
    folder = work / f"{source.label}-b{batch}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(settings.seed)
    inputs: dict[str, Path] = {}
    elems = 0
    for i, vi in enumerate(v for v in model.graph.input if v.name not in initializers):
        tt = vi.type.tensor_type
        shape = []
        for axis, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                shape.append(d.dim_value)
            elif axis == 0:
                shape.append(batch)
            else:
                raise UserInputError(f"{source.path}: input {vi.name!r} has a symbolic "
                                     f"dimension {axis} ({d.dim_param or '?'}); only the batch "
                                     "may be dynamic")
        if shape and shape[0] != batch:
            raise UserInputError(f"{source.path}: input {vi.name!r} has a fixed batch of "
                                 f"{shape[0]}; cannot bench batch {batch}")
        dtype = _NP_DTYPES.get(tt.elem_type)
        if dtype is None:
            raise UserInputError(f"{source.path}: input {vi.name!r} has an element type "
                                 f"({tt.elem_type}) the bench cannot generate")
        data = (rng.standard_normal(shape).astype(dtype) if dtype.startswith("float")
                else np.zeros(shape, dtype=dtype))
        test_input = source.path.parent / "test_data_set_0" / f"input_{i}.pb"
        if test_input.is_file():  # a test-data folder: use its input when the shape fits
            from onnx import TensorProto, numpy_helper
            tensor = TensorProto()
            tensor.ParseFromString(test_input.read_bytes())
            stored = numpy_helper.to_array(tensor)
            if list(stored.shape) == shape:
                data = stored
        path = folder / f"input_{i}.npy"
        np.save(path, data)
        inputs[vi.name] = path
        elems += int(np.prod(shape)) if shape else 1
    params, macs = _graph_cost(model, batch)
    return _Prepared(source, batch, None, source.path, inputs, elems, macs, params, "graph")


def _graph_cost(model, batch: int) -> tuple[int, int]:
    """(params, MACs for the batch) of a bare graph: ``onnxconv.graph.graph_cost`` when present,
    else Conv MACs from ONNX shape inference and every initializer counted as a parameter."""
    try:
        from .graph import graph_cost
    except ImportError:
        graph_cost = None
    if graph_cost is not None:
        params, macs = graph_cost(model, batch_size=batch)
        return int(params), int(macs)
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, list[int | None]] = {}
    g = inferred.graph
    for vi in [*g.value_info, *g.output, *g.input]:
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = [batch if (i == 0 and d is None) else d for i, d in enumerate(dims)]
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    params = sum(int(math.prod(numpy_helper.to_array(i).shape)) for i in model.graph.initializer)
    macs = 0
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        out, w = shapes.get(node.output[0]), weights.get(node.input[1]) or shapes.get(node.input[1])
        if out and w and None not in out and None not in w:
            macs += math.prod(out) * math.prod(w[1:])
    return params, macs


# ---------------------------------------------------------------------------------------------
# the run


def _cell_base(prep: _Prepared, backend: str, target: str, settings: BenchSettings,
               **extra: Any) -> dict[str, Any]:
    s = prep.source
    return {
        "id": f"{s.label}/b{prep.batch}/{backend}/{target}",
        "label": s.label, "source": s.variant if s.kind == "variant" else str(s.path),
        "kind": s.kind, "config": prep.config, "batch": prep.batch, "backend": backend,
        "target": target, "ep": None, "device": None, "opt_level": None,
        "precision": settings.precision, "threads": settings.threads,
        "status": "ok", "error": None, "macs": prep.macs, "params": prep.params,
        "macs_source": prep.macs_source, "rounds": [], "per_op": None, "session": {},
        **extra,
    }


def _timing(settings: BenchSettings) -> dict[str, Any]:
    return {"warmup": settings.warmup, "warmup_s": settings.warmup_s,
            "blocks": settings.blocks, "calls": settings.calls}


def _record_round(cell: dict[str, Any], index: int, result: Mapping[str, Any],
                  blocks: dict[str, list]) -> None:
    entry: dict[str, Any] = {"round": index, "pid": result.get("pid"),
                             "wall_s": result.get("wall_s"), "loadavg_1m": _loadavg()}
    if result.get("ok"):
        stats = summarize(result["blocks_ns"])
        blocks[cell["id"]].extend(result["blocks_ns"])
        entry.update(p50_ms=stats.p50_ms, block_medians_ms=stats.block_medians_ms,
                     page_faults_per_call=result.get("page_faults_per_call"),
                     major_faults=result.get("majflt"), warmup_calls=result.get("warmup_calls"),
                     involuntary_ctx_switches_per_call=result.get(
                         "involuntary_ctx_switches_per_call"),
                     error=None)
        for key in ("providers", "session_options", "cuda_options", "io_binding", "copies_ms",
                    "torch_threads", "torch_interop_threads", "malloc_env", "compile_s", "device"):
            if key in result:
                cell["session"][key] = result[key]
        cell["outputs"] = result.get("outputs")
    else:
        entry.update(p50_ms=None, error=result.get("error"))
        if cell["status"] == "ok":
            cell["status"] = result.get("status", "error")
            cell["error"] = result.get("error")
    cell["rounds"].append(entry)


def _finish_cell(cell: dict[str, Any], prep: _Prepared, blocks: list,
                 roofs: Mapping | None) -> None:
    cell["stats"] = None
    for key in ("throughput_per_s", "gflops", "arithmetic_intensity", "roof_bound_gflops",
                "roof_fraction", "compute_roof_fraction", "achieved_gbps",
                "memory_roof_fraction", "page_faults_per_call"):
        cell[key] = None
    out_elems = sum(math.prod(o["shape"]) for o in cell.get("outputs") or [])
    cell["bytes"] = (4 * ((prep.params or 0) + prep.input_elems + out_elems)
                     if cell.get("outputs") else None)
    cell["flops"] = 2 * prep.macs if prep.macs is not None else None
    cell.setdefault("outputs", None)
    faults = [r["page_faults_per_call"] for r in cell["rounds"]
              if r.get("page_faults_per_call") is not None]
    cell["page_faults_per_call"] = median_or_none(faults)
    if not blocks:
        return
    stats = summarize(blocks)
    cell["stats"] = stats.to_dict()
    seconds = stats.p50_ms / 1e3
    if seconds <= 0:  # below the clock's resolution: no rates
        return
    cell["throughput_per_s"] = prep.batch / seconds
    if cell["flops"] is not None:
        cell["gflops"] = cell["flops"] / seconds / 1e9
    if cell["bytes"]:
        cell["achieved_gbps"] = cell["bytes"] / seconds / 1e9
        if cell["flops"] is not None:
            cell["arithmetic_intensity"] = cell["flops"] / cell["bytes"]
    if roofs:
        if cell["achieved_gbps"] is not None:
            cell["memory_roof_fraction"] = cell["achieved_gbps"] / roofs["memory_gbps"]
        if cell["gflops"] is not None:
            cell["compute_roof_fraction"] = cell["gflops"] / roofs["compute_gflops"]
        if cell["arithmetic_intensity"] is not None:
            bound = min(roofs["compute_gflops"],
                        cell["arithmetic_intensity"] * roofs["memory_gbps"])
            cell["roof_bound_gflops"] = bound
            cell["roof_fraction"] = cell["gflops"] / bound if bound > 0 else None


def _pair(ort_cell: Mapping[str, Any], torch_cell: Mapping[str, Any]) -> dict[str, Any]:
    rounds = min(len(ort_cell["rounds"]), len(torch_cell["rounds"]))
    ort_p50 = [r.get("p50_ms") for r in ort_cell["rounds"][:rounds]]
    torch_p50 = [r.get("p50_ms") for r in torch_cell["rounds"][:rounds]]
    ratios = paired_ratios(torch_p50, ort_p50)
    inverse = paired_ratios(ort_p50, torch_p50)
    match = None
    if ort_cell.get("outputs") and torch_cell.get("outputs"):
        a = [o["abs_sum"] for o in ort_cell["outputs"]]
        b = [o["abs_sum"] for o in torch_cell["outputs"]]
        match = len(a) == len(b) and all(abs(x - y) <= 1e-3 * max(abs(x), abs(y), 1e-12)
                                         for x, y in zip(a, b))
    return {
        "label": ort_cell["label"], "batch": ort_cell["batch"], "ort_cell": ort_cell["id"],
        "torch_cell": torch_cell["id"], "ort_target": ort_cell["target"],
        "torch_backend": torch_cell["backend"],
        "rounds": [{"round": i, "ort_p50_ms": o, "torch_p50_ms": t,
                    "torch_over_ort": (t / o if o and t else None)}
                   for i, (o, t) in enumerate(zip(ort_p50, torch_p50))],
        "torch_over_ort": median_or_none(ratios), "ort_over_torch": median_or_none(inverse),
        "n_pairs": len(ratios), "outputs_match": match,
    }


def default_eps() -> tuple[str, ...]:
    """``cpu``, plus ``cuda`` when this ONNX Runtime build offers the CUDA EP."""
    import onnxruntime as ort
    return ("cpu", "cuda") if "CUDAExecutionProvider" in ort.get_available_providers() else ("cpu",)


def run_bench(items: Sequence[str | os.PathLike], *,
              overrides: Mapping[str, Any] | None = None,
              variant_overrides: Mapping[str, Mapping[str, Any]] | None = None,
              threads: int = 1, batches: Sequence[int] = (1,), eps: Sequence[str] | None = None,
              opt_levels: Sequence[str] | None = None, precision: str = "fp32",
              rounds: int = 2, blocks: int = 5, calls: int = 100, warmup: int = 10,
              warmup_s: float = 0.3, compile: bool = False, profile: bool = True,
              profile_calls: int = 50, roofs: bool = True, seed: int = 0, opset: int = 18,
              exporter: str = "dynamo",
              roof_matmul_n: int = 2048, roof_copy_mb: int = 256, roof_repeats: int = 5,
              torch_malloc_env: Mapping[str, str] | None = None,
              timeout_s: float = 600.0, work_dir: str | os.PathLike | None = None,
              progress: Progress | None = None) -> BenchReport:
    """Bench ``items`` (variant names, ``.onnx`` paths or test-data folders) on ORT and PyTorch.

    Raises :class:`UserInputError` (one line) for bad input before anything is timed: unknown
    variant, missing or non-ONNX file, threads < 1, empty batch list, unknown EP or level.
    Failures while timing (a worker crash, torch.compile failing, an EP not active) are
    recorded in the cell (``status``, ``error``) instead. ``work_dir`` keeps the exported graphs
    and inputs (a temporary folder otherwise). ``torch_malloc_env`` replaces
    :data:`TORCH_MALLOC_ENV` for the PyTorch workers (``{}``: glibc's defaults, for an A/B).
    """
    settings = BenchSettings(
        threads=threads, batches=tuple(batches), eps=tuple(eps) if eps is not None else (),
        opt_levels=tuple(opt_levels) if opt_levels is not None else OPT_LEVELS,
        precision=precision, rounds=rounds, blocks=blocks, calls=calls, warmup=warmup,
        warmup_s=warmup_s, compile=compile, profile=profile, profile_calls=profile_calls,
        roofs=roofs,
        seed=seed, opset=opset, exporter=exporter, roof_matmul_n=roof_matmul_n,
        roof_copy_mb=roof_copy_mb, roof_repeats=roof_repeats, timeout_s=timeout_s,
        torch_malloc_env=dict(TORCH_MALLOC_ENV if torch_malloc_env is None else torch_malloc_env))
    if eps is None:
        settings = BenchSettings(**{**settings.__dict__, "eps": default_eps()})
    settings.validate()
    sources = resolve_sources(items, overrides, variant_overrides)
    if any(s.kind == "variant" for s in sources):
        from .export import ExportOptions
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


def _run(sources: list[Source], settings: BenchSettings, work: Path,
         progress: Progress | None) -> BenchReport:
    from .machine import machine_info, relevant_env, versions

    env = worker_env(settings.threads)
    torch_env = worker_env(settings.threads, settings.torch_malloc_env)
    ort_targets = [(ep, level) for ep in settings.eps for level in settings.opt_levels]
    torch_backends = ["torch"] + (["torch_compile"] if settings.compile else [])
    devices = _torch_devices(settings)
    from .runtime import ep_unavailable_reason
    unavailable_eps = {ep: reason for ep in settings.eps if ep != "cpu"
                       and (reason := ep_unavailable_reason(ep)) is not None}
    n_variants = sum(1 for s in sources if s.kind == "variant")
    total = (2 if settings.roofs else 1) + len(settings.batches) * (
        len(sources) * settings.rounds * len(ort_targets)
        + n_variants * settings.rounds * len(torch_backends) * len(devices)
        + (len(sources) * len(ort_targets) if settings.profile else 0))
    done = 0

    def step(message: str) -> None:
        nonlocal done
        if progress is not None:
            progress(done, total, message)
        done += 1

    def measure_roofs(when: str) -> dict[str, Any]:
        step(f"measuring roofs ({when})")
        if not settings.roofs:
            return {"ok": False, "error": "not measured (roofs=False)"}
        return run_worker({"kind": "roofs", "threads": settings.threads,
                           "matmul_n": settings.roof_matmul_n, "copy_mb": settings.roof_copy_mb,
                           "repeats": settings.roof_repeats}, torch_env, settings.timeout_s)

    roof_results = [measure_roofs("start")]
    report = BenchReport(
        machine=machine_info(), versions=versions(),
        settings={**settings.to_dict(),
                  "env": {"ort": relevant_env(env), "torch": relevant_env(torch_env)},
                  "sources": [{"label": s.label, "kind": s.kind, "variant": s.variant,
                               "path": str(s.path) if s.path else None, "overrides": s.overrides}
                              for s in sources],
                  "order": "per round: every ORT target, then every torch backend"},
        roofs=None)
    finishing: list[tuple[dict[str, Any], _Prepared, list]] = []

    for source in sources:
        for batch in settings.batches:
            if source.kind == "variant":
                prep = _prepare_variant(source, batch, settings, work)
            else:
                prep = _prepare_onnx(source, batch, settings, work)
            ort_cells = {}
            for ep, level in ort_targets:
                target = f"{ep}/{level}/{settings.precision}"
                ort_cells[(ep, level)] = _cell_base(prep, "ort", target, settings, ep=ep,
                                                    device=ep, opt_level=level)
            torch_cells = {}
            if source.kind == "variant":
                for device in devices:
                    for backend in torch_backends:
                        torch_cells[(backend, device)] = _cell_base(prep, backend, device,
                                                                    settings, device=device)
            blocks: dict[str, list] = defaultdict(list)
            for r in range(settings.rounds):
                for (ep, level), cell in ort_cells.items():
                    step(f"{cell['id']} round {r + 1}/{settings.rounds}")
                    if prep.error:
                        result = {"ok": False, "error": prep.error}
                    elif ep in unavailable_eps:
                        result = {"ok": False, "status": "unavailable",
                                  "error": unavailable_eps[ep]}
                    else:
                        result = run_worker({"kind": "ort", "threads": settings.threads,
                                             "model": str(prep.model_path),
                                             "inputs": {k: str(v) for k, v in prep.inputs.items()},
                                             "ep": ep, "opt_level": level, **_timing(settings)},
                                            env, settings.timeout_s)
                    _record_round(cell, r, result, blocks)
                for (backend, device), cell in torch_cells.items():
                    step(f"{cell['id']} round {r + 1}/{settings.rounds}")
                    result = run_worker({"kind": "torch", "threads": settings.threads,
                                         "variant": source.variant, "config": prep.config,
                                         "seed": settings.seed,
                                         "input": str(prep.inputs[next(iter(prep.inputs))]),
                                         "device": device, "compile": backend == "torch_compile",
                                         **_timing(settings)}, torch_env, settings.timeout_s)
                    _record_round(cell, r, result, blocks)
            if settings.profile:
                for (ep, level), cell in ort_cells.items():
                    step(f"{cell['id']} profile")
                    if cell["status"] != "ok":
                        continue
                    result = run_worker({"kind": "ort", "threads": settings.threads,
                                         "model": str(prep.model_path),
                                         "inputs": {k: str(v) for k, v in prep.inputs.items()},
                                         "ep": ep, "opt_level": level, "profile": True,
                                         "profile_prefix": str(work / "profile"),
                                         "warmup": settings.warmup, "warmup_s": settings.warmup_s,
                                         "blocks": 1, "calls": settings.profile_calls},
                                        env, settings.timeout_s)
                    cell["per_op"] = result.get("profile") if result.get("ok") else None
                    if not result.get("ok"):
                        cell["per_op_error"] = result.get("error")
            for cell in [*ort_cells.values(), *torch_cells.values()]:
                finishing.append((cell, prep, blocks.get(cell["id"], [])))
                report.cells.append(cell)
            for (ep, _level), ort_cell in ort_cells.items():
                for (backend, device), torch_cell in torch_cells.items():
                    if device == ep:
                        report.pairs.append(_pair(ort_cell, torch_cell))
    if settings.roofs:
        roof_results.append(measure_roofs("end"))
    report.roofs, report.roofs_error = combine_roofs(roof_results)
    for cell, prep, blocks_of_cell in finishing:
        _finish_cell(cell, prep, blocks_of_cell, report.roofs)
    report.notes = measurement_notes(report)
    if progress is not None:
        progress(total, total, "done")
    return report


def combine_roofs(results: Sequence[Mapping[str, Any]],
                  ) -> tuple[dict[str, Any] | None, str | None]:
    """Roof measurements (start and end of the run) -> the roofs used, best of each figure.

    A roof is what the machine *can* do, so a measurement disturbed by another process only ever
    reads low: the higher figure is the better estimate. Every measurement is kept under
    ``measurements``.
    """
    good = [r["roofs"] for r in results if r.get("ok")]
    if not good:
        errors = [r.get("error") for r in results if r.get("error")]
        return None, (errors[0] if errors else "roofs not measured")
    compute = max(r["compute_gflops"] for r in good)
    memory = max(r["memory_gbps"] for r in good)
    when = ["start", "end"]
    return {
        "compute_gflops": compute, "memory_gbps": memory,
        "ridge_flops_per_byte": compute / memory, "threads": good[0]["threads"],
        "method": {**good[0]["method"], "combined": "best of the start and end measurements"},
        "details": good[0]["details"],
        "measurements": [{"when": when[i] if i < 2 else str(i), **r}
                         for i, r in enumerate(good)],
    }, None


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


#: A cell whose block medians spread more than this is flagged as unsteady.
UNSTEADY_SPREAD = 0.5
#: Paired rounds whose torch/ORT ratios differ by more than this factor are flagged.
ROUNDS_DISAGREE = 1.5
#: A cell this far above the measured compute roof means the roof was measured too low.
ABOVE_ROOF = 1.05


def measurement_notes(report: BenchReport) -> list[str]:
    """Warnings about the measurement (never about which runtime is faster)."""
    notes = []
    roofs = report.roofs
    if roofs:
        above = [c["id"] for c in report.cells
                 if c.get("gflops") and c["gflops"] > ABOVE_ROOF * roofs["compute_gflops"]]
        if above:
            notes.append(f"{len(above)} cell(s) ran above the measured compute roof "
                         f"({roofs['compute_gflops']:.0f} GFLOP/s), e.g. {above[0]}: the roof was "
                         "probably measured while the machine was busy; % roof is then too high")
    unsteady = [c["id"] for c in report.cells
                if c.get("stats") and c["stats"]["block_spread"] > UNSTEADY_SPREAD]
    if unsteady:
        notes.append(f"{len(unsteady)} of {len(report.cells)} cell(s) have block medians that "
                     f"spread more than {UNSTEADY_SPREAD:.0%} (e.g. {unsteady[0]}): the machine "
                     "was not steady; trust the paired medians, rerun with more rounds")
    disagree = []
    for p in report.pairs:
        ratios = [r["torch_over_ort"] for r in p["rounds"] if r["torch_over_ort"]]
        if len(ratios) > 1 and max(ratios) / min(ratios) > ROUNDS_DISAGREE:
            disagree.append(f"{p['ort_cell']} vs {p['torch_backend']}")
    if disagree:
        even = report.settings.get("rounds", 1) % 2 == 0
        notes.append(f"{len(disagree)} pair(s) whose rounds disagree by more than "
                     f"{ROUNDS_DISAGREE}x (e.g. {disagree[0]})"
                     + ("; with an even number of rounds the median is the mean of the middle "
                        "two: use an odd number" if even else ""))
    loads = [r["loadavg_1m"] for c in report.cells for r in c["rounds"]
             if r.get("loadavg_1m") is not None]
    usable = report.machine.get("usable_cores") or 1
    if loads and max(loads) > usable + 0.5:  # our own worker accounts for up to `threads`
        notes.append(f"1-minute load average reached {max(loads):.1f} on {usable} cores during "
                     "the run: other processes competed for the CPU")
    return notes


# ---------------------------------------------------------------------------------------------
# writing


def _fmt(value: Any, spec: str = ".3g", scale: float = 1.0, suffix: str = "") -> str:
    if value is None:
        return "—"
    return f"{value * scale:{spec}}{suffix}"


def to_markdown(report: BenchReport | Mapping[str, Any]) -> str:
    """A Markdown page: machine / threads / versions / roofs header, the cell table, the pairs."""
    data = report.to_dict() if isinstance(report, BenchReport) else dict(report)
    m, v, s, roofs = data["machine"], data["versions"], data["settings"], data.get("roofs")
    isa = ", ".join(flag for flag, on in m.get("isa", {}).items() if on) or "—"
    lines = [
        "# onnxconv bench", "",
        f"- created: {data['created']}",
        f"- machine: {m.get('cpu_model')} — {m.get('usable_cores')} usable / "
        f"{m.get('logical_cores')} logical cores, "
        f"{_fmt(m.get('memory_bytes'), '.1f', 2 ** -30, ' GiB')}"
        f", {m.get('os')}",
        f"- ISA: {isa}",
        f"- versions: torch {v.get('torch')}, onnxruntime {v.get('onnxruntime')} "
        f"({', '.join(v.get('onnxruntime_providers', []))}), onnx {v.get('onnx')}, numpy "
        f"{v.get('numpy')}, Python {v.get('python')}",
        f"- threads: {s['threads']} (ORT intra-op {s['threads']}, inter-op 1; torch "
        f"set_num_threads({s['threads']}), interop 1; OMP_NUM_THREADS={s['threads']})",
        f"- method: warm-up ≥ {s['warmup']} calls and ≥ {s['warmup_s']} s, then {s['blocks']} "
        f"blocks × {s['calls']} calls per process, {s['rounds']} rounds alternating ORT and "
        "torch, each in a fresh process; ratios paired by round, medians quoted",
        "- torch malloc env: " + (", ".join(f"{k}={x}" for k, x in
                                            s.get("torch_malloc_env", {}).items()) or "default"),
    ]
    if roofs:
        lines.append(f"- roofs ({roofs['threads']} threads): compute {roofs['compute_gflops']:.1f} "
                     f"GFLOP/s (fp32 matmul {roofs['method']['matmul_n']}²), memory "
                     f"{roofs['memory_gbps']:.1f} GB/s (copy {roofs['method']['copy_mb']} MiB, "
                     f"read+write); ridge {roofs['ridge_flops_per_byte']:.1f} FLOP/byte")
    else:
        lines.append(f"- roofs: not measured ({data.get('roofs_error')})")
    ratio_of = {}
    for p in data["pairs"]:
        if p["torch_backend"] == "torch":
            ratio_of[p["ort_cell"]] = p
    lines += ["", "## Cells", "",
              "Latencies in ms (p50 over every timed call of every round). ORT/torch is ORT p50 "
              "over PyTorch eager p50 and torch/ORT its inverse (median of per-round pairs; "
              "torch/ORT > 1: ORT faster). % peak is GFLOP/s over the compute roof; % roof over "
              "the cell's roofline bound min(compute roof, arithmetic intensity × memory roof). "
              "Per-op shares from ORT's profile: conv, Reshape/Transpose (shuffle), "
              "ReorderInput/Output (reorder), other.", "",
              "| variant | batch | backend/target | p50 ms | p90 | p99 | spread | GFLOP/s | % peak "
              "| % roof | ORT/torch | torch/ORT | conv % | shuffle % | reorder % | other % "
              "| faults/call |",
              "|---|---:|---|" + "---:|" * 14]
    for c in data["cells"]:
        st = c.get("stats") or {}
        where = f"{c['backend']} {c['target']}"
        if c["status"] != "ok":
            lines.append(f"| {c['label']} | {c['batch']} | {where} | {c['status']}: "
                         f"{(c.get('error') or '').replace('|', '/')} |" + " |" * 13)
            continue
        pair = ratio_of.get(c["id"])
        fr = (c.get("per_op") or {}).get("fractions") or {}
        lines.append(
            f"| {c['label']} | {c['batch']} | {where} | {_fmt(st.get('p50_ms'), '.4g')} | "
            f"{_fmt(st.get('p90_ms'), '.4g')} | {_fmt(st.get('p99_ms'), '.4g')} | "
            f"{_fmt(st.get('block_spread'), '.1f', 100, '%')} | {_fmt(c.get('gflops'), '.1f')} | "
            f"{_fmt(c.get('compute_roof_fraction'), '.0f', 100)} | "
            f"{_fmt(c.get('roof_fraction'), '.0f', 100)} | "
            f"{_fmt(pair and pair['ort_over_torch'], '.2f')} | "
            f"{_fmt(pair and pair['torch_over_ort'], '.2f')} | "
            + " | ".join(_fmt(fr.get(g), '.0f', 100) if fr else "—" for g in OP_GROUPS)
            + f" | {_fmt(c.get('page_faults_per_call'), '.3g')} |")
    if data.get("notes"):
        lines += ["", "## Notes on this measurement", ""] + [f"- {n}" for n in data["notes"]]
    if data["pairs"]:
        lines += ["", "## ORT against PyTorch, pair by pair", "",
                  "| variant | batch | ORT target | torch | torch p50 / ORT p50 per round | "
                  "median torch/ORT | outputs match |", "|---|---:|---|---|---|---:|---|"]
        for p in data["pairs"]:
            per_round = ", ".join(_fmt(r["torch_over_ort"], ".2f") for r in p["rounds"]) or "—"
            lines.append(f"| {p['label']} | {p['batch']} | {p['ort_target']} | "
                         f"{p['torch_backend']} | {per_round} | {_fmt(p['torch_over_ort'], '.2f')} "
                         f"| {p['outputs_match']} |")
    return "\n".join(lines) + "\n"


def summary_rows(report: BenchReport | Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """``(headers, rows)`` for a console table: one row per cell, strings only."""
    data = report.to_dict() if isinstance(report, BenchReport) else report
    pairs = {p["ort_cell"]: p for p in data["pairs"] if p["torch_backend"] == "torch"}
    headers = ["variant", "batch", "backend/target", "p50 ms", "p90 ms", "spread", "GFLOP/s",
               "% peak", "torch/ORT", "conv/shuffle/reorder/other %"]
    rows = []
    for c in data["cells"]:
        st = c.get("stats") or {}
        fr = (c.get("per_op") or {}).get("fractions")
        pair = pairs.get(c["id"])
        rows.append([
            c["label"], str(c["batch"]), f"{c['backend']} {c['target']}",
            _fmt(st.get("p50_ms"), ".4g") if c["status"] == "ok" else c["status"],
            _fmt(st.get("p90_ms"), ".4g"), _fmt(st.get("block_spread"), ".0f", 100, "%"),
            _fmt(c.get("gflops"), ".1f"), _fmt(c.get("compute_roof_fraction"), ".0f", 100),
            _fmt(pair and pair["torch_over_ort"], ".2f"),
            "/".join(f"{100 * fr[g]:.0f}" for g in OP_GROUPS) if fr else "—"])
    return headers, rows


def write_report(report: BenchReport, out_dir: str | os.PathLike, *, markdown: bool = True,
                 plots: bool = True, stem: str = "bench") -> dict[str, Any]:
    """Write ``<stem>.json`` (+ ``<stem>.md``, + PNG plots) into ``out_dir``, each atomically.

    Returns ``{"json": Path, "markdown": Path | None, "plots": [Path, ...]}``.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserInputError(f"{out}: cannot write there ({error.strerror})") from None
    data = report.to_dict()
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    written: dict[str, Any] = {"json": write_text(out / f"{stem}.json", text),
                               "markdown": None, "plots": []}
    if markdown:
        written["markdown"] = write_text(out / f"{stem}.md", to_markdown(data))
    if plots:
        from .plots import write_plots
        written["plots"] = write_plots(data, out)
    return written


def load_report(path: str | os.PathLike) -> BenchReport:
    """Read a report JSON written by :func:`write_report` (e.g. to re-render Markdown/plots)."""
    path = Path(path)
    try:
        return BenchReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, KeyError) as error:
        raise UserInputError(f"{path}: not a readable bench report ({_one_line(error)})") from None


def iter_cells(report: BenchReport | Mapping[str, Any], **match: Any) -> Iterable[dict[str, Any]]:
    """Cells whose keys equal ``match`` (e.g. ``backend="ort", opt_level="all"``)."""
    data = report.to_dict() if isinstance(report, BenchReport) else report
    for cell in data["cells"]:
        if all(cell.get(k) == v for k, v in match.items()):
            yield cell
