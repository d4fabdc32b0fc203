"""Every node timed alone: the split into one-node models is faithful, skips say why, the timings
land in the bench report. Times themselves are never asserted, only that they were measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from cuda_marks import cuda_only
from onnx import TensorProto, helper
from onnx_builders import make_init, make_model
from test_bench import FAST

from onnxconv.bench import harness as bench
from onnxconv.bench import report as bench_report
from onnxconv.bench.node_times import split_nodes, time_nodes
from onnxconv.divergence import with_all_outputs
from onnxconv.errors import UserInputError
from onnxconv.runtime import EpUnavailable, Target, ep_unavailable_reason, make_session, run

#: One short CPU round, no profile, no roofs: what the per-node pass is tested under.
QUICK = {**FAST, "rounds": 1, "eps": ["cpu"], "profile": False, "roofs": False}

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"


@pytest.mark.parametrize("name", ["shuffle_unit", "inception", "flattened"])
def test_one_node_models_reproduce_the_graphs_own_intermediates(name):
    model = onnx.load(GRAPHS / name / "model.onnx")
    x = (
        np.random.default_rng(0)
        .standard_normal([d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim])
        .astype(np.float32)
    )
    every = run(
        make_session(with_all_outputs(model), Target("cpu", "disabled")),
        {model.graph.input[0].name: x},
    )
    every[model.graph.input[0].name] = x
    parts = split_nodes(model)
    assert [p.op_type for p in parts] == [n.op_type for n in model.graph.node]
    for part in parts:
        assert part.skipped is None, (part.name, part.skipped)
        onnx.checker.check_model(part.model, full_check=True)
        feeds = {i.name: every[i.name] for i in part.model.graph.input}
        got = run(make_session(part.model, Target("cpu", "disabled")), feeds)
        for out, value in got.items():
            np.testing.assert_allclose(value, every[out], rtol=1e-5, atol=1e-5, err_msg=part.name)


def _shape_driven_graph() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 96])
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape", end=1),
        helper.make_node(
            "Constant",
            [],
            ["minus_one"],
            name="const",
            value=helper.make_tensor("v", TensorProto.INT64, [1], [-1]),
        ),
        helper.make_node("Concat", ["s", "minus_one"], ["target"], name="concat", axis=0),
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "target"], ["flat"], name="reshape"),
        helper.make_node("Mul", ["flat", "scale"], ["y"], name="mul"),
    ]
    return make_model(nodes, [x], [y], [make_init("scale", np.full([1], 2.0, np.float32))])


def test_skipped_nodes_say_why_and_constants_travel_as_initializers():
    parts = {p.name: p for p in split_nodes(_shape_driven_graph())}
    assert parts["const"].skipped == "a constant: no computation"
    assert "'s' is computed at run time and is not floating point" in parts["concat"].skipped
    assert "'target' is computed at run time" in parts["reshape"].skipped
    for name in ("shape", "relu", "mul"):
        assert parts[name].skipped is None
    assert [i.name for i in parts["mul"].model.graph.initializer] == ["scale"]


def test_time_nodes_measures_every_node_it_can():
    result = time_nodes(_shape_driven_graph(), "cpu", "disabled", warmup=1, calls=3)
    rows = result["nodes"]
    assert [r["name"] for r in rows] == ["shape", "const", "concat", "relu", "reshape", "mul"]
    timed = [r for r in rows if r["ms"] is not None]
    assert [r["name"] for r in timed] == ["shape", "relu", "mul"]
    assert all(r["ms"] > 0 and r["p90_ms"] >= r["ms"] and r["skipped"] is None for r in timed)
    assert result["sum_ms"] == pytest.approx(sum(r["ms"] for r in timed))
    assert sum(result["fractions"].values()) == pytest.approx(1.0)
    assert result["groups_ms"]["shuffle"] == 0.0  # the Reshape was skipped, not timed as zero


def test_time_nodes_refuses_an_unavailable_ep():
    reason = ep_unavailable_reason("cuda")
    if reason is None:
        pytest.skip("the CUDA EP is active here")
    with pytest.raises(EpUnavailable) as info:
        time_nodes(_shape_driven_graph(), "cuda")
    assert info.value.reason == reason


def test_bench_per_node_lands_in_the_report(tmp_path):
    report = bench.run_bench(
        ["shuffle_unit"],
        bench.BenchSettings(**QUICK, per_node=True, per_node_calls=3),
        overrides={"height": 8, "width": 8},
    )
    ort_cell = next(c for c in report.cells if c["backend"] == "ort")
    torch_cell = next(c for c in report.cells if c["backend"] == "torch")
    assert torch_cell["per_node"] is None
    nodes = ort_cell["per_node"]["nodes"]
    assert [n["op_type"] for n in nodes] == [
        "Conv",
        "Relu",
        "Reshape",
        "Transpose",
        "Reshape",
        "Conv",
        "Conv",
        "Add",
        "Relu",
    ]
    assert all(n["ms"] > 0 for n in nodes)
    convs = [n for n in nodes if n["op_type"] == "Conv"]
    assert sum(n["macs"] for n in convs) == ort_cell["macs"]
    assert all(n["gflops"] == pytest.approx(2 * n["macs"] / n["ms"] / 1e6) for n in convs)
    assert all(n["macs"] is None and n["gflops"] is None for n in nodes if n not in convs)
    text = bench_report.to_markdown(report)
    assert "## Per node, each timed alone" in text and "| 3 | node_transpose | Transpose |" in text
    ops = {op["op_type"]: op for op in bench_report.by_op_type(ort_cell["per_node"])}
    assert (ops["Conv"]["nodes"], ops["Reshape"]["nodes"], ops["Relu"]["nodes"]) == (3, 2, 2)
    assert ops["Conv"]["macs"] == ort_cell["macs"] and ops["Reshape"]["gflops"] is None
    assert sum(op["share"] for op in ops.values()) == pytest.approx(1.0)
    assert f"| Conv | 3 | {ops['Conv']['ms']:.4g} |" in text


@pytest.mark.parametrize("name", ["standard", "inception", "shuffle_unit_s2", "flattened"])
def test_node_macs_add_up_to_the_graph_cost(name):
    from onnxconv.graph import graph_cost, node_macs

    model = onnx.load(GRAPHS / name / "model.onnx")
    per_node = node_macs(model)
    assert len(per_node) == len(model.graph.node)
    assert sum(m for m in per_node if m) == graph_cost(model)[1]
    assert all(
        (m is not None) == (n.op_type in ("Conv", "Gemm", "MatMul"))
        for m, n in zip(per_node, model.graph.node)
    )


def test_dynamic_batch_graph_is_timed_at_the_batch_fed(tmp_path):
    from onnxconv.export import ExportOptions, export_variants

    (exported,) = export_variants(
        ["shuffle_unit"],
        tmp_path / "g",
        ExportOptions(dynamic_batch=True),
        overrides={"height": 8, "width": 8},
    )
    model = onnx.load(exported.model_path)
    assert all(p.skipped for p in split_nodes(model) if p.op_type == "Conv")  # batch unknown
    report = bench.run_bench(
        [exported.model_path],
        bench.BenchSettings(**QUICK, batches=[2], per_node=True, per_node_calls=3),
    )
    (cell,) = [c for c in report.cells if c["backend"] == "ort"]  # PyTorch ran beside it
    convs = [n for n in cell["per_node"]["nodes"] if n["op_type"] == "Conv"]
    assert len(convs) == 3 and all(n["ms"] > 0 and n["skipped"] is None for n in convs)
    assert sum(n["macs"] for n in convs) == cell["macs"]  # at batch 2
    with pytest.raises(UserInputError, match="rank 4, got shape"):
        time_nodes(model, input_shapes={model.graph.input[0].name: (2, 960)})


@cuda_only
def test_every_node_of_the_shuffle_unit_runs_alone_on_cuda():
    result = time_nodes(
        onnx.load(GRAPHS / "shuffle_unit" / "model.onnx"), "cuda", "all", warmup=2, calls=5
    )
    assert all(r["ms"] is not None and r["ms"] > 0 for r in result["nodes"]), result["nodes"]


def test_a_tensor_fed_twice_is_one_input_of_the_one_node_model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    model = make_model([helper.make_node("Add", ["x", "x"], ["y"], name="double")], [x], [y], [])
    (part,) = split_nodes(model)
    assert [i.name for i in part.model.graph.input] == ["x"]
    feeds = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    got = run(make_session(part.model, Target("cpu", "disabled")), feeds)["y"]
    np.testing.assert_array_equal(got, 2 * feeds["x"])
