"""The whole run: every subject on every target (:func:`validate`), and the report it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping

import numpy as np

from .. import feeds as feeds_module
from .. import fp16_range, quant_check, runtime
from .. import precisions as precisions_module
from ..errors import CheckFailed, conversion_status
from ..parity import Tolerance, default_tolerance
from ..quant_metrics import TOLERANCES, Bound
from ..retarget import retarget
from .cases import make_cases, overflow_probes
from .cells import Cell, run_cell
from .deployed import (
    departed_cell,
    deployments,
    evaluation,
    float_departure,
    run_judged_cell,
    undeployable_cell,
)
from .subjects import Subject


@dataclass
class ValidationReport:
    """JSON schema (``to_dict``): ``schema`` (2), ``kind`` ("validate"), ``environment``
    (versions, machine), ``settings`` (eps, opt_levels, precisions, seeds, distributions,
    tolerance overrides, threads, whether stored outputs are trusted, the input size limit),
    ``subjects`` (label, model path, variant, config, cases, opinions, notes), ``cells`` (one per
    subject × target: status; for a warn or fail its ``kind`` (export, runtime, overflow,
    disagreement, executors; reference, stale_stored, nonfinite — see :mod:`onnxconv.verdict`;
    insensitive — see :mod:`onnxconv.sensitivity`; conversion, quantization), the opinions
    that ``agreed`` with ONNX Runtime and the ``deciders``; ``reason``; providers and node
    placement; ``worst``: per opinion, ONNX Runtime's largest error against it; per case and
    output the metrics against every opinion, the reference evaluator against the source, and
    the first divergent node; for an int8 cell ``quant``: the metrics per output against the
    fp32 source, their sensitivity to the input and the worst QDQ pairs, see
    :mod:`onnxconv.quant_check`), ``summary`` (counts per status). With int8 precisions,
    ``settings.int8`` records the calibration (given or generated, count, seed, method), the
    evaluation inputs and the tolerances."""

    environment: dict[str, Any]
    settings: dict[str, Any]
    subjects: list[dict[str, Any]]
    cells: list[Cell]

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for cell in self.cells:
            counts[cell.status] = counts.get(cell.status, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 2,
            "kind": "validate",
            "environment": self.environment,
            "settings": self.settings,
            "subjects": self.subjects,
            "cells": [c.to_dict() for c in self.cells],
            "summary": self.summary(),
        }


def validate(
    subjects: list[Subject],
    eps: list[str],
    opt_levels: list[str],
    precisions: list[str],
    *,
    seeds=(0, 1),
    distributions=("normal", "wide"),
    batches: list[int] | None = None,
    extra_inputs: dict[str, np.ndarray] | None = None,
    tol: Tolerance | None = None,
    threads: int | None = None,
    localise_failures=True,
    cuda_options: dict[str, str] | None = None,
    trust_stored: bool = True,
    max_input_bytes: int = feeds_module.DEFAULT_MAX_BYTES,
    progress: Callable[[str, int, int], None] | None = None,
    calibration: list[dict[str, np.ndarray]] | None = None,
    calibration_method: str = "minmax",
    int8_samples: int = quant_check.EVALUATION_SAMPLES,
    target_opset: int | None = None,
    accuracy_budget: Mapping[str, Bound] | None = None,
    unrequested: Collection[str] = (),
) -> ValidationReport:
    """Every subject on every target. ``trust_stored=False`` shows stored outputs without letting
    them decide (for a user who knows they are stale). ``calibration`` (feed dicts; default
    generated), ``calibration_method`` and ``int8_samples`` (generated evaluation inputs) apply
    to the int8 precisions (:mod:`onnxconv.precisions`). ``target_opset``: every graph is first
    brought to that opset (:mod:`onnxconv.retarget`); one that cannot be fails every cell as
    ``conversion``. ``accuracy_budget``: the bounds int8 cells and a graph that came quantized
    are judged within (:func:`onnxconv.quant_metrics.parse_budget`; default
    :data:`onnxconv.quant_metrics.TOLERANCES`). ``unrequested``: precisions in the matrix that
    the user did not name (the default fp16): a converter that cannot deploy a graph at one of
    them makes its cells ``unavailable``, saying so, instead of failing a graph nobody asked to
    ship at it."""
    from ..report import environment

    int8_precisions = [p for p in precisions if precisions_module.is_int8(p)]
    bounds = dict(accuracy_budget or TOLERANCES)

    targets = [
        runtime.Target(ep, level, precision)
        for ep in eps
        for precision in precisions
        for level in opt_levels
    ]
    total = len(subjects) * len(targets)
    cells, subject_info = [], []
    for s_index, subject in enumerate(subjects):
        if progress:
            progress(f"{subject.label} (references)", s_index * len(targets), total)
        if target_opset is not None:
            try:
                subject = retarget(subject, target_opset, max_input_bytes, tol)
            except CheckFailed as error:
                label = f"{subject.label}@opset{target_opset}"
                kind = getattr(error, "kind", "conversion")  # GraphDeparts: "export"
                cells += [Cell(label, t.id, "fail", reason=str(error), kind=kind) for t in targets]
                subject_info.append(
                    {
                        "label": label,
                        "model": str(subject.model_path),
                        "variant": subject.variant,
                        "module": subject.module_source or None,
                        "config": subject.config,
                        "cases": [],
                        "notes": [str(error)],
                        "opinions": [],
                    }
                )
                continue
        subject.given_inputs = extra_inputs
        cases = make_cases(subject, seeds, distributions, batches, extra_inputs, max_input_bytes)
        deployed = deployments(
            subject, precisions, calibration, calibration_method, max_input_bytes
        )
        judged_on = (
            evaluation(subject, extra_inputs, int8_samples, max_input_bytes, trust_stored, tol)
            if int8_precisions
            else None
        )
        subject_info.append(
            {
                "label": subject.label,
                "model": str(subject.model_path),
                "variant": subject.variant,
                "module": subject.module_source or None,
                "config": subject.config,
                "cases": [c.label for c in cases],
                "notes": subject.notes,
                "opinions": sorted({r for c in cases for r in c.opinions}),
            }
        )
        native = precisions_module.computes_in(subject.model)
        departs, source = (None, "")  # where the fp32 graph leaves its source, if it does
        lower_floats = [p for p in precisions if p != "fp32" and not precisions_module.is_int8(p)]
        if lower_floats and native == "fp32":
            departs, source = float_departure(subject, cases, tol, trust_stored)
        overflow_of: dict[str, str | None] = {}  # per float16 deployment: where it overflows
        for t_index, target in enumerate(targets):
            if progress:
                progress(f"{subject.label} {target.id}", s_index * len(targets) + t_index, total)
            model = deployed[target.precision]
            int8 = precisions_module.is_int8(target.precision)
            # where the fp32 graph itself leaves its source, its deployments prove nothing
            departs_here, against = (
                (judged_on.departs, judged_on.against)
                if int8 and judged_on
                else (departs, source)
                if target.precision != "fp32"
                else (None, "")
            )
            unmade = isinstance(model, CheckFailed)
            if unmade and not (departs_here and conversion_status(model) == "fail"):
                asked = target.precision not in unrequested
                cells.append(undeployable_cell(subject, target, model, asked))
            elif departs_here:
                cells.append(departed_cell(subject, target, departs_here, against))
            elif int8:
                cells.append(
                    run_judged_cell(
                        subject,
                        target,
                        model,
                        judged_on,
                        threads,
                        cuda_options,
                        tolerances=bounds,
                    )
                )
            else:
                cell = run_cell(
                    subject,
                    target,
                    cases,
                    tol,
                    threads,
                    localise_failures,
                    cuda_options,
                    trust_stored,
                    model=model,
                    quantized=native == "int8" and target.precision == "fp32",
                    bounds=bounds,
                )
                if target.precision != "fp32" and cell.status != "unavailable":
                    if target.precision not in overflow_of:
                        probes = [cases[i] for i in overflow_probes(cases)]
                        overflow_of[target.precision] = fp16_range.overflow(
                            subject.model,
                            model,
                            [c.feeds for c in probes],
                            [c.label for c in probes],
                        )
                    if overflow_of[target.precision]:
                        cell.status, cell.kind = "fail", "overflow"
                        cell.reason = overflow_of[target.precision]
                cells.append(cell)
        failed = [c for c in cells if c.subject == subject.label and c.kind == "export"]
        if subject.foreign_weights and failed:
            subject.note(subject.foreign_weights)
    if progress:
        progress("", total, total)
    settings = {
        "eps": eps,
        "opt_levels": opt_levels,
        "precisions": precisions,
        "seeds": list(seeds),
        "distributions": list(distributions),
        "batches": batches,
        "tolerance_override": tol.to_dict() if tol else None,
        "threads": threads,
        "cuda_options": {**runtime.DEFAULT_CUDA_OPTIONS, **(cuda_options or {})},
        "tolerance_defaults": {
            f"{p}/{ep}": default_tolerance(p, ep).to_dict()
            for p in precisions
            if p not in int8_precisions
            for ep in eps
        },
        "atol_scaling": "atol x max(1, RMS of the opinion compared against)",
        "stored_outputs": "trusted" if trust_stored else "untrusted",
        "max_input_bytes": max_input_bytes,
        "target_opset": target_opset,
        "quant_bounds": {k: b.describe() for k, b in bounds.items()},
        "accuracy_budget": "given" if accuracy_budget else "default",
    }
    if int8_precisions:
        settings["int8"] = {
            "calibration": "given" if calibration else "generated",
            "calibration_samples": len(calibration or ()) or precisions_module.CALIBRATION_SAMPLES,
            "calibration_seed": None if calibration else precisions_module.CALIBRATION_SEED,
            "calibration_method": calibration_method,
            "evaluation_samples": int8_samples,
            "evaluation_seed": quant_check.EVALUATION_SEED,
            "tolerances": {k: b.describe() for k, b in bounds.items()},
            "min_sensitivity": quant_check.MIN_SENSITIVITY,
        }
    return ValidationReport(environment(), settings, subject_info, cells)
