"""The marker for tests that need an active CUDA execution provider.

They carry ``@pytest.mark.cuda`` and are skipped at collection, with ONNX Runtime's own reason,
where the CUDA EP is not active; where it is (``./scripts/test --gpu`` on a GPU machine) they run.
"""

import pytest

from onnxconv.runtime import ep_unavailable_reason

CUDA_REASON = ep_unavailable_reason("cuda")


def cuda_only(test):
    skip = pytest.mark.skipif(CUDA_REASON is not None, reason=f"CUDA EP not active: {CUDA_REASON}")
    return pytest.mark.cuda(skip(test))


def absent_ep() -> str:
    """An EP this ONNX Runtime knows by name but its build does not offer, on any machine: the
    unavailable path is tested with it, whether or not CUDA happens to be active here."""
    import onnxruntime as ort

    from onnxconv.runtime import short_name

    offered = set(ort.get_available_providers())
    return next(
        short_name(p)
        for p in ort.get_all_providers()
        if p not in offered and short_name(p) not in ("cuda", "tensorrt")
    )
