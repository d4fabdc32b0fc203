"""The CUDA search's flow, with made-up proofs and timings (no GPU is needed): the formulations,
both CUDA settings passes in their order, the CUDA-graph candidate, and the time budget's shares
over three stages. The GPU's own numbers come from tests/test_tune.py's CUDA test and
scripts/gpu_check; this is the logic that last cost a lease (a settings pass that repeated)."""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxconv import validate
from onnxconv.tune import search
from onnxconv.tune.deadline import Deadline
from onnxconv.tune.options import TuneOptions
from onnxconv.tune.proof import Proof
from onnxconv.tune.timing import Method, Timing

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"
FAST = {"cuda_graph=1": 1.0, "algo=HEURISTIC,nhwc=1": 2.0}
"""Made-up p50s (ms) by a part of the candidate's name; the rest take 5 ms, PyTorch 3 ms."""


def _p50(name: str) -> float:
    return next((ms for part, ms in FAST.items() if part in name), 5.0)


@pytest.fixture
def fake_gpu(monkeypatch):
    """Every candidate proven with every node on CUDA; timings from :data:`FAST`."""
    proven = []

    def prove(self, label, model, exact, settings):
        proven.append(f"{label} @ {settings.name}")
        return Proof("pass", placement={"cuda": 3}, bit_identical=True)

    def time_rounds(jobs, ep, inputs, method, torch_job=None, say=None, until=None):
        assert ep == "cuda"
        timings = {j.key: Timing([_p50(j.key)] * method.rounds) for j in jobs}
        return timings, Timing([3.0] * method.rounds)

    monkeypatch.setattr(search.Prover, "prove", prove)
    monkeypatch.setattr(search, "time_rounds", time_rounds)
    return proven


def _tune(
    tmp_path: Path, budget: float | None = None, progress: list[str] | None = None
) -> search.TuneReport:
    subject = validate.load_subject(str(GRAPHS / "channel_shuffle"))
    options = TuneOptions(
        ep="cuda",
        rewrites=("shuffle_gather",),
        profile=False,
        method=Method(rounds=2),
        time_budget_s=budget,
    )
    return search.tune(subject, options, tmp_path, None if progress is None else progress.append)


def test_both_cuda_passes_run_in_order_and_the_cuda_graph_wins(tmp_path, fake_gpu):
    report = _tune(tmp_path)
    stages = {}
    for c in report.candidates:
        stages.setdefault(c.stage, []).append(c.name)
    assert list(stages) == ["formulations", "settings-1", "settings-2"]
    assert stages["settings-1"][1:] == [  # after the default (the incumbent), re-timed
        "original @ level=all,algo=HEURISTIC,nhwc=1",
        "original @ level=all,algo=HEURISTIC",
        "original @ level=all,nhwc=1",
        "original @ level=all,algo=DEFAULT,nhwc=1",
        "original @ level=all,algo=DEFAULT",
    ]
    assert stages["settings-2"][2:] == [  # after the default and the incumbent
        "original @ level=all,algo=HEURISTIC,nhwc=1,cuda_graph=1",
        "original @ level=all,algo=HEURISTIC,nhwc=1,max_workspace=0",
    ]
    assert report.winner.name == "original @ level=all,algo=HEURISTIC,nhwc=1,cuda_graph=1"
    assert report.winner.proof.disqualified is None  # fixed shapes, every node on CUDA
    assert report.ep == "cuda" and report.winner.speedup == pytest.approx(5.0)


def test_a_budget_shares_itself_over_the_formulations_and_both_settings_passes(
    tmp_path, fake_gpu, monkeypatch
):
    # Every proof and run projected at 10 s; 2 rounds; PyTorch timed in each.
    for estimate in ("proof_s", "run_s", "torch_run_s"):
        monkeypatch.setattr(Deadline, estimate, lambda self: 10.0)
    said = []
    report = _tune(tmp_path, budget=290, progress=said)
    names = [c.name for c in report.candidates]
    # formulations: a third of 290 s; the Gather costs 10 + 2 x (2 x 10 + 10) = 70 s
    assert "shuffle_gather @ level=all" in names
    # settings-1: half of what is left; its k-th candidate costs 10 + 2 x ((1 + k) x 10 + 10),
    # so 4 of the 5 fit in 145 s and DEFAULT (the least likely, last) is skipped
    assert "original @ level=all,algo=DEFAULT,nhwc=1" in names
    assert "original @ level=all,algo=DEFAULT" not in names
    # settings-2: all that is left; both refinements fit
    assert report.winner.name == "original @ level=all,algo=HEURISTIC,nhwc=1,cuda_graph=1"
    (note,) = [n for n in report.notes if "time budget" in n]
    assert (
        "skipping to keep it: 1 of 5 settings-1 candidates (original @ level=all,algo=DEFAULT)"
        in note
    )
    assert "original @ level=all,algo=DEFAULT @" not in " ".join(fake_gpu)  # never proven
    # within what is left of the budget, beyond the stage's share: the console says which
    (skipped,) = [line for line in said if line.startswith("time budget: skipping")]
    assert "algo=DEFAULT) (projected 150 s, more than this stage's share (" in skipped
    assert "the stages after it keep theirs" in skipped
