"""Opset conversion (onnxconv.opset): what onnx's version converter converts, what it cannot
(reported per operator), and what it converts wrongly (found by running both graphs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper, version_converter
from onnx_builders import run_cpu as run

from onnxconv import feeds
from onnxconv.errors import UserInputError
from onnxconv.opset import (
    GRAPH,
    MIN_OPSET,
    check_equivalent,
    convert_opset,
    max_opset,
    model_opset,
)

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"
MANIFEST = json.loads((GRAPHS / "manifest.json").read_text())["graphs"]
ZOO = list(MANIFEST)
ATOL, RTOL = 1e-5, 1e-4

#: Down-steps V -> V-1 that onnx 1.23.2's converter has no adapter for (the first one each op
#: meets going down from 18), as measured on the zoo and on ShuffleNet/MobileNet.
NO_DOWN_ADAPTER = {
    "Split": 18,
    "Relu": 14,
    "Reshape": 14,
    "Add": 14,
    "Transpose": 13,
    "Concat": 13,
    "Gemm": 13,
    "ReduceMean": 13,
    "MaxPool": 10,
    "AveragePool": 10,
}


def zoo_case(name: str) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    model = onnx.load(GRAPHS / name / "model.onnx")
    config = MANIFEST[name]["config"]
    inputs = feeds.generate(
        model,
        name,
        batch=1,
        spatial={2: config["height"], 3: config["width"]},
        distribution="normal",
        seed=0,
    )
    return model, inputs


def vi(name: str, shape, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def init(name: str, values, dtype=np.float32) -> TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def make(nodes, inputs, outputs, inits=(), opset=18) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def assert_converted_and_equal(result, model, inputs, target):
    assert result.ok, result.summary()
    assert model_opset(result.model) == target
    onnx.checker.check_model(result.model, full_check=True)
    for got, want in zip(run(result.model, inputs), run(model, inputs)):
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)


# ---------------------------------------------------------------------------------------------
# the zoo (dynamo exports at opset 18)


@pytest.mark.parametrize("target", [17, 13, 11, 9])
@pytest.mark.parametrize("name", ZOO)
def test_zoo_graph_converts_down_or_names_each_blocking_op(name, target):
    model, inputs = zoo_case(name)
    assert model_opset(model) == 18
    result = convert_opset(model, target, feeds=inputs)
    assert (result.source_opset, result.target_opset) == (18, target)

    ops = {node.op_type for node in model.graph.node}
    expected = {
        (op, since, since - 1)
        for op, since in NO_DOWN_ADAPTER.items()
        if op in ops and target < since
    }
    if not expected:  # Conv-only graphs (standard, pointwise, depthwise, ...) and 17 without Split
        assert_converted_and_equal(result, model, inputs, target)
        return
    assert result.model is None
    assert {(p.op_type, p.from_opset, p.to_opset) for p in result.problems} == expected
    for problem in result.problems:
        assert problem.reason == (
            f"onnx has no adapter for {problem.op_type} from opset {problem.from_opset} "
            f"to {problem.to_opset}"
        )


@pytest.mark.parametrize("name", ZOO)
def test_zoo_graph_converts_up(name):
    model, inputs = zoo_case(name)
    for target in (21, max_opset()):
        result = convert_opset(model, target, feeds=inputs)
        assert result.ok, result.summary()
        assert model_opset(result.model) == target
    # ORT 1.32 runs up to opset 21 at least; check that one independently
    assert_converted_and_equal(convert_opset(model, 21), model, inputs, 21)


def test_conv_graph_goes_down_to_opset_7_and_back():
    model, inputs = zoo_case("separable")
    down = convert_opset(model, MIN_OPSET, feeds=inputs)
    assert_converted_and_equal(down, model, inputs, MIN_OPSET)
    up = convert_opset(down.model, 18, feeds=inputs)
    assert_converted_and_equal(up, model, inputs, 18)


# ---------------------------------------------------------------------------------------------
# operators that cannot be converted


def test_op_introduced_after_target_is_reported():
    """Gelu exists from opset 20; Conv and Transpose around it convert to 13 by themselves."""
    rng = np.random.default_rng(0)
    model = make(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Gelu", ["c"], ["g"], name="gelu"),
            helper.make_node("Transpose", ["g"], ["y"], name="nhwc", perm=[0, 2, 3, 1]),
        ],
        [vi("x", [1, 2, 4, 4])],
        [vi("y", [1, 4, 4, 3])],
        [init("w", rng.standard_normal((3, 2, 3, 3)))],
        opset=20,
    )
    result = convert_opset(model, 13)
    assert result.model is None and result.source_opset == 20
    assert result.problems == [("Gelu", 20, 19, "Gelu does not exist before opset 20")]
    assert "Gelu (opset 20 -> 19)" in result.summary()


def test_every_blocking_op_is_reported_not_only_the_first():
    model = make(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("Gelu", ["r"], ["g"], name="gelu"),
            helper.make_node("Reshape", ["g", "shape"], ["y"], name="flat"),
        ],
        [vi("x", [1, 2, 4, 4])],
        [vi("y", [1, 32])],
        [init("shape", [1, 32], np.int64)],
        opset=20,
    )
    with pytest.raises(RuntimeError) as raw:  # onnx names one op
        version_converter.convert_version(model, 13)
    assert sum(op in str(raw.value) for op in ("Relu", "Gelu", "Reshape")) == 1

    result = convert_opset(model, 13)
    assert result.model is None
    assert sorted((p.op_type, p.from_opset, p.to_opset) for p in result.problems) == [
        ("Gelu", 20, 19),
        ("Relu", 14, 13),
        ("Reshape", 14, 13),
    ]


def test_conversion_that_fails_the_checker_is_reported():
    """ReduceMean 18 -> 17 keeps noop_with_empty_axes (the dynamo exporter writes it)."""
    model = make(
        [
            helper.make_node(
                "ReduceMean", ["x", "axes"], ["y"], name="mean", keepdims=1, noop_with_empty_axes=0
            )
        ],
        [vi("x", [1, 2, 4, 4])],
        [vi("y", [1, 2, 1, 1])],
        [init("axes", [2, 3], np.int64)],
    )
    result = convert_opset(model, 17)
    assert result.model is None
    ((op, frm, to, reason),) = result.problems
    assert (op, frm, to) == ("ReduceMean", 18, 17)
    assert reason.startswith("the converted graph fails onnx.checker")
    assert "noop_with_empty_axes" in reason


# ---------------------------------------------------------------------------------------------
# conversions that succeed but compute something else


def softmax_model(axis: int) -> onnx.ModelProto:
    node = helper.make_node("Softmax", ["x"], ["y"], name="softmax", axis=axis)
    return make([node], [vi("x", [2, 4, 3])], [vi("y", [2, 4, 3])], opset=13)


def test_softmax_down_conversion_changes_the_output():
    """Softmax 13 -> 12 is re-stamped without an adapter: before 13 it normalises over all axes
    from ``axis`` on, so axis=1 of a rank-3 input means something else. The checker passes."""
    x = {"x": np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)}
    model = softmax_model(axis=1)
    result = convert_opset(model, 11, feeds=x)
    assert result.model is not None and not result.ok
    onnx.checker.check_model(result.model, full_check=True)
    ((op, frm, to, reason),) = result.problems
    assert (op, frm, to) == (GRAPH, 13, 11)
    assert reason.startswith("output 'y' differs from the original's: max abs error")
    assert np.abs(run(result.model, x)[0] - run(model, x)[0]).max() > 0.1
    assert check_equivalent(model, result.model, x) == result.problems

    # on the last axis both meanings agree
    last = softmax_model(axis=-1)
    assert_converted_and_equal(convert_opset(last, 11, feeds=x), last, x, 11)


def test_check_equivalent_reports_a_graph_ort_cannot_run():
    model, inputs = zoo_case("standard")
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    broken.graph.node[0].op_type = "NoSuchOp"
    ((op, _, _, reason),) = check_equivalent(model, broken, inputs)
    assert op == GRAPH and reason.startswith("ONNX Runtime cannot run the converted graph")


# ---------------------------------------------------------------------------------------------
# up-conversion


def test_opset_11_graph_converts_up_to_18():
    """Ops whose form changed on the way: Split/Squeeze/Unsqueeze (attribute -> input at 13),
    Softmax (meaning at 13), ReduceMean (axes input at 18)."""
    rng = np.random.default_rng(0)
    model = make(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("Split", ["r"], ["a", "b"], name="split", axis=1, split=[2, 2]),
            helper.make_node("ReduceMean", ["a"], ["m"], name="mean", axes=[2, 3], keepdims=0),
            helper.make_node("Unsqueeze", ["m"], ["mu"], name="unsq", axes=[2, 3]),
            helper.make_node("Softmax", ["b"], ["s"], name="softmax", axis=1),
            helper.make_node("Add", ["s", "mu"], ["t"], name="add"),
            helper.make_node("ReduceMean", ["t"], ["z"], name="mean2", axes=[3], keepdims=1),
            helper.make_node("Squeeze", ["z"], ["y"], name="squeeze", axes=[3]),
        ],
        [vi("x", [1, 3, 5, 5])],
        [vi("y", [1, 2, 5])],
        [init("w", rng.standard_normal((4, 3, 3, 3)))],
        opset=11,
    )
    x = {"x": rng.standard_normal((1, 3, 5, 5)).astype(np.float32)}
    result = convert_opset(model, 18, feeds=x)
    assert_converted_and_equal(result, model, x, 18)
    nodes = {n.name: n for n in result.model.graph.node}
    for name in ("split", "mean", "unsq", "squeeze"):
        assert len(nodes[name].input) == 2, name  # split / axes became inputs
        assert not {"split", "axes"} & {a.name for a in nodes[name].attribute}


@pytest.mark.parametrize("name", ["shufflenet_v2_unit", "shuffle_unit_s2", "inception"])
def test_torchscript_opset_11_export_converts_up(name):
    """The TorchScript exporter writes opset 11 (Slice, Constant, Shape/Gather, ...)."""
    pytest.importorskip("torch")
    from onnxconv import variants
    from onnxconv.export import ExportOptions, to_onnx

    spec = variants.get(name)
    cfg = spec.config()
    options = ExportOptions(opset=11, exporter="torchscript")
    model = to_onnx(spec.build(cfg, seed=0), spec.example_input(cfg), {}, options)
    assert model_opset(model) == 11
    inputs = feeds.generate(model, name, batch=1, spatial={}, distribution="normal", seed=0)
    for target in (13, 18):
        assert_converted_and_equal(
            convert_opset(model, target, feeds=inputs), model, inputs, target
        )


# ---------------------------------------------------------------------------------------------
# user input


@pytest.mark.parametrize("target", [MIN_OPSET - 1, 0, -3, max_opset() + 1, "13", 13.0, True])
def test_target_out_of_range_is_one_line_user_error(target):
    model, _ = zoo_case("standard")
    with pytest.raises(UserInputError) as error:
        convert_opset(model, target)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"target opset {target!r} out of range")
    assert f"opsets {MIN_OPSET} to {max_opset()}" in message


def test_model_without_default_domain_opset_is_user_error():
    model, _ = zoo_case("standard")
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(UserInputError, match="no ai.onnx opset"):
        convert_opset(model, 13)
