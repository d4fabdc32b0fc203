"""What a tune run is asked to do (:class:`TuneOptions`), checked before anything runs, and the
batch it tunes at."""

from __future__ import annotations

from dataclasses import dataclass

from onnxconv import precisions as precisions_module
from onnxconv import validate
from onnxconv.errors import UserInputError
from onnxconv.quant_metrics import Bound

from .rewrites import REWRITES
from .timing import Method


@dataclass(frozen=True)
class TuneOptions:
    ep: str = "cpu"
    batch: int | None = None
    rewrites: tuple[str, ...] = tuple(REWRITES)
    search_settings: bool = True
    profile: bool = True
    method: Method = Method()
    precisions: tuple[str, ...] = ()
    """Lower precisions to try (:func:`check_precisions`); only with ``budget``."""
    budget: dict[str, Bound] | None = None
    """The accuracy budget (:func:`onnxconv.quant_metrics.parse_budget`)."""
    calibration: str = "minmax"
    explain: bool = False
    """Analyse what bounds the winner (:mod:`.bounds`) even when it beats PyTorch eager (it is
    analysed anyway when it does not)."""
    time_budget_s: float | None = None
    """End within about this many seconds: nothing starts that is projected to end past it
    (:mod:`.deadline`); None: no limit."""

    def __post_init__(self) -> None:
        check_precisions(self.precisions, self.budget)
        if self.time_budget_s is not None and not 0 < self.time_budget_s < float("inf"):
            raise UserInputError(
                f"--time-budget must be a positive number of seconds, got {self.time_budget_s:g}"
            )


#: Precisions tune tries when the user gives a budget and names none.
BUDGET_PRECISIONS = ("fp16", "int8")


def check_precisions(names: tuple[str, ...], budget: dict[str, Bound] | None) -> None:
    """Lower precisions only under a budget; none that changes the graph's interface."""
    for name in names:
        precisions_module.get(name)
        if name == "fp32":
            raise UserInputError("fp32 is what tune starts from; name only lower precisions")
        if name == "fp16-io":
            raise UserInputError(
                "fp16-io changes the graph's inputs and outputs to float16; tune keeps the "
                "interface the user deploys (try fp16: float32 I/O through Casts)"
            )
    if names and budget is None:
        raise UserInputError(
            "tune chooses a lower precision only under an explicit accuracy budget: add "
            "--accuracy-budget (e.g. sqnr_db=30,top1=0.99, or 'default' for validate's int8 "
            "tolerances)"
        )


def batch_of(subject: validate.Subject, requested: int | None) -> int:
    """The batch to tune at: the graph's fixed batch, or ``requested`` (default 1) if dynamic."""
    if requested is not None and requested < 1:
        raise UserInputError(f"batch must be a positive integer, got {requested}")
    fixed = validate.fixed_batch(subject.model)
    if fixed is not None:
        if requested not in (None, fixed):
            raise UserInputError(
                f"{subject.model_path}: the graph's batch is fixed at {fixed}; cannot "
                f"tune batch {requested} (export it with --dynamic-batch)"
            )
        return fixed
    return requested or 1
