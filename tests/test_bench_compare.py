"""Two bench reports side by side: planted slowdowns are caught, noise and renamed graphs are not
mistaken for them, and what differs between the runs is said."""

from __future__ import annotations

import copy
import json

import pytest

from onnxconv.bench import compare as bench_compare
from onnxconv.bench.report import BenchReport
from onnxconv.cli import main


def _cell(cell_id, p50, p90, config=None):
    return {
        "id": cell_id,
        "source": cell_id.split("/")[0],
        "config": config or {"height": 8},
        "macs": 1000,
        "status": "ok",
        "stats": {"p50_ms": p50, "p90_ms": p90},
    }


def _report(cells, **machine):
    return BenchReport(
        machine={"cpu_model": "EPYC", "logical_cores": 2, "os": "Linux", "gpus": [], **machine},
        versions={"onnxruntime": "1.32.0", "torch": "2.13.0"},
        settings={"threads": 1, "precision": "fp32", "blocks": 5, "calls": 100},
        roofs=None,
        cells=cells,
        created="2026-11-26T10:00:00+00:00",
    )


BASE = [
    _cell("grouped/b1/ort/cpu/all/fp32", 1.0, 1.1),
    _cell("grouped/b1/torch/cpu", 2.0, 2.2),
    _cell("standard/b1/ort/cpu/all/fp32", 3.0, 3.3),
]


def test_a_report_against_itself_is_the_same_everywhere():
    c = bench_compare.compare_reports(_report(BASE), _report(copy.deepcopy(BASE)))
    assert c["differences"] == [] and c["slower"] == [] and c["faster"] == []
    assert [r["verdict"] for r in c["cells"]] == ["same"] * 3
    assert all(r["ratio"] == 1.0 for r in c["cells"])


def test_planted_slowdown_and_speedup_are_caught_noise_is_not():
    new = copy.deepcopy(BASE)
    new[0]["stats"] = {"p50_ms": 1.5, "p90_ms": 1.6}  # 1.5x slower, beyond the old p90
    new[1]["stats"] = {"p50_ms": 1.0, "p90_ms": 1.1}  # 2x faster
    new[2]["stats"] = {"p50_ms": 3.25, "p90_ms": 4.0}  # within the old p90: noise
    c = bench_compare.compare_reports(_report(BASE), _report(new))
    assert c["slower"] == ["grouped/b1/ort/cpu/all/fp32"]
    assert c["faster"] == ["grouped/b1/torch/cpu"]
    assert c["cells"][0]["ratio"] == pytest.approx(1.5) and c["cells"][2]["verdict"] == "same"
    wide = bench_compare.compare_reports(_report(BASE), _report(new), max_slowdown=2.5)
    assert wide["slower"] == [] and wide["faster"] == []
    text = bench_compare.to_markdown(c)
    assert "| grouped/b1/ort/cpu/all/fp32 | 1 | 1.5 | 1.50 | **slower** |" in text


def test_another_graph_under_the_same_name_is_not_compared():
    new = copy.deepcopy(BASE)
    new[2]["config"] = {"height": 56}
    new[2]["stats"] = {"p50_ms": 30.0, "p90_ms": 31.0}
    new.append(_cell("depthwise/b1/ort/cpu/all/fp32", 1.0, 1.1))
    c = bench_compare.compare_reports(_report(BASE), _report(new))
    assert c["cells"][2]["verdict"] == "not comparable (config differs)" and c["slower"] == []
    assert c["only_in_current"] == ["depthwise/b1/ort/cpu/all/fp32"]
    assert c["only_in_baseline"] == []


def test_differences_between_the_runs_are_listed():
    new = _report(copy.deepcopy(BASE), cpu_model="Xeon", gpus=[{"name": "NVIDIA H100"}])
    new.versions["onnxruntime"] = "1.31.1"
    new.settings["threads"] = 2
    c = bench_compare.compare_reports(_report(BASE), new)
    assert c["differences"] == [
        "machine cpu_model: EPYC -> Xeon",
        "GPU: none -> NVIDIA H100",
        "onnxruntime: 1.32.0 -> 1.31.1",
        "setting threads: 1 -> 2",
    ]


def test_cli_exit_codes_and_files(tmp_path, capsys):
    base, slow = tmp_path / "base.json", tmp_path / "slow.json"
    base.write_text(json.dumps(_report(BASE).to_dict()))
    new = copy.deepcopy(BASE)
    new[0]["stats"] = {"p50_ms": 1.5, "p90_ms": 1.6}
    slow.write_text(json.dumps(_report(new).to_dict()))
    assert main(["bench-compare", str(base), str(base)]) == 0
    out_md, out_json = tmp_path / "c.md", tmp_path / "c.json"
    assert (
        main(
            [
                "bench-compare",
                str(base),
                str(slow),
                "--markdown",
                str(out_md),
                "--json",
                str(out_json),
            ]
        )
        == 1
    )
    assert "SLOWER" in capsys.readouterr().out
    assert json.loads(out_json.read_text())["slower"] == ["grouped/b1/ort/cpu/all/fp32"]
    assert "**slower**" in out_md.read_text()
    assert main(["bench-compare", str(base), str(slow), "--max-slowdown", "1.6"]) == 0


@pytest.mark.parametrize(
    "argv, word", [(["missing.json"], "missing.json"), (["--max-slowdown", "0.9"], "max slowdown")]
)
def test_cli_bad_input_is_one_line_exit_2(argv, word, tmp_path, capsys):
    base = tmp_path / "base.json"
    base.write_text(json.dumps(_report(BASE).to_dict()))
    args = (
        ["bench-compare", str(base), *argv]
        if argv[0].endswith(".json")
        else ["bench-compare", str(base), str(base), *argv]
    )
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and word in err


def test_bench_with_a_baseline_compares_after_the_run(tmp_path, capsys):
    fast = [
        "pointwise",
        "--config",
        "height=8,width=8",
        "--rounds",
        "1",
        "--blocks",
        "2",
        "--calls",
        "3",
        "--opt-level",
        "all",
        "--no-roofs",
        "--no-plots",
        "--no-profile",
        "--quiet",
    ]
    assert main(["bench", *fast, "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    baseline = tmp_path / "a" / "bench.json"
    code = main(
        [
            "bench",
            *fast,
            "--out",
            str(tmp_path / "b"),
            "--baseline",
            str(baseline),
            "--max-slowdown",
            "100",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "pointwise/b1/ort/cpu/all/fp32" in out and "0 slower" in out
    # a baseline that cannot be read stops the run before anything is timed
    assert (
        main(
            [
                "bench",
                *fast,
                "--out",
                str(tmp_path / "c"),
                "--baseline",
                str(tmp_path / "nope.json"),
            ]
        )
        == 2
    )
    assert "nope.json" in capsys.readouterr().err and not (tmp_path / "c").exists()
