"""onnxconv.reference: onnx's ReferenceEvaluator with onnxconv's fixes.

Each fix has a hand-checkable test; every operator the zoo and common CNNs use is checked against
an independent truth (torch.nn.functional on CPU, or numpy by hand from the spec's formulas), at
the opsets where its definition changed, so that an onnx upgrade that breaks one fails here.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxconv.errors import CheckFailed
from onnxconv.reference import FIXED, KNOWN_FAULTS, OVERRIDES, evaluator, run_reference

TOL = {"rtol": 1e-5, "atol": 1e-5}
Input = np.ndarray | None


# --- helpers -----------------------------------------------------------------------------------


def randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def f32(values: Any) -> np.ndarray:
    return np.array(values, np.float32)


def node_model(
    op: str, opset: int, inputs: Sequence[Input], n_outputs: int = 1, **attrs: Any
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """One ``op`` node at ``opset`` and its feeds: the first input is fed, the others are
    initializers, ``None`` is an absent optional input."""
    names = ["" if value is None else f"in{i}" for i, value in enumerate(inputs)]
    outputs = [f"out{i}" for i in range(n_outputs)]
    graph = helper.make_graph(
        [helper.make_node(op, names, outputs, **attrs)],
        "g",
        [
            helper.make_tensor_value_info(
                "in0", helper.np_dtype_to_tensor_dtype(inputs[0].dtype), inputs[0].shape
            )
        ],
        [helper.make_empty_tensor_value_info(name) for name in outputs],
        [numpy_helper.from_array(v, n) for n, v in zip(names[1:], inputs[1:]) if v is not None],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return model, {"in0": inputs[0]}


def run_node(
    op: str, opset: int, inputs: Sequence[Input], n_outputs: int = 1, **attrs: Any
) -> list[np.ndarray]:
    """The outputs of one ``op`` node at ``opset``, computed by onnxconv's evaluator."""
    model, feeds = node_model(op, opset, inputs, n_outputs, **attrs)
    return evaluator(model).run(None, feeds)


def assert_outputs(got: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, **TOL)


def torch_truth(fn: Callable[..., torch.Tensor], *arrays: np.ndarray, **kwargs: Any) -> np.ndarray:
    with torch.no_grad():
        return fn(*(torch.from_numpy(a) for a in arrays), **kwargs).numpy()


def expand(cases: Sequence[tuple[Any, ...]], opsets: Sequence[int]) -> list[Any]:
    """``(label, min_opset, *rest)`` cases, one param per opset from ``min_opset`` on."""
    return [
        pytest.param(opset, *rest, id=f"{opset}-{label}")
        for label, min_opset, *rest in cases
        for opset in opsets
        if opset >= min_opset
    ]


# --- the API -----------------------------------------------------------------------------------


def test_every_override_is_listed_in_fixed() -> None:
    assert {cls.__name__ for cls in OVERRIDES} == set(FIXED)
    assert not set(KNOWN_FAULTS) & set(FIXED)
    assert all("\n" not in line for line in [*FIXED.values(), *KNOWN_FAULTS.values()])


def test_run_reference_returns_graph_outputs_or_the_names_asked() -> None:
    x = randn(2, 3)
    model, feeds = node_model("Relu", 13, [x])
    assert list(run_reference(model, feeds)) == ["out0"]
    np.testing.assert_array_equal(run_reference(model, feeds, ["out0"])["out0"], np.maximum(x, 0))


@pytest.mark.parametrize(
    "op, inputs",
    [
        ("NoSuchOp", [randn(2, 3)]),  # fails building the evaluator
        ("Reshape", [randn(2, 3), np.array([4, -1], np.int64)]),  # fails running
    ],
)
def test_run_reference_turns_evaluator_errors_into_check_failed(
    op: str, inputs: list[np.ndarray]
) -> None:
    model, feeds = node_model(op, 13, inputs)
    with pytest.raises(CheckFailed, match="^onnx ReferenceEvaluator failed: .+"):
        run_reference(model, feeds)


# --- the fixes, by hand --------------------------------------------------------------------------

ROW = f32([[[[1, 2]]]])
SOFTMAX_IN = f32([[[[0]], [[np.log(3)]]]])  # (1, 2, 1, 1)


@pytest.mark.parametrize(
    "op, opset, inputs, attrs, expected",
    [
        # k2 s2 SAME_LOWER on 5: ceil(5/2) = 3 outputs, the 1 pad first:
        # max(1), max(5, 2), max(4, 3)
        (
            "MaxPool",
            12,
            [f32([[[1, 5, 2, 4, 3]]])],
            {"kernel_shape": [2], "strides": [2], "auto_pad": "SAME_LOWER"},
            f32([[[1, 5, 4]]]),
        ),
        # k3 s3 ceil_mode on 7: windows [1 2 3] [4 5 6] [7]
        (
            "AveragePool",
            11,
            [f32([[[1, 2, 3, 4, 5, 6, 7]]])],
            {"kernel_shape": [3], "strides": [3], "ceil_mode": 1},
            f32([[[2, 5, 7]]]),
        ),
        # coerced to 2-D [1, 2] at axis 1: softmax(0, ln 3) = (1/4, 3/4)
        ("Softmax", 11, [SOFTMAX_IN], {}, f32([[[[0.25]], [[0.75]]]])),
        ("LogSoftmax", 11, [SOFTMAX_IN], {}, np.log(f32([[[[0.25]], [[0.75]]]]))),
        # 1 * (1*3 + 2*4) + 2 * 1
        ("Gemm", 6, [f32([[1, 2]]), f32([[3], [4]]), f32([[1]])], {"beta": 2.0}, f32([[13]])),
        # x_original = x / 2 = 0, 0.5, 1, 1.5: floor -> 0 0 1 1; linear -> 1, 1.5, 2, 2 (edge)
        ("Resize", 10, [ROW, f32([1, 1, 1, 2])], {"mode": "nearest"}, f32([[[[1, 1, 2, 2]]]])),
        ("Resize", 10, [ROW, f32([1, 1, 1, 2])], {"mode": "linear"}, f32([[[[1, 1.5, 2, 2]]]])),
        (
            "Upsample",
            7,
            [ROW],
            {"mode": "linear", "scales": [1.0, 1.0, 1.0, 2.0]},
            f32([[[[1, 1.5, 2, 2]]]]),
        ),
        ("Upsample", 9, [ROW, f32([1, 1, 1, 1.5])], {"mode": "nearest"}, f32([[[[1, 1, 2]]]])),
        # (x + 0.5) / 2 = .25 .75 1.25 1.75 2.25 2.75, half rounds down, clamp: 0 1 1 2 2 2
        (
            "Resize",
            11,
            [f32([[[[1, 2, 3]]]]), f32([]), f32([1, 1, 1, 2])],
            {"mode": "nearest", "coordinate_transformation_mode": "tf_half_pixel_for_nn"},
            f32([[[[1, 2, 2, 3, 3, 3]]]]),
        ),
        # axis 1: crop 1 at the beginning, pad 2 zeros at the end
        ("Pad", 11, [f32([[1, 2, 3]]), np.array([0, -1, 0, 2], np.int64)], {}, f32([[2, 3, 0, 0]])),
    ],
    ids=[
        "MaxPool-same-lower",
        "AveragePool-ceil",
        "Softmax-2d",
        "LogSoftmax-2d",
        "Gemm6-beta",
        "Resize10-nearest",
        "Resize10-linear",
        "Upsample7-linear",
        "Upsample9-fractional",
        "Resize11-tf-half-pixel",
        "Pad-negative",
    ],
)
def test_fix_by_hand(
    op: str, opset: int, inputs: list[np.ndarray], attrs: dict[str, Any], expected: np.ndarray
) -> None:
    assert_outputs(run_node(op, opset, inputs, **attrs), [expected])


# --- BatchNormalization (fixed for opsets < 14) ------------------------------------------------


def bn_inputs() -> list[np.ndarray]:
    x = randn(2, 3, 4, 4, seed=1) * 2 + 1
    mean, var = np.array([0.5, -1.0, 2.0], np.float32), np.array([0.25, 4.0, 1.0], np.float32)
    return [
        x,
        np.array([1.5, -0.5, 2.0], np.float32),
        np.array([0.1, 0.2, -0.3], np.float32),
        mean,
        var,
    ]


def bn_by_hand(
    x: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    eps: float = 1e-5,
) -> np.ndarray:
    """The spec's inference formula, per channel, in float64."""
    c = (-1, 1, 1)
    x64 = x.astype(np.float64)
    return scale.reshape(c) * (x64 - mean.reshape(c)) / np.sqrt(
        var.reshape(c) + eps
    ) + bias.reshape(c)


def test_opset9_bn_plain_evaluator_is_wrong_and_evaluator_is_right() -> None:
    """Channel 0: 2 * (x - 2) / sqrt(4) + 1 = x - 1; channel 1: (x - 1) / sqrt(1) + 0."""
    x = f32([[[[0, 2]], [[3, 1]]]])
    params = [f32([2, 1]), f32([1, 0]), f32([2, 1]), f32([4, 1])]  # scale, bias, mean, var
    model, feeds = node_model("BatchNormalization", 9, [x, *params], epsilon=0.0)
    expected = f32([[[[-1, 1]], [[2, 0]]]])
    plain = ReferenceEvaluator(model).run(None, feeds)[0]
    assert np.abs(plain - expected).max() > 0.1  # onnx uses batch statistics (momentum is set)
    assert_outputs(evaluator(model).run(None, feeds), [expected])


@pytest.mark.parametrize(
    "opset, attrs",
    [
        (6, {}),
        (6, {"is_test": 1}),
        (6, {"is_test": 0, "momentum": 0.9}),
        (7, {}),
        (7, {"spatial": 1}),
        (9, {}),
        (9, {"momentum": 0.5, "epsilon": 1e-3}),
        (13, {}),
        (14, {"training_mode": 0}),
        (14, {}),
        (15, {"training_mode": 0}),
        (15, {}),
    ],
)
def test_bn_inference(opset: int, attrs: dict[str, Any]) -> None:
    inputs = bn_inputs()
    eps = attrs.get("epsilon", 1e-5)
    assert_outputs(
        run_node("BatchNormalization", opset, inputs, **attrs), [bn_by_hand(*inputs, eps=eps)]
    )


def test_bn_opset7_per_activation_parameters() -> None:
    """``spatial=0``: scale, bias, mean and var are (C, H, W)."""
    x = randn(2, 3, 4, 4)
    scale, bias, mean = (randn(3, 4, 4, seed=s) for s in (1, 2, 3))
    var = np.abs(randn(3, 4, 4, seed=4)) + 0.5
    truth = scale * (x - mean) / np.sqrt(var + 1e-5) + bias
    assert_outputs(
        run_node("BatchNormalization", 7, [x, scale, bias, mean, var], spatial=0), [truth]
    )


def test_bn_opset15_training_mode_is_onnx_own() -> None:
    """Where ``training_mode`` is explicit (opset >= 14) onnx's implementation runs unchanged."""
    model, feeds = node_model("BatchNormalization", 15, bn_inputs(), n_outputs=3, training_mode=1)
    ours, plain = evaluator(model), ReferenceEvaluator(model)
    assert type(ours.rt_nodes_[0].onnx_impl) is type(plain.rt_nodes_[0])
    for got, expected in zip(ours.run(None, feeds), plain.run(None, feeds)):
        np.testing.assert_array_equal(got, expected)


def test_bn_before_opset14_training_outputs_give_no_opinion() -> None:
    model, feeds = node_model("BatchNormalization", 9, bn_inputs(), n_outputs=5)
    with pytest.raises(CheckFailed, match="training outputs"):
        run_reference(model, feeds)


# --- Conv (right) ------------------------------------------------------------------------------


def same_pads(size: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    """SAME_UPPER/SAME_LOWER: pad so that the output is ceil(size / stride); an odd total puts
    the extra pixel at the end (UPPER) or the beginning (LOWER)."""
    out = math.ceil(size / stride)
    total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - size)
    return (total // 2, total - total // 2) if upper else (total - total // 2, total // 2)


def torch_pads(
    x: np.ndarray, kernel: int, stride: int, dilation: int, auto_pad: str
) -> tuple[int, int, int, int]:
    """F.pad's (left, right, top, bottom) for an auto_pad on a 2-D input."""
    if auto_pad == "VALID":
        return (0, 0, 0, 0)
    upper = auto_pad == "SAME_UPPER"
    h, w = (same_pads(n, kernel, stride, dilation, upper) for n in x.shape[2:])
    return (*w, *h)


@pytest.mark.parametrize("opset", [1, 11, 22])
@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("dilation, group", [(1, 1), (2, 1), (1, 4)], ids=["d1g1", "d2", "dw"])
def test_conv_auto_pad(opset: int, auto_pad: str, stride: int, dilation: int, group: int) -> None:
    x, w, b = randn(1, 4, 9, 8), randn(4, 4 // group, 3, 3, seed=1), randn(4, seed=2)
    truth = torch_truth(
        lambda x, w, b: F.conv2d(
            F.pad(x, torch_pads(x.numpy(), 3, stride, dilation, auto_pad)),
            w,
            b,
            stride,
            dilation=dilation,
            groups=group,
        ),
        x,
        w,
        b,
    )
    got = run_node(
        "Conv",
        opset,
        [x, w, b],
        auto_pad=auto_pad,
        strides=[stride] * 2,
        dilations=[dilation] * 2,
        group=group,
        kernel_shape=[3, 3],
    )
    assert_outputs(got, [truth])


@pytest.mark.parametrize("opset", [1, 11, 22])
def test_conv_asymmetric_pads(opset: int) -> None:
    x, w = randn(1, 3, 6, 7), randn(5, 3, 3, 2, seed=1)
    truth = torch_truth(lambda x, w: F.conv2d(F.pad(x, (2, 0, 0, 1)), w, stride=(2, 1)), x, w)
    assert_outputs(run_node("Conv", opset, [x, w], pads=[0, 2, 1, 0], strides=[2, 1]), [truth])


# --- MaxPool, AveragePool (fixed), GlobalAveragePool (right) -----------------------------------


def onnx_pads_to_torch(pads: Sequence[int]) -> tuple[int, int, int, int]:
    """ONNX [h_begin, w_begin, h_end, w_end] -> F.pad's (left, right, top, bottom)."""
    return (pads[1], pads[3], pads[0], pads[2])


def max_padded(x: torch.Tensor, pads: Sequence[int], k: int, s: int) -> torch.Tensor:
    return F.max_pool2d(F.pad(x, onnx_pads_to_torch(pads), value=-math.inf), k, s)


def avg_by_windows(
    x: torch.Tensor, pads: Sequence[int], k: int, s: int, d: int, count_include_pad: int
) -> torch.Tensor:
    """Window sums over the zero-padded input (F.unfold) divided by the number of input pixels
    in the window, or of input-or-pad pixels with count_include_pad."""
    torch_pads_ = onnx_pads_to_torch(pads)
    inside = F.pad(torch.ones_like(x), torch_pads_)
    counted = torch.ones_like(inside) if count_include_pad else inside
    h = (x.shape[2] + pads[0] + pads[2] - (k - 1) * d - 1) // s + 1
    w = (x.shape[3] + pads[1] + pads[3] - (k - 1) * d - 1) // s + 1

    def window_sum(t: torch.Tensor) -> torch.Tensor:
        cols = F.unfold(t, k, dilation=d, stride=s)
        return cols.reshape(t.shape[0], t.shape[1], k * k, h, w).sum(2)

    return window_sum(F.pad(x, torch_pads_)) / window_sum(counted)


def same(x_shape: Sequence[int], k: int, s: int, d: int, upper: bool) -> list[int]:
    (hb, he), (wb, we) = (same_pads(n, k, s, d, upper) for n in x_shape[2:])
    return [hb, wb, he, we]


X_POOL = (1, 2, 7, 8)
K3S2 = {"kernel_shape": [3, 3], "strides": [2, 2]}
MAX_CASES = [  # label, min opset, attributes, truth
    ("k3s2p1", 1, {**K3S2, "pads": [1] * 4}, lambda x: F.max_pool2d(x, 3, 2, 1)),
    ("k3s2-valid", 1, {**K3S2, "auto_pad": "VALID"}, lambda x: F.max_pool2d(x, 3, 2)),
    (
        "k3s2-same-upper",
        1,
        {**K3S2, "auto_pad": "SAME_UPPER"},
        lambda x: max_padded(x, same(X_POOL, 3, 2, 1, True), 3, 2),
    ),
    (
        "k3s2-same-lower",
        1,
        {**K3S2, "auto_pad": "SAME_LOWER"},
        lambda x: max_padded(x, same(X_POOL, 3, 2, 1, False), 3, 2),
    ),
    (
        "k2s1-asym-pads",
        1,
        {"kernel_shape": [2, 2], "pads": [0, 1, 1, 0]},
        lambda x: max_padded(x, [0, 1, 1, 0], 2, 1),
    ),
    (
        "k2s1-pads-w-begin",
        1,
        {"kernel_shape": [2, 2], "pads": [0, 1, 0, 0]},
        lambda x: max_padded(x, [0, 1, 0, 0], 2, 1),
    ),
    (
        "k3s1p1-ceil",
        10,
        {"kernel_shape": [3, 3], "pads": [1] * 4, "ceil_mode": 1},
        lambda x: F.max_pool2d(x, 3, 1, 1, ceil_mode=True),
    ),
    ("k3s2-ceil", 10, {**K3S2, "ceil_mode": 1}, lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True)),
    (
        "k3s3p1-ceil",
        10,
        {"kernel_shape": [3, 3], "strides": [3, 3], "pads": [1] * 4, "ceil_mode": 1},
        lambda x: F.max_pool2d(x, 3, 3, 1, ceil_mode=True),
    ),
    (
        "k2s1p1-dil2",
        10,
        {"kernel_shape": [2, 2], "pads": [1] * 4, "dilations": [2, 2]},
        lambda x: F.max_pool2d(x, 2, 1, 1, dilation=2),
    ),
]


@pytest.mark.parametrize("opset, attrs, truth", expand(MAX_CASES, [8, 10, 12, 22]))
def test_max_pool(opset: int, attrs: dict[str, Any], truth: Callable) -> None:
    x = randn(*X_POOL)
    assert_outputs(run_node("MaxPool", opset, [x], **attrs), [torch_truth(truth, x)])


@pytest.mark.parametrize("opset", [10, 22])
@pytest.mark.parametrize("stride", [1, 2])
def test_max_pool_1d(opset: int, stride: int) -> None:
    x = randn(1, 2, 9)
    got = run_node("MaxPool", opset, [x], kernel_shape=[3], strides=[stride], pads=[1, 1])
    assert_outputs(got, [torch_truth(F.max_pool1d, x, kernel_size=3, stride=stride, padding=1)])


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("storage_order", [0, 1])
def test_max_pool_indices(stride: int, storage_order: int) -> None:
    """Indices flatten (N, C, H, W) row major, or column major over H, W."""
    x = randn(2, 3, 5, 6)
    with torch.no_grad():
        y, index = F.max_pool2d(torch.from_numpy(x), 3, stride, 1, return_indices=True)
    plane = np.arange(6).reshape(2, 3, 1, 1) * 30
    h, w = np.divmod(index.numpy(), 6)
    flat = plane + (h + w * 5 if storage_order else h * 6 + w)
    got = run_node(
        "MaxPool",
        12,
        [x],
        n_outputs=2,
        kernel_shape=[3, 3],
        strides=[stride] * 2,
        pads=[1] * 4,
        storage_order=storage_order,
    )
    assert_outputs(got[:1], [y.numpy()])
    np.testing.assert_array_equal(got[1], flat)


AVG_CASES = [  # label, min opset, attributes, truth(x, count_include_pad)
    (
        "k3s2p1",
        7,
        {**K3S2, "pads": [1] * 4},
        lambda x, c: F.avg_pool2d(x, 3, 2, 1, count_include_pad=bool(c)),
    ),
    (
        "k2s1-asym-pads",
        7,
        {"kernel_shape": [2, 2], "pads": [0, 1, 1, 0]},
        lambda x, c: avg_by_windows(x, [0, 1, 1, 0], 2, 1, 1, c),
    ),
    (
        "k3s2-same-upper",
        7,
        {**K3S2, "auto_pad": "SAME_UPPER"},
        lambda x, c: avg_by_windows(x, same(X_POOL, 3, 2, 1, True), 3, 2, 1, c),
    ),
    (
        "k3s2-same-lower",
        7,
        {**K3S2, "auto_pad": "SAME_LOWER"},
        lambda x, c: avg_by_windows(x, same(X_POOL, 3, 2, 1, False), 3, 2, 1, c),
    ),
    (
        "k3s1p1-ceil",
        10,
        {"kernel_shape": [3, 3], "pads": [1] * 4, "ceil_mode": 1},
        lambda x, c: F.avg_pool2d(x, 3, 1, 1, ceil_mode=True, count_include_pad=bool(c)),
    ),
    (
        "k3s3-ceil",
        10,
        {"kernel_shape": [3, 3], "strides": [3, 3], "ceil_mode": 1},
        lambda x, c: F.avg_pool2d(x, 3, 3, ceil_mode=True, count_include_pad=bool(c)),
    ),
    (
        "k3s3p1-ceil",
        10,
        {"kernel_shape": [3, 3], "strides": [3, 3], "pads": [1] * 4, "ceil_mode": 1},
        lambda x, c: F.avg_pool2d(x, 3, 3, 1, ceil_mode=True, count_include_pad=bool(c)),
    ),
    (
        "k2s1p1-dil2",
        19,
        {"kernel_shape": [2, 2], "pads": [1] * 4, "dilations": [2, 2]},
        lambda x, c: avg_by_windows(x, [1] * 4, 2, 1, 2, c),
    ),
    (
        "k3s1-dil2-same-upper",
        19,
        {"kernel_shape": [3, 3], "dilations": [2, 2], "auto_pad": "SAME_UPPER"},
        lambda x, c: avg_by_windows(x, same(X_POOL, 3, 1, 2, True), 3, 1, 2, c),
    ),
]


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("opset, attrs, truth", expand(AVG_CASES, [7, 10, 11, 19, 22]))
def test_average_pool(
    opset: int, attrs: dict[str, Any], truth: Callable, count_include_pad: int
) -> None:
    x = randn(*X_POOL)
    got = run_node("AveragePool", opset, [x], count_include_pad=count_include_pad, **attrs)
    assert_outputs(got, [torch_truth(truth, x, c=count_include_pad)])


@pytest.mark.parametrize("opset", [1, 22])
def test_global_average_pool(opset: int) -> None:
    x = randn(2, 3, 5, 4)
    assert_outputs(run_node("GlobalAveragePool", opset, [x]), [x.mean((2, 3), keepdims=True)])


# --- Gemm (fixed for opsets < 7), MatMul, Flatten (right) --------------------------------------


@pytest.mark.parametrize("opset", [6, 7, 9, 11, 13])
@pytest.mark.parametrize("trans_a, trans_b", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_gemm_full_c(opset: int, trans_a: int, trans_b: int) -> None:
    a, b, c = randn(3, 4), randn(4, 5, seed=1), randn(3, 5, seed=2)
    inputs = [a.T.copy() if trans_a else a, b.T.copy() if trans_b else b, c]
    got = run_node("Gemm", opset, inputs, transA=trans_a, transB=trans_b, alpha=0.5, beta=2.0)
    assert_outputs(got, [0.5 * (a @ b) + 2.0 * c])


@pytest.mark.parametrize("opset", [6, 7, 11, 13])
@pytest.mark.parametrize("c_shape", [(5,), (1, 5), (3, 1), ()])
def test_gemm_broadcast_c(opset: int, c_shape: tuple[int, ...]) -> None:
    a, b, c = randn(3, 4), randn(4, 5, seed=1), randn(*c_shape, seed=2)
    legacy = {"broadcast": 1} if opset < 7 else {}
    got = run_node("Gemm", opset, [a, b, c], alpha=0.5, beta=2.0, **legacy)
    assert_outputs(got, [0.5 * (a @ b) + 2.0 * c])


@pytest.mark.parametrize("opset", [11, 13])
def test_gemm_without_c(opset: int) -> None:
    a, b = randn(3, 4), randn(5, 4, seed=1)
    assert_outputs(run_node("Gemm", opset, [a, b], transB=1), [a @ b.T])


@pytest.mark.parametrize("opset", [1, 9, 13])
@pytest.mark.parametrize("b_shape", [(5, 6), (3, 5, 2), (5,)], ids=["2d", "batched", "vector"])
def test_matmul(opset: int, b_shape: tuple[int, ...]) -> None:
    a, b = randn(2, 3, 4, 5), randn(*b_shape, seed=1)
    assert_outputs(run_node("MatMul", opset, [a, b]), [torch_truth(torch.matmul, a, b)])


FLATTEN = [
    *((opset, axis) for opset in (1, 9) for axis in (0, 1, 2, 4)),
    *((opset, axis) for opset in (11, 13, 21) for axis in (0, 1, 3, -1, -3)),
]


@pytest.mark.parametrize("opset, axis", FLATTEN)
def test_flatten(opset: int, axis: int) -> None:
    x = randn(*X4)
    rows = int(np.prod(x.shape[: axis if axis >= 0 else axis + x.ndim]))
    assert_outputs(run_node("Flatten", opset, [x], axis=axis), [x.reshape(rows, -1)])


# --- Resize, Upsample --------------------------------------------------------------------------


def original_coordinate(
    out: np.ndarray, n_in: int, n_out: int, scale: float, mode: str
) -> np.ndarray:
    """x_original of output index ``out`` (the spec's coordinate_transformation_mode)."""
    if mode == "half_pixel":
        return (out + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (out + 0.5) / scale - 0.5 if n_out > 1 else 0 * out
    if mode == "align_corners":
        return out * (n_in - 1) / (n_out - 1) if n_out > 1 else 0 * out
    if mode == "asymmetric":
        return out / scale
    assert mode == "tf_half_pixel_for_nn"
    return (out + 0.5) / scale


ROUND = {
    "round_prefer_floor": lambda v: np.ceil(v - 0.5),
    "round_prefer_ceil": lambda v: np.floor(v + 0.5),
    "floor": np.floor,
    "ceil": np.ceil,
}


def resize_by_hand(
    x: np.ndarray,
    sizes: Sequence[int],
    scales: Sequence[float],
    mode: str,
    coordinates: str,
    nearest_mode: str = "round_prefer_floor",
) -> np.ndarray:
    """The spec's Resize along H and W, in float64: nearest rounds x_original, linear
    interpolates its two neighbours; both clamp to the edges."""
    y = x.astype(np.float64)
    for axis in (2, 3):
        n = y.shape[axis]
        src = original_coordinate(
            np.arange(sizes[axis], dtype=np.float64),
            n,
            sizes[axis],
            float(scales[axis]),
            coordinates,
        )
        if mode == "nearest":
            y = np.take(y, np.clip(ROUND[nearest_mode](src), 0, n - 1).astype(int), axis=axis)
            continue
        src = np.clip(src, 0, n - 1)
        low = np.floor(src).astype(int)
        high = np.minimum(low + 1, n - 1)
        w = (src - low).reshape([-1 if a == axis else 1 for a in range(4)])
        y = np.take(y, low, axis=axis) * (1 - w) + np.take(y, high, axis=axis) * w
    return y.astype(np.float32)


X_RESIZE = (1, 2, 4, 5)
RESIZE_TARGETS = [  # scales, or sizes (then scale = size / length)
    ([1, 1, 2, 2], None),
    (None, [1, 2, 7, 8]),
    (None, [1, 2, 3, 3]),
]


def resize_inputs(
    opset: int, scales: Sequence[float] | None, sizes: Sequence[int] | None
) -> list[Input]:
    """Resize-11's X, roi, scales, sizes; from opset 13 roi and scales may be absent."""
    empty = None if opset >= 13 else np.array([], np.float32)
    if scales is not None:
        return [randn(*X_RESIZE), empty, np.array(scales, np.float32)]
    return [randn(*X_RESIZE), empty, empty, np.array(sizes, np.int64)]


@pytest.mark.parametrize(
    "sizes, align_corners",
    [([8, 10], True), ([8, 10], False), ([7, 8], True), ([7, 8], False), ([3, 3], False)],
)
def test_resize_by_hand_agrees_with_torch(sizes: list[int], align_corners: bool) -> None:
    """The by-hand truth below is itself anchored on torch where torch has the mode."""
    x = randn(*X_RESIZE)
    full = [1, 2, *sizes]
    scales = [o / n for o, n in zip(full, x.shape)]
    same_as_torch = [  # torch's interpolate, the spec's (mode, coordinates, nearest_mode)
        (
            {"mode": "bilinear", "align_corners": align_corners},
            ("linear", "align_corners" if align_corners else "pytorch_half_pixel"),
        ),
        ({"mode": "nearest"}, ("nearest", "asymmetric", "floor")),
        ({"mode": "nearest-exact"}, ("nearest", "half_pixel", "round_prefer_ceil")),
    ]
    for torch_mode, spec_mode in same_as_torch:
        truth = torch_truth(F.interpolate, x, size=sizes, **torch_mode)
        np.testing.assert_allclose(resize_by_hand(x, full, scales, *spec_mode), truth, **TOL)


RESIZE_MODES = [  # mode, coordinate_transformation_mode, nearest_mode
    *(("nearest", "half_pixel", r) for r in ROUND),
    ("nearest", "asymmetric", "floor"),
    ("nearest", "asymmetric", "round_prefer_floor"),
    ("nearest", "align_corners", "round_prefer_floor"),
    ("nearest", "pytorch_half_pixel", "round_prefer_ceil"),
    *(
        ("linear", c, None)
        for c in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
    ),
]


@pytest.mark.parametrize("opset", [11, 13, 18])
@pytest.mark.parametrize("mode, coordinates, nearest_mode", RESIZE_MODES)
def test_resize(opset: int, mode: str, coordinates: str, nearest_mode: str | None) -> None:
    rounding = {"nearest_mode": nearest_mode} if nearest_mode else {}
    for scales, sizes in RESIZE_TARGETS:
        inputs = resize_inputs(opset, scales, sizes)
        out = sizes or [int(n * s) for n, s in zip(X_RESIZE, scales)]
        truth = resize_by_hand(
            inputs[0],
            out,
            scales or [o / n for o, n in zip(out, X_RESIZE)],
            mode,
            coordinates,
            nearest_mode or "round_prefer_floor",
        )
        got = run_node(
            "Resize",
            opset,
            inputs,
            mode=mode,
            coordinate_transformation_mode=coordinates,
            **rounding,
        )
        assert_outputs(got, [truth])


@pytest.mark.parametrize("nearest_mode", list(ROUND))
def test_resize11_tf_half_pixel_for_nn(nearest_mode: str) -> None:
    for scales, sizes in RESIZE_TARGETS:
        inputs = resize_inputs(11, scales, sizes)
        out = sizes or [int(n * s) for n, s in zip(X_RESIZE, scales)]
        truth = resize_by_hand(
            inputs[0],
            out,
            scales or [o / n for o, n in zip(out, X_RESIZE)],
            "nearest",
            "tf_half_pixel_for_nn",
            nearest_mode,
        )
        got = run_node(
            "Resize",
            11,
            inputs,
            mode="nearest",
            nearest_mode=nearest_mode,
            coordinate_transformation_mode="tf_half_pixel_for_nn",
        )
        assert_outputs(got, [truth])


OLD_SCALES = [[1.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.5, 2.5]]


def upsample_truth(x: np.ndarray, scales: Sequence[float], mode: str) -> np.ndarray:
    """Asymmetric coordinates: torch's ``nearest`` (floor), linear by hand."""
    if mode == "nearest":
        return torch_truth(F.interpolate, x, scale_factor=tuple(scales[2:]), mode="nearest")
    sizes = [int(n * s) for n, s in zip(x.shape, scales)]
    return resize_by_hand(x, sizes, scales, "linear", "asymmetric")


@pytest.mark.parametrize("op, opset", [("Upsample", 7), ("Upsample", 9), ("Resize", 10)])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", OLD_SCALES, ids=["integer", "fractional"])
def test_upsample_and_resize10(op: str, opset: int, mode: str, scales: list[float]) -> None:
    x = randn(*X_RESIZE)
    if opset == 7:
        got = run_node(op, opset, [x], mode=mode, scales=scales)
    else:
        got = run_node(op, opset, [x, np.array(scales, np.float32)], mode=mode)
    assert_outputs(got, [upsample_truth(x, scales, mode)])


# --- element-wise and shape ops (right) --------------------------------------------------------

X4 = (2, 3, 4, 5)
LOW, HIGH = np.array(-0.5, np.float32), np.array(0.7, np.float32)


@pytest.mark.parametrize(
    "opset, inputs, attrs, low, high",
    [
        (6, [], {"min": -0.5, "max": 0.7}, -0.5, 0.7),
        (6, [], {"max": 0.7}, None, 0.7),
        (6, [], {}, None, None),
        *((o, [LOW, HIGH], {}, -0.5, 0.7) for o in (11, 12, 13)),
        *((o, [None, HIGH], {}, None, 0.7) for o in (11, 13)),
        *((o, [LOW], {}, -0.5, None) for o in (11, 13)),
        (13, [], {}, None, None),
    ],
)
def test_clip(
    opset: int, inputs: list[Input], attrs: dict[str, float], low: float | None, high: float | None
) -> None:
    x = randn(*X4)
    assert_outputs(run_node("Clip", opset, [x, *inputs], **attrs), [np.clip(x, low, high)])


@pytest.mark.parametrize("opset", [6, 13, 14])
@pytest.mark.parametrize("op, truth", [("Relu", F.relu), ("Sigmoid", torch.sigmoid)])
def test_relu_sigmoid(opset: int, op: str, truth: Callable) -> None:
    x = randn(*X4)
    assert_outputs(run_node(op, opset, [x]), [torch_truth(truth, x)])


def test_hard_sigmoid() -> None:
    x = randn(*X4) * 4
    assert_outputs(run_node("HardSigmoid", 6, [x]), [np.clip(0.2 * x + 0.5, 0, 1)])
    assert_outputs(
        run_node("HardSigmoid", 6, [x], alpha=1 / 6, beta=0.5), [torch_truth(F.hardsigmoid, x)]
    )


@pytest.mark.parametrize("opset", [14, 22])
def test_hard_swish(opset: int) -> None:
    x = randn(*X4) * 4
    assert_outputs(run_node("HardSwish", opset, [x]), [torch_truth(F.hardswish, x)])


def coerced(fn: Callable, x: np.ndarray, axis: int) -> np.ndarray:
    """Before opset 13: ``fn`` over [prod(shape[:axis]), prod(shape[axis:])]."""
    flat = x.reshape(int(np.prod(x.shape[:axis])), -1)
    return torch_truth(fn, flat, dim=1).reshape(x.shape)


@pytest.mark.parametrize("op, fn", [("Softmax", F.softmax), ("LogSoftmax", F.log_softmax)])
@pytest.mark.parametrize(
    "opset, axis",
    [
        *((o, a) for o in (1, 11) for a in (None, 0, 1, 2, 3)),
        (11, -1),
        (11, -3),
        *((o, a) for o in (13, 21) for a in (None, 0, 1, -1)),
    ],
)
def test_softmax(op: str, fn: Callable, opset: int, axis: int | None) -> None:
    x = randn(*X4)
    attrs = {} if axis is None else {"axis": axis}
    if opset < 13:
        truth = coerced(fn, x, 1 if axis is None else axis % 4)
    else:
        truth = torch_truth(fn, x, dim=-1 if axis is None else axis)
    assert_outputs(run_node(op, opset, [x], **attrs), [truth])


@pytest.mark.parametrize("opset, axis", [(4, 1), (11, 1), (11, -3), (13, -3)])
def test_concat(opset: int, axis: int) -> None:
    x, y = randn(*X4), randn(2, 2, 4, 5, seed=1)
    assert_outputs(run_node("Concat", opset, [x, y], axis=axis), [np.concatenate([x, y], 1)])


SPLIT_INPUT = np.array([2, 4], np.int64)


@pytest.mark.parametrize(
    "opset, inputs, attrs, sizes",
    [
        (2, [], {"split": [2, 4]}, [2, 4]),
        (11, [], {"split": [2, 4]}, [2, 4]),
        (11, [], {}, [2, 2, 2]),
        (13, [SPLIT_INPUT], {}, [2, 4]),
        (13, [], {}, [2, 2, 2]),
        (18, [SPLIT_INPUT], {}, [2, 4]),
        (18, [], {"num_outputs": 3}, [2, 2, 2]),
        (18, [], {"num_outputs": 4}, [2, 2, 2, 1]),
        (18, [], {"num_outputs": 3}, [3, 3, 1]),
    ],
)
def test_split(
    opset: int, inputs: list[np.ndarray], attrs: dict[str, Any], sizes: list[int]
) -> None:
    """Along axis -2 of (2, sum(sizes), 3); num_outputs that do not divide: ceil, last smaller."""
    x = randn(2, sum(sizes), 3)
    expected = np.split(x, np.cumsum(sizes)[:-1], axis=1)
    got = run_node("Split", opset, [x, *inputs], n_outputs=len(sizes), axis=-2, **attrs)
    assert_outputs(got, expected)


@pytest.mark.parametrize("opset", [1, 13, 21])
@pytest.mark.parametrize("perm", [[0, 2, 3, 1], None])
def test_transpose(opset: int, perm: list[int] | None) -> None:
    x = randn(*X4)
    attrs = {} if perm is None else {"perm": perm}
    assert_outputs(run_node("Transpose", opset, [x], **attrs), [x.transpose(perm)])


@pytest.mark.parametrize("opset", [5, 13, 14, 21])
@pytest.mark.parametrize(
    "shape, expected",
    [
        ([0, -1], (2, 60)),
        ([0, 3, -1, 1], (2, 3, 20, 1)),
        ([-1, 0, 20], (2, 3, 20)),
        ([4, 0, -1], (4, 3, 10)),
    ],
)
def test_reshape(opset: int, shape: list[int], expected: tuple[int, ...]) -> None:
    x = randn(*X4)
    got = run_node("Reshape", opset, [x, np.array(shape, np.int64)])
    assert_outputs(got, [x.reshape(expected)])


def test_reshape_allowzero() -> None:
    x = np.zeros((0, 3), np.float32)
    got = run_node("Reshape", 14, [x, np.array([3, 0], np.int64)], allowzero=1)
    assert got[0].shape == (3, 0)


PADS = [0, 0, 1, 2, 0, 0, 2, 1]
NP_PADS = ((0, 0), (0, 0), (1, 2), (2, 1))


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("opset", [2, 11, 13, 18, 19, 21])
def test_pad(opset: int, mode: str) -> None:
    x = randn(1, 2, 3, 4)
    if opset == 2:
        got = run_node("Pad", opset, [x], pads=PADS, mode=mode, value=1.5)
    else:
        got = run_node(
            "Pad", opset, [x, np.array(PADS, np.int64), np.array(1.5, np.float32)], mode=mode
        )
    value = {"constant_values": 1.5} if mode == "constant" else {}
    assert_outputs(got, [np.pad(x, NP_PADS, mode=mode, **value)])


@pytest.mark.parametrize("opset", [18, 21])
@pytest.mark.parametrize("axes", [[2, 3], [-2, -1]])
def test_pad_axes(opset: int, axes: list[int]) -> None:
    x = randn(1, 2, 3, 4)
    pads, value = np.array([1, 2, 2, 1], np.int64), np.array(1.5, np.float32)
    got = run_node("Pad", opset, [x, pads, value, np.array(axes, np.int64)])
    assert_outputs(got, [np.pad(x, NP_PADS, constant_values=1.5)])


def test_pad_wrap_and_default_value() -> None:
    x, pads = randn(1, 2, 3, 4), np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)
    assert_outputs(
        run_node("Pad", 19, [x, pads], mode="wrap"),
        [np.pad(x, NP_PADS[:2] + ((1, 1), (1, 1)), mode="wrap")],
    )
    assert_outputs(run_node("Pad", 11, [x, pads]), [np.pad(x, NP_PADS[:2] + ((1, 1), (1, 1)))])


@pytest.mark.parametrize("opset", [2, 11, 18])
def test_pad_negative_crops(opset: int) -> None:
    """pads [.., -1 (H begin), 2 (W begin), .., 1 (H end), -1 (W end)]: crop then pad."""
    x = randn(1, 2, 3, 4)
    pads = [0, 0, -1, 2, 0, 0, 1, -1]
    inputs = [x] if opset == 2 else [x, np.array(pads, np.int64)]
    got = run_node("Pad", opset, inputs, **({"pads": pads} if opset == 2 else {}))
    assert_outputs(got, [np.pad(x[:, :, 1:, :3], ((0, 0), (0, 0), (0, 1), (2, 0)))])


@pytest.mark.parametrize("opset", [1, 11, 13])
@pytest.mark.parametrize(
    "attrs, truth",
    [
        ({"axes": [2, 3]}, lambda x: x.mean((2, 3), keepdims=True)),
        ({"axes": [1], "keepdims": 0}, lambda x: x.mean(1)),
        ({}, lambda x: x.mean(keepdims=True)),
    ],
    ids=["axes23", "nokeep", "all"],
)
def test_reduce_mean_attribute_axes(opset: int, attrs: dict[str, Any], truth: Callable) -> None:
    x = randn(*X4)
    assert_outputs(run_node("ReduceMean", opset, [x], **attrs), [truth(x)])


@pytest.mark.parametrize(
    "axes, attrs, truth",
    [
        ([2, 3], {}, lambda x: x.mean((2, 3), keepdims=True)),
        ([-1], {"keepdims": 0}, lambda x: x.mean(-1)),
        (None, {}, lambda x: x.mean(keepdims=True)),
        ([], {}, lambda x: x.mean(keepdims=True)),
        (None, {"noop_with_empty_axes": 1}, lambda x: x),
    ],
    ids=["axes23", "nokeep", "absent", "empty", "noop"],
)
def test_reduce_mean18_input_axes(
    axes: list[int] | None, attrs: dict[str, Any], truth: Callable
) -> None:
    x = randn(*X4)
    inputs = [x] if axes is None else [x, np.array(axes, np.int64)]
    assert_outputs(run_node("ReduceMean", 18, inputs, **attrs), [truth(x)])


# --- QuantizeLinear / DequantizeLinear (onnx implements opset 19 onwards only) -----------------


@pytest.mark.parametrize("opset", [10, 13])
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_quantize_and_dequantize_before_19_match_onnxs_own_19(opset: int, axis: int | None):
    if axis is not None and opset < 13:
        pytest.skip("per-axis parameters start at opset 13")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 4, 2)) * 40).astype(np.float32)
    x[0, 0, :] = [2.5 * 0.5, 3.5 * 0.5]  # halves: rounded to even
    x[2, 3, :] = [1e4, -1e4]  # beyond int8: saturated
    channels = x.shape[axis] if axis is not None else 1
    scale = np.full(channels, 0.5, np.float32) * (1 + np.arange(channels, dtype=np.float32))
    zero = (np.arange(channels) - 1).astype(np.int8)
    if axis is None:
        scale, zero = scale.reshape(()), zero.reshape(())
    attrs = {} if axis is None else {"axis": axis}
    for op, inputs in (
        ("QuantizeLinear", [x, scale, zero]),
        ("DequantizeLinear", [np.clip(np.rint(x), -128, 127).astype(np.int8), scale, zero]),
    ):
        got = run_node(op, opset, inputs, **attrs)
        model, feeds = node_model(op, 19, inputs, **attrs)
        assert_outputs(got, ReferenceEvaluator(model).run(None, feeds))
        assert got[0].dtype == (np.int8 if op == "QuantizeLinear" else np.float32)
    q = run_node("QuantizeLinear", opset, [x, scale, zero], **attrs)[0]
    assert q.min() == -128 and q.max() == 127  # saturated
    if axis is None:
        assert q[0, 0, :].tolist() == [2 - 1, 4 - 1]  # 2.5 -> 2, 3.5 -> 4, then the zero point


def test_quantize_without_a_zero_point_is_uint8():
    x = np.array([-3.0, 0.2, 0.6, 300.0], np.float32)
    (q,) = run_node("QuantizeLinear", 13, [x, np.array(1.0, np.float32)])
    assert q.dtype == np.uint8 and q.tolist() == [0, 0, 1, 255]
