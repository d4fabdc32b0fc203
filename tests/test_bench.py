"""The bench harness: statistics on synthetic data, per-op grouping on a hand-written profile,
one real end-to-end run on tiny variants, and bad input.

Timings are never asserted: only that the harness runs, the schema holds and the arithmetic is
right.
"""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
from cuda_marks import CUDA_REASON, cuda_only

from onnxconv.bench import cells as bench_cells
from onnxconv.bench import harness as bench
from onnxconv.bench import report as bench_report
from onnxconv.bench import stats as bench_stats
from onnxconv.bench.worker import time_calls
from onnxconv.cli import main
from onnxconv.errors import UserInputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = {"height": 8, "width": 8}
FAST = dict(
    blocks=2,
    calls=3,
    warmup=1,
    warmup_s=0.0,
    rounds=2,
    opt_levels=["all"],
    profile_calls=3,
    roof_matmul_n=128,
    roof_copy_mb=4,
    roof_repeats=1,
)


# ---------------------------------------------------------------------------------------------
# statistics


@pytest.mark.parametrize("q, expected", [(0, 1.0), (50, 5.5), (90, 9.1), (99, 9.91), (100, 10.0)])
def test_percentile_interpolates_between_ranks(q, expected):
    values = [float(v) for v in range(10, 0, -1)]  # unsorted on purpose
    assert bench_stats.percentile(values, q) == pytest.approx(expected)
    assert bench_stats.percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_percentile_of_one_value_and_bad_q():
    assert bench_stats.percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        bench_stats.percentile([], 50)
    with pytest.raises(ValueError):
        bench_stats.percentile([1.0], 101)


def test_summarize_known_blocks():
    ms = 1_000_000  # ns per ms
    stats = bench_stats.summarize([[1 * ms, 2 * ms, 3 * ms], [4 * ms, 5 * ms, 6 * ms]])
    assert stats.n == 6
    assert stats.p50_ms == pytest.approx(3.5)
    assert stats.p90_ms == pytest.approx(5.5)
    assert stats.p99_ms == pytest.approx(5.95)
    assert stats.mean_ms == pytest.approx(3.5)
    assert stats.stdev_ms == pytest.approx(statistics.stdev([1, 2, 3, 4, 5, 6]))
    assert (stats.min_ms, stats.max_ms) == (1.0, 6.0)
    assert stats.block_medians_ms == [2.0, 5.0]
    assert stats.block_spread == pytest.approx((5 - 2) / 3.5)


def test_block_spread_is_zero_when_steady_and_relative_otherwise():
    assert bench_stats.block_spread([2.0, 2.0, 2.0]) == 0.0
    assert bench_stats.block_spread([1.0, 2.0, 4.0]) == pytest.approx(1.5)  # (4 - 1) / 2


def test_summarize_single_call_has_zero_stdev():
    stats = bench_stats.summarize([[2_000_000]])
    assert stats.stdev_ms == 0.0 and stats.p99_ms == 2.0 and stats.block_spread == 0.0


def test_paired_ratios_pair_round_by_round_and_skip_missing_rounds():
    torch_p50 = [2.0, 3.0, None, 8.0]
    ort_p50 = [1.0, 1.0, 5.0, 2.0]
    assert bench_stats.paired_ratios(torch_p50, ort_p50) == [2.0, 3.0, 4.0]
    # pairing matters: the median of ratios is not the ratio of medians
    assert statistics.median(bench_stats.paired_ratios([10.0, 1.0, 4.0], [5.0, 1.0, 1.0])) == 2.0
    with pytest.raises(ValueError):
        bench_stats.paired_ratios([1.0], [1.0, 2.0])


def _fake_cell(cid, backend, p50s, abs_sum=10.0):
    return bench_cells.BenchCell(
        id=cid,
        label="v",
        source="v",
        kind="variant",
        config={},
        batch=1,
        backend=backend,
        target="cpu/all/fp32",
        threads=1,
        rounds=[{"round": i, "p50_ms": p} for i, p in enumerate(p50s)],
        outputs=[{"shape": [1], "dtype": "float32", "abs_sum": abs_sum}],
    )


def test_pair_reports_median_of_per_round_ratios():
    ort = _fake_cell("o", "ort", [1.0, 2.0, 1.0])
    torch = _fake_cell("t", "torch", [3.0, 2.0, 1.5])
    pair = bench_cells.pair(ort, torch)
    assert [r["torch_over_ort"] for r in pair["rounds"]] == [3.0, 1.0, 1.5]
    assert pair["torch_over_ort"] == 1.5
    assert pair["ort_over_torch"] == pytest.approx(statistics.median([1 / 3, 1.0, 1 / 1.5]))
    assert pair["n_pairs"] == 3 and pair["outputs_match"] is True
    assert (
        bench_cells.pair(ort, _fake_cell("t", "torch", [1, 1, 1], 11.0))["outputs_match"] is False
    )


def test_time_calls_shapes_and_counts():
    calls = []
    result = time_calls(lambda: calls.append(1), warmup=4, warmup_s=0.0, blocks=3, calls=5)
    assert len(calls) == 4 + 15 and result["warmup_calls"] == 4
    assert [len(b) for b in result["blocks_ns"]] == [5, 5, 5]
    assert all(isinstance(t, int) and t >= 0 for b in result["blocks_ns"] for t in b)
    assert result["page_faults_per_call"] >= 0


# ---------------------------------------------------------------------------------------------
# per-op breakdown from ORT's profile


def _node(name, op, ts, dur, provider="CPUExecutionProvider"):
    return {
        "cat": "Node",
        "name": f"{name}_kernel_time",
        "ts": ts,
        "dur": dur,
        "ph": "X",
        "args": {"op_name": op, "provider": provider},
    }


def _run(ts, dur):
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur, "ph": "X"}


HAND_PROFILE = [
    {"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 500, "ph": "X"},
    # warm-up run: huge times that must not count with last_runs=2
    _run(1000, 1000),
    _node("conv0", "Conv", 1010, 900),
    _run(3000, 100),
    _node("reorder_in", "ReorderInput", 3001, 5),
    _node("conv0", "NchwcConv", 3010, 40),
    _node("conv1", "FusedConv", 3050, 20),
    _node("reorder_out", "ReorderOutput", 3071, 5),
    _node("shuffle_r1", "Reshape", 3077, 2),
    _node("shuffle_t", "Transpose", 3080, 6),
    _node("shuffle_r2", "Reshape", 3087, 2),
    _node("add", "Add", 3090, 4),
    {
        "cat": "Node",
        "name": "conv0_fence_before",
        "ts": 3009,
        "dur": 0,
        "args": {"op_name": "Conv"},
    },
    _run(4000, 100),
    _node("reorder_in", "ReorderInput", 4001, 5),
    _node("conv0", "NchwcConv", 4010, 40),
    _node("conv1", "FusedConv", 4050, 20),
    _node("reorder_out", "ReorderOutput", 4071, 5),
    _node("shuffle_r1", "Reshape", 4077, 2),
    _node("shuffle_t", "Transpose", 4080, 6),
    _node("shuffle_r2", "Reshape", 4087, 2),
    _node("add", "Add", 4090, 4),
]


def test_op_group_names():
    assert [
        bench_stats.op_group(op) for op in ("Conv", "FusedConv", "NchwcConv", "QLinearConv")
    ] == ["conv"] * 4
    assert bench_stats.op_group("Reshape") == bench_stats.op_group("Transpose") == "shuffle"
    assert (
        bench_stats.op_group("ReorderInput") == bench_stats.op_group("ReorderOutput") == "reorder"
    )
    assert bench_stats.op_group("Add") == bench_stats.op_group("MaxPool") == "other"


def test_profile_grouping_on_hand_written_profile(tmp_path):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(HAND_PROFILE))
    per_op = bench_stats.parse_ort_profile(json.loads(path.read_text()), last_runs=2)
    assert per_op["runs"] == 2 and per_op["nodes"] == 8
    assert per_op["by_op_us"] == {
        "NchwcConv": 40.0,
        "FusedConv": 20.0,
        "ReorderInput": 5.0,
        "ReorderOutput": 5.0,
        "Reshape": 4.0,
        "Transpose": 6.0,
        "Add": 4.0,
    }
    assert per_op["groups_us"] == {"conv": 60.0, "shuffle": 10.0, "reorder": 10.0, "other": 4.0}
    assert per_op["node_us_per_run"] == 84.0
    assert per_op["fractions"]["conv"] == pytest.approx(60 / 84)
    assert per_op["fractions"]["shuffle"] == pytest.approx(10 / 84)
    assert math.fsum(per_op["fractions"].values()) == pytest.approx(1.0)
    assert per_op["run_us_per_run"] == 100
    assert per_op["providers"] == {
        "CPUExecutionProvider": sorted(
            [
                "Add",
                "FusedConv",
                "NchwcConv",
                "ReorderInput",
                "ReorderOutput",
                "Reshape",
                "Transpose",
            ]
        )
    }
    assert per_op["provider_nodes"] == {"CPUExecutionProvider": 8}


def test_profile_without_last_runs_counts_warm_up_too():
    per_op = bench_stats.parse_ort_profile(HAND_PROFILE)
    assert per_op["runs"] == 3
    assert per_op["by_op_us"]["Conv"] == pytest.approx(900 / 3)


def test_group_op_times_of_nothing_is_all_zero():
    grouped = bench_stats.group_op_times({})
    assert grouped["total"] == 0 and set(grouped["fractions"].values()) == {0.0}


# ---------------------------------------------------------------------------------------------
# end to end, for real (tiny shapes, few calls)


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench-work")
    out = tmp_path_factory.mktemp("bench-out")
    seen = []
    # eps named: by default a GPU build would add CUDA cells (tested apart, on a GPU).
    report = bench.run_bench(
        ["grouped", "channel_shuffle"],
        bench.BenchSettings(eps=["cpu"], **FAST),
        overrides=TINY,
        work_dir=work,
        progress=lambda done, total, msg: seen.append((done, total, msg)),
    )
    written = bench_report.write_report(report, out)
    return report, written, seen, work, out


def test_e2e_report_follows_schema(e2e):
    report, written, _, _, _ = e2e
    data = json.loads(written["json"].read_text())
    assert list(data) == [
        "schema",
        "schema_version",
        "created",
        "machine",
        "versions",
        "settings",
        "roofs",
        "roofs_error",
        "cuda_roofs",
        "cuda_roofs_error",
        "cells",
        "pairs",
        "notes",
    ]
    assert (
        data["schema"] == "onnxconv.bench" and data["schema_version"] == bench_report.SCHEMA_VERSION
    )
    assert data["settings"]["threads"] == 1 and data["settings"]["blocks"] == 2
    assert data["settings"]["env"]["torch"]["OMP_NUM_THREADS"] == "1"
    assert data["settings"]["env"]["torch"]["MALLOC_MMAP_THRESHOLD_"] == str(1 << 30)
    assert "MALLOC_MMAP_THRESHOLD_" not in data["settings"]["env"]["ort"]
    for key in ("cpu_model", "logical_cores", "isa", "memory_bytes", "os", "python"):
        assert key in data["machine"]
    for key in ("torch", "onnx", "onnxruntime", "numpy", "onnxruntime_providers"):
        assert data["versions"][key]
    assert data["roofs"]["compute_gflops"] > 0 and data["roofs"]["memory_gbps"] > 0
    for start_or_end in data["roofs"]["measurements"]:  # the roof: the fastest matmul probed
        probes = {k: v for k, v in start_or_end["details"].items() if k.endswith("_gflops")}
        assert set(probes) == {"numpy_matmul_gflops", "torch_matmul_gflops", "ort_matmul_gflops"}
        assert start_or_end["compute_gflops"] == max(probes.values())
    assert data == report.to_dict()


def test_e2e_cells_and_pairs(e2e):
    report, _, _, _, _ = e2e
    ids = [c["id"] for c in report.cells]
    assert ids == [
        "grouped/b1/ort/cpu/all/fp32",
        "grouped/b1/torch/cpu",
        "channel_shuffle/b1/ort/cpu/all/fp32",
        "channel_shuffle/b1/torch/cpu",
    ]
    for cell in report.cells:
        assert cell["status"] == "ok", cell["error"]
        assert cell["threads"] == 1 and cell["batch"] == 1
        assert len(cell["rounds"]) == 2
        stats = cell["stats"]
        assert stats["n"] == 2 * 2 * 3 and len(stats["block_medians_ms"]) == 4
        order = ["min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms"]
        assert [stats[k] for k in order] == sorted(stats[k] for k in order)
        assert cell["throughput_per_s"] == pytest.approx(1e3 / stats["p50_ms"])
        assert cell["page_faults_per_call"] >= 0
        assert cell["outputs"][0]["shape"] == [1, 64, 8, 8]
        assert list(cell["input_shapes"].values()) == [[1, 64, 8, 8]]
        pressures = [r["cpu_pressure"] for r in cell["rounds"]]
        assert all(p is None or 0 <= p <= 1 for p in pressures)  # None without Linux PSI
    grouped_ort = report.cells[0]
    assert grouped_ort["macs"] == 64 * 8 * 9 * 64  # C_out * (C_in / g) * k * k * H * W
    assert grouped_ort["flops"] == 2 * grouped_ort["macs"]
    p50_s = grouped_ort["stats"]["p50_ms"] / 1e3
    assert grouped_ort["gflops"] == pytest.approx(grouped_ort["flops"] / p50_s / 1e9)
    assert 0 < grouped_ort["roof_bound_gflops"] <= report.roofs["compute_gflops"]
    assert grouped_ort["session"]["session_options"]["intra_op_num_threads"] == 1
    assert grouped_ort["session"]["providers"][0] == "CPUExecutionProvider"
    assert grouped_ort["per_op"]["groups_us"]["conv"] > 0
    assert grouped_ort["per_op"]["provider_nodes"] == {"CPUExecutionProvider": 1}
    shuffle_ort = report.cells[2]
    assert shuffle_ort["macs"] == 0 and shuffle_ort["roof_fraction"] is None
    assert set(shuffle_ort["per_op"]["by_op_us"]) <= {"Reshape", "Transpose"}
    assert shuffle_ort["per_op"]["fractions"]["shuffle"] == pytest.approx(1.0)
    torch_cell = report.cells[1]
    assert torch_cell["per_op"] is None and torch_cell["session"]["torch_threads"] == 1
    assert [(p["ort_cell"], p["torch_cell"]) for p in report.pairs] == [
        (ids[0], ids[1]),
        (ids[2], ids[3]),
    ]
    for pair in report.pairs:
        assert pair["n_pairs"] == 2 and pair["outputs_match"] is True
        assert pair["torch_over_ort"] == pytest.approx(
            statistics.median(r["torch_over_ort"] for r in pair["rounds"])
        )


def test_e2e_progress_counts_every_worker(e2e):
    _, _, seen, _, _ = e2e
    total = seen[0][1]
    # roofs at start and end, and per variant: its graph and inputs, its deployments, 2 rounds
    # of (ORT, torch), one profiled ORT run
    assert total == 2 + 2 * (2 + 2 * 1 + 2 * 1 + 1)
    assert [s[0] for s in seen] == list(range(total + 1))
    assert seen[-1] == (total, total, "done")
    # every graph and its inputs before the roofs: bad input is refused before any timing
    messages = [m for _, _, m in seen]
    roofs = messages.index("measuring roofs (start)")
    assert messages[:roofs] == [
        "grouped b1: the graph and its inputs",
        "channel_shuffle b1: the graph and its inputs",
    ]


def test_e2e_markdown_and_plots(e2e):
    _, written, _, _, out = e2e
    text = written["markdown"].read_text()
    assert text.startswith("# onnxconv bench")
    assert "| variant | batch | input | backend/target | ran on | p50 ms |" in text
    assert "| grouped | 1 | 1×64×8×8 | ort cpu/all/fp32 | cpu:1 |" in text  # placement: profile
    assert "| channel_shuffle | 1 | 1×64×8×8 | torch cpu | cpu |" in text
    assert "  - grouped: input 1×64×8×8; config in_channels=64" in text
    assert "threads: 1" in text and "onnxruntime" in text
    names = sorted(p.name for p in written["plots"])
    assert names == ["latency_vs_macs.png", "op_breakdown.png", "speedup.png"]
    for path in written["plots"]:
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_summary_rows_for_the_console(e2e):
    report = e2e[0]
    headers, rows = bench_report.summary_rows(report)
    assert len(rows) == len(report.cells) and all(len(r) == len(headers) for r in rows)
    assert rows[0][:4] == ["grouped", "1", "ort cpu/all/fp32", "cpu:1"]
    assert rows[0][-1].count("/") == 3 and rows[1][-1] == "—"  # torch: no ORT profile


def test_report_round_trips_through_json(e2e):
    report, written, _, _, tmp = e2e
    loaded = bench_report.load_report(written["json"])
    assert loaded.to_dict() == report.to_dict()
    assert bench_report.to_markdown(loaded) == written["markdown"].read_text()


def test_bench_a_bare_onnx_file(e2e, tmp_path):
    _, _, _, work, _ = e2e
    model = work / "grouped-b1" / "model.onnx"
    report = bench.run_bench(
        [model],
        bench.BenchSettings(**{**FAST, "rounds": 1}, eps=["cpu"], roofs=False, profile=False),
    )
    assert [c["backend"] for c in report.cells] == ["ort"]  # no module to run in PyTorch
    cell = report.cells[0]
    assert cell["status"] == "ok" and cell["kind"] == "onnx" and cell["macs_source"] == "graph"
    assert cell["macs"] == 64 * 8 * 9 * 64
    assert report.pairs == [] and report.roofs is None
    assert "not measured" in bench_report.to_markdown(report)


def test_unavailable_ep_is_recorded_not_raised():
    from onnxconv.runtime import ep_unavailable_reason

    reason = ep_unavailable_reason("cuda")
    if reason is None:
        pytest.skip("the CUDA EP is active here: nothing unavailable to record")
    report = bench.run_bench(
        ["grouped"],
        bench.BenchSettings(eps=["cuda"], roofs=False, profile=False, **{**FAST, "rounds": 1}),
        overrides=TINY,
    )
    assert [(c["backend"], c["status"]) for c in report.cells] == [("ort", "unavailable")]
    assert report.cells[0]["error"] == reason and report.cells[0]["stats"] is None
    assert "unavailable" in bench_report.to_markdown(report)


def _synthetic_report(spread, ratios, gflops, load=0.1):
    cell = {
        "id": "v/b1/ort/cpu/all/fp32",
        "gflops": gflops,
        "stats": {"block_spread": spread},
        "rounds": [{"loadavg_1m": load}],
    }
    pair = {
        "ort_cell": cell["id"],
        "torch_backend": "torch",
        "rounds": [{"torch_over_ort": r} for r in ratios],
    }
    return bench_report.BenchReport(
        machine={"usable_cores": 2},
        versions={},
        settings={"rounds": 3},
        roofs={"compute_gflops": 100.0},
        cells=[cell],
        pairs=[pair],
    )


def test_cuda_cells_are_judged_against_the_gpu_roof_only():
    report = _synthetic_report(0.1, [1.0, 1.1, 1.2], 80.0)
    gpu_cell = {
        "id": "v/b1/ort/cuda/all/fp32",
        "device": "cuda",
        "gflops": 5000.0,
        "stats": {"block_spread": 0.1},
        "rounds": [{"loadavg_1m": 0.1}],
    }
    report.cells.append(gpu_cell)
    assert bench_report.measurement_notes(report) == []  # no GPU roof: not judged at all
    report.cuda_roofs = {
        "compute_gflops": 4000.0,
        "memory_gbps": 3000.0,
        "device": "H100",
        "method": {"matmul_n": 8192, "copy_mb": 1024},
    }
    (note,) = bench_report.measurement_notes(report)
    assert "GPU compute roof (4000 GFLOP/s)" in note and gpu_cell["id"] in note
    gpu_cell["gflops"] = 3000.0
    assert bench_report.measurement_notes(report) == []
    again = bench_report.BenchReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again.cuda_roofs == report.cuda_roofs


def test_a_cell_held_up_on_most_calls_is_pointed_out():
    report = _synthetic_report(0.1, [1.0, 1.1, 1.2], 80.0)
    assert bench_report.measurement_notes(report) == []
    report.cells[0]["stats"] = {**report.cells[0]["stats"], "p50_ms": 296.0, "min_ms": 0.56}
    (note,) = bench_report.measurement_notes(report)
    assert "1 cell(s) had a p50 more than 10x their fastest call" in note
    assert report.cells[0]["id"] in note


def test_cuda_per_op_shares_are_flagged_as_launch_times():
    report = _synthetic_report(0.1, [1.0, 1.1, 1.2], 80.0)
    report.cells[0]["per_op"] = {"clock": "cpu", "node_us_per_run": 90.0, "run_us_per_run": 100.0}
    assert bench_report.measurement_notes(report) == []
    report.cells.append(
        {
            "id": "u/b32/ort/cuda/all/fp32",
            "device": "cuda",
            "stats": None,
            "rounds": [],
            "per_op": {"clock": "host", "node_us_per_run": 200.0, "run_us_per_run": 20900.0},
        }
    )
    (note,) = bench_report.measurement_notes(report)
    assert "host-side kernel-launch" in note and "nodes 0.2 ms of a 20.9 ms run" in note


def test_op_shares_prefer_nodes_timed_alone_and_name_their_basis():
    profile = {"fractions": {"conv": 0.7, "shuffle": 0.1, "reorder": 0.0, "other": 0.2}}
    nodes = {
        "sum_ms": 2.0,
        "fractions": {"conv": 0.9, "shuffle": 0.05, "reorder": 0.0, "other": 0.05},
    }
    assert bench_stats.op_shares({}) == (None, None)
    assert bench_stats.op_shares({"per_op": {**profile, "clock": "cpu"}}) == (
        profile["fractions"],
        "profile",
    )
    assert bench_stats.op_shares({"per_op": {**profile, "clock": "host"}})[1] == "launch"
    assert bench_stats.op_shares({"per_op": {**profile, "clock": "host"}, "per_node": nodes}) == (
        nodes["fractions"],
        "nodes",
    )


@cuda_only
def test_cuda_bench_runs_both_runtimes_on_the_gpu(tmp_path):
    report = bench.run_bench(
        ["pointwise", "channel_shuffle"],
        bench.BenchSettings(eps=["cuda"], **{**FAST, "rounds": 1}),
        overrides=TINY,
    )
    assert not report.errors, [(c["id"], c["error"]) for c in report.errors]
    assert (
        report.cuda_roofs and report.cuda_roofs["compute_gflops"] > report.roofs["compute_gflops"]
    )
    for cell in report.cells:
        assert cell["status"] == "ok" and cell["device"] == "cuda", cell["id"]
        if cell["backend"] == "ort":
            session = cell["session"]
            assert session["providers"][0] == "CUDAExecutionProvider" and session["io_binding"]
            assert session["cuda_options"]["use_tf32"] == "0"
            assert cell["per_op"]["clock"] == "host", cell.get("per_op_error")
        else:
            assert cell["session"]["cuda_settings"]["allow_tf32"] is False
    assert len(report.pairs) == 2 and all(p["outputs_match"] for p in report.pairs)
    assert "GPU roofs" in bench_report.to_markdown(report)


def test_combine_roofs_keeps_the_best_of_start_and_end():
    def measured(compute, memory):
        return {
            "ok": True,
            "roofs": {
                "compute_gflops": compute,
                "memory_gbps": memory,
                "threads": 2,
                "method": {},
                "details": {},
            },
        }

    roofs, error = bench.combine_roofs([measured(150.0, 40.0), measured(200.0, 30.0)])
    assert error is None
    assert (roofs["compute_gflops"], roofs["memory_gbps"]) == (200.0, 40.0)
    assert roofs["ridge_flops_per_byte"] == 5.0
    assert [m["when"] for m in roofs["measurements"]] == ["start", "end"]
    assert bench.combine_roofs([{"ok": False, "error": "boom"}]) == (None, "boom")


def test_measurement_notes_flag_an_unsteady_machine_only():
    assert bench_report.measurement_notes(_synthetic_report(0.1, [1.0, 1.1, 1.2], 80.0)) == []
    notes = bench_report.measurement_notes(_synthetic_report(0.9, [1.0, 2.0, 1.2], 120.0, load=4.0))
    assert len(notes) == 4
    assert "above the measured CPU compute roof" in notes[0]
    assert "spread more than 50%" in notes[1]
    assert "disagree" in notes[2] and "load average" in notes[3]
    report = _synthetic_report(0.1, [1.0, 1.1, 1.2], 80.0)
    report.cells[0]["per_op_error"] = "worker failed: boom"
    (note,) = bench_report.measurement_notes(report)
    assert "no per-op breakdown" in note and "boom" in note


def test_worker_failure_is_returned_not_raised():
    result = bench.run_worker({"kind": "nope"}, bench.worker_env(1), timeout_s=60)
    assert result["ok"] is False and "unknown job kind" in result["error"]


# ---------------------------------------------------------------------------------------------
# bad input: one-line UserInputError, before anything is timed


@pytest.mark.parametrize(
    "items, settings, overrides, match",
    [
        (["no_such_variant"], {}, None, "unknown variant"),
        (["missing/model.onnx"], {}, None, "no such file"),
        ([], {}, None, "nothing to bench"),
        (["grouped"], {"threads": 0}, None, "threads"),
        (["grouped"], {"batches": []}, None, "batch list is empty"),
        (["grouped"], {"batches": [0]}, None, "batch size"),
        (["grouped"], {"opt_levels": ["turbo"]}, None, "optimisation level"),
        (["grouped"], {"eps": ["tpu"]}, None, "execution provider"),
        (["grouped"], {}, {"colour": 3}, "colour"),
        (["grouped"], {}, {"groups": 5}, "grouped"),
        (
            ["grouped"],
            {"cuda_options": {"cudnn_conv_algo_search": "FASTEST"}},
            None,
            "cudnn_conv_algo_search must be one of EXHAUSTIVE",
        ),
    ],
)
def test_bad_input_raises_one_line(items, settings, overrides, match):
    with pytest.raises(UserInputError, match=match) as info:
        bench.run_bench(items, bench.BenchSettings(**settings), overrides=overrides)
    assert "\n" not in str(info.value)


def test_non_onnx_file_is_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf at all \xff\xfe")
    with pytest.raises(UserInputError, match="not an ONNX model"):
        bench.run_bench([bad])
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(UserInputError, match="empty"):
        bench.run_bench([str(empty)])


# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_torch_compile_column_records_result_or_error(tmp_path):
    report = bench.run_bench(
        ["grouped"],
        bench.BenchSettings(
            compile=True, eps=["cpu"], roofs=False, profile=False, **{**FAST, "rounds": 1}
        ),
        overrides=TINY,
    )
    cell = next(c for c in report.cells if c["backend"] == "torch_compile")
    assert cell["status"] in ("ok", "error")
    if cell["status"] == "ok":
        assert cell["session"]["compile_s"] > 0
    else:
        assert cell["error"].startswith("torch.compile failed")


# --- the command line ----------------------------------------------------------------------------


def test_cli_bench_writes_report_and_exit_codes(tmp_path, capsys):
    from onnxconv.cli import main

    fast = [
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
        "--quiet",
    ]
    assert main(["bench", "grouped", *fast, "--per-node", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "ort cpu/all/fp32" in out and "torch cpu" in out and "(nodes)" in out
    data = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert {c["backend"] for c in data["cells"]} == {"ort", "torch"}
    assert [
        n["op_type"] for c in data["cells"] if c["backend"] == "ort" for n in c["per_node"]["nodes"]
    ] == ["Conv"]
    assert data["settings"]["cuda_options"] == {
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "use_tf32": "0",
    }
    assert (tmp_path / "b" / "bench.md").exists()
    assert (tmp_path / "b" / "speedup.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --ep cuda: timed where CUDA is active, exit 1 naming it where it is not (both are shown,
    # on whichever machine this runs)
    code = main(
        ["bench", "grouped", *fast, "--ep", "cuda", "--no-plots", "--out", str(tmp_path / "c")]
    )
    if CUDA_REASON is None:
        assert code == 0 and "ort cuda/all/fp32" in capsys.readouterr().out
    else:
        assert code == 1 and "required EP cuda is not active" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,word",
    [
        (["nope"], "nope"),
        (["grouped", "--threads", "0"], "threads"),
        (["grouped", "--opt-level", "fast"], "fast"),
    ],
)
def test_cli_bench_bad_input_is_one_line_exit_2(argv, word, tmp_path, capsys):
    from onnxconv.cli import main

    try:
        code = main(["bench", *argv, "--quiet", "--out", str(tmp_path / "b")])
    except SystemExit as exit:  # argparse's own refusals
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and word in err
    assert not (tmp_path / "b").exists()


def test_cli_bench_per_variant_config(tmp_path):
    from onnxconv.cli import main

    assert (
        main(
            [
                "bench",
                "grouped",
                "channel_shuffle",
                "--config",
                "height=8,width=8,channel_shuffle.channels=16,grouped.groups=4",
                "--rounds",
                "1",
                "--blocks",
                "2",
                "--calls",
                "3",
                "--opt-level",
                "all",
                "--no-roofs",
                "--no-profile",
                "--no-plots",
                "--quiet",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    sources = json.loads((tmp_path / "bench.json").read_text())["settings"]["sources"]
    assert [s["overrides"] for s in sources] == [
        {"height": "8", "width": "8", "groups": "4"},
        {"height": "8", "width": "8", "channels": "16"},
    ]


@pytest.mark.skipif(CUDA_REASON is None, reason="CUDA is active here: the EP would be timed")
def test_bench_with_an_inactive_ep_stops_before_timing_or_writing(tmp_path, capsys):
    from onnxconv.cli import main

    out = tmp_path / "b"
    assert main(["bench", "grouped", "--ep", "cuda", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "required EP cuda is not active" in captured.err and "timing" not in captured.err
    assert not out.exists()


def test_a_zoo_graph_folder_is_timed_beside_pytorch_at_the_benched_batch(tmp_path):
    from onnxconv.cli import main

    graphs = tmp_path / "g"
    argv = ["export", "--variant", "grouped", "--dynamic-batch", "--out", str(graphs), "--quiet"]
    assert main(argv) == 0
    argv = ["bench", str(graphs / "grouped"), "--batch", "2", "--opt-level", "all", "--rounds", "1"]
    argv += ["--blocks", "1", "--calls", "3", "--no-roofs", "--no-profile", "--no-plots"]
    assert main([*argv, "--quiet", "--out", str(tmp_path / "b")]) == 0
    cells = json.loads((tmp_path / "b" / "bench.json").read_text())["cells"]
    torch = {c["backend"]: c for c in cells}["torch"]  # the manifest names the variant
    assert torch["status"] == "ok" and torch["label"] == "grouped" and torch["batch"] == 2
    assert torch["config"]["batch"] == 2 and torch["config"]["groups"] == 8


def test_a_graph_brought_in_float16_is_benched_as_it_is_and_says_so(tmp_path):
    import onnx

    from onnxconv import precisions

    model = precisions.deploy(onnx.load("graphs/grouped/model.onnx"), "fp16-io")
    del model.metadata_props[:]  # as if converted elsewhere
    path = tmp_path / "half.onnx"
    onnx.save(model, path)
    report = bench.run_bench(
        [path],
        bench.BenchSettings(**{**FAST, "rounds": 1}, eps=["cpu"], roofs=False, profile=False),
    )
    (cell,) = report.cells
    assert cell["status"] == "ok" and cell["graph_computes_in"] == "fp16"
    assert "half: the graph already computes in fp16: its fp32 cells run it as it is" in (
        report.notes
    )


def test_bench_without_targets_times_the_graphs_of_its_folder_as_exported(tmp_path):
    """An export at 8x8: bench --graphs times that graph, and PyTorch at the manifest's config,
    not the variant's defaults (28x28)."""
    from onnxconv.export import ExportOptions, export_variants

    export_variants(["channel_shuffle"], tmp_path / "g", ExportOptions(), {"height": 8, "width": 8})
    argv = ["bench", "--graphs", str(tmp_path / "g"), "--opt-level", "all", "--rounds", "1"]
    argv += ["--blocks", "1", "--calls", "3", "--no-roofs", "--no-profile", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    cells = json.loads((tmp_path / "b" / "bench.json").read_text())["cells"]
    assert {c["backend"] for c in cells} == {"ort", "torch"}
    for cell in cells:
        assert list(cell["input_shapes"].values()) == [[1, 64, 8, 8]], cell["backend"]


def test_a_batch_the_graph_cannot_take_is_one_line_naming_the_graph(capsys):
    """Before anything is timed: see test_e2e_progress_counts_every_worker for the order."""
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "graphs" / "grouped"
    assert main(["bench", str(folder), "--batch", "4", "--rounds", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1
        and "fixed batch of 1; cannot bench batch 4 (bench it with --batch 1, or without --batch)"
        in err
    ), err


def test_a_graph_with_a_fixed_batch_is_benched_at_it_without_batch(tmp_path, capsys):
    """Without --batch a graph made for batch 2 is benched at 2 (it used to be refused: batch 1
    was the default for every source) while a variant beside it keeps batch 1; a --batch the
    graph cannot take is still refused."""
    from pathlib import Path

    import onnx

    model = onnx.load(Path(__file__).resolve().parent.parent / "graphs" / "grouped" / "model.onnx")
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 2
    path = tmp_path / "b2.onnx"
    onnx.save(model, path)
    argv = ["bench", str(path), "pointwise", "--config", "height=8,width=8", "--opt-level", "all"]
    argv += ["--rounds", "1", "--blocks", "1", "--calls", "3", "--no-roofs", "--no-profile"]
    assert main([*argv, "--quiet", "--out", str(tmp_path / "b")]) == 0
    cells = json.loads((tmp_path / "b" / "bench.json").read_text())["cells"]
    batches = {(c["label"], c["backend"]): c["batch"] for c in cells}
    assert batches == {("b2", "ort"): 2, ("pointwise", "ort"): 1, ("pointwise", "torch"): 1}
    capsys.readouterr()
    assert main([*argv, "--batch", "1", "--quiet", "--out", str(tmp_path / "c")]) == 2
    assert "b2.onnx: input 'input' has a fixed batch of 2" in capsys.readouterr().err


def test_only_the_first_input_holds_the_batch(tmp_path):
    """A graph of an image at batch 2 and a vector of 4: bench asked for --batch 4 (the
    vector's size), then --batch 2 (the image's), round and round. The first input's leading
    dimension is the batch (as validate reads it); the vector keeps its own size."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["image"], ["a"]), helper.make_node("Relu", ["vector"], ["b"])],
        "two",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [2, 3, 4, 4]),
            helper.make_tensor_value_info("vector", TensorProto.FLOAT, [4]),
        ],
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3, 4, 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [4]),
        ],
    )
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    argv = ["bench", str(path), "--opt-level", "all", "--rounds", "1", "--blocks", "1"]
    argv += ["--calls", "3", "--no-roofs", "--no-profile", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    (cell,) = json.loads((tmp_path / "b" / "bench.json").read_text())["cells"]
    assert cell["status"] == "ok" and cell["batch"] == 2
    assert cell["input_shapes"] == {"image": [2, 3, 4, 4], "vector": [4]}
