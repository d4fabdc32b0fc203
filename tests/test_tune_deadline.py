"""tune's time budget as a deadline (onnxconv.tune.deadline): the projection's arithmetic on a
fake clock, and a real search that takes only the candidates whose proofs and timing fit."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from onnxconv.cli import main
from onnxconv.tune.deadline import Deadline

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_without_a_budget_everything_fits():
    deadline = Deadline(None)
    assert deadline.left_s() == math.inf and deadline.allows(1e12) and deadline.end() is None


def test_costs_are_projected_from_what_was_measured():
    clock = FakeClock()
    deadline = Deadline(100.0, clock=clock)
    assert deadline.proof_s() == 0.0 and deadline.run_s() == 0.0
    deadline.record_proof(4.0)
    assert deadline.run_s() == 4.0  # before any timed run, a run costs a proof
    assert deadline.torch_run_s() == 4.0  # and a PyTorch run an ORT run
    deadline.record_proof(8.0)
    deadline.record_runs([2.0, 4.0], [])
    assert deadline.proof_s() == 6.0 and deadline.run_s() == 3.0
    assert deadline.torch_run_s() == 3.0
    deadline.record_runs([3.0], [5.0, 7.0])
    assert deadline.run_s() == 3.0 and deadline.torch_run_s() == 6.0
    # 2 rounds of (4 candidates at 3 s + PyTorch at 6 s)
    assert deadline.stage_s(4, rounds=2, torch=True) == 36.0
    assert deadline.stage_s(4, rounds=2, torch=False) == 24.0


def test_a_budget_counts_from_the_commands_start():
    clock = FakeClock()
    deadline = Deadline(100.0, started=clock.now - 30.0, clock=clock)
    assert deadline.left_s() == 70.0 and deadline.end() == clock.now + 70.0


def test_work_fits_only_when_it_ends_within_the_budget():
    clock = FakeClock()
    deadline = Deadline(100.0, clock=clock)
    clock.now += 30.0
    assert deadline.left_s() == 70.0
    assert deadline.allows(70.0) and not deadline.allows(70.5)
    # a stage's share: (70 left - 10 kept for the profile) / 3 stages = 20 s from now
    end = deadline.share_end(3, reserve_s=10.0)
    assert end == clock.now + 20.0
    assert deadline.allows(20.0, end) and not deadline.allows(20.5, end)
    clock.now += 80.0
    assert deadline.left_s() == -10.0 and not deadline.allows(0.0)
    assert deadline.share_end(2, reserve_s=0.0) == clock.now  # nothing left to share


def _tune(tmp_path: Path, monkeypatch, rewrites: str, *extra: str, budget: int = 450) -> dict:
    """Tune the committed channel shuffle with a ``budget`` of seconds, every proof and every
    timed run projected at 100 s (the real ones take a second or so, far inside the 50 s
    margins below)."""
    monkeypatch.setattr(Deadline, "proof_s", lambda self: 100.0)
    monkeypatch.setattr(Deadline, "run_s", lambda self: 100.0)
    monkeypatch.setattr(Deadline, "torch_run_s", lambda self: 100.0)
    shutil.copytree(GRAPHS / "channel_shuffle", tmp_path / "channel_shuffle")
    shutil.copy(GRAPHS / "manifest.json", tmp_path / "manifest.json")
    args = ["tune", str(tmp_path / "channel_shuffle"), "--rewrites", rewrites, "--rounds", "1"]
    args += ["--blocks", "1", "--calls", "3", "--retries", "0", "--no-profile", "--quiet"]
    args += ["--time-budget", str(budget), "--json", str(tmp_path / "r.json"), *extra]
    assert main(args) == 0
    return json.loads((tmp_path / "r.json").read_text())


def _budget_note(report: dict) -> str:
    (note,) = [n for n in report["notes"] if "time budget" in n]
    return note


def test_a_formulation_joins_its_stage_only_while_its_proof_and_the_timing_fit(
    tmp_path, monkeypatch
):
    # One formulation: its proof (100) + 1 round of (default, it, PyTorch) (300) = 400 <= 450.
    # A second: 100 + 400 = 500 > 450, so it is not even proven.
    report = _tune(tmp_path, monkeypatch, "shuffle_rank4,shuffle_gather", "--no-settings")
    names = [c["name"] for c in report["candidates"]]
    assert names == ["original @ level=all", "shuffle_rank4 @ level=all"]
    assert all(c["timing"]["stats"] for c in report["candidates"])
    note = _budget_note(report)
    assert note.startswith("the search took ") and " s of its 450 s time budget, skipping" in note
    assert "1 of 2 formulations candidates (shuffle_gather)" in note


def test_a_settings_stage_takes_the_candidates_that_fit_and_names_the_rest(tmp_path, monkeypatch):
    # No rewrite applies to a bare shuffle, so the default stays and settings-1 times the
    # default, PyTorch and as many of the 7 CPU candidates as fit: one (400 s), not two (500).
    report = _tune(tmp_path, monkeypatch, "grouped_split")
    settings = [c for c in report["candidates"] if c["stage"] == "settings-1"]
    assert [c["name"] for c in settings][1:] == ["original @ level=all,arena=0"]
    note = _budget_note(report)
    assert "6 of 7 settings-1 candidates (original @ level=all,spinning=0," in note
    assert "level=extended,spinning=0,arena=0)" in note


def test_the_formulations_leave_the_settings_stage_its_share(tmp_path, monkeypatch):
    # 900 s for two stages: the formulations may use 450 of them, so one formulation (400 s),
    # not the two that would fit the whole budget (500 s); settings-1 gets the rest.
    report = _tune(tmp_path, monkeypatch, "shuffle_rank4,shuffle_gather", budget=900)
    stages = [c["stage"] for c in report["candidates"]]
    assert stages[:2] == ["formulations", "formulations"] and "settings-1" in stages[2:]
    assert stages.count("formulations") == 2
    assert "1 of 2 formulations candidates (shuffle_gather)" in _budget_note(report)


def test_contended_runs_are_retried_only_within_their_stages_share(tmp_path, monkeypatch):
    """On a contended machine the planning run waited up to 60 s for quiet per retry, and the
    stages retried until the whole budget's end: a 60 s budget took 71 s and tried nothing. Now
    the planning run keeps its run as it comes (no retry), and each stage retries only until
    its own share of the budget ends."""
    from onnxconv.tune import search
    from onnxconv.tune.timing import Timing

    calls = []

    def time_rounds(jobs, ep, inputs, method, torch_job, say, until=None):
        calls.append((method.rounds, method.retries, until))
        timing = lambda: Timing([1.0] * method.rounds, rounds_s=[0.5] * method.rounds)  # noqa: E731
        return {j.key: timing() for j in jobs}, timing() if torch_job else None

    monkeypatch.setattr(search, "time_rounds", time_rounds)
    shutil.copytree(GRAPHS / "channel_shuffle", tmp_path / "channel_shuffle")
    args = ["tune", str(tmp_path / "channel_shuffle"), "--rewrites", "shuffle_gather", "--quiet"]
    started = __import__("time").monotonic()
    assert main([*args, "--rounds", "2", "--no-profile", "--time-budget", "300"]) == 0
    planning, *stages = calls
    assert planning[:2] == (1, 0)  # one round, no retry
    assert len(stages) >= 2 and all(retries == 2 for _, retries, _ in stages)
    ends = [until for _, _, until in stages]
    assert all(until <= started + 301 for until in ends)  # never past the budget's end
    # the formulations stage ends at its share (of two stages), well before the budget's end
    assert ends[0] < started + 300 / 2 + 5


def test_a_named_rewrite_that_applies_nowhere_is_noted(tmp_path, monkeypatch):
    """A bare channel shuffle has no grouped Conv: --rewrites grouped_split was silently
    dropped; the report now says it found nothing to rewrite."""
    report = _tune(tmp_path, monkeypatch, "shuffle_gather,grouped_split", "--no-settings")
    assert "--rewrites grouped_split: nothing in this graph for it to rewrite" in report["notes"]
    assert [c["name"] for c in report["candidates"]][1:] == ["shuffle_gather @ level=all"]
