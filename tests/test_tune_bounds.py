"""What bounds a tuned deployment (onnxconv/tune/bounds.py): the analysis on nodes really timed
alone, the bytes the data-moving nodes move, and tune --explain writing it into the report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxconv.bench.node_times import time_nodes
from onnxconv.cli import main
from onnxconv.tune import bounds

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"


@pytest.fixture(scope="module")
def unit():
    model = onnx.load(GRAPHS / "shuffle_unit" / "model.onnx")
    return model, time_nodes(model, "cpu", "all", threads=1, warmup=1, calls=3)


def test_a_transpose_moves_its_tensor_twice_and_a_conv_is_not_data_movement():
    model = onnx.load(GRAPHS / "channel_shuffle" / "model.onnx")
    shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
    moved = bounds.moved_bytes(model, {model.graph.input[0].name: shape})
    (transpose,) = [i for i, n in enumerate(model.graph.node) if n.op_type == "Transpose"]
    assert moved[transpose] == 2 * 4 * int(np.prod(shape))  # read + write, float32
    assert bounds.part_of("Transpose") == bounds.part_of("Gather") == "data movement"
    assert bounds.part_of("FusedConv") == "convolutions" and bounds.part_of("Relu") == "other nodes"


def test_a_slow_whole_is_bound_by_overhead(unit):
    model, per_node = unit
    nodes_ms = sum(n["ms"] for n in per_node["nodes"] if n["ms"] is not None)
    b = bounds.analyse(10 * nodes_ms, None, per_node, None, [0] * len(model.graph.node))
    assert b["bound"] == "overhead" and b["nodes_sum_ms"] == pytest.approx(nodes_ms)
    assert b["parts_ms"]["overhead"] == pytest.approx(9 * nodes_ms)
    assert "launch and framework overhead" in bounds.describe(b)


def test_the_units_convolutions_bound_it_against_a_fast_pytorch(unit):
    model, per_node = unit
    nodes_ms = sum(n["ms"] for n in per_node["nodes"] if n["ms"] is not None)
    roofs = {"compute_gflops": 100.0, "memory_gbps": 10.0}
    first = model.graph.input[0]
    shapes = {first.name: tuple(d.dim_value for d in first.type.tensor_type.shape.dim)}
    b = bounds.analyse(nodes_ms, nodes_ms / 100, per_node, roofs, bounds.moved_bytes(model, shapes))
    # Two grouped 1x1 Convs and a depthwise 3x3 over 960 channels: the arithmetic dominates.
    assert b["moved_bytes"] > 2 * 4 * np.prod(shapes[first.name]) / 4  # the shuffle's copies
    assert b["bound"] == "convolutions" and b["parts_ms"]["overhead"] == pytest.approx(0, abs=1e-9)
    assert b["conv_macs"] > 0 and b["conv_roof_ms"] == pytest.approx(2 * b["conv_macs"] / 1e8)
    assert b["slowest_node"]["op_type"] == "Conv" and b["alone_slower_than_torch"]
    said = bounds.describe(b)
    assert said.startswith("the convolution kernels") and "no change to the rest" in said
    # the part's time is what is compared, not its slowest node's (the H100 report read as if
    # one 2.01 ms Conv were slower than PyTorch's 2.87 ms run)
    conv_ms = b["parts_ms"]["convolutions"]
    assert f"; this part alone ({conv_ms:.3g} ms) is slower than PyTorch eager's whole run" in said


def test_a_dense_block_diagonal_conv_counts_its_useful_work_not_its_zeros():
    from onnxconv.graph import graph_cost
    from onnxconv.tune.rewrites import grouped_dense

    model = onnx.load(GRAPHS / "grouped" / "model.onnx")
    dense = grouped_dense(model).model
    first = model.graph.input[0]
    shapes = {first.name: tuple(d.dim_value for d in first.type.tensor_type.shape.dim)}
    useful = bounds.conv_macs(model, shapes)
    groups = next(a.i for a in model.graph.node[0].attribute if a.name == "group")
    assert useful == graph_cost(model)[1] and bounds.conv_macs(dense, shapes) == groups * useful
    per_node = time_nodes(dense, "cpu", "all", threads=1, warmup=1, calls=3)
    conv_ms = sum(n["ms"] for n in per_node["nodes"] if "Conv" in n["op_type"])
    roofs = {"compute_gflops": 100.0, "memory_gbps": 10.0}
    b = bounds.analyse(conv_ms, None, per_node, roofs, [0] * len(dense.graph.node), useful)
    assert b["conv_macs"] == useful and b["conv_macs_executed"] == groups * useful
    assert b["conv_gflops"] == pytest.approx(2 * useful / (conv_ms / 1e3) / 1e9)
    assert b["conv_roof_ms"] == pytest.approx(2 * useful / 1e8)
    said = bounds.describe(b)
    assert "of useful work" in said and f"execute {groups * useful:,} multiply-adds" in said


def test_tune_explain_writes_the_bound_into_the_report(tmp_path, capsys):
    shutil.copytree(GRAPHS / "channel_shuffle", tmp_path / "channel_shuffle")
    shutil.copy(GRAPHS / "manifest.json", tmp_path / "manifest.json")
    args = ["tune", str(tmp_path / "channel_shuffle"), "--rewrites", "shuffle_gather"]
    args += ["--no-settings", "--rounds", "1", "--blocks", "1", "--calls", "5", "--retries", "0"]
    args += ["--explain", "--quiet", "--json", str(tmp_path / "r.json")]
    args += ["--markdown", str(tmp_path / "r.md")]
    assert main(args) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    b = report["bound"]
    assert b["bound"] in bounds.PARTS and b["sentence"] in capsys.readouterr().out
    assert (
        b["p50_ms"]
        == next(c for c in report["candidates"] if c["winner"])["timing"]["stats"]["p50_ms"]
    )
    assert b["memory_roof_gbps"] > 0 and b["moved_bytes"] > 0  # the shuffle's copies
    assert {n["op_type"] for n in b["per_node"]["nodes"]} <= {"Gather", "Reshape", "Transpose"}
    assert "## What bounds the winner" in (tmp_path / "r.md").read_text()


def test_without_explain_a_winner_faster_than_pytorch_is_not_analysed(tmp_path):
    shutil.copytree(GRAPHS / "channel_shuffle", tmp_path / "channel_shuffle")
    args = ["tune", str(tmp_path / "channel_shuffle"), "--rewrites", "none", "--no-settings"]
    args += ["--rounds", "1", "--blocks", "1", "--calls", "3", "--retries", "0", "--quiet"]
    assert main([*args, "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["torch"]["formulations"] is None  # a bare graph: no PyTorch to lose to
    assert report["bound"] is None
