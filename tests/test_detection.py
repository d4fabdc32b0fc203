"""The mutation suite through validate: every planted defect caught, no false alarm.

The default run plants a fixed sample (one of each kind of defect, on the graphs where it
applies); ``./scripts/test --all`` plants every mutant of every committed graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onnxconv import detection, mutations, variants
from onnxconv.cli import main

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ROOT / "graphs"
COMMITTED = [n for n in variants.names() if variants.get(n).commit_graph]
SAMPLE = {
    "shuffle_unit": [
        "shuffle_perm_identity",
        "shuffle_groups_swapped",
        "add_to_sub",
        "output_scaled",
    ],
    "grouped": [
        "weight_sign_flip",
        "weight_nudge",
        "conv_dilation",
        "fp16_overflow",
        "stale_output",
    ],
    "standard": ["conv_pads", "transpose_hw"],
}


def assert_all_caught(report: detection.DetectionReport) -> None:
    missed = [
        (p.graph, p.mutation, p.layout, p.status, p.reason) for p in report.planted if not p.caught
    ]
    assert not missed
    alarms = [(c.graph, c.layout, c.reason) for c in report.clean if c.false_alarm]
    assert not alarms


@pytest.mark.parametrize("graph", sorted(SAMPLE))
def test_sample_of_planted_defects_is_caught_with_the_element_named(graph):
    (original,) = detection.zoo_originals(GRAPHS, [graph])
    report = detection.run_suite([original], names=SAMPLE[graph], clean_seeds=(0, 1))
    assert sorted({p.mutation for p in report.planted}) == sorted(SAMPLE[graph])
    assert_all_caught(report)
    for planted in report.planted:
        if planted.status == "fail":
            assert planted.output == "output"
            # None: NaN/Inf planted. An overflow is caught by the reference evaluator's Inf
            # where the source is finite, not by ORT's distance: on x86 ORT computes the fp16
            # graph in fp32 and stays within the fp16 tolerance the graph is judged at.
            assert planted.margin is None or planted.margin > 1 or planted.kind == "overflow"
            assert planted.worst_index is not None
        else:  # a subtle mutant: below the default tolerance by design, caught at the tight one
            assert planted.mutation in ("weight_nudge", "output_scaled"), planted
            assert 0 < planted.margin < 1 and planted.tight_clean == "pass"
    layouts = {(p.mutation, p.layout) for p in report.planted}
    assert ("stale_output", "module") not in layouts  # a bare graph has no stored outputs
    if graph == "grouped":
        flip = next(p for p in report.planted if p.mutation == "weight_sign_flip")
        assert flip.worst_index[1] == 1  # the flipped output channel
        assert {p.kind for p in report.planted if p.mutation == "fp16_overflow"} == {"overflow"}


def test_detect_command_writes_its_reports_and_exits_0(tmp_path, capsys):
    out_json, out_md = tmp_path / "d.json", tmp_path / "d.md"
    assert (
        main(
            [
                "detect",
                "--graphs",
                str(GRAPHS),
                "--graph",
                "channel_shuffle",
                "--clean-seeds",
                "0",
                "--quiet",
                "--json",
                str(out_json),
                "--markdown",
                str(out_md),
            ]
        )
        == 0
    )
    data = json.loads(out_json.read_text())
    assert data["kind"] == "detection" and data["summary"]["false_alarms"] == 0
    assert data["summary"]["caught"] == data["summary"]["planted"] > 0
    assert "caught" in capsys.readouterr().out
    assert "## Planted defects" in out_md.read_text()


def test_a_missed_mutant_makes_detect_exit_1(monkeypatch, capsys):
    def harmless(model):  # a "mutation" that changes nothing cannot be caught
        return mutations.Mutant("harmless", "nothing planted", model, None)

    monkeypatch.setitem(mutations.MUTATIONS, "harmless", harmless)
    monkeypatch.setattr(mutations, "mutants", lambda model, stored=None: [harmless(model)])
    assert (
        main(
            [
                "detect",
                "--graphs",
                str(GRAPHS),
                "--graph",
                "pointwise",
                "--layout",
                "folder",
                "--clean-seeds",
                "0",
                "--quiet",
            ]
        )
        == 1
    )
    assert "MISSED" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,word",
    [(["--graph", "nope"], "nope"), (["--mutation", "melt"], "melt"), (["--layout", "zip"], "zip")],
)
def test_detect_bad_input_is_one_line_exit_2(argv, word, capsys):
    assert main(["detect", "--graphs", str(GRAPHS), "--quiet", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and word in err


@pytest.mark.slow
@pytest.mark.parametrize("graph", COMMITTED)
def test_every_mutant_of_every_committed_graph_is_caught(graph):
    report = detection.run_suite(detection.zoo_originals(GRAPHS, [graph]))
    assert report.planted
    assert_all_caught(report)


def test_detect_plants_defects_in_a_folder_exported_from_the_users_module(tmp_path, capsys):
    """Its manifest entries name a module, not a variant: the folder layout only (it was a
    KeyError traceback)."""
    argv = ["export", "--module", "user_modules:shuffled", "--input", "1,8,4,4", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "g")]) == 0
    report = tmp_path / "d.json"
    code = main(["detect", "--graphs", str(tmp_path / "g"), "--json", str(report), "--quiet"])
    assert code in (0, 1), capsys.readouterr().err
    data = json.loads(report.read_text())
    assert {p["layout"] for p in data["planted"]} == {"folder"} and data["planted"]
    assert data["summary"]["false_alarms"] == 0


INT8_MUTATIONS = list(mutations.QUANTIZED_ONLY)


def test_int8_defects_planted_in_a_quantized_graph_are_caught_by_the_int8_bounds():
    """The graph as a user holds a quantized one (beside its fp32 stored outputs, or its
    module): a channel's integers negated, a channel's scale doubled, an off-by-one zero point
    at the output, and a structural defect, each FAIL quantization; the unmutated int8 graph
    passes."""
    (original,) = detection.zoo_originals(GRAPHS, ["grouped"])
    names = [*INT8_MUTATIONS, "conv_pads", "output_scaled"]
    report = detection.run_suite([original], names=names, clean_seeds=(0, 1), precision="int8")
    assert report.settings["precision"] == "int8"
    # output_scaled (subtle, 1e-4) is sized against the fp32 tolerance: not planted at int8
    assert sorted({p.mutation for p in report.planted}) == sorted([*INT8_MUTATIONS, "conv_pads"])
    assert_all_caught(report)
    assert {(p.status, p.kind) for p in report.planted} == {("fail", "quantization")}
    assert all(p.margin is None for p in report.planted)  # no elementwise tolerance to measure
    shift = next(p for p in report.planted if p.mutation == "zero_point_shift")
    assert "mean_error_over_range" in shift.reason  # the bias bound is what sees it


def test_int8_mutations_apply_only_where_weights_are_quantized(tmp_path):
    import onnx

    fp32 = onnx.load(GRAPHS / "grouped" / "model.onnx")
    assert all(mutations.MUTATIONS[name](fp32) is None for name in INT8_MUTATIONS)
    (original,) = detection.zoo_originals(GRAPHS, ["grouped"])
    int8 = detection.quantized(original, tmp_path).model
    flip = mutations.int8_weight_sign_flip(int8)
    assert flip.node == "conv.weight_DequantizeLinear"
    assert "conv.weight_quantized[1] (output channel) sign-flipped" in flip.description
    assert mutations.weight_nudge(int8) is None  # no float Conv weight to nudge


def test_detect_int8_of_graphs_with_nothing_to_quantize_is_one_line(capsys):
    argv = ["detect", "--graphs", str(GRAPHS), "--graph", "channel_shuffle", "--quiet"]
    assert main([*argv, "--precision", "int8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing to plant at int8" in err


#: What the int8 bounds cannot see (reports/detection-int8.md): one channel's weight defect
#: deep in a block with a residual or several layers after it, diluted below int8's own
#: noise at the output, and one stored element moved by about one unit, within the per-element
#: allowance that clipping needs.
INT8_KNOWN_MISSES = {
    ("flattened", "weight_scale_doubled"),
    *((g, m) for g in ("shuffle_unit", "shuffle_unit_s2", "shufflenet_v2_unit")
      for m in ("int8_weight_sign_flip", "weight_scale_doubled")),
    *((g, "stale_output") for g in
      ("standard", "pointwise", "depthwise", "grouped", "shuffle_unit", "shufflenet_v2_unit")),
}  # fmt: skip


@pytest.mark.slow
def test_every_int8_mutant_of_every_committed_graph_is_caught_but_the_known_misses():
    report = detection.run_suite(detection.zoo_originals(GRAPHS), precision="int8")
    missed = {(p.graph, p.mutation) for p in report.planted if not p.caught}
    assert missed == INT8_KNOWN_MISSES
    assert not [c for c in report.clean if c.false_alarm]
    assert set(report.settings["not_quantized"]) == {"channel_shuffle"}


def test_detect_help_names_every_mutation(capsys):
    with pytest.raises(SystemExit):
        main(["detect", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in mutations.MUTATIONS)
