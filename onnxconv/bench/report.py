"""A bench run's report: the :class:`BenchReport` record, its JSON schema, and its files
(:func:`write_report`, :func:`load_report`, :func:`rerender`; ``python -m
onnxconv.bench.report BENCH_JSON ...`` re-renders committed reports).

What is written from it lives beside: the warnings about the measurement in
:mod:`.report_notes`, the Markdown page in :mod:`.report_markdown`, the words for cells, runs and
console rows in :mod:`.report_text`, the PNG plots in :mod:`.plots`. Their public names are
importable from here as well.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import UserInputError
from ..errors import one_line as _one_line
from ..report import json_text, rerender_main, staged_folder, write_text
from .report_markdown import by_op_type, deployment_speedups, to_markdown
from .report_notes import (
    ABOVE_ROOF,
    CONTENDED_PRESSURE,
    ROUNDS_DISAGREE,
    UNSTEADY_SPREAD,
    measurement_notes,
)
from .report_text import describe_inputs, input_text, placement, run_caption, summary_rows

SCHEMA = "onnxconv.bench"
#: 2 added cuda_roofs, per_op.clock, per_node and settings.cuda_options (absent in 1: reads fine).
#: 3 added cells[].input_shapes, rounds[].cpu_pressure and per_op.provider_nodes (absent in 1
#: and 2: reads fine).
SCHEMA_VERSION = 3


@dataclass
class BenchReport:
    """Everything one bench run measured; :meth:`to_dict` is the JSON written to disk.

    Schema ``onnxconv.bench`` version 3 (see :data:`SCHEMA_VERSION`), top-level keys:

    - ``schema`` ("onnxconv.bench"), ``schema_version`` (int), ``created`` (ISO 8601, UTC).
    - ``machine``: CPU model, arch, logical/usable cores, ``isa`` {flag: bool}, memory_bytes, OS,
      kernel, libc, Python (:func:`onnxconv.machine.machine_info`).
    - ``versions``: torch, onnx, onnxruntime (+ ``onnxruntime_providers``), onnxscript, numpy,
      matplotlib, onnxconv, python.
    - ``settings``: :class:`BenchSettings` as a dict (threads, batches, eps, opt_levels, rounds,
      blocks, calls, warm-up, profile, torch malloc env, roof sizes, ...), plus ``env`` (the
      threading/allocation environment variables each worker kind ran with) and ``sources`` (each
      with ``module``: the recipe of the user's module timed beside it, its import path,
      arguments, inputs and seed, or null).
    - ``roofs``: ``compute_gflops``, ``memory_gbps``, ``ridge_flops_per_byte``, ``threads``,
      ``method``, ``details`` (numpy, torch and ONNX Runtime figures of the first measurement),
      ``measurements[]`` (start and end, each with its own figures); ``null`` if the roof
      worker failed or roofs were off (``roofs_error`` then says why). These are the CPU's.
    - ``cuda_roofs``: the GPU's, when CUDA cells ran (fp32 matmul with TF32 off and a
      device-to-device copy through PyTorch, CUDA events; same keys plus ``device``); CUDA cells'
      % of roof are against these. ``null`` otherwise (``cuda_roofs_error`` says why if measured).
    - ``cells[]``: one per (source, batch, backend, target). Keys: ``id``, ``label``,
      ``source`` (variant name or model path), ``kind`` ("variant" | "onnx"),
      ``graph_sha256`` (an ``onnx`` source's file; optional: bench-compare knows a moved graph by
      it), ``config``,
      ``batch``, ``backend`` ("ort" | "torch" | "torch_compile"), ``target`` ("cpu/all/fp32" for
      ORT, the device for torch), ``ep``, ``device``, ``opt_level``, ``precision``, ``threads``,
      ``status`` ("ok" | "error" | "unavailable" | "undeployable": no graph at that
      precision), ``error``; cost: ``macs`` and ``flops``
      (2·MACs, for the whole batch), ``params``, ``bytes`` (fp32 weights + input + output),
      ``macs_source`` ("analytic" | "graph"), ``input_shapes`` ({input name: shape} fed to the
      cell); timing: ``stats`` (:class:`LatencyStats`: n, p50/
      p90/p99/mean/stdev/min/max in ms, block medians, block spread, pooled over rounds),
      ``rounds[]`` (per process: round, pid, p50_ms, block_medians_ms, page_faults_per_call,
      major_faults, involuntary_ctx_switches_per_call, warmup_calls, wall_s, loadavg_1m,
      cpu_pressure (the share of the worker's life in which some task waited for a CPU, Linux
      PSI; null where the kernel has none), error), ``page_faults_per_call`` (median over rounds),
      ``throughput_per_s`` (batch / p50), ``gflops`` (flops / p50), ``arithmetic_intensity``
      (flops / bytes), ``roof_bound_gflops`` (min(compute roof, AI x memory roof)),
      ``roof_fraction`` (gflops / bound), ``compute_roof_fraction``, ``achieved_gbps`` (bytes /
      p50) and ``memory_roof_fraction``; ``per_op`` (ORT only, from the profiled run: by_op_us,
      groups_us, fractions {conv, shuffle, reorder, other}, node_us_per_run, run_us_per_run,
      nodes, providers {EP: op types}, provider_nodes {EP: nodes it ran}, clock: "cpu", or
      "host" for CUDA cells, whose node times are kernel launches, not GPU time) or null
      (``per_op_error`` says why when the profiled run failed);
      ``per_node`` (ORT only, with ``--per-node``: every node timed alone on the device, see
      :func:`onnxconv.bench.node_times.time_nodes`: nodes[] {index, name, op_type, group, macs, ms,
      p90_ms, gflops, skipped}, sum_ms, groups_ms, fractions, clock, ep, opt_level, calls) or null
      (``per_node_error`` says why when it failed);
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
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    roofs_error: str | None = None
    notes: list[str] = field(default_factory=list)
    cuda_roofs: dict[str, Any] | None = None
    cuda_roofs_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "machine": self.machine,
            "versions": self.versions,
            "settings": self.settings,
            "roofs": self.roofs,
            "roofs_error": self.roofs_error,
            "cuda_roofs": self.cuda_roofs,
            "cuda_roofs_error": self.cuda_roofs_error,
            "cells": self.cells,
            "pairs": self.pairs,
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BenchReport":
        if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
            if not isinstance(data, Mapping):
                raise UserInputError(f"not an onnxconv bench report (a JSON {type(data).__name__})")
            looks = (
                "a tune report"
                if data.get("schema") == "onnxconv.tune"
                else "a validate report"
                if "subjects" in data and "cells" in data
                else ""
            )
            raise UserInputError(
                f"not an onnxconv bench report (its schema is {data.get('schema')!r}, a bench "
                f"report's {SCHEMA!r}" + (f": it looks like {looks})" if looks else ")")
            )
        for key, kind in (
            ("machine", dict),
            ("versions", dict),
            ("settings", dict),
            ("cells", list),
            ("pairs", list),
        ):
            if not isinstance(data.get(key), kind):
                raise UserInputError(
                    f"not a complete bench report ({key} is not a {kind.__name__})"
                )
        if not all(isinstance(c, dict) for c in [*data["cells"], *data["pairs"]]):
            raise UserInputError("not a complete bench report (a cell or pair is not an object)")
        return cls(
            machine=data["machine"],
            versions=data["versions"],
            settings=data["settings"],
            roofs=data.get("roofs"),
            cells=list(data["cells"]),
            pairs=list(data["pairs"]),
            created=data["created"],
            roofs_error=data.get("roofs_error"),
            notes=list(data.get("notes", [])),
            cuda_roofs=data.get("cuda_roofs"),
            cuda_roofs_error=data.get("cuda_roofs_error"),
        )

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The cells that should have run and did not (timings are never judged): ``bench``
        exits 1 when there are any."""
        return [c for c in self.cells if c["status"] == "error"]


def write_report(
    report: BenchReport,
    out_dir: str | os.PathLike,
    *,
    markdown: bool = True,
    plots: bool = True,
    stem: str = "bench",
) -> dict[str, Any]:
    """Write ``<stem>.json`` (+ ``<stem>.md``, + PNG plots) into ``out_dir``, all of them whole:
    built in a staging folder beside it and swapped in under a lock (:func:`staged_folder`), so
    of two runs the last wins whole and an interrupted one leaves the old report.

    Returns ``{"json": Path, "markdown": Path | None, "plots": [Path, ...]}``.
    """
    from .plots import PLOTS, write_plots

    out = Path(out_dir)
    data = report.to_dict()
    text = json_text(data)
    with staged_folder(out, [f"{stem}.json", f"{stem}.md", *PLOTS]) as stage:
        written: dict[str, Any] = {
            "json": write_text(stage / f"{stem}.json", text),
            "markdown": write_text(stage / f"{stem}.md", to_markdown(data)) if markdown else None,
            "plots": write_plots(data, stage) if plots else [],
        }
    moved = {k: out / v.name if isinstance(v, Path) else v for k, v in written.items()}
    return {**moved, "plots": [out / p.name for p in written["plots"]]}


def load_report(path: str | os.PathLike) -> BenchReport:
    """Read a report JSON written by :func:`write_report` (e.g. to re-render Markdown/plots)."""
    path = Path(path)
    try:
        return BenchReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except UserInputError as error:
        raise UserInputError(f"{path}: {error}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserInputError(f"{path}: not a readable bench report ({_one_line(error)})") from None
    except KeyError as error:
        raise UserInputError(f"{path}: not a complete bench report (no {error})") from None


def rerender(path: str | os.PathLike, *, plots: bool = True) -> list[Path]:
    """Write ``bench.md`` (and the plots) again beside a ``bench.json``, from its data and with
    today's renderer; the JSON itself is left as it is. Returns the files written."""
    path = Path(path)
    data = load_report(path).to_dict()
    written = [write_text(path.with_suffix(".md"), to_markdown(data))]
    if plots:
        from .plots import write_plots

        written += write_plots(data, path.parent)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m onnxconv.bench.report BENCH_JSON ...``: re-render committed reports."""
    return rerender_main(argv, "onnxconv.bench.report", "BENCH_JSON", rerender)


__all__ = [
    "ABOVE_ROOF",
    "CONTENDED_PRESSURE",
    "ROUNDS_DISAGREE",
    "SCHEMA",
    "SCHEMA_VERSION",
    "UNSTEADY_SPREAD",
    "BenchReport",
    "by_op_type",
    "deployment_speedups",
    "describe_inputs",
    "input_text",
    "load_report",
    "main",
    "measurement_notes",
    "placement",
    "rerender",
    "run_caption",
    "summary_rows",
    "to_markdown",
    "write_report",
]


if __name__ == "__main__":
    raise SystemExit(main())
