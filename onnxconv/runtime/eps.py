"""Execution providers: their names, which ones can run here and why not, loading the CUDA
libraries, and hearing what ONNX Runtime's native logger says while probing one."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import os
import sys
import tempfile
from typing import Iterator

import onnxruntime as ort
from onnx import TensorProto, helper

from onnxconv.errors import CheckFailed, strip_colour, unknown_name
from onnxconv.errors import one_line as _one_line

DEFAULT_CUDA_OPTIONS: dict[str, str] = {
    "device_id": "0",
    "cudnn_conv_algo_search": "EXHAUSTIVE",
    "use_tf32": "0",
}

_SUFFIX = "ExecutionProvider"


class EpUnavailable(CheckFailed):
    """The requested EP cannot run the model by itself (not installed, no device, fell back)."""

    def __init__(self, ep: str, reason: str) -> None:
        super().__init__(f"{ep} EP unavailable: {reason}")
        self.ep = ep
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# EP names


def short_name(provider: str) -> str:
    """``"CUDAExecutionProvider"`` -> ``"cuda"``; a short name is returned lower-cased."""
    name = provider[: -len(_SUFFIX)] if provider.endswith(_SUFFIX) else provider
    return name.lower()


def _known_providers() -> list[str]:
    known = list(ort.get_all_providers())
    known += [p for p in ort.get_available_providers() if p not in known]
    return known


def provider_name(ep: str) -> str:
    """``"cuda"`` -> ``"CUDAExecutionProvider"`` (any EP this ONNX Runtime knows by name)."""
    by_short = {short_name(p): p for p in _known_providers()}
    key = short_name(ep)
    if key not in by_short:
        raise unknown_name("execution provider", ep, sorted(by_short))
    return by_short[key]


def available_eps() -> list[str]:
    """Short names of the EPs the installed ONNX Runtime build offers, in its priority order."""
    return [short_name(p) for p in ort.get_available_providers()]


def default_eps() -> tuple[list[str], dict[str, str]]:
    """The EPs of a default matrix, and the ones left out with why.

    In: ``cpu`` and every other compute EP (not ``azure``) that can run a session by itself
    here. Out: ``cuda`` and any compute EP of this build that cannot, each with its reason. An
    EP the user names is required instead (see the commands).
    """
    candidates = ["cpu", "cuda"] + [
        ep for ep in available_eps() if ep not in ("cpu", "cuda", "azure")
    ]
    active, inactive = [], {}
    for ep in candidates:
        reason = ep_unavailable_reason(ep)
        if reason is None:
            active.append(ep)
        else:
            inactive[ep] = reason
    return active, inactive


# ---------------------------------------------------------------------------------------------
# availability


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[list[str]]:
    """Capture file descriptor 2 (ORT's C++ logger writes there, not to ``sys.stderr``)."""
    box: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box.append(tmp.read().decode("utf-8", errors="replace"))


def _installed_ort_package() -> str:
    for dist in ("onnxruntime-gpu", "onnxruntime", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return f"onnxruntime {ort.__version__}"


def _probe_model() -> bytes:
    """One Relu on float[1, 4]: every compute EP implements it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="probe_relu")], "probe", [x], [y]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def _log_reason(log: str) -> str | None:
    """The most telling error/warning line ORT logged while creating an EP, or ``None``."""
    lines = [strip_colour(ln).strip() for ln in log.splitlines()]
    lines = [ln for ln in lines if "[E:" in ln or "[W:" in ln]
    for key in ("Failed to load", "cannot open shared object", "CUDA failure", "Failed to create"):
        for ln in lines:
            at = ln.find(key)
            if at >= 0:
                return _one_line(ln[at:])
    for ln in lines:
        if "[E:" in ln:
            return _one_line(ln.split("] ", 1)[-1])
    return None


#: ORT's default-logger severity as last set through :func:`set_ort_log_severity` (2: warnings,
#: ORT's own default).
_log_severity = 2


def set_ort_log_severity(severity: int) -> None:
    """Set ONNX Runtime's default logger (0 verbose, 1 info, 2 warning, 3 error, 4 fatal).

    The CLI uses 3: ORT 1.31 warns once per CUDA session ("No registered plugin EP device
    found"). :func:`ep_unavailable_reason` still hears warnings while it probes an EP, since
    ORT's warning is often the only line that says why an EP could not be created.
    """
    global _log_severity
    _log_severity = severity
    ort.set_default_logger_severity(severity)


@functools.lru_cache(maxsize=None)
def preload_cuda_libraries() -> str:
    """Load the CUDA and cuDNN libraries the GPU build needs, once per process; what ORT said.

    ``onnxruntime-gpu`` does not link its CUDA EP against a path: the libraries come from the
    ``nvidia-*`` wheels of the ``[cuda,cudnn]`` extras (or PyTorch's), which the loader does not
    search by itself. ``onnxruntime.preload_dlls()`` loads them from those wheels; without it the
    CUDA EP fails to load unless ``LD_LIBRARY_PATH`` or an earlier ``import torch`` provides them.
    A no-op (empty string) on builds without the CUDA EP.
    """
    if "CUDAExecutionProvider" not in ort.get_available_providers() or not hasattr(
        ort, "preload_dlls"
    ):
        return ""
    said = io.StringIO()
    with contextlib.redirect_stdout(said):  # ORT prints its warnings instead of raising
        try:
            ort.preload_dlls()
        except Exception as exc:  # a failed preload shows up as the EP's unavailable reason
            print(_one_line(exc))
    return strip_colour(said.getvalue()).strip()


def not_in_build_reason(provider: str) -> str | None:
    """Why the installed ONNX Runtime build lacks ``provider`` (one line), or ``None``."""
    available = ort.get_available_providers()
    if provider in available:
        return None
    offers = ", ".join(short_name(p) for p in available)
    if short_name(provider) in ("cuda", "tensorrt"):
        return (
            f"onnxruntime-gpu is not installed (the installed {_installed_ort_package()} "
            f"build offers: {offers})"
        )
    return (
        f"the installed {_installed_ort_package()} build does not include {provider} "
        f"(it offers: {offers})"
    )


@functools.lru_cache(maxsize=None)
def ep_unavailable_reason(ep: str) -> str | None:
    """``None`` when ``ep`` can run a session by itself here; otherwise why not (one line).

    Cached per EP for the life of the process (a probe session is built once).
    """
    provider = provider_name(ep)
    short = short_name(provider)
    if short == "cpu":
        return None
    missing = not_in_build_reason(provider)
    if missing is not None:
        return missing
    preload_cuda_libraries()

    options: dict[str, str] = dict(DEFAULT_CUDA_OPTIONS) if short == "cuda" else {}
    so = ort.SessionOptions()
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    error: str | None = None
    providers: list[str] = []
    ort.set_default_logger_severity(min(_log_severity, 2))
    with _native_stderr_captured() as log:
        try:
            sess = ort.InferenceSession(
                _probe_model(), so, providers=[(provider, options)], enable_fallback=0
            )
            providers = sess.get_providers()
        except Exception as exc:  # ORT raises its own pybind exception types
            error = _one_line(exc)
        finally:
            ort.set_default_logger_severity(_log_severity)
    logged = _log_reason(log[0] if log else "")
    if error is not None:
        detail = logged or error
        return f"{provider} is listed but a session on it could not be created: {detail}"
    if not providers or providers[0] != provider:
        detail = f"; ORT logged: {logged}" if logged else ""
        return (
            f"{provider} is listed but the probe session fell back to "
            f"{', '.join(providers) or 'nothing'}{detail}"
        )
    return None
