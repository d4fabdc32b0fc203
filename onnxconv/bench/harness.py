"""Timing harness: ONNX Runtime against PyTorch, side by side, with roofline and per-op breakdown.

Library code: plain values in, a :class:`~onnxconv.bench_report.BenchReport` out; nothing is
printed (pass ``progress`` to hear about each step). ``cli.py`` wires ``onnxconv bench`` to
:func:`run_bench` and :func:`onnxconv.bench_report.write_report`. The statistics live in
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

import json
import math
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import UserInputError
from ..errors import one_line as _one_line
from ..graph import graph_cost
from ..graph.index import load_model
from ..user_model import torch_job
from .pressure import cpu_pressure_since, cpu_stall
from .report import BenchReport, measurement_notes
from .stats import median_or_none, paired_ratios, summarize

OPT_LEVELS = ("all", "extended", "basic", "disabled")
EPS = ("cpu", "cuda")
BACKENDS = ("ort", "torch", "torch_compile")
CUDNN_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")

#: glibc settings for the PyTorch worker: freed blocks up to 1 GiB stay on the heap (no
#: munmap/mmap and page faults per call) and the heap top is never trimmed back.
TORCH_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 34)}

Progress = Callable[[int, int, str], None]
"""``progress(done, total, message)``: called before each worker starts and once at the end."""


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
    per_node: bool = False
    per_node_calls: int = 30
    #: CUDA EP options over runtime.DEFAULT_CUDA_OPTIONS,
    #: e.g. {"cudnn_conv_algo_search": "DEFAULT"}.
    cuda_options: dict[str, str] = field(default_factory=dict)
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
        for name in (
            "rounds",
            "blocks",
            "calls",
            "profile_calls",
            "per_node_calls",
            "roof_matmul_n",
            "roof_copy_mb",
            "roof_repeats",
        ):
            positive(name, getattr(self, name))
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise UserInputError(f"warmup must be an integer >= 0, got {self.warmup!r}")
        if self.warmup_s < 0 or self.timeout_s <= 0:
            raise UserInputError("warmup_s must be >= 0 and timeout_s > 0")
        if not self.eps:
            raise UserInputError("no execution provider to bench (eps is empty)")
        search = self.cuda_options.get("cudnn_conv_algo_search")
        if search is not None and search not in CUDNN_SEARCH:
            raise UserInputError(
                f"cudnn_conv_algo_search must be one of {', '.join(CUDNN_SEARCH)}, got {search!r}"
            )
        for ep in self.eps:
            if ep not in EPS:
                raise UserInputError(
                    f"unknown execution provider {ep!r} (bench knows: {', '.join(EPS)})"
                )
        if not self.opt_levels:
            raise UserInputError("no optimisation level to bench (opt_levels is empty)")
        for level in self.opt_levels:
            if level not in OPT_LEVELS:
                raise UserInputError(
                    f"unknown optimisation level {level!r} (expected one of: "
                    f"{', '.join(OPT_LEVELS)})"
                )
        if self.precision != "fp32":
            raise UserInputError(f"precision {self.precision!r} is not benchmarked yet (only fp32)")

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
    #: The recipe of the user's module that the graph came from (its manifest entry, or
    #: ``bench --module``): PyTorch is timed beside it.
    module: dict[str, Any] | None = None

    @property
    def has_torch(self) -> bool:
        return self.kind == "variant" or self.module is not None


def resolve_sources(
    items: Sequence[str | os.PathLike],
    overrides: Mapping[str, Any] | None = None,
    variant_overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Source]:
    """Variant names and ``.onnx`` paths (or folders holding ``model.onnx``) -> sources.

    ``overrides`` apply to every variant whose config has the key (a key no variant knows is an
    error); ``variant_overrides[name]`` apply to that variant only, strictly.
    """
    from .. import variants

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
        looks_like_path = (
            not isinstance(item, str) or path.suffix == ".onnx" or os.sep in text or path.exists()
        )
        if not looks_like_path:
            variants.get(text)  # raises the one-line "unknown variant ... (known: ...)"
        if path.is_dir():
            if not (path / "model.onnx").is_file():
                raise UserInputError(
                    f"{path}: folder without model.onnx (expected an .onnx file "
                    "or a test-data folder)"
                )
            path = path / "model.onnx"
        if not path.exists():
            raise UserInputError(f"{path}: no such file")
        load_model(path)  # fails early, with one line, on anything that is not ONNX
        label = path.parent.name if path.name == "model.onnx" else path.stem
        sources.append(
            Source(label=label, kind="onnx", path=path.resolve(), module=recipe_of(path))
        )
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
        raise UserInputError(
            f"config key(s) {', '.join(sorted(unknown))} fit none of the "
            f"variants benched ({', '.join(names) or 'none'})"
        )
    if "batch" in common:
        raise UserInputError("set batch sizes with batches, not in the config overrides")
    return sources


def recipe_of(model_path: Path) -> dict[str, Any] | None:
    """The user-module recipe that the export folder's manifest records for this graph."""
    manifest = model_path.parent.parent / "manifest.json"
    if model_path.name != "model.onnx" or not manifest.is_file():
        return None
    try:
        entry = json.loads(manifest.read_text())["graphs"][model_path.parent.name]
        return dict(entry["module"]) if entry.get("module") else None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


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

    from .. import variants
    from ..export import ExportOptions, to_onnx

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
    prepared = _Prepared(
        source,
        batch,
        config,
        model_path,
        {"input": x_path},
        int(example.numel()),
        cost.macs * batch,
        cost.params,
        "analytic",
    )
    try:
        options = ExportOptions(
            opset=settings.opset, exporter=settings.exporter, seed=settings.seed
        )
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

    model = load_model(source.path)
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
                raise UserInputError(
                    f"{source.path}: input {vi.name!r} has a symbolic "
                    f"dimension {axis} ({d.dim_param or '?'}); only the batch "
                    "may be dynamic"
                )
        if shape and shape[0] != batch:
            raise UserInputError(
                f"{source.path}: input {vi.name!r} has a fixed batch of "
                f"{shape[0]}; cannot bench batch {batch}"
            )
        dtype = _NP_DTYPES.get(tt.elem_type)
        if dtype is None:
            raise UserInputError(
                f"{source.path}: input {vi.name!r} has an element type "
                f"({tt.elem_type}) the bench cannot generate"
            )
        data = (
            rng.standard_normal(shape).astype(dtype)
            if dtype.startswith("float")
            else np.zeros(shape, dtype=dtype)
        )
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
    params, macs = graph_cost(model, batch)
    return _Prepared(source, batch, None, source.path, inputs, elems, macs, params, "graph")


# ---------------------------------------------------------------------------------------------
# the run


def _cell_base(
    prep: _Prepared, backend: str, target: str, settings: BenchSettings, **extra: Any
) -> dict[str, Any]:
    s = prep.source
    return {
        "id": f"{s.label}/b{prep.batch}/{backend}/{target}",
        "label": s.label,
        "source": s.variant if s.kind == "variant" else str(s.path),
        "kind": s.kind,
        "config": prep.config,
        "batch": prep.batch,
        "backend": backend,
        "target": target,
        "ep": None,
        "device": None,
        "opt_level": None,
        "precision": settings.precision,
        "threads": settings.threads,
        "status": "ok",
        "error": None,
        "macs": prep.macs,
        "params": prep.params,
        "macs_source": prep.macs_source,
        "input_shapes": _input_shapes(prep),
        "rounds": [],
        "per_op": None,
        "per_node": None,
        "session": {},
        **extra,
    }


def _input_shapes(prep: _Prepared) -> dict[str, list[int]]:
    """``{input name: shape}`` of the arrays the cell is fed (read from the saved .npy header)."""
    import numpy as np

    return {
        name: list(np.load(path, mmap_mode="r").shape)
        for name, path in prep.inputs.items()
        if path.is_file()
    }


def _timing(settings: BenchSettings) -> dict[str, Any]:
    return {
        "warmup": settings.warmup,
        "warmup_s": settings.warmup_s,
        "blocks": settings.blocks,
        "calls": settings.calls,
    }


def _record_round(
    cell: dict[str, Any], index: int, result: Mapping[str, Any], blocks: dict[str, list]
) -> None:
    entry: dict[str, Any] = {
        "round": index,
        "pid": result.get("pid"),
        "wall_s": result.get("wall_s"),
        "loadavg_1m": _loadavg(),
        "cpu_pressure": result.get("cpu_pressure"),
    }
    if result.get("ok"):
        stats = summarize(result["blocks_ns"])
        blocks[cell["id"]].extend(result["blocks_ns"])
        entry.update(
            p50_ms=stats.p50_ms,
            block_medians_ms=stats.block_medians_ms,
            page_faults_per_call=result.get("page_faults_per_call"),
            major_faults=result.get("majflt"),
            warmup_calls=result.get("warmup_calls"),
            involuntary_ctx_switches_per_call=result.get("involuntary_ctx_switches_per_call"),
            error=None,
        )
        for key in (
            "providers",
            "session_options",
            "cuda_options",
            "io_binding",
            "copies_ms",
            "torch_threads",
            "torch_interop_threads",
            "malloc_env",
            "compile_s",
            "device",
            "cuda_settings",
        ):
            if key in result:
                cell["session"][key] = result[key]
        cell["outputs"] = result.get("outputs")
    else:
        entry.update(p50_ms=None, error=result.get("error"))
        if cell["status"] == "ok":
            cell["status"] = result.get("status", "error")
            cell["error"] = result.get("error")
    cell["rounds"].append(entry)


def _finish_cell(
    cell: dict[str, Any], prep: _Prepared, blocks: list, roofs: Mapping | None
) -> None:
    cell["stats"] = None
    for key in (
        "throughput_per_s",
        "gflops",
        "arithmetic_intensity",
        "roof_bound_gflops",
        "roof_fraction",
        "compute_roof_fraction",
        "achieved_gbps",
        "memory_roof_fraction",
        "page_faults_per_call",
    ):
        cell[key] = None
    out_elems = sum(math.prod(o["shape"]) for o in cell.get("outputs") or [])
    cell["bytes"] = (
        4 * ((prep.params or 0) + prep.input_elems + out_elems) if cell.get("outputs") else None
    )
    cell["flops"] = 2 * prep.macs if prep.macs is not None else None
    cell.setdefault("outputs", None)
    faults = [
        r["page_faults_per_call"]
        for r in cell["rounds"]
        if r.get("page_faults_per_call") is not None
    ]
    cell["page_faults_per_call"] = median_or_none(faults)
    if not blocks:
        return
    stats = summarize(blocks)
    cell["stats"] = stats.to_dict()
    seconds = stats.p50_ms / 1e3
    if seconds <= 0:  # below the clock's resolution: no rates
        return
    cell["throughput_per_s"] = prep.batch / seconds
    if cell["flops"]:  # a graph without multiply-adds (a bare shuffle) has no GFLOP/s: "—"
        cell["gflops"] = cell["flops"] / seconds / 1e9
    if cell["bytes"]:
        cell["achieved_gbps"] = cell["bytes"] / seconds / 1e9
        if cell["flops"]:
            cell["arithmetic_intensity"] = cell["flops"] / cell["bytes"]
    if roofs:
        if cell["achieved_gbps"] is not None:
            cell["memory_roof_fraction"] = cell["achieved_gbps"] / roofs["memory_gbps"]
        if cell["gflops"] is not None:
            cell["compute_roof_fraction"] = cell["gflops"] / roofs["compute_gflops"]
        if cell["arithmetic_intensity"] is not None:
            bound = min(
                roofs["compute_gflops"], cell["arithmetic_intensity"] * roofs["memory_gbps"]
            )
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
        match = len(a) == len(b) and all(
            abs(x - y) <= 1e-3 * max(abs(x), abs(y), 1e-12) for x, y in zip(a, b)
        )
    return {
        "label": ort_cell["label"],
        "batch": ort_cell["batch"],
        "ort_cell": ort_cell["id"],
        "torch_cell": torch_cell["id"],
        "ort_target": ort_cell["target"],
        "torch_backend": torch_cell["backend"],
        "rounds": [
            {
                "round": i,
                "ort_p50_ms": o,
                "torch_p50_ms": t,
                "torch_over_ort": (t / o if o and t else None),
            }
            for i, (o, t) in enumerate(zip(ort_p50, torch_p50))
        ],
        "torch_over_ort": median_or_none(ratios),
        "ort_over_torch": median_or_none(inverse),
        "n_pairs": len(ratios),
        "outputs_match": match,
    }


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
    precision: str = "fp32",
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
        precision=precision,
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
        self.ort_targets = [(ep, level) for ep in settings.eps for level in settings.opt_levels]
        self.torch_backends = ["torch"] + (["torch_compile"] if settings.compile else [])
        self.devices = _torch_devices(settings)
        self.unavailable_eps = {
            ep: reason
            for ep in settings.eps
            if ep != "cpu" and (reason := ep_unavailable_reason(ep)) is not None
        }
        per_source = len(self.ort_targets) * (
            settings.rounds + settings.profile + settings.per_node
        )
        per_variant = settings.rounds * len(self.torch_backends) * len(self.devices)
        n_variants = sum(1 for s in sources if s.has_torch)
        self.total = (2 if settings.roofs else 1) + len(settings.batches) * (
            len(sources) * per_source + n_variants * per_variant
        )
        self.done = 0
        self.roof_results: list[dict[str, Any]] = []
        self.cuda_roof_results: list[dict[str, Any]] = []

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
                    }
                    for s in self.sources
                ],
                "order": "per round: every ORT target, then every torch backend",
            },
            roofs=None,
        )
        finishing: list[tuple[dict[str, Any], _Prepared, list]] = []
        for source in self.sources:
            for batch in self.settings.batches:
                prep = (_prepare_variant if source.kind == "variant" else _prepare_onnx)(
                    source, batch, self.settings, self.work
                )
                ort_cells, torch_cells = self.cells_of(source, prep)
                blocks = self.time_rounds(source, prep, ort_cells, torch_cells)
                self.extra_passes(prep, ort_cells)
                for cell in [*ort_cells.values(), *torch_cells.values()]:
                    finishing.append((cell, prep, blocks.get(cell["id"], [])))
                    report.cells.append(cell)
                report.pairs += [
                    _pair(ort_cell, torch_cell)
                    for (ep, _level), ort_cell in ort_cells.items()
                    for (_backend, device), torch_cell in torch_cells.items()
                    if device == ep
                ]
        if self.settings.roofs:
            self.measure_roofs("end")
        report.roofs, report.roofs_error = combine_roofs(self.roof_results)
        if self.cuda_roof_results:
            report.cuda_roofs, report.cuda_roofs_error = combine_roofs(self.cuda_roof_results)
        for cell, prep, blocks_of_cell in finishing:
            _finish_cell(
                cell,
                prep,
                blocks_of_cell,
                report.cuda_roofs if cell.get("device") == "cuda" else report.roofs,
            )
        report.notes = measurement_notes(report)
        if self.progress is not None:
            self.progress(self.total, self.total, "done")
        return report

    def cells_of(self, source: Source, prep: _Prepared) -> tuple[dict, dict]:
        """The empty cells of one source at one batch: ``{(ep, level): cell}``, and
        ``{(backend, device): cell}`` for PyTorch (variants only: a bare graph has no module)."""
        s = self.settings
        ort_cells = {
            (ep, level): _cell_base(
                prep, "ort", f"{ep}/{level}/{s.precision}", s, ep=ep, device=ep, opt_level=level
            )
            for ep, level in self.ort_targets
        }
        torch_cells = {}
        if source.has_torch:
            torch_cells = {
                (backend, device): _cell_base(prep, backend, device, s, device=device)
                for device in self.devices
                for backend in self.torch_backends
            }
        return ort_cells, torch_cells

    def time_rounds(
        self, source: Source, prep: _Prepared, ort_cells: dict, torch_cells: dict
    ) -> dict[str, list]:
        """``rounds`` × (every ORT target, then every torch backend), each in a fresh worker."""
        s = self.settings
        blocks: dict[str, list] = defaultdict(list)
        inputs = {k: str(v) for k, v in prep.inputs.items()}
        for r in range(s.rounds):
            for (ep, level), cell in ort_cells.items():
                self.step(f"{cell['id']} round {r + 1}/{s.rounds}")
                if prep.error:
                    result = {"ok": False, "error": prep.error}
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
                            "model": str(prep.model_path),
                            "inputs": inputs,
                            "ep": ep,
                            "opt_level": level,
                            "cuda_options": s.cuda_options,
                            **_timing(s),
                        }
                    )
                _record_round(cell, r, result, blocks)
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
                _record_round(cell, r, result, blocks)
        return blocks

    def each_ort_cell(self, prep: _Prepared, ort_cells: dict, what: str, job: dict[str, Any]):
        """One more worker per ORT cell that ran: ``(ep, cell, result)``."""
        s = self.settings
        for (ep, level), cell in ort_cells.items():
            self.step(f"{cell['id']} {what}")
            if cell["status"] == "ok":
                yield (
                    ep,
                    cell,
                    self.worker(
                        {
                            "model": str(prep.model_path),
                            "inputs": {k: str(v) for k, v in prep.inputs.items()},
                            "ep": ep,
                            "opt_level": level,
                            "cuda_options": s.cuda_options,
                            "warmup": s.warmup,
                            **job,
                        }
                    ),
                )

    def extra_passes(self, prep: _Prepared, ort_cells: dict) -> None:
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


def combine_roofs(
    results: Sequence[Mapping[str, Any]],
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
        "compute_gflops": compute,
        "memory_gbps": memory,
        "ridge_flops_per_byte": compute / memory,
        "threads": good[0]["threads"],
        **({"device": good[0]["device"]} if "device" in good[0] else {}),
        "method": {**good[0]["method"], "combined": "best of the start and end measurements"},
        "details": good[0]["details"],
        "measurements": [{"when": when[i] if i < 2 else str(i), **r} for i, r in enumerate(good)],
    }, None


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
