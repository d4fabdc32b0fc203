"""Mutation suite: every mutant of every committed graph is a valid model that keeps the output
shapes, leaves the input model alone, and runs differently from the original."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx_builders import make_init, make_model

from onnxconv.mutations import MUTATIONS, QUANTIZED_ONLY, Mutant, mutants

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"
VARIANTS = sorted(p.name for p in GRAPHS.iterdir() if (p / "model.onnx").exists())

SHUFFLE = {"shuffle_perm_identity", "shuffle_groups_swapped", "transpose_hw"}
CONV = {
    "transpose_hw",
    "weight_sign_flip",
    "weight_nudge",
    "conv_dilation",
    "conv_pads",
    "fp16_overflow",
}
ANY = {"output_scaled", "stale_output"}
APPLIES = {
    "channel_shuffle": (SHUFFLE - {"shuffle_groups_swapped"}) | ANY,  # g == C/g == 8
    "depthwise": CONV | ANY,
    "flattened": CONV | ANY,
    "grouped": CONV | ANY,
    "inception": CONV | ANY,
    "pointwise": (CONV - {"conv_dilation", "conv_pads"}) | ANY,  # 1x1 kernel only
    "separable": CONV | ANY,
    "shuffle_unit": SHUFFLE | CONV | {"add_to_sub"} | ANY,
    "shuffle_unit_s2": SHUFFLE | CONV | ANY,  # AveragePool + Concat shortcut: no residual Add
    "shufflenet_v2_unit": SHUFFLE | CONV | ANY,
    "standard": CONV | ANY,
}
PLANTED = [
    (v, name)
    for v in VARIANTS
    for name in MUTATIONS
    if name in APPLIES.get(v, ()) and name != "stale_output"
]


def read_pb(path: Path) -> np.ndarray:
    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(tensor)


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, feeds)[0]


@dataclass
class Case:
    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    stored: dict[str, np.ndarray]
    original: np.ndarray  # ONNX Runtime's output of the unmutated model
    mutants: dict[str, Mutant]


@functools.cache
def case(variant: str) -> Case:
    model = onnx.load(GRAPHS / variant / "model.onnx")
    data = GRAPHS / variant / "test_data_set_0"
    feeds = {model.graph.input[0].name: read_pb(data / "input_0.pb")}
    stored = {model.graph.output[0].name: read_pb(data / "output_0.pb")}
    found = {m.name: m for m in mutants(model, stored)}
    return Case(model, feeds, stored, run_ort(model, feeds), found)


def output_types(model: onnx.ModelProto) -> list[onnx.TypeProto]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    return [o.type for o in inferred.graph.output]


def assert_valid(mutant: Mutant, original: onnx.ModelProto) -> None:
    """Checker, strict shape inference, output names/types/shapes kept, node names unique."""
    onnx.checker.check_model(mutant.model, full_check=True)
    assert output_types(mutant.model) == output_types(original)
    assert [o.name for o in mutant.model.graph.output] == [o.name for o in original.graph.output]
    names = [n.name for n in mutant.model.graph.node if n.name]
    assert len(names) == len(set(names))


def test_which_mutations_apply_to_which_graph():
    assert VARIANTS == sorted(APPLIES)
    for variant in VARIANTS:
        found = list(case(variant).mutants)
        assert found == [name for name in MUTATIONS if name in APPLIES[variant]], variant


def test_mutations_are_listed_in_order():
    assert list(MUTATIONS) == [
        "shuffle_perm_identity",
        "shuffle_groups_swapped",
        "transpose_hw",
        "weight_sign_flip",
        "weight_nudge",
        "conv_dilation",
        "conv_pads",
        "bn_epsilon",
        "bn_scale",
        "add_to_sub",
        "output_scaled",
        "fp16_overflow",
        "int8_weight_sign_flip",
        "weight_scale_doubled",
        "zero_point_shift",
        "stale_output",
    ]


@pytest.mark.parametrize("variant", VARIANTS)
def test_input_model_untouched(variant):
    model = onnx.load(GRAPHS / variant / "model.onnx")
    before = model.SerializeToString()
    mutants(model, case(variant).stored)
    assert model.SerializeToString() == before


@pytest.mark.parametrize(("variant", "name"), PLANTED)
def test_mutant_is_valid_and_changes_the_output(variant, name):
    c = case(variant)
    mutant = c.mutants[name]
    assert mutant.name == name and mutant.description and mutant.node
    assert mutant.stored_outputs is None
    assert_valid(mutant, c.model)
    out = run_ort(mutant.model, c.feeds)
    assert out.shape == c.original.shape
    if name == "fp16_overflow":
        return  # ONNX Runtime's CPU EP computes fp16 Conv in fp32: see the test below
    diff = float(np.max(np.abs(out.astype(np.float64) - c.original)))
    rms = float(np.sqrt(np.mean(np.square(c.original, dtype=np.float64))))
    assert mutant.subtle == (name in {"weight_nudge", "output_scaled"})
    assert diff > (0 if mutant.subtle else 1e-3 * max(1.0, rms)), mutant.description


@pytest.mark.parametrize("variant", [v for v in VARIANTS if "fp16_overflow" in APPLIES[v]])
def test_fp16_overflow_overflows_in_fp16_arithmetic(variant):
    """ONNX's reference evaluator computes the fp16 graph in fp16: the scaled Conv's output
    overflows to inf. ONNX Runtime's CPU EP has no fp16 Conv / Mul kernels on x86: it casts
    the graph back to fp32 (InsertCastTransformer), so there the mutant stays finite."""
    c = case(variant)
    mutant = c.mutants["fp16_overflow"]
    assert {p.key: p.value for p in mutant.model.metadata_props}["onnxconv.precision"] == "fp16"
    with np.errstate(over="ignore", invalid="ignore"):
        out = ReferenceEvaluator(mutant.model).run(None, c.feeds)[0]
    assert not np.isfinite(out).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_stale_output_changes_one_stored_element(variant):
    c = case(variant)
    mutant = c.mutants["stale_output"]
    assert mutant.node is None and not mutant.subtle
    assert mutant.model.SerializeToString() == c.model.SerializeToString()
    assert_stale(mutant, c.stored)


def assert_stale(mutant: Mutant, stored: dict[str, np.ndarray]) -> None:
    """Exactly one element of the first stored output changed, by at least 1."""
    assert mutant.stored_outputs is not None and list(mutant.stored_outputs) == list(stored)
    name = next(iter(stored))
    changed = np.flatnonzero(mutant.stored_outputs[name] != stored[name])
    assert changed.tolist() == [stored[name].size // 3]
    delta = mutant.stored_outputs[name].flat[changed[0]] - stored[name].flat[changed[0]]
    assert delta >= 1


def test_no_stale_output_without_stored_outputs():
    model = case("standard").model
    assert "stale_output" not in {m.name for m in mutants(model)}
    assert MUTATIONS["stale_output"](model) is None


@pytest.mark.parametrize("ir_version", [3, 8])  # IR 3: initializers are also graph inputs
def test_batchnorm_mutations_on_an_opset9_graph(ir_version):
    """Conv -> BatchNormalization -> Relu at opset 9: both BN mutations apply and show."""
    rng = np.random.default_rng(0)
    inits = [
        make_init("W", (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)),
        make_init("B", (rng.standard_normal(4) * 0.1).astype(np.float32)),
        make_init("scale", (1.0 + 0.1 * rng.standard_normal(4)).astype(np.float32)),
        make_init("bias", (rng.standard_normal(4) * 0.1).astype(np.float32)),
        make_init("mean", (rng.standard_normal(4) * 0.1).astype(np.float32)),
        make_init("var", (0.05 + 0.1 * rng.random(4)).astype(np.float32)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["n"], name="bn"
        ),
        helper.make_node("Relu", ["n"], ["y"], name="relu"),
    ]
    declared = [helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in inits]
    model = make_model(
        nodes,
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
            *(declared if ir_version < 4 else []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
        opset=9,
    )
    model.ir_version = ir_version
    feeds = {"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}
    original = run_ort(model, feeds)
    found = {m.name: m for m in mutants(model, {"y": original})}
    assert set(found) == set(MUTATIONS) - {
        "shuffle_perm_identity",
        "shuffle_groups_swapped",
        "add_to_sub",
        *QUANTIZED_ONLY,
    }
    for name in ("bn_epsilon", "bn_scale"):
        mutant = found[name]
        assert mutant.node == "bn"
        assert_valid(mutant, model)
        diff = np.max(np.abs(run_ort(mutant.model, feeds) - original))
        assert diff > 1e-3 * max(1.0, float(np.sqrt(np.mean(original**2)))), name
    assert "epsilon 1e-05 -> 0.01" in found["bn_epsilon"].description
    assert_stale(found["stale_output"], {"y": original})


def test_mutants_of_mini_net(mini_net):
    """Symbolic batch, two outputs, BN, an Add of a constant (no residual) and a shuffle."""
    model, x, _ = mini_net
    feeds = {"x": x}
    original = run_ort(model, feeds)
    found = {m.name: m for m in mutants(model)}
    left_out = {"add_to_sub", "stale_output", *QUANTIZED_ONLY}
    assert list(found) == [name for name in MUTATIONS if name not in left_out]
    for mutant in found.values():
        assert_valid(mutant, model)
        out = run_ort(mutant.model, feeds)
        assert out.shape == original.shape
        assert mutant.name == "fp16_overflow" or np.any(out != original), mutant.name


def test_shared_reshape_shape_is_left_to_its_other_reader():
    """Two shuffles read one Constant shape: only the first Reshape gets the swapped shape."""
    shape5 = numpy_helper.from_array(np.array([-1, 2, 4, 4, 4], np.int64))
    nodes = [helper.make_node("Constant", [], ["shape5"], name="shape5", value=shape5)]
    for i, src in ((1, "x"), (2, "s1")):
        nodes += [
            helper.make_node("Reshape", [src, "shape5"], [f"r{i}"], name=f"reshape{i}"),
            helper.make_node(
                "Transpose", [f"r{i}"], [f"t{i}"], name=f"transpose{i}", perm=[0, 2, 1, 3, 4]
            ),
            helper.make_node("Reshape", [f"t{i}", "shape4"], [f"s{i}"], name=f"flatten{i}"),
        ]
    model = make_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 4, 4])],
        [helper.make_tensor_value_info("s2", TensorProto.FLOAT, ["N", 8, 4, 4])],
        [make_init("shape4", np.array([-1, 8, 4, 4], np.int64))],
    )
    mutant = MUTATIONS["shuffle_groups_swapped"](model)
    assert mutant is not None and mutant.node == "reshape1"
    assert_valid(mutant, model)
    readers = {n.name: n.input[1] for n in mutant.model.graph.node if n.op_type == "Reshape"}
    assert readers["reshape2"] == "shape5" and readers["reshape1"] != "shape5"
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 8, 4, 4)).astype(np.float32)}
    assert np.any(run_ort(mutant.model, feeds) != run_ort(model, feeds))
