"""onnxconv tune: every rewrite is a valid graph that computes the same function and has the
structure it claims; the proof rejects a wrong candidate; the CLI writes the tuned model and its
record. Timings are never asserted."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cuda_marks import cuda_only
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import make_init, make_model

from onnxconv import machine, validate
from onnxconv.bench.harness import run_worker, worker_env
from onnxconv.cli import main
from onnxconv.errors import UserInputError
from onnxconv.graph import find_channel_shuffles, find_convs
from onnxconv.runtime import Target, make_session
from onnxconv.tune import settings as settings_module
from onnxconv.tune import timing
from onnxconv.tune.proof import Prover
from onnxconv.tune.rewrites import (
    REWRITES,
    apply_rewrites,
    formulations,
    grouped_merge,
    grouped_pad,
)
from onnxconv.tune.search import beats
from onnxconv.tune.settings import DEFAULT, SPINNING, SessionSettings, cpu_candidates
from onnxconv.tune.sites import shuffle_permutation
from onnxconv.tune.timing import Job, Method, Timing, ort_job

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"

#: Which rewrites apply to which committed graph (no committed graph has a group-1 Conv beside
#: its shuffle, so shuffle_fold is tested on hand-built graphs below).
APPLIES = {
    "channel_shuffle": {"shuffle_rank4", "shuffle_gather"},
    "shuffle_unit": {
        "shuffle_rank4",
        "shuffle_gather",
        "shuffle_fold_dense",
        "grouped_split",
        "grouped_dense",
    },
    "shuffle_unit_s2": {
        "shuffle_rank4",
        "shuffle_gather",
        "shuffle_fold_dense",
        "grouped_split",
        "grouped_dense",
    },
    "shufflenet_v2_unit": {"shuffle_rank4", "shuffle_gather"},
    "grouped": {"grouped_split", "grouped_dense", "grouped_merge", "grouped_pad"},  # 8 per group
}


@pytest.fixture(autouse=True)
def avx512_nchwc_block(monkeypatch):
    """grouped_pad pads to this machine's NCHWc block: pin it at AVX-512's 16 channels, so what
    applies where does not depend on the CPU running the tests."""
    monkeypatch.setattr(machine, "nchwc_block", lambda: 16)


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in model.graph.input:
        shape = [d.dim_value or 2 for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = (3 * rng.standard_normal(shape)).astype(np.float32)
    return feeds


def _assert_same_function(original, rewritten) -> None:
    """Bit-identical where the rewrite only moves data, else equal to fp32 rounding."""
    onnx.checker.check_model(rewritten.model, full_check=True)
    onnx.shape_inference.infer_shapes(rewritten.model, check_type=True, strict_mode=True)
    assert [i.name for i in rewritten.model.graph.input] == [i.name for i in original.graph.input]
    assert [o.name for o in rewritten.model.graph.output] == [o.name for o in original.graph.output]
    feeds = _feeds(original)
    for want, got in zip(_ort(original, feeds), _ort(rewritten.model, feeds), strict=True):
        if rewritten.exact_permutation:
            assert np.array_equal(got, want)
        else:
            scale = max(1.0, float(np.sqrt(np.mean(want.astype(np.float64) ** 2))))
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


@pytest.mark.parametrize("graph", sorted(APPLIES))
def test_rewrites_apply_where_they_should(graph):
    model = onnx.load(GRAPHS / graph / "model.onnx")
    found = {name for name in REWRITES if apply_rewrites(model, [name]) is not None}
    assert found == APPLIES[graph]


@pytest.mark.parametrize(
    "graph, rewrite", [(g, r) for g in sorted(APPLIES) for r in sorted(APPLIES[g])]
)
def test_rewrite_is_the_same_function_with_the_structure_it_claims(graph, rewrite):
    model = onnx.load(GRAPHS / graph / "model.onnx")
    result = apply_rewrites(model, [rewrite])
    _assert_same_function(model, result)
    before, after = _ops(model), _ops(result.model)
    grouped = [c for c in find_convs(result.model) if c.kind == "grouped"]
    if rewrite == "shuffle_gather":
        assert "Transpose" not in after and "Reshape" not in after and "Gather" in after
        shuffle = find_channel_shuffles(model)[0]
        gather = next(n for n in result.model.graph.node if n.op_type == "Gather")
        indices = next(i for i in result.model.graph.initializer if i.name == gather.input[1])
        assert indices.data_type == TensorProto.INT64
        perm = shuffle_permutation(shuffle.groups, shuffle.channels_per_group)
        assert np.array_equal(numpy_helper.to_array(indices), perm)
    elif rewrite == "shuffle_rank4":
        (shuffle,) = find_channel_shuffles(result.model)
        assert shuffle.rank == 4 and shuffle.exact and shuffle.perm == [0, 2, 1, 3]
        assert result.exact_permutation
    elif rewrite == "shuffle_fold_dense":
        assert "Transpose" not in after and not find_channel_shuffles(result.model)
        assert len(grouped) == len([c for c in find_convs(model) if c.kind == "grouped"]) - 1
    elif rewrite == "grouped_dense":
        assert not grouped and after.count("Conv") == before.count("Conv")
    elif rewrite == "grouped_pad":
        (conv,) = [c for c in find_convs(result.model) if c.kind == "grouped"]
        assert conv.group == 8 and conv.in_channels == conv.out_channels == 8 * 16
        assert after.count("Pad") == 1 and after.count("Gather") == 2
    elif rewrite == "grouped_merge":
        (conv,) = [c for c in find_convs(result.model) if c.kind == "grouped"]
        assert conv.group == 4 and conv.in_channels == conv.out_channels == 64
        assert after == before  # the same nodes: only the weight and the group changed
    elif rewrite == "grouped_split":
        groups = sum(c.group for c in find_convs(model) if c.kind == "grouped")
        n_grouped = len([c for c in find_convs(model) if c.kind == "grouped"])
        assert not grouped and after.count("Split") >= n_grouped
        assert after.count("Conv") == before.count("Conv") - n_grouped + groups


def test_grouped_pad_pads_only_to_a_block_the_channels_miss(monkeypatch):
    model = onnx.load(GRAPHS / "grouped" / "model.onnx")  # 8 channels per group
    assert grouped_pad(model, block=8) is None  # already a multiple of AVX2's block
    monkeypatch.setattr(machine, "nchwc_block", lambda: None)  # no NCHWc kernels (not x86)
    assert grouped_pad(model) is None
    (change,) = grouped_pad(model, block=16).changes
    assert "8->16 input and 8->16 output channels per group" in change and "4x" in change


def test_grouped_merge_merges_the_fewest_groups_that_meet_the_block(monkeypatch):
    model = onnx.load(GRAPHS / "grouped" / "model.onnx")  # g=8, 8 channels per group
    assert grouped_merge(model, block=8) is None  # already a multiple of AVX2's block
    monkeypatch.setattr(machine, "nchwc_block", lambda: None)  # no NCHWc kernels (not x86)
    assert grouped_merge(model) is None
    (change,) = grouped_merge(model, block=16).changes
    assert "group 8 -> 4, 2 groups merged" in change and "8->16 input" in change
    (change,) = grouped_merge(model, block=32).changes
    assert "group 8 -> 2, 4 groups merged" in change and "4x" in change
    assert grouped_merge(model, block=64) is None  # only all 8 would do: that is grouped_dense


def test_merged_groups_are_the_block_diagonal_of_their_old_groups():
    from onnxconv.tune.sites import block_diagonal, merge_groups

    weight = np.arange(8 * 2 * 3 * 3, dtype=np.float32).reshape(8, 2, 3, 3) + 1  # g=4, 2 out
    merged = merge_groups(weight, groups=4, merged=2)  # g=2: 4 in, 4 out per group
    assert merged.shape == (8, 4, 3, 3)
    for o in range(8):
        old_group = o // 2
        column = old_group % 2
        assert np.array_equal(merged[o, 2 * column : 2 * column + 2], weight[o])
        assert not merged[o, 2 * (1 - column) : 2 * (1 - column) + 2].any()
    assert np.array_equal(block_diagonal(weight, 4), merge_groups(weight, 4, 4))


def test_formulations_combine_one_shuffle_and_one_grouped_rewrite():
    model = onnx.load(GRAPHS / "shuffle_unit" / "model.onnx")
    found = formulations(model, list(REWRITES))
    assert "shuffle_gather+grouped_dense" in found and "shuffle_gather" in found
    sizes = [len(name.split("+")) for name in found]
    assert sizes == sorted(sizes) and sizes[0] == 1  # every rewrite alone before any pair
    singles = [name for name in found if "+" not in name]
    assert singles == [n for n in REWRITES if n in singles]  # in the registry's order
    combined = found["shuffle_gather+grouped_dense"]
    assert not combined.exact_permutation
    assert "Transpose" not in _ops(combined.model)
    assert not [c for c in find_convs(combined.model) if c.kind == "grouped"]
    _assert_same_function(model, combined)


# --------------------------------------------------------------------------------------------
# the fold, on hand-built graphs with group-1 neighbours


def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _shuffle_nodes(x: str, y: str, c: int, g: int, hw: int):
    inits = [
        make_init("s5", np.array([1, g, c // g, hw, hw], np.int64)),
        make_init("s4", np.array([1, c, hw, hw], np.int64)),
    ]
    nodes = [
        helper.make_node("Reshape", [x, "s5"], ["r5"], name="view"),
        helper.make_node("Transpose", ["r5"], ["t5"], name="shuffle", perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t5", "s4"], [y], name="unview"),
    ]
    return nodes, inits


def _backward_graph() -> onnx.ModelProto:
    """Conv (group 1) -> BatchNormalization -> Relu -> shuffle -> depthwise Conv -> Conv."""
    rng, c = np.random.default_rng(3), 8
    shuffle, inits = _shuffle_nodes("r", "s", c, 4, 6)
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "g", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        *shuffle,
        helper.make_node("Conv", ["s", "Wd", "Bd"], ["d"], name="dw", group=c, pads=[1] * 4),
        helper.make_node("Conv", ["d", "W2"], ["y"], name="conv2"),
    ]
    inits += [
        make_init("W1", _f32(rng, c, 4, 1, 1)),
        make_init("B1", _f32(rng, c)),
        make_init("g", 1 + 0.1 * _f32(rng, c)),
        make_init("b", _f32(rng, c)),
        make_init("m", _f32(rng, c)),
        make_init("v", 0.5 + np.abs(_f32(rng, c))),
        make_init("Wd", _f32(rng, c, 1, 3, 3)),
        make_init("Bd", _f32(rng, c)),
        make_init("W2", _f32(rng, 5, c, 1, 1)),
    ]
    return make_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 6, 6])],
        inits,
    )


def _forward_graph(shared: bool = False) -> onnx.ModelProto:
    """graph input -> shuffle -> Mul by a per-channel constant -> Conv (group 1); with ``shared``
    the Mul's output is also a graph output (the fold would change it: not foldable)."""
    rng, c = np.random.default_rng(4), 6
    shuffle, inits = _shuffle_nodes("x", "s", c, 3, 5)
    nodes = [
        *shuffle,
        helper.make_node("Mul", ["s", "k"], ["m"], name="scale"),
        helper.make_node("Conv", ["m", "W"], ["y"], name="conv"),
    ]
    inits += [make_init("k", _f32(rng, c, 1, 1)), make_init("W", _f32(rng, 4, c, 1, 1))]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])]
    if shared:
        outputs.append(helper.make_tensor_value_info("m", TensorProto.FLOAT, [1, c, 5, 5]))
    return make_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 5, 5])],
        outputs,
        inits,
    )


def _branching_graph(meet: bool = False) -> onnx.ModelProto:
    """graph input -> shuffle, read by a depthwise Conv -> Conv and by a second Conv, as in
    ShuffleNet V2's stride-2 units; with ``meet`` the second reader is an Add of both branches
    (not per-channel by a constant: the permutation cannot pass)."""
    rng, c = np.random.default_rng(5), 6
    shuffle, inits = _shuffle_nodes("x", "s", c, 2, 5)
    nodes = [
        *shuffle,
        helper.make_node("Conv", ["s", "Wd"], ["d"], name="dw", group=c, pads=[1] * 4),
        helper.make_node("Conv", ["d", "W1"], ["y1"], name="pw1"),
        helper.make_node("Conv", ["s", "W2"], ["y2"], name="pw2")
        if not meet
        else helper.make_node("Add", ["s", "d"], ["y2"], name="meet"),
    ]
    inits += [
        make_init("Wd", _f32(rng, c, 1, 3, 3)),
        make_init("W1", _f32(rng, 4, c, 1, 1)),
        make_init("W2", _f32(rng, 4, c, 1, 1)),
    ]
    channels = c if meet else 4
    return make_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 5, 5])],
        [
            helper.make_tensor_value_info("y1", TensorProto.FLOAT, [1, 4, 5, 5]),
            helper.make_tensor_value_info("y2", TensorProto.FLOAT, [1, channels, 5, 5]),
        ],
        inits,
    )


def test_fold_forward_into_every_branch_that_reads_the_shuffle():
    model = _branching_graph()
    result = apply_rewrites(model, ["shuffle_fold"])
    assert not find_channel_shuffles(result.model) and _ops(result.model) == ["Conv"] * 3
    said = result.changes[0]
    assert "dw (depthwise Conv) weight" in said and "pw1: input columns" in said
    assert "pw2: input columns" in said
    _assert_same_function(model, result)
    assert apply_rewrites(_branching_graph(meet=True), ["shuffle_fold"]) is None


def test_fold_backward_into_a_group1_conv_is_bit_identical():
    model = _backward_graph()
    result = apply_rewrites(model, ["shuffle_fold"])
    assert result.exact_permutation
    assert not find_channel_shuffles(result.model)
    assert _ops(result.model) == ["Conv", "BatchNormalization", "Relu", "Conv", "Conv"]
    assert "folded backward" in result.changes[0] and "conv1: output rows" in result.changes[0]
    _assert_same_function(model, result)
    assert apply_rewrites(model, ["shuffle_fold_dense"]) is None  # nothing to densify


def test_fold_forward_into_a_group1_conv_reorders_sums():
    model = _forward_graph()
    result = apply_rewrites(model, ["shuffle_fold"])
    assert not result.exact_permutation and "folded forward" in result.changes[0]
    assert _ops(result.model) == ["Mul", "Conv"]
    _assert_same_function(model, result)


def test_fold_refuses_where_a_permuted_tensor_is_read_elsewhere():
    assert apply_rewrites(_forward_graph(shared=True), ["shuffle_fold"]) is None


# --------------------------------------------------------------------------------------------
# the proof


@pytest.fixture(scope="module")
def shuffle_subject() -> validate.Subject:
    return validate.load_subject(str(GRAPHS / "channel_shuffle"))


def _wrong_gather(model: onnx.ModelProto) -> onnx.ModelProto:
    """The Gather rewrite with a wrong permutation (two channels swapped)."""
    bad = apply_rewrites(model, ["shuffle_gather"]).model
    for i, init in enumerate(bad.graph.initializer):
        if init.data_type == TensorProto.INT64 and len(init.dims) == 1:
            perm = numpy_helper.to_array(init).copy()
            perm[[1, 2]] = perm[[2, 1]]
            bad.graph.initializer[i].CopyFrom(numpy_helper.from_array(perm, init.name))
    return bad


def test_proof_passes_the_gather_and_disqualifies_a_wrong_permutation(shuffle_subject):
    assert shuffle_subject.variant == "channel_shuffle"  # PyTorch decides
    prover = Prover(shuffle_subject, "cpu", threads=1)
    good = prover.prove(
        "gather", apply_rewrites(shuffle_subject.model, ["shuffle_gather"]).model, True, DEFAULT
    )
    assert good.disqualified is None and good.bit_identical and "torch" in good.deciders
    assert len(good.cases) == 7  # the stored set + seeds 0, 1, 2 x normal, wide
    bad = prover.prove("wrong_gather", _wrong_gather(shuffle_subject.model), True, DEFAULT)
    assert bad.status == "fail" and bad.kind == "export" and not bad.bit_identical
    assert bad.disqualified.startswith("validate: fail export")


def test_proof_holds_a_claimed_permutation_to_bit_identity():
    subject = validate.load_subject(str(GRAPHS / "grouped"))
    dense = apply_rewrites(subject.model, ["grouped_dense"]).model
    prover = Prover(subject, "cpu", threads=1)
    honest = prover.prove("dense", dense, False, DEFAULT)
    assert honest.disqualified is None and honest.bit_identical is False
    assert 0 < honest.max_abs_vs_original < 1e-4  # a float reassociation, not a defect
    claimed = prover.prove("dense", dense, True, DEFAULT)  # as if it only moved data
    assert claimed.status == "pass" and "not bit-identical" in claimed.disqualified


def test_proof_of_a_bare_graph_uses_the_original_on_the_reference_evaluator(tmp_path):
    shutil.copy(GRAPHS / "channel_shuffle" / "model.onnx", tmp_path / "bare.onnx")
    subject = validate.load_subject(str(tmp_path / "bare.onnx"))
    prover = Prover(subject, "cpu", threads=1)
    assert any("reference evaluator" in s for s in prover.sources())
    bad = prover.prove("wrong_gather", _wrong_gather(subject.model), True, DEFAULT)
    assert bad.status == "fail" and "stored" in bad.deciders


def test_proof_at_a_large_batch_shares_inputs_and_consults_the_reference_at_1_and_2(tmp_path):
    from onnxconv.export import ExportOptions, export_variants
    from onnxconv.tune.proof import REFERENCE_BATCHES, proof_batches

    export_variants(["channel_shuffle"], tmp_path, ExportOptions(dynamic_batch=True))
    subject = validate.load_subject(str(tmp_path / "channel_shuffle"))
    batches = proof_batches(subject.model, 4)
    assert batches == [1, 2, 4] and REFERENCE_BATCHES == (1, 2)
    prover = Prover(subject, "cpu", threads=1, batches=batches)
    gather = apply_rewrites(subject.model, ["shuffle_gather"]).model
    good = prover.prove("gather", gather, True, DEFAULT)
    assert good.disqualified is None and good.bit_identical
    original_cases, gather_cases = prover.cases("x", subject.model), prover.cases("gather", gather)
    for mine, theirs in zip(original_cases, gather_cases, strict=True):
        assert mine.feeds is theirs.feeds  # made once, shared by every candidate
        batch = next(iter(mine.feeds.values())).shape[0]
        assert validate.TORCH in mine.opinions
        if batch in REFERENCE_BATCHES:
            assert validate.REFERENCE in mine.opinions and not mine.reference_error
        else:
            assert batch == 4 and validate.REFERENCE not in mine.opinions
            assert "not run at batch 4" in mine.reference_error
    labels = [c.label for c in gather_cases]
    assert {next(iter(c.feeds.values())).shape[0] for c in gather_cases} == {1, 2, 4}
    assert [x for x in labels if x.endswith("batch4")] == [
        "normal/seed0/batch4",
        "wide/seed0/batch4",
    ]
    assert sum(x.endswith("batch1") for x in labels) == 6  # seeds 0, 1, 2 x normal, wide
    # PyTorch still judges batch 4: a wrong permutation fails there too.
    bad = prover.cell("wrong", _wrong_gather(subject.model), DEFAULT)[0]
    assert bad.status == "fail"
    assert any(r.case.endswith("batch4") and r.status == "fail" for r in bad.cases)


@pytest.mark.parametrize("batch, seeds", [(2, 3), (4, 1)])
def test_a_fixed_batch_above_2_is_proven_on_the_first_seed_alone(tmp_path, batch, seeds):
    """At a fixed batch of 4 the first seed already draws 4 inputs per distribution; each seed
    more would cost every proof a pass over its outputs (26-39 s a proof of the 960x56x56 unit
    at batch 32 on an H100's host). A fixed batch of 2 keeps every seed. PyTorch still judges,
    and a wrong permutation still fails."""
    from onnxconv.export import ExportOptions, export_variants
    from onnxconv.tune.proof import proof_batches

    export_variants(["channel_shuffle"], tmp_path, ExportOptions(), overrides={"batch": batch})
    subject = validate.load_subject(str(tmp_path / "channel_shuffle"))
    assert proof_batches(subject.model, batch) is None  # fixed: the graph's own batch
    prover = Prover(subject, "cpu", threads=1)
    generated = [c for c in prover.cases("original", subject.model) if "seed" in c.label]
    assert len(generated) == 2 * seeds  # normal and wide
    assert len(prover.seeds) == seeds  # what the report says it proved on
    assert all(next(iter(c.feeds.values())).shape[0] == batch for c in generated)
    assert all(validate.TORCH in c.opinions for c in generated)
    bad = prover.cell("wrong", _wrong_gather(subject.model), DEFAULT)[0]
    assert bad.status == "fail"


def test_the_cpu_bit_identity_check_runs_once_per_formulation_and_cpu_settings(
    shuffle_subject, monkeypatch
):
    prover = Prover(shuffle_subject, "cpu", threads=1)
    calls = []
    real = Prover._compare_cpu
    monkeypatch.setattr(
        Prover, "_compare_cpu", lambda self, *a: calls.append(a[1].name) or real(self, *a)
    )
    gather = apply_rewrites(shuffle_subject.model, ["shuffle_gather"]).model
    no_spin = SessionSettings(config=((SPINNING, "0"),))
    for settings in (DEFAULT, no_spin, DEFAULT):
        assert prover.prove("gather", gather, True, settings).bit_identical
    assert calls == [DEFAULT.name, no_spin.name]  # the CPU's own settings are part of the key
    # For another EP only the level reaches the CPU sessions: its CUDA options do not.
    on_cuda = Prover(shuffle_subject, "cuda", threads=1)
    nhwc = SessionSettings(cuda=(("prefer_nhwc", "1"),))
    assert on_cuda._cpu_settings(nhwc) == on_cuda._cpu_settings(DEFAULT) == ("all", (), ())
    assert on_cuda._cpu_settings(SessionSettings("extended")) == ("extended", (), ())


def test_the_original_is_not_run_twice_to_be_compared_with_itself(shuffle_subject, monkeypatch):
    prover = Prover(shuffle_subject, "cpu", threads=1)

    def no_session(*args):
        raise AssertionError("a CPU session for the bit-identity check")

    monkeypatch.setattr(Prover, "_cpu_session", no_session)
    no_spin = SessionSettings(config=((SPINNING, "0"),))
    proof = prover.prove("original", shuffle_subject.model, True, no_spin)
    assert proof.disqualified is None
    assert proof.bit_identical and proof.max_abs_vs_original == 0.0


# --------------------------------------------------------------------------------------------
# settings, sessions, the choice


def test_cpu_settings_candidates_start_with_the_default():
    found = cpu_candidates()
    assert found[0] == DEFAULT and len(set(found)) == len(found) == 8
    names = {s.name for s in found}
    assert "level=extended,spinning=0,arena=0" in names


def test_each_ep_has_a_fixed_number_of_settings_passes():
    heuristic = SessionSettings(cuda=(("cudnn_conv_algo_search", "HEURISTIC"),))
    passes = {}
    for ep in ("cpu", "cuda", "dml"):
        n = 1
        while settings_module.candidates(ep, n, heuristic if n > 1 else None):
            n += 1
        passes[ep] = n - 1
    assert passes == {"cpu": 1, "cuda": 2, "dml": 1}
    assert passes == {ep: settings_module.passes(ep) for ep in passes}  # what the budget plans
    refined = settings_module.candidates("cuda", 2, heuristic)
    assert [s.name for s in refined] == [
        "level=all,algo=HEURISTIC,cuda_graph=1",
        "level=all,algo=HEURISTIC,max_workspace=0",
    ]
    first = [s.name for s in settings_module.candidates("cuda", 1)]
    assert first[0] == DEFAULT.name  # the default, then the most promising (HEURISTIC, NHWC)
    assert first[1:3] == ["level=all,algo=HEURISTIC,nhwc=1", "level=all,algo=HEURISTIC"]
    assert len(set(first)) == 6


def test_cuda_graphs_need_every_node_on_cuda_and_every_shape_fixed():
    def graph(input_dims, output_dims, output_type=TensorProto.FLOAT):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, input_dims)
        y = helper.make_tensor_value_info("y", output_type, output_dims)
        return helper.make_model(
            helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
        )

    fixed = graph([2, 3], [2, 3])
    blocker = settings_module.cuda_graph_blocker
    assert blocker(fixed, {"cuda": 1}) is None
    assert blocker(fixed, {"cuda": 1, "cpu": 2}) == "nodes run outside CUDA: {'cpu': 2}"
    assert blocker(graph(["batch", 3], [2, 3]), {"cuda": 1}) == (
        "input 'x' has a dynamic dimension"
    )
    assert blocker(graph([2, 3], ["n", 3]), {"cuda": 1}) == "output 'y' has a dynamic dimension"
    assert blocker(graph([2, 3], None), {"cuda": 1}) == "output 'y' has no declared shape"
    assert blocker(graph(None, [2, 3]), {"cuda": 1}) == "input 'x' has no declared shape"
    assert blocker(graph([2, 3], [2], TensorProto.INT64), {"cuda": 1}) is None  # e.g. an argmax
    assert blocker(graph([2, 3], [2], TensorProto.BFLOAT16), {"cuda": 1}) == (
        "output 'y' is tensor(bfloat16), which cannot be bound to a buffer"
    )


def test_the_settings_search_ends_after_the_eps_last_pass(tmp_path, monkeypatch):
    """A second pass that refines the first's best runs once, not again on its own output (on
    CUDA it once ran until the time limit killed it)."""
    real, passes = settings_module.candidates, []

    def two_passes(ep, n, best=None):  # CUDA's shape, in settings a CPU can run
        passes.append(n)
        if n == 2:  # the first pass's best, refined: never one of the first pass's settings
            return [SessionSettings(best.opt_level, ((SPINNING, "0"),), best.options)]
        return real(ep, n, best)[:2]  # the default and arena=0, both spinning

    monkeypatch.setattr(settings_module, "candidates", two_passes)
    folder = _folder(tmp_path, "channel_shuffle")
    args = ["tune", str(folder), "--rewrites", "shuffle_gather", "--rounds", "1", "--blocks", "1"]
    args += ["--calls", "3", "--retries", "0", "--no-profile", "--quiet"]
    assert main([*args, "--json", str(tmp_path / "r.json")]) == 0
    assert passes == [1, 2, 3]
    stages = [c["stage"] for c in json.loads((tmp_path / "r.json").read_text())["candidates"]]
    assert sorted(set(stages)) == ["formulations", "settings-1", "settings-2"]


def test_make_session_takes_config_entries_and_options():
    model = onnx.load(GRAPHS / "channel_shuffle" / "model.onnx")
    info = make_session(
        model,
        Target("cpu"),
        session_config={SPINNING: "0"},
        session_options={"enable_cpu_mem_arena": False},
    )
    assert info.session.get_session_options().enable_cpu_mem_arena is False
    with pytest.raises(UserInputError, match="no attribute"):
        make_session(model, Target("cpu"), session_options={"no_such_option": 1})


def test_worker_applies_the_settings(tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 64, 28, 28), np.float32))
    settings = cpu_candidates()[-1]  # extended, spinning off, arena off
    job = Job("c", GRAPHS / "channel_shuffle" / "model.onnx", settings)
    method = Method(blocks=1, calls=2, warmup=1, warmup_s=0.0)
    result = run_worker(ort_job(job, "cpu", {"input": x}, method), worker_env(1), 120)
    assert result["ok"], result
    options = result["session_options"]
    assert options["enable_cpu_mem_arena"] is False
    assert options["session_config"] == {SPINNING: "0"}
    assert options["graph_optimization_level"] == "ORT_ENABLE_EXTENDED"


def test_a_win_must_hold_in_every_round_and_beyond_the_spread():
    default = Timing(rounds_p50_ms=[10.0, 11.0, 10.5])
    assert beats(Timing(rounds_p50_ms=[5.0, 5.2, 5.1]), default)
    assert not beats(Timing(rounds_p50_ms=[9.0, 12.0, 9.0]), default)  # one round slower
    assert not beats(Timing(rounds_p50_ms=[9.9, 10.6, 10.4]), default)  # inside the spread
    assert not beats(Timing(rounds_p50_ms=[5.0, None, 5.0]), default)  # a round failed
    # One round measures no spread: even twice as fast is no win (1.0003x once was).
    assert not beats(Timing(rounds_p50_ms=[5.0]), Timing(rounds_p50_ms=[10.0]))


def test_a_run_contended_by_other_processes_is_run_again(monkeypatch):
    # PSI totals (s, µs waited): the first run waited half its time, the second 1%
    stalls = iter([(0.0, 0), (1.0, 500_000), (1.0, 500_000), (2.0, 510_000)])
    from onnxconv.bench import pressure

    for module in (timing, pressure):  # before (timing's name) and after (pressure's own)
        monkeypatch.setattr(module, "cpu_stall", lambda: next(stalls))
    runs = []

    def fake_worker(job, env, timeout_s):
        runs.append(job["model"])
        return {"ok": True, "blocks_ns": [[1000, 1000]]}

    monkeypatch.setattr(timing, "run_worker", fake_worker)
    job = Job("a", GRAPHS / "channel_shuffle" / "model.onnx", DEFAULT)
    said = []
    method = Method(rounds=1, quiet_wait_s=0)
    timings, torch = timing.time_rounds([job], "cpu", {}, method, progress=said.append)
    assert len(runs) == 2 and torch is None
    assert timings["a"].rounds_retries == [1] and timings["a"].rounds_pressure == [0.01]
    # The wait is said: retries can add up to minutes that would otherwise look like a hang.
    assert said[1].startswith("contended (50% of the run waited for a CPU): waiting up to 0 s")


def test_past_the_time_budget_a_contended_run_is_kept_not_retried(monkeypatch):
    stalls = iter([(0.0, 0), (1.0, 500_000)])  # the run waited half its time for a CPU
    from onnxconv.bench import pressure

    for module in (timing, pressure):
        monkeypatch.setattr(module, "cpu_stall", lambda: next(stalls))
    runs = []
    monkeypatch.setattr(
        timing,
        "run_worker",
        lambda job, env, timeout_s: runs.append(job) or {"ok": True, "blocks_ns": [[1000]]},
    )
    job = Job("a", GRAPHS / "channel_shuffle" / "model.onnx", DEFAULT)
    method = Method(rounds=1, quiet_wait_s=60)
    timings, _ = timing.time_rounds([job], "cpu", {}, method, until=time.monotonic() - 1)
    assert len(runs) == 1  # no wait for quiet, no second run
    assert timings["a"].rounds_retries == [0] and timings["a"].rounds_pressure == [0.5]


# --------------------------------------------------------------------------------------------
# the command


def _folder(tmp_path: Path, graph: str) -> Path:
    """A copy of a committed graph folder with its manifest (so PyTorch decides)."""
    shutil.copytree(GRAPHS / graph, tmp_path / graph)
    shutil.copy(GRAPHS / "manifest.json", tmp_path / "manifest.json")
    return tmp_path / graph


def test_cli_writes_the_tuned_model_and_its_record(tmp_path, capsys):
    folder = _folder(tmp_path, "channel_shuffle")
    args = ["tune", str(folder), "--rewrites", "shuffle_gather", "--no-settings", "--rounds", "1"]
    args += ["--blocks", "1", "--calls", "5", "--retries", "0", "--no-profile", "--quiet"]
    args += ["--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "shuffle_gather @ level=all" in out and "wrote" in out
    header, _, original, gather = out.splitlines()[:4]
    assert header.endswith("torch/ORT  beats ref")
    assert original.split()[-1] == "—"  # the default has no reference
    tuned = json.loads((folder / "tuned.json").read_text())
    model_bytes = (folder / "model.tuned.onnx").read_bytes()
    onnx.checker.check_model(onnx.load_from_string(model_bytes), full_check=True)
    assert tuned["schema"] == "onnxconv.tuned" and tuned["target"].startswith("cpu/")
    assert tuned["sha256"] == hashlib.sha256(model_bytes).hexdigest()
    assert tuned["proof"]["status"] == "pass" and tuned["proof"]["disqualified"] is None
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["schema"] == "onnxconv.tune"
    names = [c["name"] for c in report["candidates"]]
    assert names == ["original @ level=all", "shuffle_gather @ level=all"]
    said = "yes" if report["candidates"][1]["beats_reference"] else "no"
    assert gather.split()[-1] == said  # the table shows the decision the report records
    assert ("<- winner" in gather) == (report["winner"] == names[1])
    assert all(c["timing"]["stats"] for c in report["candidates"])
    assert report["torch"]["formulations"]["stats"]  # PyTorch timed for the ratio
    assert "decision" in (tmp_path / "r.md").read_text()


def test_a_spent_time_budget_skips_what_is_left_and_still_writes_the_report(tmp_path, capsys):
    folder = _folder(tmp_path, "channel_shuffle")
    args = ["tune", str(folder), "--rewrites", "shuffle_rank4,shuffle_gather", "--rounds", "1"]
    args += ["--blocks", "1", "--calls", "3", "--retries", "0", "--quiet"]
    args += ["--time-budget", "0.001", "--json", str(tmp_path / "r.json")]
    assert main(args) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert [c["name"] for c in report["candidates"]] == ["original @ level=all"]
    assert report["candidates"][0]["timing"]["stats"]  # the first stage always runs
    assert report["winner"] == "original @ level=all" and report["per_op"] == {}
    assert report["options"]["time_budget_s"] == 0.001
    (note,) = [n for n in report["notes"] if "time budget" in n]
    for skipped in ("shuffle_rank4", "shuffle_gather", "settings-1 stage", "per-op profile"):
        assert skipped in note
    assert report["skipped_stages"] == ["formulations", "settings-1"]
    # nothing was timed against the default: not "no candidate beat it"
    assert (
        report["decision"]
        == "the default stays: the time budget left no candidate timed against it"
    )
    from onnxconv.tune.report import to_markdown

    assert "the time budget skipped them" in to_markdown(report, "r.png")
    assert f"note: {note}" in out
    assert (folder / "tuned.json").is_file()


@pytest.mark.parametrize(
    "args, says",
    [
        (["tune", "no/such/graph.onnx"], "no such file"),
        (["tune", "channel_shuffle", "--rewrites", "frobnicate"], "unknown rewrite"),
        (["tune", "channel_shuffle", "--rounds", "0"], "--rounds: 0 must be a positive integer"),
        (["tune", "channel_shuffle", "--ep", "nope"], "unknown execution provider"),
        (["tune", "channel_shuffle", "--batch", "4"], "fixed at 1"),
        (["tune", "channel_shuffle", "--time-budget", "0"], "--time-budget must be a positive"),
        (["tune", "channel_shuffle", "--time-budget", "nan"], "--time-budget must be a positive"),
        (["tune", "channel_shuffle", "--time-budget", "inf"], "--time-budget must be a positive"),
        # without --out, tune would write into this checkout's graphs/ and fail the tests
        (["tune", str(GRAPHS / "channel_shuffle")], "committed graphs/, which the tests check"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args, says, tmp_path, capsys):
    if args[1] == "channel_shuffle":
        args = [args[0], str(_folder(tmp_path, "channel_shuffle")), *args[2:]]
    try:
        code = main([*args, "--quiet"])
    except SystemExit as exit:  # argparse's own refusals
        code = exit.code
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0]


def test_cli_bad_input_as_a_process_prints_no_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "onnxconv", "tune", "no/such/graph.onnx"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "onnxconv tune: error: no/such/graph.onnx: no such file, folder or variant"
    )


def test_tune_help_names_every_rewrite(capsys):
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    listed = help_text.split("(default: all:")[1].split(")")[0]
    assert [name.strip() for name in listed.split(",")] == list(REWRITES)


@cuda_only
def test_cuda_tune_proves_and_times_each_settings_candidate_on_the_gpu(tmp_path, capsys):
    from onnxconv.export import ExportOptions, export_variants

    export_variants(["channel_shuffle"], tmp_path, ExportOptions())  # batch fixed at 1
    folder = tmp_path / "channel_shuffle"
    args = ["tune", str(folder), "--ep", "cuda", "--rewrites", "shuffle_gather", "--rounds", "1"]
    args += ["--blocks", "1", "--calls", "5", "--retries", "0", "--quiet"]
    args += ["--json", str(tmp_path / "r.json")]
    assert main(args) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "r.json").read_text())
    by_name = {c["name"]: c for c in report["candidates"]}
    assert any("algo=HEURISTIC" in n for n in by_name) and any("nhwc=1" in n for n in by_name)
    for c in by_name.values():
        if c["proof"]["status"] == "pass":  # proven on the GPU: every node on CUDA
            assert set(c["proof"]["placement"]) == {"cuda"}, c["name"]
            assert c["timing"]["stats"] and not c["timing"]["error"], c["name"]
    # Fixed shapes and every node on CUDA: the CUDA-graph candidate is timed with IO binding.
    graph = next(c for c in by_name.values() if "cuda_graph=1" in c["name"])
    assert graph["proof"]["disqualified"] is None, graph["proof"]
    assert graph["timing"]["session"].get("io_binding") is True
    tuned = json.loads((folder / "tuned.json").read_text())
    assert tuned["target"].startswith("cuda/") and tuned["proof"]["status"] == "pass"


def test_rounds_far_apart_are_named_in_the_notes(tmp_path, monkeypatch):
    """A machine that switches speed between processes (rounds 2.5x apart): the pooled p50
    mixes two modes, and the report says so."""
    from onnxconv.tune import search
    from onnxconv.tune.timing import Timing

    def time_rounds(jobs, ep, inputs, method, torch_job, say, until=None):
        return {
            j.key: Timing([1.0, 2.5, 1.0] if "gather" in j.key else [5.0] * 3) for j in jobs
        }, None

    monkeypatch.setattr(search, "time_rounds", time_rounds)
    folder = _folder(tmp_path, "channel_shuffle")
    args = ["tune", str(folder), "--rewrites", "shuffle_gather", "--no-settings", "--rounds", "3"]
    args += ["--no-profile", "--quiet", "--out", str(tmp_path / "t"), "--json", str(tmp_path / "r")]
    assert main(args) == 0
    notes = json.loads((tmp_path / "r").read_text())["notes"]
    (note,) = [n for n in notes if "apart from one round to the next" in n]
    assert note.startswith("1 candidate(s) ran more than 1.5x apart") and "1 to 2.5 ms" in note


def test_a_ratio_built_on_held_up_timings_says_so(tmp_path, capsys, monkeypatch):
    """On a machine taken by others a PyTorch p50 blew up 100x, and the last line printed
    "PyTorch eager p50 / ... p50: 631.46 (> 1: ORT faster)" as a finding. Here every timing
    counts as held up (the threshold set to 0)."""
    from onnxconv.bench import report_notes

    monkeypatch.setattr(report_notes, "HELD_UP", 0.0)
    folder = _folder(tmp_path, "channel_shuffle")
    args = ["tune", str(folder), "--rewrites", "shuffle_gather", "--no-settings", "--rounds", "1"]
    args += ["--blocks", "1", "--calls", "3", "--retries", "0", "--no-profile", "--quiet"]
    assert main([*args, "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert "PyTorch eager" in report["held_up"]
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("PyTorch eager p50")]
    assert "held up: " in line and "it says little" in line and "ORT faster" not in line
