"""tune's precision stage: a lower precision is tried only under the user's explicit accuracy
budget, proven within it on inputs no calibration saw, and may win only then. Timings are never
asserted: the choice is tested with timings made up, the rest on real runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from onnxconv import precisions, validate
from onnxconv.cli import main
from onnxconv.errors import CheckFailed, UserInputError
from onnxconv.quant_metrics import TOLERANCES, Bound, parse_budget
from onnxconv.tune import search
from onnxconv.tune.proof import Prover, budget_proof
from onnxconv.tune.settings import DEFAULT
from onnxconv.tune.timing import Timing

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"
QUICK = ["--rounds", "2", "--blocks", "1", "--calls", "5", "--retries", "0"]
QUICK += ["--no-profile", "--quiet", "--rewrites", "none"]


def _folder(tmp_path: Path, graph: str = "grouped") -> Path:
    """A copy of a committed graph folder with its manifest (so PyTorch decides)."""
    shutil.copytree(GRAPHS / graph, tmp_path / graph)
    shutil.copy(GRAPHS / "manifest.json", tmp_path / "manifest.json")
    return tmp_path / graph


def test_a_budget_names_bounds_in_their_direction_and_keeps_the_rest():
    assert parse_budget("default") == TOLERANCES
    budget = parse_budget("sqnr_db=30, max_abs_over_range=0.1")
    assert budget["sqnr_db"] == Bound(30.0, at_least=True)
    assert budget["max_abs_over_range"] == Bound(0.1, at_least=False)
    assert budget["cosine"] == TOLERANCES["cosine"]  # unnamed: kept, never dropped
    for bad in ("sqnr=30", "sqnr_db", "sqnr_db=lots", "top1=nan"):
        with pytest.raises(UserInputError, match="accuracy budget"):
            parse_budget(bad)


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--precision", "int8"], "only under an explicit accuracy budget"),
        (["--precision", "fp16-io", "--accuracy-budget", "default"], "keeps the interface"),
        (["--precision", "int4", "--accuracy-budget", "default"], "unknown precision"),
        (["--accuracy-budget", "snr=30"], "expected metric=value"),
    ],
)
def test_cli_refuses_a_precision_without_a_budget_in_one_line(extra, says, tmp_path, capsys):
    folder = _folder(tmp_path)
    assert main(["tune", str(folder), *QUICK, *extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0]
    assert not (folder / "tuned.json").exists()


def test_int8_is_proven_within_a_budget_and_disqualified_outside_it():
    subject = validate.load_subject(str(GRAPHS / "grouped"))
    prover = Prover(subject, "cpu", threads=1)
    calibration = validate.calibration_feeds(subject, 1 << 24)
    deployed = precisions.deploy(subject.model, "int8", calibration)

    def prove(budget: str):
        cell = prover.precision_cell(
            "original/int8", subject.model, deployed, "int8", DEFAULT, parse_budget(budget)
        )
        return budget_proof(cell, len(prover.evaluation().feeds))

    within = prove("default")
    assert within.disqualified is None and within.deciders == ["torch"]
    worst = within.quant["metrics"]["output"]
    assert 30 < float(worst["sqnr_db"]) < 45  # one int8 grouped conv: ~36 dB measured
    assert within.quant["samples"] >= 48 and within.quant["layers"]  # per-pair evidence kept
    outside = prove("sqnr_db=60")
    assert outside.status == "fail" and outside.kind == "budget"
    assert "sqnr_db" in outside.reason and outside.disqualified


def _tune(monkeypatch, folder: Path, fast, *extra: str, settings: bool = False) -> dict:
    """``onnxconv tune folder --precision int8`` with made-up timings: the candidates whose name
    ``fast`` accepts take 1 ms, the others 5 ms; settings searched only if ``settings``.
    Returns the report."""

    def time_rounds(jobs, ep, inputs, method, torch_job, say, until=None):
        return {j.key: Timing([1.0 if fast(j.key) else 5.0] * method.rounds) for j in jobs}, None

    monkeypatch.setattr(search, "time_rounds", time_rounds)
    report = folder.parent / "report.json"
    args = ["tune", str(folder), *QUICK, "--precision", "int8", "--json", str(report), *extra]
    args += [] if settings else ["--no-settings"]
    assert main(args) == 0
    return json.loads(report.read_text())


@pytest.mark.parametrize("budget, wins", [("default", "int8"), ("sqnr_db=60", "fp32")])
def test_a_faster_precision_wins_only_within_the_budget(budget, wins, tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    report = _tune(monkeypatch, folder, lambda name: "/int8" in name, "--accuracy-budget", budget)
    assert report["options"]["precisions"] == ["int8"]
    assert parse_budget(report["options"]["accuracy_budget"]) == parse_budget(budget)
    (int8,) = [c for c in report["candidates"] if c["precision"] == "int8"]
    assert int8["name"] == "original/int8 @ level=all" and int8["precision"] == "int8"
    assert int8["proof"]["quant"]["metrics"]["output"]["sqnr_db"]
    assert int8["winner"] == (wins == "int8")
    tuned = json.loads((folder / "tuned.json").read_text())
    assert tuned["precision"] == wins and tuned["target"] == f"cpu/all/{wins}"
    model = onnx.load(folder / "model.tuned.onnx")
    assert precisions.stamp(model) == wins
    if wins == "fp32":
        assert int8["proof"]["disqualified"] and int8["timing"] is None  # never timed
        assert tuned["default_kept"]
    else:
        assert "within the user's accuracy budget" in report["decision"]
        assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)


def test_a_graph_with_nothing_to_quantize_has_no_int8_candidate(tmp_path, monkeypatch):
    folder = _folder(tmp_path, "channel_shuffle")  # Reshape/Transpose only
    report = _tune(monkeypatch, folder, lambda n: "/int8" in n, "--accuracy-budget", "default")
    (int8,) = [c for c in report["candidates"] if c["precision"] == "int8"]
    assert int8["proof"]["status"] == "unavailable" and int8["proof"]["kind"] == "conversion"
    assert not int8["winner"]


def test_a_deployment_is_never_deployed_again():
    subject = validate.load_subject(str(GRAPHS / "grouped"))
    int8 = precisions.deploy(subject.model, "int8", validate.calibration_feeds(subject, 1 << 24))
    assert precisions.deploy(int8, "int8") is int8  # already that deployment: as it is
    with pytest.raises(CheckFailed, match="already deployed at int8 .*; fp16 is made from"):
        precisions.deploy(int8, "fp16")


def test_each_proven_precision_gets_its_own_settings_search(tmp_path, monkeypatch):
    # int8 is fast only with spinning off (as measured on a 2-core EPYC): the settings stage
    # must try settings on the int8 deployment, not only on the fp32 winner
    folder = _folder(tmp_path)
    fast = lambda name: "/int8" in name and "spinning=0" in name  # noqa: E731
    report = _tune(monkeypatch, folder, fast, "--accuracy-budget", "default", settings=True)
    settings_stage = [c for c in report["candidates"] if c["stage"] == "settings-1"]
    int8 = [c for c in settings_stage if c["precision"] == "int8"]
    assert len(int8) == 7 and all(c["proof"]["quant"]["metrics"] for c in int8)
    assert report["winner"] == "original/int8 @ level=all,spinning=0"
    tuned = json.loads((folder / "tuned.json").read_text())
    assert tuned["precision"] == "int8" and tuned["session"]["session_config"] == {
        "session.intra_op.allow_spinning": "0"
    }


def test_a_precision_that_won_stays_the_incumbent_of_the_settings_stage(tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    fast = lambda name: name == "original/int8 @ level=all"  # noqa: E731
    report = _tune(monkeypatch, folder, fast, "--accuracy-budget", "default", settings=True)
    retimed = [c["name"] for c in report["candidates"] if c["stage"] == "settings-1"]
    assert "original/int8 @ level=all" in retimed  # re-timed there as the incumbent
    assert report["winner"] == "original/int8 @ level=all"
