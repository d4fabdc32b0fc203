"""The statistic of ``bench-compare`` (see :mod:`onnxconv.bench.compare`): each cell's block
medians by round, the two-level bootstrap interval of the ratio of their medians, the verdict
that interval gives, and whether a run's rounds were contended."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import UserInputError
from .report_notes import CONTENDED_PRESSURE

if TYPE_CHECKING:  # numpy is imported where it is used: the CLI starts faster without it
    import numpy as np

#: Two-sided confidence of the interval that decides.
CONFIDENCE = 0.95
#: Bootstrap draws per cell.
RESAMPLES = 4000
#: Mixed into every cell's seed: change it and every interval is drawn afresh.
SEED = 13
#: A round in which some task waited for a CPU more than this share of the time was contended.
BUSY_PRESSURE = CONTENDED_PRESSURE


def check_max_slowdown(max_slowdown: float) -> None:
    """A threshold must be above 1.0 (1.2: 20% slower); otherwise a :class:`UserInputError`."""
    if not max_slowdown > 1.0:
        raise UserInputError(
            f"max slowdown must be above 1.0 (e.g. 1.2 for 20%), got {max_slowdown}"
        )


def block_medians_by_round(cell: Mapping[str, Any]) -> list[list[float]]:
    """The block medians (ms) of every round that ran, one list per round.

    A report without per-round block medians gives its pooled ``stats.block_medians_ms`` as one
    round; a cell that did not run gives ``[]``.
    """
    rounds = [
        [float(x) for x in r["block_medians_ms"]]
        for r in cell.get("rounds") or []
        if r.get("block_medians_ms")
    ]
    if rounds:
        return rounds
    pooled = (cell.get("stats") or {}).get("block_medians_ms")
    return [[float(x) for x in pooled]] if pooled else []


def median_of_pooled(rounds: Sequence[Sequence[float]]) -> float:
    """The median of the block medians of every round, pooled."""
    import numpy as np

    return float(np.median(np.concatenate([np.asarray(r, dtype=float) for r in rounds])))


def _bootstrap_medians(
    rounds: Sequence[Sequence[float]], resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """``resamples`` medians of the pooled block medians, rounds drawn first, then blocks."""
    import numpy as np

    sizes = np.array([len(r) for r in rounds])
    width = int(sizes.max())
    table = np.full((len(rounds), width), np.nan)
    for i, r in enumerate(rounds):
        table[i, : len(r)] = r
    picked = rng.integers(0, len(rounds), size=(resamples, len(rounds)))
    n = sizes[picked][..., None]  # blocks of each drawn round
    blocks = (rng.random((resamples, len(rounds), width)) * n).astype(int)
    draws = table[picked[..., None], blocks]
    draws[np.arange(width) >= n] = np.nan  # a drawn round contributes as many blocks as it has
    return np.nanmedian(draws.reshape(resamples, -1), axis=1)


def ratio_interval(
    baseline: Sequence[Sequence[float]],
    current: Sequence[Sequence[float]],
    *,
    seed: int,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    """``(ratio, low, high)``: current over baseline median of block medians, and the
    percentile interval of that ratio under the two-level bootstrap (rounds, then blocks)."""
    import numpy as np

    if not baseline or not current:
        raise ValueError("a ratio interval needs block medians on both sides")
    rng = np.random.default_rng(seed)
    ratios = _bootstrap_medians(current, resamples, rng) / _bootstrap_medians(
        baseline, resamples, rng
    )
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return median_of_pooled(current) / median_of_pooled(baseline), float(low), float(high)


def verdict(low: float, high: float, max_slowdown: float) -> str:
    """``slower``, ``faster``, ``same`` or ``unclear`` from the interval (see
    :mod:`onnxconv.bench.compare`)."""
    if low > max_slowdown:
        return "slower"
    if high < 1 / max_slowdown:
        return "faster"
    if low >= 1 / max_slowdown and high <= max_slowdown:
        return "same"
    return "unclear"


def cell_seed(cell_id: str) -> int:
    """The bootstrap seed of a cell: from its id, so a cell's interval is independent of the
    other cells and of their order."""
    return zlib.crc32(cell_id.encode()) ^ SEED


def busy(cell: Mapping[str, Any], cores: int | None) -> str | None:
    """Why a cell's rounds cannot be trusted to show its own speed, or None.

    Contention only ever slows a cell down. A round counts as contended when some runnable task
    waited for a CPU more than :data:`BUSY_PRESSURE` of its time (Linux PSI, recorded per round
    as ``cpu_pressure`` since bench schema 3) or, in reports without it, when the 1-minute load
    average exceeded the usable cores by more than half a core (a lagging sign).
    """
    rounds = [r for r in cell.get("rounds") or [] if r.get("block_medians_ms")]
    pressures = [r["cpu_pressure"] for r in rounds if r.get("cpu_pressure") is not None]
    if pressures:
        worst = max(pressures)
        return f"pressure {worst:.0%}" if worst > BUSY_PRESSURE else None
    loads = [r["loadavg_1m"] for r in rounds if r.get("loadavg_1m") is not None]
    if loads and cores and max(loads) > cores + 0.5:
        return f"load {max(loads):.1f}/{cores}"
    return None
