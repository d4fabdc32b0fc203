"""Graphs that look like what tune's rewrites edit, and are not: each rewrite applies only where
it is the same function for every input the graph accepts, and a graph it cannot edit soundly
costs that one formulation, never the run (the near-misses a probe of tune found)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_builders import make_init, make_model

from onnxconv.graph import GraphIndex, find_channel_shuffles
from onnxconv.tune.rewrites import REWRITES, formulations

RNG = np.random.default_rng(0)
C, H, W = 8, 4, 4


def _info(name: str, dims) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def _weight(name: str, c_out: int, c_in: int, k: int = 1) -> onnx.TensorProto:
    """The same weights for the same name in every graph built here."""
    rng = np.random.default_rng(sum(map(ord, name)))
    return make_init(name, rng.standard_normal((c_out, c_in, k, k)).astype(np.float32))


def _shuffle(x: str, y: str, grouped: list[int], back: list[int]):
    """Reshape(x, grouped) -> Transpose(0, 2, 1, 3, 4) -> Reshape(back): nodes, initializers."""
    nodes = [
        helper.make_node("Reshape", [x, "grouped"], ["r"], name="view"),
        helper.make_node("Transpose", ["r"], ["t"], name="shuffle", perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t", "back"], [y], name="unview"),
    ]
    inits = [make_init("grouped", np.array(grouped, np.int64)), make_init("back", np.array(back))]
    return nodes, inits


def _conv_shuffle_conv(grouped: list[int], back: list[int], batch="N") -> onnx.ModelProto:
    """Conv -> the chain -> Conv: every shuffle rewrite (rank 4, Gather, both folds) has a
    place to apply if the chain is taken for a channel shuffle."""
    shuffle, inits = _shuffle("a", "b", grouped, back)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="c1"),
        *shuffle,
        helper.make_node("Conv", ["b", "w2"], ["y"], name="c2"),
    ]
    inits += [_weight("w1", C, C), _weight("w2", C, C)]
    return make_model(
        nodes, [_info("x", [batch, C, H, W])], [_info("y", [batch, C, "h", "w"])], inits
    )


def _shuffle_formulations(model: onnx.ModelProto) -> dict:
    shuffles = [n for n in REWRITES if n.startswith("shuffle")]
    return formulations(model, shuffles, {})


def test_a_true_shuffle_on_a_dynamic_batch_is_rewritten():
    """The control: (0, 2, 4, 4, 4) and (-1, 8, 4, 4) copy and infer the batch."""
    model = _conv_shuffle_conv([0, 2, 4, H, W], [-1, C, H, W])
    (info,) = find_channel_shuffles(model)
    assert info.exact, info.problems
    assert set(_shuffle_formulations(model)) == {
        "shuffle_rank4",
        "shuffle_gather",
        "shuffle_fold",
    }


@pytest.mark.parametrize(
    "grouped,back,problem",
    [
        # a literal batch of 1 on a dynamic batch: beyond batch 1 the batch joins the groups
        ([1, 2, 4, -1, W], [-1, C, H, W], "view is not proven to give Nx2x4x4x4"),
        # the second Reshape flattens the spatial axes: no shuffle of (N, C, H, W) gives that
        ([0, 2, 4, H, W], [0, C, H * W, 1], "unview is not proven to give NxC".replace("C", "8")),
    ],
)
def test_a_chain_that_is_no_channel_shuffle_at_every_size_is_not_rewritten(grouped, back, problem):
    model = _conv_shuffle_conv(grouped, back)
    (info,) = find_channel_shuffles(model)
    assert not info.exact and any(problem in p for p in info.problems), info.problems
    assert _shuffle_formulations(model) == {}


def test_the_dynamic_batch_near_miss_differs_beyond_batch_1():
    """Why the first case above matters: at batch 2 the chain mixes the two inputs' channels,
    which no per-input channel permutation does."""
    from onnx_builders import run_cpu

    model = _conv_shuffle_conv([1, 2, 4, -1, W], [-1, C, H, W])
    x = RNG.standard_normal((2, C, H, W)).astype(np.float32)
    (together,) = run_cpu(model, {"x": x})
    (alone,) = run_cpu(model, {"x": x[1:]})
    assert not np.allclose(together[1:], alone)


def test_a_shuffle_whose_channel_count_shape_inference_cannot_see_is_not_rewritten():
    """An If whose branches give 16 or 32 channels hides the channel count; the shuffle's
    target (1, 2, 4, 16, 8) then regroups 16 rows as if there were 8 channels of 16x8."""
    then = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["o"])], "then", [], [_info("o", [1, 16, 8, 8])]
    )
    other = helper.make_graph(
        [helper.make_node("Concat", ["x", "x"], ["o2"], axis=1)],
        "else",
        [],
        [_info("o2", [1, 32, 8, 8])],
    )
    cond = make_init("cond", np.array(True))
    nodes = [helper.make_node("If", ["cond"], ["a"], then_branch=then, else_branch=other)]
    shuffle, inits = _shuffle("a", "y", [1, 2, 4, 16, 8], [1, -1, 8, 8])
    model = make_model(
        nodes + shuffle, [_info("x", [1, 16, 8, 8])], [_info("y", [1, "c", 8, 8])], [cond, *inits]
    )
    (info,) = find_channel_shuffles(model)
    assert not info.exact
    assert "channel count is unknown to shape inference" in " ".join(info.problems)
    assert _shuffle_formulations(model) == {}


def test_a_tensor_read_inside_an_if_body_is_read_by_the_if():
    """The transposed tensor is also read in an If branch: the chain is not exact, and the
    index names the If as a reader of it."""
    shuffle, inits = _shuffle("x", "y", [1, 2, 4, H, W], [1, C, H, W])
    branch = helper.make_graph(
        [helper.make_node("Neg", ["t"], ["o"])], "b", [], [_info("o", [1, 4, 2, H, W])]
    )
    reader = helper.make_node("If", ["cond"], ["z"], then_branch=branch, else_branch=branch)
    model = make_model(
        [*shuffle, reader],
        [_info("x", [1, C, H, W])],
        [_info("y", [1, C, H, W]), _info("z", [1, 4, 2, H, W])],
        [*inits, make_init("cond", np.array(True))],
    )
    assert "If" in [n.op_type for n in GraphIndex(model).consumers["t"]]
    (info,) = find_channel_shuffles(model)
    assert not info.exact
    assert _shuffle_formulations(model) == {}


def test_a_target_shape_read_from_a_graph_input_is_not_trusted():
    shuffle, inits = _shuffle("x", "y", [1, 2, 4, H, W], [1, C, H, W])
    model = make_model(
        shuffle,
        [
            _info("x", [1, C, H, W]),
            helper.make_tensor_value_info("grouped", TensorProto.INT64, [5]),
        ],
        [_info("y", [1, C, H, W])],
        inits[1:],
    )
    (info,) = find_channel_shuffles(model)
    assert not info.exact
    assert _shuffle_formulations(model) == {}


def _grouped_conv(weight_is_input: bool = False, first_name: str = "c1") -> onnx.ModelProto:
    """A group-1 Conv named ``first_name``, then an unnamed grouped Conv (g=4, 32 channels)."""
    c = 32
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["a"], name=first_name, pads=[1] * 4),
        helper.make_node("Conv", ["a", "wb"], ["y"], group=4, pads=[1] * 4),
    ]
    inits = [_weight("wa", c, c, 3), _weight("wb", c, c // 4, 3)]
    inputs = [_info("x", [1, c, 8, 8])]
    if weight_is_input:
        inputs.append(_info("wb", [c, c // 4, 3, 3]))
    return make_model(nodes, inputs, [_info("y", [1, c, 8, 8])], inits)


def test_an_initializer_a_feed_may_override_is_no_constant_and_stays_an_input():
    """IR 4 and later: an initializer also listed as a graph input is a default the user may
    replace; no grouped rewrite bakes it in, and the graph keeps its inputs."""
    model = _grouped_conv(weight_is_input=True)
    assert model.ir_version >= 4
    ix = GraphIndex(model)
    assert ix.const("wb") is None and ix.const("wa") is not None
    grouped = [n for n in REWRITES if n.startswith("grouped")]
    assert formulations(model, grouped, {}) == {}
    assert formulations(_grouped_conv(), grouped, {})  # the control: the same Conv, constant


def test_a_label_two_nodes_share_costs_the_formulation_not_the_run():
    """The group-1 Conv is named ``Conv(y)``, the label the unnamed grouped Conv gets: a rewrite
    cannot tell them apart, so each grouped formulation is left out with that reason."""
    model = _grouped_conv(first_name="Conv(y)")
    grouped = [n for n in REWRITES if n.startswith("grouped")]
    refused: dict[str, str] = {}
    assert formulations(model, grouped, refused) == {}
    assert set(refused) == set(grouped)
    assert "2 nodes are labelled 'Conv(y)'" in refused["grouped_split"]
    with pytest.raises(Exception, match="labelled"):  # asked without a place for reasons
        formulations(model, grouped)


def test_a_torchscript_export_with_dynamic_sizes_keeps_its_shuffle(tmp_path):
    """torch.onnx's TorchScript exporter computes the targets from Shape nodes; their symbolic
    elements (batch, height, width) prove the chain a shuffle at every size."""
    from onnxconv.export import ExportOptions, export_variants

    options = ExportOptions(exporter="torchscript", dynamic_batch=True, dynamic_hw=True)
    (result,) = export_variants(["shufflenet_v2_unit"], tmp_path, options)
    model = onnx.load(result.model_path)
    (info,) = find_channel_shuffles(model)
    assert info.exact, info.problems
    found = _shuffle_formulations(model)
    assert "shuffle_gather" in found
    for rewritten in found.values():  # the Constant shapes the replaced Reshapes read are gone
        graph = rewritten.model.graph
        read = {name for node in graph.node for name in node.input}
        assert all(n.output[0] in read for n in graph.node if n.op_type == "Constant")


def test_tune_runs_on_and_says_which_formulations_it_left_out(tmp_path):
    """The same collision through the command: tune ends (exit 0, the default kept or a shuffle
    -free winner), its report names each grouped formulation left out and why."""
    import json

    from onnxconv.cli import main

    path = tmp_path / "collide.onnx"
    onnx.save(_grouped_conv(first_name="Conv(y)"), path)
    args = ["tune", str(path), "--rewrites", "grouped_split,grouped_dense", "--no-settings"]
    args += ["--rounds", "1", "--blocks", "1", "--calls", "3", "--retries", "0", "--no-profile"]
    args += ["--threads", "1", "--quiet", "--out", str(tmp_path / "t")]
    assert main([*args, "--json", str(tmp_path / "r.json")]) == 0
    notes = json.loads((tmp_path / "r.json").read_text())["notes"]
    left = [n for n in notes if "was left out" in n]
    assert len(left) == 2 and all("2 nodes are labelled 'Conv(y)'" in n for n in left), notes
    assert not any("nothing in this graph" in n for n in notes)


def _real_shapes(model: onnx.ModelProto, inputs: list[tuple[int, ...]]) -> list[dict]:
    """Every tensor's shape on ONNX Runtime, for each input shape given."""
    from onnxconv.divergence import with_all_outputs
    from onnxconv.runtime import Target, make_session, run

    session = make_session(with_all_outputs(model), Target("cpu", "disabled"), threads=1)
    feeds = [{session.inputs[0].name: np.zeros(shape, np.float32)} for shape in inputs]
    return [{n: v.shape for n, v in run(session, f).items()} for f in feeds]


def test_a_graph_without_pytorch_is_proven_at_each_of_its_proof_batches(tmp_path):
    """A dynamic batch is proven at batches 1 and 2: without PyTorch the original's outputs on
    the reference evaluator are the source there, at both (they were made at batch 1 alone)."""
    from onnxconv import validate
    from onnxconv.tune.proof import Prover, proof_batches
    from onnxconv.tune.settings import DEFAULT
    from onnxconv.validate.cases import users_data

    model = _conv_shuffle_conv([0, 2, 4, H, W], [-1, C, H, W])
    onnx.save(model, tmp_path / "g.onnx")
    subject = validate.load_subject(str(tmp_path / "g.onnx"))
    prover = Prover(subject, "cpu", threads=1, batches=proof_batches(model, 1))
    assert prover.batches == [1, 2]
    assert {next(iter(s.inputs.values())).shape[0] for s in prover.test_sets} == {1, 2}
    # drawn by onnxconv, not the user's data: an ill-conditioned case of them may be excused
    # its fp32 rounding as validate excuses it (a correct MobileNetV3 failed tune, not validate)
    case = validate.Case(prover.test_sets[0].label, {}, {})
    assert all(s.generated for s in prover.test_sets)
    assert not users_data(prover.subject("original", model), case)
    assert "at batch(es) [1, 2]" in " ".join(prover.sources())
    # the dynamic-batch near miss, rewritten by hand as a shuffle would be, fails at batch 2
    near = _conv_shuffle_conv([1, 2, 4, -1, W], [-1, C, H, W])
    onnx.save(near, tmp_path / "near.onnx")
    near_subject = validate.load_subject(str(tmp_path / "near.onnx"))
    near_prover = Prover(near_subject, "cpu", threads=1, batches=proof_batches(near, 1))
    assert near_prover.prove("as_shuffle", model, False, DEFAULT).disqualified
    at_batch_1 = Prover(near_subject, "cpu", threads=1, batches=[1])
    assert not at_batch_1.prove("as_shuffle", model, False, DEFAULT).disqualified


def test_every_shuffle_of_a_torchscript_dynamic_batch_shufflenet_v2_is_found(tmp_path):
    """torchvision's ShuffleNet V2 through the TorchScript exporter with a dynamic batch: its
    Reshape targets and chunk Slices are computed from Shape nodes, where ONNX shape inference
    stops after the first shuffle. The targets' symbolic elements carry the shapes on, so all
    16 shuffles are proven and rewritten (1 of 16 was), and a near miss is named in a note."""
    from networks import export_network

    from onnxconv.tune.search import unrewritten_shuffles_note

    path = export_network(
        "shufflenet_v2_x0_5",
        tmp_path,
        exporter="torchscript",
        opset=13,
        dynamic_batch=True,
        size=64,
    )
    model = onnx.load(path)
    chains = find_channel_shuffles(model)
    assert len(chains) == 16 and all(c.exact for c in chains), [c.problems for c in chains]
    # only names the model writes: ONNX numbers the dims it cannot name (unk__3) afresh on each
    # run, and one such name came to stand for an H of 8 and a batch of 1
    hw = export_network(
        "shufflenet_v2_x0_5",
        tmp_path / "hw",
        exporter="torchscript",
        opset=13,
        dynamic_batch=True,
        dynamic_hw=True,
        size=64,
    )
    model = onnx.load(hw)
    real = _real_shapes(model, [(1, 3, 64, 64), (3, 3, 96, 80)])
    sizes: dict[str, set[tuple[int, int]]] = {}
    for name, dims in GraphIndex(model).tensor_shapes().items():
        for axis, dim in enumerate(dims or ()):
            if isinstance(dim, str) and name in real[0]:
                sizes.setdefault(dim, set()).add(tuple(r[name][axis] for r in real))
    assert sizes and all(len(found) == 1 for found in sizes.values()), sizes
    assert unrewritten_shuffles_note(model) == []
    gather = formulations(model, ["shuffle_gather"])["shuffle_gather"]
    assert len(gather.changes) == 16
    near = _conv_shuffle_conv([1, 2, 4, -1, W], [-1, C, H, W])
    (note,) = unrewritten_shuffles_note(near)
    assert note.startswith("1 of 1 Reshape -> Transpose -> Reshape chain(s) are left as they are")
    assert "view is not proven to give Nx2x4x4x4" in note
