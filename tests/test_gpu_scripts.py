"""The scripts a lent GPU machine runs (scripts/gpu_check, scripts/gpu_lean_tree), checked here on
the CPU so that a scarce GPU lease is not spent finding a bug in them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check(tmp_path: Path, *steps: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "scripts" / "gpu_check"), *steps],
        env={
            **os.environ,
            "PYTHON": sys.executable,
            "OUT": str(tmp_path / "out"),
            "GPU_RESULTS": str(tmp_path / "results"),
            "GPU_STASH": str(tmp_path / "stash"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_tune_step_exports_at_a_fixed_batch_tunes_within_its_budget_and_packs_reports(
    tmp_path,
):
    run = _gpu_check(
        tmp_path,
        "tune",
        TUNE_EP="cpu",
        TUNE_RUNS="channel_shuffle:2:shuffle_gather:120",
        TUNE_ARGS="--threads 1 --rounds 1 --blocks 1 --calls 3 --retries 0",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert (
        "tune channel_shuffle batch 2 on cpu (rewrites shuffle_gather, budget 120 s)" in run.stdout
    )
    manifest = json.loads((tmp_path / "results/tune-graphs/b2/manifest.json").read_text())
    assert manifest["graphs"]["channel_shuffle"]["config"]["batch"] == 2
    with tarfile.open(tmp_path / "out" / "gpu-results.tgz") as tar:
        names = tar.getnames()
        report = json.load(tar.extractfile("./tune-cpu/channel_shuffle-b2.json"))
    assert "./tune-cpu/channel_shuffle-b2.md" in names and "./tune-cpu/README.md" in names
    assert not [n for n in names if n.endswith((".onnx", ".npy", ".pb")) or "tune-graphs" in n]
    assert report["batch"] == 2 and report["options"]["time_budget_s"] == 120
    assert report["options"]["proof_batches"] is None  # a fixed batch: proven at 2 alone
    assert any(c["name"].startswith("shuffle_gather") for c in report["candidates"])


def test_an_unknown_step_is_refused(tmp_path):
    run = _gpu_check(tmp_path, "frobnicate")
    assert run.returncode == 2 and "unknown step frobnicate" in run.stderr


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(),
    reason="needs git and a git checkout of onnxconv",
)
def test_the_lean_tree_leaves_reports_and_graphs_home_and_restores_them(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    lean = clone / "scripts" / "gpu_lean_tree"

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=clone, check=True, capture_output=True, text=True
        ).stdout

    tracked = git("ls-files", "reports", "graphs").split()
    assert tracked
    on = subprocess.run([str(lean), "on"], cwd=clone, capture_output=True, text=True)
    assert on.returncode == 0 and "the tree that travels:" in on.stderr
    assert git("ls-files", "reports", "graphs") == ""
    assert all((clone / path).is_file() for path in tracked)  # still on disk
    assert git("ls-files", "--others", "--exclude-standard", "reports", "graphs") == ""
    off = subprocess.run([str(lean), "off"], cwd=clone, capture_output=True, text=True)
    assert off.returncode == 0
    assert git("ls-files", "reports", "graphs").split() == tracked
    assert git("status", "--porcelain") == ""


def _wheel(folder: Path, name: str) -> Path:
    """A minimal pure-Python wheel: one module holding ``VALUE = 1``."""
    dist = f"{name}-0.1.dist-info"
    files = {
        f"{name}.py": "VALUE = 1\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for member, text in files.items():
            whl.writestr(member, text)
    return path


def test_install_puts_the_carried_requirement_wheels_in_before_onnxruntime_gpu(tmp_path):
    # part-00 carries onnxconv's pure-Python requirements that the device image lacks (the fp16
    # cells of the CUDA tests failed on a missing onnxconverter-common on an H100, 2026-11-27)
    _wheel(tmp_path / "stash", "onnxconv_probe_requirement")
    site = tmp_path / "site"
    run = _gpu_check(tmp_path, "install", PIP_TARGET=str(site))
    assert "installed onnxconv_probe_requirement-0.1-py3-none-any.whl" in run.stdout, run.stdout
    assert (site / "onnxconv_probe_requirement.py").read_text() == "VALUE = 1\n"
    # no onnxruntime-gpu parts were carried: the step says so and fails
    assert "install: 0 of 0 parts" in run.stdout and run.returncode != 0


def test_install_without_the_requirement_wheels_says_which_part_carries_them(tmp_path):
    run = _gpu_check(tmp_path, "install")
    assert run.returncode != 0
    assert "no wheels of onnxconv's requirements here (part-00)" in run.stdout
