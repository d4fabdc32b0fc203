"""ONNX Runtime sessions per target, with proof of which execution provider (EP) ran.

A :class:`Target` names where and how a model runs: ``ep`` (``cpu``, ``cuda`` or any other EP
ONNX Runtime knows, by short name), ``opt_level`` (``disabled``, ``basic``, ``extended``,
``all``) and ``precision`` (:data:`onnxconv.precisions.NAMES`). Its ``id`` reads ``cpu/all/fp32``.

EP truth (what ONNX Runtime 1.32 actually does, checked on the CPU build)
-------------------------------------------------------------------------
- Asking for an EP the build does not include (``providers=["CUDAExecutionProvider"]`` on the
  CPU-only ``onnxruntime`` wheel) only *warns* and silently builds a CPU session. Listing an EP
  proves nothing; :func:`make_session` therefore checks availability first and afterwards that
  ``session.get_providers()[0]`` is the requested EP.
- If the EP is listed but cannot be created (``onnxruntime-gpu`` without the CUDA/cuDNN
  libraries, or no GPU), ORT only *logs* the load error and again falls back to CPU. The
  Python wrapper additionally retries with ``["CPUExecutionProvider"]`` after an EP error and
  prints to stdout; we pass ``enable_fallback=0`` so the original error is raised instead.
- ``session.disable_cpu_ep_fallback = "1"`` makes session creation fail when any node would be
  assigned to the CPU EP: "This session contains graph nodes that are assigned to the default
  CPU EP, but fallback to CPU EP has been explicitly disabled by the user."
- With that option set, the CPU EP must **not** be listed in ``providers``: ORT refuses with
  INVALID_ARGUMENT "Conflicting session configuration: explicitly added the CPU EP to the
  session, but also disabled fallback to the CPU EP". So a strict target uses
  ``providers=[ep]`` only (ORT adds CPU implicitly, and the option forbids it from receiving
  nodes). For ``cpu`` itself the option cannot be used at all.
- Consequence: on CUDA, ORT deliberately places shape-computing subgraphs (``Shape`` ->
  ``Gather`` -> ``Concat`` feeding ``Reshape``) on CPU; a strict session then fails. Such a model
  is reported as :class:`EpUnavailable` ("cannot run every node"), never as passing on CUDA.
  ``make_session(..., allow_cpu_fallback=True)`` builds ``[ep, CPU]`` without the option; then
  :func:`node_placement` on the profile says which nodes ran where.
- ``get_providers()`` alone is not proof that anything ran on the EP: with CPU listed, the CPU
  build's ``AzureExecutionProvider`` is reported first although it takes no Conv/Relu node at
  all; only the profile shows every node on CPU. Strict sessions (the default) rule this out.

CUDA provider options (defaults, override with ``cuda_options``)
-----------------------------------------------------------------
- ``use_tf32 = "0"``: TF32 keeps a 10-bit mantissa; with it on, fp32 convs on Ampere+ differ from
  the fp32 reference by ~1e-3 relative, which would hide real fp32 defects.
- ``cudnn_conv_algo_search = "EXHAUSTIVE"``: ORT's own default. cuDNN benchmarks every
  algorithm once per shape (slower first run) and the fastest is then used for every run, so
  parity checks the same kernels the benchmark times. ``"HEURISTIC"`` starts faster.
- ``device_id = "0"``.

Precision
---------
A session runs the graph it is given: ``target.precision`` names what that graph *is*, and
:func:`onnxconv.precisions.deploy` makes it (fp16 by a converter, int8 by a quantizer). So that
no fp32 graph is ever reported as an fp16 or int8 deployment, :func:`make_session` checks the
precision ``deploy`` stamped into the model against the target's. ``fp32`` means the graph as
given: a graph that is float16 already (a user's, or a mutant) runs there as it is.

Intermediate tensors
--------------------
:func:`onnxconv.divergence.with_all_outputs` exposes every node output as a graph output. ORT
may fuse nodes away at opt levels above ``disabled`` (e.g. Conv+Relu -> FusedConv); a tensor
that is a graph output must
be materialised, so exposing outputs *prevents* those fusions. ``first_divergence`` therefore
localises defects of the unfused computation; a defect that lives only in a fused kernel shows
up as a mismatch of the final outputs without a divergent intermediate.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence, Union

import numpy as np
import onnx
import onnxruntime as ort
import onnxruntime.capi.onnxruntime_pybind11_state as _ort_state
from onnx import TensorProto, helper

from onnxconv import precisions
from onnxconv.bench.stats import node_kernel_events
from onnxconv.errors import CheckFailed, UserInputError
from onnxconv.errors import one_line as _one_line

OPT_LEVELS: dict[str, ort.GraphOptimizationLevel] = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

DEFAULT_CUDA_OPTIONS: dict[str, str] = {
    "device_id": "0",
    "cudnn_conv_algo_search": "EXHAUSTIVE",
    "use_tf32": "0",
}

ModelSource = Union[bytes, str, os.PathLike, onnx.ModelProto]

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
        raise UserInputError(
            f"unknown execution provider {ep!r}; ONNX Runtime knows: {', '.join(sorted(by_short))}"
        )
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


@dataclass(frozen=True)
class Target:
    """Where and how a session runs; ``id`` is ``ep/opt_level/precision``."""

    ep: str = "cpu"
    opt_level: str = "all"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ep", short_name(provider_name(self.ep)))
        if self.opt_level not in OPT_LEVELS:
            raise UserInputError(
                f"unknown optimisation level {self.opt_level!r}; expected one of: "
                f"{', '.join(OPT_LEVELS)}"
            )
        precisions.get(self.precision)  # an unknown name is a UserInputError

    @property
    def id(self) -> str:
        return f"{self.ep}/{self.opt_level}/{self.precision}"

    @property
    def provider(self) -> str:
        return provider_name(self.ep)

    def __str__(self) -> str:
        return self.id


# ---------------------------------------------------------------------------------------------
# availability


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


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
    lines = [_ANSI.sub("", ln).strip() for ln in log.splitlines()]
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
    return _ANSI.sub("", said.getvalue()).strip()


def _not_in_build_reason(provider: str) -> str | None:
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
    missing = _not_in_build_reason(provider)
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


# ---------------------------------------------------------------------------------------------
# sessions


@dataclass(frozen=True)
class TensorSpec:
    """A session input or output as ONNX Runtime declares it."""

    name: str
    shape: tuple[int | str | None, ...] | None
    """Ints for fixed dims, strings for symbolic dims, ``None`` for unnamed ones."""
    onnx_type: str
    """ORT's type string, e.g. ``tensor(float)``."""
    dtype: np.dtype | None
    """numpy dtype for tensor types numpy has; ``None`` otherwise (e.g. bfloat16)."""

    def describe(self) -> str:
        dims = (
            "?"
            if self.shape is None
            else "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"
        )
        return f"{self.dtype if self.dtype is not None else self.onnx_type} {dims}"


_ORT_TYPES: dict[str, np.dtype] = {
    f"tensor({k})": np.dtype(v)
    for k, v in {
        "float": np.float32,
        "float16": np.float16,
        "double": np.float64,
        "int8": np.int8,
        "int16": np.int16,
        "int32": np.int32,
        "int64": np.int64,
        "uint8": np.uint8,
        "uint16": np.uint16,
        "uint32": np.uint32,
        "uint64": np.uint64,
        "bool": np.bool_,
        "string": np.object_,
    }.items()
}


def _spec(arg: Any) -> TensorSpec:
    shape = arg.shape
    if shape is not None:
        shape = tuple(d if isinstance(d, (int, str)) or d is None else None for d in shape)
        shape = tuple(None if isinstance(d, int) and d < 0 else d for d in shape)
    return TensorSpec(
        name=arg.name, shape=shape, onnx_type=arg.type, dtype=_ORT_TYPES.get(arg.type)
    )


@dataclass
class SessionInfo:
    """A live ORT session plus what it was asked for and what ORT says it got."""

    session: ort.InferenceSession
    target: Target
    model_label: str
    """The model file, or ``<in-memory model>``: used in error messages."""
    providers: list[str]
    """``session.get_providers()``; ``providers[0]`` is the requested EP (checked)."""
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    provider_options: dict[str, str] = field(default_factory=dict)
    threads: int | None = None
    cpu_fallback_allowed: bool = False
    profiling: bool = False
    profile_path: Path | None = None

    def end_profiling(self) -> Path:
        """Stop profiling and return the JSON profile path (for :func:`node_placement`)."""
        if not self.profiling:
            raise UserInputError(f"{self.model_label}: session was created without profile=True")
        if self.profile_path is None:
            self.profile_path = Path(self.session.end_profiling())
        return self.profile_path


def load_model_proto(model: ModelSource) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, onnx.ModelProto):
        return model, "<in-memory model>"
    if isinstance(model, (bytes, bytearray)):
        try:
            return onnx.load_from_string(bytes(model)), "<in-memory model>"
        except Exception as exc:
            raise UserInputError(
                f"<in-memory model>: not a valid ONNX model: {_one_line(exc)}"
            ) from exc
    from .graph.index import load_model  # the one loader: one-line errors naming the file

    return load_model(model), str(model)


def _session_source(model: ModelSource, precision: str) -> tuple[bytes | str, str]:
    """What ``ort.InferenceSession`` gets (path or bytes) and a label for messages. For a
    precision other than ``fp32`` (the graph as given) the model must be the deployment it
    names (:func:`onnxconv.precisions.stamp`)."""
    if precision != "fp32" and not isinstance(model, onnx.ModelProto):
        model, _ = load_model_proto(model)
    if isinstance(model, onnx.ModelProto):
        made = precisions.stamp(model)
        if precision != "fp32" and made != precision:
            raise ValueError(
                f"a {precision} session needs the graph precisions.deploy(model, "
                f"{precision!r}) makes; this graph is {made}"
            )
        return model.SerializeToString(), "<in-memory model>"
    if isinstance(model, (bytes, bytearray)):
        return bytes(model), "<in-memory model>"
    path = Path(model)
    if not path.is_file():
        raise UserInputError(f"{path}: no such model file")
    return str(path), str(path)


_INPUT_ERRORS = tuple(
    getattr(_ort_state, n)
    for n in ("InvalidGraph", "InvalidProtobuf", "NoSuchFile", "NoModel")
    if hasattr(_ort_state, n)
)


def make_session(
    model: ModelSource,
    target: Target,
    *,
    threads: int | None = None,
    profile: bool = False,
    profile_prefix: str | os.PathLike | None = None,
    cuda_options: Mapping[str, Any] | None = None,
    allow_cpu_fallback: bool = False,
    session_config: Mapping[str, str] | None = None,
    session_options: Mapping[str, Any] | None = None,
) -> SessionInfo:
    """Build an ORT session for ``target`` and prove it runs on ``target.ep``.

    ``session_config``: session config entries (``{"session.intra_op.allow_spinning": "0"}``);
    ``session_options``: ``SessionOptions`` attributes (``{"enable_cpu_mem_arena": False}``).

    Raises :class:`EpUnavailable` when the EP is not in this build, cannot be created, cannot
    run every node (CPU fallback is disabled unless ``allow_cpu_fallback``), or ORT's own
    provider list does not start with it. ``UserInputError`` for a missing/corrupt model.
    """
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise UserInputError(f"threads must be a positive integer, got {threads!r}")
    provider = target.provider
    if target.ep != "cpu":
        # With CPU fallback allowed the EP need not run the probe by itself, only exist and be
        # ORT's first provider; node_placement() then tells what really ran on it.
        reason = (
            _not_in_build_reason(provider)
            if allow_cpu_fallback
            else ep_unavailable_reason(target.ep)
        )
        if reason is not None:
            raise EpUnavailable(target.ep, reason)

    source, label = _session_source(model, target.precision)

    so = ort.SessionOptions()
    so.graph_optimization_level = OPT_LEVELS[target.opt_level]
    if threads is not None:
        so.intra_op_num_threads = threads
    apply_session_settings(so, session_config, session_options)
    if profile:
        prefix = (
            profile_prefix
            or Path(tempfile.gettempdir()) / f"onnxconv_profile_{target.id.replace('/', '_')}"
        )
        so.enable_profiling = True
        so.profile_file_prefix = str(prefix)

    options: dict[str, str] = {}
    if target.ep == "cpu":
        providers: list[Any] = [provider]
    else:
        if target.ep == "cuda":
            options = dict(DEFAULT_CUDA_OPTIONS)
            options.update({k: str(v) for k, v in (cuda_options or {}).items()})
        if allow_cpu_fallback:
            providers = [(provider, options), "CPUExecutionProvider"]
        else:
            # CPU must not be listed here: ORT rejects the combination (module docstring).
            so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
            providers = [(provider, options)]

    try:
        session = ort.InferenceSession(source, so, providers=providers, enable_fallback=0)
    except _INPUT_ERRORS as exc:
        raise UserInputError(
            f"{label}: ONNX Runtime cannot load the model: {_one_line(exc)}"
        ) from exc
    except Exception as exc:
        msg = _one_line(exc)
        if target.ep != "cpu":
            if "assigned to the default CPU EP" in msg:
                raise EpUnavailable(
                    target.ep,
                    f"{provider} cannot run every node of {label} and CPU fallback is "
                    f"disabled ({msg})",
                ) from exc
            raise EpUnavailable(
                target.ep, f"creating a {provider} session for {label} failed: {msg}"
            ) from exc
        raise CheckFailed(
            f"{label}: ONNX Runtime could not create a session for {target.id}: {msg}"
        ) from exc

    got = session.get_providers()
    if not got or got[0] != provider:
        raise EpUnavailable(
            target.ep,
            f"asked for {provider} but ONNX Runtime runs {label} on {', '.join(got) or 'nothing'}",
        )
    return SessionInfo(
        session=session,
        target=target,
        model_label=label,
        providers=list(got),
        inputs=tuple(_spec(a) for a in session.get_inputs()),
        outputs=tuple(_spec(a) for a in session.get_outputs()),
        provider_options=options,
        threads=threads,
        cpu_fallback_allowed=allow_cpu_fallback and target.ep != "cpu",
        profiling=profile,
    )


def apply_session_settings(
    so: ort.SessionOptions,
    config: Mapping[str, str] | None,
    options: Mapping[str, Any] | None,
) -> None:
    """Config entries and ``SessionOptions`` attributes onto ``so``; an unknown attribute is a
    :class:`UserInputError`."""
    for key, value in (config or {}).items():
        so.add_session_config_entry(str(key), str(value))
    for key, value in (options or {}).items():
        if not hasattr(so, key):
            raise UserInputError(f"SessionOptions has no attribute {key!r}")
        setattr(so, key, value)


def node_placement(session_profile_json_path: str | os.PathLike) -> dict[str, list[str]]:
    """Which EP ran which node, read from ORT's profile: ``{"cpu": [node names...], ...}``.

    Node events (``cat == "Node"``, name ``<node>_kernel_time``) carry ``args.provider``. Names
    are those of the *optimised* graph (fused nodes keep the first node's name), each listed
    once in order of first execution; counts are ``len()`` of each list. Empty if the session
    never ran.
    """
    path = Path(session_profile_json_path)
    try:
        events = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UserInputError(f"{path}: no such profile file") from exc
    except (OSError, ValueError) as exc:
        raise UserInputError(
            f"{path}: not an ONNX Runtime profile (JSON): {_one_line(exc)}"
        ) from exc
    if isinstance(events, dict):  # some tools wrap the list as {"traceEvents": [...]}
        events = events.get("traceEvents", [])
    if not isinstance(events, list):
        raise UserInputError(f"{path}: not an ONNX Runtime profile: expected a list of events")
    placement: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for node, args, _event in node_kernel_events(events):
        prov = args.get("provider")
        if not prov:
            continue
        ep = short_name(prov)
        if (ep, node) in seen:
            continue
        seen.add((ep, node))
        placement.setdefault(ep, []).append(node)
    return placement


def input_specs(
    model: onnx.ModelProto, names: Iterable[str] | None = None
) -> tuple[TensorSpec, ...]:
    """The graph inputs of ``model`` as ORT would declare them, without a session.

    Initializers listed as graph inputs are left out (they are weights, not feeds); ``names``
    keeps only those inputs, in graph order.
    """
    weights = {init.name for init in model.graph.initializer}
    keep = set(names) if names is not None else None
    specs = []
    for vi in model.graph.input:
        if vi.name in weights or (keep is not None and vi.name not in keep):
            continue
        t = vi.type.tensor_type
        onnx_type = f"tensor({TensorProto.DataType.Name(t.elem_type).lower()})"
        shape = None
        if t.HasField("shape"):
            shape = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in t.shape.dim
            )
        specs.append(
            TensorSpec(
                name=vi.name, shape=shape, onnx_type=onnx_type, dtype=_ORT_TYPES.get(onnx_type)
            )
        )
    return tuple(specs)


def check_feeds(
    label: str, specs: Sequence[TensorSpec], feeds: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """``feeds`` against declared inputs: names, numpy arrays, dtypes, fixed dims, and symbolic
    dims bound consistently across inputs. Returns contiguous arrays by name; otherwise one
    :class:`UserInputError` line starting with ``label``."""
    expected = [s.name for s in specs]
    for spec in specs:
        if spec.name not in feeds:
            raise UserInputError(
                f"{label}: missing input {spec.name!r} (expected {spec.describe()}); "
                f"got: {', '.join(map(repr, feeds)) or 'no inputs'}"
            )
    for name in feeds:
        if name not in expected:
            raise UserInputError(
                f"{label}: unexpected input {name!r}; the model's inputs are: "
                f"{', '.join(map(repr, expected))}"
            )
    checked: dict[str, np.ndarray] = {}
    bound: dict[str, tuple[int, str]] = {}
    for spec in specs:
        arr = feeds[spec.name]
        if not isinstance(arr, np.ndarray):
            raise UserInputError(
                f"{label}: input {spec.name!r} must be a numpy array, got {type(arr).__name__}"
            )
        if spec.dtype is not None and arr.dtype != spec.dtype:
            raise UserInputError(
                f"{label}: input {spec.name!r} expected dtype {spec.dtype}, got {arr.dtype}"
            )
        if spec.shape is not None:
            got = tuple(arr.shape)
            bad = len(got) != len(spec.shape)
            for want, have in zip(spec.shape, got):
                if bad:
                    break
                if isinstance(want, int):
                    bad = want != have
                elif isinstance(want, str):
                    if want in bound and bound[want][0] != have:
                        raise UserInputError(
                            f"{label}: input {spec.name!r} dim {want!r} = {have}, but input "
                            f"{bound[want][1]!r} bound it to {bound[want][0]}"
                        )
                    bound.setdefault(want, (have, spec.name))
            if bad:
                raise UserInputError(
                    f"{label}: input {spec.name!r} expected shape "
                    f"{spec.describe().split(' ', 1)[1]}, "
                    f"got {list(got)}"
                )
        checked[spec.name] = np.ascontiguousarray(arr)
    return checked


def run(session_info: SessionInfo, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run once after checking input names, dtypes and shapes; ``{output name: array}``."""
    checked = check_feeds(session_info.model_label, session_info.inputs, feeds)
    names = [s.name for s in session_info.outputs]
    try:
        values = session_info.session.run(names, checked)
    except Exception as exc:
        raise CheckFailed(
            f"{session_info.model_label}: ONNX Runtime run failed on "
            f"{session_info.target.id}: {_one_line(exc)}"
        ) from exc
    return dict(zip(names, values))


__all__ = [
    "DEFAULT_CUDA_OPTIONS",
    "OPT_LEVELS",
    "EpUnavailable",
    "SessionInfo",
    "Target",
    "TensorSpec",
    "apply_session_settings",
    "available_eps",
    "default_eps",
    "ep_unavailable_reason",
    "make_session",
    "node_placement",
    "provider_name",
    "run",
    "short_name",
]
