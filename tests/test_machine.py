"""The machine record every report carries: CPU facts and the GPUs nvidia-smi lists."""

from __future__ import annotations

import os
import stat

from onnxconv import machine


def _fake_nvidia_smi(tmp_path, body: str) -> str:
    path = tmp_path / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_gpu_info_parses_nvidia_smi_csv(tmp_path):
    smi = _fake_nvidia_smi(
        tmp_path,
        'echo "NVIDIA H100 80GB HBM3, 580.159.04, 81559 MiB, 9.0"\n'
        'echo "NVIDIA L4, 580.159.04, 23034 MiB, 8.9"\n',
    )
    gpus = machine.gpu_info(smi)
    assert gpus == [
        {
            "name": "NVIDIA H100 80GB HBM3",
            "driver": "580.159.04",
            "memory": "81559 MiB",
            "compute_capability": "9.0",
        },
        {
            "name": "NVIDIA L4",
            "driver": "580.159.04",
            "memory": "23034 MiB",
            "compute_capability": "8.9",
        },
    ]
    text = machine.describe_gpus({"gpus": gpus})
    assert text.startswith("NVIDIA H100 80GB HBM3 (driver 580.159.04, 81559 MiB, compute 9.0); ")


def test_no_gpu_when_nvidia_smi_is_missing_or_fails(tmp_path):
    assert machine.gpu_info(str(tmp_path / "no-such-nvidia-smi")) == []
    failing = _fake_nvidia_smi(tmp_path, 'echo "NVIDIA-SMI has failed" >&2; exit 9\n')
    assert machine.gpu_info(failing) == []
    assert machine.describe_gpus({"gpus": []}) is None


def test_machine_info_records_cpu_and_gpus():
    info = machine.machine_info()
    assert info["logical_cores"] == os.cpu_count() and info["usable_cores"] >= 1
    assert isinstance(info["gpus"], list)
    assert set(info["isa"]) == set(machine.ISA_FLAGS)
