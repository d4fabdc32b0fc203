"""verdict.judge on hand-made arrays: the sources decide, the executors are judged."""

from __future__ import annotations

import numpy as np
import pytest

from onnxconv.parity import Tolerance
from onnxconv.verdict import (
    REFERENCE,
    STORED,
    TORCH,
    Float64,
    deciding_source,
    judge,
    scaled,
)

TOL = Tolerance(atol=1e-4, rtol=1e-3)
RNG = np.random.default_rng(0)
TRUTH = RNG.standard_normal((1, 8, 4, 4)).astype(np.float32)


def broken(at=(0, 3, 2, 1), by=1.0) -> np.ndarray:
    wrong = TRUTH.copy()
    wrong[at] += by
    return wrong


def test_everyone_agrees_is_a_pass_decided_by_pytorch():
    check = judge("y", TRUTH + 1e-7, {TORCH: TRUTH, STORED: TRUTH, REFERENCE: TRUTH - 1e-7}, TOL)
    assert (check.status, check.kind, check.decided_by) == ("pass", "", TORCH)
    assert check.agreed == [TORCH, STORED, REFERENCE]
    assert check.reference_vs_source.passed


def test_executors_agree_against_the_source_is_an_export_defect():
    # The graph is broken; ORT and the reference evaluator both run it faithfully.
    graph = broken()
    check = judge("y", graph, {STORED: TRUTH, REFERENCE: graph}, TOL)
    assert (check.status, check.kind, check.decided_by) == ("fail", "export", STORED)
    assert check.agreed == [REFERENCE]
    assert check.results[STORED].worst.index == (0, 3, 2, 1)
    assert "export defect" in check.note and "worst at (0, 3, 2, 1)" in check.note


def test_a_source_of_another_shape_fails_and_asks_whether_it_is_the_graphs_source():
    graph = TRUTH.reshape(1, 128)  # the executors agree; the module named returns another shape
    check = judge("y", graph, {TORCH: TRUTH, REFERENCE: graph}, TOL)
    assert (check.status, check.kind) == ("fail", "export")
    assert "is torch this graph's source?" in check.note and "shape mismatch" in check.note


def test_a_stored_output_that_no_longer_matches_its_graph_fails():
    # The same judgement from the other side: nothing tells a stale file from a broken graph
    # unless the user says so.
    check = judge("y", TRUTH, {STORED: broken(), REFERENCE: TRUTH}, TOL)
    assert (check.status, check.kind) == ("fail", "export")
    assert "(or they are stale: --stored untrusted)" in check.note  # the way out, if so
    untrusted = judge("y", TRUTH, {STORED: broken(), REFERENCE: TRUTH}, TOL, trust_stored=False)
    assert (untrusted.status, untrusted.decided_by) == ("pass", None)
    assert "(declared untrusted) differ" in untrusted.note  # shown; the executors decide


def test_ort_alone_against_source_and_reference_is_a_runtime_defect():
    check = judge("y", broken(), {TORCH: TRUTH, REFERENCE: TRUTH}, TOL)
    assert (check.status, check.kind) == ("fail", "runtime")
    assert check.agreed == []


def test_reference_evaluator_alone_is_suspect_and_only_a_warning():
    check = judge("y", TRUTH, {TORCH: TRUTH, REFERENCE: broken()}, TOL)
    assert (check.status, check.kind) == ("warn", "reference")
    assert check.agreed == [TORCH]
    assert not check.reference_vs_source.passed


def test_pytorch_decides_over_stale_stored_outputs():
    check = judge("y", TRUTH, {TORCH: TRUTH, STORED: broken(), REFERENCE: TRUTH}, TOL)
    assert (check.status, check.kind, check.decided_by) == ("warn", "stale_stored", TORCH)
    quiet = judge(
        "y", TRUTH, {TORCH: TRUTH, STORED: broken(), REFERENCE: TRUTH}, TOL, trust_stored=False
    )
    assert quiet.status == "pass" and "(declared untrusted) differ" in quiet.note


def test_a_correct_stored_output_never_outvotes_pytorch():
    # Stored and the executors agree; PyTorch does not: the graph is not PyTorch's function.
    check = judge("y", broken(), {TORCH: TRUTH, STORED: broken(), REFERENCE: broken()}, TOL)
    assert (check.status, check.kind, check.decided_by) == ("fail", "export", TORCH)


def test_all_three_differ_is_a_failure_of_unknown_cause():
    check = judge("y", broken(by=1.0), {TORCH: TRUTH, REFERENCE: broken(by=2.0)}, TOL)
    assert (check.status, check.kind) == ("fail", "disagreement")


def test_no_source_the_executors_decide():
    assert judge("y", TRUTH, {REFERENCE: TRUTH}, TOL).status == "pass"
    check = judge("y", broken(), {REFERENCE: TRUTH}, TOL)
    assert (check.status, check.kind, check.decided_by) == ("fail", "executors", None)
    with pytest.raises(ValueError, match="no opinion"):
        judge("y", TRUTH, {}, TOL)


def test_nan_is_a_warning_where_the_source_has_it_too_and_a_failure_where_it_does_not():
    nan = TRUTH.copy()
    nan[0, 0] = np.nan
    shared = judge("y", nan, {STORED: nan, REFERENCE: nan}, TOL)
    assert (shared.status, shared.kind) == ("warn", "nonfinite")
    assert "16 NaN and 0 Inf of 128 elements" in shared.note
    alone = judge("y", nan, {STORED: TRUTH, REFERENCE: nan}, TOL)
    assert (alone.status, alone.kind) == ("fail", "overflow")
    all_nan = np.full_like(TRUTH, np.nan)
    assert judge("y", all_nan, {REFERENCE: all_nan}, TOL).status == "warn"


def test_atol_scales_with_the_rms_of_the_opinion_compared_against():
    assert scaled(TOL, np.full(4, 10.0)).atol == pytest.approx(1e-3)
    assert scaled(TOL, np.full(4, 0.1)).atol == pytest.approx(1e-4)
    assert scaled(TOL, np.array([np.nan, 10.0])).atol == pytest.approx(1e-3)


def test_deciding_source_order():
    assert deciding_source({TORCH: 1, STORED: 1, REFERENCE: 1}) == TORCH
    assert deciding_source({STORED: 1, REFERENCE: 1}) == STORED
    assert deciding_source({STORED: 1, REFERENCE: 1}, trust_stored=False) is None
    assert deciding_source({REFERENCE: 1}) is None


def test_a_graph_that_overflows_as_written_fails_even_where_ort_hides_it():
    inf = TRUTH.copy()
    inf[0, 1] = np.inf  # the spec, in fp16, overflows; ORT's x86 kernels compute in fp32
    check = judge("y", TRUTH, {STORED: TRUTH, REFERENCE: inf}, TOL)
    assert (check.status, check.kind) == ("fail", "overflow")
    assert "0 NaN and 16 Inf" in check.note and "within tolerance of stored" in check.note


def test_a_float16_deployment_is_judged_by_the_source_else_by_the_fp32_graph():
    from onnxconv.parity import Tolerance

    tol = Tolerance(atol=1e-2, rtol=1e-2)
    ref = np.linspace(-1, 1, 50)
    off = ref + 0.2
    check = judge("y", off, {"torch": ref, "reference_evaluator": off}, tol, deployment="fp16")
    assert (check.status, check.kind) == ("fail", "float16")  # the fp32 graph's run: no vote
    assert "the fp16 deployment departs from torch beyond" in check.note
    alone = judge("y", off, {"reference_evaluator": ref}, tol, deployment="fp16-io")
    assert alone.kind == "float16" and "(no source: the fp32 graph on the reference" in alone.note
    fine = judge(
        "y", ref + 1e-4, {"stored": ref, "reference_evaluator": ref}, tol, deployment="fp16"
    )
    assert fine.status == "pass" and fine.decided_by == "stored"


def _off(by: float) -> np.ndarray:
    """TRUTH as an fp32 computation whose rounding moved every element by ``by``."""
    return (TRUTH.astype(np.float64) + by * np.sign(TRUTH)).astype(np.float32)


def test_a_departure_within_the_cases_own_fp32_rounding_passes_and_says_so():
    """A deep network: PyTorch's fp32 output and ORT's are each 9e-5 from the float64 result,
    on opposite sides, so they differ past the tolerance; the float64 result shows that this is
    rounding, not ORT."""
    exact = Float64(TRUTH.astype(np.float64), TORCH, "PyTorch in float64")
    torch32, ort = _off(-9e-5), _off(9e-5)
    without = judge("y", ort, {TORCH: torch32, REFERENCE: torch32}, TOL)
    assert (without.status, without.kind) == ("fail", "runtime")
    check = judge("y", ort, {TORCH: torch32, REFERENCE: torch32}, TOL, float64=lambda: exact)
    assert (check.status, check.kind) == ("pass", "")
    assert check.note.startswith("within fp32 rounding: onnxruntime departs from torch by 0.00018")
    assert (
        "no more than 4x this case's own fp32 rounding (torch is 9e-05 from PyTorch" in check.note
    )


def test_a_defect_larger_than_the_rounding_still_fails_beside_a_float64_result():
    exact = Float64(TRUTH.astype(np.float64), TORCH, "PyTorch in float64")
    torch32 = _off(-9e-5)
    check = judge(
        "y", broken(by=1e-2), {TORCH: torch32, REFERENCE: torch32}, TOL, float64=lambda: exact
    )
    assert (check.status, check.kind) == ("fail", "runtime")
    graph = Float64(TRUTH.astype(np.float64), REFERENCE, "the graph in float64")
    check = judge("y", broken(by=1e-2), {REFERENCE: TRUTH}, TOL, float64=lambda: graph)
    assert (check.status, check.kind) == ("fail", "executors")
    # a twin a little past the tolerance is no ill-conditioned case: the defect still fails
    check = judge("y", broken(by=1e-2), {REFERENCE: _off(3e-4)}, TOL, float64=lambda: graph)
    assert (check.status, check.kind) == ("fail", "executors")


def test_a_case_fp32_cannot_compute_says_nothing():
    """Inputs far from the data through a trained-scale network: fp32 itself misses the float64
    result by far more than the tolerance, and two fp32 executors differ by more still."""
    exact = Float64(TRUTH.astype(np.float64), REFERENCE, "the graph in float64")
    check = judge("y", _off(-3.0), {REFERENCE: _off(0.5)}, TOL, float64=lambda: exact)
    assert (check.status, check.kind) == ("pass", "")
    assert "an ill-conditioned case: fp32 itself misses it by" in check.note


def test_a_graph_far_from_its_stored_outputs_in_float64_is_not_excused_by_its_rounding():
    """No module: the float64 result and its twin are the graph's. A graph that multiplies its
    input by 4 is ill-conditioned at trained scale, so its own rounding grows; what no rounding
    explains is a graph as far from its stored outputs in float64 as in fp32."""
    r = 2e-4
    graph = Float64(TRUTH.astype(np.float64) + 5 * r * np.sign(TRUTH), REFERENCE, "the graph")
    reference32 = (graph.value + r * np.sign(TRUTH)).astype(np.float32)
    ort = _off(1.5 * r)  # near the stored outputs by chance: within 4x the rounding of them
    check = judge("y", ort, {STORED: TRUTH, REFERENCE: reference32}, TOL, float64=lambda: graph)
    assert (check.status, check.kind) == ("fail", "disagreement")
    honest = Float64(TRUTH.astype(np.float64) + 2 * r * np.sign(TRUTH), REFERENCE, "the graph")
    check = judge("y", ort, {STORED: TRUTH, REFERENCE: reference32}, TOL, float64=lambda: honest)
    assert check.status == "pass"  # the stored outputs within its rounding of the graph


def test_on_a_case_fp32_cannot_compute_a_departure_far_past_its_rounding_still_fails():
    """A defect seen only on inputs of 8 sigma (the input clamped): 61x PyTorch's own rounding
    there, past the 20x an ill-conditioned case allows."""
    exact = Float64(TRUTH.astype(np.float64), TORCH, "PyTorch in float64")
    torch32 = _off(0.5)
    check = judge(
        "y", _off(-30.0), {TORCH: torch32, REFERENCE: torch32}, TOL, float64=lambda: exact
    )
    assert (check.status, check.kind) == ("fail", "runtime")
    check = judge("y", _off(-5.0), {TORCH: torch32, REFERENCE: torch32}, TOL, float64=lambda: exact)
    assert check.status == "pass" and "no more than 20x" in check.note


def test_on_the_users_own_data_an_ill_conditioned_case_is_excused_nothing():
    """A graph that multiplies its input by 6 makes itself ill-conditioned on the stored input,
    and its own rounding then grew past the defect; a correct graph computes its user's data
    well in fp32, so there no ill-conditioned case is excused."""
    generated = Float64(TRUTH.astype(np.float64), TORCH, "PyTorch in float64", generated=True)
    stored = Float64(TRUTH.astype(np.float64), TORCH, "PyTorch in float64", generated=False)
    torch32 = _off(0.5)
    opinions = {TORCH: torch32, REFERENCE: torch32}
    assert judge("y", _off(-5.0), opinions, TOL, float64=lambda: generated).status == "pass"
    check = judge("y", _off(-5.0), opinions, TOL, float64=lambda: stored)
    assert (check.status, check.kind) == ("fail", "runtime")


def test_a_float16_deployment_within_pytorchs_own_float16_rounding_passes_and_says_so():
    """A deep network in float16: the deployment is 0.025 from PyTorch in fp32, past fp16's
    atol, where PyTorch's own float16 result is 0.02 from it: float16's rounding, not the
    conversion."""
    tol = Tolerance(atol=1e-2, rtol=1e-2)
    ref = np.linspace(-1, 1, 50)
    sign = np.where(np.arange(50) % 2, 1.0, -1.0)
    deployed, half = ref + 0.025 * sign, ref - 0.02 * sign
    opinions = {TORCH: ref, REFERENCE: ref}
    check = judge("y", deployed, opinions, tol, deployment="fp16", float16=lambda: half)
    assert (check.status, check.kind) == ("pass", "")
    assert check.note.startswith("within fp16 rounding: the deployment departs from torch by 0.025")
    assert (
        "RMS 0.025 against its 0.02, no element more than 1.25x its departure there" in check.note
    )
    one = deployed.copy()
    one[7] = ref[7] + 0.1  # one element 5x PyTorch's own departure there: a defect, not rounding
    # Past 1.5x PyTorch's RMS departure, one element far past its own, without a float16
    # result, or decided by stored outputs (no module: the graph in float16 would be the
    # deployment itself), it stays a failure.
    for wrong, float16, sources in (
        (ref + 0.035 * sign, lambda: half, opinions),
        (one, lambda: half, opinions),
        (deployed, lambda: None, opinions),
        (deployed, None, opinions),
        (deployed, lambda: half, {STORED: ref, REFERENCE: ref}),
        (deployed, lambda: np.full_like(ref, np.nan), opinions),
    ):
        failed = judge("y", wrong, sources, tol, deployment="fp16", float16=float16)
        assert (failed.status, failed.kind) == ("fail", "float16"), (wrong[:3], sources.keys())


def test_the_zoo_mobilenet_v1_in_float16_is_told_from_a_conversion_defect(tmp_path):
    """On real data: the zoo's MobileNet v1 (BatchNorm statistics of its data) deployed in
    float16 on ORT departs from PyTorch in fp32 as PyTorch's own float16 result does and
    passes; the same deployment with one logit moved past the tolerance by 5x the largest
    rounding, or every logit scaled by 1.1, fails (its float16 rounding is 5% of the logits)."""
    import onnx
    import torch

    from onnxconv import precisions, variants
    from onnxconv.export import export_variants
    from onnxconv.float64 import torch_in_float16
    from onnxconv.parity import default_tolerance
    from onnxconv.runtime import Target, make_session, run

    overrides = {"height": 64, "width": 64, "num_classes": 100}
    (result,) = export_variants(["mobilenet_v1"], tmp_path, overrides=overrides)
    spec = variants.get("mobilenet_v1")
    config = spec.config(overrides)
    module, x = spec.build(config), spec.example_input(config, 0).numpy()
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    deployed = precisions.deploy(onnx.load(result.model_path), "fp16")
    session = make_session(deployed, Target("cpu", "all", "fp16"), threads=1)
    (name,) = [s.name for s in session.outputs]
    got = run(session, {session.inputs[0].name: x})[name]
    half = torch_in_float16(module, {"x": x}, ["x"], [name])[name]
    rounding = float(np.max(np.abs(half - want)))
    assert 0 < rounding < 0.1  # a signal that float16 moves, yet no overflow
    tol = default_tolerance("fp16", "cpu")

    def verdict(actual):
        return judge(name, actual, {TORCH: want}, tol, deployment="fp16", float16=lambda: half)

    assert verdict(got).status == "pass", verdict(got).note
    moved = got.copy()
    moved[0, 7] += 5 * rounding + tol.atol
    scaled = got * 1.1
    for wrong in (moved, scaled):
        assert (verdict(wrong).status, verdict(wrong).kind) == ("fail", "float16")
