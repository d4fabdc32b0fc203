"""The tune report's Markdown, rendered from the committed H100 run (reports/tune-cuda-h100/):
what a page of CUDA figures must say so that they are not misread."""

from __future__ import annotations

from pathlib import Path

from onnxconv.tune.report import load_report, to_markdown

RUN = Path(__file__).resolve().parents[1] / "reports" / "tune-cuda-h100"


def _page(name: str) -> str:
    return to_markdown(load_report(RUN / f"{name}.json"), f"{name}.png")


def test_node_times_that_sum_past_the_p50_are_explained():
    # the unit at batch 32: its 9 nodes alone sum to 4.84 ms against a p50 of 4.44 ms
    page = _page("shuffle_unit-b32")
    assert "| overhead | 0 | 0% |" in page
    assert "The nodes alone sum to 4.841 ms, more than the p50" in page


def test_a_run_that_timed_no_formulation_says_so():
    page = _page("shuffle_unit-b32")
    rewrites = page.split("## Rewrites", 1)[1].split("##", 1)[0]
    assert "No formulation but the original was timed: the time budget skipped them" in rewrites
    assert "What each formulation changed" not in rewrites


def test_a_graph_no_rewrite_applies_to_says_which_were_allowed():
    cpu = Path(__file__).resolve().parents[1] / "reports" / "tune-cpu-zoo" / "standard.json"
    page = to_markdown(load_report(cpu), "standard.png")
    rewrites = page.split("## Rewrites", 1)[1].split("##", 1)[0]
    assert "No rewrite applies to this graph (allowed: `shuffle_rank4`, " in rewrites


def test_the_cuda_profile_is_said_to_be_launch_time():
    # the default's node times sum to 0.25 ms of a 21.1 ms run: host launches, not device time
    page = _page("shuffle_unit-b32")
    assert "| 21125.0 |" in page
    assert "the host's time to launch each node's kernels" in page


def test_a_cpu_report_keeps_its_page_as_it_was():
    cpu = Path(__file__).resolve().parents[1] / "reports" / "tune-cpu-t2" / "channel_shuffle.json"
    page = to_markdown(load_report(cpu), "channel_shuffle.png")
    assert "What each formulation changed:" in page  # the Gather did change it
    assert "launch each node's kernels" not in page
    assert "The nodes alone sum to" not in page


def test_the_bound_is_worded_by_this_version_from_the_runs_figures():
    """The run's JSON keeps its own sentence ("that alone is slower", read as if one 2.01 ms
    Conv were slower than PyTorch's 2.87 ms); the page words it again from the same figures."""
    data = load_report(RUN / "shuffle_unit-b32.json")
    assert "; that alone is slower than" in data["bound"]["sentence"]
    page = to_markdown(data, "shuffle_unit-b32.png")
    assert "; this part alone (3.86 ms) is slower than PyTorch eager's whole run (2.87 ms)" in page
