"""CPU pressure (Linux PSI, ``/proc/pressure/cpu``): how much of a timed run other processes
took. Bench records it per round and bench-compare holds contended slowdowns as unclear; tune
repeats a contended run."""

from __future__ import annotations

import time

PSI_CPU = "/proc/pressure/cpu"


def cpu_stall() -> tuple[float, int] | None:
    """``(monotonic s, µs some task waited for a CPU)``; None without PSI."""
    try:
        with open(PSI_CPU, encoding="ascii") as f:
            some = f.readline().split()
    except OSError:
        return None
    total = [x for x in some if x.startswith("total=")]
    return (time.monotonic(), int(total[0][6:])) if total else None


def cpu_pressure_since(before: tuple[float, int] | None) -> float | None:
    """The share of the time since ``before`` in which some runnable task waited for a CPU
    (PSI ``some``): about 0 on a machine with a core free for every thread, up to 1 when other
    processes compete with the timed one."""
    after = cpu_stall()
    if before is None or after is None or after[0] <= before[0]:
        return None
    return round(min(1.0, (after[1] - before[1]) / 1e6 / (after[0] - before[0])), 4)


def recent_pressure() -> float | None:
    """PSI's 10-second average CPU pressure as a fraction; None without PSI."""
    try:
        with open(PSI_CPU, encoding="ascii") as f:
            return float(f.readline().split()[1].split("=")[1]) / 100
    except (OSError, IndexError, ValueError):
        return None
