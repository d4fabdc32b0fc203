"""The PNG of a tune report, drawn from the committed reports (tune is never run here): one bar
per timed candidate with the winner marked, a profile panel exactly when there is a profile, a
real PNG, and the re-render entry point that writes the page and its plot beside a JSON.
Timings are never asserted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from onnxconv.bench.stats import OP_GROUPS
from onnxconv.tune import plots as tune_plots
from onnxconv.tune import report as tune_report

REPORTS = Path(__file__).resolve().parent.parent / "reports"
PATHS = sorted(
    p
    for folder in ("tune-cpu-zoo", "tune-cpu-precisions", "tune-cpu-networks")
    for p in (REPORTS / folder).glob("*.json")
)
PNG = b"\x89PNG\r\n\x1a\n"
IMAGE = "![candidates and where the time goes]"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _timed(data: dict) -> list[dict]:
    return [c for c in data["candidates"] if c["timing"] and c["timing"]["stats"]]


def test_the_committed_reports_are_there():
    assert len(PATHS) >= 10


@pytest.mark.parametrize("path", PATHS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_one_bar_per_timed_candidate_and_a_profile_panel_when_profiled(path):
    data = _load(path)
    fig = tune_plots.tune_figure(data)
    profiles = [p for p in data["per_op"].values() if p]
    assert len(fig.axes) == (2 if profiles else 1)
    top = fig.axes[0]
    assert len(top.patches) == len(_timed(data))
    labelled = [t for t in top.texts if t.get_text().endswith("× default")]
    assert len(labelled) == sum(c["speedup_vs_default"] is not None for c in _timed(data))
    if profiles:
        assert len(fig.axes[1].patches) == len(profiles) * len(OP_GROUPS)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_winner_is_marked(path):
    data = _load(path)
    top = tune_plots.tune_figure(data).axes[0]
    labels = [t.get_text() for t in top.get_yticklabels()]
    marked = [i for i, label in enumerate(labels) if label.endswith(" (winner)")]
    assert [labels[i] for i in marked] == [f"{data['winner']} (winner)"]
    widths = [patch.get_linewidth() for patch in top.patches]
    assert widths[marked[0]] == tune_plots.WINNER_LINEWIDTH
    assert sum(w > 0 for w in widths) == 1


def test_reference_lines_and_the_disqualified_count():
    data = _load(REPORTS / "tune-cpu-precisions" / "channel_shuffle.json")
    top = tune_plots.tune_figure(data).axes[0]
    assert "1 disqualified, see the Markdown" in top.get_title()
    default = next(c for c in data["candidates"] if c["name"] == data["default"])
    dashed = [line for line in top.get_lines() if line.get_linestyle() == "--"]
    assert [line.get_xdata()[0] for line in dashed] == [default["timing"]["stats"]["p50_ms"]]
    assert any(line.get_linestyle() == ":" for line in top.get_lines())


def test_no_torch_line_without_torch_timings():
    data = _load(REPORTS / "tune-cpu-zoo" / "standard.json")
    data["torch"] = {stage: None for stage in data["torch"]}
    top = tune_plots.tune_figure(data).axes[0]
    assert not any(line.get_linestyle() == ":" for line in top.get_lines())
    assert "disqualified" not in top.get_title()


def test_write_plot_writes_a_png(tmp_path):
    data = _load(REPORTS / "tune-cpu-networks" / "shufflenet.json")
    path = tune_plots.write_plot(data, tmp_path / "shufflenet.png")
    assert path == tmp_path / "shufflenet.png"
    assert path.read_bytes().startswith(PNG)


def test_markdown_links_the_plot_only_when_named():
    data = _load(REPORTS / "tune-cpu-zoo" / "standard.json")
    assert not any(line.startswith("![") for line in tune_report.to_markdown(data).splitlines())
    lines = tune_report.to_markdown(data, "standard.png").splitlines()
    at = lines.index(f"{IMAGE}(standard.png)")
    assert lines[at - 2].startswith("p50/p90 in ms") and lines[at - 4] == "## Candidates"
    assert lines[at + 2].startswith("| stage | candidate")


def test_write_report_puts_the_png_beside_the_markdown(tmp_path):
    data = _load(REPORTS / "tune-cpu-zoo" / "channel_shuffle.json")
    written = tune_report.write_report(data, str(tmp_path / "r.json"), str(tmp_path / "r.md"))
    assert {p.name for p in written} == {"r.json", "r.md", "r.png"}
    assert json.loads((tmp_path / "r.json").read_text()) == data
    assert f"{IMAGE}(r.png)" in (tmp_path / "r.md").read_text()
    assert (tmp_path / "r.png").read_bytes().startswith(PNG)


def test_rerender_writes_markdown_and_png_beside_each_json(tmp_path, capsys):
    copies = []
    for source in (REPORTS / "tune-cpu-precisions" / "grouped.json", PATHS[0]):
        copies.append(tmp_path / f"{source.parent.name}-{source.name}")
        shutil.copy(source, copies[-1])
    before = [c.read_bytes() for c in copies]
    assert tune_report.main([str(c) for c in copies]) == 0
    out = capsys.readouterr().out.splitlines()
    for copy, said, json_bytes in zip(copies, out, before):
        md, png = copy.with_suffix(".md"), copy.with_suffix(".png")
        assert said == f"{png}, {md}"  # the plot is written before the page that links it
        assert f"{IMAGE}({png.name})" in md.read_text(encoding="utf-8")
        assert png.read_bytes().startswith(PNG)
        assert copy.read_bytes() == json_bytes


@pytest.mark.parametrize(
    "content",
    [
        None,
        "not json",
        json.dumps({"schema": "onnxconv.bench"}),
        "[1]",
        '{"schema": "onnxconv.tune"}',
    ],
    ids=["missing", "not-json", "bench", "list", "no-fields"],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, content):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    assert tune_report.main([str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1 and str(path) in captured.err
    assert not path.with_suffix(".md").exists()


def test_the_module_runs_as_a_script(tmp_path):
    missing = tmp_path / "missing.json"
    done = subprocess.run(
        [sys.executable, "-m", "onnxconv.tune.report", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()] and str(missing) in done.stderr
    assert "Traceback" not in done.stderr


def test_the_markdown_says_at_which_batches_the_proof_ran():
    data = json.loads((REPORTS / "tune-cpu-zoo" / "standard.json").read_text())
    data["options"]["proof_batches"] = [1, 2, 32]
    page = tune_report.to_markdown(data)
    assert "at batches 1, 2 and seed 0 at batch 32 (the reference evaluator at the small" in page
    data["options"]["proof_batches"] = None  # a fixed batch: the graph's own
    assert "at batch" not in tune_report.to_markdown(data).split("- method:")[0]


def test_the_profile_table_names_the_op_types_a_rewrite_traded():
    """The groups are coarse (a Gather is ``other``): the largest op types say what changed."""
    lines = tune_report.to_markdown(_load(REPORTS / "tune-cpu-zoo" / "channel_shuffle.json"))
    rows = {line.split(" | ")[0]: line for line in lines.splitlines() if line.startswith("| `")}
    assert rows["| `original @ level=all`"].endswith("| Reshape 8.0, Transpose 6.7 |")
    assert rows["| `shuffle_gather @ level=all`"].endswith("| Gather 6.2 |")
