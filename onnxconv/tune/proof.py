"""The proof that a candidate (a formulation of the graph under some session settings) computes
what the original graph's sources say, before it may win.

Each candidate becomes a :class:`onnxconv.validate.Subject` that carries the *original's*
sources: its stored test sets and, for a zoo graph, its variant, config and manifest entry, so
PyTorch decides; a graph without PyTorch gets test sets holding the original graph's outputs on
the reference evaluator for every seed and distribution (stored outputs then decide). A graph that
came quantized (it computes in int8) is first held to its own float sources by validate's int8
metrics (:meth:`Prover.quantized_original`); its candidates must then compute what it computes,
so its outputs on the reference evaluator, on the stored inputs too, are their only source. The
candidate then goes through validate's own checks (:func:`onnxconv.validate.make_cases`,
:func:`onnxconv.validate.run_cell`): fp32, the target EP at the settings' optimisation level,
with the settings' session options, seeds 0, 1, 2 × ``normal`` and ``wide`` inputs at batches 1
and 2, and seed 0 alone at a larger tuned batch, dynamic or fixed (its batch draws as many
inputs). Any warning or
failure disqualifies (but see the bit-identical permutations below). The inputs and the
sources' outputs are made once and shared by every candidate; the reference evaluator's
opinion of each candidate is added at batches 1 and 2 only (:data:`REFERENCE_BATCHES`).

A formulation that only moves data (``exact_permutation``) must moreover give bit-identical
outputs to the original graph on ONNX Runtime's CPU EP under the same settings, every case
(``np.array_equal``); every candidate records whether it does and its largest difference.

A candidate at a lower precision (fp16, int8; only under the user's accuracy budget) cannot be
equal element by element: it is proven within the budget instead
(:meth:`Prover.precision_cell`, :func:`budget_proof`), by validate's judgement of int8 cells
(:func:`onnxconv.validate.run_judged_cell`) with the budget as its bounds, on the evaluation
inputs (stored sets and :data:`onnxconv.quant_check.EVALUATION_SAMPLES` seeded feeds no
calibration saw) against the original's fp32 source. An output that hardly depends on its input
(``warn insensitive``) proves nothing and disqualifies too, except a pure permutation that is
bit-identical to the original: equality bit for bit needs no tolerance.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxconv import feeds as feeds_module
from onnxconv import precisions, quant_check, runtime, validate
from onnxconv.errors import CheckFailed, one_line
from onnxconv.parity import Tolerance
from onnxconv.quant_metrics import Bound
from onnxconv.reference import run_reference

from .options import batch_of
from .settings import SessionSettings

SEEDS = (0, 1, 2)
DISTRIBUTIONS = ("normal", "wide")
#: The batches at which a candidate's graph also runs on the reference evaluator. Every case is
#: judged by PyTorch or the stored outputs whatever its batch; the reference evaluator only says
#: what the candidate's graph computes, and at a tuned batch of 32 it costs minutes and gigabytes.
REFERENCE_BATCHES = (1, 2)


@dataclass
class Proof:
    """A candidate's proof: validate's verdict and the bit-identity check."""

    status: str  # pass | warn | fail | unavailable
    kind: str = ""
    reason: str = ""
    deciders: list[str] = field(default_factory=list)
    worst: dict[str, dict[str, Any]] = field(default_factory=dict)
    placement: dict[str, int] = field(default_factory=dict)
    cases: list[str] = field(default_factory=list)
    bit_identical: bool | None = None
    bit_identical_required: bool = False
    max_abs_vs_original: float | None = None
    notes: list[str] = field(default_factory=list)
    quant: dict[str, Any] = field(default_factory=dict)
    """A precision candidate's metrics against the budget (:class:`.quant_check.QuantVerdict`)."""

    @property
    def disqualified(self) -> str | None:
        """Why this candidate may not win; None when it is proven."""
        if self.status != "pass" and not self.proven_bit_for_bit:
            return f"validate: {self.status} {self.kind}: {self.reason}".strip(": ")
        if self.bit_identical_required and not self.bit_identical:
            return (
                "a pure permutation, yet not bit-identical to the original on CPU "
                f"(max abs difference {self.max_abs_vs_original:.3g})"
            )
        return None

    @property
    def proven_bit_for_bit(self) -> bool:
        """A pure permutation whose outputs are the original's bit for bit needs no tolerance:
        an ``insensitive`` source (outputs that a wrong graph would match within tolerance)
        does not weaken that proof, as it does every other."""
        return (
            self.kind == "insensitive" and self.bit_identical_required and bool(self.bit_identical)
        )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "disqualified": self.disqualified}


def budget_proof(cell: validate.Cell, evaluated: int) -> Proof:
    """A precision candidate's proof from its judged cell (:meth:`Prover.precision_cell`):
    within the budget, or disqualified; ``evaluated``: how many inputs it was judged on."""
    return Proof(
        status=cell.status,
        kind="budget" if cell.kind == "quantization" else cell.kind,
        reason=cell.reason,
        deciders=cell.deciders,
        placement=cell.placement,
        cases=[f"{evaluated} evaluation inputs"],
        quant=cell.quant or {},
    )


def _source_batches(batches: list[int] | None) -> list[int]:
    """The batches a graph without PyTorch is proven at: those of ``batches`` (a dynamic batch's
    proof batches) the reference evaluator runs, else 1."""
    return [b for b in batches or [] if b in REFERENCE_BATCHES] or [1]


def _source_test_sets(
    original: validate.Subject,
    max_input_bytes: int,
    stored_inputs: bool,
    batches: list[int] | None,
) -> list[validate.TestSet]:
    """The source of a graph without PyTorch: its own outputs on the reference evaluator for the
    proof's seeds and distributions, at each of :func:`_source_batches`, and for the stored test
    sets' inputs where ``stored_inputs`` (every candidate must compute the same)."""
    spatial = validate.spatial_sizes(original)[0]
    sets = []
    for s in original.test_sets if stored_inputs else []:
        sets.append(
            validate.TestSet(
                s.inputs, _on_reference(original, s.inputs), f"original-on-reference/{s.label}"
            )
        )
    for batch in _source_batches(batches):
        for dist in DISTRIBUTIONS:
            for seed in SEEDS:
                feeds = feeds_module.generate(
                    original.model,
                    str(original.model_path),
                    batch=batch,
                    spatial=spatial,
                    distribution=dist,
                    seed=seed,
                    max_bytes=max_input_bytes,
                    samples=original.sample,
                )
                sets.append(
                    validate.TestSet(
                        feeds,
                        _on_reference(original, feeds),
                        f"original-on-reference/{dist}/seed{seed}/batch{batch}",
                        generated=True,
                    )
                )
    return sets


def _on_reference(original: validate.Subject, feeds: dict[str, np.ndarray]):
    try:
        return run_reference(original.model, feeds)
    except CheckFailed as error:
        why = (
            "a graph that came quantized is its candidates' only source"
            if precisions.computes_in(original.model) == "int8"
            else "it has no PyTorch module, and its stored outputs cover only their own inputs"
            if original.test_sets
            else "it has no PyTorch module and no stored outputs"
        )
        raise CheckFailed(
            f"{original.model_path}: tune proves candidates against the original graph's "
            f"outputs on the reference evaluator ({why}), and {one_line(error)}"
        ) from None


def proof_batches(model: onnx.ModelProto, batch: int) -> list[int] | None:
    """The batches a candidate is proven at: 1, 2 and the tuned one where the graph's batch is
    dynamic; None (the graph's own) where it is fixed."""
    return sorted({1, 2, batch}) if validate.dynamic_batch(model) else None


class Prover:
    """Proves candidates of one original graph on one EP; references are computed once per
    formulation, and the CPU bit-identity check once per formulation and CPU session settings
    (on CUDA every settings candidate of a formulation shares it)."""

    def __init__(
        self,
        original: validate.Subject,
        ep: str,
        *,
        threads: int | None,
        batches: list[int] | None = None,
        tol: Tolerance | None = None,
        max_input_bytes: int = feeds_module.DEFAULT_MAX_BYTES,
        bounds: dict[str, Bound] | None = None,
    ) -> None:
        self.original, self.ep, self.threads, self.tol = original, ep, threads, tol
        self.batches, self.max_input_bytes = batches, max_input_bytes
        # Without PyTorch, generated inputs would have no source: the original's outputs on the
        # reference evaluator become one (stored test sets of the original still decide theirs).
        # A graph that came quantized is its candidates' only source (its float sources judge it
        # by int8 metrics, not element by element: quantized_original).
        self.quantized = precisions.computes_in(original.model) == "int8"
        self.quantized_bounds = bounds
        """The bounds a quantized graph is held to its sources within, and its candidates to
        its outputs (int8 rounding differs between executors and kernels:
        :mod:`onnxconv.validate.quantized`); None: validate's int8 tolerances."""
        self.test_sets = [] if self.quantized else list(original.test_sets)
        has_torch = original.has_torch and not self.quantized
        if not has_torch:
            self.test_sets += _source_test_sets(original, max_input_bytes, self.quantized, batches)
        self.seeds = SEEDS if has_torch else ()
        if batches is None and batch_of(original, None) > max(REFERENCE_BATCHES):
            # A fixed batch of 32 already draws 32 inputs from each distribution, and every seed
            # more costs each proof a pass over its outputs (at batch 32 of the 960x56x56 unit,
            # 26-39 s a proof on an H100's host): the first seed, as at a large dynamic batch.
            self.seeds = self.seeds[:1]
        self.distributions = DISTRIBUTIONS
        self._shared: list[validate.Case] | None = None
        self._cases: dict[str, list[validate.Case]] = {}
        self._evaluation: validate.Evaluation | None = None
        self._compared: dict[tuple[str, tuple], tuple[bool, float]] = {}

    def sources(self) -> list[str]:
        """What decides, in the report's words."""
        o = self.original
        if self.quantized:
            stored = f", and on the inputs of its {len(o.test_sets)} stored test set(s)"
            return [
                "stored: the original (quantized) graph's outputs on the reference evaluator, "
                f"seeds {list(SEEDS)} x {list(DISTRIBUTIONS)} at batch(es) "
                f"{_source_batches(self.batches)}{stored if o.test_sets else ''}"
            ]
        said = [f"torch: PyTorch module of variant {o.variant}"] if o.variant else []
        if o.module is not None:
            said.append(f"torch: PyTorch module {o.module_source}")
        if o.test_sets:
            said.append(f"stored: {len(o.test_sets)} stored test set(s) of the original")
        if not self.seeds:
            said.append(
                "stored: the original graph's outputs on the reference evaluator, "
                f"seeds {list(SEEDS)} x {list(DISTRIBUTIONS)} at batch(es) "
                f"{_source_batches(self.batches)}"
            )
        return said

    def quantized_original(self) -> validate.Cell | None:
        """For a graph that came quantized, validate's verdict on it against its own float
        sources (PyTorch, the stored outputs; :mod:`onnxconv.validate.quantized`, within
        :attr:`quantized_bounds`) on ONNX Runtime's CPU EP, optimisations off, ``normal``
        inputs; None for any other graph, and for one without a float source."""
        o = self.original
        if not self.quantized or not (o.has_torch or o.test_sets):
            return None
        cases = validate.make_cases(
            o, SEEDS if o.has_torch else (), ("normal",), max_input_bytes=self.max_input_bytes
        )
        return validate.run_cell(
            o,
            runtime.Target("cpu", "disabled"),
            cases,
            self.tol,
            self.threads,
            localise_failures=False,
            quantized=True,
            bounds=self.quantized_bounds,
        )

    def subject(self, label: str, model: onnx.ModelProto) -> validate.Subject:
        o = self.original
        path = Path(o.model_path)  # a candidate's name, for messages; the original's own file
        return validate.Subject(
            label=label,
            model_path=path
            if label == "original"
            else path.with_name(f"{label.replace('/', '.')}.onnx"),
            model=model,
            test_sets=self.test_sets,
            variant=None if self.quantized else o.variant,
            config=o.config,
            entry=o.entry,
            module=None if self.quantized else o.module,
            module_source="" if self.quantized else o.module_source,
            recipe=None if self.quantized else o.recipe,
        )

    def _shared_cases(self) -> list[validate.Case]:
        """The inputs with the opinions every formulation shares (PyTorch's, the stored
        outputs), made once: at a large tuned batch they are gigabytes. Batches 1 and 2 get
        every seed; a larger tuned batch the first seed (it checks the batch, the small batches
        the numerics)."""
        if self._shared is None:
            subject = self.subject("original", self.original.model)
            self._shared = validate.make_cases(
                subject,
                self.seeds,
                self.distributions,
                self.batches and [b for b in self.batches if b in REFERENCE_BATCHES],
                max_input_bytes=self.max_input_bytes,
                reference=False,
            )
            large = [b for b in self.batches or [] if b not in REFERENCE_BATCHES]
            if large:
                self._shared += validate.make_cases(
                    dataclasses.replace(subject, test_sets=[]),
                    self.seeds[:1],
                    self.distributions,
                    large,
                    max_input_bytes=self.max_input_bytes,
                    reference=False,
                )
        return self._shared

    def cases(self, label: str, model: onnx.ModelProto) -> list[validate.Case]:
        """The shared cases with the reference evaluator's opinion of ``model`` added where the
        case's batch is in :data:`REFERENCE_BATCHES` (a note on the others)."""
        if label not in self._cases:
            subject = self.subject(label, model)
            self._cases[label] = [
                validate.with_reference(case, subject)
                if _batch(case) in REFERENCE_BATCHES
                else dataclasses.replace(case, reference_error=_reference_skipped(_batch(case)))
                for case in self._shared_cases()
            ]
        return self._cases[label]

    def cell(
        self, label: str, model: onnx.ModelProto, settings: SessionSettings
    ) -> tuple[validate.Cell, list[str]]:
        """validate's cell of ``model`` (fp32) under ``settings`` against the original's
        sources, and notes on what differs from the deployment."""
        subject, cases = self.subject(label, model), self.cases(label, model)
        cuda = settings.cuda_options() if self.ep == "cuda" else None
        notes = []
        if cuda and cuda.pop("enable_cuda_graph", None):
            notes.append(
                "validated without enable_cuda_graph: a CUDA graph replays the kernels "
                "validated here, and needs IO binding, which validate does not use"
            )
        cell = validate.run_cell(
            subject,
            runtime.Target(self.ep, settings.opt_level, "fp32"),
            cases,
            self.tol,
            self.threads,
            localise_failures=True,
            cuda_options=cuda,
            session_config=settings.session_config(),
            session_options=settings.session_options(),
            quantized=self.quantized,
            bounds=self.quantized_bounds,
        )
        return cell, notes

    def prove(
        self,
        label: str,
        model: onnx.ModelProto,
        exact_permutation: bool,
        settings: SessionSettings,
    ) -> Proof:
        """Validate ``model`` under ``settings`` against the original's sources, then compare
        it with the original on CPU bit for bit."""
        cell, notes = self.cell(label, model, settings)
        proof = Proof(
            status=cell.status,
            kind=cell.kind,
            reason=cell.reason,
            deciders=cell.deciders,
            worst=cell.worst,
            placement=cell.placement,
            cases=[c.label for c in self.cases(label, model)],
            bit_identical_required=exact_permutation,
            notes=notes,
        )
        if cell.status != "unavailable":
            proof.bit_identical, proof.max_abs_vs_original = self.bit_identity(
                label, model, settings
            )
        return proof

    def bit_identity(
        self, label: str, model: onnx.ModelProto, settings: SessionSettings
    ) -> tuple[bool, float]:
        """Whether ``model`` gives the original's outputs bit for bit on ORT's CPU EP under
        ``settings``, every case, and the largest difference (once per label and settings)."""
        key = (label, self._cpu_settings(settings))
        if key not in self._compared:
            self._compared[key] = self._compare_cpu(model, settings, self.cases(label, model))
        return self._compared[key]

    def evaluation(self) -> validate.Evaluation:
        """The inputs precision candidates are judged on, and the fp32 source's outputs."""
        if self._evaluation is None:
            self._evaluation = validate.evaluation(
                self.original,
                None,
                quant_check.EVALUATION_SAMPLES,
                self.max_input_bytes,
                tol=self.tol,
            )
        return self._evaluation

    def precision_cell(
        self,
        label: str,
        fp32_model: onnx.ModelProto,
        deployed: onnx.ModelProto,
        precision: str,
        settings: SessionSettings,
        budget: dict[str, Bound],
    ) -> validate.Cell:
        """validate's judgement of ``deployed`` (``fp32_model`` at ``precision``) on the target
        EP under ``settings``, with ``budget`` as its bounds, against the original's fp32 source
        on the evaluation inputs."""
        cuda = settings.cuda_options() if self.ep == "cuda" else None
        if cuda:
            cuda.pop("enable_cuda_graph", None)
        return validate.run_judged_cell(
            self.subject(label, fp32_model),
            runtime.Target(self.ep, settings.opt_level, precision),
            deployed,
            self.evaluation(),
            self.threads,
            cuda,
            tolerances=budget,
            session_config=settings.session_config(),
            session_options=settings.session_options(),
        )

    def _cpu_settings(self, settings: SessionSettings) -> tuple:
        """What of ``settings`` the CPU bit-identity sessions use: all of it when tuning for
        CPU; only the optimisation level for another EP (its options are not the CPU's)."""
        if self.ep == "cpu":
            return (settings.opt_level, settings.config, settings.options)
        return (settings.opt_level, (), ())

    def _cpu_session(self, model: onnx.ModelProto, settings: SessionSettings):
        level, config, options = self._cpu_settings(settings)
        return runtime.make_session(
            model,
            runtime.Target("cpu", level, "fp32"),
            threads=self.threads,
            session_config=dict(config) or None,
            session_options=dict(options) or None,
        )

    def _compare_cpu(
        self, model: onnx.ModelProto, settings: SessionSettings, cases: list[validate.Case]
    ) -> tuple[bool, float]:
        """Whether ``model`` gives the original's outputs bit for bit on the CPU EP, and the
        largest difference; one case at a time (at a large batch an output set is gigabytes).
        The original graph itself (under other settings) is not run twice: both sessions
        would be the same graph under the same CPU settings."""
        if model is self.original.model:
            return True, 0.0
        original = self._cpu_session(self.original.model, settings)
        candidate = self._cpu_session(model, settings)
        identical, worst = True, 0.0
        for case in cases:
            want = runtime.run(original, case.feeds)
            for name, value in runtime.run(candidate, case.feeds).items():
                if np.array_equal(value, want[name]):
                    continue
                identical = False
                if value.shape != want[name].shape:  # a wrong rewrite: no difference to measure
                    return False, float("inf")
                if value.size:
                    diff = np.max(np.abs(value.astype(np.float64) - want[name]))
                    worst = max(worst, float(diff))
        return identical, worst


def _batch(case: validate.Case) -> int:
    """The case's batch: the first input's leading dimension (1 for a scalar input)."""
    first = next(iter(case.feeds.values()))
    return int(first.shape[0]) if first.ndim else 1


def _reference_skipped(batch: int) -> str:
    return (
        f"the reference evaluator is not run at batch {batch}: tune consults it at batches "
        f"{', '.join(map(str, REFERENCE_BATCHES))} (at a large batch it takes minutes and "
        "gigabytes); PyTorch and the stored outputs judge every batch"
    )
