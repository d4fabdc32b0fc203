"""What a bench run is asked to do: :class:`BenchSettings` (threads, batches, EPs, levels, rounds,
blocks, roofs, ...), completed by :meth:`BenchSettings.resolved`, checked up front by
:meth:`BenchSettings.validate`, and the names it knows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from ..errors import UserInputError, unknown_name
from ..precisions import get as get_precision
from .launch import TORCH_MALLOC_ENV

OPT_LEVELS = ("all", "extended", "basic", "disabled")
EPS = ("cpu", "cuda")
BACKENDS = ("ort", "torch", "torch_compile")
CUDNN_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")


Progress = Callable[[int, int, str], None]
"""``progress(done, total, message)``: called before each worker starts and once at the end."""


def default_eps() -> tuple[str, ...]:
    """``cpu``, plus ``cuda`` where the CUDA EP is active (:func:`runtime.default_eps`)."""
    from ..runtime import default_eps as active_eps

    return tuple(ep for ep in active_eps()[0] if ep in ("cpu", "cuda"))


@dataclass(frozen=True)
class BenchSettings:
    """How a bench run times: every field has its default here. ``eps=None`` means the active
    EPs (:func:`default_eps`), filled in by :meth:`resolved`, which ``run_bench`` applies."""

    threads: int = 1
    batches: tuple[int, ...] = (1,)
    #: A graph with a batch of its own (a fixed batch, a tuned record's batch:
    #: :attr:`onnxconv.bench.sources.Source.own_batch`) is benched at it instead of
    #: ``batches`` (the CLI without ``--batch``).
    own_batches: bool = False
    #: ORT execution providers; None: :func:`default_eps` (an empty tuple is refused).
    eps: tuple[str, ...] | None = None
    opt_levels: tuple[str, ...] = OPT_LEVELS
    #: Deployments timed on ORT (:mod:`onnxconv.precisions`); PyTorch runs fp32.
    precisions: tuple[str, ...] = ("fp32",)
    rounds: int = 2
    blocks: int = 5
    calls: int = 100
    warmup: int = 10
    warmup_s: float = 0.3
    compile: bool = False
    profile: bool = True
    profile_calls: int = 50
    per_node: bool = False
    per_node_calls: int = 30
    #: CUDA EP options over runtime.DEFAULT_CUDA_OPTIONS,
    #: e.g. {"cudnn_conv_algo_search": "DEFAULT"}.
    cuda_options: dict[str, str] = field(default_factory=dict)
    roofs: bool = True
    seed: int = 0
    opset: int = 18
    exporter: str = "dynamo"
    #: The PyTorch workers' malloc environment ({}: glibc's defaults, for an A/B).
    torch_malloc_env: dict[str, str] = field(default_factory=lambda: dict(TORCH_MALLOC_ENV))
    roof_matmul_n: int = 2048
    roof_copy_mb: int = 256
    roof_repeats: int = 5
    timeout_s: float = 600.0

    def resolved(self) -> BenchSettings:
        """These settings as they are run and reported: ``eps=None`` becomes :func:`default_eps`,
        sequences become tuples, mappings fresh dicts, CUDA option values strings."""
        return replace(
            self,
            batches=tuple(self.batches),
            eps=default_eps() if self.eps is None else tuple(self.eps),
            opt_levels=tuple(self.opt_levels),
            precisions=tuple(self.precisions),
            cuda_options={k: str(v) for k, v in self.cuda_options.items()},
            torch_malloc_env=dict(self.torch_malloc_env),
        )

    def validate(self) -> None:
        """Raise :class:`UserInputError` (one line) for a value the run cannot use."""

        def positive(name: str, value: Any) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserInputError(f"{name} must be an integer >= 1, got {value!r}")

        positive("threads", self.threads)
        if not self.batches:
            raise UserInputError("batch list is empty: give at least one batch size, e.g. 1")
        for b in self.batches:
            positive("batch size", b)
        for name in (
            "rounds",
            "blocks",
            "calls",
            "profile_calls",
            "per_node_calls",
            "roof_matmul_n",
            "roof_copy_mb",
            "roof_repeats",
        ):
            positive(name, getattr(self, name))
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise UserInputError(f"warmup must be an integer >= 0, got {self.warmup!r}")
        if self.warmup_s < 0 or self.timeout_s <= 0:
            raise UserInputError("warmup_s must be >= 0 and timeout_s > 0")
        if self.eps is not None and not self.eps:
            raise UserInputError("no execution provider to bench (eps is empty)")
        search = self.cuda_options.get("cudnn_conv_algo_search")
        if search is not None and search not in CUDNN_SEARCH:
            raise UserInputError(
                f"cudnn_conv_algo_search must be one of {', '.join(CUDNN_SEARCH)}, got {search!r}"
            )
        for ep in self.eps or ():
            if ep not in EPS:
                raise unknown_name("execution provider", ep, EPS)
        if not self.opt_levels:
            raise UserInputError("no optimisation level to bench (opt_levels is empty)")
        for level in self.opt_levels:
            if level not in OPT_LEVELS:
                raise unknown_name("optimisation level", level, OPT_LEVELS)
        if not self.precisions:
            raise UserInputError("no precision to bench (precisions is empty)")
        for precision in self.precisions:
            get_precision(precision)  # an unknown name is a UserInputError

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("batches", "eps", "opt_levels", "precisions"):
            d[key] = None if d[key] is None else list(d[key])
        return d
