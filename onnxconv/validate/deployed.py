"""Deployments and int8 cells: the subject's graph at every precision, and a lower-precision
deployment judged by :mod:`onnxconv.quant_check` against the fp32 source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import onnx

from .. import feeds as feeds_module
from .. import fp16_range, quant_check, runtime
from .. import precisions as precisions_module
from ..errors import CheckFailed, conversion_status
from ..parity import Tolerance, graph_tolerance
from ..quant_metrics import Bound
from ..verdict import TORCH, deciding_source
from .cases import Case, departure, spatial_sizes, torch_module, torch_outputs
from .cells import Cell, judge_case, run_on_target
from .subjects import Subject


def deployments(
    subject: Subject,
    names: Iterable[str],
    calibration: list[dict[str, np.ndarray]] | None,
    method: str,
    max_input_bytes: int,
) -> dict[str, onnx.ModelProto | CheckFailed]:
    """The subject's graph at every precision, or why it cannot be made (per precision)."""
    made: dict[str, onnx.ModelProto | CheckFailed] = {}
    native = precisions_module.computes_in(subject.model)
    if native != "fp32":
        subject.note(precisions_module.as_is_note(native, "cells"))
    for name in names:
        feeds = None
        if precisions_module.get(name).needs_calibration:
            feeds = calibration or calibration_feeds(subject, max_input_bytes)
        try:
            made[name] = precisions_module.deploy(
                subject.model, name, feeds, method=method, label=str(subject.model_path)
            )
        except CheckFailed as error:
            made[name] = error
            continue
        changes = {p.key: p.value for p in made[name].metadata_props}.get(
            precisions_module.CONVERTER_CHANGES
        )
        if changes:
            subject.notes.append(f"{name}: {changes}")
    return made


def seeded_feeds(
    subject: Subject, first_seed: int, count: int, max_input_bytes: int
) -> list[dict[str, np.ndarray]]:
    """``count`` seeded ``normal`` inputs at the export's size, seeds ``first_seed`` onwards."""
    return [
        feeds_module.generate(
            subject.model,
            str(subject.model_path),
            batch=1,
            spatial=spatial_sizes(subject)[0],
            distribution="normal",
            seed=first_seed + i,
            max_bytes=max_input_bytes,
            samples=subject.sample,
        )
        for i in range(count)
    ]


def calibration_feeds(subject: Subject, max_input_bytes: int) -> list[dict[str, np.ndarray]]:
    """The int8 calibration inputs: seeds disjoint from every other case."""
    return seeded_feeds(
        subject,
        precisions_module.CALIBRATION_SEED,
        precisions_module.CALIBRATION_SAMPLES,
        max_input_bytes,
    )


@dataclass
class Evaluation:
    """The inputs an int8 deployment is judged on, and the fp32 source's outputs for them."""

    feeds: list[dict[str, np.ndarray]]
    expected: list[dict[str, np.ndarray]]
    against: str
    departs: str | None = None
    """Where the fp32 graph itself departs from its sources (PyTorch on these inputs, or the
    trusted stored outputs): a deployment of it cannot pass, however close it stays to it."""


#: How many evaluation inputs a float16 candidate's range is checked on (:mod:`.fp16_range`).
OVERFLOW_INPUTS = 3

#: Who speaks for the fp32 graph when no PyTorch module does (the fp32 cells check that graph).
FP32_GRAPH = "fp32 graph"


def evaluation(
    subject: Subject,
    extra_inputs: dict[str, np.ndarray] | None,
    samples: int,
    max_input_bytes: int,
    trust_stored: bool = True,
    tol: Tolerance | None = None,
) -> Evaluation:
    """Stored inputs, the user's inputs and ``samples`` generated ones; PyTorch's outputs where a
    module speaks for the graph, else the fp32 graph's on ORT CPU with optimisations off. The fp32
    graph is checked against its sources first: PyTorch on every input, else the stored outputs
    (unless ``trust_stored`` is False), under ``tol`` (the user's; default validate's fp32
    tolerance); where it departs, :attr:`Evaluation.departs` says so."""
    feeds = [s.inputs for s in subject.test_sets]
    feeds += [extra_inputs] if extra_inputs is not None else []
    feeds += seeded_feeds(subject, quant_check.EVALUATION_SEED, samples, max_input_bytes)
    info = runtime.make_session(
        subject.model, runtime.Target("cpu", "disabled"), label=str(subject.model_path)
    )
    own = [runtime.run(info, f) for f in feeds]
    module = torch_module(subject)
    if module is not None:
        expected = [torch_outputs(subject, module, f) for f in feeds]
        labels = [s.label for s in subject.test_sets]
        labels += ["--inputs"] if extra_inputs is not None else []
        labels += [f"evaluation input {i}" for i in range(len(feeds) - len(labels))]
        departs = departure(subject.model, own, expected, labels, TORCH, tol)
        return Evaluation(feeds, expected, TORCH, departs)
    stored = subject.test_sets if trust_stored else []
    departs = departure(
        subject.model, own, [s.outputs for s in stored], [s.label for s in stored], "stored", tol
    )
    return Evaluation(feeds, own, FP32_GRAPH, departs)


def run_judged_cell(
    subject: Subject,
    target: runtime.Target,
    deployed: onnx.ModelProto,
    judged_on: Evaluation,
    threads: int | None,
    cuda_options: dict[str, str] | None = None,
    *,
    tolerances: Mapping[str, Bound] | None = None,
    session_config: dict[str, str] | None = None,
    session_options: dict[str, Any] | None = None,
) -> Cell:
    """One subject's deployment at a lower precision on one target, judged by
    :mod:`onnxconv.quant_check` against the fp32 source (validate's int8 cells with the default
    tolerances; tune's precision candidates with the user's accuracy budget)."""
    if judged_on.departs:
        return departed_cell(subject, target, judged_on.departs, judged_on.against)
    cell = Cell(subject.label, target.id, "pass")
    got = run_on_target(
        cell,
        deployed,
        target,
        judged_on.feeds,
        threads,
        cuda_options,
        session_config,
        session_options,
        label=str(subject.model_path),
    )
    if got is None:
        return cell
    if not precisions_module.is_int8(target.precision):  # float16: does it overflow?
        feeds = judged_on.feeds[:OVERFLOW_INPUTS]
        labels = [f"evaluation input {i}" for i in range(len(feeds))]
        overflow = fp16_range.overflow(subject.model, deployed, feeds, labels)
        if overflow:
            cell.status, cell.kind, cell.deciders = "fail", "overflow", [judged_on.against]
            cell.reason = overflow
            return cell
    verdict = quant_check.judge_deployment(
        subject.model,
        deployed,
        judged_on.feeds,
        judged_on.expected,
        got,
        against=judged_on.against,
        static=precisions_module.get(target.precision).needs_calibration,
        tolerances=tolerances,
    )
    cell.status, cell.kind, cell.reason = verdict.status, verdict.kind, verdict.reason
    cell.deciders = [judged_on.against]
    cell.quant = verdict.to_dict()
    return cell


def departed_cell(subject: Subject, target: runtime.Target, departs: str, against: str) -> Cell:
    """The cell of a lower-precision deployment of an fp32 graph that itself ``departs`` from
    its source ``against``: FAIL ``export``, however close the deployment stays to that graph
    (a float16 tolerance would let a small defect through that fp32's catches)."""
    reason = (
        f"{departs}; its {target.precision} deployment has nothing true to approach (its fp32 "
        "cells show where the graph departs)"
    )
    return Cell(subject.label, target.id, "fail", reason, "export", deciders=[against])


def float_departure(
    subject: Subject, cases: list[Case], tol: Tolerance | None, trust_stored: bool
) -> tuple[str | None, str]:
    """Where the subject's fp32 graph (ORT CPU, optimisations off) leaves its deciding source
    on validate's ``cases``, judged as validate's fp32 cells judge it (:func:`.cells.judge_case`,
    under the user's ``tol``, else fp32's: fp32 rounding told from a departure), and that
    source; ``(None, "")`` where it stays within it or no source speaks."""
    sourced = [c for c in cases if deciding_source(c.opinions, trust_stored)]
    if not sourced:
        return None, ""
    source = deciding_source(sourced[0].opinions, trust_stored)
    target = runtime.Target("cpu", "disabled")
    info = runtime.make_session(subject.model, target, label=str(subject.model_path))
    tol = tol or graph_tolerance(subject.model, "fp32", "cpu")
    for case in sourced:
        got = runtime.run(info, case.feeds)
        judged = judge_case(subject, case, got, target, tol, trust_stored, False)
        failed = next((c for c in judged.outputs if c.status == "fail"), None)
        if failed is not None:
            why = failed.results[source].reason if source in failed.results else failed.note
            return f"the fp32 graph departs from {source} on {case.label}: {why}", source
    return None, source


def undeployable_cell(
    subject: Subject, target: runtime.Target, error: CheckFailed, asked: bool = True
) -> Cell:
    """No graph at this precision: nothing to quantize, or a graph that already computes lower,
    is ``unavailable`` (there is no such deployment), a converter or quantizer failure is a
    ``fail`` of kind ``conversion`` where the user ``asked`` for the precision, else
    ``unavailable`` (the default matrix's fp16: the converter's fault, not the graph's)."""
    status, reason = conversion_status(error), str(error)
    if status == "fail" and not asked:
        status = "unavailable"
        reason = (
            f"{target.precision} is in the default matrix, not asked for (--precision "
            f"{target.precision} makes this a failure): {reason}"
        )
    return Cell(subject.label, target.id, status, reason=reason, kind="conversion")
