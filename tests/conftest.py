"""Fixtures shared by several test files: hand-built graphs with independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from onnx_builders import make_init, make_model


@pytest.fixture(scope="module")
def conv_case():
    """x[1,8,16,16] -> grouped Conv (g=2) -> Relu -> Transpose(NHWC); weights as numpy."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((8, 4, 3, 3)) * 0.3).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    x = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
    nodes = [
        helper.make_node(
            "Conv", ["x", "W", "B"], ["conv_out"], name="conv", group=2, pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu"),
        helper.make_node("Transpose", ["relu_out"], ["y"], name="transpose", perm=[0, 2, 3, 1]),
    ]
    model = make_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 16, 8])],
        [make_init("W", w), make_init("B", b)],
    )
    with torch.no_grad():
        ref = torch.nn.functional.conv2d(
            torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), padding=1, groups=2
        )
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
        make_init("W1", f32(8, 4, 3, 3, scale=0.3)),
        make_init("B1", f32(8, scale=0.1)),
        make_init("bn_scale", (1.0 + 0.1 * rng.standard_normal(8)).astype(np.float32)),
        make_init("bn_bias", f32(8, scale=0.1)),
        make_init("bn_mean", f32(8, scale=0.1)),
        make_init("bn_var", (0.5 + rng.random(8)).astype(np.float32)),
        make_init("shape5", np.array([-1, 2, 4, 8, 8], dtype=np.int64)),
        make_init("shape4", np.array([-1, 8, 8, 8], dtype=np.int64)),
        make_init("Wg", f32(10, 16, scale=0.3)),
        make_init("Bg", f32(10, scale=0.1)),
    ]
    bias_const = helper.make_tensor(
        "bias_c", TensorProto.FLOAT, [1, 8, 1, 1], f32(8, scale=0.1).tolist()
    )
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization",
            ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"],
            ["b1"],
            name="bn1",
        ),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("Constant", [], ["cst"], name="const1", value=bias_const),
        helper.make_node("Add", ["r1", "cst"], ["a1"], name="add1"),
        helper.make_node("Reshape", ["a1", "shape5"], ["rs1"], name="shuffle_reshape1"),
        helper.make_node(
            "Transpose", ["rs1"], ["tr1"], name="shuffle_transpose", perm=[0, 2, 1, 3, 4]
        ),
        helper.make_node("Reshape", ["tr1", "shape4"], ["sh"], name="shuffle_reshape2"),
        helper.make_node(
            "MaxPool", ["sh"], ["mp"], name="maxpool", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node(
            "AveragePool", ["sh"], ["ap"], name="avgpool", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Concat", ["mp", "ap"], ["cat"], name="concat", axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["fl"], name="flatten"),
        helper.make_node("Cast", ["fl"], ["fl32"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Gemm", ["fl32", "Wg", "Bg"], ["logits"], name="fc", transB=1),
    ]
    model = make_model(
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
