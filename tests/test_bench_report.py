"""What a bench report shows besides the timings: where the nodes ran, the input shapes and
config, one colour per optimisation level in every plot, labelled bars, and a y-label that says
what the op shares are made of. Synthetic reports only (timings are never test assertions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.colors import to_hex

from onnxconv.bench import plots as bench_plots
from onnxconv.bench import report as bench_report
from onnxconv.bench.report import BenchReport

REPORTS = Path(__file__).resolve().parent.parent / "reports"


def _ort_cell(label, level, per_op=None, p50=1.0, **extra):
    return {
        "id": f"{label}/b1/ort/cpu/{level}/fp32",
        "label": label,
        "source": label,
        "kind": "variant",
        "config": {"batch": 1, "in_channels": 64, "height": 8, "width": 8},
        "batch": 1,
        "backend": "ort",
        "target": f"cpu/{level}/fp32",
        "ep": "cpu",
        "device": "cpu",
        "opt_level": level,
        "status": "ok",
        "macs": 1000,
        "input_shapes": {"input": [1, 64, 8, 8]},
        "stats": {"p50_ms": p50, "p90_ms": p50, "p99_ms": p50, "block_spread": 0.0},
        "rounds": [],
        "per_op": per_op,
        **extra,
    }


def _torch_cell(label, p50=1.5):
    cell = _ort_cell(label, "all", p50=p50)
    cell.update(id=f"{label}/b1/torch/cpu", backend="torch", target="cpu", opt_level=None)
    return cell


def _profile(fractions, providers=None, **extra):
    return {
        "fractions": fractions,
        "providers": providers or {"CPUExecutionProvider": ["Conv"]},
        "nodes": 3,
        "clock": "cpu",
        **extra,
    }


def _data(cells, pairs=()):
    return BenchReport(
        machine={"cpu_model": "EPYC", "usable_cores": 2, "gpus": []},
        versions={"torch": "2.13.0", "onnxruntime": "1.32.0"},
        settings={
            "threads": 2,
            "warmup": 10,
            "warmup_s": 0.3,
            "blocks": 5,
            "calls": 100,
            "rounds": 3,
            "eps": ["cpu"],
            "sources": [{"label": "standard", "overrides": {"height": "8", "width": "8"}}],
        },
        roofs=None,
        cells=list(cells),
        pairs=list(pairs),
    ).to_dict()


def _pair(ort, torch_cell, ratio):
    return {
        "label": ort["label"],
        "batch": 1,
        "ort_cell": ort["id"],
        "torch_cell": torch_cell["id"],
        "ort_target": ort["target"],
        "torch_backend": "torch",
        "rounds": [{"torch_over_ort": ratio}],
        "torch_over_ort": ratio,
        "ort_over_torch": 1 / ratio,
        "n_pairs": 1,
        "outputs_match": True,
    }


SHARES = {"conv": 0.9, "shuffle": 0.0, "reorder": 0.1, "other": 0.0}


@pytest.mark.parametrize(
    "per_op, expected",
    [
        (_profile(SHARES, provider_nodes={"CPUExecutionProvider": 3}), "cpu:3"),
        (
            _profile(
                SHARES,
                {"CUDAExecutionProvider": ["Conv"], "CPUExecutionProvider": ["Shape"]},
                provider_nodes={"CUDAExecutionProvider": 12, "CPUExecutionProvider": 2},
            ),
            "cuda:12, cpu:2",
        ),
        (_profile(SHARES), "cpu:3"),  # schema 2: one EP ran every node
        (
            _profile(
                SHARES, {"CUDAExecutionProvider": ["Conv"], "CPUExecutionProvider": ["Shape"]}
            ),
            "cuda: Conv; cpu: Shape",
        ),
        (None, "—"),  # not profiled
    ],
)
def test_placement_says_where_the_nodes_ran(per_op, expected):
    assert bench_report.placement(_ort_cell("standard", "all", per_op)) == expected


def test_placement_of_pytorch_is_its_device():
    assert bench_report.placement(_torch_cell("standard")) == "cpu"


def test_input_shape_from_the_cell_or_from_the_variant_config():
    cell = _ort_cell("standard", "all")
    assert bench_report.input_text(cell) == "1×64×8×8"
    del cell["input_shapes"]  # a report before schema 3: from the config, by the variant
    cell["config"] = {"batch": 2, "in_channels": 16, "height": 5, "width": 7}
    assert bench_report.input_text(cell) == "2×16×5×7"
    cell.update(kind="onnx", config=None)
    assert bench_report.input_text(cell) == "—"


def test_markdown_and_console_show_inputs_config_and_placement():
    per_op = _profile(SHARES, provider_nodes={"CPUExecutionProvider": 3})
    data = _data([_ort_cell("standard", "all", per_op), _torch_cell("standard")])
    text = bench_report.to_markdown(data)
    assert "- inputs and configs:" in text
    assert "  - standard: input 1×64×8×8; config in_channels=64, height=8, width=8" in text
    assert "| standard | 1 | 1×64×8×8 | ort cpu/all/fp32 | cpu:3 | 1 |" in text
    assert "| standard | 1 | 1×64×8×8 | torch cpu | cpu | 1.5 |" in text
    headers, rows = bench_report.summary_rows(data)
    assert rows[0][headers.index("ran on")] == "cpu:3"
    caption = bench_report.run_caption(data)
    assert caption == "inputs: batch 1 × 64×8×8 (standard) · config set: height=8, width=8"


def _levels_data():
    levels = ("all", "extended", "basic", "disabled")
    cells = [
        _ort_cell("standard", level, _profile(SHARES), p50=1 + i) for i, level in enumerate(levels)
    ]
    torch_cell = _torch_cell("standard")
    pairs = [_pair(c, torch_cell, 1.5 / c["stats"]["p50_ms"]) for c in cells]
    return _data([*cells, torch_cell], pairs), levels


def test_every_plot_colours_a_level_the_same_way_and_titles_the_input():
    data, levels = _levels_data()
    scatter = bench_plots.latency_vs_macs_figure(data).axes[0]
    by_label = {
        c.get_label(): to_hex(c.get_facecolor()[0]) for c in scatter.collections if c.get_label()
    }
    bars = bench_plots.speedup_figure(data).axes[0]
    by_bar = {b.get_label(): to_hex(b.patches[0].get_facecolor()) for b in bars.containers}
    for level in levels:
        color = bench_plots.LEVEL_COLORS[level]
        assert by_label[f"ort cpu/{level}/fp32"] == color
        assert by_bar[f"cpu/{level}/fp32 vs torch"] == color
    for ax in (scatter, bars):
        assert "64×8×8" in ax.get_title() and "height=8, width=8" in ax.get_title()


def test_bars_carry_their_values():
    data, _ = _levels_data()
    speedup = bench_plots.speedup_figure(data).axes[0]
    texts = {t.get_text() for t in speedup.texts}
    assert {"1.50", "0.75", "0.50", "0.38"} <= texts
    breakdown = bench_plots.op_breakdown_figure(data).axes[0]
    assert {"90", "10"} <= {t.get_text() for t in breakdown.texts}


def test_op_breakdown_y_label_names_what_this_runs_shares_are_made_of():
    data, _ = _levels_data()
    label = bench_plots.op_breakdown_figure(data).axes[0].get_ylabel()
    assert "ORT's profile (CPU node time)" in label and "CUDA" not in label
    cuda = _profile(SHARES, clock="host")
    data = _data([_ort_cell("standard", "all", cuda)])
    label = bench_plots.op_breakdown_figure(data).axes[0].get_ylabel()
    assert "host-side launch time" in label


@pytest.mark.parametrize("path", sorted(REPORTS.glob("**/bench.json")), ids=lambda p: p.parent.name)
def test_committed_reports_are_what_the_renderer_makes_of_their_json(path):
    """A committed bench.md is re-rendered from its bench.json (``python -m
    onnxconv.bench.report reports/*/bench.json``, which leaves the JSON as it is)."""
    report = bench_report.load_report(path)
    assert bench_report.to_markdown(report) == path.with_suffix(".md").read_text()


def test_caption_names_common_and_per_variant_overrides_not_defaults():
    data = _data([_ort_cell("standard", "all"), _ort_cell("grouped", "all")])
    data["settings"]["sources"] = [
        {"label": "standard", "kind": "variant", "variant": "standard",
         "overrides": {"height": "8", "width": "8", "in_channels": 64}},  # 64: the default
        {"label": "grouped", "kind": "variant", "variant": "grouped",
         "overrides": {"height": "8", "width": "8", "groups": "4"}},
    ]  # fmt: skip
    caption = bench_report.run_caption(data)
    assert caption.endswith("config set: height=8, width=8; grouped: groups=4")


def test_markdown_names_the_largest_op_types_the_shares_group():
    """The conv/shuffle/reorder/other shares put a network's pooling and Gemm, or a shuffle as
    one Gather, into ``other``: each profiled ORT cell also names its largest op types."""
    report = bench_report.load_report(REPORTS / "bench-cpu-networks-t2" / "bench.json")
    text = bench_report.to_markdown(report)
    assert (
        "| shufflenet | 1 | cpu/all/fp32 | profile | FusedConv 1221.9, Conv 813.9, "
        "ReorderOutput 376.9, ReorderInput 296.4 |" in text
    )
    cuda = bench_report.load_report(REPORTS / "cuda-h100" / "bench-cuda" / "bench.json")
    assert "| standard | 1 | cuda/all/fp32 | launch | Conv 20.1 |" in bench_report.to_markdown(cuda)


def test_a_single_block_has_no_measured_spread():
    """One block's spread is 0 by arithmetic, which read as a perfectly steady machine."""
    from onnxconv.bench.stats import measured_spread, summarize

    one = summarize([[1_000_000, 1_200_000, 900_000]]).to_dict()
    two = summarize([[1_000_000], [1_500_000]]).to_dict()
    assert one["block_spread"] == 0.0 and measured_spread(one) is None
    assert measured_spread(two) == pytest.approx(0.4)


def test_the_console_marks_a_ratio_built_on_a_held_up_cell():
    """Under contention PyTorch's p50 blew up 100x and the table read torch/ORT 130.48 beside
    ratios of 0.85 at one thread; the note said so only below the table."""
    ort = _ort_cell("standard", "all")
    torch_cell = _torch_cell("standard", p50=150.0)
    torch_cell["stats"]["min_ms"] = 1.4  # a p50 100x its fastest call
    data = _data([ort, torch_cell], [_pair(ort, torch_cell, 150.0)])
    headers, rows = bench_report.summary_rows(data)
    assert rows[0][headers.index("torch/ORT (?: held up)")] == "150.00?"
    torch_cell["stats"]["min_ms"] = 140.0
    data = _data([ort, torch_cell], [_pair(ort, torch_cell, 150.0)])
    headers, rows = bench_report.summary_rows(data)
    assert rows[0][headers.index("torch/ORT (?: held up)")] == "150.00"
