"""parity.compare on hand-made arrays with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxconv import parity
from onnxconv.errors import UserInputError
from onnxconv.parity import (
    HISTOGRAM_EDGES,
    Tolerance,
    compare,
    default_tolerance,
    within,
)

TOL = Tolerance(atol=1e-4, rtol=1e-3)


def _planted(shape=(2, 3, 4, 5), seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(shape).astype(np.float32)
    act = ref.copy()
    return ref, act


def test_identical_arrays_pass_with_zero_error():
    ref, act = _planted()
    r = compare(act, ref, TOL)
    assert r.passed and r.reason is None
    assert r.n_bad == 0 and r.frac_bad == 0.0
    assert r.max_abs == 0.0 and r.rms == 0.0 and r.mean_abs == 0.0
    assert r.cosine == pytest.approx(1.0)
    assert r.histogram.counts[0] == ref.size  # every error is in [0, 1e-12)


def test_known_worst_element_and_counts():
    ref, act = _planted()
    # three elements clearly outside tolerance; the middle one is the worst
    act[0, 1, 2, 3] += 0.01
    act[1, 2, 3, 4] += 0.5
    act[0, 0, 0, 0] -= 0.02
    # one element inside tolerance (1e-5 < atol) must not count
    act[1, 0, 0, 0] += 1e-5
    r = compare(act, ref, TOL, name="logits")
    assert not r.passed
    assert r.n_bad == 3
    assert r.frac_bad == pytest.approx(3 / ref.size)
    assert r.worst.index == (1, 2, 3, 4)
    assert r.worst.actual == pytest.approx(float(act[1, 2, 3, 4]))
    assert r.worst.reference == pytest.approx(float(ref[1, 2, 3, 4]))
    assert r.worst.abs_err == pytest.approx(0.5, rel=1e-5)
    assert r.worst.tol_ratio > 1
    assert r.max_abs == pytest.approx(0.5, rel=1e-5)
    assert r.reason.startswith(f"logits: 3 of {ref.size} elements outside atol=0.0001 rtol=0.001")
    assert "worst at (1, 2, 3, 4)" in r.reason
    assert r.shape == ref.shape and r.dtype == "float32"


def test_threshold_is_isclose_convention():
    ref = np.array([0.0, 100.0, 100.0, 1.0], dtype=np.float64)
    # allowed errors: 1e-4, 0.1001, 0.1001, 1.1e-3
    act = ref + np.array([0.9e-4, 0.1, 0.2, 1.2e-3])
    r = compare(act, ref, TOL)
    expected_bad = ~np.isclose(act, ref, atol=TOL.atol, rtol=TOL.rtol)
    assert r.n_bad == int(expected_bad.sum()) == 2
    assert r.worst.index == (2,)  # 0.2 / 0.1001 ~ 2x over beats 1.2e-3 / 1.1e-3


def test_max_rel_uses_epsilon_guard():
    ref = np.array([0.0, 2.0])
    act = np.array([0.0, 2.2])
    r = compare(act, ref, TOL)
    assert r.max_rel == pytest.approx(0.1)
    r0 = compare(np.array([1e-3]), np.array([0.0]), TOL)
    assert math.isfinite(r0.max_rel) and r0.max_rel == pytest.approx(1e-3 / 1e-12)


def test_nan_in_actual_fails_even_when_rest_is_exact():
    ref, act = _planted()
    act[0, 2, 1, 1] = np.nan
    r = compare(act, ref, TOL)
    assert not r.passed
    assert r.nan_actual == 1 and r.nan_reference == 0
    assert r.n_bad == 1
    assert r.worst.index == (0, 2, 1, 1)
    assert "NaN in actual" in r.reason
    # metrics cover the finite pairs only and stay finite
    assert r.max_abs == 0.0
    assert sum(r.histogram.counts) == ref.size
    assert r.histogram.counts[-1] == 1  # the NaN mismatch is an infinite error


def test_nan_matching_nan_and_inf_counts():
    ref = np.array([np.nan, np.inf, -np.inf, 1.0])
    act = np.array([np.nan, np.inf, np.inf, 1.0])
    r = compare(act, ref, TOL)
    assert r.n_bad == 1 and r.worst.index == (2,)
    assert r.nan_actual == 1 and r.nan_reference == 1
    assert r.inf_actual == 2 and r.inf_reference == 2


def test_shape_mismatch_is_a_failure_not_an_exception():
    r = compare(np.zeros((1, 10)), np.zeros((10,)), TOL, name="out")
    assert not r.passed
    assert r.reason == "out: shape mismatch: actual (1, 10) vs reference (10,)"
    assert r.histogram is None and r.max_abs is None


def test_histogram_bins_and_sum():
    ref = np.zeros(6)
    act = np.array([0.0, 5e-13, 3e-7, 3e-7, 0.5, 1e5])
    r = compare(act, ref, TOL)
    edges, counts = r.histogram.edges, r.histogram.counts
    assert edges == HISTOGRAM_EDGES
    assert edges[0] == 0.0 and edges[1] == 1e-12 and edges[-2] == 1e2 and edges[-1] == math.inf
    assert len(counts) == len(edges) - 1
    assert sum(counts) == ref.size
    assert counts[0] == 2  # 0 and 5e-13 in [0, 1e-12)
    assert counts[edges.index(1e-7)] == 2  # 3e-7 in [1e-7, 1e-6)
    assert counts[edges.index(0.1)] == 1
    assert counts[-1] == 1  # 1e5 in [1e2, inf]


def test_histogram_puts_an_error_on_an_edge_in_the_bin_above_it():
    counts = compare(np.array([1e-12, 1e-7, 1e2]), np.zeros(3), TOL).histogram.counts
    assert counts[1] == counts[HISTOGRAM_EDGES.index(1e-7)] == counts[-1] == 1


def test_histogram_matches_a_binary_search_over_many_chunks():
    rng = np.random.default_rng(5)
    ref = rng.standard_normal(100_000)
    act = ref + rng.standard_normal(ref.size) * 10.0 ** rng.integers(-14, 4, ref.size)
    act[::997] = ref[::997]  # exact zeros too
    errors = np.abs(act - ref)
    bins = np.searchsorted(np.asarray(HISTOGRAM_EDGES[:-1]), errors, side="right") - 1
    want = np.bincount(bins, minlength=len(HISTOGRAM_EDGES) - 1)
    assert list(compare(act, ref, TOL).histogram.counts) == want.tolist()


def test_histogram_sums_to_size_on_random_data():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal(1000)
    act = ref + rng.standard_normal(1000) * 10.0 ** rng.uniform(-14, 3, 1000)
    r = compare(act, ref, TOL)
    assert sum(r.histogram.counts) == 1000


def test_metrics_computed_in_float64():
    ref = np.full(4, 1.0, dtype=np.float16)
    act = np.full(4, 1.0009765625, dtype=np.float16)  # 1 + 2**-10, one fp16 ulp
    r = compare(act, ref, Tolerance(0, 0))
    assert r.max_abs == 2.0**-10
    assert r.dtype == "float16"


def test_cosine_and_rms():
    ref = np.array([1.0, 0.0])
    act = np.array([0.0, 1.0])
    r = compare(act, ref, TOL)
    assert r.cosine == pytest.approx(0.0)
    assert r.rms == pytest.approx(1.0)
    assert compare(np.zeros(3), np.zeros(3), TOL).cosine == 1.0


def test_to_dict_is_plain_json():
    ref, act = _planted()
    act[0, 0, 0, 0] = np.nan
    d = compare(act, ref, TOL).to_dict()
    text = json.dumps(d, allow_nan=False)  # raises if a NaN/inf or numpy type slipped through
    back = json.loads(text)
    assert back["passed"] is False
    assert back["worst"]["index"] == [0, 0, 0, 0]
    assert back["worst"]["actual"] is None  # NaN -> null
    assert back["tolerance"] == {"atol": 1e-4, "rtol": 1e-3}
    assert back["histogram"]["edges"][-1] is None  # inf -> null


def test_default_tolerance_table():
    assert default_tolerance("fp32", "cpu") == Tolerance(1e-4, 1e-3)
    cuda = default_tolerance("fp32", "cuda")
    assert cuda.atol > 1e-4 and cuda.rtol > 1e-3
    assert default_tolerance("fp16", "cpu") == Tolerance(1e-2, 1e-2)
    assert default_tolerance("fp16", "cuda") == Tolerance(1e-2, 1e-2)
    with pytest.raises(UserInputError, match="bf16"):
        default_tolerance("bf16", "cpu")
    with pytest.raises(UserInputError, match="atol"):
        Tolerance(-1.0, 0.0)


def test_a_graph_brought_at_a_lower_precision_is_judged_at_its_own():
    """fp32 cells of a float16 graph use fp16's tolerance; of a quantized graph, fp32's plus one
    step of the DequantizeLinear that gives its output (a one-step rounding difference between
    two executors is not a defect there); a float32 graph keeps fp32's."""
    from onnx import TensorProto, helper, numpy_helper

    from onnxconv.parity import default_tolerance, graph_tolerance

    fp32 = default_tolerance("fp32", "cpu")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    scale = numpy_helper.from_array(np.array(0.25, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    qdq = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
        ],
        "qdq",
        [x],
        [y],
        [scale, zero],
    )
    tol = graph_tolerance(helper.make_model(qdq), "fp32", "cpu")
    assert tol.atol == pytest.approx(fp32.atol + 0.25) and tol.rtol == fp32.rtol
    half = helper.make_tensor_value_info("h", TensorProto.FLOAT16, [4])
    relu = helper.make_graph(
        [helper.make_node("Relu", ["h"], ["o"])],
        "g",
        [half],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT16, [4])],
    )
    assert graph_tolerance(helper.make_model(relu), "fp32", "cpu") == default_tolerance(
        "fp16", "cpu"
    )
    plain = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    assert graph_tolerance(helper.make_model(plain), "fp32", "cpu") == fp32


_SPECIAL = st.sampled_from([0.0, 1.0, -1.0, 1e-4, float("nan"), float("inf"), float("-inf")])


@settings(max_examples=300, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(
            st.one_of(st.floats(-10, 10, width=32), _SPECIAL),
            st.one_of(st.floats(-10, 10, width=32), _SPECIAL),
        ),
        min_size=1,
        max_size=40,
    ),
    near=st.booleans(),
    atol=st.sampled_from([0.0, 1e-4, 0.5]),
    rtol=st.sampled_from([0.0, 1e-3]),
)
def test_within_is_compares_verdict_on_any_values(pairs, near, atol, rtol):
    """Finite values near or far, NaN, infinities of either sign, zero tolerances: within says
    what compare's passed says, also across chunk boundaries."""
    actual = np.asarray([a for a, _ in pairs], np.float32)
    reference = np.asarray([r for _, r in pairs], np.float32)
    if near:  # most pairs within the tolerance, so that both answers occur
        reference = np.where(np.isfinite(actual), actual + np.float32(atol / 2), reference)
    tol = Tolerance(atol, rtol)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parity, "CHUNK", 7)
        assert within(actual, reference, tol) == compare(actual, reference, tol).passed


def test_within_refuses_another_shape_as_compare_does():
    a = np.zeros((2, 3), np.float32)
    assert not within(a, a.reshape(3, 2), TOL) and not compare(a, a.reshape(3, 2), TOL).passed
