"""python -m onnxconv.tune.summary: one table over several committed tune reports."""

from __future__ import annotations

import json
from pathlib import Path

from onnxconv.tune.summary import main

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def test_the_table_has_a_row_per_report_from_its_last_stage(tmp_path, capsys):
    grouped = REPORTS / "tune-cpu-zoo" / "grouped.json"
    depthwise = REPORTS / "tune-cpu-zoo" / "depthwise.json"
    out = tmp_path / "README.md"
    assert main([str(grouped), str(depthwise), "--title", "zoo", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "# zoo" and lines[2].startswith("- AMD EPYC (2 CPU cores), 2 threads")
    rows = [line for line in lines if line.startswith("| `")]
    data = json.loads(grouped.read_text())
    last = [c for c in data["candidates"] if c["stage"] == data["candidates"][-1]["stage"]]
    winner = next(c for c in last if c["winner"])
    p50 = winner["timing"]["stats"]["p50_ms"]
    assert rows[0].startswith("| `grouped` | cpu | 1 |")
    assert f"| `{winner['name']}` | {p50:.4g} | {winner['speedup_vs_default']:.2f} |" in rows[0]
    assert rows[1].startswith("| `depthwise` |") and "| default kept |" in rows[1]


def test_the_bound_and_the_time_budget_are_carried(tmp_path, capsys):
    data = json.loads((REPORTS / "tune-cpu-zoo" / "grouped.json").read_text())
    data["bound"] = {"sentence": "Bound by its convolutions."}
    data["notes"] = ["the search took 41 s of its 40 s time budget"]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "| Bound by its convolutions. |" in out
    assert "- `grouped` b1: the search took 41 s of its 40 s time budget" in out


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "onnxconv.bench"}))
    broken = tmp_path / "broken.json"
    data = json.loads((REPORTS / "tune-cpu-zoo" / "grouped.json").read_text())
    del data["candidates"]
    broken.write_text(json.dumps(data))
    for path, says in ((other, "not a tune report"), (broken, "not a complete tune report")):
        assert main([str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and says in err[0]
    nowhere = tmp_path / "no" / "such" / "README.md"
    assert main([str(REPORTS / "tune-cpu-zoo" / "grouped.json"), "--out", str(nowhere)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{nowhere}: cannot write" in err[0]
    assert not nowhere.parent.exists()
