"""The time budget (``tune --time-budget``) as a deadline the search plans against.

A run that must end by a deadline (a CI job, a lent GPU killed at its limit) gains nothing from
a search that merely stops *starting* work once the budget is spent: a timing stage started a
second before the budget ends rounds × (candidates + the default + PyTorch) worker runs later,
and on a GPU that is minutes. So every piece of work is projected before it starts, from what
this run has measured so far:

- a proof costs the mean of the proofs done (the original's proof always runs first);
- a timed ORT run costs the mean of the ORT runs done, a PyTorch run the mean of PyTorch's
  (one run of each is timed before any formulation is proven, to measure them);
- a stage costs ``rounds`` × (its timed ORT candidates' runs + PyTorch's run).

A candidate joins its stage only while its proof *and the stage's timing with it* end within
the stage's share of the budget: what is left, less the projected cost of the per-op profile
and bound analysis that follow the stages, split equally among this stage and those still to
come (so the formulations cannot starve the session settings, where the largest CUDA wins
are). A stage that cannot take even one candidate is skipped, and its share passes on. The
estimates are means, so a run may still end a little past the budget, by the estimates' error
rather than by a stage; and past the deadline a run that other processes contended is kept
(and counted as contended) rather than waited on and retried. Whatever is refused is named
(:attr:`Deadline.skipped`) for the report's notes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from statistics import fmean


class Deadline:
    """A budget of ``budget_s`` seconds from ``started`` (default: now; None: no limit), and
    the measured costs of the work done so far."""

    def __init__(
        self,
        budget_s: float | None,
        started: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget_s = budget_s
        self.clock = clock
        self.started = clock() if started is None else started
        """When the budget began (``clock``'s time): the command's start, so loading or
        exporting the graph counts too."""
        self.proofs_s: list[float] = []
        self.runs_s: list[float] = []
        """Seconds of each timed ORT worker run."""
        self.torch_runs_s: list[float] = []
        """Seconds of each timed PyTorch worker run."""
        self.skipped: list[str] = []
        """What the budget refused, in the report's words (the search names it)."""

    def end(self) -> float | None:
        """When the budget runs out (``clock``'s time); None without a budget."""
        return None if self.budget_s is None else self.started + self.budget_s

    def left_s(self) -> float:
        if self.budget_s is None:
            return math.inf
        return self.budget_s - (self.clock() - self.started)

    def proof_s(self) -> float:
        """The projected cost of one proof: the mean of those done (0 before any)."""
        return fmean(self.proofs_s) if self.proofs_s else 0.0

    def run_s(self) -> float:
        """The projected cost of one timed ORT run: the mean of those done; before any, a
        proof's (a proof builds a session and runs the graph, as a timed run does)."""
        return fmean(self.runs_s) if self.runs_s else self.proof_s()

    def torch_run_s(self) -> float:
        """The projected cost of one timed PyTorch run: the mean of those done; before any,
        an ORT run's."""
        return fmean(self.torch_runs_s) if self.torch_runs_s else self.run_s()

    def stage_s(self, timed: int, rounds: int, torch: bool) -> float:
        """The projected cost of a timing stage of ``timed`` ORT candidates (and PyTorch)."""
        return rounds * (timed * self.run_s() + (self.torch_run_s() if torch else 0.0))

    def record_proof(self, seconds: float) -> None:
        self.proofs_s.append(seconds)

    def record_runs(self, ort: list[float], torch: list[float]) -> None:
        """The wall seconds of timed runs (:attr:`.timing.Timing.rounds_s`)."""
        self.runs_s += ort
        self.torch_runs_s += torch

    def share_end(self, stages: int, reserve_s: float) -> float:
        """When a stage starting now should end (``clock``'s time): an equal share, among
        ``stages`` (this one and those after it), of what is left once ``reserve_s`` is kept for
        the work after the stages."""
        return self.clock() + max(self.left_s() - reserve_s, 0.0) / stages

    def allows(self, cost_s: float, end: float | None = None) -> bool:
        """Whether work projected to take ``cost_s`` seconds ends within the budget (and by
        ``end``, a stage's share, when given)."""
        if end is not None and self.clock() + cost_s > end:
            return False
        return cost_s <= self.left_s()
