"""runtime: sessions per target on ORT CPU, EP truth, input checks, fp16, intermediates."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from cuda_marks import CUDA_REASON as _CUDA_REASON
from cuda_marks import cuda_only
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxconv.divergence import (
    first_divergence,
    run_intermediates_ort,
    run_intermediates_reference,
    with_all_outputs,
)
from onnxconv.errors import CheckFailed, UserInputError
from onnxconv.fp16 import to_fp16
from onnxconv.parity import compare, default_tolerance
from onnxconv.runtime import (
    OPT_LEVELS,
    EpUnavailable,
    Target,
    available_eps,
    ep_unavailable_reason,
    make_session,
    node_placement,
    provider_name,
    run,
    short_name,
)

FP32_CPU = default_tolerance("fp32", "cpu")


# ---------------------------------------------------------------------------------------------
# graphs built by hand


def _init(name: str, arr: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(arr, name)


def _model(nodes, inputs, outputs, inits, opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.fixture(scope="module")
def conv_case():
    """x[1,8,16,16] -> grouped Conv (g=2) -> Relu -> Transpose(NHWC); weights as numpy."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((8, 4, 3, 3)) * 0.3).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    x = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["conv_out"], name="conv", group=2, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu"),
        helper.make_node("Transpose", ["relu_out"], ["y"], name="transpose", perm=[0, 2, 3, 1]),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 16, 8])],
        [_init("W", w), _init("B", b)],
    )
    with torch.no_grad():
        ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                         padding=1, groups=2)
        ref = ref.relu().permute(0, 2, 3, 1).numpy()
    return model, x, ref


@pytest.fixture(scope="module")
def mini_net():
    """Every op family the exporters emit: Conv BN Relu Add(Constant) Reshape Transpose (channel
    shuffle) MaxPool AveragePool Concat GlobalAveragePool Flatten Cast Gemm; batch is symbolic."""
    rng = np.random.default_rng(1)

    def f32(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    inits = [
        _init("W1", f32(8, 4, 3, 3, scale=0.3)),
        _init("B1", f32(8, scale=0.1)),
        _init("bn_scale", (1.0 + 0.1 * rng.standard_normal(8)).astype(np.float32)),
        _init("bn_bias", f32(8, scale=0.1)),
        _init("bn_mean", f32(8, scale=0.1)),
        _init("bn_var", (0.5 + rng.random(8)).astype(np.float32)),
        _init("shape5", np.array([-1, 2, 4, 8, 8], dtype=np.int64)),
        _init("shape4", np.array([-1, 8, 8, 8], dtype=np.int64)),
        _init("Wg", f32(10, 16, scale=0.3)),
        _init("Bg", f32(10, scale=0.1)),
    ]
    bias_const = helper.make_tensor("bias_c", TensorProto.FLOAT, [1, 8, 1, 1], f32(8, scale=0.1).tolist())
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["b1"], name="bn1"),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("Constant", [], ["cst"], name="const1", value=bias_const),
        helper.make_node("Add", ["r1", "cst"], ["a1"], name="add1"),
        helper.make_node("Reshape", ["a1", "shape5"], ["rs1"], name="shuffle_reshape1"),
        helper.make_node("Transpose", ["rs1"], ["tr1"], name="shuffle_transpose", perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["tr1", "shape4"], ["sh"], name="shuffle_reshape2"),
        helper.make_node("MaxPool", ["sh"], ["mp"], name="maxpool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["sh"], ["ap"], name="avgpool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Concat", ["mp", "ap"], ["cat"], name="concat", axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["fl"], name="flatten"),
        helper.make_node("Cast", ["fl"], ["fl32"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Gemm", ["fl32", "Wg", "Bg"], ["logits"], name="fc", transB=1),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10]),
            helper.make_tensor_value_info("cat", TensorProto.FLOAT, ["N", 16, 4, 4]),
        ],
        inits,
    )
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    ref = dict(zip(["logits", "cat"], ReferenceEvaluator(model).run(None, {"x": x})))
    return model, x, ref


def _sabotaged(model: onnx.ModelProto, init_name: str) -> onnx.ModelProto:
    """A copy with the sign of one element of one initializer flipped."""
    bad = onnx.ModelProto()
    bad.CopyFrom(model)
    for i, init in enumerate(bad.graph.initializer):
        if init.name == init_name:
            arr = numpy_helper.to_array(init).copy()
            arr.flat[0] = -arr.flat[0] if arr.flat[0] != 0 else 1.0
            bad.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, init_name))
            return bad
    raise AssertionError(init_name)


# ---------------------------------------------------------------------------------------------
# names and targets


def test_ep_names_map_both_ways():
    assert provider_name("cuda") == "CUDAExecutionProvider"
    assert provider_name("tensorrt") == "TensorrtExecutionProvider"
    assert provider_name("cpu") == "CPUExecutionProvider"
    assert short_name("CUDAExecutionProvider") == "cuda"
    for full in ort.get_all_providers():
        assert provider_name(short_name(full)) == full
    with pytest.raises(UserInputError, match="'nosuchep'"):
        provider_name("nosuchep")


def test_target_id_parse_and_validation():
    t = Target("cuda", "basic", "fp16")
    assert t.id == "cuda/basic/fp16" and t.provider == "CUDAExecutionProvider"
    assert Target.parse("cpu") == Target("cpu", "all", "fp32")
    assert Target.parse("cuda/extended") == Target("cuda", "extended", "fp32")
    assert Target("CUDAExecutionProvider").ep == "cuda"
    with pytest.raises(UserInputError, match="'fast'"):
        Target("cpu", "fast")
    with pytest.raises(UserInputError, match="'int8'"):
        Target("cpu", "all", "int8")
    with pytest.raises(UserInputError, match="bad target"):
        Target.parse("cpu/all/fp32/extra")


def test_available_eps_are_short_names():
    eps = available_eps()
    assert "cpu" in eps
    assert all(e == e.lower() and "executionprovider" not in e for e in eps)
    assert ep_unavailable_reason("cpu") is None


# ---------------------------------------------------------------------------------------------
# CPU sessions


@pytest.mark.parametrize("opt_level", list(OPT_LEVELS))
def test_cpu_matches_torch_at_every_opt_level(conv_case, opt_level):
    model, x, ref = conv_case
    info = make_session(model.SerializeToString(), Target("cpu", opt_level), threads=1)
    assert info.providers[0] == "CPUExecutionProvider"
    out = run(info, {"x": x})
    assert list(out) == ["y"]
    result = compare(out["y"], ref, FP32_CPU, name="y")
    assert result.passed, result.reason
    assert result.max_abs < 1e-5


def test_make_session_from_path(conv_case, tmp_path):
    model, x, ref = conv_case
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    info = make_session(path, Target("cpu"))
    assert info.model_label == str(path)
    assert compare(run(info, {"x": x})["y"], ref, FP32_CPU).passed


def test_missing_or_corrupt_model_is_user_error(tmp_path):
    with pytest.raises(UserInputError, match="no such model file"):
        make_session(tmp_path / "absent.onnx", Target("cpu"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(UserInputError, match="bad.onnx"):
        make_session(bad, Target("cpu"))
    with pytest.raises(UserInputError, match="bad.onnx"):
        make_session(bad, Target("cpu", precision="fp16"))


def test_node_placement_all_nodes_on_cpu(conv_case):
    model, x, _ = conv_case
    info = make_session(model, Target("cpu", "disabled"), profile=True)
    run(info, {"x": x})
    run(info, {"x": x})  # nodes are listed once however many runs
    placement = node_placement(info.end_profiling())
    assert placement == {"cpu": ["conv", "relu", "transpose"]}

    info = make_session(model, Target("cpu", "all"), profile=True)
    run(info, {"x": x})
    placement = node_placement(info.end_profiling())
    assert list(placement) == ["cpu"]  # Conv+Relu may be fused, but nothing leaves CPU
    assert "conv" in placement["cpu"]


def test_node_placement_rejects_non_profile(tmp_path):
    with pytest.raises(UserInputError, match="no such profile"):
        node_placement(tmp_path / "absent.json")
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    with pytest.raises(UserInputError, match="junk.json"):
        node_placement(junk)


def test_end_profiling_without_profile_is_user_error(conv_case):
    info = make_session(conv_case[0], Target("cpu"))
    with pytest.raises(UserInputError, match="profile=True"):
        info.end_profiling()


# ---------------------------------------------------------------------------------------------
# input validation


def test_wrong_inputs_raise_user_error_naming_the_input(conv_case):
    model, x, _ = conv_case
    info = make_session(model, Target("cpu"))
    with pytest.raises(UserInputError, match=r"input 'x' expected shape \[1, 8, 16, 16\], got \[1, 8, 16, 15\]"):
        run(info, {"x": x[..., :15]})
    with pytest.raises(UserInputError, match=r"input 'x' expected shape .* got \[8, 16, 16\]"):
        run(info, {"x": x[0]})
    with pytest.raises(UserInputError, match="input 'x' expected dtype float32, got float64"):
        run(info, {"x": x.astype(np.float64)})
    with pytest.raises(UserInputError, match="missing input 'x'.*got: 'input'"):
        run(info, {"input": x})
    with pytest.raises(UserInputError, match="unexpected input 'extra'"):
        run(info, {"x": x, "extra": x})
    with pytest.raises(UserInputError, match="input 'x' must be a numpy array"):
        run(info, {"x": x.tolist()})


def test_symbolic_dims_accept_any_batch(mini_net):
    model, x, ref = mini_net
    info = make_session(model, Target("cpu"))
    assert info.inputs[0].shape == ("N", 4, 8, 8)
    out = run(info, {"x": x})
    assert out["logits"].shape == (2, 10)
    assert compare(run(info, {"x": x[:1]})["logits"], ref["logits"][:1], FP32_CPU).passed
    with pytest.raises(UserInputError, match=r"input 'x' expected shape \[N, 4, 8, 8\]"):
        run(info, {"x": x[:, :3]})


# ---------------------------------------------------------------------------------------------
# EP truth


def test_cuda_reported_unavailable_with_reason():
    if _CUDA_REASON is None:
        pytest.skip("CUDA EP is active here; nothing unavailable to report")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert "onnxruntime-gpu is not installed" in _CUDA_REASON
        assert "cpu" in _CUDA_REASON  # names what the build does offer
    else:  # GPU wheel without a usable device or libraries
        assert "CUDAExecutionProvider" in _CUDA_REASON


def test_cuda_target_never_passes_when_unavailable(conv_case):
    if _CUDA_REASON is None:
        pytest.skip("CUDA EP is active here")
    with pytest.raises(EpUnavailable) as info:
        make_session(conv_case[0], Target("cuda"))
    assert isinstance(info.value, CheckFailed) and info.value.exit_code == 1
    assert info.value.ep == "cuda" and info.value.reason == _CUDA_REASON
    assert "\n" not in str(info.value)


def test_ort_rejects_cpu_listed_with_cpu_fallback_disabled(conv_case):
    """Pins the finding make_session relies on: with session.disable_cpu_ep_fallback the CPU EP
    must not be listed, and nodes that would land on CPU make session creation fail."""
    so = ort.SessionOptions()
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    with pytest.raises(Exception, match="Conflicting session configuration"):
        ort.InferenceSession(conv_case[0].SerializeToString(), so, providers=["CPUExecutionProvider"],
                             enable_fallback=0)


@pytest.mark.skipif("AzureExecutionProvider" not in ort.get_available_providers(),
                    reason="needs an EP that is listed but runs no compute op (the CPU build's Azure EP)")
def test_listed_ep_that_runs_nothing_is_caught(conv_case):
    model, x, _ = conv_case
    reason = ep_unavailable_reason("azure")  # probes a 1-node session with CPU fallback disabled
    assert reason is not None and "AzureExecutionProvider" in reason and "\n" not in reason
    with pytest.raises(EpUnavailable, match="azure EP unavailable"):
        make_session(model, Target("azure"))
    # Allowing CPU fallback, ORT reports Azure first -- but the profile proves nothing ran there.
    info = make_session(model, Target("azure", "disabled"), allow_cpu_fallback=True, profile=True)
    assert info.providers[0] == "AzureExecutionProvider" and info.cpu_fallback_allowed
    run(info, {"x": x})
    assert node_placement(info.end_profiling()) == {"cpu": ["conv", "relu", "transpose"]}


@cuda_only
@pytest.mark.parametrize("opt_level", ["disabled", "all"])
def test_cuda_fp32_parity_and_placement(conv_case, opt_level):
    model, x, ref = conv_case
    info = make_session(model, Target("cuda", opt_level), profile=True)
    assert info.providers[0] == "CUDAExecutionProvider"
    assert info.provider_options["use_tf32"] == "0"
    result = compare(run(info, {"x": x})["y"], ref, default_tolerance("fp32", "cuda"))
    assert result.passed, result.reason
    assert list(node_placement(info.end_profiling())) == ["cuda"]


@cuda_only
def test_cuda_fp16_parity(mini_net):
    model, x, ref = mini_net
    info = make_session(model, Target("cuda", "all", "fp16"))
    out = run(info, {"x": x})
    for name in ("logits", "cat"):
        result = compare(out[name], ref[name], default_tolerance("fp16", "cuda"), name=name)
        assert result.passed, result.reason


# ---------------------------------------------------------------------------------------------
# fp16


def test_to_fp16_converts_weights_and_keeps_io_float32(mini_net):
    model, x, ref = mini_net
    before = model.SerializeToString()
    half = to_fp16(model)
    assert model.SerializeToString() == before  # input untouched
    onnx.checker.check_model(half, full_check=True)

    float_inits = [i for i in half.graph.initializer if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
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
    info = make_session(model, Target("cpu", opt_level, "fp16"))
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
    assert compare(fp32_out["cat"], ref["cat"], FP32_CPU).max_abs < compare(out["cat"], ref["cat"], tol).max_abs


def test_to_fp16_rejects_subgraphs():
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])])
    node = helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then, else_branch=then)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    with pytest.raises(UserInputError, match="'branch'.*subgraph"):
        to_fp16(helper.make_model(graph))


# ---------------------------------------------------------------------------------------------
# intermediates


def test_with_all_outputs_exposes_every_node_output(mini_net):
    model = mini_net[0]
    exposed = with_all_outputs(model)
    names = [o.name for o in exposed.graph.output]
    assert names[:2] == ["logits", "cat"]
    assert set(names) == {o for n in model.graph.node for o in n.output}
    assert all(o.type.tensor_type.elem_type != 0 for o in exposed.graph.output)
    assert len(model.graph.output) == 2  # input untouched


@pytest.mark.parametrize("opt_level", ["disabled", "all"])
def test_intermediates_ort_agree_with_reference(mini_net, opt_level):
    model, x, _ = mini_net
    got = run_intermediates_ort(model, {"x": x}, Target("cpu", opt_level))
    ref = run_intermediates_reference(model, {"x": x})
    order = [o for n in model.graph.node for o in n.output]
    assert list(got) == order and list(ref) == order  # topological order, fused tensors included
    for name in order:
        assert compare(got[name], ref[name], FP32_CPU, name=name).passed


def test_first_divergence_none_on_clean_graph(mini_net):
    model, x, _ = mini_net
    assert first_divergence(model, {"x": x}, Target("cpu", "all"), FP32_CPU) is None
    assert first_divergence(model, {"x": x}, Target("cpu", "all", "fp16"), default_tolerance("fp16", "cpu")) is None


@pytest.mark.parametrize(
    "init_name, node_name, output_name",
    [("W1", "conv1", "c1"), ("bn_scale", "bn1", "b1"), ("Wg", "fc", "logits")],
)
def test_first_divergence_names_the_sabotaged_node(mini_net, init_name, node_name, output_name):
    model, x, _ = mini_net
    bad = _sabotaged(model, init_name)
    div = first_divergence(bad, {"x": x}, Target("cpu", "all"), FP32_CPU, reference_model=model)
    assert div is not None
    assert (div.node_name, div.output_name) == (node_name, output_name)
    assert div.op_type == next(n.op_type for n in model.graph.node if n.name == node_name)
    assert not div.result.passed and div.result.n_bad > 0
    assert div.checked == sum(len(n.output) for n in model.graph.node[: div.node_index + 1])
    assert div.to_dict()["result"]["passed"] is False
