"""Two bench reports side by side: a real slowdown is caught with the interval that decided,
noise and renamed graphs are not mistaken for one, and what differs between the runs is said.

The reports are synthetic (block medians drawn with seeded noise): timings are never test
assertions."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from onnxconv.bench import compare as bench_compare
from onnxconv.bench.report import BenchReport
from onnxconv.cli import main

ROUNDS, BLOCKS = 3, 5


def _blocks(ms: float, rng: np.random.Generator, *, rounds=ROUNDS, round_noise, block_noise):
    """Block medians per round: a per-process factor (a round's luck) times per-block noise,
    both log-normal, as on a shared machine."""
    return [
        list(ms * np.exp(rng.normal(0, round_noise)) * np.exp(rng.normal(0, block_noise, BLOCKS)))
        for _ in range(rounds)
    ]


def _cell(cell_id, rounds, config=None):
    pooled = sorted(x for r in rounds for x in r)
    return {
        "id": cell_id,
        "source": cell_id.split("/")[0],
        "config": config or {"height": 8},
        "macs": 1000,
        "status": "ok",
        "stats": {
            "p50_ms": float(np.median(pooled)),
            "p90_ms": float(np.percentile(pooled, 90)),
            "block_medians_ms": pooled,
        },
        "rounds": [
            {"round": i, "p50_ms": float(np.median(r)), "block_medians_ms": list(r)}
            for i, r in enumerate(rounds)
        ],
    }


def _report(cells, rounds=ROUNDS, **machine):
    return BenchReport(
        machine={"cpu_model": "EPYC", "logical_cores": 2, "os": "Linux", "gpus": [], **machine},
        versions={"onnxruntime": "1.32.0", "torch": "2.13.0"},
        settings={"threads": 1, "precision": "fp32", "rounds": rounds, "blocks": 5, "calls": 100},
        roofs=None,
        cells=cells,
        created="2026-11-26T10:00:00+00:00",
    )


def _steady(ms):
    return [[ms] * BLOCKS for _ in range(ROUNDS)]


BASE = [
    _cell("grouped/b1/ort/cpu/all/fp32", _steady(1.0)),
    _cell("grouped/b1/torch/cpu", _steady(2.0)),
    _cell("standard/b1/ort/cpu/all/fp32", _steady(3.0)),
]


def _pair_of_runs(seed, factor, round_noise=0.08, block_noise=0.03, rounds=ROUNDS):
    """A baseline and a current report of two cells drawn with noise: ``slow`` is ``factor`` ×
    slower in the current run, ``same`` is unchanged."""
    rng = np.random.default_rng(seed)
    noise = {"round_noise": round_noise, "block_noise": block_noise, "rounds": rounds}
    ids = ("slow/b1/ort/cpu/all/fp32", "same/b1/ort/cpu/all/fp32")
    base = [_cell(i, _blocks(ms, rng, **noise)) for i, ms in zip(ids, (1.0, 0.4))]
    cur = [_cell(i, _blocks(ms, rng, **noise)) for i, ms in zip(ids, (1.0 * factor, 0.4))]
    return _report(base, rounds), _report(cur, rounds)


def test_a_real_1_5x_slowdown_is_caught_and_an_unchanged_cell_is_the_same():
    c = bench_compare.compare_reports(*_pair_of_runs(seed=0, factor=1.5, round_noise=0.04))
    slow, same = c["cells"]
    assert slow["verdict"] == "slower" and c["slower"] == [slow["id"]]
    assert 1.2 < slow["interval"][0] <= slow["ratio"] <= slow["interval"][1]
    assert slow["interval"][0] < 1.5 < slow["interval"][1]
    assert same["verdict"] == "same"
    assert 1 / 1.2 <= same["interval"][0] < 1.0 < same["interval"][1] <= 1.2
    assert slow["ratio"] == pytest.approx(slow["current_ms"] / slow["baseline_ms"])
    assert (slow["baseline_rounds"], slow["baseline_blocks"]) == (ROUNDS, ROUNDS * BLOCKS)


def test_the_gate_flags_every_1_5x_slowdown_and_never_noise_over_many_draws():
    # a process-to-process noise of 8% (log sd) and 3% within a process: a noisy shared machine
    verdicts = {"slow": [], "same": []}
    for seed in range(40):
        c = bench_compare.compare_reports(*_pair_of_runs(seed, factor=1.5))
        verdicts["slow"].append(c["cells"][0]["verdict"])
        verdicts["same"].append(c["cells"][1]["verdict"])
    # the power of 3 rounds × 5 blocks at this noise is about 0.9 (185 of 200 seeds)
    assert verdicts["slow"].count("slower") >= 34
    assert "slower" not in verdicts["same"] and "faster" not in verdicts["same"]


def test_the_interval_is_seeded_and_its_width_follows_the_noise():
    runs = _pair_of_runs(seed=3, factor=1.0)
    first = bench_compare.compare_reports(*runs)
    assert bench_compare.compare_reports(*runs)["cells"] == first["cells"]  # same files, same CI
    noisy = bench_compare.compare_reports(*_pair_of_runs(seed=3, factor=1.0, round_noise=0.3))

    def width(c):
        low, high = c["cells"][1]["interval"]
        return high / low

    assert width(noisy) > 2 * width(first)


def test_a_report_against_itself_is_the_same_everywhere():
    c = bench_compare.compare_reports(_report(BASE), _report(copy.deepcopy(BASE)))
    assert c["differences"] == [] and c["slower"] == [] and c["faster"] == []
    assert [r["verdict"] for r in c["cells"]] == ["same"] * 3
    assert all(r["ratio"] == 1.0 and r["interval"] == [1.0, 1.0] for r in c["cells"])


def test_steady_slowdown_and_speedup_are_caught_an_outlier_round_is_not():
    new = copy.deepcopy(BASE)
    new[0] = _cell(new[0]["id"], _steady(1.5))  # 1.5x slower in every block
    new[1] = _cell(new[1]["id"], _steady(1.0))  # 2x faster
    new[2] = _cell(new[2]["id"], [[3.0] * BLOCKS, [3.0] * BLOCKS, [9.0] * BLOCKS])  # one bad round
    c = bench_compare.compare_reports(_report(BASE), _report(new))
    assert c["slower"] == ["grouped/b1/ort/cpu/all/fp32"]
    assert c["faster"] == ["grouped/b1/torch/cpu"]
    assert c["cells"][0]["ratio"] == pytest.approx(1.5)
    assert c["cells"][2]["verdict"] == "unclear" and c["unclear"] == [c["cells"][2]["id"]]
    assert c["cells"][2]["interval"] == [pytest.approx(1.0), pytest.approx(3.0)]
    wide = bench_compare.compare_reports(_report(BASE), _report(new), max_slowdown=2.5)
    assert wide["slower"] == [] and wide["faster"] == []
    text = bench_compare.to_markdown(c)
    row = "| grouped/b1/ort/cpu/all/fp32 | 1 | 1.5 | 1.50 | 1.50–1.50 | 3×5 / 3×5 | — / — |"
    assert row + " **slower** |" in text
    assert "95% interval" in text and "above ×1.2" in text


def test_another_graph_under_the_same_name_is_not_compared():
    new = copy.deepcopy(BASE)
    new[2] = _cell(new[2]["id"], _steady(30.0), config={"height": 56})
    new.append(_cell("depthwise/b1/ort/cpu/all/fp32", _steady(1.0)))
    del new[1]
    c = bench_compare.compare_reports(_report(BASE), _report(new))
    row = c["cells"][1]
    assert row["verdict"] == "not comparable (config differs)" and row["interval"] is None
    assert c["slower"] == []
    assert c["only_in_current"] == ["depthwise/b1/ort/cpu/all/fp32"]
    assert c["only_in_baseline"] == ["grouped/b1/torch/cpu"]


def test_a_report_without_per_round_blocks_uses_the_pooled_ones():
    old = copy.deepcopy(BASE)
    for cell in old:
        del cell["rounds"]
    c = bench_compare.compare_reports(_report(old), _report(copy.deepcopy(BASE)))
    assert [r["baseline_rounds"] for r in c["cells"]] == [1, 1, 1]
    assert [r["verdict"] for r in c["cells"]] == ["same"] * 3
    assert any("one round" in w for w in c["warnings"])


def test_differences_between_the_runs_are_all_listed():
    new = _report(copy.deepcopy(BASE), cpu_model="Xeon", gpus=[{"name": "NVIDIA H100"}])
    new.versions["onnxruntime"] = "1.31.1"
    new.settings.update(threads=2, rounds=1, opt_levels=["all"], batches=[1, 8])
    new.settings["cuda_options"] = {"cudnn_conv_algo_search": "DEFAULT"}
    c = bench_compare.compare_reports(_report(BASE), new)
    assert c["differences"] == [
        "machine cpu_model: EPYC -> Xeon",
        "GPU: none -> NVIDIA H100",
        "onnxruntime: 1.32.0 -> 1.31.1",
        "setting rounds: 3 -> 1",
        "setting threads: 1 -> 2",
        "setting batches: absent -> 1,8",
        "setting opt_levels: absent -> all",
        "setting cuda_options: absent -> cudnn_conv_algo_search=DEFAULT",
    ]


def test_a_shift_that_every_cell_shares_is_pointed_out():
    cells = [_cell(f"v{i}/b1/ort/cpu/all/fp32", _steady(1.0)) for i in range(5)]
    slower = [_cell(c["id"], _steady(1.4)) for c in cells]
    c = bench_compare.compare_reports(_report(cells), _report(slower))
    assert len(c["slower"]) == 5
    assert any("moved the same way" in w for w in c["warnings"])


def test_the_comparison_json_is_versioned():
    c = bench_compare.compare_reports(_report(BASE), _report(BASE))
    assert c["schema"] == "onnxconv.bench-compare" and c["schema_version"] == 2
    assert c["method"]["resamples"] == bench_compare.RESAMPLES
    json.dumps(c, allow_nan=False)


def test_cli_exit_codes_and_files(tmp_path, capsys):
    base, slow = tmp_path / "base.json", tmp_path / "slow.json"
    base.write_text(json.dumps(_report(BASE).to_dict()))
    new = copy.deepcopy(BASE)
    new[0] = _cell(new[0]["id"], _steady(1.5))
    del new[2]
    slow.write_text(json.dumps(_report(new).to_dict()))
    assert main(["bench-compare", str(base), str(base)]) == 0
    out = capsys.readouterr().out
    assert "differs: nothing" in out and "0 slower" in out
    out_md, out_json = tmp_path / "c.md", tmp_path / "c.json"
    argv = ["bench-compare", str(base), str(slow), "--markdown", str(out_md)]
    assert main([*argv, "--json", str(out_json)]) == 1
    out = capsys.readouterr().out
    assert "SLOWER" in out and "1.50–1.50" in out and "95% interval" in out
    assert "1 cell(s) only in the baseline: standard/b1/ort/cpu/all/fp32" in out  # console too
    assert json.loads(out_json.read_text())["slower"] == ["grouped/b1/ort/cpu/all/fp32"]
    assert "**slower**" in out_md.read_text() and "only in the baseline" in out_md.read_text()
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
    assert "one round" in out  # a 1-round run is no gate, and the comparison says so
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


def _contended(cell, pressure=None, load=None):
    cell = copy.deepcopy(cell)
    for r in cell["rounds"]:
        r.update(cpu_pressure=pressure, loadavg_1m=load)
    return cell


def test_a_slowdown_on_a_contended_machine_is_unclear_not_slower():
    slow = _cell(BASE[0]["id"], _steady(1.5))
    quiet = [_contended(c, pressure=0.01) for c in BASE[:1]]
    busy = bench_compare.compare_reports(_report(quiet), _report([_contended(slow, 0.6)]))
    row = busy["cells"][0]
    assert row["verdict"] == "unclear" and busy["slower"] == []
    assert row["current_busy"] == "pressure 60%" and "contended" in row["why"]
    assert any("contended" in w for w in busy["warnings"])
    # contention only slows: a busy baseline cannot fake a slowdown of the current run
    held = bench_compare.compare_reports(
        _report([_contended(BASE[0], 0.6)]), _report([_contended(slow, 0.01)])
    )
    assert held["cells"][0]["verdict"] == "slower"
    # reports without CPU pressure fall back on the load average against the usable cores
    loaded = bench_compare.compare_reports(
        _report(BASE[:1], usable_cores=2), _report([_contended(slow, load=4.2)], usable_cores=2)
    )
    assert loaded["cells"][0]["verdict"] == "unclear"
    assert loaded["cells"][0]["current_busy"] == "load 4.2/2"


def test_a_gate_that_compared_nothing_fails(tmp_path, capsys):
    base, other = tmp_path / "base.json", tmp_path / "other.json"
    base.write_text(json.dumps(_report(BASE).to_dict()))
    other.write_text(
        json.dumps(_report([_cell("unrelated/b1/ort/cpu/all/fp32", _steady(1.0))]).to_dict())
    )
    assert main(["bench-compare", str(base), str(other)]) == 1
    assert "nothing compared: no cell of" in capsys.readouterr().err
    # the same ids, but every one another graph (a tuned folder moved elsewhere): no verdict
    # came of any, and "0 slower, 0 faster, 0 unclear, 0 the same" exited 0
    moved = [{**c, "source": f"/elsewhere/{c['source']}"} for c in BASE]
    other.write_text(json.dumps(_report(moved).to_dict()))
    assert main(["bench-compare", str(base), str(other)]) == 1
    err = capsys.readouterr().err
    assert "nothing compared: every cell in both runs is not comparable (source differs)" in err


def test_a_graph_is_known_by_its_sha256_where_its_folder_moved_or_its_file_changed():
    """A tuned folder copied elsewhere is the same graph (it was "not comparable (source
    differs)"); a file changed in place is another one (it was compared as the same)."""
    same = [{**c, "graph_sha256": "a" * 64} for c in BASE]
    moved = [{**c, "source": f"/elsewhere/{c['source']}"} for c in same]
    compared = bench_compare.compare_reports(_report(same), _report(moved))
    assert {row["verdict"] for row in compared["cells"]} == {"same"}
    changed = [{**c, "graph_sha256": "b" * 64} for c in BASE]
    other = bench_compare.compare_reports(_report(same), _report(changed))
    assert {row["verdict"] for row in other["cells"]} == {"not comparable (graph differs)"}
    # reports from before the field: the source decides, as it did
    assert {
        r["verdict"]
        for r in bench_compare.compare_reports(_report(BASE), _report(changed))["cells"]
    } == {"same"}


@pytest.mark.parametrize(
    "content, says",
    [
        ('{"schema": "onnxconv.validate"}', "not an onnxconv bench report"),
        ("[1, 2]", "not an onnxconv bench report (a JSON list)"),
        (
            '{"schema": 2, "subjects": [], "cells": []}',
            "(its schema is 2, a bench report's 'onnxconv.bench': it looks like a validate report)",
        ),
        ("cells", "not a complete bench report (cells is not a list)"),
        ("machine", "not a complete bench report (machine is not a dict)"),
    ],
)
def test_a_report_that_is_not_a_bench_report_names_its_file(tmp_path, capsys, content, says):
    base, bad = tmp_path / "base.json", tmp_path / "bad.json"
    data = _report(BASE).to_dict()
    base.write_text(json.dumps(data))
    if content == "cells":
        content = json.dumps({**data, "cells": "x"})
    elif content == "machine":
        content = json.dumps({k: v for k, v in data.items() if k != "machine"})
    bad.write_text(content)
    assert main(["bench-compare", str(base), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{bad}: " in err and says in err, err
