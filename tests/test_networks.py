"""Outside networks (tests/networks.py): torchvision's ShuffleNet V2 x0.5 and MobileNetV2,
re-implemented with seeded weights, through both exporters and as an opset-9 graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from networks import NETWORKS, example_input, export_network, export_opset9_shufflenet
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxconv.export import REPRODUCE_ATOL, REPRODUCE_RTOL
from onnxconv.reference import evaluator

#: Height and width of the exported examples: small enough for a fast suite, large enough that
#: every stage keeps a spatial extent (ShuffleNet V2 and MobileNetV2 downsample 32×).
SIZE = 64
#: torchvision's ``sum(p.numel() for p in model.parameters())`` for the two models.
TORCHVISION_PARAMS = {"shufflenet_v2_x0_5": 1_366_792, "mobilenet_v2": 3_504_872}
EXPORTS = [
    pytest.param("dynamo", 18, False, id="dynamo-18"),
    pytest.param("dynamo", 18, True, id="dynamo-18-dynamic", marks=pytest.mark.slow),
    pytest.param("torchscript", 17, False, id="torchscript-17"),
    pytest.param("torchscript", 17, True, id="torchscript-17-dynamic"),
]


def load_pb(path: Path) -> tuple[str, np.ndarray]:
    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return tensor.name, numpy_helper.to_array(tensor)


def default_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def run_ort(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def assert_reproduces(actual: np.ndarray, expected: np.ndarray) -> None:
    """The project's export tolerance, atol scaled by max(1, rms of the expected output)."""
    atol = REPRODUCE_ATOL * max(1.0, float(np.sqrt(np.mean(np.square(expected)))))
    np.testing.assert_allclose(actual, expected, rtol=REPRODUCE_RTOL, atol=atol)


def graph_and_data(model_path: Path) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """The graph and its test data set, after checking the layout and the tensor names."""
    model = onnx.load(model_path)
    folder = model_path.parent
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "test_data_set_0"]
    data = folder / "test_data_set_0"
    assert sorted(p.name for p in data.iterdir()) == ["input_0.pb", "output_0.pb"]
    in_name, x = load_pb(data / "input_0.pb")
    out_name, y = load_pb(data / "output_0.pb")
    assert (in_name, out_name) == (model.graph.input[0].name, model.graph.output[0].name)
    assert x.dtype == y.dtype == np.float32
    return model, x, y


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a.state_dict().values(), b.state_dict().values()))


def batchnorms(module: torch.nn.Module) -> list[torch.nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]


# --- the modules ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NETWORKS)
def test_parameter_count_matches_torchvision(name):
    module = NETWORKS[name]()
    assert sum(p.numel() for p in module.parameters()) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", NETWORKS)
def test_224_input_gives_1000_logits_that_depend_on_the_input(name):
    module = NETWORKS[name]()
    assert not module.training
    with torch.no_grad():
        y0, y1 = module(example_input(224, 0)), module(example_input(224, 1))
    assert y0.shape == (1, 1000) and torch.isfinite(y0).all()
    assert (y0 - y1).square().mean().sqrt() > 0.1 * y0.square().mean().sqrt()


@pytest.mark.parametrize("name", NETWORKS)
def test_weights_are_seeded_and_batchnorm_is_not_the_identity(name):
    first, again, other = NETWORKS[name](seed=0), NETWORKS[name](seed=0), NETWORKS[name](seed=1)
    assert same_weights(first, again) and not same_weights(first, other)
    for bn in batchnorms(first):
        assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
        assert not torch.allclose(bn.weight, torch.ones_like(bn.weight))


# --- both exporters ---------------------------------------------------------------------------


@pytest.mark.parametrize("exporter, opset, dynamic_batch", EXPORTS)
@pytest.mark.parametrize("name", NETWORKS)
def test_export_runs_on_onnx_runtime_like_pytorch(name, exporter, opset, dynamic_batch, tmp_path):
    path = export_network(
        name, tmp_path, exporter=exporter, opset=opset, dynamic_batch=dynamic_batch, size=SIZE
    )
    model, x, y = graph_and_data(path)
    onnx.checker.check_model(model, full_check=True)
    assert default_opset(model) == opset
    assert x.shape == (1, 3, SIZE, SIZE) and y.shape == (1, 1000)
    assert_reproduces(run_ort(path, x), y)
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.HasField("dim_param") == dynamic_batch
    if dynamic_batch:
        x2 = torch.randn((2, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            y2 = NETWORKS[name]()(x2).numpy()
        assert_reproduces(run_ort(path, x2.numpy()), y2)


def test_unknown_network_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown network 'resnet18'"):
        export_network("resnet18", tmp_path)
    assert not any(tmp_path.iterdir())


# --- the opset-9 graph with unfolded BatchNormalization ---------------------------------------


@pytest.fixture(scope="module")
def opset9(tmp_path_factory) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray, Path]:
    path = export_opset9_shufflenet(tmp_path_factory.mktemp("opset9"), size=SIZE)
    return (*graph_and_data(path), path)


def test_opset9_graph_is_valid_opset_9(opset9):
    model = opset9[0]
    onnx.checker.check_model(model, full_check=True)
    assert default_opset(model) == 9


def test_opset9_graph_keeps_one_batchnormalization_node_per_batchnorm(opset9):
    nodes = [n for n in opset9[0].graph.node if n.op_type == "BatchNormalization"]
    assert len(nodes) == len(batchnorms(NETWORKS["shufflenet_v2_x0_5"]())) == 56
    assert all(len(n.output) == 1 for n in nodes)  # inference form: Y only


def test_opset9_graph_runs_on_onnx_runtime_like_pytorch(opset9):
    _, x, y, path = opset9
    assert_reproduces(run_ort(path, x), y)


def test_opset9_graph_fools_onnx_evaluator_but_not_onnxconvs(opset9):
    model, x, y, _ = opset9
    feeds = {model.graph.input[0].name: x}
    plain = ReferenceEvaluator(model).run(None, feeds)[0]  # BN-9 in training mode: wrong
    assert np.abs(plain - y).max() > 0.1
    assert_reproduces(evaluator(model).run(None, feeds)[0], y)
