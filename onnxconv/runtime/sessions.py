"""ONNX Runtime sessions: the :class:`Target` a model runs on, :func:`make_session` (which proves
that ORT runs it on the target's EP) and the session settings it applies."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

import onnx
import onnxruntime as ort
import onnxruntime.capi.onnxruntime_pybind11_state as _ort_state

from onnxconv import precisions
from onnxconv.errors import CheckFailed, UserInputError, unknown_name
from onnxconv.errors import one_line as _one_line

from .eps import (
    DEFAULT_CUDA_OPTIONS,
    EpUnavailable,
    ep_unavailable_reason,
    not_in_build_reason,
    provider_name,
    short_name,
)
from .inputs import TensorSpec, ort_tensor_spec

OPT_LEVELS: dict[str, ort.GraphOptimizationLevel] = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

ModelSource = Union[bytes, str, os.PathLike, onnx.ModelProto]


def check_opt_level(level: str) -> None:
    """A :class:`UserInputError` for a name that is not one of :data:`OPT_LEVELS`."""
    if level not in OPT_LEVELS:
        raise unknown_name("optimisation level", level, OPT_LEVELS)


@dataclass(frozen=True)
class Target:
    """Where and how a session runs; ``id`` is ``ep/opt_level/precision``."""

    ep: str = "cpu"
    opt_level: str = "all"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ep", short_name(provider_name(self.ep)))
        check_opt_level(self.opt_level)
        precisions.get(self.precision)  # an unknown name is a UserInputError

    @property
    def id(self) -> str:
        return f"{self.ep}/{self.opt_level}/{self.precision}"

    @property
    def provider(self) -> str:
        return provider_name(self.ep)

    def __str__(self) -> str:
        return self.id


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
    from ..graph.index import load_model  # the one loader: one-line errors naming the file

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
    label: str | None = None,
) -> SessionInfo:
    """Build an ORT session for ``target`` and prove it runs on ``target.ep``.

    ``label`` names the model in messages (default: its path, or ``<in-memory model>``).

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
            not_in_build_reason(provider)
            if allow_cpu_fallback
            else ep_unavailable_reason(target.ep)
        )
        if reason is not None:
            raise EpUnavailable(target.ep, reason)

    source, default_label = _session_source(model, target.precision)
    label = label or default_label

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
        # a model that does not load would also log "Could not write a profile" from the
        # profiler on the way out: the exception below already says why, in one line
        so.log_severity_level = 4

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
            # CPU must not be listed here: ORT rejects the combination (see the docstring of
            # onnxconv.runtime).
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
        if "This is an invalid model" in msg:  # ORT's own checks (e.g. two nodes of one name)
            raise UserInputError(f"{label}: ONNX Runtime refuses the model: {msg}") from exc
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
        inputs=tuple(ort_tensor_spec(a) for a in session.get_inputs()),
        outputs=tuple(ort_tensor_spec(a) for a in session.get_outputs()),
        provider_options=options,
        threads=threads,
        cpu_fallback_allowed=allow_cpu_fallback and target.ep != "cpu",
        profiling=profile,
    )


def check_loads_from_file(path: str | os.PathLike) -> None:
    """ORT must load the model at ``path`` from its file, the way it is deployed: a model with
    external data is otherwise run from memory with that data read in, which ORT accepts where
    its own loader does not (a Reshape's shape kept outside the file). ``UserInputError``
    naming the file and ORT's reason otherwise, also where ORT's own checks refuse a model
    onnx accepts (two nodes of one name)."""
    model = onnx.load(str(path), load_external_data=False)
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    try:
        make_session(str(path), Target("cpu", "disabled"))
    except UserInputError as exc:
        if not external:
            raise  # ORT's own checks refuse it: the user's input error (exit 2)
        _external_data_refused(path, exc)
    except CheckFailed as exc:
        if external:
            _external_data_refused(path, exc)
        # else one the CPU EP cannot run (a kernel it lacks): each target's session says so


def _external_data_refused(path: str | os.PathLike, exc: Exception) -> None:
    reason = _one_line(exc.__cause__ or exc).split(" failed:", 1)[-1].strip()
    hint = ""
    if "external tensors" in reason:
        hint = "; keep the tensors a node reads as shapes inside the model file"
    raise UserInputError(
        f"{path}: ONNX Runtime cannot load the model from its file, with its external data "
        f"({reason}){hint}"
    ) from exc


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
