"""The standard fp16 converter (onnxconverter-common) next to onnxconv's own (:func:`to_fp16`).

On the zoo both give valid graphs with bitwise-identical ONNX Runtime outputs; on the cases the
own converter was written for, the standard one is wrong in several (and right in one: Range).
Each case below asserts which converter is right, against the fp32 graph run by ONNX Runtime.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import run_cpu as run

from onnxconv import feeds
from onnxconv.errors import CheckFailed, UserInputError
from onnxconv.fp16 import to_fp16, to_fp16_io16, to_fp16_standard
from onnxconv.precisions import CONVERTER_CHANGES

float16 = pytest.importorskip("onnxconverter_common.float16")

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"
ZOO = list(json.loads((GRAPHS / "manifest.json").read_text())["graphs"])
#: fp16 tolerance: max |fp16 - fp32| over the fp32 output's RMS (unit roundoff 4.9e-4, ~10 ops).
FP16_TOL = 1e-2
FP32, FP16 = TensorProto.FLOAT, TensorProto.FLOAT16


def rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    """max |out - ref| / RMS(ref)."""
    ref = ref.astype(np.float64)
    rms = float(np.sqrt(np.mean(ref**2)))
    return float(np.max(np.abs(out.astype(np.float64) - ref))) / rms


def raw_standard(model: onnx.ModelProto) -> onnx.ModelProto:
    """What users get from onnxconverter-common directly, unchecked."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float16.convert_float_to_float16(model, keep_io_types=True)


def is_valid(model: onnx.ModelProto) -> bool:
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception:
        return False
    return True


def casts(model: onnx.ModelProto) -> int:
    return Counter(n.op_type for n in model.graph.node)["Cast"]


def elem_types(vis) -> list[int]:
    return [vi.type.tensor_type.elem_type for vi in vis]


def vi(name: str, shape, elem: int = FP32) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def graph(nodes, inputs, outputs, inits=(), opset=18, value_info=()) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits), value_info=list(value_info))
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def init(name: str, values, dtype=np.float32) -> TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


X = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
X_IN, Y_OUT = vi("x", [1, 2, 4, 4]), vi("y", [1, 2, 4, 4])


def assert_right(convert, model: onnx.ModelProto, inputs=None) -> None:
    """``convert(model)`` passes the checker, keeps float32 I/O and matches fp32 within FP16_TOL."""
    inputs = inputs or {"x": X}
    half = convert(model)
    onnx.checker.check_model(half, full_check=True)
    assert set(elem_types(half.graph.input)) | set(elem_types(half.graph.output)) <= {
        FP32,
        TensorProto.BOOL,
    }
    for out, ref in zip(run(half, inputs), run(model, inputs)):
        assert out.dtype == ref.dtype
        assert rel_err(out, ref) < FP16_TOL


def assert_standard_wrong(model: onnx.ModelProto) -> None:
    """onnxconverter-common's graph fails the checker and ONNX Runtime; the wrapper says so."""
    bad = raw_standard(model)
    assert not is_valid(bad)
    with pytest.raises(Exception):
        run(bad, {"x": X})
    with pytest.raises(CheckFailed, match="invalid fp16 graph"):
        to_fp16_standard(model)


# ---------------------------------------------------------------------------------------------
# the zoo


@pytest.fixture(scope="module")
def zoo() -> dict[str, tuple[onnx.ModelProto, dict[str, np.ndarray], list[np.ndarray]]]:
    cases = {}
    for name in ZOO:
        model = onnx.load(GRAPHS / name / "model.onnx")
        inputs = feeds.generate(model, name, batch=1, spatial={}, distribution="normal", seed=0)
        cases[name] = (model, inputs, run(model, inputs))
    return cases


def check_both_converters(model, inputs, ref, tol=FP16_TOL) -> dict[str, onnx.ModelProto]:
    """Both converters: valid graph, float32 I/O, within ``tol``, and the same numbers."""
    halves = {"own": to_fp16(model), "standard": to_fp16_standard(model)}
    outs = {}
    for label, half in halves.items():
        onnx.checker.check_model(half, full_check=True)
        assert set(elem_types(half.graph.input)) == {FP32}, label
        assert set(elem_types(half.graph.output)) == {FP32}, label
        outs[label] = run(half, inputs)
        for out, r in zip(outs[label], ref):
            assert out.dtype == np.float32
            assert 0 < rel_err(out, r) < tol, label  # > 0: it really ran in fp16
    for a, b in zip(outs["own"], outs["standard"]):
        assert rel_err(a, b) < 1e-5  # the same fp16 computation, up to float32 rounding
    return halves, outs


@pytest.mark.parametrize("name", ZOO)
def test_both_converters_match_fp32_on_zoo_graph(zoo, name):
    model, inputs, ref = zoo[name]
    before = model.SerializeToString()
    halves, outs = check_both_converters(model, inputs, ref)
    assert model.SerializeToString() == before  # input untouched
    np.testing.assert_array_equal(outs["own"][0], outs["standard"][0])  # bitwise, on the zoo

    # own: one Cast per graph input and output; standard: one per consumer of the input
    consumers = sum(i == "input" for n in model.graph.node for i in n.input)
    assert casts(halves["own"]) - casts(model) == 2
    assert casts(halves["standard"]) - casts(model) == consumers + 1


@pytest.mark.parametrize("name", ZOO)
def test_fp16_io_variant_on_zoo_graph(zoo, name):
    model, inputs, ref = zoo[name]
    half = to_fp16_io16(model)
    onnx.checker.check_model(half, full_check=True)
    assert elem_types(half.graph.input) == [FP16] and elem_types(half.graph.output) == [FP16]
    assert casts(half) == casts(model) == 0  # no Cast at the boundary, none inside
    assert {p.key: p.value for p in half.metadata_props}["onnxconv.fp16_io"] == "float16"
    (out,) = run(half, {k: v.astype(np.float16) for k, v in inputs.items()})
    assert out.dtype == np.float16
    assert rel_err(out, ref[0]) < FP16_TOL


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shufflenet", "mobilenet_v1"])
def test_both_converters_match_fp32_on_network(name):
    from onnxconv import variants
    from onnxconv.export import ExportOptions, to_onnx
    from onnxconv.float64 import torch_in_float16
    from onnxconv.verdict import FP16_RMS_FACTOR

    spec = variants.get(name)
    cfg = spec.config()
    module = spec.build(cfg, seed=0)
    model = to_onnx(module, spec.example_input(cfg), {}, ExportOptions())
    inputs = feeds.generate(model, name, batch=1, spatial={}, distribution="normal", seed=0)
    ref = run(model, inputs)
    # A deep network's logits (BatchNorm statistics of its data) move by more than a block's in
    # float16: each converter is held to PyTorch's own float16 result, within validate's bound.
    (input_name,) = inputs
    (torch_half,) = torch_in_float16(module, inputs, [input_name], ["y"]).values()
    tol = FP16_RMS_FACTOR * rel_err(torch_half, ref[0])
    assert 0 < tol < 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the standard converter warns about BN values < 1e-7
        check_both_converters(model, inputs, ref, tol)
        half = to_fp16_io16(model)
    (out,) = run(half, {k: v.astype(np.float16) for k, v in inputs.items()})
    assert out.dtype == np.float16 and rel_err(out, ref[0]) < tol


# ---------------------------------------------------------------------------------------------
# the cases the own converter was written for


def test_resize_and_upsample_scales_stay_float32_in_both():
    scales = init("scales", [1, 1, 2, 2])
    y = vi("y", [1, 2, 8, 8])
    for mode in ("nearest", "linear"):
        relu = helper.make_node("Relu", ["x"], ["r"], name="relu")
        resize = helper.make_node("Resize", ["r", "", "scales"], ["z"], name="rs", mode=mode)
        neg = helper.make_node("Neg", ["z"], ["y"], name="neg")
        model = graph([relu, resize, neg], [X_IN], [y], [scales])
        for convert in (to_fp16, to_fp16_standard):
            assert_right(convert, model)
    # scales from a Constant node, and Upsample (opset 9)
    const = helper.make_node("Constant", [], ["scales"], name="c", value=scales)
    resize = helper.make_node("Resize", ["r", "", "scales"], ["z"], name="rs", mode="linear")
    model = graph([relu, const, resize, neg], [X_IN], [y])
    upsample = helper.make_node("Upsample", ["r", "scales"], ["z"], name="up", mode="nearest")
    model9 = graph([relu, upsample, neg], [X_IN], [y], [scales], opset=9)
    for convert in (to_fp16, to_fp16_standard):
        assert_right(convert, model)
        assert_right(convert, model9)


@pytest.mark.parametrize("op", ["Resize", "Upsample"])
def test_resize_producing_graph_output_stays_float32_only_in_own(op):
    inputs = ["x", "", "scales"] if op == "Resize" else ["x", "scales"]
    node = helper.make_node(op, inputs, ["y"], name="rs", mode="nearest")
    model = graph(
        [node],
        [X_IN],
        [vi("y", [1, 2, 8, 8])],
        [init("scales", [1, 1, 2, 2])],
        opset=18 if op == "Resize" else 9,
    )
    assert_right(to_fp16, model)
    # keep_io_types=True, yet the output of the blocked op comes back float16
    half = raw_standard(model)
    assert elem_types(half.graph.output) == [FP16]
    assert run(half, {"x": X})[0].dtype == np.float16
    with pytest.raises(CheckFailed, match="graph output 'y' float16, expected float32"):
        to_fp16_standard(model)


def test_constant_tensor_value_converted_by_both():
    const = helper.make_node("Constant", [], ["c"], name="c", value=init("v", [[[[0.5]], [[2]]]]))
    model = graph([const, helper.make_node("Mul", ["x", "c"], ["y"], name="mul")], [X_IN], [Y_OUT])
    for convert in (to_fp16, to_fp16_standard):
        assert_right(convert, model)


@pytest.mark.parametrize("attr", [{"value_float": 0.5}, {"value_floats": [0.5, 2.0, 1.0, 3.0]}])
def test_constant_value_float_only_own_converts(attr):
    const = helper.make_node("Constant", [], ["c"], name="c", **attr)
    model = graph([const, helper.make_node("Mul", ["x", "c"], ["y"], name="mul")], [X_IN], [Y_OUT])
    assert_right(to_fp16, model)
    assert_standard_wrong(model)


def test_cast_to_float_attribute_only_own_converts():
    float_to_float = graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("Cast", ["r"], ["rc"], name="cast", to=FP32),
            helper.make_node("Add", ["rc", "b"], ["y"], name="add"),
        ],
        [X_IN],
        [Y_OUT],
        [init("b", [0.25])],
    )
    int_to_float = graph(
        [
            helper.make_node("Shape", ["x"], ["s"], name="shape", start=3),
            helper.make_node("Cast", ["s"], ["sf"], name="cast", to=FP32),
            helper.make_node("Div", ["x", "sf"], ["y"], name="div"),
        ],
        [X_IN],
        [Y_OUT],
    )
    for model in (float_to_float, int_to_float):
        assert_right(to_fp16, model)
        cast = next(n for n in to_fp16(model).graph.node if n.name == "cast")
        assert cast.attribute[0].i == FP16
        assert_standard_wrong(model)


def test_constant_of_shape_default_value_only_own_converts():
    model = graph(
        [
            helper.make_node("Shape", ["x"], ["s"], name="shape"),
            helper.make_node("ConstantOfShape", ["s"], ["z"], name="zeros"),
            helper.make_node("Add", ["x", "z"], ["y"], name="add"),
        ],
        [X_IN],
        [Y_OUT],
    )
    assert_right(to_fp16, model)
    assert_standard_wrong(model)


def test_weights_beyond_fp16_range():
    """own: round to nearest fp16, clip to ±65504 (finite stays finite, inf stays inf);
    standard (defaults): clamp to ±1e4 and lift non-zero magnitudes below 1e-7 to ±1e-7."""
    values = np.array([2e4, -2e4, 1e5, -1e5, np.inf, -np.inf, 1e-8, 0.0], np.float32)
    model = graph(
        [helper.make_node("Mul", ["x", "w"], ["y"], name="mul")],
        [vi("x", [8])],
        [vi("y", [8])],
        [init("w", values)],
    )

    def weights(half):
        return numpy_helper.to_array(half.graph.initializer[0]).astype(np.float32)

    own = weights(to_fp16(model))
    np.testing.assert_array_equal(own, [2e4, -2e4, 65504, -65504, np.inf, -np.inf, 0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the converter's warnings are counted, not printed
        half = to_fp16_standard(model)
    std = weights(half)
    changes = {p.key: p.value for p in half.metadata_props}[CONVERTER_CHANGES]
    assert changes.startswith("onnxconverter-common moved 3 weight extremes")
    np.testing.assert_array_equal(std[:6], [1e4, -1e4, 1e4, -1e4, np.inf, -np.inf])
    assert std[6] == np.float16(1e-7) and std[7] == 0
    # own is closer to every finite weight
    finite = np.isfinite(values)
    own_err = np.abs(own[finite] - values[finite])
    std_err = np.abs(std[finite] - values[finite])
    assert np.all(own_err <= std_err) and np.all(own_err[:5] < std_err[:5])
    # and at run time: 2e4 * 1 is 2e4 in fp16, not 1e4
    ones = {"x": np.ones(8, np.float32)}
    assert run(to_fp16(model), ones)[0][0] == 2e4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert run(to_fp16_standard(model), ones)[0][0] == 1e4


def test_value_info_converted_by_both():
    model = graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("Add", ["r", "b"], ["y"], name="add"),
        ],
        [X_IN],
        [Y_OUT],
        [init("b", [0.25])],
        value_info=[vi("r", [1, 2, 4, 4])],
    )
    for convert in (to_fp16, to_fp16_standard):
        assert_right(convert, model)
        r = next(v for v in convert(model).graph.value_info if v.name == "r")
        assert r.type.tensor_type.elem_type == FP16


def test_graph_output_read_inside_only_own():
    model = graph(
        [
            helper.make_node("Relu", ["x"], ["a"], name="relu"),
            helper.make_node("Neg", ["a"], ["y"], name="neg"),
        ],
        [X_IN],
        [vi("a", [1, 2, 4, 4]), Y_OUT],
    )
    assert_right(to_fp16, model)
    assert_standard_wrong(model)


def test_unnamed_nodes_sharing_an_input_only_own():
    """onnxconverter-common names each input Cast ``<input>_cast_to_<consumer>``: here twice
    ``x_cast_to_``, which breaks SSA."""
    model = graph(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Neg", ["x"], ["n"]),
            helper.make_node("Add", ["r", "n"], ["y"]),
        ],
        [X_IN],
        [Y_OUT],
    )
    assert_right(to_fp16, model)
    assert_standard_wrong(model)


def test_graph_already_holding_float16_only_own():
    model = graph(
        [
            helper.make_node("Cast", ["x"], ["h"], name="to16", to=FP16),
            helper.make_node("Cast", ["h"], ["y"], name="to32", to=FP32),
        ],
        [X_IN],
        [Y_OUT],
    )
    assert_right(to_fp16, model)
    with pytest.raises(CheckFailed, match="already converted to float16"):
        to_fp16_standard(model)


def test_range_with_float_inputs_only_standard():
    """Range has no float16 type: the standard converter keeps it float32 (op block list), the
    own converter makes its inputs float16 and the graph invalid."""
    model = graph(
        [
            helper.make_node("Range", ["start", "limit", "delta"], ["r"], name="range"),
            helper.make_node("Add", ["x", "r"], ["y"], name="add"),
        ],
        [X_IN],
        [Y_OUT],
        [init("start", 0.0), init("limit", 2.0), init("delta", 0.5)],
    )
    assert_right(to_fp16_standard, model)
    assert not is_valid(to_fp16(model))
    with pytest.raises(Exception, match="Range"):
        run(to_fp16(model), {"x": X})


def test_subgraphs_supported_by_neither():
    """own refuses an If; the standard converter's graph fails the checker (the branch reads the
    outer tensor it renamed)."""
    then = helper.make_graph(
        [helper.make_node("Relu", ["r"], ["t"], name="t")], "then", [], [vi("t", [1, 2, 4, 4])]
    )
    other = helper.make_graph(
        [helper.make_node("Neg", ["r"], ["e"], name="e")], "else", [], [vi("e", [1, 2, 4, 4])]
    )
    model = graph(
        [
            helper.make_node("Mul", ["x", "two"], ["r"], name="mul"),
            helper.make_node("If", ["c"], ["y"], name="if", then_branch=then, else_branch=other),
        ],
        [vi("c", [], TensorProto.BOOL), X_IN],
        [Y_OUT],
        [init("two", 2.0)],
    )
    with pytest.raises(UserInputError, match="subgraph"):
        to_fp16(model)
    assert not is_valid(raw_standard(model))
    with pytest.raises(CheckFailed, match="invalid fp16 graph"):
        to_fp16_standard(model)
