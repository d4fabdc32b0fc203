"""Nothing lost: concurrent writers, interrupted runs, killed runs and broken files.

The concurrency and signal tests run the real command (``python -m onnxconv``) in subprocesses
and wait for a point in the run (a staging folder, a progress line, a bench worker) before they
act, with generous timeouts: the machine may be a loaded 2-core one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxconv.cli import main
from onnxconv.export import JOURNAL, ExportOptions, export_variants, graph_folders
from onnxconv.locking import LOCK_NAME

ROOT = Path(__file__).resolve().parents[1]
#: A process on a loaded 2-core machine: torch's import alone can take seconds.
PROCESS_TIMEOUT_S = 300
TORCHSCRIPT = ExportOptions(exporter="torchscript")


# --- helpers -----------------------------------------------------------------------------------


@dataclass
class Run:
    """One ``python -m onnxconv`` process, its output in files (no pipe to fill up)."""

    proc: subprocess.Popen
    stdout: Path
    stderr: Path

    def finish(self, timeout: float = PROCESS_TIMEOUT_S) -> tuple[int, str, str]:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        return rc, self.stdout.read_text(), self.stderr.read_text()


def start(args: list[str], cwd: Path, name: str, env: dict[str, str] | None = None) -> Run:
    out, err = cwd / f"{name}.stdout", cwd / f"{name}.stderr"
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    environ["PYTHONPATH"] = str(ROOT) + os.pathsep + environ.get("PYTHONPATH", "")
    with out.open("w") as o, err.open("w") as e:
        proc = subprocess.Popen(
            [sys.executable, "-m", "onnxconv", *args], cwd=cwd, stdout=o, stderr=e, env=environ
        )
    return Run(proc, out, err)


def wait_for(what: str, ready: Callable[[], bool], *runs: Run, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        for run in runs:
            if run.proc.poll() is not None:
                raise AssertionError(
                    f"exited ({run.proc.returncode}) before {what}: {run.stderr.read_text()}"
                )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, the lock file aside."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_NAME
    }


def leftovers(folder: Path) -> list[str]:
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.name.startswith((".staging-", ".old-", JOURNAL)) or p.name.endswith(".tmp")
    )


def assert_manifest_matches_disk(out: Path) -> dict:
    """The manifest lists exactly the graph folders, each with its model's sha256."""
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["graphs"]) == sorted(p.name for p in graph_folders(out))
    for name, entry in manifest["graphs"].items():
        digest = hashlib.sha256((out / name / "model.onnx").read_bytes()).hexdigest()
        assert digest == entry["sha256"], name
    assert leftovers(out) == []
    return manifest


def assert_folder_whole(folder: Path) -> None:
    """A graph folder is one export's: its stored output is what its model computes."""
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    data = folder / "test_data_set_0"
    x = numpy_helper.to_array(onnx.load_tensor(str(data / "input_0.pb")))
    y = numpy_helper.to_array(onnx.load_tensor(str(data / "output_0.pb")))
    np.testing.assert_allclose(session.run(None, {"input": x})[0], y, rtol=1e-3, atol=1e-4)


def staged_variants(out: Path) -> list[str]:
    """Variant folders already written into this export's staging folder(s)."""
    return [
        v.name
        for s in out.glob(".staging-*")
        for v in s.iterdir()
        if (v / "test_data_set_0" / "output_0.pb").exists()
    ]


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class HeldLock:
    """This test process holding a folder's writer lock, as another onnxconv run would."""

    def __init__(self, folder: Path) -> None:
        self.fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def one_error_line(stderr: str, command: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"onnxconv {command}: error: "), lines[0]
    return lines[0]


# --- concurrent writers ------------------------------------------------------------------------


def test_two_exports_into_one_folder_keep_every_graph(tmp_path):
    """The issue's case: standard+grouped and standard+depthwise at once. The test holds the
    folder's lock until both have staged their graphs, so both swap in after the other read the
    manifest: the second must re-read it, or grouped is lost."""
    out = tmp_path / "g"
    out.mkdir()
    lock = HeldLock(out)
    common = ["--exporter", "torchscript", "--config", "height=8,width=8", "--quiet"]
    a = start(["export", "--variant", "standard", "--variant", "grouped", "--out", "g", *common],
              tmp_path, "a")  # fmt: skip
    b = start(["export", "--variant", "standard", "--variant", "depthwise", "--out", "g", *common],
              tmp_path, "b")  # fmt: skip
    try:
        wait_for("both exports staged", lambda: len(staged_variants(out)) == 4, a, b)
        time.sleep(0.5)  # both are past staging: at the lock, or nearly
        assert a.proc.poll() is None and b.proc.poll() is None, "did not wait for the lock"
    finally:
        lock.release()
    assert a.finish()[0] == 0 and b.finish()[0] == 0
    manifest = assert_manifest_matches_disk(out)
    assert list(manifest["graphs"]) == ["standard", "depthwise", "grouped"]
    for name in manifest["graphs"]:
        assert_folder_whole(out / name)


@pytest.mark.slow
def test_many_concurrent_exports_keep_every_graph(tmp_path):
    out = tmp_path / "g"
    sets = [
        ["standard", "grouped"],
        ["standard", "depthwise"],
        ["pointwise"],
        ["grouped", "separable"],
    ]
    for round_ in range(3):
        runs = [
            start(
                [
                    "export",
                    *[f"--variant={v}" for v in names],
                    "--exporter",
                    "torchscript",
                    "--config",
                    f"height={7 + round_},width=7",
                    "--out",
                    "g",
                    "--quiet",
                ],
                tmp_path,
                f"r{round_}w{i}",
            )  # fmt: skip
            for i, names in enumerate(sets)
        ]
        assert [run.finish()[0] for run in runs] == [0] * len(runs)
        manifest = assert_manifest_matches_disk(out)
        assert sorted(manifest["graphs"]) == sorted({v for names in sets for v in names})


def test_a_lock_held_past_the_timeout_is_one_line_naming_the_folder_and_holder(
    tmp_path, monkeypatch, capsys
):
    out = tmp_path / "g"
    export_variants(["pointwise"], out, TORCHSCRIPT, {"height": 4, "width": 4})
    before = snapshot(out)
    monkeypatch.setenv("ONNXCONV_LOCK_TIMEOUT_S", "0.5")
    lock = HeldLock(out)
    try:
        argv = ["export", "--variant", "standard", "--exporter", "torchscript", "--out", str(out)]
        rc = main([*argv, "--config", "height=4,width=4", "--quiet"])
    finally:
        lock.release()
    assert rc == 2
    line = one_error_line(capsys.readouterr().err, "export")
    assert str(out) in line and f"pid {os.getpid()}" in line and "0.5 s" in line
    assert snapshot(out) == before and leftovers(out) == []


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> Path:
    """standard and grouped, tiny, exported once for the validate and reader tests."""
    out = tmp_path_factory.mktemp("graphs") / "g"
    export_variants(["standard", "grouped"], out, TORCHSCRIPT, {"height": 6, "width": 6})
    return out


QUICK_VALIDATE = ["--ep", "cpu", "--opt-level", "all", "--precision", "fp32", "--seeds", "0"]


def test_two_validates_writing_one_report_leave_one_whole(tmp_path, graphs):
    """Both write JSON and Markdown to the same paths; the test holds the folder's lock until
    both have printed their table (they then wait to write): the pair on disk is one run's."""
    lock = HeldLock(tmp_path)
    files = ["--json", "r.json", "--markdown", "r.md", "--quiet", "--graphs", str(graphs)]
    a = start(["validate", "standard", *QUICK_VALIDATE, *files], tmp_path, "a")
    b = start(["validate", "grouped", *QUICK_VALIDATE, *files], tmp_path, "b")
    try:
        printed = lambda run: "1 pass" in run.stdout.read_text()  # noqa: E731
        wait_for("both tables", lambda: printed(a) and printed(b), a, b)
        assert not (tmp_path / "r.json").exists()
    finally:
        lock.release()
    assert a.finish()[0] == 0 and b.finish()[0] == 0
    report = json.loads((tmp_path / "r.json").read_text())
    (subject,) = [s["label"] for s in report["subjects"]]
    other = {"standard": "grouped", "grouped": "standard"}[subject]
    markdown = (tmp_path / "r.md").read_text()
    assert f"| {subject} " in markdown and f"| {other} " not in markdown
    assert leftovers(tmp_path) == []


BENCH = ["--rounds", "1", "--blocks", "1", "--calls", "3", "--no-roofs", "--no-profile"]
BENCH += ["--opt-level", "all", "--quiet"]


def bench_source(folder: Path) -> str:
    (source,) = {c["source"] for c in json.loads((folder / "bench.json").read_text())["cells"]}
    return source


def test_two_benches_into_one_folder_leave_one_whole_report(tmp_path):
    """One with plots, one without: the folder holds exactly one run's files."""
    config = ["--config", "height=6,width=6,in_channels=4,out_channels=4"]
    a = start(["bench", "standard", *config, *BENCH, "--out", "b"], tmp_path, "a")
    b = start(["bench", "pointwise", *config, *BENCH, "--no-plots", "--out", "b"], tmp_path, "b")
    assert a.finish()[0] == 0 and b.finish()[0] == 0
    out = tmp_path / "b"
    source = bench_source(out)
    plots = {"latency_vs_macs.png", "speedup.png", "op_breakdown.png"}
    files = {p.name for p in out.iterdir()}
    assert files == {"bench.json", "bench.md"} | (plots if source == "standard" else set())
    assert f"{source}" in (out / "bench.md").read_text()
    assert leftovers(tmp_path) == []


def test_a_bench_report_folder_shared_with_other_files_keeps_them(tmp_path):
    from onnxconv.report import staged_folder

    out = tmp_path / "reports"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "speedup.png").write_bytes(b"an old plot")
    owned = ["bench.json", "bench.md", "speedup.png"]
    with staged_folder(out, owned) as stage:
        (stage / "bench.json").write_text("{}")
    assert {p.name for p in out.iterdir()} == {"notes.txt", "bench.json"}
    with pytest.raises(RuntimeError):
        with staged_folder(out, owned) as stage:
            (stage / "bench.json").write_text("half")
            raise RuntimeError("interrupted")
    assert (out / "bench.json").read_text() == "{}" and leftovers(tmp_path) == []


# --- interrupted runs --------------------------------------------------------------------------


SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}


def interrupted(run: Run, sig: int, command: str) -> list[str]:
    """Send ``sig``; the run exits 128 + sig with one line saying what was interrupted."""
    run.proc.send_signal(sig)
    rc, _, stderr = run.finish()
    assert rc == 128 + sig, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    name = signal.Signals(sig).name
    assert lines[-1] == f"onnxconv {command}: interrupted by {name}; nothing was left half-written"
    return lines


def export_under_way(tmp_path: Path) -> tuple[Path, dict[str, bytes], Run]:
    """A folder with an earlier export in it, and a slow export into it (dynamo, five variants)
    that has staged its first graph."""
    out = tmp_path / "g"
    export_variants(["pointwise"], out, TORCHSCRIPT, {"height": 4, "width": 4})
    before = snapshot(out)
    names = ["standard", "inception", "separable", "grouped", "depthwise"]
    args = ["export", *[f"--variant={n}" for n in names], "--config", "height=8,width=8"]
    run = start([*args, "--out", "g", "--quiet"], tmp_path, "export")
    wait_for("the first staged graph", lambda: len(staged_variants(out)) >= 1, run)
    return out, before, run


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_an_interrupted_export_leaves_the_folder_as_it_was(tmp_path, sig):
    out, before, run = export_under_way(tmp_path)
    interrupted(run, SIGNALS[sig], "export")
    assert snapshot(out) == before and leftovers(out) == []


def old_validate_report(folder: Path) -> dict[str, bytes]:
    (folder / "r.json").write_text('{"old": true}\n')
    (folder / "r.md").write_text("old report\n")
    return snapshot(folder)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_an_interrupted_validate_keeps_the_previous_report(tmp_path, graphs, sig):
    reports = tmp_path / "reports"
    reports.mkdir()
    before = old_validate_report(reports)
    args = ["validate", "--graphs", str(graphs), "--json", "reports/r.json"]
    run = start([*args, "--markdown", "reports/r.md"], tmp_path, "validate")  # whole matrix
    wait_for("validating", lambda: "validating" in run.stderr.read_text(), run)
    interrupted(run, SIGNALS[sig], "validate")
    assert snapshot(reports) == before and leftovers(reports) == []


#: A bench whose every worker times 5 × 100,000 calls (tens of seconds): a worker still alive a
#: few seconds after its bench died would be one that outlived it.
LONG_WORKER = ["--rounds", "3", "--calls", "100000"]


def old_bench_report(folder: Path) -> dict[str, bytes]:
    folder.mkdir()
    (folder / "bench.json").write_text('{"old": true}\n')
    (folder / "bench.md").write_text("old report\n")
    return snapshot(folder)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_an_interrupted_bench_keeps_the_previous_report_and_no_worker(tmp_path, sig):
    before = old_bench_report(tmp_path / "b")
    args = ["bench", "standard", "--config", "height=6,width=6", *LONG_WORKER]
    run = start([*args, "--no-roofs", "--opt-level", "all", "--out", "b"], tmp_path, "bench")
    workers: list[int] = []

    def worker_running() -> bool:
        workers[:] = children(run.proc.pid)
        return bool(workers)

    wait_for("a bench worker", worker_running, run)
    interrupted(run, SIGNALS[sig], "bench")
    deadline = time.monotonic() + 5  # the worker's own job would take far longer
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(w) for w in workers), "a worker outlived the bench"
    assert snapshot(tmp_path / "b") == before and leftovers(tmp_path) == []


def test_a_signal_during_a_swap_acts_only_once_the_swap_is_done():
    from onnxconv.cli import _catch_signals
    from onnxconv.errors import Interrupted
    from onnxconv.locking import signals_deferred

    steps = []
    previous = _catch_signals()
    try:
        with pytest.raises(Interrupted) as caught:
            with signals_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)  # the handler would run here, half-way through a swap
                steps.append("swap done")
        assert steps == ["swap done"] and caught.value.exit_code == 143
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- killed runs (SIGKILL) ----------------------------------------------------------------------


def test_sigkill_mid_export_leaves_old_graphs_and_the_next_export_cleans_up(tmp_path, capsys):
    out, before, run = export_under_way(tmp_path)
    run.proc.kill()
    run.finish()
    stale = leftovers(out)
    assert stale and all(name.startswith(".staging-") for name in stale)
    assert {k: v for k, v in snapshot(out).items() if not k.startswith(".")} == before
    assert [p.name for p in graph_folders(out)] == ["pointwise"]  # staging is never a graph
    rc = main(["validate", "--graphs", str(out), *QUICK_VALIDATE, "--quiet", "--brief"])
    assert rc == 0 and "pointwise" in capsys.readouterr().out
    export_variants(["standard"], out, TORCHSCRIPT, {"height": 4, "width": 4})
    assert sorted(assert_manifest_matches_disk(out)["graphs"]) == ["pointwise", "standard"]


def test_sigkill_of_bench_takes_its_worker_down(tmp_path):
    args = ["bench", "standard", "--config", "height=6,width=6", *LONG_WORKER]
    run = start([*args, "--no-roofs", "--opt-level", "all", "--out", "b"], tmp_path, "bench")
    workers: list[int] = []

    def worker_running() -> bool:
        workers[:] = children(run.proc.pid)
        return bool(workers)

    wait_for("a bench worker", worker_running, run)
    run.proc.kill()
    run.finish()
    deadline = time.monotonic() + 5  # the worker's own job would take far longer
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(w) for w in workers), "a worker outlived the bench"
    assert not (tmp_path / "b").exists()


#: Where a child export kills itself (SIGKILL) inside the swap-in: after the journal is written,
#: between the two renames of a folder swap, after the first folder is in place, after the
#: manifest is written (before the journal goes).
KILL_POINTS = {
    "journal": """
        export.apply_journal = lambda *args: die()
    """,
    "between_renames": """
        real_replace = os.replace
        def replace(src, dst):
            if ".staging-" in str(src) and Path(dst).name == "standard":
                die()
            return real_replace(src, dst)
        os.replace = replace
    """,
    "after_first_swap": """
        real_swap = export.replace_folder
        export.replace_folder = lambda new, target: (real_swap(new, target), die())
    """,
    "after_manifest": """
        real_write = export.write_json
        def write_json(path, data):
            real_write(path, data)
            if Path(path).name == "manifest.json":
                die()
        export.write_json = write_json
    """,
}
CHILD = """
import os, signal, sys
from pathlib import Path
from onnxconv import export
def die():
    os.kill(os.getpid(), signal.SIGKILL)
{patch}
export.export_variants(["standard", "depthwise"], sys.argv[1],
                       export.ExportOptions(exporter="torchscript"), {{"height": 7, "width": 7}})
"""


@pytest.mark.parametrize(
    "point",
    ["journal", "between_renames", "after_first_swap", "after_manifest"],
)
def test_sigkill_inside_the_swap_is_rolled_forward_by_the_next_export(tmp_path, point):
    out = tmp_path / "g"
    export_variants(["standard", "grouped"], out, TORCHSCRIPT, {"height": 6, "width": 6})
    code = CHILD.format(patch=textwrap.dedent(KILL_POINTS[point]))
    # a relative --out, as users give it: the recovery below runs from another folder
    child = subprocess.run([sys.executable, "-c", code, "g"], cwd=tmp_path, timeout=600)
    assert child.returncode == -signal.SIGKILL
    assert (out / JOURNAL).exists()  # every kill point is after the journal
    json.loads((out / "manifest.json").read_text())  # old or new, whole
    for folder in graph_folders(out):
        assert_folder_whole(folder)  # each graph folder is one export's, old or new
    export_variants(["pointwise"], out, TORCHSCRIPT, {"height": 4, "width": 4})
    manifest = assert_manifest_matches_disk(out)
    assert list(manifest["graphs"]) == ["standard", "pointwise", "depthwise", "grouped"]
    for name in ("standard", "depthwise"):  # the killed export's graphs, rolled forward
        assert manifest["graphs"][name]["config"]["height"] == 7
    for folder in graph_folders(out):
        assert_folder_whole(folder)


# --- readers: broken files are one line and exit 2 ---------------------------------------------


def copy_graph(graphs: Path, tmp_path: Path, name: str = "standard") -> Path:
    folder = tmp_path / name
    shutil.copytree(graphs / name, folder)
    return folder


def rewrite_pb(path: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    tensor = onnx.load_tensor(str(path))
    onnx.save_tensor(numpy_helper.from_array(change(numpy_helper.to_array(tensor)), tensor.name),
                     str(path))  # fmt: skip


def tiny_graph(tmp_path: Path, name: str, nodes: list[onnx.NodeProto]) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph(nodes, name, [x], [y])
    path = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def bad_input_dtype(graphs: Path, tmp_path: Path) -> Path:
    folder = copy_graph(graphs, tmp_path)
    rewrite_pb(folder / "test_data_set_0" / "input_0.pb", lambda a: a.astype(np.float64))
    return folder


def bad_input_rank(graphs: Path, tmp_path: Path) -> Path:
    folder = copy_graph(graphs, tmp_path)
    rewrite_pb(folder / "test_data_set_0" / "input_0.pb", lambda a: a[0])
    return folder


def nan_input(graphs: Path, tmp_path: Path) -> Path:
    folder = copy_graph(graphs, tmp_path)

    def plant(array: np.ndarray) -> np.ndarray:
        array = array.copy()
        array.flat[5] = np.nan
        return array

    rewrite_pb(folder / "test_data_set_0" / "input_0.pb", plant)
    return folder


def nan_inputs_npz(graphs: Path, tmp_path: Path) -> Path:
    folder = copy_graph(graphs, tmp_path)
    stored = numpy_helper.to_array(onnx.load_tensor(str(folder / "test_data_set_0" / "input_0.pb")))
    stored = stored.copy()
    stored.flat[0] = np.inf
    np.savez(folder / "inf.npz", input=stored)
    return folder


def bad_output_dtype(graphs: Path, tmp_path: Path) -> Path:
    folder = copy_graph(graphs, tmp_path)
    rewrite_pb(folder / "test_data_set_0" / "output_0.pb", lambda a: a.astype(np.int32))
    return folder


def bad_output_rank(graphs: Path, tmp_path: Path) -> Path:
    folder = copy_graph(graphs, tmp_path)
    rewrite_pb(folder / "test_data_set_0" / "output_0.pb", lambda a: a[None])
    return folder


def missing_external_data(graphs: Path, tmp_path: Path) -> Path:
    folder = copy_graph(graphs, tmp_path)
    model = onnx.load(folder / "model.onnx")
    onnx.save_model(model, folder / "model.onnx", save_as_external_data=True,
                    location="weights.bin", size_threshold=0)  # fmt: skip
    (folder / "weights.bin").unlink()
    return folder / "model.onnx"


def shapes_outside_the_file(graphs: Path, tmp_path: Path) -> Path:
    """Every tensor external, the Reshapes' shapes too: ORT runs it from memory with the data
    read in, but refuses the file itself."""
    folder = copy_graph(ROOT / "graphs", tmp_path, "channel_shuffle")
    model = onnx.load(folder / "model.onnx")
    onnx.save_model(model, folder / "model.onnx", save_as_external_data=True,
                    location="weights.bin", size_threshold=0)  # fmt: skip
    return folder


def no_outputs(graphs: Path, tmp_path: Path) -> Path:
    path = tmp_path / "empty.onnx"
    graph = helper.make_graph([], "empty", [], [])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def no_inputs(graphs: Path, tmp_path: Path) -> Path:
    value = numpy_helper.from_array(np.ones((1, 4), np.float32), "value")
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node("Constant", [], ["y"], value=value)
    path = tmp_path / "constant.onnx"
    graph = helper.make_graph([node], "constant", [], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def opset_too_new(graphs: Path, tmp_path: Path) -> Path:
    folder = copy_graph(graphs, tmp_path)
    model = onnx.load(folder / "model.onnx")
    model.opset_import[0].version = onnx.defs.onnx_opset_version() + 2
    onnx.save(model, folder / "model.onnx")
    return folder


def ir_too_new(graphs: Path, tmp_path: Path) -> Path:
    folder = copy_graph(graphs, tmp_path)
    model = onnx.load(folder / "model.onnx")
    model.ir_version = 99
    onnx.save(model, folder / "model.onnx")
    return folder


def cycle(graphs: Path, tmp_path: Path) -> Path:
    return tiny_graph(tmp_path, "cycle", [
        helper.make_node("Add", ["x", "b"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Identity", ["b"], ["y"], name="out"),
    ])  # fmt: skip


def dangling_input(graphs: Path, tmp_path: Path) -> Path:
    return tiny_graph(tmp_path, "dangling", [helper.make_node("Add", ["x", "ghost"], ["y"])])


def duplicate_node_names(graphs: Path, tmp_path: Path) -> Path:
    """onnx's checker accepts two nodes of one name; ONNX Runtime refuses the model."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="twice"),
        helper.make_node("Neg", ["r"], ["y"], name="twice"),
    ]
    return tiny_graph(tmp_path, "twice", nodes)


def manifest_not_json(graphs: Path, tmp_path: Path) -> Path:
    out = tmp_path / "g"
    shutil.copytree(graphs, out)
    (out / "manifest.json").write_text('{"graphs": {"standard": ')  # cut short
    return out


def manifest_lists_a_missing_folder(graphs: Path, tmp_path: Path) -> Path:
    out = tmp_path / "g"
    shutil.copytree(graphs, out)
    shutil.rmtree(out / "grouped")
    return out


#: (broken file, command line with {path}, words the one line must hold)
READERS = [
    (bad_input_dtype, ["validate", "{path}"], ["test_data_set_0", "float32", "float64"]),
    (bad_input_rank, ["validate", "{path}"], ["input", "shape", "got [64, 6, 6]"]),
    (nan_input, ["validate", "{path}"], ["input_0.pb", "1 NaN and 0 Inf"]),
    (nan_inputs_npz, ["validate", "{path}", "--inputs", "{path}/inf.npz"], ["inf.npz", "1 Inf"]),
    (bad_output_dtype, ["validate", "{path}"], ["output_0.pb", "int32", "float32"]),
    (bad_output_rank, ["validate", "{path}"], ["output_0.pb", "[1, 1, 64, 6, 6]"]),
    (missing_external_data, ["validate", "{path}"], ["model.onnx", "weights.bin"]),
    (missing_external_data, ["inspect", "{path}"], ["model.onnx", "weights.bin"]),
    (missing_external_data, ["bench", "{path}"], ["model.onnx", "weights.bin"]),
    (shapes_outside_the_file, ["validate", "{path}"], ["model.onnx", "from its file", "Reshape"]),
    (shapes_outside_the_file, ["bench", "{path}"], ["model.onnx", "Reshape"]),
    (no_outputs, ["validate", "{path}"], ["empty.onnx", "no outputs"]),
    (no_outputs, ["bench", "{path}"], ["empty.onnx", "no outputs"]),
    (no_outputs, ["tune", "{path}", "--out", "{path}.tuned"], ["empty.onnx", "no outputs"]),
    (no_inputs, ["validate", "{path}"], ["constant.onnx", "no inputs"]),
    (no_inputs, ["bench", "{path}"], ["constant.onnx", "no inputs"]),
    (no_inputs, ["tune", "{path}", "--out", "{path}.tuned"], ["constant.onnx", "no inputs"]),
    (opset_too_new, ["validate", "{path}"], ["model.onnx", "newer than any this onnx"]),
    (opset_too_new, ["bench", "{path}"], ["model.onnx", "of ai.onnx is newer"]),
    (ir_too_new, ["inspect", "{path}"], ["model.onnx", "IR version 99 is newer"]),
    (cycle, ["validate", "{path}"], ["cycle.onnx", "cycle"]),
    (cycle, ["inspect", "{path}"], ["cycle.onnx", "cycle"]),
    (cycle, ["bench", "{path}"], ["cycle.onnx", "cycle"]),
    (dangling_input, ["validate", "{path}"], ["dangling.onnx", "ghost"]),
    (dangling_input, ["inspect", "{path}"], ["dangling.onnx", "ghost"]),
    (dangling_input, ["bench", "{path}"], ["dangling.onnx", "ghost"]),
    (duplicate_node_names, ["validate", "{path}"], ["twice.onnx", "same node name"]),
    (duplicate_node_names, ["bench", "{path}"], ["twice.onnx", "same node name"]),
    (duplicate_node_names, ["tune", "{path}", "--out", "{path}.t"], ["twice.onnx", "same node"]),
    (manifest_not_json, ["validate", "--graphs", "{path}"], ["manifest.json"]),
    (manifest_not_json, ["validate", "{path}/standard"], ["manifest.json", "JSON"]),
    (manifest_not_json, ["export", "--variant", "pointwise", "--out", "{path}"], ["manifest"]),
    (manifest_not_json, ["detect", "--graphs", "{path}"], ["manifest.json"]),
    (manifest_lists_a_missing_folder, ["validate", "--graphs", "{path}"], ["grouped"]),
    (manifest_lists_a_missing_folder, ["validate", "grouped", "--graphs", "{path}"], ["grouped"]),
    (manifest_lists_a_missing_folder, ["detect", "--graphs", "{path}"], ["grouped"]),
]


@pytest.mark.parametrize(
    "make,argv,words",
    READERS,
    ids=[f"{make.__name__}-{argv[0]}-{i}" for i, (make, argv, _) in enumerate(READERS)],
)
def test_a_broken_file_is_one_line_and_exit_2(graphs, tmp_path, capsys, make, argv, words):
    path = make(graphs, tmp_path)
    args = [a.format(path=path) for a in argv]
    if args[0] in ("validate", "detect"):
        args += ["--quiet"]
    if args[0] == "bench":
        args += [*BENCH, "--out", str(tmp_path / "bench")]
    rc = main(args)
    line = one_error_line(capsys.readouterr().err, args[0])
    assert rc == 2, line
    for word in words:
        assert word in line, (word, line)
    assert not (tmp_path / "bench").exists()


def test_a_stored_input_onnx_runtime_cannot_run_is_one_line(tmp_path, capfd):
    """An embedding's stored ids past its table: ORT's kernel fails, and its logger would print
    the failure once more (on the C++ side, so capfd), before onnxconv's own line."""
    table = numpy_helper.from_array(np.ones((10, 4), np.float32), "table")
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4])
    nodes = [helper.make_node("Gather", ["table", "ids"], ["y"])]
    graph = helper.make_graph(nodes, "embedding", [ids], [y], [table])
    folder = tmp_path / "embedding"
    (folder / "test_data_set_0").mkdir(parents=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
              folder / "model.onnx")  # fmt: skip
    stored = {"input_0.pb": np.array([[1, 2, 100]]), "output_0.pb": np.ones((1, 3, 4), np.float32)}
    for name, array in stored.items():
        tensor = numpy_helper.from_array(array, "ids" if name.startswith("input") else "y")
        onnx.save_tensor(tensor, str(folder / "test_data_set_0" / name))
    assert main(["validate", str(folder), "--quiet"]) == 1
    line = one_error_line(capfd.readouterr().err, "validate")
    assert "model.onnx" in line and "idx=100" in line, line


def test_an_interrupt_the_exporter_wrapped_is_an_interrupt_not_an_export_failure(
    tmp_path, monkeypatch, capsys
):
    """torch.export catches the Interrupted raised by the SIGINT handler and raises its own
    error ("Failed to export the model with torch.export"): a Ctrl-C is not a broken model."""
    import signal

    from onnxconv import export as export_module
    from onnxconv.errors import Interrupted
    from onnxconv.export_onnx import exporter_failure

    def wrapped(*args, **kwargs):
        try:
            raise Interrupted(signal.SIGINT)
        except Interrupted as interrupt:
            raise RuntimeError("Failed to export the model with torch.export.") from interrupt

    with pytest.raises(Interrupted):
        try:
            wrapped()
        except RuntimeError as error:
            exporter_failure("standard", "dynamo", error)
    monkeypatch.setattr(export_module, "to_onnx", wrapped)
    argv = ["export", "--variant", "standard", "--out", str(tmp_path / "g"), "--quiet"]
    assert main(argv) == 128 + signal.SIGINT
    err = capsys.readouterr().err
    assert "interrupted by SIGINT" in err and "exporter failed" not in err
    assert not (tmp_path / "g" / "standard").exists()


def test_a_ctrl_c_while_torch_is_still_importing_is_one_line(tmp_path):
    """The handlers go in before the parser is built (which imports torch, a second or more).
    Here building the parser is held for a minute, so the signal lands inside it on any host."""
    import signal
    import subprocess
    import sys
    import time

    started = tmp_path / "started"
    script = (
        "import pathlib, sys, time\n"
        "import onnxconv.cli as cli\n"
        "build = cli.build_parser\n"
        "def slow():\n"
        f"    pathlib.Path({str(started)!r}).touch()\n"
        "    time.sleep(60)\n"
        "    return build()\n"
        "cli.build_parser = slow\n"
        "sys.exit(cli.main(['list']))\n"
    )
    run = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 128 + signal.SIGINT, err
    assert err.strip() == "onnxconv: interrupted by SIGINT; nothing was left half-written"


def test_bench_reads_a_folders_stored_input_as_validate_does(tmp_path, capsys):
    """Garbage, empty or float64 input_0.pb: one line naming the file, exit 2, as validate."""
    import numpy as np
    from onnx import numpy_helper

    folder = tmp_path / "grouped"
    shutil.copytree(ROOT / "graphs" / "grouped", folder)
    stored = folder / "test_data_set_0" / "input_0.pb"
    array = numpy_helper.to_array(onnx.load_tensor(str(stored)))
    wide = numpy_helper.from_array(array.astype(np.float64), "input").SerializeToString()
    argv = ["bench", str(folder), "--rounds", "1", "--no-roofs", "--quiet"]
    for content, says in (
        (b"\x08\xff\xff", "not a TensorProto file"),
        (b"", "not a TensorProto"),
        (wide, "holds float64, the graph's input"),
    ):
        stored.write_bytes(content)
        assert main([*argv, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(stored) in err and says in err, err
        assert not (tmp_path / "out").exists()


def _broken_manifest(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "g"
    shutil.copytree(ROOT / "graphs" / "grouped", folder / "grouped")
    manifest = json.loads((ROOT / "graphs" / "manifest.json").read_text())
    manifest["graphs"] = {"grouped": manifest["graphs"]["grouped"]}
    edit(manifest["graphs"]["grouped"])
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda e: [e.pop(k) for k in ("config", "inputs")], "has no config, inputs"),
        (lambda e: e.update(config="height=16"), "config is str, not dict"),
        (lambda e: e.update(opset="eighteen"), "opset is str, not int"),
        (lambda e: e.update(inputs=[3]), "inputs holds 3"),
        (lambda e: e["config"].update(height=-3), "height=-3 must be a positive integer"),
    ],
)
def test_a_manifest_entry_of_the_wrong_shape_is_one_line_everywhere(tmp_path, capsys, edit, says):
    folder = _broken_manifest(tmp_path, edit)
    for argv in (
        ["validate", "--graphs", str(folder), "--opt-level", "all", "--precision", "fp32"],
        ["validate", str(folder / "grouped"), "--opt-level", "all", "--precision", "fp32"],
        ["tune", "--graphs", str(folder), "grouped", "--out", str(tmp_path / "t")],
        ["detect", "--graphs", str(folder), "--json", str(tmp_path / "d.json")],
    ):
        assert main([*argv, "--quiet"]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "manifest.json: graph 'grouped'" in err, err
        assert says in err, err
    assert not (tmp_path / "t").exists()
    # export only adds and replaces entries: re-exporting the graph mends its entry
    argv = ["export", "--variant", "grouped", "--out", str(folder), "--quiet"]
    assert main(argv) == 0
    assert main(["validate", "--graphs", str(folder), "--opt-level", "all", "--quiet"]) == 0


def test_a_manifest_that_is_a_folder_is_one_line(tmp_path, capsys):
    folder = tmp_path / "g"
    shutil.copytree(ROOT / "graphs" / "grouped", folder / "grouped")
    (folder / "manifest.json").mkdir()
    for argv in (["validate", "--graphs", str(folder)], ["export", "--out", str(folder)]):
        argv += ["--variant", "channel_shuffle"] if argv[0] == "export" else []
        assert main([*argv, "--quiet"]) == 2
        assert "manifest.json: not a readable onnxconv manifest" in capsys.readouterr().err


def test_a_misspelt_variant_in_the_manifest_is_said_not_silently_dropped(tmp_path):
    folder = _broken_manifest(tmp_path, lambda e: e.update(variant="grouped_xyz"))
    report = tmp_path / "v.json"
    argv = ["validate", str(folder / "grouped"), "--opt-level", "all", "--precision", "fp32"]
    assert main([*argv, "--quiet", "--json", str(report)]) == 0  # the stored outputs decide
    (subject,) = json.loads(report.read_text())["subjects"]
    assert any(
        "names variant 'grouped_xyz', which this zoo does not have" in n for n in subject["notes"]
    )


def test_every_json_report_writes_a_non_finite_metric_as_null():
    """A graph whose output is NaN (Conv -> Sqrt) gave bench an abs_sum of NaN and validate's
    int8 cell an SQNR of NaN: both JSON reports ended in a traceback, nothing written."""
    from onnxconv.report import json_text

    data = {"abs_sum": float("nan"), "cells": [{"sqnr_db": float("-inf"), "n": 3}], "t": (1.5,)}
    assert json.loads(json_text(data)) == {
        "abs_sum": None,
        "cells": [{"sqnr_db": None, "n": 3}],
        "t": [1.5],
    }
    assert json.loads(json_text({"x": np.float64("inf")})) == {"x": None}


def test_a_cxx_source_location_does_not_fill_the_one_line():
    """ONNX Runtime's load errors begin with the C++ file, line and the whole signature of the
    function that failed; the reason came after 300 characters and was cut."""
    from onnxconv.errors import one_line

    said = (
        "[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:/onnxruntime_src/"
        "onnxruntime/core/graph/model.cc:256 onnxruntime::Model::Model(onnx::ModelProto&&, "
        "const onnxruntime::PathString&, const onnxruntime::ModelOptions&) Unsupported model "
        "IR version: 99, max supported IR version: 14"
    )
    assert one_line(said) == (
        "[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:Unsupported model IR "
        "version: 99, max supported IR version: 14"
    )


def test_a_library_error_caused_by_the_interrupt_is_the_interrupt(monkeypatch, capsys):
    """A signal while onnxruntime's extension loads came out as ``ImportError: initialization
    failed`` (pybind11 wraps whatever its init raised), a traceback and exit 1."""
    import signal

    from onnxconv.cli import export_cmds
    from onnxconv.errors import Interrupted

    def loading(args):
        try:
            raise Interrupted(signal.SIGTERM)
        except Interrupted as interrupt:
            raise ImportError("initialization failed") from interrupt

    monkeypatch.setattr(export_cmds, "cmd_list", loading)
    assert main(["list"]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip() == (
        "onnxconv list: interrupted by SIGTERM; nothing was left half-written"
    )


def test_a_full_disk_is_one_line_naming_the_file(monkeypatch, capsys):
    import errno

    from onnxconv import report

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(report, "write_bytes", full)
    argv = ["validate", str(ROOT / "graphs" / "channel_shuffle"), "--precision", "fp32"]
    assert main([*argv, "--opt-level", "all", "--quiet", "--json", "r.json"]) == 2
    line = one_error_line(capsys.readouterr().err, "validate")
    assert line.endswith("r.json: cannot write there (No space left on device)"), line


def test_tune_refuses_a_plot_path_that_is_a_folder_before_it_tunes(tmp_path, capsys):
    (tmp_path / "r.png").mkdir()
    argv = ["tune", str(ROOT / "graphs" / "channel_shuffle"), "--out", str(tmp_path / "t")]
    assert main([*argv, "--markdown", str(tmp_path / "r.md"), "--quiet"]) == 2
    assert "r.png: is a folder; name a file to write" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_the_command_modules_load_after_the_signals_are_taken():
    """Importing them took a tenth of a second before main() could catch a Ctrl-C."""
    import subprocess

    code = "import sys, onnxconv.cli; print(sorted(m for m in sys.modules if '_cmd' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_finished_program_ignores_a_late_signal(monkeypatch, capsys):
    """Once the work is written, a signal during Python's shutdown made a finished export
    exit 130 with no line; as the program (argv None) main leaves the signals ignored."""
    import signal

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(sys, "argv", ["onnxconv", "list"])
    try:
        assert main() == 0
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    assert main(["list"]) == 0  # called with its arguments, it gives the caller's back
    assert signal.getsignal(signal.SIGINT) is before[signal.SIGINT]


def test_a_killed_writers_temporary_file_goes_with_the_next_write(tmp_path):
    """A SIGKILL inside write_bytes left ``.r.json.XXXX.tmp`` beside the report for good; the
    pid in its name now lets the next writer of that folder remove it, and only if that process
    is gone."""
    from onnxconv.report import write_files

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = tmp_path / f".r.json.{gone.stdout.strip()}-abc123.tmp"
    live = tmp_path / f".r.json.{os.getpid()}-def456.tmp"
    for leftover in (dead, live):
        leftover.write_text("{half")
    write_files({tmp_path / "r.json": "{}\n"})
    assert (tmp_path / "r.json").read_text() == "{}\n"
    assert not dead.exists() and live.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") and p != live]


def test_a_killed_runs_work_folder_goes_with_the_next_run(tmp_path, monkeypatch):
    """A SIGKILL left bench's and tune's work folders in $TMPDIR for good; their names now hold
    the run's pid, and the next run removes those whose process is gone (only those)."""
    from onnxconv.locking import work_folder

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = tmp_path / f"onnxconv-bench-{gone.stdout.strip()}-abc"
    live = tmp_path / f"onnxconv-tune-{os.getpid()}-def"
    other = tmp_path / "onnxconv-export-xyz"  # not one of ours by name: left alone
    for folder in (dead, live, other):
        (folder / "worker").mkdir(parents=True)
    with work_folder("tune") as work:
        assert work.parent == tmp_path and work.name.startswith(f"onnxconv-tune-{os.getpid()}-")
    assert not dead.exists() and live.exists() and other.exists() and not work.exists()


def test_test_sets_go_in_number_order_and_stray_files_are_left_alone(graphs, tmp_path):
    """test_data_set_10 came before test_data_set_2, and a stray input_a.pb was a traceback
    (int('a'))."""
    from onnxconv import validate

    folder = copy_graph(graphs, tmp_path)
    first = folder / "test_data_set_0"
    shutil.copy(first / "input_0.pb", first / "input_a.pb")
    for n in (10, 2):
        shutil.copytree(first, folder / f"test_data_set_{n}")
    subject = validate.load_subject(str(folder))
    assert [s.label for s in subject.test_sets] == [
        "test_data_set_0",
        "test_data_set_2",
        "test_data_set_10",
    ]
