"""bench --precision: each deployment timed on ORT beside fp32 and PyTorch, in one run."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from test_bench import FAST, TINY

from onnxconv.bench import harness as bench
from onnxconv.bench import report as bench_report
from onnxconv.errors import UserInputError


@pytest.fixture(scope="module")
def deployments(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench-precisions")
    report = bench.run_bench(
        ["grouped", "channel_shuffle"],
        bench.BenchSettings(
            eps=["cpu"],
            precisions=["fp32", "fp16-io", "int8"],
            roofs=False,
            profile=False,
            **{**FAST, "rounds": 1},
        ),
        overrides=TINY,
        work_dir=work,
    )
    return report, work


def test_each_deployment_is_its_own_timed_cell(deployments):
    report, work = deployments
    grouped = {c["target"]: c for c in report.cells if c["label"] == "grouped"}
    assert set(grouped) == {"cpu/all/fp32", "cpu/all/fp16-io", "cpu/all/int8", "cpu"}
    for target in ("cpu/all/fp32", "cpu/all/fp16-io", "cpu/all/int8"):
        cell = grouped[target]
        assert cell["status"] == "ok", cell["error"]
        assert cell["precision"] == target.rsplit("/", 1)[1]
        assert cell["stats"]["p50_ms"] > 0
    assert grouped["cpu"]["precision"] == "fp32"  # PyTorch runs fp32
    # what was timed is the deployment: a QDQ graph, and float16 inputs for fp16-io
    folder = work / "grouped-b1"
    int8_graph = onnx.load(folder / "model.int8.onnx")
    assert any(n.op_type == "QuantizeLinear" for n in int8_graph.graph.node)
    assert np.load(folder / "input.fp16-io.npy").dtype == np.float16
    # each is paired with PyTorch and computes the same function (abs sums within its rounding)
    pairs = {p["ort_target"]: p for p in report.pairs if p["label"] == "grouped"}
    assert set(pairs) == {"cpu/all/fp32", "cpu/all/fp16-io", "cpu/all/int8"}
    assert all(p["outputs_match"] for p in pairs.values())


def test_a_graph_without_an_int8_deployment_says_so_and_times_the_rest(deployments):
    report, _ = deployments
    shuffle = {c["target"]: c for c in report.cells if c["label"] == "channel_shuffle"}
    assert shuffle["cpu/all/fp32"]["status"] == "ok"
    assert shuffle["cpu/all/int8"]["status"] == "undeployable"
    assert "no int8 deployment" in shuffle["cpu/all/int8"]["error"]
    assert "nothing to quantize" in shuffle["cpu/all/int8"]["error"]
    # named by the variant, not by the bench's temporary copy of its graph
    assert "no int8 deployment: channel_shuffle: nothing" in shuffle["cpu/all/int8"]["error"]


def test_the_report_compares_every_deployment_with_fp32(deployments):
    report, _ = deployments
    rows = bench_report.deployment_speedups(report.to_dict()["cells"])
    assert {(r["label"], r["target"]) for r in rows} == {
        ("grouped", "cpu/all/fp16-io"),
        ("grouped", "cpu/all/int8"),
        ("channel_shuffle", "cpu/all/fp16-io"),
    }
    for r in rows:
        assert r["fp32_over_this"] == pytest.approx(r["fp32_p50_ms"] / r["p50_ms"])
    text = bench_report.to_markdown(report)
    assert "## Deployments against fp32" in text
    assert "| grouped | 1 | cpu/all/int8 |" in text
    assert report.to_dict()["settings"]["precisions"] == ["fp32", "fp16-io", "int8"]


def test_an_unknown_precision_is_refused_before_anything_runs():
    with pytest.raises(UserInputError, match="unknown precision 'int4'"):
        bench.run_bench(["grouped"], bench.BenchSettings(precisions=["int4"], eps=["cpu"]))
