"""Latency percentiles, process memory, and the description of the machine a figure was measured on."""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass

__all__ = ["Summary", "summarize", "rss_kib", "reset_peak_rss", "machine_description"]


@dataclass(frozen=True, kw_only=True)
class Summary:
    name: str
    count: int
    seconds: float
    p50_ms: float
    p99_ms: float
    extra: dict

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def as_row(self) -> dict:
        return {"benchmark": self.name, "count": self.count, "per_second": round(self.per_second, 1),
                "p50_ms": round(self.p50_ms, 3), "p99_ms": round(self.p99_ms, 3), **self.extra}


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def summarize(name: str, latencies: list[float], seconds: float, **extra: object) -> Summary:
    ordered = sorted(latencies)
    return Summary(name=name, count=len(ordered), seconds=seconds, p50_ms=percentile(ordered, 0.50) * 1000,
                   p99_ms=percentile(ordered, 0.99) * 1000, extra=dict(extra))


def _status_field(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_kib(pid: int) -> dict[str, int]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, in KiB."""
    return {"rss": _status_field(pid, "VmRSS"), "peak": _status_field(pid, "VmHWM")}


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs '5'); False when not permitted."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = _status_field_meminfo()
    return (f"{os.cpu_count()} cores ({cpu}), {memory} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def _status_field_meminfo() -> int:
    try:
        with open("/proc/meminfo") as info:
            kib = int(next(line.split()[1] for line in info if line.startswith("MemTotal")))
        return round(kib / 1024 / 1024)
    except (OSError, StopIteration):
        return 0


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0
