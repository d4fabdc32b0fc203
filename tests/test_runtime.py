"""runtime: sessions per target on ORT CPU, EP truth, input checks (fp16 and intermediates:
their own files)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cuda_marks import CUDA_REASON as _CUDA_REASON
from cuda_marks import cuda_only

from onnxconv.errors import CheckFailed, UserInputError
from onnxconv.parity import compare, default_tolerance
from onnxconv.precisions import deploy
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


def test_target_id_and_validation():
    t = Target("cuda", "basic", "fp16")
    assert t.id == "cuda/basic/fp16" and t.provider == "CUDAExecutionProvider"
    assert Target("cpu") == Target("cpu", "all", "fp32")
    assert Target("CUDAExecutionProvider").ep == "cuda"
    with pytest.raises(UserInputError, match="'fast'"):
        Target("cpu", "fast")
    assert Target("cpu", "all", "int8").id == "cpu/all/int8"
    with pytest.raises(UserInputError, match="'int4'"):
        Target("cpu", "all", "int4")


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


def test_a_session_runs_only_the_deployment_its_target_names(mini_net):
    """An fp32 graph is never run (and reported) as an fp16 or int8 deployment, nor one
    deployment as another."""
    model, x, _ = mini_net
    with pytest.raises(ValueError, match="this graph is fp32"):
        make_session(model, Target("cpu", precision="fp16"))
    half = deploy(model, "fp16-onnxconv")  # mini_net's Cast(to=FLOAT) breaks the standard one
    with pytest.raises(ValueError, match="this graph is fp16-onnxconv"):
        make_session(half, Target("cpu", precision="fp16"))
    make_session(half, Target("cpu"))  # fp32 is the graph as given, fp16 already or not
    info = make_session(half, Target("cpu", precision="fp16-onnxconv"))
    assert run(info, {"x": x})["logits"].dtype == np.float32


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
    with pytest.raises(
        UserInputError, match=r"input 'x' expected shape \[1, 8, 16, 16\], got \[1, 8, 16, 15\]"
    ):
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


def test_input_specs_without_a_session_match_what_ort_declares(mini_net, conv_case):
    from onnxconv.runtime import check_feeds, input_specs

    for model in (mini_net[0], conv_case[0]):
        assert input_specs(model) == make_session(model, Target("cpu")).inputs
    specs = input_specs(mini_net[0])
    with pytest.raises(
        UserInputError, match=r"^case 1: input 'x' expected dtype float32, got int64"
    ):
        check_feeds("case 1", specs, {"x": np.zeros((1, 4, 8, 8), np.int64)})
    assert check_feeds("case 1", specs, {"x": mini_net[1][:1]})["x"].shape == (1, 4, 8, 8)


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
        ort.InferenceSession(
            conv_case[0].SerializeToString(),
            so,
            providers=["CPUExecutionProvider"],
            enable_fallback=0,
        )


@pytest.mark.skipif(
    "AzureExecutionProvider" not in ort.get_available_providers(),
    reason="needs an EP that is listed but runs no compute op (the CPU build's Azure EP)",
)
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
    info = make_session(deploy(model, "fp16-onnxconv"), Target("cuda", "all", "fp16-onnxconv"))
    out = run(info, {"x": x})
    for name in ("logits", "cat"):
        result = compare(out[name], ref[name], default_tolerance("fp16", "cuda"), name=name)
        assert result.passed, result.reason


def test_preloading_cuda_libraries_is_a_no_op_without_the_cuda_ep():
    import onnxruntime as ort

    from onnxconv.runtime import preload_cuda_libraries

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("a GPU build: preloading really loads libraries here")
    assert preload_cuda_libraries() == ""
