"""The search: formulations first, then (under an accuracy budget) lower precisions, then session
settings on what is left, every candidate proven before it is timed, and the choice.

Stages (each timed in its own alternating rounds, the default re-timed in every stage):

1. **formulations**: the original and every applicable formulation (:func:`.rewrites.formulations`)
   under the default settings.
2. **precisions** (only when the user gave an accuracy budget): the best formulation deployed at
   each precision (:func:`onnxconv.precisions.deploy`, int8 calibrated on
   :data:`onnxconv.precisions.CALIBRATION_SAMPLES` seeded inputs), each proven within the budget
   (:meth:`.proof.Prover.precision_cell`) before it is timed. Never without a budget: a lower
   precision is another function, chosen only where the user said how far from the original it
   may be.
3. **settings**: the best formulation, and each of its precisions proven in stage 2, under every
   settings candidate of the EP (:mod:`.settings`), each proven again under them; on CUDA a
   second settings stage refines the best of the first. Settings and precision interact (on a
   2-core AMD EPYC, intra-op spinning made an int8 3x3 conv 3x slower at 2 threads and did not
   hurt fp32), so each proven precision gets its own settings search.

**What bounds the winner** (:mod:`.bounds`): when the winner stays slower than PyTorch eager,
or with ``--explain``, its nodes are timed alone and the machine's roofs measured, and the report
says which part of its time (convolutions, data movement, other nodes, overhead) bounds it.

**The time budget** (``--time-budget``, :mod:`.deadline`): a deadline the search plans
against. The original's proof and the first timing stage always run; after that, a candidate
joins its stage only while its proof and the stage's timing with it are projected (from this
run's measured proofs and runs) to end within the stage's share of what is left (an equal share
among the stages still to come, after keeping time for the profile and bound analysis, which
start only while theirs fit). What is refused is named in the report's notes; the choice is
made from what was timed. A run that must end by a deadline (a CI job, a lent GPU) still writes
its report, and ends near the budget rather than a whole stage past it.

**The choice.** A candidate *beats* a reference when, in every round, its p50 is below the
reference's (every paired ratio > 1) *and* its slowest round is faster than the reference's
fastest round: it wins by more than the spread the rounds measured. In stage 1 the reference is
the default (the original graph, default settings); in a later stage it is the stage's
incumbent (the best candidate of the stages before, re-timed), which must itself beat the
default again. The winner is the candidate with the largest median speedup among those that
beat their reference; otherwise the default stays. Only a proven candidate is timed
(:class:`.proof.Proof`: validate passes, and bit-identical where the formulation only moves data).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxconv import feeds as feeds_module
from onnxconv import precisions as precisions_module
from onnxconv import validate
from onnxconv.bench.report_notes import HELD_UP, ROUNDS_DISAGREE, was_held_up
from onnxconv.errors import CheckFailed, conversion_status, one_line
from onnxconv.graph import SHUFFLE_PERM, find_channel_shuffles, graph_cost
from onnxconv.machine import machine_info, versions
from onnxconv.quant_check import headline as quant_check_headline
from onnxconv.quant_metrics import budget_spec

from ..user_model import torch_job
from . import bounds as bounds_module
from . import settings as settings_module
from .candidates import FORMULATIONS, ORIGINAL, PRECISIONS, Candidate, TuneReport
from .deadline import Deadline
from .options import TuneOptions, batch_of
from .proof import Proof, Prover, budget_proof, proof_batches
from .rewrites import REWRITES, SHUFFLE_REWRITES, Rewritten, formulations
from .settings import DEFAULT, SessionSettings
from .timing import Job, Method, Timing, node_times, profile, roofs, time_rounds

#: Paired rounds a win needs: one round measures no spread to be beyond.
MIN_ROUNDS_TO_WIN = 2


def beats(candidate: Timing, reference: Timing) -> bool:
    """Faster in every paired round (at least :data:`MIN_ROUNDS_TO_WIN`), and the slowest round
    faster than the reference's fastest: a win larger than the spread the rounds measured."""
    mine = [p for p in candidate.rounds_p50_ms if p is not None]
    theirs = [p for p in reference.rounds_p50_ms if p is not None]
    ratios = candidate.ratios_over(reference)
    complete = len(ratios) == len(candidate.rounds_p50_ms) == len(reference.rounds_p50_ms)
    return (
        len(ratios) >= MIN_ROUNDS_TO_WIN
        and complete
        and all(r > 1 for r in ratios)
        and max(mine) < min(theirs)
    )


class _Search:
    def __init__(
        self,
        subject: validate.Subject,
        options: TuneOptions,
        work: Path,
        progress: Callable[[str], None] | None,
        started: float | None = None,
    ) -> None:
        self.subject, self.options, self.work, self.progress = subject, options, work, progress
        self.method = options.method
        self.batch = batch_of(subject, options.batch)
        self.prover = Prover(
            subject,
            options.ep,
            threads=self.method.threads,
            batches=proof_batches(subject.model, self.batch),
            bounds=options.budget,
        )
        self.models: dict[str, tuple[onnx.ModelProto, Path]] = {}
        self.inputs = self._inputs()
        self.torch_job = self._torch_job()
        self.torch: dict[str, dict[str, Any] | None] = {}
        self.torch_timings: list[Timing] = []
        self._calibration: list[dict[str, np.ndarray]] | None = None
        self._deployed: dict[tuple[str, str], onnx.ModelProto | CheckFailed] = {}
        self.fp32: dict[str, Candidate] = {}
        """The fp32 candidate of each formulation deployed at a lower precision."""
        self.deadline = Deadline(options.time_budget_s, started)
        self.formulations: dict[str, Rewritten] = {}
        """The graph's formulations under the allowed rewrites (made when the search runs)."""
        self.refused_rewrites: dict[str, str] = {}
        """Formulations whose rewrite could not edit this graph soundly, with the reason."""
        self.stage_end: float | None = None
        """When the stage being searched should end (its share of the time budget)."""
        self.skipped_stages: list[str] = []
        """The stages the time budget cut short (some or all of their candidates skipped)."""

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def fits(self, what: str, cost_s: float, end: float | None = None) -> bool:
        """Whether work projected to take ``cost_s`` seconds ends within the time budget (and
        by ``end``, a stage's share); if not, ``what`` is named as skipped."""
        if self.deadline.allows(cost_s, end):
            return True
        self.deadline.skipped.append(what)
        left = max(self.deadline.left_s(), 0.0)
        why = f"projected {cost_s:.0f} s, {left:.0f} s left"
        if end is not None and cost_s <= left:  # within the budget, beyond the stage's share
            share = max(end - self.deadline.clock(), 0.0)
            why = (
                f"projected {cost_s:.0f} s, more than this stage's share ({share:.0f} s) of the "
                f"{left:.0f} s left: the stages after it keep theirs"
            )
        self.say(f"time budget: skipping {what} ({why})")
        return False

    def stages_after(self, stage: str) -> int:
        """How many search stages may follow ``stage`` in this run."""
        settings = settings_module.passes(self.options.ep) if self.options.search_settings else 0
        if stage == FORMULATIONS:
            return (1 if self.options.precisions else 0) + settings
        if stage == PRECISIONS:
            return settings
        return max(settings - int(stage.removeprefix("settings-")), 0)

    def after_stages_s(self) -> float:
        """The projected cost of the work after the stages: the per-op profile of the default
        and the winner, and the bound analysis's two runs."""
        return 4 * self.deadline.run_s() if self.options.profile else 0.0

    def prove_for_stage(
        self, stage: str, pending: list[tuple[str, Callable[[], Candidate]]], timed: int
    ) -> list[Candidate]:
        """Each ``(label, prove)`` of ``pending`` proven in order while its proof and the stage's
        timing with it (``timed``: the ORT runs the stage times besides its entries) fit the
        stage's share of the time budget (:meth:`.deadline.Deadline.share_end`); the first that
        does not, and every one after it, is skipped."""
        end = self.deadline.share_end(1 + self.stages_after(stage), self.after_stages_s())
        self.stage_end = end
        entries: list[Candidate] = []
        for i, (label, prove) in enumerate(pending):
            cost = self.deadline.proof_s() + self.deadline.stage_s(
                timed + len(entries) + 1, self.method.rounds, self.torch_job is not None
            )
            rest = ", ".join(label for label, _ in pending[i:])
            what = (
                f"{len(pending) - i} of {len(pending)} {stage} candidates ({rest})"
                if entries
                else f"every candidate of the {stage} stage ({rest})"
            )
            if not self.fits(what, cost, end):
                if stage not in self.skipped_stages:
                    self.skipped_stages.append(stage)
                break
            entries.append(self.timed_proof(prove))
        return entries

    def timed_proof(self, prove: Callable[[], Candidate]) -> Candidate:
        """``prove()``'s candidate, its seconds recorded for the time budget's projections."""
        started = time.monotonic()
        candidate = prove()
        self.deadline.record_proof(time.monotonic() - started)
        return candidate

    def _inputs(self) -> dict[str, Path]:
        feeds = feeds_module.generate(
            self.subject.model,
            str(self.subject.model_path),
            batch=self.batch,
            spatial=validate.spatial_sizes(self.subject)[0],
            distribution="normal",
            seed=0,
            samples=self.subject.sample,
        )
        paths = {}
        for i, (name, value) in enumerate(feeds.items()):
            paths[name] = self.work / f"input_{i}.npy"
            np.save(paths[name], value)
        return paths

    def _torch_job(self) -> dict[str, Any] | None:
        s = self.subject
        if s.recipe is not None:
            return torch_job(s.recipe, [str(p) for p in self.inputs.values()])
        if not s.variant:
            return None
        return {
            "variant": s.variant,
            "config": s.config,
            "seed": (s.entry or {}).get("seed", 0),
            "input": str(next(iter(self.inputs.values()))),
        }

    def model_file(self, key: str, model: onnx.ModelProto) -> Path:
        """``model`` written once into the work folder (``key``: :attr:`Candidate.model_key`)."""
        if key not in self.models:
            path = self.work / f"{key.replace('/', '.')}.onnx"
            path.write_bytes(model.SerializeToString())
            self.models[key] = (model, path)
        return self.models[key][1]

    def candidate(
        self,
        formulation: str,
        model: onnx.ModelProto,
        rewrites: list[str],
        changes: list[str],
        exact: bool,
        settings: SessionSettings,
        stage: str,
    ) -> Candidate:
        self.say(f"proving {formulation} @ {settings.name}")
        proof = self.prover.prove(formulation, model, exact, settings)
        blocker = settings_module.cuda_graph_blocker(model, proof.placement)
        if settings.cuda_graph and blocker:
            proof.status, proof.reason = "unavailable", f"CUDA graphs: {blocker}"
        return Candidate(
            formulation=formulation,
            rewrites=rewrites,
            changes=changes,
            settings=settings,
            stage=stage,
            exact_permutation=exact,
            macs=graph_cost(model, self.batch)[1],
            proof=proof,
            model=model,
        )

    def time_stage(
        self, stage: str, entries: list[Candidate], incumbent: Candidate
    ) -> tuple[Candidate, Candidate, list[Candidate]]:
        """Time the default, the incumbent and every proven entry in alternating rounds; the
        default and incumbent are re-timed as this stage's copies. Returns the stage's default,
        incumbent, and every candidate it added to the report."""
        default = self.default if stage == FORMULATIONS else _retimed(self.default, stage)
        if incumbent.is_default:
            incumbent = default
        elif incumbent.stage != stage:
            incumbent = _retimed(incumbent, stage)
        listed = list(dict.fromkeys([default, incumbent, *entries]))
        timed = [c for c in listed if c.proof.disqualified is None]
        jobs = [Job(c.name, self.model_file(c.model_key, c.model), c.settings) for c in timed]
        timings, torch = self.time_rounds(jobs, self.method, self.say, self.stage_end)
        self.torch[stage] = torch.to_dict() if torch else None
        if torch:
            self.torch_timings.append(torch)
        if timings[default.name].error:
            raise CheckFailed(f"timing the default failed: {timings[default.name].error}")
        for c in timed:
            c.timing = timings[c.name]
            c.speedup_rounds = c.timing.ratios_over(timings[default.name])
            c.torch_rounds = c.timing.ratios_over(torch) if torch else []
        for c in timed:
            if c is default:
                continue
            reference = default if c is incumbent else incumbent
            c.reference = reference.name
            c.beats_reference = beats(c.timing, reference.timing) and beats(
                c.timing, default.timing
            )
        return default, incumbent, [c for c in listed if c is not self.default]

    def run(self) -> TuneReport:
        s, ep = self.subject, self.options.ep
        self.quantized_check = self.prover.quantized_original()
        if self.quantized_check and self.quantized_check.status != "pass":
            c = self.quantized_check
            raise CheckFailed(
                f"{s.model_path}: the original graph itself fails validate on cpu: {c.status} "
                f"{c.kind}: {c.reason}; tune proves candidates equal to a graph that computes "
                "its sources"
            )
        self.default = self.timed_proof(
            functools.partial(
                self.candidate, ORIGINAL, s.model, [], [], True, DEFAULT, FORMULATIONS
            )
        )
        if self.default.proof.disqualified:
            other_weights = (
                f" ({s.foreign_weights})"
                if s.foreign_weights and self.default.proof.kind == "export"
                else ""
            )
            raise CheckFailed(
                f"{s.model_path}: the original graph itself fails validate on {ep}: "
                f"{self.default.proof.disqualified}{other_weights}; tune proves candidates "
                "against its sources"
            )
        self.formulations = formulations(s.model, self.options.rewrites, self.refused_rewrites)
        if self.options.time_budget_s is not None:
            self.measure_a_run()
        stage1 = self.prove_for_stage(
            FORMULATIONS,
            [
                (name, functools.partial(self.formulation, name, r))
                for name, r in self.formulations.items()
            ],
            timed=1,
        )
        default, _, added = self.time_stage(FORMULATIONS, stage1, self.default)
        candidates = [self.default, *added]
        winner = _best(default, stage1)
        bases = [winner]
        if self.options.precisions:
            entries = self.prove_for_stage(
                PRECISIONS,
                [
                    (
                        f"{winner.formulation}/{p}",
                        functools.partial(
                            self.at_precision, winner, p, winner.settings, PRECISIONS
                        ),
                    )
                    for p in self.options.precisions
                ],
                timed=1 if winner.is_default else 2,
            )
            if entries:
                default, incumbent, added = self.time_stage(PRECISIONS, entries, winner)
                candidates += added
                holds = incumbent is default or incumbent.beats_reference
                bases += [e for e in entries if e.proof.disqualified is None]
                winner = _best(incumbent if holds else default, entries)
        best: SessionSettings | None = None
        for n in itertools.count(1):
            trials = settings_module.candidates(ep, n, best) if self.options.search_settings else []
            stage = f"settings-{n}"
            entries = self.prove_for_stage(
                stage,
                [
                    (f"{base.model_key} @ {t.name}", functools.partial(self.under, base, t, stage))
                    for base in bases
                    for t in trials
                    if t != base.settings
                ],
                timed=1 if winner.is_default else 2,
            )
            if not entries:
                break
            default, incumbent, added = self.time_stage(stage, entries, winner)
            candidates += added
            holds = incumbent is default or incumbent.beats_reference
            winner = _best(incumbent if holds else default, entries)
            best, bases = winner.settings, [winner]
        return self._report(candidates, winner, default)

    def measure_a_run(self) -> None:
        """One run of the default and one of PyTorch (not in the report), so the time budget
        plans the first stage with their real costs: as they come, contended or not (a wait for
        quiet and a retry would cost up to minutes of the budget, to measure a cost that the
        contention is part of)."""
        torch = " and of PyTorch" if self.torch_job is not None else ""
        self.say(f"one run of the default{torch}, to plan the time budget")
        job = Job(self.default.name, self.model_file(ORIGINAL, self.subject.model), DEFAULT)
        self.time_rounds([job], dataclasses.replace(self.method, rounds=1, retries=0), None)

    def time_rounds(
        self,
        jobs: list[Job],
        method: Method,
        progress: Callable[[str], None] | None,
        until: float | None = None,
    ) -> tuple[dict[str, Timing], Timing | None]:
        """:func:`.timing.time_rounds` for this run's EP, inputs and PyTorch, every run's seconds
        recorded for the budget's projections. Contended runs are waited on and retried until
        ``until`` (a stage's share of the time budget), else the budget's deadline; past it
        they are kept, and counted as contended."""
        timings, torch = time_rounds(
            jobs,
            self.options.ep,
            self.inputs,
            method,
            self.torch_job,
            progress,
            until=self.deadline.end() if until is None else until,
        )
        self.deadline.record_runs(
            [s for t in timings.values() for s in t.rounds_s], torch.rounds_s if torch else []
        )
        return timings, torch

    def formulation(self, name: str, rewritten: Rewritten) -> Candidate:
        """The formulation ``name`` (rewrites joined by ``+``) under the default settings."""
        return self.candidate(
            name,
            rewritten.model,
            name.split("+"),
            rewritten.changes,
            rewritten.exact_permutation,
            DEFAULT,
            FORMULATIONS,
        )

    def under(self, base: Candidate, settings: SessionSettings, stage: str) -> Candidate:
        """``base``'s graph (its formulation at its precision) under other settings, proven
        again there (the level changes ORT's fusions, and with them the numerics)."""
        if base.precision != "fp32":
            return self.at_precision(self.fp32[base.formulation], base.precision, settings, stage)
        return self.candidate(
            base.formulation,
            base.model,
            base.rewrites,
            base.changes,
            base.exact_permutation,
            settings,
            stage,
        )

    def calibration(self) -> list[dict[str, np.ndarray]]:
        if self._calibration is None:
            self._calibration = validate.calibration_feeds(
                self.subject, feeds_module.DEFAULT_MAX_BYTES
            )
        return self._calibration

    def at_precision(
        self, fp32: Candidate, precision: str, settings: SessionSettings, stage: str
    ) -> Candidate:
        """``fp32``'s graph deployed at ``precision`` (once per formulation) under ``settings``,
        proven within the budget (or disqualified: no such deployment, or outside the budget)."""
        label = f"{fp32.formulation}/{precision}"
        self.say(f"proving {label} @ {settings.name} within the accuracy budget")
        deployed = self.deployed(fp32, precision)
        if isinstance(deployed, CheckFailed):
            proof = Proof(conversion_status(deployed), "conversion", one_line(deployed))
            deployed = fp32.model
        else:
            assert self.options.budget is not None  # TuneOptions checks
            cell = self.prover.precision_cell(
                label, fp32.model, deployed, precision, settings, self.options.budget
            )
            proof = budget_proof(cell, len(self.prover.evaluation().feeds))
        return dataclasses.replace(
            _retimed(fp32, stage),
            settings=settings,
            proof=proof,
            model=deployed,
            precision=precision,
            exact_permutation=False,
            macs=graph_cost(deployed, self.batch)[1],
        )

    def deployed(self, fp32: Candidate, precision: str) -> onnx.ModelProto | CheckFailed:
        """``fp32``'s graph at ``precision``, made once (int8: calibrated on the seeded
        calibration inputs), or why it cannot be."""
        key = (fp32.formulation, precision)
        if key not in self._deployed:
            self.fp32[fp32.formulation] = fp32
            spec = precisions_module.get(precision)
            try:
                self._deployed[key] = precisions_module.deploy(
                    fp32.model,
                    precision,
                    self.calibration() if spec.needs_calibration else None,
                    method=self.options.calibration,
                    label=str(self.subject.model_path),
                )
            except CheckFailed as error:
                self._deployed[key] = error
        return self._deployed[key]

    def _report(
        self, candidates: list[Candidate], winner: Candidate, default: Candidate
    ) -> TuneReport:
        per_op = {}
        profiles = len(dict.fromkeys((default, winner)))
        if self.options.profile and self.fits(
            "the per-op profile", profiles * self.deadline.run_s()
        ):
            for c in dict.fromkeys((default, winner)):
                job = Job(c.name, self.model_file(c.model_key, c.model), c.settings)
                per_op[c.name] = profile(job, self.options.ep, self.inputs, self.method, self.work)
        bound = self._bound(winner)
        s = self.subject
        runs = [
            (pressure, retries)
            for t in [*(c.timing for c in candidates if c.timing), *self.torch_timings]
            for pressure, retries in zip(t.rounds_pressure, t.rounds_retries, strict=True)
        ]
        contended = [p for p, _ in runs if p is not None and p > self.method.max_pressure]
        notes = []
        if any(r for _, r in runs):
            notes.append(
                f"{sum(r for _, r in runs)} run(s) were repeated because other processes "
                f"contended for the CPU (pressure above {self.method.max_pressure:.0%})"
            )
        if contended:
            cut = (
                ", fewer past a stage's share of --time-budget"
                if self.options.time_budget_s is not None
                else ""
            )
            notes.append(
                f"{len(contended)} of {len(runs)} kept runs were still contended after up to "
                f"{self.method.retries} retries{cut} (CPU pressure up to {max(contended):.0%}): "
                "their timings are slower than this machine alone gives; a win must still hold "
                "in every round"
            )
        native = precisions_module.computes_in(s.model)
        if native != "fp32":
            notes.append(precisions_module.as_is_note(native, "candidates"))
        for key, reason in self.refused_rewrites.items():
            notes.append(f"{key} was left out: {reason}")
        if any(r in SHUFFLE_REWRITES for r in self.options.rewrites):
            notes += unrewritten_shuffles_note(s.model)
        used = {name for key in self.formulations for name in key.split("+")}
        unused = [
            r for r in self.options.rewrites if r not in used and r not in self.refused_rewrites
        ]
        if unused and set(self.options.rewrites) != set(REWRITES):  # named by the user
            notes.append(
                f"--rewrites {', '.join(unused)}: nothing in this graph for "
                f"{'it' if len(unused) == 1 else 'them'} to rewrite"
            )
        if self.quantized_check:
            quant = self.quantized_check.quant
            notes.append(
                "the graph came quantized: validate holds it to its float source by int8 metrics "
                f"({quant_check_headline(quant)} vs {quant['against']} on "
                f"{quant['samples']} input(s)), and every candidate by the same rule to the "
                "original's own outputs"
                if quant
                else "the graph came quantized: every candidate is held to its own outputs"
            )
        if self.method.rounds < MIN_ROUNDS_TO_WIN:
            notes.append(
                f"{self.method.rounds} round measures no spread between rounds, so no candidate "
                f"could win and the default stays: time with --rounds {MIN_ROUNDS_TO_WIN} or more"
            )
        unsteady = []  # (candidate, fastest round p50, slowest)
        for c in candidates:
            p50s = [p for p in (c.timing.rounds_p50_ms if c.timing else []) if p]
            if len(p50s) > 1 and max(p50s) > ROUNDS_DISAGREE * min(p50s):
                unsteady.append((c.name, min(p50s), max(p50s)))
        if unsteady:
            name, low, high = unsteady[0]
            notes.append(
                f"{len(unsteady)} candidate(s) ran more than {ROUNDS_DISAGREE}x apart from one "
                f"round to the next (e.g. {name}: {low:.4g} to {high:.4g} ms): the machine "
                "changed speed between processes, so a p50 over every round mixes the two; "
                "a win still had to hold in every paired round (rerun with more --rounds)"
            )
        held_up = [
            (name, stats["p50_ms"], stats["min_ms"])
            for name, t in [
                *((c.name, c.timing) for c in candidates if c.timing),
                *(("PyTorch eager", t) for t in self.torch_timings),
            ]
            if (stats := t.stats) and was_held_up(stats)
        ]
        if held_up:
            name, p50, fastest = held_up[0]
            notes.append(
                f"{len(held_up)} timing(s) had a p50 more than {HELD_UP:g}x their fastest call "
                f"(e.g. {name}: p50 {p50:.4g} ms, fastest {fastest:.4g} ms): most calls were held "
                "up (oversubscribed threads, or the machine taken by others), so ratios built on "
                "them say little; time again on a quiet machine"
            )
        budget = self.options.time_budget_s
        if budget is not None:
            took = budget - self.deadline.left_s()
            note = f"the search took {took:.0f} s of its {budget:g} s time budget"
            if self.deadline.skipped:
                note += ", skipping to keep it: " + "; ".join(self.deadline.skipped)
            notes.append(note)
        return TuneReport(
            subject={
                "label": s.label,
                "model": str(s.model_path),
                "variant": s.variant,
                "config": s.config,
                "sources": self.prover.sources(),
                "notes": s.notes,
                # the --module that spoke for the graph, rebuilt where the record is checked
                "module": s.recipe if s.module_named_by_user else None,
            },
            ep=self.options.ep,
            threads=self.method.threads,
            batch=self.batch,
            options={
                "rewrites": list(self.options.rewrites),
                "search_settings": self.options.search_settings,
                "method": dataclasses.asdict(self.method),
                "seeds": list(self.prover.seeds),
                "precisions": list(self.options.precisions),
                "accuracy_budget": budget_spec(self.options.budget)
                if self.options.budget is not None
                else None,
                "calibration": self.options.calibration if self.options.precisions else None,
                "distributions": list(self.prover.distributions),
                "proof_batches": self.prover.batches,
                "time_budget_s": self.options.time_budget_s,
            },
            candidates=candidates,
            winner=winner,
            default=default,
            decision=_decision(winner, candidates, bool(self.skipped_stages)),
            torch=self.torch,
            per_op=per_op,
            bound=bound,
            machine=machine_info(),
            versions=versions(),
            notes=notes,
            skipped_stages=list(self.skipped_stages),
            held_up=list(dict.fromkeys(name for name, _, _ in held_up)),
        )

    def _bound(self, winner: Candidate) -> dict[str, Any] | None:
        """What bounds the winner (:mod:`.bounds`), when it stays slower than PyTorch eager or
        the user asked; None otherwise, without a profile, or when the budget is spent."""
        slower = winner.torch_over_ort is not None and winner.torch_over_ort < 1
        stats = winner.timing.stats if winner.timing else None
        if not (self.options.profile and stats and (slower or self.options.explain)):
            return None
        # Its node timings and roofs are two worker runs, of unknown length: project two runs.
        if not self.fits("the bound analysis", 2 * self.deadline.run_s()):
            return None
        self.say("timing every node of the winner alone, and the roofs")
        job = Job(winner.name, self.model_file(winner.model_key, winner.model), winner.settings)
        per_node = node_times(job, self.options.ep, self.inputs, self.method)
        if per_node is None:
            return {"error": "timing the winner's nodes alone failed"}
        torch = self.torch.get(winner.stage) or {}
        shapes = {
            name: tuple(np.load(path, mmap_mode="r").shape) for name, path in self.inputs.items()
        }
        analysis = bounds_module.analyse(
            stats["p50_ms"],
            (torch.get("stats") or {}).get("p50_ms"),
            per_node,
            roofs(self.options.ep, self.method),
            bounds_module.moved_bytes(winner.model, shapes),
            bounds_module.conv_macs(self.subject.model, shapes),
        )
        return {**analysis, "sentence": bounds_module.describe(analysis), "per_node": per_node}


def _best(incumbent: Candidate, entries: list[Candidate]) -> Candidate:
    winners = [c for c in entries if c.beats_reference]
    return max(winners, key=lambda c: c.speedup or 0.0, default=incumbent)


def _retimed(candidate: Candidate, stage: str) -> Candidate:
    """A copy of a candidate for a later stage, where it is timed again."""
    return dataclasses.replace(
        candidate,
        stage=stage,
        timing=None,
        speedup_rounds=[],
        torch_rounds=[],
        reference=None,
        beats_reference=False,
    )


def _decision(winner: Candidate, candidates: list[Candidate], budget_cut: bool) -> str:
    if winner.is_default:
        timed = [c for c in candidates if not c.is_default and c.timing and c.timing.stats]
        if budget_cut and not timed:
            return "the default stays: the time budget left no candidate timed against it"
        return "the default stays: no proven candidate beat it by more than the measured spread"
    proven = "proven by validate"
    if winner.proof.proven_bit_for_bit:
        proven = (
            "proven bit for bit against the original (its sources are insensitive: no "
            "tolerance could tell it from a wrong graph)"
        )
    if winner.precision != "fp32":
        against = ", ".join(winner.proof.deciders)
        proven = (
            f"at {winner.precision}, within the user's accuracy budget "
            f"({quant_check_headline(winner.proof.quant)} against {against})"
        )
    return (
        f"{winner.name}: {winner.speedup:.2f}x the default's speed (median of paired rounds), "
        f"faster in every round and beyond the spread of the rounds, {proven}"
    )


def tune(
    subject: validate.Subject,
    options: TuneOptions,
    work: Path,
    progress: Callable[[str], None] | None = None,
    started: float | None = None,
) -> TuneReport:
    """Search, prove, time and choose for one graph on one EP (see the module docstring).
    ``work``: a folder for the candidates' model files and inputs; ``started``: when the time
    budget began (``time.monotonic()``; default: now)."""
    return _Search(subject, options, work, progress, started).run()


def unrewritten_shuffles_note(model: onnx.ModelProto) -> list[str]:
    """A note where some Reshape -> Transpose -> Reshape chains of ``model`` are not channel
    shuffles a rewrite may touch: how many of how many, and why the first is not."""
    chains = find_channel_shuffles(model)
    left = [c for c in chains if not c.exact or c.perm != SHUFFLE_PERM[c.rank]]
    if not left:
        return []
    why = "; ".join(left[0].problems) or f"Transpose perm {left[0].perm}"
    return [
        f"{len(left)} of {len(chains)} Reshape -> Transpose -> Reshape chain(s) are left as they "
        f"are by the shuffle rewrites, which take only a chain proven to shuffle channels "
        f"(e.g. {left[0].reshape_in}: {why})"
    ]
