"""Tests for onnxconv.graph (inspection, cost, checks) on hand-built and exported graphs."""

from __future__ import annotations

import contextlib
import io
import json
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxconv.errors import CheckFailed, UserInputError
from onnxconv.graph import (
    cost_breakdown,
    find_channel_shuffles,
    find_convs,
    graph_cost,
    inspect_model,
    load_model,
)
from onnxconv.graph.checks import assert_structure, check_structure, lint_model

F = TensorProto.FLOAT

# --------------------------------------------------------------------------------------------
# builders


def make(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def vi(name, shape):
    return helper.make_tensor_value_info(name, F, shape)


def i64(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def weight(name, shape):
    return numpy_helper.from_array(np.zeros(shape, dtype=np.float32), name)


def const_node(out, values):
    return helper.make_node("Constant", [], [out], value=i64(out + "_v", values))


def shuffle_model(
    mode="initializer",
    g=3,
    c=12,
    h=5,
    w=5,
    batch="N",
    perm=(0, 2, 1, 3, 4),
    rank=5,
    identity_between=False,
    shape_batch=-1,
):
    """x -> Reshape(name "r1") -> Transpose("t") -> Reshape("r2") -> y, shape given per ``mode``:
    initializer | constant | computed (Shape/Gather/Unsqueeze/Concat) | attribute (opset 4)."""
    first = [shape_batch, g, c // g, h, w] if rank == 5 else [shape_batch, g, c // g, h * w]
    back = [shape_batch, c, h, w]
    x, y = vi("x", [batch, c, h, w]), vi("y", [batch, c, h, w])
    nodes, inits, opset = [], [], 17
    if mode == "initializer":
        inits = [i64("s1", first), i64("s2", back)]
    elif mode == "constant":
        nodes = [const_node("s1", first), const_node("s2", back)]
    elif mode == "computed":  # as the torchscript exporter emits with dynamic axes
        nodes = [helper.make_node("Shape", ["x"], ["shp"]), const_node("ax0", [0])]
        for i in range(4):
            nodes += [
                helper.make_node("Constant", [], [f"i{i}"], value=i64(f"i{i}_v", i)),
                helper.make_node("Gather", ["shp", f"i{i}"], [f"d{i}"], axis=0),
                helper.make_node("Unsqueeze", [f"d{i}", "ax0"], [f"u{i}"]),
            ]
        nodes += [
            helper.make_node("Constant", [], ["gc"], value=i64("gc_v", g)),
            helper.make_node("Div", ["d1", "gc"], ["cpg"]),
            helper.make_node("Unsqueeze", ["cpg", "ax0"], ["ucpg"]),
            const_node("g1", [g]),
            helper.make_node("Concat", ["u0", "g1", "ucpg", "u2", "u3"], ["s1"], axis=0),
            helper.make_node("Concat", ["u0", "u1", "u2", "u3"], ["s2"], axis=0),
        ]
        x, y = vi("x", [batch, c, "H", "W"]), vi("y", [batch, c, "H", "W"])
    elif mode == "attribute":
        opset = 4
    if mode == "attribute":
        nodes.append(helper.make_node("Reshape", ["x"], ["r1_out"], name="r1", shape=first))
    else:
        nodes.append(helper.make_node("Reshape", ["x", "s1"], ["r1_out"], name="r1"))
    mid = "r1_out"
    if identity_between:  # Reshape -> Identity -> Transpose
        nodes.append(helper.make_node("Identity", ["r1_out"], ["r1_id"], name="id"))
        mid = "r1_id"
    nodes.append(helper.make_node("Transpose", [mid], ["t_out"], name="t", perm=list(perm)))
    if mode == "attribute":
        nodes.append(helper.make_node("Reshape", ["t_out"], ["y"], name="r2", shape=back))
    else:
        nodes.append(helper.make_node("Reshape", ["t_out", "s2"], ["y"], name="r2"))
    return make(nodes, [x], [y], inits, opset)


def conv_model(
    x_shape, w_shape, group=1, pads=None, bias=True, kernel_attr=True, weight_via=None, y_shape=None
):
    """One Conv "conv"; ``weight_via``: None (initializer) | "constant" | "identity"."""
    k = list(w_shape[2:])
    attrs = {"group": group, "pads": pads if pads is not None else [0] * 2 * len(k)}
    if kernel_attr:
        attrs["kernel_shape"] = k
    nodes, inits = [], []
    w = numpy_helper.from_array(np.ones(w_shape, dtype=np.float32), "w")
    if weight_via == "constant":
        nodes.append(helper.make_node("Constant", [], ["w"], value=w))
    elif weight_via == "identity":
        w.name = "w_init"
        inits.append(w)
        nodes.append(helper.make_node("Identity", ["w_init"], ["w"]))
    else:
        inits.append(w)
    inputs = ["x", "w"]
    if bias:
        inits.append(weight("b", [w_shape[0]]))
        inputs.append("b")
    nodes.append(helper.make_node("Conv", inputs, ["y"], name="conv", **attrs))
    return make(nodes, [vi("x", x_shape)], [vi("y", y_shape)], inits)


# --------------------------------------------------------------------------------------------
# channel shuffle detection


@pytest.mark.parametrize("mode", ["initializer", "constant", "computed", "attribute"])
def test_rank5_shuffle_detected_whatever_holds_the_shape(mode):
    model = shuffle_model(mode, g=3, c=12)
    [s] = find_channel_shuffles(model)
    assert (s.reshape_in, s.transpose, s.reshape_out) == ("r1", "t", "r2")
    assert s.exact and s.problems == []
    assert (s.groups, s.channels_per_group, s.rank) == (3, 4, 5)
    assert check_structure(model, "channel_shuffle", {"groups": 3, "shuffles": 1}) == []


def test_computed_shape_keeps_dynamic_batch_unknown():
    [s] = find_channel_shuffles(shuffle_model("computed", g=4, c=16))
    assert s.groups == 4 and s.channels_per_group == 4  # 16 // 4 folded from Shape -> Gather -> Div
    assert s.batch == (None, None)  # batch read from Shape(x) at run time: nothing baked


def test_opset4_reshape_reads_shape_attribute():
    model = shuffle_model("attribute", g=2, c=8, batch=1, shape_batch=1)
    assert model.opset_import[0].version == 4
    [s] = find_channel_shuffles(model)
    assert s.groups == 2 and s.batch == (1, 1)


def test_groups_from_inferred_shape_when_shape_entry_is_minus_one():
    # shape (N, -1, 4, H, W): groups = 12 / (4*5*5) * ... read back from shape inference
    model = shuffle_model("initializer", g=3, c=12, batch=2)
    model.graph.initializer[0].CopyFrom(i64("s1", [2, -1, 4, 5, 5]))
    [s] = find_channel_shuffles(model)
    assert s.groups == 3


def test_rank4_shuffle():
    model = shuffle_model("initializer", g=4, c=8, rank=4, perm=(0, 2, 1, 3))
    [s] = find_channel_shuffles(model)
    assert s.exact and s.rank == 4 and s.groups == 4 and s.channels_per_group == 2
    assert check_structure(model, "channel_shuffle", {"groups": 4, "shuffle_rank": 4}) == []
    # rank-4 shuffle where rank 5 is expected
    problems = check_structure(model, "channel_shuffle", {"groups": 4, "shuffles": 1})
    assert [(p.node, p.found) for p in problems] == [("t", "rank 4"), ("<graph>", "0")]


@pytest.mark.parametrize("perm", [(0, 1, 2, 3, 4), (0, 2, 1, 4, 3)])
def test_wrong_perm_is_not_exact_and_fails_structure(perm):
    model = shuffle_model("initializer", perm=perm)
    [s] = find_channel_shuffles(model)
    assert not s.exact and "perm" in s.problems[0]
    problems = check_structure(model, "channel_shuffle", {"groups": 3})
    assert problems and problems[0].node == "t"
    with pytest.raises(
        CheckFailed, match=r"t: expected Reshape->Transpose\(perm \[0, 2, 1, 3, 4\]\)"
    ):
        assert_structure(model, "channel_shuffle", {"groups": 3}, source="graphs/x/model.onnx")


def test_identity_between_reshape_and_transpose_is_not_exact():
    model = shuffle_model("initializer", identity_between=True)
    [s] = find_channel_shuffles(model)
    assert not s.exact and s.between == ["id"] and s.groups == 3
    [problem] = check_structure(model, "channel_shuffle", {"groups": 3})
    assert problem.node == "t" and "id between" in problem.found


def test_shuffle_structure_counts_groups_and_stray_transposes():
    model = shuffle_model("initializer", g=3)
    [p] = check_structure(model, "channel_shuffle", {"groups": 4})
    assert (p.node, p.expected, p.found) == ("r1", "groups == 4", "groups 3")
    [p] = check_structure(model, "channel_shuffle", {"groups": 3, "shuffles": 2})
    assert p.node == "<graph>" and p.found == "1"
    # a lone Transpose is not a shuffle
    lone = make(
        [helper.make_node("Transpose", ["x"], ["y"], name="lone", perm=[0, 2, 1, 3])],
        [vi("x", [1, 2, 3, 4])],
        [vi("y", None)],
    )
    nodes = [p.node for p in check_structure(lone, "channel_shuffle", {"groups": 2})]
    assert nodes == ["lone", "<graph>"]


# --------------------------------------------------------------------------------------------
# convolutions


@pytest.mark.parametrize(
    "x_shape, w_shape, group, kind, multiplier",
    [
        ([1, 3, 8, 8], [8, 3, 3, 3], 1, "standard", None),
        ([1, 8, 8, 8], [16, 8, 1, 1], 1, "pointwise", None),
        ([1, 4, 8, 8], [8, 1, 3, 3], 4, "depthwise", 2),
        ([1, 8, 8, 8], [16, 2, 3, 3], 4, "grouped", None),
    ],
    ids=["standard", "pointwise", "depthwise-x2", "grouped-g4"],
)
def test_conv_kinds(x_shape, w_shape, group, kind, multiplier):
    [c] = find_convs(conv_model(x_shape, w_shape, group=group))
    assert (c.kind, c.depth_multiplier, c.group) == (kind, multiplier, group)
    assert (c.in_channels, c.out_channels) == (x_shape[1], w_shape[0])
    assert c.kernel == tuple(w_shape[2:]) and c.stride == (1, 1) and c.dilations == (1, 1)


@pytest.mark.parametrize("via", [None, "constant", "identity"])
def test_kernel_from_weight_when_attribute_missing(via):
    model = conv_model([1, 4, 8, 8], [8, 1, 5, 3], group=4, kernel_attr=False, weight_via=via)
    [c] = find_convs(model)
    assert c.kernel == (5, 3) and c.kernel_from == "weight"
    assert c.kind == "depthwise" and c.depth_multiplier == 2
    assert [f.code for f in lint_model(model)] == ["conv-no-kernel-shape"]


def test_flattened_pair_and_structure():
    nodes = [
        helper.make_node("Conv", ["x", "wl"], ["l"], name="lateral", kernel_shape=[1, 1]),
        helper.make_node(
            "Conv",
            ["l", "wv"],
            ["v"],
            name="vertical",
            kernel_shape=[3, 1],
            group=4,
            pads=[1, 0] * 2,
        ),
        helper.make_node(
            "Conv",
            ["v", "wh"],
            ["y"],
            name="horizontal",
            kernel_shape=[1, 3],
            group=4,
            pads=[0, 1] * 2,
        ),
    ]
    inits = [weight("wl", [4, 3, 1, 1]), weight("wv", [4, 1, 3, 1]), weight("wh", [4, 1, 1, 3])]
    model = make(nodes, [vi("x", [1, 3, 6, 6])], [vi("y", None)], inits)
    report = inspect_model(model)
    assert [(p.vertical, p.horizontal, p.kernel) for p in report.flattened_pairs] == [
        ("vertical", "horizontal", 3)
    ]
    assert check_structure(model, "flattened", {"kernel": 3}) == []
    [p] = check_structure(model, "flattened", {"kernel": 5})[:1]
    assert p.node == "vertical" and p.expected == "kernel 5x1"


def test_family_checks_on_single_convs():
    std = conv_model([1, 3, 8, 8], [8, 3, 3, 3], pads=[1, 1, 1, 1])
    pw = conv_model([1, 8, 8, 8], [16, 8, 1, 1])
    dw = conv_model([1, 4, 8, 8], [8, 1, 3, 3], group=4)
    grp = conv_model([1, 8, 8, 8], [16, 2, 3, 3], group=4)
    assert check_structure(std, "standard", {"kernel": 3}) == []
    assert check_structure(pw, "pointwise", {}) == []
    assert check_structure(dw, "depthwise", {"depth_multiplier": 2}) == []
    assert check_structure(grp, "grouped", {"groups": 4}) == []
    assert [p.node for p in check_structure(grp, "grouped", {"groups": 2})] == ["conv"]
    assert [p.node for p in check_structure(std, "pointwise", {})] == ["conv"]
    assert check_structure(std, "depthwise", {})[0].expected.startswith("a depthwise Conv")
    with pytest.raises(UserInputError, match="unknown structure check 'no_such_check'"):
        check_structure(std, "no_such_check", {})


def test_separable_needs_pointwise_after_depthwise():
    def model(between):
        nodes = [
            helper.make_node(
                "Conv", ["x", "wd"], ["d"], name="dw", kernel_shape=[3, 3], group=4, pads=[1] * 4
            )
        ]
        src = "d"
        if between:
            nodes.append(helper.make_node("Relu", ["d"], ["r"], name="relu"))
            src = "r"
        nodes.append(helper.make_node("Conv", [src, "wp"], ["y"], name="pw", kernel_shape=[1, 1]))
        inits = [weight("wd", [4, 1, 3, 3]), weight("wp", [8, 4, 1, 1])]
        return make(nodes, [vi("x", [1, 4, 8, 8])], [vi("y", None)], inits)

    assert check_structure(model(False), "separable", {}) == []
    [p] = check_structure(model(True), "separable", {})
    assert p.node == "dw" and p.found == "Relu relu"
    assert check_structure(model(True), "separable", {"between": ["Relu"]}) == []


def test_inception_counts_convs_and_one_channel_concat():
    nodes = [
        helper.make_node("Conv", ["x", f"w{i}"], [f"b{i}"], name=f"c{i}", kernel_shape=[1, 1])
        for i in range(4)
    ]
    nodes.append(helper.make_node("Concat", [f"b{i}" for i in range(4)], ["y"], name="cat", axis=1))
    model = make(
        nodes,
        [vi("x", [1, 4, 8, 8])],
        [vi("y", None)],
        [weight(f"w{i}", [2, 4, 1, 1]) for i in range(4)],
    )
    assert check_structure(model, "inception", {"convs": 4}) == []
    assert [p.found for p in check_structure(model, "inception", {"convs": 6})] == ["4"]


# --------------------------------------------------------------------------------------------
# cost


def test_cost_of_a_small_conv_by_hand():
    # x (1,3,8,8), W (8,3,3,3), bias 8, pads 1, stride 1 -> y (1,8,8,8)
    # params = 8*3*3*3 + 8 = 216 + 8 = 224
    # MACs   = N*C_out*H_out*W_out * (C_in/group)*kH*kW = 1*8*8*8 * 3*3*3 = 512 * 27 = 13824
    model = conv_model([1, 3, 8, 8], [8, 3, 3, 3], pads=[1, 1, 1, 1])
    assert graph_cost(model) == (224, 13824)


def test_cost_grouped_conv_and_dynamic_batch():
    # x (N,8,6,6), W (16,2,3,3) group 4, no pads -> y (N,16,4,4)
    # params = 16*2*3*3 + 16 = 288 + 16 = 304 ; MACs/sample = 16*4*4 * 2*3*3 = 256 * 18 = 4608
    model = conv_model(["N", 8, 6, 6], [16, 2, 3, 3], group=4)
    assert graph_cost(model) == (304, 4608)
    assert graph_cost(model, batch_size=4) == (304, 4 * 4608)


def test_cost_gemm_matmul_shared_weight_and_bn():
    # Gemm A(2,10) B(10,5) C(5): params 55, MACs 2*10*5 = 100
    # MatMul y(2,5) @ B2(5,3): params 15, MACs 2*5*3 = 30 ; B2 read twice, counted once
    nodes = [
        helper.make_node("Gemm", ["a", "B", "C"], ["g"]),
        helper.make_node("MatMul", ["g", "B2"], ["m1"]),
        helper.make_node("MatMul", ["g", "B2"], ["m2"]),
        helper.make_node("Add", ["m1", "m2"], ["y"]),
    ]
    inits = [weight("B", [10, 5]), weight("C", [5]), weight("B2", [5, 3])]
    model = make(nodes, [vi("a", [2, 10])], [vi("y", None)], inits)
    cost = cost_breakdown(model)
    assert (cost.params, cost.macs) == (55 + 15, 100 + 30 + 30)
    assert cost.params_by_op == {"Gemm": 55, "MatMul": 15}
    assert cost.macs_by_op == {"Gemm": 100, "MatMul": 60}


def test_cost_counts_shared_weight_once_but_identity_aliases_apart():
    # c1 and c2 read the same weight "w" (shared: 4*4 = 16 once); their biases are two Identity
    # aliases of one initializer "b" (torchscript's dedup of equal values: 4 + 4)
    nodes = [
        helper.make_node("Identity", ["b"], ["b1"]),
        helper.make_node("Identity", ["b"], ["b2"]),
        helper.make_node("Conv", ["x", "w", "b1"], ["h"], kernel_shape=[1, 1]),
        helper.make_node("Conv", ["h", "w", "b2"], ["y"], kernel_shape=[1, 1]),
    ]
    model = make(
        nodes,
        [vi("x", [1, 4, 2, 2])],
        [vi("y", None)],
        [weight("w", [4, 4, 1, 1]), weight("b", [4])],
    )
    # MACs: two convs, each 1*4*2*2 outputs * 4*1*1 = 16 * 4 = 64
    assert graph_cost(model) == (16 + 4 + 4, 2 * 64)


def test_cost_sees_through_shape_arithmetic_that_shape_inference_skips():
    # torchscript's chunk(): Slice ends = Shape(x)[1] / 2. ONNX data propagation stops at Div, so
    # plain inference loses every dim of "xs"; the index folds the ends and infers again.
    # x (N,8,6,6) -> xs (N,4,6,6) -> 1x1 Conv 4->4: MACs = 1*4*6*6 * 4 = 576 at batch 1
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"]),
        const_node("one", [1]),
        const_node("zero", [0]),
        const_node("two", [2]),
        helper.make_node("Gather", ["shp", "one"], ["c"], axis=0),
        helper.make_node("Div", ["c", "two"], ["half"]),
        helper.make_node("Slice", ["x", "zero", "half", "one"], ["xs"]),
        helper.make_node("Conv", ["xs", "w"], ["y"], name="conv", kernel_shape=[1, 1]),
    ]
    model = make(nodes, [vi("x", ["N", 8, 6, 6])], [vi("y", None)], [weight("w", [4, 4, 1, 1])])
    plain = onnx.shape_inference.infer_shapes(model, data_prop=True)
    xs = next(v for v in plain.graph.value_info if v.name == "xs")
    assert not xs.type.tensor_type.shape.dim[1].HasField("dim_value")  # the gap being covered
    assert graph_cost(model) == (16, 576)


# --------------------------------------------------------------------------------------------
# report and loading


def test_inspect_report_is_json_ready():
    report = inspect_model(shuffle_model("constant"))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["opsets"] == {"ai.onnx": 17}
    assert data["op_counts"] == {"Constant": 2, "Reshape": 2, "Transpose": 1}
    assert data["inputs"] == {"x": ["N", 12, 5, 5]}
    assert data["shuffles"][0]["groups"] == 3


@pytest.fixture
def model_bytes():
    # outputs need a shape for onnx.checker
    return conv_model([1, 3, 8, 8], [8, 3, 3, 3], y_shape=[1, 8, 6, 6]).SerializeToString()


@pytest.mark.parametrize(
    "case", ["missing", "directory", "empty", "truncated", "random", "text", "parses"]
)
def test_load_model_errors_name_the_path(tmp_path, model_bytes, case):
    path = tmp_path / f"{case}.onnx"
    if case == "directory":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        path.write_bytes(model_bytes[: len(model_bytes) // 2])
    elif case == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif case == "text":
        path.write_text("this is not a model\nbut a text file\n")
    elif case == "parses":  # valid protobuf (ir_version = 7 only): no graph, no opset_import
        path.write_bytes(b"\x08\x07")
    with pytest.raises(UserInputError) as err:
        load_model(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_load_model_reads_and_checks(tmp_path, model_bytes):
    path = tmp_path / "ok.onnx"
    path.write_bytes(model_bytes)
    assert len(load_model(path, check=True).graph.node) == 1
    broken = onnx.load_from_string(model_bytes)
    broken.graph.node[0].input[1] = "no_such_weight"
    onnx.save(broken, tmp_path / "broken.onnx")
    with pytest.raises(UserInputError, match=r"broken\.onnx: fails onnx\.checker"):
        load_model(tmp_path / "broken.onnx", check=True)


def test_load_model_external_data(tmp_path, model_bytes):
    path = tmp_path / "ext.onnx"
    onnx.save(
        onnx.load_from_string(model_bytes),
        path,
        save_as_external_data=True,
        location="ext.data",
        size_threshold=0,
    )
    assert len(load_model(path, check=True).graph.initializer) == 2
    (tmp_path / "ext.data").unlink()
    with pytest.raises(UserInputError, match=r"ext\.onnx: cannot load ONNX model"):
        load_model(path)


# --------------------------------------------------------------------------------------------
# lint


def test_lint_unfolded_bn():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"], name="bn"),
    ]
    inits = [weight("w", [4, 3, 1, 1])] + [weight(n, [4]) for n in "sbmv"]
    model = make(nodes, [vi("x", [1, 3, 4, 4])], [vi("y", None)], inits)
    [f] = lint_model(model)
    assert (f.code, f.severity, f.node) == ("unfolded-bn", "warning", "bn")
    assert cost_breakdown(model).bn_affine_params == 8  # gamma + beta, not in params
    assert graph_cost(model)[0] == 12


def test_lint_rank5_and_fixed_batch_shuffle():
    ok = shuffle_model("initializer", batch="N", shape_batch=-1)
    codes = [f.code for f in lint_model(ok)]
    assert codes == ["rank5-tensor", "rank5-tensor"]  # Reshape and Transpose outputs
    assert {f.node for f in lint_model(ok)} == {"r1", "t"}
    baked = shuffle_model("initializer", batch="N", shape_batch=1)
    fixed = [f for f in lint_model(baked) if f.code == "shuffle-fixed-batch"]
    assert [f.node for f in fixed] == ["r1", "r2"]
    assert "shuffle reshape fixes batch to 1 but input batch is dynamic" in fixed[0].message
    # a fixed batch is fine when the input batch is fixed too, and 0 copies the batch
    assert not [
        f
        for f in lint_model(shuffle_model(batch=1, shape_batch=1))
        if f.code == "shuffle-fixed-batch"
    ]
    assert not [
        f
        for f in lint_model(shuffle_model(batch="N", shape_batch=0))
        if f.code == "shuffle-fixed-batch"
    ]


def test_lint_ops_above_target_opset():
    model = shuffle_model("initializer")  # opset 17: Reshape-14, Transpose-13
    [f] = [f for f in lint_model(model, target_opset=13) if f.code == "op-above-target-opset"]
    assert (f.node, f.severity) == ("r1", "warning") and "Reshape" in f.message
    assert not [f for f in lint_model(model, target_opset=17) if f.code == "op-above-target-opset"]
    gelu = make(
        [helper.make_node("Gelu", ["x"], ["y"], name="gelu")],
        [vi("x", [2])],
        [vi("y", None)],
        opset=20,
    )
    [f] = lint_model(gelu, target_opset=17)
    assert (f.code, f.severity, f.node) == ("op-above-target-opset", "error", "gelu")


# --------------------------------------------------------------------------------------------
# real exports


def shuffle_module(groups):
    """A torch module doing the textbook channel shuffle (torch imported lazily)."""
    import torch

    class Shuffle(torch.nn.Module):
        def forward(self, x):
            n, c, h, w = x.shape
            return (
                x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
            )

    return Shuffle()


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_torch_export_shuffle_detected(tmp_path, dynamo):
    torch = pytest.importorskip("torch")
    if dynamo:
        pytest.importorskip("onnxscript")
    path = tmp_path / "shuffle.onnx"
    kwargs = {"external_data": False} if dynamo else {"dynamic_axes": {"x": {0: "batch"}}}
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            shuffle_module(4),
            (torch.randn(2, 8, 5, 5),),
            str(path),
            dynamo=dynamo,
            opset_version=17,
            input_names=["x"],
            output_names=["y"],
            **kwargs,
        )
    model = load_model(path, check=True)
    [s] = find_channel_shuffles(model)
    assert s.exact and s.groups == 4 and s.channels_per_group == 2 and s.rank == 5
    assert check_structure(model, "channel_shuffle", {"groups": 4, "shuffles": 1}) == []
