"""fp16: the converter keeps graph I/O fp32 and matches the fp32 reference within fp16 tolerance."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxconv.errors import UserInputError
from onnxconv.fp16 import to_fp16
from onnxconv.parity import compare, default_tolerance
from onnxconv.precisions import deploy
from onnxconv.runtime import Target, make_session, run

FP32_CPU = default_tolerance("fp32", "cpu")


def test_to_fp16_converts_weights_and_keeps_io_float32(mini_net):
    model, x, ref = mini_net
    before = model.SerializeToString()
    half = to_fp16(model)
    assert model.SerializeToString() == before  # input untouched
    onnx.checker.check_model(half, full_check=True)

    float_inits = [
        i for i in half.graph.initializer if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)
    ]
    assert float_inits and all(i.data_type == TensorProto.FLOAT16 for i in float_inits)
    assert {i.name: i.data_type for i in half.graph.initializer}["shape5"] == TensorProto.INT64
    const = next(n for n in half.graph.node if n.op_type == "Constant")
    assert const.attribute[0].t.data_type == TensorProto.FLOAT16
    inner_cast = next(n for n in half.graph.node if n.name == "cast")
    assert inner_cast.attribute[0].i == TensorProto.FLOAT16

    for vi in list(half.graph.input) + list(half.graph.output):
        assert vi.type.tensor_type.elem_type == TensorProto.FLOAT
    assert [o.name for o in half.graph.output] == ["logits", "cat"]
    assert half.graph.node[0].op_type == "Cast" and half.graph.node[0].input[0] == "x"
    assert [n.op_type for n in half.graph.node[-2:]] == ["Cast", "Cast"]


@pytest.mark.parametrize("opt_level", ["disabled", "all"])
def test_fp16_session_matches_fp32_reference(mini_net, opt_level):
    model, x, ref = mini_net
    info = make_session(deploy(model, "fp16-onnxconv"), Target("cpu", opt_level, "fp16-onnxconv"))
    assert all(s.dtype == np.float32 for s in info.inputs + info.outputs)
    out = run(info, {"x": x})
    tol = default_tolerance("fp16", "cpu")
    for name in ("logits", "cat"):
        assert out[name].dtype == np.float32
        result = compare(out[name], ref[name], tol, name=name)
        assert result.passed, result.reason
        assert result.max_abs > 0  # it really ran in fp16: not bit-identical to fp32
    # and fp16 is genuinely less accurate than the fp32 tolerance allows somewhere
    fp32_out = run(make_session(model, Target("cpu", opt_level)), {"x": x})
    assert (
        compare(fp32_out["cat"], ref["cat"], FP32_CPU).max_abs
        < compare(out["cat"], ref["cat"], tol).max_abs
    )


def test_to_fp16_rejects_subgraphs():
    then = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])],
    )
    node = helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then, else_branch=then)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    with pytest.raises(UserInputError, match="'branch'.*subgraph"):
        to_fp16(helper.make_model(graph))
