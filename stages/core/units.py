"""Sizes, durations and rates as a person reads them in progress lines, logs and messages."""
from __future__ import annotations


def duration(seconds: float) -> str:
    """'45s', '16m28s', '2h05m': to the second under an hour, to the minute above."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def rate_text(per_second: float) -> str:
    """'1.9/s', or '4.2s each' for slow work, where a rate below one reads badly."""
    if per_second >= 1:
        return f"{per_second:.1f}/s"
    return f"{1 / per_second:.1f}s each" if per_second > 0 else "stalled"


def size_text(n: float) -> str:
    """Bytes: 512 B, 3.4 MB, 12.0 GB (powers of 1000, as df -H)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
