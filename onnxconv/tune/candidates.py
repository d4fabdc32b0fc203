"""The records of a tune run: one :class:`Candidate` (a formulation at some precision under some
session settings, with its proof and timings) and the :class:`TuneReport` over all of them."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

import onnx

from onnxconv.bench.stats import median_or_none

from .proof import Proof
from .settings import DEFAULT, SessionSettings
from .timing import Timing

ORIGINAL = "original"
SCHEMA, SCHEMA_VERSION = "onnxconv.tune", 1
FORMULATIONS = "formulations"
PRECISIONS = "precisions"


@dataclass(eq=False)
class Candidate:
    """One formulation under one settings: its proof, timings and how it compares (compared
    and hashed by identity: a later stage's copy is another candidate)."""

    formulation: str
    rewrites: list[str]
    changes: list[str]
    settings: SessionSettings
    stage: str
    exact_permutation: bool
    macs: int | None
    proof: Proof
    model: onnx.ModelProto = field(repr=False, compare=False)
    precision: str = "fp32"
    timing: Timing | None = None
    speedup_rounds: list[float] = field(default_factory=list)
    """Default p50 over this candidate's p50, per round (> 1: faster than the default)."""
    torch_rounds: list[float] = field(default_factory=list)
    """PyTorch eager p50 over this candidate's p50, per round (> 1: ORT faster)."""
    reference: str | None = None
    beats_reference: bool = False

    @property
    def name(self) -> str:
        """``formulation @ settings``; ``formulation/precision @ settings`` below fp32."""
        deployed = self.formulation if self.precision == "fp32" else self.model_key
        return f"{deployed} @ {self.settings.name}"

    @property
    def is_default(self) -> bool:
        """The original graph, at fp32, under the default settings (in any stage)."""
        return (
            self.formulation == ORIGINAL and self.settings == DEFAULT and self.precision == "fp32"
        )

    @property
    def model_key(self) -> str:
        """The graph this candidate runs: its formulation, at its precision."""
        if self.precision == "fp32":
            return self.formulation
        return f"{self.formulation}/{self.precision}"

    @property
    def speedup(self) -> float | None:
        return median_or_none(self.speedup_rounds)

    @property
    def torch_over_ort(self) -> float | None:
        return median_or_none(self.torch_rounds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stage": self.stage,
            "formulation": self.formulation,
            "precision": self.precision,
            "rewrites": self.rewrites,
            "changes": self.changes,
            "settings": self.settings.to_dict(),
            "exact_permutation": self.exact_permutation,
            "macs": self.macs,
            "proof": self.proof.to_dict(),
            "timing": self.timing.to_dict() if self.timing else None,
            "speedup_vs_default": self.speedup,
            "speedup_rounds": self.speedup_rounds,
            "torch_over_ort": self.torch_over_ort,
            "torch_rounds": self.torch_rounds,
            "reference": self.reference,
            "beats_reference": self.beats_reference,
        }


@dataclass
class TuneReport:
    """Everything one tune run found; :meth:`to_dict` is the JSON (schema in :mod:`.report`)."""

    subject: dict[str, Any]
    ep: str
    threads: int
    batch: int
    options: dict[str, Any]
    candidates: list[Candidate]
    winner: Candidate
    default: Candidate
    decision: str
    torch: dict[str, dict[str, Any] | None]
    per_op: dict[str, Any]
    bound: dict[str, Any] | None
    """What bounds the winner (:mod:`.bounds`), or None when not analysed."""
    machine: dict[str, Any]
    versions: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    skipped_stages: list[str] = field(default_factory=list)
    """The stages some or all of whose candidates the time budget skipped."""
    held_up: list[str] = field(default_factory=list)
    """The timings (candidates, ``PyTorch eager``) whose p50 was far above their fastest call:
    ratios built on them say little."""
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "subject": self.subject,
            "ep": self.ep,
            "threads": self.threads,
            "batch": self.batch,
            "options": self.options,
            "default": self.default.name,
            "winner": self.winner.name,
            "decision": self.decision,
            "candidates": [{**c.to_dict(), "winner": c is self.winner} for c in self.candidates],
            "torch": self.torch,
            "per_op": self.per_op,
            "bound": self.bound,
            "machine": self.machine,
            "versions": self.versions,
            "notes": self.notes,
            "skipped_stages": self.skipped_stages,
            "held_up": self.held_up,
        }
